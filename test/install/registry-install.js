#!/usr/bin/env node
// The install test, with a real registry and no mocks. Starts verdaccio on 127.0.0.1 (other
// packages are proxied from the npm registry), publishes the packages scripts/release.js packed,
// then, each in a fresh temporary project:
//   1. prebuilt: `npm install lighttransfer` with a PATH that holds node, npm and the usual
//      commands but no cmake, compiler, linker, make or nvcc; the platform package must be installed and used (no build/ folder),
//      then test/install/smoke.js: devices(), the tiny Llama fixture, 8 tokens full and hybrid.
//   2. fallback: `npm install lighttransfer --omit=optional`, as on a platform with no prebuilt,
//      with a compiler but no CMake: the install must say it found no prebuilt and is building
//      the CPU backend with node-gyp, and the smoke script must pass on that build.
// Verdaccio is stopped and the temporary folders removed at the end.
//   node test/install/registry-install.js [packages dir, default dist/packages] [--only prebuilt|fallback]

const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const root = path.join(__dirname, "..", "..");
const argv = process.argv.slice(2);
const only = argv.includes("--only") ? argv[argv.indexOf("--only") + 1] : null;
const packagesDir = path.resolve(
  argv.find((a, i) => !a.startsWith("--") && argv[i - 1] !== "--only") ?? path.join(root, "dist", "packages"),
);
const fixture = path.join(root, "test", "fixtures", "models", "llama-tiny");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "lighttransfer-install-"));
const started = Date.now();

function step(message) {
  console.log(`[install test ${((Date.now() - started) / 1000).toFixed(0)}s] ${message}`);
}

function fail(message) {
  throw new Error(message);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRegistry() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const upstream = process.env.npm_config_registry || "https://registry.npmjs.org/";
  const config = path.join(work, "verdaccio.yaml");
  fs.writeFileSync(
    config,
    [
      `storage: ${path.join(work, "storage")}`,
      "auth:",
      "  htpasswd:",
      `    file: ${path.join(work, "htpasswd")}`,
      "uplinks:",
      "  npmjs:",
      `    url: ${upstream}`,
      "packages:",
      // Ours are only ever served from here; everything else comes through from the npm registry.
      "  'lighttransfer':",
      "    access: $all",
      "    publish: $authenticated",
      "  '@lighttransfer/*':",
      "    access: $all",
      "    publish: $authenticated",
      "  '**':",
      "    access: $all",
      "    proxy: npmjs",
      // The platform package (the CUDA kernels of every architecture) is published base64 in
      // JSON, which outgrew verdaccio's 10 MB default; the npm registry takes far more.
      "max_body_size: 64mb",
      "log: { type: stdout, format: pretty, level: warn }",
      "",
    ].join("\n"),
  );
  const bin = require.resolve("verdaccio/bin/verdaccio");
  const server = spawn(process.execPath, [bin, "--config", config, "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  server.stdout.on("data", (d) => (output += d));
  server.stderr.on("data", (d) => (output += d));
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`${url}-/ping`);
      if (res.ok) return { url, server };
    } catch {
      // not listening yet
    }
    if (server.exitCode !== null) fail(`verdaccio exited (${server.exitCode}):\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  server.kill();
  fail(`verdaccio did not answer at ${url}:\n${output}`);
}

/** Registers a user (verdaccio's htpasswd allows sign-up) and writes an .npmrc with its token. */
async function npmrcFor(url) {
  const res = await fetch(`${url}-/user/org.couchdb.user:release`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "release", password: "release-test-password", type: "user", roles: [] }),
  });
  const body = await res.json();
  if (!body.token) fail(`verdaccio did not register a user: ${res.status} ${JSON.stringify(body)}`);
  const npmrc = path.join(work, ".npmrc");
  const host = url.replace(/^http:/, "");
  fs.writeFileSync(npmrc, `registry=${url}\n${host}:_authToken=${body.token}\n`);
  return npmrc;
}

/** A folder of links to every command on PATH except those `exclude` matches, and node and npm. */
function pathWithout(name, exclude) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const link = (target, as) => {
    const at = path.join(dir, as);
    if (!fs.existsSync(at)) fs.symlinkSync(target, at);
  };
  link(process.execPath, "node");
  link(npmCli(), "npm");
  for (const from of (process.env.PATH || "").split(path.delimiter)) {
    if (!from || !fs.existsSync(from)) continue;
    for (const entry of fs.readdirSync(from)) if (!exclude(entry)) link(path.join(from, entry), entry);
  }
  return dir;
}

function npmCli() {
  const bundled = path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "bin", "npm-cli.js");
  if (fs.existsSync(bundled)) return bundled;
  const found = spawnSync("npm", ["root", "-g"], { encoding: "utf8" }).stdout.trim();
  return path.join(found, "npm", "bin", "npm-cli.js");
}

/** The environment of a fresh user: our registry, a fresh cache, and the given PATH. */
function userEnv(npmrc, binDir) {
  const env = {
    HOME: work,
    PATH: binDir,
    npm_config_userconfig: npmrc,
    npm_config_cache: path.join(work, "npm-cache"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
  for (const keep of ["TMPDIR", "LANG", "TERM"]) if (process.env[keep]) env[keep] = process.env[keep];
  // node-gyp downloads Node's headers unless it is told where they are; use the ones installed
  // with this node when there are any, so that the test needs no network beyond the registry.
  const prefix = path.join(path.dirname(process.execPath), "..");
  if (fs.existsSync(path.join(prefix, "include", "node", "node_api.h"))) env.npm_config_nodedir = prefix;
  return env;
}

function run(command, args, options) {
  const result = spawnSync(command, args, { encoding: "utf8", ...options });
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`;
  if (result.status !== 0) fail(`${command} ${args.join(" ")} failed (exit ${result.status ?? result.signal}):\n${output}`);
  return output;
}

function freshProject(name) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: `install-test-${name}`, version: "1.0.0", private: true }));
  fs.copyFileSync(path.join(__dirname, "smoke.js"), path.join(dir, "smoke.js"));
  return dir;
}

