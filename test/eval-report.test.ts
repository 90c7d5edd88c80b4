// The evaluation's outputs: the markdown table and the two SVG plots are well-formed and show the
// numbers of the report they come from. A report of random outcomes stands in for a run, so every
// accuracy differs; the JSON a run writes is checked the same way in cli-eval.test.ts.
import { XMLParser, XMLValidator } from "fast-xml-parser";
import {
  accuracyCells,
  accuracyVsContextSvg,
  accuracyVsFractionSvg,
  averageAccuracy,
  type EvalReport,
  evalModes,
  markdownReport,
  meanPerplexity,
  resolveEvalConfig,
  type SampleResult,
  wilsonInterval,
} from "../lib";
import { Random } from "./helpers/reference";

const rng = new Random();

/** A report over 8 layers with random answers (right with a per-mode probability) and perplexities. */
/** A table cell printed with `digits` decimals holds `value` to within half a unit of its last digit (31.25 may print as 31.3). */
function expectPrinted(cell: string, value: number, digits: number): void {
  expect(Math.abs(Number(cell) - value)).toBeLessThanOrEqual(0.5 * 10 ** -digits + 1e-9);
}

function randomReport(): EvalReport {
  const config = resolveEvalConfig(
    [{ contexts: [1024, 4096, 2048], depths: [0, 0.5, 1], seeds: [0, 1, 2], autoFractions: [0.25, 0.5], randomSeeds: [3, 4] }],
    false,
  );
  // The fixed mode's sink and window are its layer file's own, unlike the other modes'.
  config.sink = rng.int(0, 16);
  config.window = rng.int(16, 512);
  const fileShape = { sink: rng.int(0, 16), window: config.window + rng.int(1, 64) };
  config.layerFile = {
    model: "m",
    layers: 8,
    fullLayers: 4,
    prompts: 1,
    counts: [],
    lazyLayers: [1, 3, 5, 7],
    lastQueries: 32,
    ...fileShape,
  };
  const modes = evalModes(8, config);
  const samples: SampleResult[] = [];
  const perplexity: EvalReport["perplexity"] = [];
  for (const mode of modes) {
    const skill = rng.next();
    for (const task of config.tasks)
      for (const context of config.contexts) {
        for (const depth of config.depths)
          for (const seed of config.seeds)
            samples.push({
              mode: mode.name,
              task,
              context,
              depth,
              seed,
              promptTokens: context,
              depthReached: depth,
              answer: "1",
              references: ["1"],
              output: "",
              correct: rng.next() < skill,
              rulerScore: rng.int(0, 4) / 4,
              lazyLayers: [],
            });
        for (const seed of config.seeds)
          perplexity.push({ mode: mode.name, context, seed, tokens: context / 2, perplexity: 5 + 20 * rng.next(), lazyLayers: [] });
      }
  }
  return { model: "random <model> & co", layers: 8, config, modes, samples, perplexity, accuracy: accuracyCells(samples) };
}

