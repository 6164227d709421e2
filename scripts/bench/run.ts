import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { engineSection } from "./engine-bench.js";
import { renderTable, type Table } from "./report.js";
import { generateWorkload, LARGE, SMALL } from "./workload.js";

/**
 * `npm run bench [-- --quick]`: runs every benchmark section side by side on one machine, prints the
 * tables and writes docs/BENCHMARKS.md. Exits 1 when any answer disagrees with the oracle.
 */
async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const seconds = quick ? 1 : 5;
  const tables: Table[] = [];
  let failed = false;

  const started = new Date();
  console.log(`canopy bench (${quick ? "quick" : "full"}) — generating workloads…`);
  const small = generateWorkload(SMALL, 42);
  const large = generateWorkload(LARGE, 42);

  const engine = engineSection([small, large], seconds);
  tables.push(engine.table);
  failed ||= engine.failed;
  console.log(renderTable(engine.table));

  const header = [
    "# Canopy benchmarks",
    "",
    `Generated ${started.toISOString()} by \`npm run bench${quick ? " -- --quick" : ""}\` on ${cpus().length}× ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}.`,
    "Workloads are deterministic (seed 42, scripts/bench/workload.ts); every measured answer is checked against an independent oracle.",
    "",
  ].join("\n");
  mkdirSync("docs", { recursive: true });
  writeFileSync("docs/BENCHMARKS.md", header + "\n" + tables.map(renderTable).join("\n\n") + "\n");
  console.log("\nwrote docs/BENCHMARKS.md");
  if (failed) {
    console.error("FAILED: answers disagreed with the oracle");
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
