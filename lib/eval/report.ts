// An evaluation report as people read it: markdown tables per context (modes × tasks, as in the
// LightTransfer paper: exact match with perplexity, then RULER's string match) and two SVG plots of
// exact match, accuracy against context per mode and accuracy against the share of full layers.
// Every number shown comes from the report's accuracy cells and perplexity results, so the JSON,
// the table and the plots agree.
import { streamingDefaults } from "../common/geometry";
import { defaultEvalSettings } from "./config";
import { type AccuracyCell, type EvalReport, type SampleResult, wilsonInterval } from "./harness";
import type { EvalMode } from "./modes";

/**
 * Mean accuracy (exact match, or with `score` "rulerScore" RULER's string match) over the report's
 * tasks of one mode at one context, or at all contexts (undefined if it has none).
 * @example averageAccuracy(report, "auto 50%", 4096)
 */
export function averageAccuracy(
  report: EvalReport,
  mode: string,
  context?: number,
  score: "accuracy" | "rulerScore" = "accuracy",
): number | undefined {
  const cells = report.accuracy.filter((c) => c.mode === mode && (context === undefined || c.context === context));
  return cells.length ? cells.reduce((a, c) => a + c[score], 0) / cells.length : undefined;
}

/**
 * Perplexity of one mode at one context over all its windows' scored tokens together (undefined
 * if none were scored).
 * @example meanPerplexity(report, "auto 50%", 4096)
 */
export function meanPerplexity(report: EvalReport, mode: string, context: number): number | undefined {
  const runs = report.perplexity.filter((p) => p.mode === mode && p.context === context);
  // exp of the mean negative log-likelihood over every scored token, as one long text would give
  const tokens = runs.reduce((a, p) => a + p.tokens, 0);
  return tokens ? Math.exp(runs.reduce((a, p) => a + p.tokens * Math.log(p.perplexity), 0) / tokens) : undefined;
}

const pct = (x: number | undefined) => (x === undefined ? "–" : (100 * x).toFixed(1));

/** A mode's lazy layers' sink + window ("–" for full attention): the fixed mode has its layer file's, the others the settings'. */
const ringShape = ({ kind, hybrid }: EvalMode) =>
  kind === "off" ? "–" : `${hybrid.sink ?? streamingDefaults.sink} + ${hybrid.window ?? streamingDefaults.window}`;

/**
 * The report as markdown: for each context, one row per mode with its share of full layers, its
 * lazy layers' sink + window, its exact-match accuracy (%) at each task, their average, and its
 * perplexity on held-out text; then
 * the same rows in RULER's string match (left out for a report written before it was scored).
 * @example fs.writeFileSync("eval.md", markdownReport(report));
 */
