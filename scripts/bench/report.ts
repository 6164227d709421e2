/** Tables for the terminal and for docs/BENCHMARKS.md: one format, GitHub markdown. */
export interface Table {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
  notes?: string[];
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function fmtMs(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toFixed(ms < 0.01 ? 2 : 1)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(0)} ms`;
}

export function fmtMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)}`;
}

export function renderTable(t: Table): string {
  const head = `| ${t.columns.join(" | ")} |`;
  const sep = `| ${t.columns.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`;
  const body = t.rows.map((r) => `| ${r.map(String).join(" | ")} |`).join("\n");
  const notes = (t.notes ?? []).map((n) => `\n${n}`).join("\n");
  return `### ${t.title}\n\n${head}\n${sep}\n${body}\n${notes}`;
}

/** Percentile of an unsorted sample (nearest rank). */
export function percentile(sample: number[], p: number): number {
  if (sample.length === 0) return Number.NaN;
  const sorted = [...sample].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
