#!/usr/bin/env node
// Regenerates src/gen from proto/ (and the third-party protos that scripts/vendor-protos.mjs copies
// from npm packages into proto-vendor/) with the buf binary and protoc-gen-es from node_modules
// (offline: no buf schema registry). Lints first so an undocumented field never reaches the
// generated code. Exits non-zero on the first failure.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buf = join(root, "node_modules", ".bin", process.platform === "win32" ? "buf.cmd" : "buf");
const outDir = join(root, "src", "gen");

function run(args) {
  const result = spawnSync(buf, args, { cwd: root, stdio: "inherit" });
  if (result.error) {
    console.error(`generate: could not run buf (${result.error.message}); did you run npm install?`);
    process.exit(1);
  }
  if (result.status !== 0) {
    console.error(`generate: \`buf ${args.join(" ")}\` failed with exit code ${result.status ?? result.signal}`);
    process.exit(result.status || 1);
  }
}

if (!existsSync(buf)) {
  console.error(`generate: ${buf} not found; run npm install first`);
  process.exit(1);
}
const vendored = spawnSync(process.execPath, [join(root, "scripts", "vendor-protos.mjs")], { cwd: root, stdio: "inherit" });
if (vendored.status !== 0) process.exit(vendored.status || 1);
run(["lint"]);
rmSync(outDir, { recursive: true, force: true });
run(["generate"]);
console.log("generate: src/gen is up to date");
