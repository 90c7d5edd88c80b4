import * as path from "node:path";
import { type DeviceName, Tensor } from "../lib";

// Timing helpers shared by the benchmark scripts: warm up, repeat, report the median.
export function medianMs(run: () => void, { warmup = 1, minReps = 3, minMs = 300 } = {}): number {
  for (let i = 0; i < warmup; i++) run();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || performance.now() - start < minMs) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
    if (times.length >= 50) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Normal random values (Box-Muller); benchmarks never run on zeros. */
export function randomNormals(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
  return a;
}

/** 0..n-1 in a random order (Fisher-Yates), as a page pool handed out over time holds its pages. */
export function shuffledIndices(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

export function printTable(rows: Array<Record<string, string | number>>): void {
  const cols = Object.keys(rows[0]);
  const cell = (v: string | number) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(widths[i])).join("  ");
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => cell(r[c]))));
}

/**
 * A function that waits until the device has finished all queued work. CUDA calls return once
 * queued; reading device memory back waits for the stream, so a 4-byte read is the fence.
 */
export function deviceFence(device: DeviceName): () => void {
  if (device === "cpu") return () => undefined;
  const fence = Tensor.empty([1], "i32", device);
  return () => void fence.toArray();
}

/** How this benchmark was started, for its record: `node <script relative to the working directory> <args>`. */
export function commandLine(): string {
  return ["node", path.relative(process.cwd(), process.argv[1]), ...process.argv.slice(2)].join(" ");
}
