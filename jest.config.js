// `npm test` runs both projects: the CPU suite always, the GPU suite where CUDA is available
// (it prints that it was skipped otherwise). `npm run test:gpu` runs the GPU suite alone.
const tsJest = { "^.+\\.ts$": ["ts-jest", { tsconfig: { sourceMap: true, types: ["jest", "node"] }, diagnostics: { warnOnly: false } }] };
module.exports = {
  projects: [
    { displayName: "cpu", testEnvironment: "node", transform: tsJest, testMatch: ["<rootDir>/test/*.test.ts", "<rootDir>/test/reliability/*.test.ts", "<rootDir>/test/fuzz/*.test.ts"] },
    { displayName: "gpu", testEnvironment: "node", transform: tsJest, testMatch: ["<rootDir>/test/gpu/*.test.ts"] },
  ],
  testTimeout: 120000,
};
