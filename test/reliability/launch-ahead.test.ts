// Greedy decode steps launched ahead (Decoder.launchGreedy, the stepper's launch-ahead): on the
// CPU each launched step runs at once, which checks the chaining, undo and stepper bookkeeping;
// the GPU suite runs the same tests with the steps really queued (test/gpu/session-reliability.test.ts).
import { launchAheadTests } from "../helpers/launch-ahead";

launchAheadTests("cpu", "always");
