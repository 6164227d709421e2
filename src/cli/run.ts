import { readFileSync } from "node:fs";
import { helpText, parseCommand, str, UsageError, type CommandSpec, type Parsed, type Values } from "./args.js";
import { check, checkSpec } from "./check.js";
import { describeError } from "./client.js";
import { exportCommand, exportSpec } from "./export.js";
import { importCommand, importSpec } from "./import.js";
import type { Io } from "./io.js";
import { keysCreate, keysCreateSpec, keysList, keysListSpec, keysRevoke, keysRevokeSpec } from "./keys.js";
import { migrate, migrateSpec } from "./migrate.js";

/**
 * The `canopy` command line: a table of commands, each a spec (flags, help) and a function returning
 * its exit code. Exit codes: 0 success, 1 runtime or server error, 2 usage error, 3 denied (check).
 */

/** What `run` answers: an exit code, or "serving" when the process must stay up (canopy serve). */
export type Outcome = number | "serving";

interface Command {
  spec: CommandSpec;
  run(values: Values, positionals: string[], io: Io): Promise<number | "serving">;
}

export const serveSpec: CommandSpec = {
  name: "serve",
  brief: "run the server (the same as npm start)",
  summary: "Run the Canopy server: gRPC, gRPC-Web, Connect and REST on one port (the same as npm start).",
  options: {},
  notes: [
    "Configuration comes from environment variables (README \"Configuration\"), e.g.:",
    "  CANOPY_HOST (127.0.0.1), CANOPY_PORT (8080), CANOPY_DATABASE_URL (sqlite:./data/canopy.db),",
    "  CANOPY_ADMIN_KEY (admin key of a new database), CANOPY_LOG_LEVEL (info).",
    "Migrations run on start; the first start on an empty database prints an admin key and a",
    "development environment key once. SIGTERM or SIGINT drains in-flight requests and exits.",
  ].join("\n"),
};

const COMMANDS: Record<string, Command> = {
  serve: {
    spec: serveSpec,
    async run() {
      // main.ts is the entry point of `npm start` and starts serving when it is loaded: loading it is
      // exactly `npm start` (its configuration, first-start output, signal handling and exit codes)
      await import("../main.js");
      return "serving";
    },
  },
  migrate: { spec: migrateSpec, run: migrate },
  "keys create": { spec: keysCreateSpec, run: keysCreate },
  "keys list": { spec: keysListSpec, run: keysList },
  "keys revoke": { spec: keysRevokeSpec, run: keysRevoke },
  check: { spec: checkSpec, run: check },
  export: { spec: exportSpec, run: exportCommand },
  import: { spec: importSpec, run: importCommand },
};

/** The version in package.json (next to dist/ when built, or the source tree when run from src/). */
function version(): string {
  for (const up of ["../../../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "canopy" && pkg.version) return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return "unknown";
}

export function topHelp(): string {
  const rows = Object.values(COMMANDS).map((c) => [c.spec.name, c.spec.brief]);
  const width = Math.max(...rows.map(([n]) => n.length)) + 2;
  return [
    "Usage: canopy <command> [options]",
    "",
    "Commands:",
    ...rows.map(([n, s]) => `  ${n.padEnd(width)}${s}`),
    "",
    "Run `canopy <command> --help` for a command's options.",
    "Exit codes: 0 success, 1 error (runtime, server or network), 2 usage error, 3 check denied.",
    "",
  ].join("\n");
}

function keysHelp(): string {
  return [
    "Usage: canopy keys <create|list|revoke> [options]",
    "",
    "Manage API keys through AdminService with the admin key (--admin-key or CANOPY_ADMIN_KEY).",
    "",
    "Commands:",
    `  create  ${keysCreateSpec.brief}`,
    `  list    ${keysListSpec.brief}`,
    `  revoke  ${keysRevokeSpec.brief}`,
    "",
  ].join("\n");
}

/**
 * Runs the command named by `argv` (the words after `canopy`). Errors are printed to stderr as
 * `canopy <command>: <message>` and turned into exit codes; nothing here calls process.exit.
 */
export async function run(argv: string[], io: Io): Promise<Outcome> {
  const [first, second] = argv;
  if (first === undefined) {
    io.err(topHelp());
    return 2;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    const target = argv.slice(1).join(" ");
    if (!target) io.out(topHelp());
    else if (target === "keys") io.out(keysHelp());
    else if (COMMANDS[target]) io.out(helpText(COMMANDS[target].spec));
    else return usage(io, new UsageError(`unknown command ${JSON.stringify(target)}`));
    return 0;
  }
  if (first === "--version" || first === "-v") {
    io.out(`canopy ${version()}\n`);
    return 0;
  }
  let name = first;
  let rest = argv.slice(1);
  if (first === "keys") {
    if (second === "--help" || second === "-h") {
      io.out(keysHelp());
      return 0;
    }
    if (second === undefined) {
      io.err(keysHelp());
      return 2;
    }
    name = `keys ${second}`;
    rest = argv.slice(2);
    if (!COMMANDS[name]) return usage(io, new UsageError(`unknown keys command ${JSON.stringify(second)}: expected create, list or revoke`, "keys"));
  }
  const command = COMMANDS[name];
  if (!command) return usage(io, new UsageError(`unknown command ${JSON.stringify(first)}`));
  let parsed: Parsed | undefined;
  try {
    parsed = parseCommand(command.spec, rest, io.env);
    if (parsed.help) {
      io.out(helpText(command.spec));
      return 0;
    }
    return await command.run(parsed.values, parsed.positionals, io);
  } catch (err) {
    if (err instanceof UsageError) return usage(io, err.command ? err : new UsageError(err.message, name));
    // the URL is named when the server cannot be reached
    io.err(`canopy ${name}: ${describeError(err, parsed && str(parsed.values, "url"))}\n`);
    return 1;
  }
}

function usage(io: Io, err: UsageError): number {
  const cmd = err.command ? ` ${err.command}` : "";
  io.err(`canopy${cmd}: ${err.message}\nRun 'canopy${cmd} --help' for usage.\n`);
  return 2;
}
