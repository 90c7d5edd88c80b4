// Packaging: which platform package the loader looks for, the order it tries binaries in, what
// its error says, and that native/sources.txt (read by CMake and by binding.gyp) names every C++
// source, so the node-gyp and CMake builds cannot drift apart.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { addonCandidates, loadAddon, platformPackageName } from "../lib/runtime/native";

const root = path.join(__dirname, "..");
const { nativeSources } = require("../scripts/native-sources.js") as { nativeSources(): string[] };

describe("platform packages", () => {
  test.each([
    ["linux", "x64", true, "@lighttransfer/linux-x64-gnu"],
    ["linux", "x64", false, "@lighttransfer/linux-x64-musl"],
    ["linux", "arm64", true, "@lighttransfer/linux-arm64-gnu"],
    ["darwin", "arm64", false, "@lighttransfer/darwin-arm64"],
    ["win32", "x64", false, "@lighttransfer/win32-x64"],
  ] as const)("%s %s (glibc %s) is %s", (platform, arch, glibc, name) => {
    expect(platformPackageName(platform, arch, glibc)).toBe(name);
  });

  test("the linux-x64-gnu package in npm/ has the name, os, cpu and libc the loader expects", () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(root, "npm", "linux-x64-gnu", "package.json"), "utf8"));
    expect(manifest.name).toBe(platformPackageName("linux", "x64", true));
    expect(manifest).toMatchObject({ os: ["linux"], cpu: ["x64"], libc: ["glibc"], files: ["lighttransfer.node"] });
    const main = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
    expect(manifest.version).toBe(main.version);
    expect(manifest.engines).toEqual(main.engines);
    expect(manifest.license).toBe(main.license);
  });

  test("Node's floor is what the dependencies ask for (cmake-js, the strictest), and the README says so", () => {
    const main = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
    const cmakeJs = JSON.parse(fs.readFileSync(require.resolve("cmake-js/package.json"), "utf8"));
    expect(main.engines.node).toBe(cmakeJs.engines.node);
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8").replace(/\s+/g, " ");
    expect(readme).toContain("Needs Node.js 20.17 or later on the 20 line, or 22.9 or later (not 21)");
  });

  test("the Apache-2.0 licence the packages declare is in the repository, and release.js ships it in both", () => {
    expect(fs.readFileSync(path.join(root, "LICENSE"), "utf8")).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004/);
    const release = fs.readFileSync(path.join(root, "scripts", "release.js"), "utf8");
    expect(release).toMatch(/const mainFiles = \[[^\]]*"LICENSE"/);
    expect(release).toContain('checkContents(platformReport, ["package.json", "README.md", "LICENSE", "lighttransfer.node"]');
  });
});

describe("addon loader order", () => {
  test("a build from source (build/Release, build/Debug), then the platform package; LIGHTTRANSFER_ADDON's file alone", () => {
    // A source build asked for on a platform with a prebuilt (for an older driver's CUDA, say) is the one loaded.
    const candidates = addonCandidates({});
    expect(candidates.slice(0, 2)).toEqual([
      path.join(root, "build", "Release", "lighttransfer.node"),
      path.join(root, "build", "Debug", "lighttransfer.node"),
    ]);
    expect(candidates[2]).toContain(path.join(...platformPackageName().split("/"), "lighttransfer.node"));
    expect(candidates).toHaveLength(3);
    expect(addonCandidates({ LIGHTTRANSFER_ADDON: "some/where/lighttransfer.node" })).toEqual([
      path.resolve("some/where/lighttransfer.node"),
    ]);
  });

  test("a LIGHTTRANSFER_ADDON file that is missing or does not load is an error, not a fallback to another addon", () => {
    const notAnAddon = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-addon-")), "lighttransfer.node");
    fs.writeFileSync(notAnAddon, "not a shared object");
    for (const file of [path.join(path.dirname(notAnAddon), "missing.node"), notAnAddon]) {
      const child = spawnSync(
        process.execPath,
        ["-e", `console.log(require(${JSON.stringify(path.join(root, "dist", "lib"))}).addonPath())`],
        { encoding: "utf8", env: { ...process.env, LIGHTTRANSFER_ADDON: file } },
      );
      expect(child.status).not.toBe(0);
      expect(child.stdout).toBe("");
      expect(child.stderr).toContain(`Looked for:\n  ${file}: ${file === notAnAddon ? "" : "not found"}`);
      expect(child.stderr).toContain("LIGHTTRANSFER_ADDON is set, so only its file was tried");
    }
    fs.rmSync(path.dirname(notAnAddon), { recursive: true });
  });

  test("addonPath() names the file the addon loads from, loading it if nothing has yet", () => {
    // In a fresh process, so that no earlier call has loaded the addon.
    const child = spawnSync(
      process.execPath,
      ["-e", `console.log(require(${JSON.stringify(path.join(root, "dist", "lib"))}).addonPath())`],
      {
        encoding: "utf8",
      },
    );
    expect(child.stderr).toBe("");
    const file = child.stdout.trim();
    expect(addonCandidates()).toContain(file);
    expect(fs.existsSync(file)).toBe(true);
  });

  test("when nothing loads, the error names the platform package and how to build from source", () => {
    expect(() => loadAddon(["/nonexistent/lighttransfer.node"])).toThrow(
      new RegExp(
        `${platformPackageName()}[\\s\\S]*LIGHTTRANSFER_BUILD_FROM_SOURCE=1 npm rebuild lighttransfer[\\s\\S]*node-gyp builds the CPU backend`,
      ),
    );
  });
});

