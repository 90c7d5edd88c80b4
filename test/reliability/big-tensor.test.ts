// Defect: view() of a CPU tensor over 4 GiB aborted the process with a double free (Node
// refuses the external buffer and runs its finalizer, then the data was freed again), and
// loadModel reads checkpoint tensors through view(). Tensors that large are now read through
// viewBytes() windows. Each case allocates 4 GiB of address space; the safetensors case reads
// a 4 GiB sparse file. Reading such a tensor back whole (read(), readFloat32()) aborted the process
// in V8; it is an Error now.
import { reportOf, runChild } from "./child";

test("view() of a tensor over 4 GiB throws a clear error, and viewBytes() windows reach every byte", () => {
  const report = reportOf<{ viewError: string; readBack: boolean[]; detachedAfterDispose: boolean }>(runChild("big-tensor.js", ["view"]));
  expect(report.viewError).toMatch(/cannot view 4294971392 bytes at once: Node refuses external buffers that large; use viewBytes/);
  expect(report.readBack).toEqual([true, true, true]);
  expect(report.detachedAfterDispose).toBe(true);
});

test("a safetensors tensor over 4 GiB loads with its bytes in place", () => {
  const report = reportOf<{ shape: number[]; loaded: boolean[] }>(runChild("big-tensor.js", ["safetensors"]));
  expect(report.shape).toEqual([2 ** 30 + 1024]);
  expect(report.loaded).toEqual([true, true, true]);
});

test("read() and readFloat32() of more than one buffer may hold throw a clear error", () => {
  const report = reportOf<Record<string, string>>(runChild("big-tensor.js", ["read"]));
  const refused = (what: string) => `cannot ${what}: 4294971392 bytes is more than Node allows in one buffer; read it in parts (rows())`;
  expect(report).toEqual({
    read: refused("read a tensor"),
    readFloat32: refused("read a tensor as float32"),
    bf16: refused("read a tensor as float32"),
  });
});
