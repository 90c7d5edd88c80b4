// A decode step that fails part-way rolls back: every cache holds what it held before, every page
// it took is back in the pool, and the next steps give what they would have given without it. The
// tests are shared with the GPU suite (test/gpu/session-reliability.test.ts).
import { stepRollbackTests } from "../helpers/step-rollback";

stepRollbackTests("cpu");
