// Defect: option getters ran user JavaScript after the tensors were checked, so a getter that
// disposed an output tensor made the kernel write freed memory. Options are now read whole,
// into plain values, before any tensor is looked at.
import { reportOf, runChild } from "./child";

test.each(["streaming", "lazyRatio", "nested getter", "scale"])(
  "a %s getter that disposes an output tensor gets a 'disposed tensor' error, not a use-after-free",
  (name) => {
    const report = reportOf<Record<string, string>>(runChild("option-getters.js", [name]));
    expect(report[name]).toMatch(/is a disposed tensor: it was freed by dispose\(\)/);
  },
);
