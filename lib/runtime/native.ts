// Finds and loads the native addon: the file LIGHTTRANSFER_ADDON names, and nothing else, where it
// is set (a build asked for by name must not be swapped for another silently); otherwise, in
// order, a local build from source (build/Release, build/Debug), then the prebuilt binary of
// this platform's package (@lighttransfer/<target>, an optional dependency npm installs on
// platforms that have one). When none loads, one error lists every place tried, why
// each failed, and how to fix it.
import * as fs from "node:fs";
import * as path from "node:path";

// Everything the addon exports, typed in one place: the tensor class, the device queries, every
// op (with the argument object its binding in native/addon/ reads), the CUDA graph calls and
// the pending reads.
// The typed public API over it lives in tensor.ts, devices.ts, cuda-graph.ts and kernels/.

/** A native tensor (NativeTensor in native/addon/tensor_object.cpp); Tensor wraps one. */
export interface NativeTensorHandle {
  read(): Float32Array | Uint16Array | Int32Array;
  readFloat32(): Float32Array;
  view(): Float32Array | Uint16Array | Int32Array;
  viewBytes(byteOffset: number, byteLength: number): Uint8Array;
  write(data: ArrayBufferView): void;
  copyTo(device: string): NativeTensorHandle;
  copyFrom(src: NativeTensorHandle): void;
  /** byteLength bytes of the open file fd from `position` into this tensor at byteOffset. */
  readFile(fd: number, position: number, byteOffset: number, byteLength: number): Promise<void>;
  slice(offset: number, shape: number[]): NativeTensorHandle;
  dispose(): void;
  readonly disposed: boolean;
  readonly bytes: number;
}

/** A read started by startRead and not yet finished (opaque; see Tensor.readLater). */
export type NativeReadHandle = { readonly __nativeRead: unique symbol };

/** An instantiated CUDA graph (opaque; see cuda-graph.ts). */
export type NativeGraphHandle = { readonly __nativeGraph: unique symbol };
/** What an async call is given to be cancelled while it waits to run (opaque; see cancel.h). */
export type NativeCancelToken = { readonly __nativeCancel: unique symbol };

export interface CpuDeviceInfo {
  id: "cpu";
  type: "cpu";
  name: string;
  /** Host memory in bytes. */
  totalMemory: number;
  /** Threads the CPU kernels use. */
  threads: number;
}

export interface CudaDeviceInfo {
  id: `cuda:${number}`;
  type: "cuda";
  index: number;
  name: string;
  totalMemory: number;
  freeMemory: number;
  /** e.g. "9.0" for H100/H200. */
  computeCapability: string;
  multiprocessors: number;
}

export type DeviceInfo = CpuDeviceInfo | CudaDeviceInfo;

export interface CudaStatus {
  /** Whether this build of the addon has the CUDA backend. */
  built: boolean;
  /** Whether a CUDA device can be used now. */
  available: boolean;
  deviceCount: number;
  /** Why CUDA is unavailable (missing from the build, no driver, no device). */
  reason?: string;
}

/** Bytes held by live tensors. */
export interface MemoryUsage {
  /** Host memory of CPU tensors. */
  cpu: number;
  /** Device memory of CUDA tensors, all devices together. */
  cuda: number;
}

/**
 * Which GEMM a CUDA linear runs on: "auto" (the default: products of 1-2 rows on the small-batch
 * GEMV where it applies, the rest on the library), "cublasLt" (the library), "gemv"
 * (products of 1 to 4 rows on the small-batch GEMV where it applies, the rest on the library),
 * "gemv-only" (the GEMV, or an error where it does not apply), "cublas" (cublasGemmEx) or
 * "fallback" (the in-house tensor-core GEMM). CPU calls ignore it.
 */
