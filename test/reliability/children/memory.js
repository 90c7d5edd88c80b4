// Memory that dispose() must give back at once. Case "create": 10,000 create + write + dispose
// of one size (elements: third argument) in one synchronous loop. Case "view": 100,000 view()
// calls on one tensor, then dispose. Case "window": tensors read through a window, collected,
// then disposed. Reports RSS (MiB) before and after, and the library's live CPU bytes.
// Run with --expose-gc: a collection before each measurement takes the JS garbage out.

const { addon, randomFloats, report } = require("./common");

const mib = () => process.memoryUsage().rss / 2 ** 20;
const settle = () => {
  for (let i = 0; i < 3; i++) global.gc();
};

if (process.argv[3] === "create") {
  const n = Number(process.argv[4] ?? 40_000);
  const data = randomFloats(n);
  const warm = new addon.NativeTensor([n], "f32", "cpu");
  warm.write(data);
  warm.dispose();
  settle();
  const before = mib(),
    liveBefore = addon.memoryUsage().cpu;
  let peak = before;
  for (let i = 0; i < 10_000; i++) {
    const t = new addon.NativeTensor([n], "f32", "cpu");
    t.write(data);
    t.dispose();
    if (i % 100 === 0) peak = Math.max(peak, mib());
  }
  const after = mib();
  report({ before, after, peak: Math.max(peak, after), liveBefore, liveAfter: addon.memoryUsage().cpu });
} else if (process.argv[3] === "window") {
  // 20 tensors of 16 MiB, each read through a small window, collected, then disposed, with no
  // event-loop turn in between: each one's memory must go at dispose().
  const before = mib(),
    liveBefore = addon.memoryUsage().cpu;
  for (let i = 0; i < 20; i++) {
    const t = new addon.NativeTensor([1 << 22], "f32", "cpu");
    t.viewBytes(0, 1024).fill(1);
    settle();
    t.dispose();
  }
  report({ before, after: mib(), liveBefore, liveAfter: addon.memoryUsage().cpu });
} else {
  const t = new addon.NativeTensor([1 << 16], "f32", "cpu");
  t.write(randomFloats(1 << 16));
  t.view();
  settle();
  const before = mib(),
    liveBefore = addon.memoryUsage().cpu;
  let checksum = 0;
  for (let i = 0; i < 100_000; i++) checksum += t.view()[i & 0xffff];
  t.dispose();
  settle();
  const after = mib();
  report({ before, after, liveBefore, liveAfter: addon.memoryUsage().cpu, checksum: Number.isFinite(checksum) });
}
