// Tensors over 4 GiB, more than Node accepts in one buffer. Case "view": view() must throw a
// clear error (it aborted with a double free) and viewBytes() windows must reach every byte.
// Case "safetensors": a checkpoint tensor over 4 GiB (a sparse file with random blocks at
// its start, across the 4 GiB mark and at its end) must load with those bytes in place.
// Case "read": read() and readFloat32() of such a tensor (and readFloat32() of a bf16 one half
// its size) must throw a clear error: V8 aborted the process on an allocation it could not make.
// Reports what it saw.

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const crypto = require("node:crypto");
const { addon, report } = require("./common");

const elements = 2 ** 30 + 1024; // f32: 4 GiB + 4 KiB
const bytes = elements * 4;
const probes = [0, 2 ** 32 - 100, bytes - 256];

if (process.argv[3] === "view") {
  const t = new addon.NativeTensor([elements], "f32", "cpu");
  let viewError = "no error";
  try {
    t.view();
  } catch (err) {
    viewError = err.message;
  }
  const block = crypto.randomBytes(256);
  for (const at of probes) t.viewBytes(at, 256).set(block);
  const readBack = probes.map((at) => Buffer.from(t.viewBytes(at, 256)).equals(block));
  const window = t.viewBytes(2 ** 32, 16);
  t.dispose();
  report({ viewError, readBack, detachedAfterDispose: window.length === 0 });
} else if (process.argv[3] === "read") {
  const outcome = (call) => {
    try {
      call();
      return "no error";
    } catch (err) {
      return err.message;
    }
  };
  const t = new addon.NativeTensor([elements], "f32", "cpu");
  const half = new addon.NativeTensor([elements], "bf16", "cpu");
  report({ read: outcome(() => t.read()), readFloat32: outcome(() => t.readFloat32()), bf16: outcome(() => half.readFloat32()) });
  t.dispose();
  half.dispose();
} else {
  require("../../helpers/register-ts");
  const { SafetensorsFile } = require("../../../lib/checkpoint/safetensors");
  let header = JSON.stringify({ w: { dtype: "F32", shape: [elements], data_offsets: [0, bytes] } });
  header += " ".repeat((8 - (header.length % 8)) % 8);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-big-")), "big.safetensors");
  const fd = fs.openSync(file, "w");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  fs.writeSync(fd, prefix, 0, 8, 0);
  fs.writeSync(fd, Buffer.from(header), 0, header.length, 8);
  const dataStart = 8 + header.length;
  const blocks = probes.map(() => crypto.randomBytes(256));
  probes.forEach((at, i) => fs.writeSync(fd, blocks[i], 0, 256, dataStart + at));
  fs.ftruncateSync(fd, dataStart + bytes);
  fs.closeSync(fd);
  try {
    const st = SafetensorsFile.open(file);
    const t = st.read("w");
    st.close?.();
    report({ shape: t.shape, loaded: probes.map((at, i) => Buffer.from(t.viewBytes(at, 256)).equals(blocks[i])) });
    t.dispose();
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}