export function markdownReport(report: EvalReport): string {
  const { tasks, contexts, depths, seeds } = report.config;
  const lines = [
    `# Quality: ${report.model}`,
    "",
    `${report.layers} layers; accuracy (%) by exact match of the greedy answer over depths ${depths.join(", ")} and seeds ${seeds.join(", ")}; ` +
      "perplexity of the second half of held-out Brown-corpus windows given the first.",
  ];
  const extraTokens = report.config.extraTokens ?? defaultEvalSettings.extraTokens;
  for (const context of contexts) {
    const contextCells = report.accuracy.filter((c) => c.context === context);
    const scores = (mode: string, score: "accuracy" | "rulerScore") =>
      tasks.map((t) => pct(contextCells.find((c: AccuracyCell) => c.mode === mode && c.task === t)?.[score])).join(" | ");
    lines.push("", `## Context ${context} tokens`, "");
    lines.push(`| mode | full layers | sink + window | ${tasks.join(" | ")} | average | perplexity |`);
    lines.push(`| --- | ---: | ---: | ${tasks.map(() => "---:").join(" | ")} | ---: | ---: |`);
    for (const mode of report.modes) {
      const ppl = meanPerplexity(report, mode.name, context);
      lines.push(
        `| ${mode.name} | ${pct(mode.fullFraction)}% | ${ringShape(mode)} | ${scores(mode.name, "accuracy")} | ${pct(averageAccuracy(report, mode.name, context))} | ${ppl === undefined ? "–" : ppl.toFixed(2)} |`,
      );
    }
    if (contextCells.length) lines.push("", sampleNote(Math.min(...contextCells.map((c) => c.samples))));
    const here = report.samples.filter((s) => s.context === context);
    const prompts = here.map((s) => s.promptTokens);
    // makeSample cuts a prompt whose context, answer and extra tokens pass the limit (every answer
    // takes a token at least, where a report did not keep the answer's length).
    const cut = (s: SampleResult) => context + (s.answerTokens ?? 1) + extraTokens > report.maxPositions!;
    if (report.maxPositions !== undefined && here.some(cut))
      lines.push(
        "",
        `Prompts of ${Math.min(...prompts)}–${Math.max(...prompts)} tokens: at the model's max_position_embeddings (${report.maxPositions}) each leaves room for its answer and ${extraTokens} tokens more.`,
      );
    if (!contextCells.some((c) => typeof c.rulerScore === "number")) continue;
    lines.push(
      "",
      `RULER's string match (%) of the same answers: the share of each answer's numbers or names found anywhere in the output, in any order, as RULER and the LightTransfer paper score (within the answer's length and ${extraTokens} tokens more; RULER gives 128).`,
      "",
      `| mode | ${tasks.join(" | ")} | average |`,
      `| --- | ${tasks.map(() => "---:").join(" | ")} | ---: |`,
    );
    for (const mode of report.modes)
      lines.push(
        `| ${mode.name} | ${scores(mode.name, "rulerScore")} | ${pct(averageAccuracy(report, mode.name, context, "rulerScore"))} |`,
      );
  }
  return `${lines.join("\n")}\n`;
}

/** How far a task cell of n samples can be trusted, in the words of its 95% Wilson interval. */
function sampleNote(n: number): string {
  const right = Math.round(0.8 * n);
  const [low, high] = wilsonInterval(right, n);
  return (
    `Each task cell is ${n} samples: ${right} right (${pct(right / n)}%) has the 95% interval ` +
    `${pct(low)}–${pct(high)}% (Wilson; every cell's interval is in the JSON's accuracy list).`
  );
}

const xmlText = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

// Plot geometry: a 640 × 400 canvas, the axes' box inset for labels and the legend on the right.
const size = { width: 640, height: 400 };
const box = { left: 56, right: 470, top: 36, bottom: 350 };
const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/** y pixel of an accuracy in [0, 1]. */
const yOf = (accuracy: number) => box.bottom - accuracy * (box.bottom - box.top);

function frame(title: string, xLabel: string, xTicks: Array<{ x: number; label: string }>, body: string[], legend: string[]): string {
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map(
    (a) =>
      `<line x1="${box.left}" x2="${box.right}" y1="${yOf(a)}" y2="${yOf(a)}" stroke="#ddd"/>` +
      `<text x="${box.left - 6}" y="${yOf(a) + 4}" text-anchor="end" font-size="11">${a * 100}</text>`,
  );
  const xs = xTicks.map((t) => `<text x="${t.x}" y="${box.bottom + 16}" text-anchor="middle" font-size="11">${xmlText(t.label)}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size.width}" height="${size.height}" viewBox="0 0 ${size.width} ${size.height}" font-family="sans-serif">`,
    `<rect width="${size.width}" height="${size.height}" fill="white"/>`,
    `<text x="${size.width / 2}" y="20" text-anchor="middle" font-size="14">${xmlText(title)}</text>`,
    ...yTicks,
    `<rect x="${box.left}" y="${box.top}" width="${box.right - box.left}" height="${box.bottom - box.top}" fill="none" stroke="#333"/>`,
    ...xs,
    `<text x="${(box.left + box.right) / 2}" y="${box.bottom + 36}" text-anchor="middle" font-size="12">${xmlText(xLabel)}</text>`,
    `<text transform="translate(16 ${(box.top + box.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12">accuracy (%)</text>`,
    ...body,
    ...legend,
    "</svg>",
    "",
  ].join("\n");
}

