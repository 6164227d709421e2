/**
 * The CLI's parsing and file format without a server: flags (required, env fallback, defaults,
 * repeatable), instants, help and usage errors through `run`, the export file's writer and validator,
 * and the built `dist/src/cli.js` answering `--help` (exit 0) and usage errors (exit 2) as a process.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { helpText, list, parseCommand, parseInstant, UsageError, type CommandSpec } from "../../src/cli/args.js";
import { EXPORT_FORMAT, exportChunks, validateExportFile, type ExportFile } from "../../src/cli/export-format.js";
import type { Io } from "../../src/cli/io.js";
import { run } from "../../src/cli/run.js";

const spec: CommandSpec = {
  name: "demo",
  brief: "a demo",
  summary: "A command for tests.",
  positionals: ["<file>", "<extra>?"],
  options: {
    url: { type: "string", env: "DEMO_URL", default: "http://127.0.0.1:8080", description: "server" },
    key: { type: "string", env: "DEMO_KEY", required: true, description: "key" },
    scope: { type: "string", multiple: true, description: "scope" },
    json: { type: "boolean", description: "json" },
  },
};

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error("expected a UsageError");
}

describe("parseCommand", () => {
  it("takes flags, falls back to the environment and then to defaults, and splits repeated lists", () => {
    const p = parseCommand(spec, ["f.json", "--key", "k1", "--scope", "check", "--scope", "read,assignments:write", "--json"], { DEMO_KEY: "ignored" });
    expect(p).toEqual({
      help: false,
      positionals: ["f.json"],
      values: { url: "http://127.0.0.1:8080", key: "k1", scope: ["check", "read,assignments:write"], json: true },
    });
    expect(list(p.values, "scope")).toEqual(["check", "read", "assignments:write"]);
    const fromEnv = parseCommand(spec, ["f.json", "x"], { DEMO_KEY: "k2", DEMO_URL: "http://h:1" });
    expect(fromEnv.values).toMatchObject({ key: "k2", url: "http://h:1", json: undefined });
    expect(fromEnv.positionals).toEqual(["f.json", "x"]);
    // help wins over everything else on the line
    expect(parseCommand(spec, ["-h"], {}).help).toBe(true);
    expect(parseCommand(spec, ["--bogus", "--help"], {}).help).toBe(true);
  });

  it("names the flag or argument at fault", () => {
    const cases: Array<[string[], string]> = [
      [["f"], "missing --key (or DEMO_KEY)"],
      [["f", "--key"], "option --key needs a value"],
      [["f", "--key", "k", "--bogus"], "unknown option --bogus"],
      [["f", "--key", "k", "-z"], "unknown option -z"],
      [["f", "--key", "k", "--json=yes"], "option --json takes no value"],
      [["--key", "k"], "missing argument <file>"],
      [["a", "b", "c", "--key", "k"], 'unexpected argument "c"'],
      [["f", "--key", ""], "--key must not be empty"],
    ];
    for (const [argv, message] of cases) {
      const err = usageError(() => parseCommand(spec, argv, {}));
      expect({ argv, message: err.message, command: err.command }).toEqual({ argv, message, command: "demo" });
    }
  });

  it("help lists every option with its env variable, default and whether it is required", () => {
    const text = helpText(spec);
    expect(text.split("\n").slice(0, 3)).toEqual(["Usage: canopy demo <file> [<extra>] [options]", "", "A command for tests."]);
    expect(text).toMatch(/ {2}--url <value> +server \(env DEMO_URL; default http:\/\/127\.0\.0\.1:8080\)\n/);
    expect(text).toMatch(/ {2}--key <value> +key \(required; env DEMO_KEY\)\n/);
    expect(text).toMatch(/ {2}--scope <value> +scope \(repeatable\)\n/);
    expect(text).toMatch(/ {2}-h, --help +show this help\n$/);
  });
});

describe("parseInstant", () => {
  const now = Date.UTC(2026, 0, 1);
  it("reads ISO 8601 instants and, where allowed, durations from now", () => {
    expect(parseInstant("2027-01-01T00:00:00Z", "at", "check").toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(parseInstant("2027-01-01T02:00:00+02:00", "at", "check").toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(parseInstant("2027-03-04", "at", "check").toISOString()).toBe("2027-03-04T00:00:00.000Z");
    expect(parseInstant("90d", "expires", "keys create", now).toISOString()).toBe("2026-04-01T00:00:00.000Z");
    expect(parseInstant("12h", "expires", "keys create", now).getTime()).toBe(now + 12 * 3600_000);
    expect(parseInstant("2w", "expires", "keys create", now).getTime()).toBe(now + 14 * 86_400_000);
  });
  it("refuses anything else, and durations where no reference instant is given", () => {
    for (const raw of ["tomorrow", "2027-01-01T00:00:00", "2027-13-01", "90d", "1700000000"]) {
      expect(usageError(() => parseInstant(raw, "at", "check")).message).toBe(`--at must be an ISO 8601 timestamp such as 2027-01-01T00:00:00Z; got ${JSON.stringify(raw)}`);
    }
    expect(usageError(() => parseInstant("5y", "expires", "keys create", now)).message).toContain("or a duration such as 90d, 12h");
  });
});

/** An Io that records what a command printed. */
function recorder(env: Record<string, string> = {}): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    env,
    out: (t: string) => void (io.stdout += t),
    err: (t: string) => void (io.stderr += t),
  };
  return io;
}

