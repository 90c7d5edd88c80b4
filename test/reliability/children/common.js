// Shared by the child scripts: the addon they were handed, fresh random data, and tensors on
// LT_TEST_DEVICE (default "cpu"; the async index check also runs with "cuda:0").

const addon = require(process.argv[2]);
const device = process.env.LT_TEST_DEVICE || "cpu";
// Activations and pools: f32 on the CPU; CUDA attention takes only 16-bit floats.
const float = device === "cpu" ? "f32" : "bf16";

// Unseeded on purpose: every child checks errors, memory, or an async call against the sync call
// on the very same inputs, so no outcome hangs on the values drawn here, and a seed would need a
// second copy of the test generator in plain JS plus a way to report it through each parent test.
function randomFloats(n) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

function tensor(shape, dtype, data) {
  const t = new addon.NativeTensor(shape, dtype, device);
  if (data) t.write(data);
  return t;
}

const count = (shape) => shape.reduce((a, b) => a * b, 1);
const randomTensor = (shape) => tensor(shape, float, randomFloats(count(shape)));
const ints = (values) => tensor([values.length], "i32", Int32Array.from(values));

function report(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

// Each case's outcome: its error message, or "no error". attempt() runs only the case named by
// the script's second argument, so one crash cannot hide another.
const outcomes = {};
function attempt(name, call) {
  if (name !== process.argv[3]) return;
  try {
    call();
    outcomes[name] = "no error";
  } catch (err) {
    outcomes[name] = err.message;
  }
}

module.exports = { addon, device, float, randomFloats, tensor, randomTensor, ints, count, report, outcomes, attempt };
