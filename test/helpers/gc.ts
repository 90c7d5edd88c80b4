// Forces garbage collection so a memory measurement is not disturbed by tensors other tests
// dropped without disposing (the GC finalizer would free them mid-measurement).
import * as v8 from "node:v8";
import * as vm from "node:vm";

export async function collectGarbage(rounds = 3): Promise<void> {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  for (let i = 0; i < rounds; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
}
