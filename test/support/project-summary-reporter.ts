import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints one line per vitest project (unit, e2e-sqlite, e2e-postgres, browser) with its passed / failed /
 * skipped counts, so CI shows that both backends really ran. Used by .ci/run.
 */
export default class ProjectSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const counts = new Map<string, { passed: number; failed: number; skipped: number }>();
    for (const m of testModules) {
      const name = m.project.name || "default";
      let c = counts.get(name);
      if (!c) counts.set(name, (c = { passed: 0, failed: 0, skipped: 0 }));
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "passed") c.passed++;
        else if (state === "failed") c.failed++;
        else c.skipped++;
      }
    }
    const lines = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([name, c]) => `  ${name.padEnd(14)} ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped`);
    process.stdout.write(`\nper project:\n${lines.join("\n")}\n`);
  }
}
