#!/usr/bin/env node
// Builds the release packages: the main package `lighttransfer` (JavaScript, sources for a
// build from source, no binaries) and one platform package per prebuilt target (npm/<target>/,
// the addon alone), each packed with `npm pack` into the output folder and checked.
//
//   node scripts/release.js [--buildroot DIR] [--addon FILE] [--archs LIST] [--out DIR] [--jobs N]
//
//   --buildroot DIR  build inside this Debian 11 userland (scripts/make-buildroot.sh; needs root
//                    for chroot) so that the binary loads on glibc >= 2.31, or the release fails.
//                    Without it the build uses this machine's compilers, and an addon that needs a
//                    newer glibc is packed only with --out (packages not for publishing).
//   --addon FILE     package this already built addon instead of building one (the glibc check
//                    as without --buildroot; for testing the packaging, not for publishing).
//   --archs LIST     CUDA targets (default "80-real;86-real;89-real;90": SASS for each, plus PTX
//                    of sm_90 so that newer GPUs can JIT).
//   --out DIR        where the .tgz files and release.json go (default dist/packages, the folder
//                    publishing takes).
//   --lineinfo       keep source lines in the GPU code (about 4x the fatbin; off by default).
//   --compression M  nvcc --compress-mode of the GPU code (default "size": ~9x smaller than
//                    nvcc's default; the driver decompresses each module as it loads it).
//
// Publishing is then `npm publish <tgz>` for every platform package, then for the main package.

