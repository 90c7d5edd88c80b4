// Lets a plain `node` child process require the TypeScript sources directly, as ts-jest does for
// the tests themselves: `node -r ./test/helpers/register-ts.js script.js`, or require this file
// first. Each file is transpiled once (no type check: ts-jest does that) and kept in a cache under
// the OS temp folder, keyed by its path and contents, so a child starts in a fraction of a second
// and TypeScript itself is loaded only when something changed.

const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const cacheDir = path.join(os.tmpdir(), "lighttransfer-test-transpiled");
let typescript;

function transpile(filename, source) {
  typescript ??= require("typescript");
  return typescript.transpileModule(source, {
    fileName: filename,
    compilerOptions: {
      module: typescript.ModuleKind.CommonJS,
      target: typescript.ScriptTarget.ES2022,
      esModuleInterop: true,
      inlineSourceMap: true,
    },
  }).outputText;
}

fs.mkdirSync(cacheDir, { recursive: true });
require.extensions[".ts"] = (module, filename) => {
  const source = fs.readFileSync(filename, "utf8");
  const key = crypto.createHash("sha256").update(filename).update("\0").update(source).digest("hex");
  const cached = path.join(cacheDir, `${key}.js`);
  let code;
  try {
    code = fs.readFileSync(cached, "utf8");
  } catch {
    code = transpile(filename, source);
    // Written under a unique name and renamed, so concurrent children never read half a file.
    const temporary = `${cached}.${process.pid}.tmp`;
    fs.writeFileSync(temporary, code);
    fs.renameSync(temporary, cached);
  }
  module._compile(code, filename);
};