export type GemmChoice = (typeof gemmChoices)[number];
/** Every GemmChoice, as the addon accepts them. */
export const gemmChoices = ["auto", "cublasLt", "gemv", "gemv-only", "cublas", "fallback"] as const;
/**
 * Which CUDA prefill attention kernel runs a call: `auto` takes `wgmma` (built for Hopper's
 * sm_90a) on GPUs of compute capability 9.0 and `mmaSync` elsewhere; `wgmma` elsewhere is an error.
 * The CPU has one kernel and ignores the choice.
 */
export type PrefillKernelChoice = (typeof prefillKernelChoices)[number];
/**
 * Every PrefillKernelChoice, as the addon accepts them.
 * @example const kernel = kernels.prefillKernelChoices.find((c) => c === process.env.KERNEL); // undefined (the default) for any other name
 */
export const prefillKernelChoices = ["auto", "mmaSync", "wgmma"] as const;

/** Which GEMM the CUDA backend's linear runs on, and why. */
export interface GemmBackendInfo {
  name: string;
  detail: string;
}

type Handle = NativeTensorHandle;

/**
 * The argument object of each op, as its binding reads it (native/addon/<family>.cpp; the params
 * structs in native/core/ say what the kernels compute). Optional tensors may be undefined;
 * an omitted number takes the binding's default.
 */
export interface NativeOpArgs {
  // attention.cpp
  prefillAttention: {
    q: Handle;
    out: Handle;
    /** The chunk's own keys and values; optional when every key is in `cached`. */
    k?: Handle;
    v?: Handle;
    /** Keys before the chunk's, read through one sequence's page table (a ring when ringSink/ringWindow are set). */
    cached?: { kPages: Handle; vPages: Handle; pageTable: Handle; length: number; ringSink?: number; ringWindow?: number };
    lse?: Handle;
    lazyRatio?: Handle;
    ratio?: { sink: number; window: number; lastQueries: number };
    scale: number;
    streaming?: { sink: number; window: number };
    kernel?: PrefillKernelChoice;
  };
  decodeAttention: {
    q: Handle;
    kPages: Handle;
    vPages: Handle;
    pageTable: Handle;
    seqLens: Handle;
    out: Handle;
    lse?: Handle;
    scale?: number;
  };
  // kv_cache.cpp
  appendKv: { k: Handle; v: Handle; kPages: Handle; vPages: Handle; slots: Handle };
  cutToStreaming: {
    kPages: Handle;
    vPages: Handle;
    srcPageTable: Handle;
    dstPageTable: Handle;
    length: number;
    sink: number;
    window: number;
  };
  gatherKv: { kPages: Handle; vPages: Handle; slots: Handle; k: Handle; v: Handle };
  ropeAppendKv: { qkv: Handle; positions: Handle; invFreq: Handle; kPages: Handle; vPages: Handle; slots: Handle; q: Handle };
  // lazy_ratio.cpp
  lazyRatio: {
    q: Handle;
    k: Handle;
    lse: Handle;
    out: Handle;
    sink: number;
    window: number;
    lastQueries: number;
    scale?: number;
  };
  // layer_ops.cpp
  linear: {
    x: Handle;
    weight: Handle;
    bias?: Handle;
    out: Handle;
    norm?: { weight: Handle; eps: number };
    swiGlu?: boolean;
    swiGluOutput?: boolean;
    ropeAppendKv?: { positions: Handle; invFreq: Handle; kPages: Handle; vPages: Handle; slots: Handle };
    accumulate?: boolean;
    constantWeight?: boolean;
    gemm?: GemmChoice;
  };
  rmsNorm: { x: Handle; weight: Handle; residual?: Handle; out: Handle; eps?: number };
  rope: { q: Handle; k: Handle; positions: Handle; invFreq: Handle };
  swiGlu: { x: Handle; out: Handle };
  embedding: { ids: Handle; table: Handle; out: Handle };
  // sampling.cpp
  argmax: { logits: Handle; out: Handle };
  tokenLogprobs: { logits: Handle; targets: Handle; out: Handle };
  topCandidates: {
    logits: Handle;
    temperature: Handle;
    k: number;
    ids: Handle;
    scores: Handle;
    count: Handle;
    max: Handle;
    mass: Handle;
  };
  repetitionPenalty: { logits: Handle; ids: Handle; offsets: Handle; penalty: Handle };
}

