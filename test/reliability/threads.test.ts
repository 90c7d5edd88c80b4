// The CPU thread count: a count the pool cannot take is an error that names the range, checked in
// TypeScript and again in the addon (which once wrapped 2^31 to "default" and tried to start 10^9
// threads, leaving the process without threads for libuv), and the pool keeps its size.
import { getThreads, maxThreads, setThreads } from "../../lib";
import { addon } from "../../lib/runtime/native";

const before = getThreads();
afterAll(() => setThreads(before));

test.each([1e9, 2 ** 31, maxThreads + 1, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
  "setThreads(%p) is an error naming the range",
  (count) => {
    expect(() => setThreads(count)).toThrow(
      new RangeError(`thread count must be an integer in [0, ${maxThreads}] (0: one per hardware thread), got ${String(count)}`),
    );
    expect(getThreads()).toBe(before);
  },
);

test.each([2 ** 31, 1e9, -1, 2.5])("the addon itself refuses %p, whatever TypeScript lets through", (count) => {
  expect(() => addon().setThreads(count)).toThrow(/setThreads: the thread count must be an integer in \[0, 1024\]/);
  expect(getThreads()).toBe(before);
});

test("a count in range is taken and reported", () => {
  const count = 1 + Math.floor(Math.random() * 7);
  expect(setThreads(count)).toBe(count);
  expect(getThreads()).toBe(count);
});
