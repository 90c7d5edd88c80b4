// Greedy decode steps launched ahead, run by the CPU suite and the GPU suite each on its own
// device: a chain of launched steps gives the tokens and leaves the caches that step() gives;
// undo() takes a launched step's token back out of any of its sequences as if it had never run;
// and a stepper that launches its steps ahead gives the same chunks as one that does not, and
// leaves every sequence holding exactly the tokens its chunks gave, whatever ends each member
// (EOS, a stop string, maxNewTokens, maxContext, remove, preempt, the loop left early). On the
// CPU a launched step runs before launchGreedy returns ("always"), which checks the stepper's
// bookkeeping; on CUDA the steps are replayed and really queued behind each other ("replayed").
import * as path from "node:path";
import { type DeviceName, loadModel, type Model, Tensor } from "../../lib";
import { generationLoop } from "../../lib/generate/loop";
import { GenerationSequence } from "../../lib/generate/sequence";
import { GenerationStepper, type LaunchAhead, type MemberSettings, type StepperMember } from "../../lib/generate/stepper";
import { resolveHybrid } from "../../lib/hybrid/options";
import { LaunchedStep } from "../../lib/model/launched-step";
import type { Sequence } from "../../lib/model/sequence";
import { Scheduler } from "../../lib/serve/scheduler";
import { fixtureRoot } from "./fixtures";
import { Random } from "./reference";
import { readableKv } from "./sessions";

const rng = new Random();
const pageSize = 4;
// llama-tiny has 3 layers; layer 1 is a ring of 6 slots from the start in the decoder tests.
const ringLayer = 1;
const ring = { sink: 1, window: 5 };

