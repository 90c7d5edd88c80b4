// Scores the outputs of an eval.json written before RULER's string match was part of the report
// (lib/eval rulerScore) and prints the report's markdown as `lighttransfer eval` now writes it.
// A sample's references are its own where the JSON has them, else taken apart from its answer as
// makeSample builds them: the values of a multi-value answer (", "), the names of a
// variable-tracking answer (" "), else the answer.
//   node tools/rescore_eval.js EVAL_JSON > eval.md
// Run from the repository root after `npm run build` (it loads dist/lib).
const fs = require("node:fs");
const { accuracyCells, markdownReport, rulerScore } = require("../dist/lib");

const file = process.argv[2];
if (!file) throw new Error("usage: node tools/rescore_eval.js EVAL_JSON");
const report = JSON.parse(fs.readFileSync(file, "utf8"));
const separators = { "niah-multivalue": ", ", "variable-tracking": " " };
for (const sample of report.samples) {
  const separator = separators[sample.task];
  sample.references ??= separator ? sample.answer.split(separator) : [sample.answer];
  sample.rulerScore = rulerScore(sample.output, sample.references);
}
report.accuracy = accuracyCells(report.samples);
process.stdout.write(markdownReport(report));