function which(command, env) {
  return (spawnSync("/bin/sh", ["-c", `command -v ${command}`], { env, encoding: "utf8" }).stdout ?? "").trim();
}

async function main() {
  const release = JSON.parse(fs.readFileSync(path.join(packagesDir, "release.json"), "utf8"));
  const [main, ...platforms] = release.packages;
  step(`packages from ${packagesDir}: ${release.packages.map((p) => `${p.file} (${p.packed} bytes)`).join(", ")}`);

  const { url, server } = await startRegistry();
  try {
    step(`verdaccio on ${url}`);
    const npmrc = await npmrcFor(url);
    const publishEnv = { ...process.env, npm_config_userconfig: npmrc };
    for (const pkg of [...platforms, main])
      run(process.execPath, [npmCli(), "publish", path.join(packagesDir, pkg.file), "--registry", url], { env: publishEnv });
    step(`published ${[...platforms, main].map((p) => p.name).join(", ")}`);

    if (only !== "fallback") {
      const toolchain = /^(cmake|ctest|cpack|ccmake|nvcc|cc|c\+\+|cpp|gcc.*|g\+\+.*|clang.*|x86_64-linux-gnu-.*|ld|ld\..*|as|make|gmake)$/;
      const env = userEnv(
        npmrc,
        pathWithout("bin-no-toolchain", (entry) => toolchain.test(entry)),
      );
      for (const tool of ["cmake", "c++", "g++", "gcc", "cc", "nvcc", "make"])
        if (which(tool, env)) fail(`the test PATH still has ${tool}: ${which(tool, env)}`);
      const app = freshProject("prebuilt");
      const log = run("npm", ["install", "lighttransfer", "--foreground-scripts"], { cwd: app, env });
      const installed = path.join(app, "node_modules", "lighttransfer");
      const platformDir = path.join(app, "node_modules", ...platforms[0].name.split("/"));
      if (!fs.existsSync(path.join(platformDir, "lighttransfer.node"))) fail(`npm did not install ${platforms[0].name}:\n${log}`);
      if (fs.existsSync(path.join(installed, "build"))) fail(`the install built from source although a prebuilt was there:\n${log}`);
      if (!/using the prebuilt binary/.test(log)) fail(`the install did not report the prebuilt binary:\n${log}`);
      step("prebuilt: npm install lighttransfer took the platform package, built nothing");
      const out = run("node", ["smoke.js", fixture, `${platforms[0].name}/lighttransfer.node`], { cwd: app, env });
      step(`prebuilt: smoke passed ${out.trim()}`);
    }

    if (only !== "prebuilt") {
      const env = userEnv(
        npmrc,
        pathWithout("bin-no-cmake", (entry) => /^(cmake|ctest|cpack|ccmake|nvcc)$/.test(entry)),
      );
      if (which("cmake", env)) fail("the fallback PATH still has cmake");
      const app = freshProject("fallback");
      const log = run("npm", ["install", "lighttransfer", "--omit=optional", "--foreground-scripts"], { cwd: app, env });
      const noPrebuilt = /no prebuilt binary for linux-x64 is installed .*; building from source instead/;
      if (!noPrebuilt.test(log)) fail(`the fallback install did not say it found no prebuilt:\n${log}`);
      if (!/CMake was not found: building the CPU backend with node-gyp/.test(log))
        fail(`the fallback install did not say it used node-gyp:\n${log}`);
      const built = path.join(app, "node_modules", "lighttransfer", "build", "Release", "lighttransfer.node");
      if (!fs.existsSync(built)) fail(`the fallback install left no ${built}:\n${log}`);
      step(
        `fallback: ${log
          .split("\n")
          .find((l) => noPrebuilt.test(l))
          .trim()}`,
      );
      const out = run("node", ["smoke.js", fixture, "lighttransfer/build/Release/lighttransfer.node"], { cwd: app, env });
      step(`fallback: smoke passed on the node-gyp build ${out.trim()}`);
    }
  } finally {
    server.kill();
    await new Promise((r) => (server.exitCode !== null ? r() : server.once("exit", r)));
    step("verdaccio stopped");
  }
}

main()
  .then(() => {
    fs.rmSync(work, { recursive: true, force: true });
    step("passed");
  })
  .catch((err) => {
    console.error(`install test FAILED: ${err.message}\n(left ${work} for inspection)`);
    process.exit(1);
  });
