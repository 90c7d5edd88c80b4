// Packaging: which platform package the loader looks for, the order it tries binaries in, what
// its error says, and that native/sources.txt (read by CMake and by binding.gyp) names every C++
// source, so the node-gyp and CMake builds cannot drift apart.
import * as fs from "node:fs";
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
  });
});

describe("addon loader order", () => {
  test("LIGHTTRANSFER_ADDON, then the platform package, then build/Release and build/Debug", () => {
    const candidates = addonCandidates({ LIGHTTRANSFER_ADDON: "some/where/lighttransfer.node" });
    expect(candidates[0]).toBe(path.resolve("some/where/lighttransfer.node"));
    expect(candidates[1]).toContain(path.join(...platformPackageName().split("/"), "lighttransfer.node"));
    expect(candidates.slice(2)).toEqual([
      path.join(root, "build", "Release", "lighttransfer.node"),
      path.join(root, "build", "Debug", "lighttransfer.node"),
    ]);
    expect(addonCandidates({})).toEqual(candidates.slice(1));
  });

  test("when nothing loads, the error names the platform package and how to build from source", () => {
    expect(() => loadAddon(["/nonexistent/lighttransfer.node"])).toThrow(
      new RegExp(`${platformPackageName()}[\\s\\S]*npm rebuild lighttransfer --build-from-source[\\s\\S]*node-gyp builds the CPU backend`),
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
    expect(fs.readFileSync(path.join(root, "CMakeLists.txt"), "utf8")).toMatch(/file\(STRINGS \$\{CMAKE_SOURCE_DIR\}\/native\/sources\.txt/);
    expect(fs.readFileSync(path.join(root, "binding.gyp"), "utf8")).toContain('"sources": ["<!@(node scripts/native-sources.js)"]');
  });
});
