// What cudaStatus() tells a user whose NVIDIA driver cannot run the CUDA runtime linked into the
// addon. A stand-in libcuda.so.1 (compiled here; it reports an older CUDA version and offers no
// other entry points) goes first on a child process's library path, where the runtime looks for the
// driver, so the real runtime code takes the too-old-driver path on any machine.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { addonPath, cudaStatus } from "../lib";
import { Random } from "./helpers/reference";

const status = cudaStatus();
const compiler = spawnSync("cc", ["--version"], { stdio: "ignore" }).status === 0;
const withStub = status.built && compiler ? test : test.skip;
if (!status.built) console.log("cuda-driver tests skipped: the addon was built without its CUDA backend");
else if (!compiler) console.log("cuda-driver tests skipped: no C compiler (cc) to build the stand-in driver");

function statusWithDriverStub(driverVersion: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lt-driver-"));
  // The runtime asks the driver for every entry point through cuGetProcAddress_v2; this one
  // answers for cuInit, cuDriverGetVersion and itself, and CUDA_ERROR_NOT_FOUND for the rest.
  fs.writeFileSync(
    path.join(dir, "stub.c"),
    [
      "#include <string.h>",
      `static int driverGetVersion(int *version) { *version = ${driverVersion}; return 0; }`,
      "static int init(unsigned flags) { return 0; }",
      "int cuGetProcAddress_v2(const char *name, void **fn, int version, unsigned long long flags, int *found) {",
      "  if (found) *found = 0;",
      '  if (!strcmp(name, "cuDriverGetVersion")) { *fn = (void *)driverGetVersion; return 0; }',
      '  if (!strcmp(name, "cuInit")) { *fn = (void *)init; return 0; }',
      '  if (!strcmp(name, "cuGetProcAddress")) { *fn = (void *)cuGetProcAddress_v2; return 0; }',
      "  *fn = 0;",
      "  if (found) *found = 1;",
      "  return 500;",
      "}",
      "",
    ].join("\n"),
  );
  const cc = spawnSync("cc", ["-shared", "-fPIC", "-o", path.join(dir, "libcuda.so.1"), path.join(dir, "stub.c")], { encoding: "utf8" });
  if (cc.status !== 0) throw new Error(`building the stand-in driver failed: ${cc.stderr}`);
  const child = spawnSync(process.execPath, ["-e", `console.log(JSON.stringify(require(${JSON.stringify(addonPath())}).cudaStatus()))`], {
    encoding: "utf8",
    env: { ...process.env, LD_LIBRARY_PATH: [dir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":") },
  });
  fs.rmSync(dir, { recursive: true, force: true });
  if (child.status !== 0) throw new Error(`the child process failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as { built: boolean; available: boolean; deviceCount: number; reason?: string };
}

describe("CUDA driver too old for the runtime", () => {
  withStub("cudaStatus() names the driver's CUDA version, the driver needed and the remedies", () => {
    const rng = new Random();
    const major = 11 + Math.floor(rng.next() * 2);
    const minor = Math.floor(rng.next() * 9);
    const reported = statusWithDriverStub(major * 1000 + minor * 10);
    expect(reported).toMatchObject({ built: true, available: false, deviceCount: 0 });
    expect(reported.reason).toMatch(
      new RegExp(
        `^the NVIDIA driver is too old: it supports CUDA ${major}\\.${minor}, and this build uses CUDA 13\\.\\d+, which needs driver 580 or newer; update the NVIDIA driver`,
      ),
    );
    expect(reported.reason).toContain("LIGHTTRANSFER_BUILD_FROM_SOURCE=1 npm rebuild lighttransfer");
  });

  const noDriverHere =
    status.built && !status.available && spawnSync("sh", ["-c", "ldconfig -p | grep -q 'libcuda\\.so\\.1 '"]).status !== 0;
  (noDriverHere ? test : test.skip)("with no driver installed, cudaStatus() says to install one", () => {
    expect(status.reason).toMatch(
      /^no NVIDIA driver was found \(libcuda\.so\.1 did not load\), so everything runs on the CPU; to use a GPU, install the NVIDIA driver \(580 or newer/,
    );
  });
});