describe(`seed ${rng.seed}`, () => {
  describe("markdownReport", () => {
    test("a context at the model's max_position_embeddings says how long its prompts were; the others say nothing", () => {
      const report = randomReport();
      const extra = report.config.extraTokens;
      const limit = 4096 + rng.int(0, extra);
      const cut = report.samples.map((s) => (s.context === 4096 ? { ...s, promptTokens: limit - extra - rng.int(1, 30) } : s));
      const lengths = cut.filter((s) => s.context === 4096).map((s) => s.promptTokens);
      const md = markdownReport({ ...report, samples: cut, maxPositions: limit });
      const note = `Prompts of ${Math.min(...lengths)}–${Math.max(...lengths)} tokens: at the model's max_position_embeddings (${limit}) each leaves room for its answer and ${extra} tokens more.`;
      const section = (context: number) => md.split(/^## Context /m).find((s) => s.startsWith(`${context} tokens`)) ?? "";
      expect(section(4096)).toContain(note);
      expect(section(2048)).not.toContain("Prompts of");
      expect(markdownReport({ ...report, samples: cut, maxPositions: 4096 + extra + 1 })).not.toContain("Prompts of");
      expect(markdownReport(report)).not.toContain("Prompts of"); // a report from before maxPositions was kept
      // A long answer cuts a prompt whose context and extra tokens alone fit: the note says so too.
      const answer = rng.int(2, 40);
      const withAnswers = cut.map((s) => ({ ...s, answerTokens: answer }));
      const roomy = 4096 + extra + answer - 1;
      expect(markdownReport({ ...report, samples: withAnswers, maxPositions: roomy })).toContain("Prompts of");
      expect(markdownReport({ ...report, samples: withAnswers, maxPositions: roomy + 1 })).not.toContain("Prompts of");
    });

    test("two tables per context, a row per mode: exact-match accuracy and perplexity, then RULER's string match", () => {
      const report = randomReport();
      const md = markdownReport(report);
      const sections = md.split(/^## Context (\d+) tokens$/m).slice(1);
      expect(sections.filter((_, i) => i % 2 === 0).map(Number)).toEqual(report.config.contexts);
      for (let s = 0; s < sections.length; s += 2) {
        const context = Number(sections[s]);
        const lines = sections[s + 1].trim().split("\n");
        // The tables: runs of lines starting with "|".
        const tables: string[][][] = [];
        lines.forEach((line, i) => {
          if (!line.startsWith("|")) return;
          if (i === 0 || !lines[i - 1].startsWith("|")) tables.push([]);
          tables[tables.length - 1].push(
            line
              .split("|")
              .slice(1, -1)
              .map((c) => c.trim()),
          );
        });
        expect(tables).toHaveLength(2);
        const [rows, rulerRows] = tables;
        expect(rows[0]).toEqual(["mode", "full layers", "sink + window", ...report.config.tasks, "average", "perplexity"]);
        expect(rows).toHaveLength(2 + report.modes.length);
        const { sink, window, layerFile } = report.config;
        rows.slice(2).forEach((row, m) => {
          const mode = report.modes[m];
          expect(row[0]).toBe(mode.name);
          expect(row[1]).toBe(`${(100 * mode.fullFraction).toFixed(1)}%`);
          const shape =
            mode.kind === "off" ? "–" : mode.kind === "fixed" ? `${layerFile!.sink} + ${layerFile!.window}` : `${sink} + ${window}`;
          expect(row[2]).toBe(shape);
          report.config.tasks.forEach((task, t) => {
            const cell = report.accuracy.find((c) => c.mode === mode.name && c.task === task && c.context === context)!;
            expectPrinted(row[3 + t], 100 * cell.accuracy, 1);
          });
          const tasks = report.config.tasks.length;
          expectPrinted(row[3 + tasks], 100 * averageAccuracy(report, mode.name, context)!, 1);
          expectPrinted(row[4 + tasks], meanPerplexity(report, mode.name, context)!, 2);
        });
        expect(report.modes.some((m) => m.kind === "fixed")).toBe(true);
        expect(rulerRows[0]).toEqual(["mode", ...report.config.tasks, "average"]);
        expect(rulerRows).toHaveLength(2 + report.modes.length);
        rulerRows.slice(2).forEach((row, m) => {
          const mode = report.modes[m];
          expect(row[0]).toBe(mode.name);
          report.config.tasks.forEach((task, t) => {
            const cell = report.accuracy.find((c) => c.mode === mode.name && c.task === task && c.context === context)!;
            expectPrinted(row[1 + t], 100 * cell.rulerScore, 1);
          });
          expectPrinted(row[1 + report.config.tasks.length], 100 * averageAccuracy(report, mode.name, context, "rulerScore")!, 1);
        });
        // 3 depths × 3 seeds per cell: 7 of 9 right is 77.8%, with the Wilson interval 45.3–93.7%.
        expect(lines).toContain(
          "Each task cell is 9 samples: 7 right (77.8%) has the 95% interval 45.3–93.7% (Wilson; every cell's interval is in the JSON's accuracy list).",
        );
      }
    });

    test("a mode's perplexity is that of all its windows' tokens together, not the mean of the windows'", () => {
      const report = randomReport();
      const a = 5 + 20 * rng.next(),
        b = 5 + 20 * rng.next(),
        tokensA = rng.int(1, 500),
        tokensB = rng.int(1, 500);
      report.perplexity = [
        { mode: "full", context: 4096, seed: 0, tokens: tokensA, perplexity: a, lazyLayers: [] },
        { mode: "full", context: 4096, seed: 1, tokens: tokensB, perplexity: b, lazyLayers: [] },
      ];
      // exp of the mean negative log-likelihood per token: NLL sums are tokens · log(perplexity)
      const want = Math.exp((tokensA * Math.log(a) + tokensB * Math.log(b)) / (tokensA + tokensB));
      expect(meanPerplexity(report, "full", 4096)).toBeCloseTo(want, 10);
      expect(meanPerplexity(report, "full", 2048)).toBeUndefined();
    });

    test("a report from before RULER's string match has no RULER table and no NaN", () => {
      const report = randomReport();
      for (const cell of report.accuracy) delete (cell as Partial<typeof cell>).rulerScore;
      const md = markdownReport(report);
      expect(md).not.toMatch(/RULER|NaN/);
      expect(md.split("\n").filter((l) => l.startsWith("| full |"))).toHaveLength(report.config.contexts.length);
    });

    test("modes or contexts without numbers show a dash", () => {
      const report = randomReport();
      report.perplexity = [];
      report.accuracy = report.accuracy.filter((c) => c.task !== "passkey");
      const rows = markdownReport(report)
        .split("\n")
        .filter((l) => l.startsWith("| full |"));
      expect(rows).toHaveLength(2 * report.config.contexts.length);
      for (const row of rows) {
        const cells = row.split("|").map((c) => c.trim());
        if (cells[2].endsWith("%")) {
          // exact match: | full | 100.0% | passkey | ... | perplexity |
          expect(cells[3]).toBe("–");
          expect(cells[cells.length - 2]).toBe("–");
        } else expect(cells[2]).toBe("–"); // RULER's string match: | full | passkey | ...
      }
    });
  });

  describe("accuracy cells", () => {
    test("a cell's accuracy is its share of exact matches and its rulerScore the mean of its samples'", () => {
      const report = randomReport();
      const one = report.samples.filter((r) => r.mode === "full" && r.task === "niah-multivalue" && r.context === 2048);
      for (const r of one) r.rulerScore = rng.int(0, 4) / 4;
      const [cell] = accuracyCells(one);
      expect(cell.samples).toBe(9);
      expect(cell.accuracy).toBe(one.filter((r) => r.correct).length / 9);
      expect(cell.rulerScore).toBeCloseTo(one.reduce((a, r) => a + r.rulerScore, 0) / 9, 12);
      expect(accuracyCells(one.slice(0, 3))[0].rulerScore).toBeCloseTo((one[0].rulerScore + one[1].rulerScore + one[2].rulerScore) / 3, 12);
    });
  });

  describe("accuracy intervals", () => {
    // Wilson score intervals at z = 1.96, worked out by hand from the textbook formula.
    test.each([
      [14, 20, 0.481, 0.8545],
      [0, 20, 0, 0.1611],
      [0, 6, 0, 0.39],
      [6, 6, 0.61, 1],
      [20, 20, 0.8389, 1],
      [7, 9, 0.4526, 0.9368],
      [1, 2, 0.0945, 0.9055],
    ])("%i of %i right: [%f, %f]", (right, n, low, high) => {
      const [l, h] = wilsonInterval(right, n);
      expect(l).toBeCloseTo(low, 3);
      expect(h).toBeCloseTo(high, 3);
      // None right or all right: the interval holds the accuracy exactly, not up to rounding.
      if (right === 0) expect(l).toBe(0);
      if (right === n) expect(h).toBe(1);
    });

    test.each([
      [21, 20],
      [-1, 5],
      [1.5, 4],
      [2, 3.5],
      [Number.NaN, 4],
    ])("%p of %p is refused: counts are whole and correct is at most samples", (right, n) => {
      expect(() => wilsonInterval(right, n)).toThrow(/wilsonInterval: needs whole counts with 0 <= correct <= samples, got/);
    });

    test("every cell's interval holds its accuracy, inside [0, 1], and narrows as samples grow", () => {
      const report = randomReport();
      for (const c of report.accuracy) {
        const right = Math.round(c.accuracy * c.samples);
        expect(c.interval95).toEqual(wilsonInterval(right, c.samples));
        expect(c.interval95[0]).toBeLessThanOrEqual(c.accuracy);
        expect(c.interval95[1]).toBeGreaterThanOrEqual(c.accuracy);
        expect(c.interval95[0]).toBeGreaterThanOrEqual(0);
        expect(c.interval95[1]).toBeLessThanOrEqual(1);
        const [l4, h4] = wilsonInterval(4 * right, 4 * c.samples);
        expect(h4 - l4).toBeLessThan(c.interval95[1] - c.interval95[0]);
      }
    });
  });

  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "" });

  /** Every element named `name` anywhere under `node`. */
  function elements(node: unknown, name: string): Array<Record<string, string>> {
    const found: Array<Record<string, string>> = [];
    const walk = (n: unknown) => {
      if (Array.isArray(n)) n.forEach(walk);
      else if (n && typeof n === "object")
        for (const [k, v] of Object.entries(n)) {
          if (k === name) found.push(...(Array.isArray(v) ? v : [v]));
          walk(v);
        }
    };
    walk(node);
    return found;
  }

  describe("SVG plots", () => {
    test("accuracy vs context: well-formed, a line per mode, a point per context at the report's average", () => {
      const report = randomReport();
      const svg = accuracyVsContextSvg(report);
      expect(XMLValidator.validate(svg)).toBe(true);
      const doc = parser.parse(svg);
      const points = elements(doc, "circle");
      expect(points).toHaveLength(report.modes.length * report.config.contexts.length);
      for (const p of points) expect(Number(p["data-accuracy"])).toBe(averageAccuracy(report, p["data-mode"], Number(p["data-context"])));
      expect(elements(doc, "polyline")).toHaveLength(report.modes.length);
      // Higher accuracy is drawn higher up; contexts run left to right in increasing order.
      for (const mode of report.modes) {
        const mine = points.filter((p) => p["data-mode"] === mode.name);
        const byContext = [...mine].sort((a, b) => Number(a["data-context"]) - Number(b["data-context"]));
        expect(byContext.map((p) => Number(p.cx))).toEqual([...byContext.map((p) => Number(p.cx))].sort((a, b) => a - b));
        // (Averages that differ only by rounding land on the same pixel.)
        for (const a of mine)
          for (const b of mine)
            if (Number(a["data-accuracy"]) > Number(b["data-accuracy"]) + 1e-9) expect(Number(a.cy)).toBeLessThan(Number(b.cy));
      }
      // The model's name is escaped, and legend entries name every mode.
      expect(svg).not.toContain("<model>");
      expect(elements(doc, "g").filter((g) => g.class === "legend")).toHaveLength(report.modes.length);
    });

    test("accuracy vs share of full layers: a point per mode at its fraction and overall average", () => {
      const report = randomReport();
      const svg = accuracyVsFractionSvg(report);
      expect(XMLValidator.validate(svg)).toBe(true);
      const points = elements(parser.parse(svg), "circle");
      expect(points.map((p) => p["data-mode"])).toEqual(report.modes.map((m) => m.name));
      for (const p of points) {
        const mode = report.modes.find((m) => m.name === p["data-mode"])!;
        expect(Number(p["data-fraction"])).toBe(mode.fullFraction);
        expect(Number(p["data-accuracy"])).toBe(averageAccuracy(report, mode.name));
      }
      const x = (name: string) => Number(points.find((p) => p["data-mode"] === name)!.cx);
      expect(x("streaming-all")).toBeLessThan(x("auto 25%"));
      expect(x("auto 25%")).toBeLessThan(x("auto 50%"));
      expect(x("auto 50%")).toBeLessThan(x("full"));
    });
  });
});
