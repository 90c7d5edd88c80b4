// `npm test` runs the CPU suite always and the GPU suite where CUDA is available (it prints that it
// was skipped otherwise); the GPU tests that fill the card run afterwards, by themselves, because
// jest runs the files of one invocation side by side. `npm run test:gpu` runs the GPU suites alone.
const tsJest = { "^.+\\.ts$": ["ts-jest", { tsconfig: { sourceMap: true, types: ["jest", "node"] }, diagnostics: { warnOnly: false } }] };
module.exports = {
  projects: [
    {
      displayName: "cpu",
      testEnvironment: "node",
      transform: tsJest,
      testMatch: ["<rootDir>/test/*.test.ts", "<rootDir>/test/reliability/*.test.ts", "<rootDir>/test/fuzz/*.test.ts"],
    },
    { displayName: "gpu", testEnvironment: "node", transform: tsJest, testMatch: ["<rootDir>/test/gpu/*.test.ts"] },
    // Tests that fill the whole card: run alone, after the others (see package.json's test scripts).
    { displayName: "gpu-exclusive", testEnvironment: "node", transform: tsJest, testMatch: ["<rootDir>/test/gpu/exclusive/*.test.ts"] },
  ],
  testTimeout: 120000,
};