describe("run", () => {
  const commands = ["serve", "migrate", "keys create", "keys list", "keys revoke", "check", "export", "import"];

  it("prints every command's help with exit 0, also as `canopy help <command>`", async () => {
    for (const name of commands) {
      for (const argv of [[...name.split(" "), "--help"], [...name.split(" "), "-h"], ["help", ...name.split(" ")]]) {
        const io = recorder();
        expect(await run(argv, io)).toBe(0);
        expect(io.stderr).toBe("");
        expect(io.stdout).toMatch(new RegExp(`^Usage: canopy ${name}\\b`));
      }
    }
    const top = recorder();
    expect(await run(["--help"], top)).toBe(0);
    for (const name of commands) expect(top.stdout).toMatch(new RegExp(`\\n  ${name} +\\S`));
    const keys = recorder();
    expect(await run(["keys", "--help"], keys)).toBe(0);
    expect(keys.stdout).toMatch(/^Usage: canopy keys <create\|list\|revoke>/);
  });

  it("answers usage errors with exit 2 and a hint to --help", async () => {
    const cases: Array<[string[], string]> = [
      [[], "Usage: canopy <command> [options]"],
      [["frobnicate"], `canopy: unknown command "frobnicate"\nRun 'canopy --help' for usage.\n`],
      [["keys"], "Usage: canopy keys <create|list|revoke>"],
      [["keys", "rotate"], `canopy keys: unknown keys command "rotate": expected create, list or revoke\nRun 'canopy keys --help' for usage.\n`],
      [["check", "--identity", "i"], "canopy check: missing --key (or CANOPY_KEY)\nRun 'canopy check --help' for usage.\n"],
      [["export", "--key", "k", "--outfile", "x"], "canopy export: unknown option --outfile\nRun 'canopy export --help' for usage.\n"],
      [["import", "f.json", "--key", "k", "--batch-size", "0"], 'canopy import: --batch-size must be a positive integer, got "0"\nRun \'canopy import --help\' for usage.\n'],
      [["keys", "create", "--admin-key", "k", "--environment", "e", "--name", "n", "--expires", "soon"], "canopy keys create: --expires must be"],
      [["check", "--key", "k", "--identity", "i", "--permission", "p", "--url", "ftp://x"], 'canopy check: --url must be an http:// or https:// URL, got "ftp://x"'],
      [["help", "nothing"], 'canopy: unknown command "nothing"'],
    ];
    for (const [argv, message] of cases) {
      const io = recorder();
      const code = await run(argv, io);
      expect({ argv, code, stdout: io.stdout }).toEqual({ argv, code: 2, stdout: "" });
      expect({ argv, stderr: io.stderr.slice(0, message.length) }).toEqual({ argv, stderr: message });
    }
  });

  it("--dry-run validates a file without a key or a server", async () => {
    const io = recorder();
    expect(await run(["import", "/nonexistent/export.json", "--dry-run"], io)).toBe(1);
    expect(io.stderr).toMatch(/^canopy import: cannot read \/nonexistent\/export\.json: ENOENT/);
  });
});

function sample(nodes = 4): ExportFile {
  const list: ExportFile["nodes"] = [{ id: "r", parentId: null, type: "org", name: "Acme", externalId: "acme", metadata: { tier: "gold", nested: { a: [1, "x"] } } }];
  for (let i = 1; i < nodes; i++) list.push({ id: `n${i}`, parentId: i === 1 ? "r" : "n1", type: i === 1 ? "region" : "team", name: `N ${i} "quoted"`, externalId: "", metadata: {} });
  return {
    format: EXPORT_FORMAT,
    exportedAt: "2026-01-01T00:00:00.000Z",
    source: { url: "http://x", rootNodeId: "r", revision: "7" },
    counts: { permissions: 2, roles: 1, nodes, assignments: 1, identities: 1 },
    accessModel: "hierarchy",
    hierarchySchema: { nodeTypes: ["org", "region", "team"], allowedChildren: { org: ["region"], region: ["team"] }, maxDepth: 3, rootNodeType: "org" },
    permissions: [
      { key: "invoice.read", description: "Read", category: "billing" },
      { key: "invoice.approve", description: "", category: "" },
    ],
    roles: [{ id: "role1", name: "viewer", description: "", permissionKeys: ["invoice.read"] }],
    nodes: list,
    identities: [{ id: "i1", email: "ada@example.com", externalId: "" }],
    assignments: [{ id: "a1", identityId: "i1", roleId: "role1", nodeId: nodes > 1 ? "n1" : "r", effectiveFrom: "2026-01-01T00:00:00.000Z", effectiveTo: null }],
  };
}

