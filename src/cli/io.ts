/** Where a CLI command writes and what it reads from its environment: the process's, or a test's. */
export interface Io {
  /** results (stdout) */
  out(text: string): void;
  /** progress, warnings and errors (stderr) */
  err(text: string): void;
  /** environment variables (CANOPY_URL, CANOPY_KEY, CANOPY_ADMIN_KEY, CANOPY_DATABASE_URL, …) */
  env: Readonly<Record<string, string | undefined>>;
}

/** "1 node", "3 nodes", "2 identities" */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
