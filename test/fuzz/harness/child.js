// A child process of the fuzz suite: runs one batch of cases of one suite and reports each on
// stdout as a JSON line, {"start": i} before case i and {"done": i, "ok", "message"} after it.
// stdout to a pipe is synchronous on Linux, so the parent knows which case was running if this
// process dies. Usage: node child.js <cases module> <batch file>

require("../../helpers/register-ts");
const fs = require("node:fs");
const { decodeCase } = require("./codec.ts");

async function main() {
  const [modulePath, batchFile] = process.argv.slice(2);
  const suite = require(modulePath);
  const batch = decodeCase(fs.readFileSync(batchFile, "utf8"));
  const say = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
  for (const { index, input } of batch) {
    say({ start: index });
    let ok = true,
      message = "";
    try {
      await suite.runCase(input);
    } catch (err) {
      ok = false;
      // The message only: stack lines in it would make jest print code frames of this runner.
      message = err instanceof Error ? `${err.name}: ${err.message}` : `a non-Error was thrown: ${String(err)}`;
    }
    say({ done: index, ok, message });
  }
  await suite.teardown?.();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`fuzz child failed outside any case: ${err?.stack ? err.stack : err}\n`);
    process.exit(70);
  },
);
