// A view's memory handed on to another ArrayBuffer (ArrayBuffer.prototype.transfer(), on by
// default from Node 22, behind --harmony in Node 20) and then the tensor disposed: dispose() freed
// the memory the new buffer still pointed at, so writes through it changed the next tensor given
// the same block, and reads faulted once the block was unmapped. The moved buffer now keeps the
// memory until it is collected. Run with --expose-gc. Reports what it saw.

const { addon, report } = require("./common");

const n = 1 << 16;
const fill = (value) => new Float32Array(n).fill(value);

const t = new addon.NativeTensor([n], "f32", "cpu");
t.write(fill(1));
const cpuBytes = () => addon.memoryUsage().cpu;
const before = cpuBytes();
let moved = t.view().buffer.transfer();
t.dispose();
const collect = async () => {
  global.gc();
  await new Promise((resolve) => setImmediate(resolve));
};

async function main() {
  // The buffer the view had (detached by the transfer) is collected, and its finalizer has had
  // its turn, while the moved buffer lives on.
  for (let i = 0; i < 5; i++) await collect();
  const kept = cpuBytes() === before;
  const victim = new addon.NativeTensor([n], "f32", "cpu");
  victim.write(fill(7));
  const movedStill = new Float32Array(moved).every((v) => v === 1);
  new Float32Array(moved).fill(-1);
  const victimIntact = victim.read().every((v) => v === 7);
  victim.dispose();
  // Once the moved buffer is collected (its finalizer runs from the event loop), the memory goes back.
  moved = undefined;
  let freed = false;
  for (let i = 0; i < 50 && !freed; i++) {
    await collect();
    freed = cpuBytes() < before;
  }
  // The ordinary case still frees at dispose(): a live view is detached and lets go.
  const u = new addon.NativeTensor([n], "f32", "cpu");
  const view = u.view();
  const withU = cpuBytes();
  u.dispose();
  report({ kept, movedStill, victimIntact, freed, detached: view.length === 0, freedAtDispose: cpuBytes() < withU });
}

main();
