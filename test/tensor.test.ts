import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { cudaStatus, devices, loadAddon, memoryUsage, synchronize, Tensor } from "../lib";
import { addon, type NativeGraphHandle, type NativeReadHandle, type NativeTensorHandle } from "../lib/runtime/native";
import { collectGarbage } from "./helpers/gc";
import { Random, roundTo } from "./helpers/reference";

describe("Tensor", () => {
  const rng = new Random();

  test("f32 and i32 round-trip exactly", () => {
    const f = rng.normals(37);
    const t = Tensor.from(f, [37]);
    expect(t.dtype).toBe("f32");
    expect(t.shape).toEqual([37]);
    expect(t.bytes).toBe(37 * 4);
    expect(Array.from(t.toArray())).toEqual(Array.from(f));
    const ints = Int32Array.from({ length: 11 }, () => rng.int(-1e9, 1e9));
    const ti = Tensor.from(ints, [11]);
    expect(ti.dtype).toBe("i32");
    expect(Array.from(ti.toArray())).toEqual(Array.from(ints));
    expect(Array.from(ti.toFloat32Array())).toEqual(Array.from(Float32Array.from(ints)));
    t.dispose();
    ti.dispose();
  });

  test.each(["bf16", "f16"] as const)("%s stores values rounded to nearest even", (dtype) => {
    // Random values over a wide range, exact ties, the subnormal range of f16, and overflow.
    const special =
      dtype === "f16"
        ? [65504, 65519, 65520, -70000, 6e-8, 3e-8, 2.98e-8, 1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11]
        : [1 + 2 ** -8, 1 + 3 * 2 ** -8, 3e38, 1e-38, -2.5e-39];
    const values = Float32Array.from([...rng.normals(500, 100), ...rng.normals(500, 1e-3), ...special, Infinity, -Infinity, 0]);
    const t = Tensor.from(values, [values.length], { dtype });
    const got = t.toFloat32Array();
    for (let i = 0; i < values.length; i++) {
      const want = roundTo(dtype, values[i]);
      if (got[i] !== want) throw new Error(`${dtype}(${values[i]}) = ${got[i]}, want ${want} (seed ${rng.seed})`);
    }
    // Raw bits survive a round trip through a Uint16Array.
    const bits = t.toArray() as Uint16Array;
    const again = Tensor.from(bits, [bits.length], { dtype });
    expect(Array.from(again.toFloat32Array())).toEqual(Array.from(got));
    expect(Number.isNaN(Tensor.from(new Float32Array([NaN]), [1], { dtype }).toFloat32Array()[0])).toBe(true);
    t.dispose();
    again.dispose();
  });

  test("view() is zero-copy and is detached by dispose()", () => {
    const t = Tensor.from(rng.normals(8), [2, 4]);
    const view = t.view() as Float32Array;
    view[3] = 42.5;
    expect(t.toArray()[3]).toBe(42.5);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(view.length).toBe(0);
    expect(t.bytes).toBe(0);
    t.dispose(); // twice is harmless
  });

  test("dispose() frees at once and memoryUsage() sees it", async () => {
    await collectGarbage();
    const before = memoryUsage().cpu;
    const t = Tensor.empty([1024, 256], "f32");
    expect(memoryUsage().cpu - before).toBe(1024 * 256 * 4);
    t.dispose();
    expect(memoryUsage().cpu).toBe(before);
  });

  test("the GC frees tensors that were never disposed", async () => {
    await collectGarbage(); // tensors earlier tests dropped
    const before = memoryUsage().cpu;
    (() => {
      for (let i = 0; i < 50; i++) Tensor.from(rng.normals(1 << 16), [1 << 16]);
    })();
    expect(memoryUsage().cpu - before).toBe(50 * (1 << 16) * 4);
    for (let i = 0; i < 20 && memoryUsage().cpu > before; i++) await collectGarbage(1);
    expect(memoryUsage().cpu).toBe(before);
  });

  test("to('cpu') copies", () => {
    const t = Tensor.from(rng.normals(6), [3, 2], { dtype: "bf16" });
    const c = t.to("cpu");
    expect(Array.from(c.toArray())).toEqual(Array.from(t.toArray()));
    (t.view() as Uint16Array)[0] ^= 1;
    expect(Array.from(c.toArray())).not.toEqual(Array.from(t.toArray()));
    expect(c.shape).toEqual([3, 2]);
    t.dispose();
    c.dispose();
  });

  test("reshape and rows share memory; copyFrom copies", async () => {
    await collectGarbage();
    const t = Tensor.from(rng.normals(24), [4, 6]);
    const r = t.reshape([2, 3, 4]);
    const mid = t.rows(1, 2);
    expect(mid.shape).toEqual([2, 6]);
    expect(Array.from(mid.toArray())).toEqual(Array.from(t.toArray()).slice(6, 18));
    const src = Tensor.from(rng.normals(12), [12]);
    mid.copyFrom(src);
    expect(Array.from(t.toArray()).slice(6, 18)).toEqual(Array.from(src.toArray()));
    expect(Array.from(r.toArray())).toEqual(Array.from(t.toArray()));
    expect(() => t.rows(3, 2)).toThrow(/outside the 4 rows/);
    expect(() => t.reshape([5, 5])).toThrow(/cannot reshape/);
    expect(() => mid.copyFrom(Tensor.from(rng.normals(5), [5]))).toThrow(/element count must match/);
    const before = memoryUsage().cpu;
    t.dispose();
    expect(memoryUsage().cpu).toBe(before); // views still hold the memory
    [r, mid, src].forEach((x) => x.dispose());
    expect(memoryUsage().cpu).toBe(before - 24 * 4 - 12 * 4);
  });

  test("readLater() gives the contents as they were when it was called", () => {
    const first = rng.normals(29);
    const t = Tensor.from(first, [29]);
    const pending = t.readLater();
    t.write(rng.normals(29));
    expect(Array.from(pending.wait())).toEqual(Array.from(first));
    expect(pending.wait()).toBe(pending.wait());
    t.dispose();
    expect(() => t.readLater()).toThrow(/disposed tensor/);
  });

  test("the addon tells a read handle from other values: a graph call given one is an error, not a crash", () => {
    const t = Tensor.from(
      Int32Array.from({ length: 7 }, () => rng.int(-1e9, 1e9)),
      [7],
    );
    const read = addon().startRead(t.handle);
    // Cast: the typed signature accepts graph handles only; the addon must check what it gets anyway.
    const asGraph = read as unknown as NativeGraphHandle;
    expect(() => addon().graphLaunch(asGraph, new Int32Array(4))).toThrow(/graphLaunch: expected a graph handle \(from captureEnd\)/);
    expect(() => addon().graphDispose(asGraph)).toThrow(/graphDispose: expected a graph handle \(from captureEnd\)/);
    const notRead = {} as unknown as NativeReadHandle;
    expect(() => addon().finishRead(notRead)).toThrow(/finishRead: expected a read handle \(from startRead\)/);
    // The read itself is untouched by the refusals.
    expect(Array.from(addon().finishRead(read))).toEqual(Array.from(t.toArray()));
    t.dispose();
  });

  test("the addon tells a tensor by a mark that runs no JavaScript: instanceof tricks cannot dispose one mid-call", () => {
    const NativeTensor = addon().NativeTensor;
    const dst = new NativeTensor([16], "f32", "cpu"),
      src = new NativeTensor([16], "f32", "cpu");
    const values = Float32Array.from({ length: 16 }, () => rng.normal());
    src.write(values);
    // Symbol.hasInstance on the class, and a Proxy prototype: each disposes the destination if it is run.
    Object.defineProperty(NativeTensor, Symbol.hasInstance, {
      configurable: true,
      value: () => {
        dst.dispose();
        return true;
      },
    });
    try {
      dst.copyFrom(src);
    } finally {
      delete (NativeTensor as unknown as Record<symbol, unknown>)[Symbol.hasInstance];
    }
    expect(Array.from(dst.readFloat32())).toEqual(Array.from(values));
    const impostor = Object.create(NativeTensor.prototype);
    expect(() => dst.copyFrom(impostor)).toThrow(/copyFrom\(src\) needs a tensor/);
    // A tensor is made by the constructor alone: another External gives none.
    expect(() => new (NativeTensor as unknown as new (handle: unknown) => NativeTensorHandle)(addon().startRead(src))).toThrow(
      /NativeTensor\(shape: number\[\], dtype: string, device: string\)/,
    );
    // Overlapping slices of one tensor copy as if through a temporary.
    const whole = Tensor.from(
      Float32Array.from({ length: 8 }, (_, i) => i + rng.int(1, 9)),
      [8],
    );
    const before = Array.from(whole.toArray());
    whole.rows(0, 6).copyFrom(whole.rows(2, 6));
    expect(Array.from(whole.toArray())).toEqual([...before.slice(2, 8), ...before.slice(6, 8)]);
    for (const t of [dst, src]) t.dispose();
    whole.dispose();
  });

  test("using a disposed tensor throws", () => {
    const t = Tensor.from(rng.normals(4), [4]);
    t.dispose();
    expect(() => t.toArray()).toThrow(/disposed tensor/);
    expect(() => t.view()).toThrow(/disposed tensor/);
    expect(() => t.write(new Float32Array(4))).toThrow(/disposed tensor/);
  });

  test("Symbol.dispose frees the memory", () => {
    let held: Tensor;
    {
      const t = Tensor.from(rng.normals(4), [4]);
      held = t;
      t[Symbol.dispose]();
    }
    expect(held.disposed).toBe(true);
  });

  test.each([
    [[0, 3], /integer >= 1/],
    [[-2, 3], /integer >= 1/],
    [[2.5], /integer >= 1/],
    [[], /non-empty array/],
    // Said in the message rather than failing while the message is written.
    [[4n, 2], /^shape \[4n, 2\] has dimension 4n: every dimension must be a number, an integer >= 1$/],
    ["4", /^shape must be a non-empty array of positive integers, got "4"$/],
  ])("shape %p is rejected", (shape, message) => {
    expect(() => Tensor.empty(shape as number[], "f32")).toThrow(message);
  });

  test("native constructor also rejects bad shapes (not only the TS layer)", () => {
    const native = loadAddon();
    expect(() => new native.NativeTensor([4, 0], "f32", "cpu")).toThrow(/every dimension must be >= 1/);
    expect(() => new native.NativeTensor([4, -1], "f32", "cpu")).toThrow(/every dimension must be >= 1/);
    expect(() => new native.NativeTensor([4], "f64", "cpu")).toThrow(/unknown dtype 'f64'/);
    expect(() => new native.NativeTensor([4], "f32", "tpu")).toThrow(/unknown device 'tpu'/);
  });

  test("data of the wrong type or length is rejected", () => {
    expect(() => Tensor.from(new Float32Array(5), [2, 3])).toThrow(/5 elements .* holds 6/);
    expect(() => Tensor.from(new Int32Array(4), [4], { dtype: "f32" })).toThrow(/takes a Float32Array/);
    expect(() => Tensor.from(new Uint16Array(4), [4])).toThrow(/raw f16 or bf16 bits/);
    expect(() => Tensor.empty([2], "f64" as never)).toThrow(/unknown dtype/);
  });
});