describe("export file", () => {
  it("is written item per line and reads back to the same value, also when larger than one chunk", () => {
    for (const n of [1, 4, 20_000]) {
      const file = sample(n);
      const chunks = [...exportChunks(file)];
      const textOut = chunks.join("");
      expect(JSON.parse(textOut)).toEqual(file);
      expect(validateExportFile(JSON.parse(textOut))).toEqual(file);
      if (n === 20_000) expect(chunks.length).toBeGreaterThan(3);
      if (n === 4) {
        expect(textOut).toContain('\n  "nodes": [\n    {"id":"r","parentId":null,"type":"org","name":"Acme",');
        expect(textOut.endsWith("  ]\n}\n")).toBe(true);
      }
    }
    const empty = { ...sample(1), permissions: [], roles: [], counts: { permissions: 0, roles: 0, nodes: 1 }, identities: undefined, assignments: undefined };
    delete empty.identities;
    delete empty.assignments;
    expect(JSON.parse([...exportChunks(empty)].join(""))).toEqual(empty);
  });

  it("is refused with the item at fault named", () => {
    const cases: Array<[(f: ExportFile) => unknown, string]> = [
      [(f) => ({ ...f, accessModel: "tree" }), 'accessModel must be "hierarchy" or "flat", got "tree"'],
      [(f) => ({ ...f, permissions: [f.permissions[0], { key: "Invoice" }] }), 'permissions[1].key "Invoice" is not a permission key (lowercase resource.action)'],
      [(f) => ({ ...f, permissions: [f.permissions[0], f.permissions[0]] }), 'permissions[1].key "invoice.read" appears twice'],
      [(f) => ({ ...f, counts: { ...f.counts, roles: 2 } }), "roles holds 1 item(s) but counts.roles says 2: the file is truncated or was edited"],
      [(f) => ({ ...f, nodes: f.nodes.slice(1), counts: { ...f.counts, nodes: 3 } }), "nodes must start with the root (the node whose parentId is null)"],
      [(f) => ({ ...f, nodes: [...f.nodes.slice(0, 3), { ...f.nodes[3], type: "org" }] }), 'nodes[3] (N 3 "quoted", id n3): type "org" is not allowed under "region"'],
      [(f) => ({ ...f, hierarchySchema: { ...f.hierarchySchema!, maxDepth: 2 } }), 'nodes[2] (N 2 "quoted", id n2): depth 3 exceeds hierarchySchema.maxDepth 2'],
      [(f) => ({ ...f, accessModel: "flat" }), "nodes: the flat access model has only the root, but the file has 4 nodes"],
      [(f) => ({ ...f, nodes: [...f.nodes.slice(0, 3), { ...f.nodes[3], id: "n1" }] }), 'nodes[3] (N 3 "quoted", id n1): the id appears twice'],
      [(f) => ({ ...f, assignments: [{ ...f.assignments![0], roleId: "nope" }] }), "assignments[0]: role nope is not among the file's roles"],
      [(f) => ({ ...f, assignments: [{ ...f.assignments![0], nodeId: "nope" }] }), "assignments[0]: node nope is not among the file's nodes"],
      [(f) => ({ ...f, assignments: [{ ...f.assignments![0], effectiveFrom: "soon" }] }), 'assignments[0].effectiveFrom is not an ISO 8601 timestamp: "soon"'],
      [(f) => ({ ...f, assignments: [{ ...f.assignments![0], effectiveTo: "2025-01-01T00:00:00Z" }] }), "assignments[0]: effectiveTo must be after effectiveFrom"],
      [() => [], "the file is not a JSON object"],
    ];
    for (const [edit, message] of cases) {
      let got = "";
      try {
        validateExportFile(edit(sample()));
      } catch (err) {
        got = (err as Error).message;
      }
      expect(got).toBe(message);
    }
  });
});

describe("the built CLI as a process", () => {
  const CLI = resolve(__dirname, "../../dist/src/cli.js");
  const exec = promisify(execFile);
  async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await exec(process.execPath, [CLI, ...args]);
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it("answers --help for every command with exit 0 and usage errors with exit 2", async () => {
    for (const name of ["serve", "migrate", "keys create", "keys list", "keys revoke", "check", "export", "import"]) {
      const r = await runCli([...name.split(" "), "--help"]);
      expect({ name, code: r.code, stderr: r.stderr }).toEqual({ name, code: 0, stderr: "" });
      expect(r.stdout).toMatch(new RegExp(`^Usage: canopy ${name}\\b[^\\n]*\\n\\n\\S`));
    }
    expect(await runCli(["launch"])).toEqual({ code: 2, stdout: "", stderr: `canopy: unknown command "launch"\nRun 'canopy --help' for usage.\n` });
    expect(await runCli(["check", "--frobnicate"])).toEqual({ code: 2, stdout: "", stderr: "canopy check: unknown option --frobnicate\nRun 'canopy check --help' for usage.\n" });
    const version = await runCli(["--version"]);
    const pkg = JSON.parse(readFileSync(resolve(__dirname, "../../package.json"), "utf8")) as { version: string };
    expect(version).toEqual({ code: 0, stdout: `canopy ${pkg.version}\n`, stderr: "" });
  });
});
