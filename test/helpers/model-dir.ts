// Copies of the fixture checkpoints to break on purpose.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fixtureRoot } from "./fixtures";

/** A fresh temporary copy of a fixture model directory. */
export function copyFixture(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `lt-${name}-`));
  for (const f of fs.readdirSync(path.join(fixtureRoot, name))) fs.copyFileSync(path.join(fixtureRoot, name, f), path.join(dir, f));
  return dir;
}

/** Rewrites a JSON file of `dir` through `edit`. */
export function editJson(dir: string, file: string, edit: (json: Record<string, unknown>) => unknown): void {
  const at = path.join(dir, file);
  fs.writeFileSync(at, JSON.stringify(edit(JSON.parse(fs.readFileSync(at, "utf8")))));
}
