import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { migrations } from "../../src/store/index.js";
import { seedDatabase, type SeededDatabase } from "./seed.js";
import type { Workload } from "./workload.js";

/** Where seeded SQLite files are kept between runs (outside the repository). */
export const SEED_CACHE = "/tmp/canopy-bench-cache";

/**
 * A fingerprint of everything a seeded file depends on: the workload's rows and the schema
 * (migration names). A change to either makes a new cache entry, never a stale hit.
 */
function fingerprint(w: Workload): string {
  const h = createHash("sha256");
  h.update(JSON.stringify([Object.keys(migrations), w.name, w.seed, w.at, w.permissionKeys, w.roles, w.identityIds.length, w.identityIds[w.identityIds.length - 1]]));
  for (const n of w.nodes) h.update(`${n.id}|${n.parentId}|${n.type}\n`);
  for (const a of w.assignments) h.update(`${a.id}|${a.identityId}|${a.roleId}|${a.nodeId}|${a.effectiveFrom}|${a.effectiveTo}\n`);
  return h.digest("hex").slice(0, 16);
}

/**
 * A SQLite file at `file` holding the workload (seed.ts `seedDatabase`), copied from the seed cache
 * when an earlier run already wrote one for the same workload and schema: seeding 200 k assignments
 * through the Store API takes 10–20 s on a 2-core machine, a copy well under one. A cache entry is
 * never opened by a server, only copied.
 */
export async function seedSqliteFile(w: Workload, file: string): Promise<SeededDatabase & { cached: boolean }> {
  const t0 = performance.now();
  const key = join(SEED_CACHE, `${w.name}-${fingerprint(w)}`);
  mkdirSync(dirname(file), { recursive: true });
  if (existsSync(`${key}.db`) && existsSync(`${key}.json`)) {
    const meta = JSON.parse(readFileSync(`${key}.json`, "utf8")) as SeededDatabase;
    copyFileSync(`${key}.db`, file);
    return { ...meta, ms: performance.now() - t0, cached: true };
  }
  const seeded = await seedDatabase(w, `sqlite:${file}`);
  // closing the store checkpoints the WAL into the file; if a WAL is left the file alone is incomplete
  if (existsSync(`${file}-wal`)) return { ...seeded, cached: false };
  try {
    mkdirSync(SEED_CACHE, { recursive: true });
    copyFileSync(file, `${key}.db.tmp`);
    renameSync(`${key}.db.tmp`, `${key}.db`);
    writeFileSync(`${key}.json`, JSON.stringify(seeded));
  } catch {
    rmSync(`${key}.db.tmp`, { force: true });
  }
  return { ...seeded, cached: false };
}
