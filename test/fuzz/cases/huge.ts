// Child side of the kernel calls over more than 2^31 elements: sizes past int32 must give the
// right answer or a useful Error, never a wrong one. The tensors are fresh allocations of many
// GiB that are read but, except for a few planted rows, never written: on Linux such memory is
// mapped on demand as zero pages, so the kernel reads zeros without the process holding them.
import { kernels, Tensor } from "../../../lib";
import { attempt, expectMemoryBack, expectUsefulError, fail, liveCpuBytes } from "../harness/checks";

export interface HugeCase {
  kernel: "argmax";
  /** Elements past 2^31 in the row, and where past 2^31 the largest value sits. */
  extra: number;
  plantedPast: number;
}

export async function runCase(c: HugeCase): Promise<void> {
  const before = await liveCpuBytes();
  const vocab = 2 ** 31 + c.extra,
    planted = 2 ** 31 + (c.plantedPast % c.extra);
  const what = `argmax over one bf16 row of ${vocab} elements, the largest at ${planted}`;
  const made = await attempt(() => Tensor.empty([1, vocab], "bf16"));
  if (!made.ok) {
    expectUsefulError(made.error, what);
    return;
  }
  const logits = made.value;
  try {
    // Plant 1.0 (bf16 0x3f80) through a view of the 1024 elements around the index: reshape to rows of 1024.
    const rows = logits.reshape([vocab / 8, 8]);
    const row = rows.rows(Math.floor(planted / 8), 1);
    const bits = new Uint16Array(8);
    bits[planted % 8] = 0x3f80;
    row.write(bits);
    row.dispose();
    rows.dispose();
    const r = await attempt(() => kernels.argmax({ logits }));
    if (!r.ok) {
      expectUsefulError(r.error, what);
      return;
    }
    const index = (r.value.toArray() as Int32Array)[0];
    r.value.dispose();
    if (index !== planted) fail(`${what}: argmax says ${index} (silently wrong)`);
  } finally {
    logits.dispose();
  }
  await expectMemoryBack(before, what);
}