/** Registers the launch-ahead tests for llama-tiny on `device`, with steps launched ahead as `mode` says. */
export function launchAheadTests(device: DeviceName, mode: Exclude<LaunchAhead, "never">): void {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device, pageSize, kvCacheBytes: 2 ** 21 });
  });
  afterAll(async () => model?.dispose());
  const randomIds = (n: number) => Array.from({ length: n }, () => rng.int(0, model.config.vocabSize - 1));
  const newSequence = () => model.decoder.createSequence({ ringAtStart: (l) => (l === ringLayer ? ring : undefined) });

  /** `k` batches of sequences, batch[i] of each holding the same random prompt (prompts of different lengths). */
  function copies(k: number, batch: number): Sequence[][] {
    const sides: Sequence[][] = Array.from({ length: k }, () => []);
    for (let i = 0; i < batch; i++) {
      const ids = randomIds(rng.int(3, 5 * pageSize));
      // One chunk size for all: a GEMM's bits may depend on how many rows it multiplies.
      const chunkSize = rng.int(3, 16);
      for (const side of sides) {
        const seq = newSequence();
        model.decoder.prefill(seq, ids, { chunkSize });
        side.push(seq);
      }
    }
    return sides;
  }
  const pages = (seq: Sequence) => seq.caches.map((c) => c.pageTable.length);
  /** A sequence of llama-tiny without hybrid layers, as the stepper takes it. */
  const plainSequence = () => new GenerationSequence(model.decoder, resolveHybrid({ mode: "off" }, model.config.layers));
  /** Greedy settings that end only at `maxNewTokens`. */
  const greedy = (maxNewTokens: number, prefillChunk = 8): MemberSettings => ({
    sampling: {},
    maxNewTokens,
    stop: [],
    stopAtEos: false,
    maxContext: 1024,
    prefillChunk,
  });

  const expectTwins = (a: Sequence[], b: Sequence[]) =>
    a.forEach((seq, i) => {
      expect({ row: i, seed: rng.seed, length: seq.length }).toEqual({ row: i, seed: rng.seed, length: b[i].length });
      expect(readableKv(model, seq)).toEqual(readableKv(model, b[i]));
    });

  test("a chain of launched steps gives the tokens step() gives and leaves the same caches", () => {
    const batch = rng.int(1, 3);
    const [a, b] = copies(2, batch);
    const first = randomIds(batch);
    // Across page boundaries and around the ring.
    const steps = pageSize + ring.window + rng.int(2, 6);
    const chained = model.decoder.stats.chainedSteps;
    let launched = model.decoder.launchGreedy(a, first);
    const got: number[][] = [];
    for (let i = 1; i < steps; i++) {
      const next = model.decoder.launchGreedy(a, launched);
      got.push(Array.from(launched.tokens()));
      launched = next;
    }
    got.push(Array.from(launched.tokens()));
    const want: number[][] = [];
    let ids = first;
    for (let i = 0; i < steps; i++) {
      ids = Array.from(model.decoder.step(b, ids, "argmax"));
      want.push(ids);
    }
    expect({ seed: rng.seed, tokens: got }).toEqual({ seed: rng.seed, tokens: want });
    expectTwins(a, b);
    if (mode === "replayed") expect(model.decoder.stats.chainedSteps - chained).toBe(steps - 1);
    for (const s of [...a, ...b]) s.dispose();
  });

  test("undo takes a launched step back out of some of its sequences as if it had never run", () => {
    // a launches two steps and takes the second back out of one row; b takes both steps, c only the first.
    const [a, b, c] = copies(3, 3);
    const first = randomIds(3);
    const launched = model.decoder.launchGreedy(a, first);
    const tokens = Array.from(launched.tokens());
    for (const side of [b, c]) expect(Array.from(model.decoder.step(side, first, "argmax"))).toEqual(tokens);
    const next = model.decoder.launchGreedy(a, launched);
    const row = rng.int(0, 2);
    const used = model.pool.usedPages;
    const sum = (seq: Sequence) => pages(seq).reduce((x, y) => x + y);
    const held = sum(a[row]);
    next.undo([a[row]]);
    next.undo([a[row]]); // a second time does nothing
    // The pages the step took for the row are back in the pool.
    expect(model.pool.usedPages).toBe(used - (held - sum(c[row])));
    // The step still ran for every row; the others keep it.
    expect(Array.from(next.tokens())).toEqual(Array.from(model.decoder.step(b, tokens, "argmax")));
    const others = [0, 1, 2].filter((i) => i !== row);
    expectTwins(
      others.map((i) => a[i]),
      others.map((i) => b[i]),
    );
    expectTwins([a[row]], [c[row]]);
    expect(pages(a[row])).toEqual(pages(c[row]));
    // The row taken back goes on as the sequence that never took the step, past a page boundary and around the ring.
    const ids = randomIds(pageSize + ring.window + 1);
    const stepped = (seq: Sequence) => ids.map((id) => model.decoder.step([seq], [id], "logits"));
    expect({ seed: rng.seed, logits: stepped(a[row]) }).toEqual({ seed: rng.seed, logits: stepped(c[row]) });
    for (const s of [...a, ...b, ...c]) s.dispose();
  });

  // Where a launched step's tokens come back from: a pending read of a replayed step's, the
  // tokens of one run op by op.
  const readback = mode === "replayed" ? "readLater" : "toArray";
  const failOnce = () =>
    jest.spyOn(Tensor.prototype, readback).mockImplementationOnce(() => {
      throw new Error("injected: the tokens cannot come back");
    });

  test("a launched step whose tokens cannot come back leaves every sequence as it was", () => {
    const [a, b] = copies(2, 2);
    const held = a.map((s) => ({ length: s.length, pages: pages(s), kv: readableKv(model, s) }));
    const used = model.pool.usedPages;
    const first = randomIds(2);
    const failing = failOnce();
    try {
      expect(() => model.decoder.launchGreedy(a, first)).toThrow(/injected/);
    } finally {
      failing.mockRestore();
    }
    expect(a.map((s) => ({ length: s.length, pages: pages(s), kv: readableKv(model, s) }))).toEqual(held);
    expect(model.pool.usedPages).toBe(used);
    // The next steps are those of the sequences that never saw it.
    let launched = model.decoder.launchGreedy(a, first);
    const next = model.decoder.launchGreedy(a, launched);
    const got = [Array.from(launched.tokens())];
    launched = next;
    got.push(Array.from(launched.tokens()));
    const want = [Array.from(model.decoder.step(b, first, "argmax"))];
    want.push(Array.from(model.decoder.step(b, want[0], "argmax")));
    expect({ seed: rng.seed, tokens: got }).toEqual({ seed: rng.seed, tokens: want });
    expectTwins(a, b);
    for (const s of [...a, ...b]) s.dispose();
  });

  test("a step launched ahead whose tokens cannot come back is left out, and the stepper goes on as one that does not launch ahead", () => {
    const plan = drawSchedule(exactBatch);
    // Nothing ends or leaves before the third token, so the second read is that of the first step launched ahead.
    plan.removeAfter = plan.preemptAfter = 1000;
    for (const settings of plan.settings) {
      settings.maxNewTokens = Math.max(settings.maxNewTokens, 4);
      settings.maxContext = 1024;
      settings.stopAtEos = false;
    }
    const want = runStepper("never", plan);
    const original = Tensor.prototype[readback] as (this: Tensor) => unknown;
    let reads = 0;
    const failing = jest.spyOn(Tensor.prototype, readback).mockImplementation(function (this: Tensor) {
      if (++reads === 2) throw new Error("injected: the tokens cannot come back");
      return original.call(this) as never;
    });
    let got: StepperRun;
    try {
      got = runStepper(mode, plan);
    } finally {
      failing.mockRestore();
    }
    expect(reads).toBeGreaterThan(2);
    expect({ seed: rng.seed, chunks: got.chunks }).toEqual({ seed: rng.seed, chunks: want.chunks });
    expectFed(got);
    for (const m of [...want.members, ...got.members]) m.sequence.dispose();
  });

  test("a member preempted while a launched step holds its token goes on as one preempted in a stepper that does not launch ahead", () => {
    const plan = drawSchedule(exactBatch);
    // Nobody ends or leaves early, so from the second step on a step is always in flight.
    plan.removeAfter = 1000;
    plan.preemptAfter = rng.int(3, 6);
    for (const settings of plan.settings) {
      settings.maxNewTokens = rng.int(plan.preemptAfter + 3, 14);
      settings.maxContext = 1024;
      settings.stopAtEos = false;
    }
    const want = runStepper("never", plan);
    const undos = jest.spyOn(LaunchedStep.prototype, "undo");
    // The sequence the member held when it was preempted (restarting gives it a new one).
    const preempted: Sequence[] = [];
    const preempt = GenerationStepper.prototype.preempt;
    const preempts = jest.spyOn(GenerationStepper.prototype, "preempt").mockImplementation(function (this: GenerationStepper, member) {
      preempted.push(member.sequence.seq);
      preempt.call(this, member);
    });
    let got: StepperRun, undone: Array<readonly Sequence[] | undefined>;
    try {
      got = runStepper(mode, plan);
      undone = undos.mock.calls.map(([seqs]) => seqs);
    } finally {
      undos.mockRestore();
      preempts.mockRestore();
    }
    // The preemption took a launched step's token back out of the member's sequence.
    expect(preempted).toHaveLength(1);
    expect(undone.some((seqs) => seqs?.length === 1 && seqs[0] === preempted[0])).toBe(true);
    expect({ seed: rng.seed, chunks: got.chunks }).toEqual({ seed: rng.seed, chunks: want.chunks });
    expectFed(got);
    for (const m of [...want.members, ...got.members]) m.sequence.dispose();
  });

  test("a launched step's afterStep failure is thrown by every tokens() call, and the caller's array may change after the launch", () => {
    const ids = randomIds(rng.int(3, 9));
    const failing = model.decoder.createSequence({
      ringAtStart: (l) => (l === ringLayer ? ring : undefined),
      afterStep: () => {
        throw new Error("injected: the hook failed");
      },
    });
    const plain = newSequence();
    model.decoder.prefill(failing, ids);
    model.decoder.prefill(plain, [...ids, ...randomIds(rng.int(1, 2 * pageSize))]);
    const lengths = [failing.length, plain.length];
    const kv = [readableKv(model, failing), readableKv(model, plain)];
    const batch = [failing, plain];
    const launched = model.decoder.launchGreedy(batch, randomIds(2));
    // The caller's array is the caller's: undo still finds each sequence's row.
    batch.reverse();
    expect(() => launched.tokens()).toThrow("injected: the hook failed");
    expect(() => launched.tokens()).toThrow("injected: the hook failed");
    launched.undo([plain]);
    launched.undo([failing]);
    expect([failing.length, plain.length]).toEqual(lengths);
    expect([readableKv(model, failing), readableKv(model, plain)]).toEqual(kv);
    for (const s of [failing, plain]) s.dispose();
  });

  test("a launched step's tokens go only to the next step over the same sequences", () => {
    const [a] = copies(1, 2);
    const lengths = a.map((s) => s.length);
    const launched = model.decoder.launchGreedy(a, randomIds(2));
    expect(() => model.decoder.launchGreedy([a[1], a[0]], launched)).toThrow(/same sequences, in the same order/);
    expect(() => model.decoder.launchGreedy([a[0]], launched)).toThrow(/same sequences, in the same order/);
    const next = model.decoder.launchGreedy(a, launched);
    expect(() => model.decoder.launchGreedy(a, launched)).toThrow(/only to the next step over its sequences/);
    next.undo([a[0]]);
    expect(() => model.decoder.launchGreedy(a, next)).toThrow(/not after undo\(\)/);
    model.decoder.step([a[1]], [1], "none");
    expect(() => next.undo([a[1]])).toThrow(/a later step or prefill ran over it/);
    // The refusals changed nothing: each sequence holds what its own steps gave it.
    expect(a.map((s) => s.length)).toEqual([lengths[0] + 1, lengths[1] + 3]);
    for (const s of a) s.dispose();
  });

  /** What a stepper run gave: each member's chunks and, kept after the run, its sequence and tokens. */
  interface StepperRun {
    chunks: string[][];
    members: StepperMember[];
  }

  /**
   * A stepper schedule: prompts, their settings, the member removed once it has generated
   * `removeAfter` tokens, and the member preempted once it has generated `preemptAfter` (and
   * readmitted two steps on). Keyed to the members' own tokens, not to the stepper's steps: a
   * member whose prompt comes in while a step launched ahead runs joins the step after it.
   */
  interface Schedule {
    prompts: number[][];
    settings: MemberSettings[];
    removeAfter: number;
    removed: number;
    preemptAfter: number;
    preempted: number;
  }

  function runStepper(launchAhead: LaunchAhead, plan: Schedule): StepperRun {
    const stepper = new GenerationStepper(model, { releaseSequences: false, launchAhead });
    const members = plan.prompts.map((ids, i) => stepper.admit(plainSequence(), ids, plan.settings[i]));
    const chunks: string[][] = members.map(() => []);
    const record = (m: StepperMember, chunk: unknown) => chunks[members.indexOf(m)].push(JSON.stringify(chunk));
    for (const m of members) record(m, stepper.prefill(m).chunk);
    let waiting: { member: StepperMember; until: number } | undefined,
      preempted = false;
    for (let step = 0; stepper.decoding.length || waiting; step++) {
      if (step > 64) throw new Error("the stepper did not end");
      const preempting = members[plan.preempted];
      if (!preempted && preempting.running && preempting.generated >= plan.preemptAfter) {
        stepper.preempt(preempting);
        waiting = { member: preempting, until: step + 2 };
        preempted = true;
      }
      if (waiting && step === waiting.until) {
        stepper.readmit(waiting.member);
        record(waiting.member, stepper.prefill(waiting.member).chunk);
        waiting = undefined;
      }
      // After a readmission, whose prefill's chunk may be the one that reaches removeAfter.
      const removed = members[plan.removed];
      if (removed.running && removed.generated >= plan.removeAfter) stepper.remove(removed);
      for (const { member, chunk } of stepper.step()) record(member, chunk);
    }
    stepper.settle();
    return { chunks, members };
  }

  /** Each member's sequence holds every token it saw but the last, which no step has fed yet. */
  const expectFed = (run: StepperRun) =>
    run.members.forEach((m, i) => expect({ member: i, length: m.sequence.length }).toEqual({ member: i, length: m.seen.length - 1 }));

  /** A schedule of `batch` members with random greedy settings, one of them removed and one preempted along the way. */
  function drawSchedule(batch: number): Schedule {
    const prompts = Array.from({ length: batch }, () => randomIds(rng.int(3, 4 * pageSize)));
    const settings: MemberSettings[] = prompts.map((ids) => ({
      sampling: {},
      maxNewTokens: rng.int(1, 14),
      stop: [],
      stopAtEos: rng.next() < 0.5,
      maxContext: ids.length + rng.int(1, 16),
      prefillChunk: rng.int(3, 16),
    }));
    return {
      prompts,
      settings,
      removeAfter: rng.int(1, 10),
      removed: rng.int(0, batch - 1),
      preemptAfter: rng.int(1, 10),
      preempted: rng.int(0, batch - 1),
    };
  }

  // On the CPU a row's arithmetic is the same whatever the batch. On CUDA a step's GEMMs change
  // with its rows, and a step launched ahead still runs a member that has just stopped (its token
  // taken back after), so a batch's bits differ from those of a stepper that does not launch
  // ahead: there the exact comparison runs one member at a time, and a batch is checked below for
  // what holds whatever the bits.
  const exactBatch = mode === "always" ? 3 : 1;

  test("a stepper launching steps ahead gives the chunks of one that does not, whatever ends each member", () => {
    for (let round = 0; round < 3; round++) {
      const plan = drawSchedule(exactBatch);
      // A stop string from one member's own continuation, so that it stops there.
      const dry = runStepper("never", plan);
      const stopper = rng.int(0, exactBatch - 1);
      const text = dry.chunks[stopper].map((c) => JSON.parse(c).text as string).join("");
      if (text.length > 4) {
        const at = rng.int(1, text.length - 3);
        plan.settings[stopper].stop = [text.slice(at, at + 2)];
      }
      for (const m of dry.members) m.sequence.dispose();
      const used = model.pool.usedPages;
      const want = runStepper("never", plan);
      const wantPages = model.pool.usedPages;
      const got = runStepper(mode, plan);
      expect({ seed: rng.seed, round, chunks: got.chunks }).toEqual({ seed: rng.seed, round, chunks: want.chunks });
      expectFed(want);
      expectFed(got);
      expect(model.pool.usedPages - wantPages).toBe(wantPages - used);
      got.members.forEach((m, i) => expect(readableKv(model, m.sequence.seq)).toEqual(readableKv(model, want.members[i].sequence.seq)));
      for (const m of [...want.members, ...got.members]) m.sequence.dispose();
    }
  });

  if (mode === "replayed")
    test("a batch launching steps ahead leaves each sequence holding the tokens its chunks gave, and gives back every page", () => {
      const used = model.pool.usedPages;
      for (let round = 0; round < 3; round++) {
        const got = runStepper(mode, drawSchedule(3));
        expectFed(got);
        // Every member left the stepper (finished or taken out) after giving its first chunk at least.
        got.chunks.forEach((chunks, i) => {
          if (got.members[i].running) throw new Error(`member ${i} is still running`);
          expect(chunks.length).toBeGreaterThan(0);
        });
        for (const m of got.members) m.sequence.dispose();
        expect(model.pool.usedPages).toBe(used);
      }
    });

  test("a member whose prompt is prefilled beside a decoding one joins the very next step", () => {
    const stepper = new GenerationStepper(model, { releaseSequences: true, launchAhead: mode });
    const admit = (tokens: number) => stepper.admit(plainSequence(), randomIds(tokens), greedy(32, 4));
    const a = admit(rng.int(3, 12));
    stepper.prefill(a);
    const launches = jest.spyOn(model.decoder, "launchGreedy");
    try {
      expect(stepper.step().map((c) => c.member)).toEqual([a]);
      // Two launches, the second ahead of the first's tokens, as nothing else is under way.
      expect(launches).toHaveBeenCalledTimes(2);
      const b = admit(rng.int(9, 20));
      // A chunk of 4 tokens through one layer: b's prompt is still being prefilled after it.
      expect(stepper.prefill(b, 4).chunk).toBeUndefined();
      expect(stepper.step().map((c) => c.member)).toEqual([a]);
      // The step launched ahead before b was admitted ran, and none was launched beside b's prefill.
      expect(launches).toHaveBeenCalledTimes(2);
      while (!stepper.prefill(b, 4).chunk);
      expect(stepper.step().map((c) => c.member)).toEqual([a, b]);
      expect(stepper.step().map((c) => c.member)).toEqual([a, b]);
    } finally {
      launches.mockRestore();
      stepper.settle();
      for (const m of [...stepper.active]) stepper.remove(m);
    }
  });

  test("a scheduler launching steps ahead, under preemption and cancels: each request gets its own tokens, every page comes back", async () => {
    // A pool of about two of these requests at their full length: admission lets more in than can
    // finish together, so running sequences are preempted (with a step in flight) and resumed.
    const small = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device, pageSize, kvCacheBytes: 60 * model.pool.pageBytes });
    let preemptions = 0;
    const scheduler = new Scheduler(
      small,
      { maxQueue: 16, stepTokens: 64, maxRunning: 8, launchAhead: mode },
      { preempted: () => preemptions++ },
    );
    const hybrid = resolveHybrid({ mode: "off" }, small.config.layers);
    try {
      const requests = Array.from({ length: 6 }, (_, i) => ({
        ids: randomIds(rng.int(16, 20)),
        maxNewTokens: rng.int(40, 50),
        cancelAfter: i < 2 ? rng.int(1, 30) : undefined,
      }));
      const results = await Promise.all(
        requests.map(
          (r) =>
            new Promise<{ tokens: number[]; finish?: string; error?: Error }>((resolve) => {
              const tokens: number[] = [];
              const ticket = scheduler.submit({
                ids: r.ids,
                settings: greedy(r.maxNewTokens),
                hybrid,
                onChunk: (chunk) => {
                  tokens.push(...chunk.tokens);
                  if (chunk.finishReason) resolve({ tokens, finish: chunk.finishReason });
                  // As the server cancels a request whose client went away: between turns.
                  else if (tokens.length === r.cancelAfter)
                    setImmediate(() => {
                      ticket.cancel();
                      resolve({ tokens });
                    });
                },
                onError: (error) => resolve({ tokens, error }),
              });
            }),
        ),
      );
      expect(preemptions).toBeGreaterThan(0);
      results.forEach((got, i) => {
        const r = requests[i];
        expect({ request: i, error: got.error?.message }).toEqual({ request: i, error: undefined });
        if (r.cancelAfter === undefined)
          expect({ request: i, finish: got.finish, count: got.tokens.length }).toEqual({
            request: i,
            finish: "length",
            count: r.maxNewTokens,
          });
        else expect(got.tokens.length).toBeGreaterThanOrEqual(r.cancelAfter);
        // On the CPU a row's bits do not depend on its batch: each request's tokens are those it generates alone.
        if (mode === "always")
          expect({ request: i, tokens: got.tokens }).toEqual({ request: i, tokens: aloneTokens(r.ids, got.tokens.length) });
      });
      await new Promise((resolve) => setImmediate(resolve));
      expect(small.pool.usedPages).toBe(0);
    } finally {
      scheduler.close();
      await small.dispose();
    }
  });

  /** The first `count` greedy tokens of `ids` generated alone. */
  function aloneTokens(ids: readonly number[], count: number): number[] {
    const stepper = new GenerationStepper(model, { releaseSequences: true, launchAhead: "never" });
    const member = stepper.admit(plainSequence(), ids, greedy(count));
    const tokens = [...(stepper.prefill(member).chunk?.tokens ?? [])];
    while (stepper.decoding.length) for (const { chunk } of stepper.step()) tokens.push(...chunk.tokens);
    return tokens;
  }

  test("a generation left early keeps in its sequence only the tokens its chunks gave", async () => {
    const prompt = randomIds(rng.int(3, 4 * pageSize));
    const stopAfter = rng.int(1, 10);
    const generate = async (launchAhead: LaunchAhead) => {
      const sequence = plainSequence();
      const tokens: number[] = [];
      const loop = generationLoop(model, [{ sequence, ids: prompt }], {
        ...greedy(64, 16),
        logprobs: undefined,
        signal: undefined,
        owner: { name: "session", isLive: () => true },
        releaseSequences: false,
        launchAhead,
      });
      for await (const { chunk } of loop) {
        tokens.push(...chunk.tokens);
        if (tokens.length === stopAfter) break;
      }
      return { sequence, tokens };
    };
    const want = await generate("never");
    const got = await generate(mode);
    expect(got.tokens).toEqual(want.tokens);
    expect(got.sequence.length).toBe(prompt.length + stopAfter - 1);
    expect(want.sequence.length).toBe(prompt.length + stopAfter - 1);
    expect(readableKv(model, got.sequence.seq)).toEqual(readableKv(model, want.sequence.seq));
    for (const s of [got, want]) s.sequence.dispose();
  });
}