describe("devices", () => {
  test("lists the CPU first", () => {
    const list = devices();
    expect(list[0]).toMatchObject({ id: "cpu", type: "cpu" });
    expect(list[0].totalMemory).toBeGreaterThan(0);
    for (const d of list.slice(1)) {
      expect(d.type).toBe("cuda");
      if (d.type === "cuda") expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
    }
  });

  test("synchronize waits on a device and refuses one that is not there", () => {
    expect(() => synchronize("cpu")).not.toThrow();
    expect(() => synchronize("tpu" as never)).toThrow(/unknown device 'tpu'/);
    const missing = `cuda:${devices().length + 7}` as const;
    expect(() => synchronize(missing)).toThrow(cudaStatus().available ? /does not exist/ : /CUDA is not available/);
  });

  test("CUDA reports whether it is usable, with a reason when not", () => {
    const status = cudaStatus();
    expect(typeof status.built).toBe("boolean");
    if (status.available) {
      expect(status.deviceCount).toBeGreaterThan(0);
      expect(devices().filter((d) => d.type === "cuda")).toHaveLength(status.deviceCount);
    } else {
      expect(status.reason).toMatch(/\w{10,}/);
      expect(() => Tensor.empty([4], "f32", "cuda:0")).toThrow(/CUDA is not available: /);
    }
  });
});

describe("addon loader", () => {
  test("says where it looked and how to fix it when no binary loads", () => {
    const corrupt = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-")), "lighttransfer.node");
    fs.writeFileSync(corrupt, "not a shared object");
    let message = "";
    try {
      loadAddon(["/nonexistent/lighttransfer.node", corrupt]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/Could not load the lighttransfer native addon/);
    expect(message).toMatch(/\/nonexistent\/lighttransfer.node: not found/);
    expect(message).toContain(`${corrupt}: `);
    expect(message).toMatch(/npm rebuild lighttransfer/);
    expect(message).toMatch(/LIGHTTRANSFER_ADDON/);
  });
});
