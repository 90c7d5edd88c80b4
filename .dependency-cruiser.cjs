// The layers of lib/, lowest first. A module may import from its own layer and the layers below
// it, never from one above; no import cycles, type-only imports included. Checked in CI
// (`npm run lint:deps`); the layer order is drawn in docs/architecture.md.
const layers = ["common", "runtime", "kernels", "checkpoint", "cache", "model", "hybrid", "generate", "api", "eval", "serve", "cli"];

const upward = layers.slice(0, -1).map((layer, i) => ({
  name: `no-upward-from-${layer}`,
  comment: `lib/${layer} sits below ${layers.slice(i + 1).join(", ")}: it may not import them`,
  severity: "error",
  from: { path: `^lib/${layer}/` },
  to: { path: `^lib/(${layers.slice(i + 1).join("|")})/` },
}));

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "an import cycle ties modules that should be layered",
      severity: "error",
      from: { path: "^lib/" },
      to: { circular: true },
    },
    {
      name: "no-import-of-entry",
      comment: "lib/index.ts is the public surface; only the CLI, which is a user of it, imports it",
      severity: "error",
      from: { path: "^lib/", pathNot: "^lib/(cli/|index\\.ts$)" },
      to: { path: "^lib/index\\.ts$" },
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^(dist|node_modules)/" },
  },
};
