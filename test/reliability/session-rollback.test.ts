// A generate that fails part-way through its prompt (here: the KV pool runs out) rolls back:
// every page it reserved is released, the session holds exactly what it held before, and its
// next generate gives what a session that never saw the failed prompt gives. The tests are
// shared with the GPU suite (test/gpu/session-reliability.test.ts).
import { rollbackTests } from "../helpers/session-rollback";

rollbackTests({ device: "cpu", valueBytes: 4 });
