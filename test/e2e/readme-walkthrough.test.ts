/**
 * The README's REST walkthrough, run as printed: the shell block between the rest-walkthrough markers
 * is executed by bash (with real curl and node) against a real server, with only the KEY and API lines
 * pointed at it. Every line it prints is checked, and the data it created is read back over REST.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

const ready = await backendReady();
const run = promisify(execFile);

/** The block as the README prints it, and the KEY=/API= lines a reader edits. */
function walkthrough(): string {
  const readme = readFileSync(join(import.meta.dirname, "../../README.md"), "utf8");
  const m = /<!-- rest-walkthrough:begin -->\n```sh\n([\s\S]*?)```\n<!-- rest-walkthrough:end -->/.exec(readme);
  if (!m) throw new Error("README.md has no rest-walkthrough block");
  return m[1];
}

describe.skipIf(!ready)("README REST walkthrough", () => {
  let s: TestServer;
  let dir: string;
  beforeAll(async () => {
    s = await startTestServer();
    // inside the single-assign example's window [2026-05-01, 2030-12-31T23:59:59Z)
    s.clock.set(Date.UTC(2026, 10, 23));
    dir = mkdtempSync(join(tmpdir(), "canopy-walkthrough-"));
  });
  afterAll(async () => {
    await s?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("runs as printed: permission, role, node, identities, single assign (active), bulk with a duplicate (207), evaluate", async () => {
    const block = walkthrough();
    expect(block).toMatch(/^KEY=cnpy_\.\.\. /m);
    expect(block).toMatch(/^API=http:\/\/127\.0\.0\.1:8080\/api\/v1$/m);
    const script = block.replace(/^KEY=cnpy_\.\.\..*$/m, `KEY=${s.devKey}`).replace(/^API=.*$/m, `API=${s.url}/api/v1`);
    const { stdout, stderr } = await run("bash", ["-euo", "pipefail", "-c", script], { cwd: dir, timeout: 60_000 });
    expect(stderr).toBe("");
    const lines = stdout.trim().split("\n");
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/^invoice\.read\.\d+$/);
    expect(lines.slice(1)).toEqual(["active", "207", "{ total: 2, succeeded: 1, failed: 1 }", "true", "NO_ASSIGNMENT"]);

    const bulk = JSON.parse(readFileSync(join(dir, "bulk.json"), "utf8"));
    expect(bulk.results.map((r: { status: string; code: number }) => [r.status, r.code])).toEqual([
      ["error", 409],
      ["success", 201],
    ]);
    expect(bulk.results[0].error.code).toBe("rbac.assignment_conflict");

    // two assignments stored: Ada's single one and Grace's from the bulk call
    const res = await fetch(`${s.url}/api/v1/assignments`, { headers: { "x-api-key": s.devKey } });
    expect(res.status).toBe(200);
    const listed = (await res.json()) as { pagination: { item_count: number }; items: Array<{ status: string }> };
    expect(listed.pagination.item_count).toBe(2);
    expect(listed.items.map((a) => a.status)).toEqual(["active", "active"]);
  });
});