function legendEntry(i: number, name: string, color: string): string {
  const y = box.top + 8 + i * 18;
  return `<g class="legend"><rect x="${box.right + 14}" y="${y - 8}" width="12" height="12" fill="${color}"/><text x="${box.right + 32}" y="${y + 2}" font-size="12">${xmlText(name)}</text></g>`;
}

/**
 * Accuracy (averaged over tasks) against context length, one line per mode; contexts are spaced
 * evenly in increasing order. Each point carries data-mode, data-context and data-accuracy.
 * @example fs.writeFileSync("accuracy-vs-context.svg", accuracyVsContextSvg(report));
 */
export function accuracyVsContextSvg(report: EvalReport): string {
  const contexts = [...report.config.contexts].sort((a, b) => a - b);
  const xOf = (i: number) =>
    contexts.length === 1 ? (box.left + box.right) / 2 : box.left + 24 + (i * (box.right - box.left - 48)) / (contexts.length - 1);
  const body: string[] = [],
    legend: string[] = [];
  report.modes.forEach((mode, m) => {
    const color = palette[m % palette.length];
    const points = contexts
      .map((context, i) => ({ context, x: xOf(i), accuracy: averageAccuracy(report, mode.name, context) }))
      .filter((p): p is { context: number; x: number; accuracy: number } => p.accuracy !== undefined);
    body.push(
      `<g class="series" data-mode="${xmlText(mode.name)}">`,
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.map((p) => `${p.x},${yOf(p.accuracy)}`).join(" ")}"/>`,
      ...points.map(
        (p) =>
          `<circle cx="${p.x}" cy="${yOf(p.accuracy)}" r="3.5" fill="${color}" data-mode="${xmlText(mode.name)}" data-context="${p.context}" data-accuracy="${p.accuracy}"/>`,
      ),
      "</g>",
    );
    legend.push(legendEntry(m, mode.name, color));
  });
  const ticks = contexts.map((c, i) => ({ x: xOf(i), label: c >= 1024 && c % 1024 === 0 ? `${c / 1024}K` : String(c) }));
  return frame("Accuracy vs context length", "context (tokens)", ticks, body, legend);
}

/**
 * Accuracy (averaged over tasks and contexts) against the share of layers kept full, one point per
 * mode; full attention, the auto fractions and streaming-all are joined by a line. Each point
 * carries data-mode, data-fraction and data-accuracy.
 * @example fs.writeFileSync("accuracy-vs-fraction.svg", accuracyVsFractionSvg(report));
 */
export function accuracyVsFractionSvg(report: EvalReport): string {
  const xOf = (f: number) => box.left + 12 + f * (box.right - box.left - 24);
  const body: string[] = [],
    legend: string[] = [];
  const points = report.modes
    .map((mode, m) => ({ mode, m, accuracy: averageAccuracy(report, mode.name) }))
    .filter((p): p is { mode: (typeof report.modes)[number]; m: number; accuracy: number } => p.accuracy !== undefined);
  const line = points
    .filter((p) => p.mode.kind !== "random" && p.mode.kind !== "fixed")
    .sort((a, b) => a.mode.fullFraction - b.mode.fullFraction);
  body.push(
    `<polyline fill="none" stroke="#999" stroke-width="1.5" stroke-dasharray="4 3" points="${line.map((p) => `${xOf(p.mode.fullFraction)},${yOf(p.accuracy)}`).join(" ")}"/>`,
  );
  for (const p of points) {
    const color = palette[p.m % palette.length];
    body.push(
      `<circle cx="${xOf(p.mode.fullFraction)}" cy="${yOf(p.accuracy)}" r="4.5" fill="${color}" data-mode="${xmlText(p.mode.name)}" data-fraction="${p.mode.fullFraction}" data-accuracy="${p.accuracy}"/>`,
    );
    legend.push(legendEntry(p.m, p.mode.name, color));
  }
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => ({ x: xOf(f), label: `${f * 100}%` }));
  return frame("Accuracy vs share of full layers", "layers kept full", ticks, body, legend);
}
