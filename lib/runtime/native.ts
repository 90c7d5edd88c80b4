// Finds and loads the native addon. Looked for, in order: an explicit path in
// LIGHTTRANSFER_ADDON, the prebuilt binary of this platform's package (@lighttransfer/<target>,
// an optional dependency npm installs on platforms that have one), then a local build
// (build/Release, build/Debug: a build from source). When none loads, one error lists every
// place tried, why each failed, and how to fix it.
import * as fs from "node:fs";
import * as path from "node:path";

/** What the addon exports; the typed public API lives in tensor.ts, devices.ts and kernels/. */
export interface NativeTensorHandle {
  read(): Float32Array | Uint16Array | Int32Array;
  readFloat32(): Float32Array;
  view(): Float32Array | Uint16Array | Int32Array;
  viewBytes(byteOffset: number, byteLength: number): Uint8Array;
  write(data: ArrayBufferView): void;
  copyTo(device: string): NativeTensorHandle;
  copyFrom(src: NativeTensorHandle): void;
  slice(offset: number, shape: number[]): NativeTensorHandle;
  dispose(): void;
  readonly disposed: boolean;
  readonly bytes: number;
}

export interface NativeAddon {
  NativeTensor: new (shape: number[], dtype: string, device: string) => NativeTensorHandle;
  devices(): Array<Record<string, unknown>>;
  cudaStatus(): { built: boolean; available: boolean; deviceCount: number; reason?: string };
  memoryUsage(): { cpu: number; cuda: number };
  setThreads(count: number): number;
  getThreads(): number;
  prefillAttention(args: object): void;
  prefillAttentionAsync(args: object): Promise<void>;
  decodeAttention(args: object): void;
  decodeAttentionAsync(args: object): Promise<void>;
  appendKv(args: object): void;
  appendKvAsync(args: object): Promise<void>;
  cutToStreaming(args: object): void;
  cutToStreamingAsync(args: object): Promise<void>;
  gatherKv(args: object): void;
  lazyRatio(args: object): void;
  lazyRatioAsync(args: object): Promise<void>;
  captureBegin(args: { input: NativeTensorHandle }): void;
  captureEnd(args: { input: NativeTensorHandle; discard?: boolean }): NativeGraphHandle | undefined;
  graphLaunch(graph: NativeGraphHandle, data: Int32Array, changed?: Int32Array): void;
  graphDispose(graph: NativeGraphHandle): void;
}

/** An instantiated CUDA graph (opaque; see cuda-graph.ts). */
export type NativeGraphHandle = { readonly __nativeGraph: unique symbol };

// The package root is the nearest folder above this file with a package.json: dist/lib/ when
// installed, lib/ when the tests run the sources.
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}
const packageRoot = findPackageRoot(__dirname);
const addonFile = "lighttransfer.node";

/**
 * The name of the package that holds the prebuilt addon for a platform (whether or not one is
 * published for it): `@lighttransfer/<platform>-<arch>`, plus `-gnu` or `-musl` on Linux.
 * @example platformPackageName() // "@lighttransfer/linux-x64-gnu" on x64 Linux with glibc
 */
export function platformPackageName(
  platform: string = process.platform,
  arch: string = process.arch,
  glibc: boolean = runsOnGlibc(),
): string {
  const libc = platform === "linux" ? (glibc ? "-gnu" : "-musl") : "";
  return `@lighttransfer/${platform}-${arch}${libc}`;
}

function runsOnGlibc(): boolean {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return typeof header?.glibcVersionRuntime === "string";
}

/**
 * Where this platform's prebuilt addon is: inside the installed platform package, or, when that
 * package is not installed, where it would be.
 * @example prebuiltAddonPath() // ".../node_modules/@lighttransfer/linux-x64-gnu/lighttransfer.node"
 */
export function prebuiltAddonPath(name: string = platformPackageName()): string {
  try {
    return path.join(path.dirname(require.resolve(`${name}/package.json`, { paths: [packageRoot] })), addonFile);
  } catch {
    return path.join(packageRoot, "node_modules", name, addonFile);
  }
}

/**
 * Every path the loader tries, in order (exported for the error message and tests).
 * @example addonCandidates({ LIGHTTRANSFER_ADDON: "./my.node" })[0] // the absolute path of ./my.node
 */
export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const candidates: string[] = [];
  if (env.LIGHTTRANSFER_ADDON) candidates.push(path.resolve(env.LIGHTTRANSFER_ADDON));
  candidates.push(
    prebuiltAddonPath(),
    path.join(packageRoot, "build", "Release", addonFile),
    path.join(packageRoot, "build", "Debug", addonFile),
  );
  return candidates;
}

/**
 * Loads the first candidate that exists and loads; throws one explanatory Error otherwise.
 * @example const native = loadAddon(); native.cudaStatus();
 */
export function loadAddon(candidates: string[] = addonCandidates()): NativeAddon {
  const tried: string[] = [];
  for (const file of candidates) {
    if (!fs.existsSync(file)) {
      tried.push(`  ${file}: not found`);
      continue;
    }
    try {
      const native = require(file) as NativeAddon;
      loadedFrom = file;
      return native;
    } catch (err) {
      tried.push(`  ${file}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(
    [
      `Could not load the lighttransfer native addon for ${process.platform}-${process.arch} (Node ${process.version}).`,
      "Looked for:",
      ...tried,
      "Possible solutions:",
      `- Install the prebuilt binary: \`npm install lighttransfer\` brings ${platformPackageName()} where one is`,
      "  published (Linux x64 with glibc >= 2.31), unless optional dependencies are omitted.",
      "- Build it from source: `npm rebuild lighttransfer --build-from-source` (CMake >= 3.18 and a C++17",
      "  compiler; the CUDA backend is added when nvcc is found, or force it with LIGHTTRANSFER_CUDA=on|off;",
      "  with a compiler but no CMake, node-gyp builds the CPU backend).",
      "- In a checkout of the repository: `npm install` builds everything.",
      "- Point LIGHTTRANSFER_ADDON at a built lighttransfer.node.",
    ].join("\n"),
  );
}

let cached: NativeAddon | undefined;
let loadedFrom: string | undefined;

/**
 * The file the addon was loaded from, or undefined before it is loaded.
 * @example addon(); console.log(addonPath()); // ".../@lighttransfer/linux-x64-gnu/lighttransfer.node"
 */
export function addonPath(): string | undefined {
  return loadedFrom;
}

/** The loaded addon, loaded on first use. */
export function addon(): NativeAddon {
  cached ??= loadAddon();
  return cached;
}
