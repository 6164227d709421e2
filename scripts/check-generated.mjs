#!/usr/bin/env node
// Fails (exit 1) when src/gen is not exactly what `buf generate` produces from proto/ and
// proto-vendor/ now (regenerates into a temporary directory and compares file lists and contents),
// or when proto-vendor/ is not what scripts/vendor-protos.mjs copies from the installed npm packages.
// Run it in CI after editing protos; fix with `npm run generate`.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buf = join(root, "node_modules", ".bin", process.platform === "win32" ? "buf.cmd" : "buf");
const genDir = join(root, "src", "gen");

/** Every file under dir, as forward-slash paths relative to dir. */
function listFiles(dir) {
  if (!existsSync(dir)) return [];
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const parent = entry.parentPath ?? entry.path;
    files.push(relative(dir, join(parent, entry.name)).split(sep).join("/"));
  }
  return files.sort();
}

const vendored = spawnSync(process.execPath, [join(root, "scripts", "vendor-protos.mjs"), "--check"], { cwd: root, stdio: "inherit" });
if (vendored.error || vendored.status !== 0) process.exit(1);

const tmp = mkdtempSync(join(tmpdir(), "canopy-gen-"));
let exitCode = 0;
try {
  // buf.gen.yaml's `out: src/gen` is resolved relative to --output.
  const result = spawnSync(buf, ["generate", "--output", tmp], { cwd: root, stdio: "inherit" });
  if (result.error || result.status !== 0) {
    console.error(`check-generated: buf generate failed${result.error ? ` (${result.error.message})` : ""}`);
    exitCode = 1;
  } else {
    const freshDir = join(tmp, "src", "gen");
    const fresh = listFiles(freshDir);
    const committed = listFiles(genDir);
    const stale = [];
    for (const file of new Set([...fresh, ...committed])) {
      const a = join(freshDir, file);
      const b = join(genDir, file);
      if (!existsSync(a)) stale.push(`${file} (should not exist)`);
      else if (!existsSync(b)) stale.push(`${file} (missing)`);
      else if (!readFileSync(a).equals(readFileSync(b))) stale.push(`${file} (differs)`);
    }
    if (stale.length > 0) {
      console.error("check-generated: src/gen is stale; run `npm run generate`. Stale files:");
      for (const line of stale.sort()) console.error(`  src/gen/${line}`);
      exitCode = 1;
    } else {
      console.log(`check-generated: src/gen is up to date (${fresh.length} files)`);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(exitCode);