const { execFileSync, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { parseArgs } = require("node:util");
const { glibcFloor } = require("./check-portability");

const root = path.join(__dirname, "..");
const mainPackage = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const target = "linux-x64-gnu";
const targetDir = path.join(root, "npm", target);
const defaultArchs = "80-real;86-real;89-real;90";
// What the main package ships besides dist/lib: enough to build from source.
const mainFiles = [
  "dist/lib",
  "native",
  "CMakeLists.txt",
  "binding.gyp",
  "scripts/install.js",
  "scripts/build-native.js",
  "scripts/native-sources.js",
  "README.md",
  "LICENSE",
];

const { values: args } = parseArgs({
  options: {
    buildroot: { type: "string" },
    addon: { type: "string" },
    archs: { type: "string", default: defaultArchs },
    out: { type: "string" },
    lineinfo: { type: "boolean", default: false },
    compression: { type: "string", default: "size" },
    jobs: { type: "string", default: process.env.LIGHTTRANSFER_BUILD_JOBS || String(os.cpus().length) },
  },
});

const outGiven = args.out !== undefined;
args.out ??= path.join(root, "dist", "packages");

function run(command, commandArgs, options = {}) {
  const result = spawnSync(command, commandArgs, { stdio: "inherit", cwd: root, ...options });
  if (result.status !== 0) throw new Error(`${command} ${commandArgs.join(" ")} failed (exit ${result.status ?? result.signal})`);
}

/** The CMake command line of the release build (the same paths inside and outside the build root). */
function cmakeArgs(buildDir) {
  const include = [require("node-api-headers").include_dir, path.resolve(root, require("node-addon-api").include_dir)];
  const nvcc = fs.realpathSync(findNvcc());
  return [
    "-S",
    root,
    "-B",
    buildDir,
    "-G",
    "Unix Makefiles",
    "-DCMAKE_BUILD_TYPE=Release",
    `-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${path.join(buildDir, "out")}`,
    `-DCMAKE_JS_INC=${include.join(";")}`,
    `-DNODE_ADDON_API_DIR=${include[1]}`,
    "-DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION",
    "-DLT_CUDA=ON",
    "-DLT_PORTABLE=ON",
    `-DLT_LINEINFO=${args.lineinfo ? "ON" : "OFF"}`,
    `-DLT_FATBIN_COMPRESSION=${args.compression}`,
    `-DCMAKE_CUDA_COMPILER=${nvcc}`,
    `-DCMAKE_CUDA_ARCHITECTURES=${args.archs}`,
  ];
}

// The toolkit's own bin/nvcc (not a wrapper elsewhere on PATH): its folder is what the build
// root needs mounted.
function findNvcc() {
  const homes = [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"].filter(Boolean);
  for (const home of homes) {
    const file = path.join(home, "bin", "nvcc");
    if (fs.existsSync(file)) return file;
  }
  throw new Error(`nvcc not found in ${homes.join(", ")}: the release build needs the CUDA toolkit (set CUDA_HOME)`);
}

/** Runs the build inside the build root, with the repository and the CUDA toolkit bind-mounted at their own paths. */
function buildInRoot(buildroot, buildDir) {
  const cudaHome = path.dirname(path.dirname(fs.realpathSync(findNvcc())));
  const mounts = [root, cudaHome];
  const mounted = [];
  try {
    for (const dir of mounts) {
      const inside = path.join(buildroot, dir);
      fs.mkdirSync(inside, { recursive: true });
      run("mount", ["--bind", dir, inside]);
      mounted.push(inside);
    }
    run("chroot", [buildroot, "cmake", ...cmakeArgs(buildDir)]);
    run("chroot", [buildroot, "cmake", "--build", buildDir, "--parallel", args.jobs]);
  } finally {
    for (const inside of mounted.reverse()) run("umount", [inside]);
  }
}

/** Loads the addon with the build root's own node (Debian 11: glibc 2.31, Node 12.22) and makes a tensor. */
function loadInRoot(buildroot, addonFile) {
  const copy = path.join(buildroot, "tmp", "lighttransfer-load-check.node");
  fs.copyFileSync(addonFile, copy);
  try {
    const script =
      'const a = require("/tmp/lighttransfer-load-check.node"); const t = new a.NativeTensor([3], "f32", "cpu");' +
      " t.write(new Float32Array([1, 2, 3])); if (t.read()[2] !== 3 || !a.cudaStatus().built) process.exit(1);" +
      // biome-ignore lint/suspicious/noTemplateCurlyInString: JavaScript source for the build root's node to run
      " console.log(`loads in the build root: node ${process.version}`);";
    run("chroot", [buildroot, "node", "-e", script]);
  } finally {
    fs.rmSync(copy, { force: true });
  }
}

function buildAddon() {
  if (args.addon) return path.resolve(args.addon);
  const buildDir = path.join(root, "build-release");
  if (args.buildroot) buildInRoot(path.resolve(args.buildroot), buildDir);
  else {
    run("cmake", cmakeArgs(buildDir));
    run("cmake", ["--build", buildDir, "--parallel", args.jobs]);
  }
  return path.join(buildDir, "out", "lighttransfer.node");
}

/** `npm pack` of a folder into the output folder; returns npm's report (file list, sizes). */
function pack(dir) {
  const json = execFileSync("npm", ["pack", dir, "--json", "--ignore-scripts", "--pack-destination", args.out], {
    cwd: root,
    encoding: "utf8",
  });
  return JSON.parse(json)[0];
}

/** A copy of the main package with its optionalDependencies pinned to this version's platform packages. */
function stageMainPackage(platformNames) {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), "lighttransfer-release-"));
  for (const file of mainFiles) fs.cpSync(path.join(root, file), path.join(stage, file), { recursive: true });
  const manifest = { ...mainPackage };
  delete manifest.devDependencies;
  delete manifest.overrides;
  manifest.scripts = { install: "node scripts/install.js" };
  manifest.files = mainFiles.filter((file) => file !== "README.md" && file !== "LICENSE");
  manifest.optionalDependencies = Object.fromEntries(platformNames.map((name) => [name, mainPackage.version]));
  fs.writeFileSync(path.join(stage, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return stage;
}

function checkContents(report, allowed, forbidden) {
  const files = report.files.map((f) => f.path);
  const bad = files.filter((f) => forbidden.some((re) => re.test(f)) || (allowed && !allowed.includes(f)));
  if (bad.length) throw new Error(`${report.name}: the package must not contain ${bad.join(", ")}`);
  return files;
}

function main() {
  fs.mkdirSync(args.out, { recursive: true });
  // Compiled afresh: files of modules since renamed or deleted must not be published.
  fs.rmSync(path.join(root, "dist", "lib"), { recursive: true, force: true });
  run(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.json"]);

  const built = buildAddon();
  const addonFile = path.join(targetDir, "lighttransfer.node");
  run("strip", ["--strip-all", "-o", addonFile, built]);
  const floor = glibcFloor(addonFile);
  const portable = floor.ok;
  console.log(`${addonFile}: highest GLIBC_${floor.glibc}, GLIBCXX ${floor.glibcxx ?? "none"}, exports ${floor.exports.join(" ")}`);
  if (!portable) {
    const message = `the addon needs more than glibc 2.31 without bundled libstdc++: ${floor.problems.join("; ")}`;
    if (!(args.addon || !args.buildroot)) throw new Error(message);
    if (outGiven) console.warn(`WARNING (not for publishing): ${message}`);
    else
      throw new Error(
        `${message}. Packages of it are not for publishing: pass --out DIR for a test build, or --buildroot for a portable one`,
      );
  }
  const status = JSON.parse(
    execFileSync(process.execPath, ["-e", `console.log(JSON.stringify(require(${JSON.stringify(addonFile)}).cudaStatus()))`], {
      encoding: "utf8",
    }),
  );
  if (!status.built) throw new Error(`${addonFile} was built without the CUDA backend`);
  if (args.buildroot) loadInRoot(path.resolve(args.buildroot), addonFile);

  // Platform packages carry the main package's version.
  const platformManifest = JSON.parse(fs.readFileSync(path.join(targetDir, "package.json"), "utf8"));
  platformManifest.version = mainPackage.version;
  fs.writeFileSync(path.join(targetDir, "package.json"), `${JSON.stringify(platformManifest, null, 2)}\n`);

  fs.copyFileSync(path.join(root, "LICENSE"), path.join(targetDir, "LICENSE"));
  const platformReport = pack(targetDir);
  checkContents(platformReport, ["package.json", "README.md", "LICENSE", "lighttransfer.node"], []);
  const stage = stageMainPackage([platformManifest.name]);
  const mainReport = pack(stage);
  fs.rmSync(stage, { recursive: true, force: true });
  const mainList = checkContents(mainReport, null, [/\.node$/, /^build\//, /^build-release\//, /^test\//, /^prebuilds\//]);
  for (const needed of [
    "dist/lib/index.js",
    "dist/lib/runtime/native.js",
    "scripts/install.js",
    "binding.gyp",
    "native/sources.txt",
    "CMakeLists.txt",
    "LICENSE",
  ])
    if (!mainList.includes(needed)) throw new Error(`${mainReport.name}: ${needed} is missing from the package`);

  const summary = {
    version: mainPackage.version,
    archs: args.archs,
    lineinfo: args.lineinfo,
    compression: args.compression,
    builtIn: args.addon ? `given: ${args.addon}` : args.buildroot ? "build root" : "this machine",
    glibc: floor,
    binary: { unstripped: fs.statSync(built).size, stripped: fs.statSync(addonFile).size },
    packages: [mainReport, platformReport].map((r) => ({
      name: r.name,
      file: r.filename,
      packed: r.size,
      unpacked: r.unpackedSize,
      files: r.entryCount,
    })),
  };
  fs.writeFileSync(path.join(args.out, "release.json"), `${JSON.stringify(summary, null, 2)}\n`);
  console.table(summary.packages.map(({ name, file, packed, unpacked, files }) => ({ name, file, packed, unpacked, files })));
  console.log(`addon: ${summary.binary.unstripped} bytes built, ${summary.binary.stripped} stripped`);
}

try {
  main();
} catch (err) {
  console.error(`release: ${err.message}`);
  process.exit(1);
}