/**
 * Every op runs in place of its outputs, here (`name`) or on libuv's pool (`nameAsync`, which a
 * cancelled token keeps from running if it has not started).
 */
type NativeOps = { [Op in keyof NativeOpArgs]: (args: NativeOpArgs[Op]) => void } & {
  [Op in keyof NativeOpArgs as `${Op}Async`]: (args: NativeOpArgs[Op], cancel?: NativeCancelToken) => Promise<void>;
};

/** The addon's exports. */
export interface NativeAddon extends NativeOps {
  NativeTensor: new (shape: number[], dtype: string, device: string) => NativeTensorHandle;
  // devices.cpp
  devices(): DeviceInfo[];
  cudaStatus(): CudaStatus;
  memoryUsage(): MemoryUsage;
  setThreads(count: number): number;
  getThreads(): number;
  synchronize(device: string): void;
  // layer_ops.cpp: null without CUDA
  gemmBackend(gemm?: GemmChoice): GemmBackendInfo | null;
  // graph.cpp
  captureBegin(args: { input: Handle }): void;
  captureEnd(args: { input: Handle; discard?: boolean }): NativeGraphHandle | undefined;
  graphLaunch(graph: NativeGraphHandle, data: Int32Array, changed?: Int32Array): void;
  graphDispose(graph: NativeGraphHandle): void;
  // pending_read.cpp
  // cancel.cpp
  cancelToken(): NativeCancelToken;
  cancel(token: NativeCancelToken): void;
  startRead(tensor: NativeTensorHandle): NativeReadHandle;
  finishRead(read: NativeReadHandle): Float32Array | Uint16Array | Int32Array;
}

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
 * Every path the loader tries, in order (exported for the error message and tests): only
 * LIGHTTRANSFER_ADDON's file where it is set.
 * @example addonCandidates({ LIGHTTRANSFER_ADDON: "./my.node" }) // [the absolute path of ./my.node]
 */
export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.LIGHTTRANSFER_ADDON) return [path.resolve(env.LIGHTTRANSFER_ADDON)];
  const candidates: string[] = [];
  // A build from source first: only a build from source leaves build/ (one asked for, one made in
  // a checkout, or one made because the prebuilt is missing or does not load; install.js removes
  // it when it takes the prebuilt), and it is what LIGHTTRANSFER_BUILD_FROM_SOURCE is for, say
  // with the CUDA toolkit an older driver supports.
  candidates.push(
    path.join(packageRoot, "build", "Release", addonFile),
    path.join(packageRoot, "build", "Debug", addonFile),
    prebuiltAddonPath(),
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
      "- Build it from source: `LIGHTTRANSFER_BUILD_FROM_SOURCE=1 npm rebuild lighttransfer` (CMake >= 3.18 and a C++17",
      "  compiler; the CUDA backend is added when nvcc is found, or force it with LIGHTTRANSFER_CUDA=on|off;",
      "  with a compiler but no CMake, node-gyp builds the CPU backend).",
      "- In a checkout of the repository: `npm install` builds everything.",
      process.env.LIGHTTRANSFER_ADDON
        ? "- LIGHTTRANSFER_ADDON is set, so only its file was tried: point it at a built lighttransfer.node, or unset it."
        : "- Point LIGHTTRANSFER_ADDON at a built lighttransfer.node.",
    ].join("\n"),
  );
}

let cached: NativeAddon | undefined;
let loadedFrom: string | undefined;

/**
 * The file the addon is loaded from (loading it now if nothing has yet; an Error that says what
 * was tried if none loads).
 * @example console.log(addonPath()); // ".../@lighttransfer/linux-x64-gnu/lighttransfer.node"
 */
export function addonPath(): string {
  addon();
  return loadedFrom!;
}

/** The loaded addon, loaded on first use. */
export function addon(): NativeAddon {
  cached ??= loadAddon();
  return cached;
}
