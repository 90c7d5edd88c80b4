// The serving scheduler's callbacks are the caller's code: one request's onChunk or onError
// that throws ends that request alone, and the requests batched beside it get every token they
// would have got without it, in "always" launch-ahead mode (a step in flight when it throws).
import * as path from "node:path";
import { loadModel, type Model } from "../../lib";
import type { MemberSettings } from "../../lib/generate/stepper";
import { resolveHybrid } from "../../lib/hybrid/options";
import { Scheduler, SchedulerClosedError } from "../../lib/serve/scheduler";
import { fixtureRoot } from "../helpers/fixtures";
import { Random } from "../helpers/reference";

const rng = new Random();

interface Outcome {
  tokens: number[];
  chunks: number;
  finish?: string;
  errors: Error[];
}

/** How a request's callbacks misbehave: onChunk throws at its `throwAt`-th chunk, onError too if `errorThrows`. */
interface Fault {
  throwAt: number;
  errorThrows: boolean;
}

describe(`seed ${rng.seed}`, () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", pageSize: 4, kvCacheBytes: 2 ** 21 });
  });
  afterAll(async () => model?.dispose());

  const greedy = (maxNewTokens: number): MemberSettings => ({
    sampling: {},
    maxNewTokens,
    stop: [],
    stopAtEos: false,
    maxContext: 1024,
    prefillChunk: 8,
  });
  const hybrid = () => resolveHybrid({ mode: "off" }, model.config.layers);

  /** Runs the requests through one scheduler together; a faulty request's outcome ends at its first error. */
  async function serve(requests: Array<{ ids: number[]; maxNewTokens: number; fault?: Fault }>): Promise<Outcome[]> {
    const scheduler = new Scheduler(model, { maxQueue: 16, stepTokens: 64, maxRunning: 8, launchAhead: "always" });
    try {
      return await Promise.all(
        requests.map(
          (r) =>
            new Promise<Outcome>((resolve) => {
              const outcome: Outcome = { tokens: [], chunks: 0, errors: [] };
              scheduler.submit({
                ids: r.ids,
                settings: greedy(r.maxNewTokens),
                hybrid: hybrid(),
                onChunk: (chunk) => {
                  outcome.tokens.push(...chunk.tokens);
                  if (chunk.finishReason) outcome.finish = chunk.finishReason;
                  if (++outcome.chunks === r.fault?.throwAt) throw new Error(`request's own callback failed at chunk ${outcome.chunks}`);
                  if (chunk.finishReason) setImmediate(() => resolve(outcome));
                },
                onError: (err) => {
                  outcome.errors.push(err);
                  // Later callbacks, if any came, would land in the outcome before this resolves.
                  setImmediate(() => resolve(outcome));
                  if (r.fault?.errorThrows) throw new Error("onError failed too");
                },
              });
            }),
        ),
      );
    } finally {
      scheduler.close();
    }
  }

  /** Random requests, the one at `short` ending before every other: the others still run when its callbacks fail. */
  test("a closed scheduler refuses a new request with the error the server answers 503 for", () => {
    const scheduler = new Scheduler(model, { maxQueue: 4, stepTokens: 64, maxRunning: 4 });
    scheduler.close();
    const request = { ids: [rng.int(2, 300)], settings: greedy(2), hybrid: hybrid(), onChunk: () => {}, onError: () => {} };
    expect(() => scheduler.submit(request)).toThrow(SchedulerClosedError);
  });

  const randomRequests = (short: number) =>
    Array.from({ length: rng.int(3, 5) }, (_, i) => ({
      ids: Array.from({ length: rng.int(3, 12) }, () => rng.int(0, model.config.vocabSize - 1)),
      maxNewTokens: i === short ? rng.int(3, 5) : rng.int(8, 14),
    }));

  test.each([
    ["in the middle of its stream", false, false],
    ["on its last chunk", true, false],
    ["and its onError throws too", false, true],
  ])("a request whose onChunk throws %s ends alone; the others get every token", async (_, atLast, errorThrows) => {
    const faulty = rng.int(0, 2);
    const requests = randomRequests(faulty);
    const clean = await serve(requests);
    const chunkCount = clean[faulty].chunks;
    const throwAt = atLast ? chunkCount : rng.int(1, chunkCount - 1);
    const warnings = jest.spyOn(process, "emitWarning").mockImplementation(() => {});
    let got: Outcome[];
    try {
      got = await serve(requests.map((r, i) => (i === faulty ? { ...r, fault: { throwAt, errorThrows } } : r)));
      expect(warnings).toHaveBeenCalledTimes(errorThrows ? 1 : 0);
    } finally {
      warnings.mockRestore();
    }
    got.forEach((outcome, i) => {
      if (i !== faulty) {
        expect({ request: i, ...outcome }).toEqual({ request: i, ...clean[i] });
        return;
      }
      expect(outcome.errors.map((e) => e.message)).toEqual([`request's own callback failed at chunk ${throwAt}`]);
      // Nothing came after the chunk that threw.
      expect(outcome.chunks).toBe(throwAt);
      expect(outcome.tokens).toEqual(clean[i].tokens.slice(0, outcome.tokens.length));
      expect(outcome.finish).toBe(atLast ? "length" : undefined);
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(model.pool.usedPages).toBe(0);
  });
});
