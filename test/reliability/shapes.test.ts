// Defects: rank-0 tensors (the native constructor and slice() are reachable through exported
// handles) crashed rmsNorm/swiGlu on shape().back(); slice() with huge dimensions overflowed
// the element count and V8 aborted; dimensions were narrowed to int32 unchecked (argmax over
// more than 2^31 logits returned 0); sink + window overflowed int32 in the kernels.
import { reportOf, runChild } from "./child";

const expected: Array<[string, RegExp]> = [
  ["rank-0 constructor", /tensor shape has no dimensions: a tensor needs at least one/],
  ["rank-0 slice into rmsNorm", /slice shape has no dimensions/],
  ["rank-0 slice into swiGlu", /slice shape has no dimensions/],
  ["slice with huge dims", /slice shape \[1099511627776, 1099511627776, 1073741824\] has more than 2\^40 elements/],
  ["slice offset past 2^63", /slice of 1 elements at offset 1e\+300 does not fit a tensor of 16 elements/],
  ["argmax over more than 2^31 logits", /argmax: logits' vocabulary is 2147483712, more than the 2147483647 this kernel can index/],
  ["cutToStreaming sink + window past int32", /cutToStreaming: sink \+ window is 2147484664, more than the 2147483647/],
  ["prefill streaming sink + window past int32", /prefillAttention streaming: sink \+ window is 3221225470, more than the 2147483647/],
];

test.each(expected)("%s is refused with an error that says why", (name, message) => {
  const report = reportOf<Record<string, string>>(runChild("shapes.js", [name]));
  expect(report[name]).toMatch(message);
});
