// The evaluation's mode loop on a fixture model (random weights: accuracy is ~0, so these check the
// machinery): every sample answered in every mode with that mode's lazy layers, each answer the
// greedy generation of the sample's prompt and scored by isCorrect and rulerScore, perplexity as model.score
// gives it, progress, and the config's layering and checks.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  brownCorpus,
  defaultEvalSettings,
  type EvalConfig,
  type EvalReport,
  type EvalSettings,
  evalModes,
  heldOutWindow,
  isCorrect,
  loadModel,
  type Model,
  makeSample,
  markdownReport,
  readEvalSettings,
  resolveEvalConfig,
  rulerScore,
  runEval,
} from "../lib";
import * as tasks from "../lib/eval/tasks";
import { randomLayers } from "../lib/hybrid/options";
import { longestFillerWord } from "./helpers/filler-words";
import { fixtureRoot } from "./helpers/fixtures";
import { Random } from "./helpers/reference";

const rng = new Random();

const benchConfig = path.join(__dirname, "..", "bench", "quality", "config.json");
let model: Model;
let tmp: string;
beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, "llama-tiny"), { device: "cpu", kvCacheBytes: 16 * 2 ** 20 });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lt-eval-"));
});
afterAll(async () => {
  await model?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const randomSeed = () => rng.int(0, 999_999);

/** A layer file of llama-tiny (layers 0 and 2 lazy) with sink 4 and this window. */
const layerFileOf = (window: number) => ({
  model: "llama-tiny",
  layers: 3,
  fullLayers: 1,
  prompts: 1,
  counts: [],
  lazyLayers: [0, 2],
  sink: 4,
  window,
  lastQueries: 32,
});

describe(`seed ${rng.seed}`, () => {
  describe("runEval on llama-tiny", () => {
    const layers = 3;
    // A window far below the contexts, so that the modes' caches differ.
    const shape = { sink: 4, window: 48 };
    let config: EvalConfig;
    let report: EvalReport;
    const progress: Array<{ done: number; total: number }> = [];
    beforeAll(async () => {
      const layerFile = {
        model: "llama-tiny",
        layers,
        fullLayers: 1,
        prompts: 1,
        counts: [1, 0, 1],
        lazyLayers: [0, 2],
        lastQueries: 32,
        ...shape,
      };
      config = {
        tasks: ["passkey", "variable-tracking"],
        contexts: [400, 560],
        depths: [rng.next()],
        seeds: [randomSeed()],
        autoFractions: [0.34],
        randomSeeds: [randomSeed() % 1000, 1000 + (randomSeed() % 1000)],
        randomFraction: 0.5,
        layerFile,
        streamingAll: true,
        perplexity: true,
        chat: false,
        // the answers' room past their length, drawn per run (the default is 8)
        extraTokens: rng.int(0, 12),
        ...shape,
      };
      report = await runEval(model, config, { onProgress: (p) => progress.push(p) });
    }, 120_000);

    test("one result per mode and sample, with the mode's lazy layers", () => {
      const modes = evalModes(layers, config);
      expect(modes.map((m) => m.name)).toEqual([
        "full",
        "auto 34%",
        "fixed 33%",
        ...config.randomSeeds.map((s) => `random 50% #${s}`),
        "streaming-all",
      ]);
      expect(report.modes).toEqual(modes);
      const perMode = config.tasks.length * config.contexts.length * config.depths.length * config.seeds.length;
      expect(report.samples).toHaveLength(modes.length * perMode);
      const want = (name: string): number[] | undefined => {
        if (name === "full") return [];
        if (name === "streaming-all") return [0, 1, 2];
        if (name.startsWith("fixed")) return [0, 2];
        const random = /^random 50% #(\d+)$/.exec(name);
        // 50% of 3 layers rounds to 2 full, 1 lazy.
        if (random) return randomLayers(layers, 1, Number(random[1]));
        return undefined;
      };
      for (const r of report.samples) {
        const lazy = want(r.mode);
        if (lazy) expect([r.mode, r.lazyLayers]).toEqual([r.mode, lazy]);
        // auto at 34% of 3 layers keeps 1 full: 2 lazy, chosen on the prompt.
        else expect([r.mode, r.lazyLayers.length]).toEqual([r.mode, 2]);
      }
      expect(report.modes.find((m) => m.name === "auto 34%")?.fullFraction).toBeCloseTo(1 / 3, 12);
    });

    test("each answer is the greedy continuation of the sample's prompt in its mode, scored by isCorrect and rulerScore", async () => {
      for (const r of report.samples) expect(r.correct).toBe(isCorrect(r.output, r.answer));
      // One result drawn at random, generated again directly.
      const r = report.samples[rng.int(0, report.samples.length - 1)];
      const sample = makeSample(
        model.tokenizer,
        brownCorpus(),
        { task: r.task, context: r.context, depth: r.depth, seed: r.seed },
        { chat: false },
      );
      expect(r.promptTokens).toBe(sample.prompt.length);
      expect(r.answer).toBe(sample.answer);
      expect(r.references).toEqual(sample.references);
      expect(r.rulerScore).toBe(rulerScore(r.output, sample.references));
      const mode = report.modes.find((m) => m.name === r.mode)!;
      const [direct] = await model.generateBatch([sample.prompt], {
        maxNewTokens: sample.answerIds.length + config.extraTokens,
        hybrid: mode.hybrid,
      });
      expect(r.output).toBe(direct.text);
    });

    test("held-out windows of one context follow each other through the held-out text: no two seeds score the same tokens", () => {
      const corpus = brownCorpus();
      const bos = model.tokenizer.encode("").length;
      const body = rng.int(50, 400);
      const seeds = rng.int(2, 5);
      const first = rng.int(0, 20);
      // Seeds first .. first + seeds - 1 are consecutive stretches: together, one window from `first` of their joint length.
      const windows = Array.from({ length: seeds }, (_, i) => heldOutWindow(model.tokenizer, corpus, bos + body, first + i));
      const expected = windows.flatMap((w) => w.slice(bos));
      expect(heldOutWindow(model.tokenizer, corpus, bos + (first + seeds) * body, 0).slice(bos + first * body)).toEqual(expected);
      for (const w of windows) expect(w.slice(0, bos)).toEqual(model.tokenizer.encode(""));
    });

    test("perplexity per mode, context and seed is model.score's over the held-out window's second half", async () => {
      const modes = report.modes.length;
      expect(report.perplexity).toHaveLength(modes * config.contexts.length * config.seeds.length);
      const p = report.perplexity[rng.int(0, report.perplexity.length - 1)];
      const ids = heldOutWindow(model.tokenizer, brownCorpus(), p.context, p.seed);
      expect(ids).toHaveLength(p.context);
      const mode = report.modes.find((m) => m.name === p.mode)!;
      const half = Math.floor(ids.length / 2);
      const direct = await model.score(ids.slice(0, half), ids.slice(half), { hybrid: mode.hybrid });
      expect(p.tokens).toBe(ids.length - half);
      expect(p.perplexity).toBe(direct.perplexity);
      // The modes differ: streaming-all and full attention do not score the window alike.
      const of = (name: string) => report.perplexity.find((q) => q.mode === name && q.context === 560)!.perplexity;
      expect(of("streaming-all")).not.toBe(of("full"));
    });

    test("accuracy cells count each mode's samples per task and context", () => {
      for (const cell of report.accuracy) {
        const rows = report.samples.filter((r) => r.mode === cell.mode && r.task === cell.task && r.context === cell.context);
        expect(cell.samples).toBe(rows.length);
        expect(cell.accuracy).toBe(rows.filter((r) => r.correct).length / rows.length);
        expect(cell.rulerScore).toBeCloseTo(rows.reduce((a, r) => a + r.rulerScore, 0) / rows.length, 12);
      }
      expect(report.accuracy).toHaveLength(report.modes.length * config.tasks.length * config.contexts.length);
    });

    test("progress counts every answer and perplexity window up to the total", () => {
      const total = report.modes.length * (report.samples.length / report.modes.length + config.contexts.length * config.seeds.length);
      expect(progress.map((p) => p.done)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      expect(progress.every((p) => p.total === total)).toBe(true);
    });
  });

  describe("evaluation config", () => {
    test("bench/quality/config.json holds the defaults", () => {
      expect(readEvalSettings(benchConfig)).toEqual(defaultEvalSettings);
    });

    test("later settings win over earlier ones and the defaults; chat auto follows the chat template", () => {
      const config = resolveEvalConfig(
        [
          { contexts: [1000], seeds: [5] },
          { contexts: [2000], chat: "auto" },
        ],
        true,
      );
      expect(config).toMatchObject({ contexts: [2000], seeds: [5], chat: true, depths: defaultEvalSettings.depths, layerFile: undefined });
      expect(resolveEvalConfig([{ chat: "auto" }], false).chat).toBe(false);
      expect(resolveEvalConfig([{ chat: false }], true).chat).toBe(false);
      expect(() => resolveEvalConfig([{ contexts: [1000] }, { seed: [0] } as EvalSettings], false)).toThrow(
        /eval: settings has no option "seed"; its options are tasks, contexts, depths, seeds, /,
      );
    });

    test("a settings file's relative layerFile is a path from that file's directory", () => {
      const dir = fs.mkdtempSync(path.join(tmp, "settings-"));
      const name = `layers-${rng.int(0, 999)}.json`;
      fs.writeFileSync(path.join(dir, "settings.json"), JSON.stringify({ layerFile: name }));
      expect(readEvalSettings(path.join(dir, "settings.json")).layerFile).toBe(path.join(dir, name));
      const absolute = path.join(tmp, name);
      fs.writeFileSync(path.join(dir, "settings.json"), JSON.stringify({ layerFile: absolute }));
      expect(readEvalSettings(path.join(dir, "settings.json")).layerFile).toBe(absolute);
    });

    test("a file with an unknown field, or not JSON, is an error naming it", () => {
      const file = path.join(tmp, "bad.json");
      fs.writeFileSync(file, JSON.stringify({ contexts: [4096], context: 4096 }));
      expect(() => readEvalSettings(file)).toThrow(/bad\.json: unknown field context; the fields are tasks, contexts/);
      fs.writeFileSync(file, "{");
      expect(() => readEvalSettings(file)).toThrow(/bad\.json: cannot be read as an evaluation config/);
    });

    test.each([
      [{ contexts: [] }, /eval: contexts must be a non-empty list of token counts in \[1, 4096\]/],
      [{ contexts: [5000] }, /eval: contexts must be a non-empty list of token counts/],
      [{ tasks: ["passkey", "qa"] }, /eval: tasks must be a non-empty list of passkey, niah-multikey/],
      [{ depths: [1.5] }, /eval: depths must be a non-empty list of depths in \[0, 1\]/],
      [{ autoFractions: [1] }, /eval: autoFractions must be a list of fractions in \[0, 1\)/],
      [{ streamingAll: "yes" }, /eval: streamingAll must be true or false/],
      [{ depths: [0.5, 0.25, 0.5] }, /eval: depths has 0.5 twice; give each value once/],
      [{ contexts: [400, 400] }, /eval: contexts has 400 twice/],
      [{ autoFractions: [0.5, 0.5] }, /eval: autoFractions has 0.5 twice/],
      [{ randomSeeds: [1, 1] }, /eval: randomSeeds has 1 twice/],
      [{ autoFractions: ["0.5"] }, /eval: autoFractions must be a list of fractions in \[0, 1\)/],
      [{ extraTokens: -1 }, /eval: extraTokens must be an integer in \[0, 4096\], got -1/],
      [{ extraTokens: 2.5 }, /eval: extraTokens must be an integer in \[0, 4096\]/],
    ])("%j is an error naming the field", async (bad, message) => {
      const config = { ...resolveEvalConfig([{ contexts: [400] }], false), ...bad, window: 48 } as EvalConfig;
      await expect(runEval(model, config)).rejects.toThrow(message);
    });

    // Checked before the first sample: these used to stop a run midway, or to give hybrid rows that
    // were full attention.
    test.each([
      [
        { window: 1020 },
        /eval: context 400 fits in the sink \+ window of modes "auto 25%" \(1024 tokens\), .*"streaming-all" \(1024 tokens\), so they would be full attention: give a smaller window \(e\.g\. 25\), or longer contexts$/,
      ],
      // The fixed mode's sink and window are its layer file's, which the window setting does not change.
      [
        {
          window: 48,
          layerFile: layerFileOf(1020),
        },
        /eval: context 400 fits in the sink \+ window of mode "fixed 33%" \(1024 tokens\), so that mode would be full attention: give a layer file calibrated with a smaller window, or longer contexts$/,
      ],
      // Both kinds at once: both remedies.
      [
        {
          window: 1020,
          layerFile: layerFileOf(500),
        },
        /fits in the sink \+ window of modes "auto 25%" \(1024 tokens\), .*"fixed 33%" \(504 tokens\), .*give a smaller window \(e\.g\. 25\), or a layer file calibrated with a smaller window, or longer contexts$/,
      ],
      [{ window: 300 }, /eval: perplexity at context 400 scores its second half given the first 200 tokens, which fit in .*\(304 tokens\)/],
      [{ window: 300, perplexity: false }, null],
      [{ window: 300, autoFractions: [] }, null],
      [{ window: 0, autoFractions: [], randomSeeds: [], streamingAll: false }, null],
      [{ window: 1020, autoFractions: [], randomSeeds: [], streamingAll: false }, null],
      [{ window: 48, sink: -1 }, /eval: sink and window \(of the auto, random and streaming-all modes\): hybrid\.sink must be/],
      [
        { window: 48, autoFractions: [0.125, 0.13] },
        /eval: two modes are both named "auto 13%" \(fractions that round to the same percentage\)/,
      ],
    ])("%j: the modes and contexts are checked before any sample", async (settings, message) => {
      const config = { ...resolveEvalConfig([{ contexts: [400], tasks: ["passkey"], depths: [0.5], seeds: [0] }], false), ...settings };
      let progressed = false;
      const run = runEval(model, config as EvalConfig, { onProgress: () => (progressed = true) });
      if (message) {
        await expect(run).rejects.toThrow(message);
        expect(progressed).toBe(false);
      } else await expect(run).resolves.toMatchObject({ layers: 3 });
    });

    test("an abort while the samples are being built stops the run there, before every sample is built", async () => {
      const controller = new AbortController();
      const makeOne = tasks.makeSample;
      const built = jest.spyOn(tasks, "makeSample");
      const stopAt = rng.int(1, 3);
      built.mockImplementation((...args) => {
        if (built.mock.calls.length === stopAt) controller.abort(new Error("interrupted"));
        return makeOne(...args);
      });
      try {
        const settings = { contexts: [400], tasks: ["passkey" as const], depths: [0.25, 0.5, 0.75], seeds: [0, 1, 2], window: 48 };
        let progressed = false;
        await expect(
          runEval(model, resolveEvalConfig([settings], false), { signal: controller.signal, onProgress: () => (progressed = true) }),
        ).rejects.toThrow("interrupted");
        expect({ built: built.mock.calls.length, progressed }).toEqual({ built: stopAt, progressed: false });
      } finally {
        built.mockRestore();
      }
    });

    test("a sliding-window model: hybrid modes are refused before any sample, full attention alone runs", async () => {
      const mistral = await loadModel(path.join(fixtureRoot, "mistral-tiny"), { device: "cpu", kvCacheBytes: 16 * 2 ** 20 });
      try {
        const base = resolveEvalConfig(
          [{ contexts: [400], tasks: ["passkey"], depths: [rng.next()], seeds: [randomSeed()], window: 48 }],
          false,
        );
        let progressed = false;
        await expect(
          runEval(mistral, { ...base, randomSeeds: [], streamingAll: false }, { onProgress: () => (progressed = true) }),
        ).rejects.toThrow(
          /eval: this model uses a sliding window \(sliding_window \d+\), so it has no full-attention layers to make lazy; evaluate full attention only/,
        );
        expect(progressed).toBe(false);
        const fullOnly = { ...base, autoFractions: [], randomSeeds: [], streamingAll: false };
        const report = await runEval(mistral, fullOnly);
        expect(report.samples.map((r) => r.mode)).toEqual(["full"]);
      } finally {
        await mistral.dispose();
      }
    });

    test("a context of max_position_embeddings: every prompt leaves room for its answer and extra tokens", async () => {
      const limit = model.config.maxPositionEmbeddings;
      const extraTokens = rng.int(1, 64);
      const settings = { contexts: [limit], tasks: ["passkey" as const], depths: [rng.next()], seeds: [randomSeed()], extraTokens };
      const none = { autoFractions: [], randomSeeds: [], streamingAll: false, perplexity: false };
      const report = await runEval(model, { ...resolveEvalConfig([settings], false), ...none } as EvalConfig);
      expect(report.samples).toHaveLength(1);
      const [sample] = report.samples;
      const answerTokens = model.tokenizer.encode(` ${sample.answer}`, { addSpecialTokens: false }).length;
      expect(sample.context).toBe(limit);
      expect(sample.promptTokens + answerTokens + extraTokens).toBeLessThanOrEqual(limit);
      // Short by less than the filler word that did not fit.
      expect(sample.promptTokens + answerTokens + extraTokens).toBeGreaterThan(limit - longestFillerWord(model.tokenizer, brownCorpus()));
      expect(report.maxPositions).toBe(limit);
      expect(markdownReport(report)).toContain(
        `Prompts of ${sample.promptTokens}–${sample.promptTokens} tokens: at the model's max_position_embeddings (${limit}) each leaves room for its answer and ${extraTokens} tokens more.`,
      );
    });

    test.each([
      ["its own sink and window, naming the fixed mode", { window: 0 }, /eval: mode "fixed 33%": hybrid\.window must be/],
      [
        "the model it was calibrated on",
        { model: "other", layers: 8 },
        /eval: the layer file was calibrated on a model of 8 layers \(other\); this one has 3\. Run lighttransfer calibrate on this model/,
      ],
    ])("a layer file is checked before any sample: %s", async (_, change, message) => {
      const layerFile = { ...layerFileOf(48), ...change };
      const config = { ...resolveEvalConfig([{ contexts: [400], window: 48 }], false), layerFile } as EvalConfig;
      await expect(runEval(model, config)).rejects.toThrow(message);
    });
  });
});