describe("one source list for CMake and node-gyp", () => {
  function cppFilesUnder(dir: string): string[] {
    return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) return cppFilesUnder(rel);
      return entry.name.endsWith(".cpp") ? [rel] : [];
    });
  }

  test("native/sources.txt names every .cpp file under native/", () => {
    expect([...nativeSources()].sort()).toEqual(cppFilesUnder("native").sort());
  });

  test("CMakeLists.txt and binding.gyp both read it", () => {
    expect(fs.readFileSync(path.join(root, "CMakeLists.txt"), "utf8")).toMatch(
      /file\(STRINGS \$\{CMAKE_SOURCE_DIR\}\/native\/sources\.txt/,
    );
    expect(fs.readFileSync(path.join(root, "binding.gyp"), "utf8")).toContain('"sources": ["<!@(node scripts/native-sources.js)"]');
  });
});

describe("the published type declarations", () => {
  // pretest compiles lib/ into dist/; the declarations users get are dist/lib/**/*.d.ts.
  test("compile on their own under strict settings, with library checking on", () => {
    const ts = require("typescript") as typeof import("typescript");
    const consumer = path.join(root, "dist", "consumer-check.ts");
    fs.writeFileSync(
      consumer,
      [
        `import { loadModel, Tensor, kernels, type GenerateResult } from "./lib";`,
        `export async function use(dir: string): Promise<GenerateResult[]> {`,
        `  const x = Tensor.from(Float32Array.of(1, 2, 3, 4), [1, 4]);`,
        `  kernels.rmsNorm({ x, weight: Tensor.from(Float32Array.of(1, 1, 1, 1), [4]) }).dispose();`,
        `  await using model = await loadModel(dir, { device: "cpu" });`,
        `  for await (const chunk of model.createSession().generate("hello", { maxNewTokens: 2 })) console.log(chunk.text);`,
        `  return model.generateBatch(["a", "b"], { maxNewTokens: 2 });`,
        `}`,
      ].join("\n"),
    );
    try {
      const program = ts.createProgram([consumer], {
        strict: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        lib: ["lib.es2022.d.ts", "lib.esnext.disposable.d.ts"],
        skipLibCheck: false,
        noEmit: true,
        types: ["node"],
      });
      const messages = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      expect(messages).toEqual([]);
    } finally {
      fs.rmSync(consumer, { force: true });
    }
  });

  test("leave out what is marked @internal", () => {
    const sources = fs.readdirSync(path.join(root, "lib"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    let checked = 0;
    for (const file of sources) {
      const source = fs.readFileSync(path.join(root, "lib", file), "utf8");
      const internal = [...source.matchAll(/@internal[^\n]*\n\s*(?:readonly\s+|private\s+)?(\w+)/g)].map((m) => m[1]);
      if (!internal.length) continue;
      const declaration = fs.readFileSync(path.join(root, "dist", "lib", file.replace(/\.ts$/, ".d.ts")), "utf8");
      for (const name of internal) {
        if (name === "constructor") expect(declaration).not.toMatch(/^\s*constructor\(/m);
        else expect(declaration).not.toMatch(new RegExp(`^\\s*(readonly\\s+)?${name}[(:<]`, "m"));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });
});
