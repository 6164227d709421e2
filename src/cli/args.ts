import { parseArgs } from "node:util";

/**
 * Flag parsing for the `canopy` CLI on Node's own `util.parseArgs`: each command declares its options
 * once, and the same declaration drives parsing, required-flag checks and the `--help` text.
 */

/** A mistake in how the CLI was called: printed with a hint to `--help`, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** the command whose usage was wrong, e.g. "keys create" ("" = the top level) */
    readonly command = "",
  ) {
    super(message);
    this.name = "UsageError";
  }
}

export interface OptionSpec {
  type: "string" | "boolean";
  description: string;
  /** shown in help after the flag, e.g. "<id>" */
  value?: string;
  multiple?: boolean;
  required?: boolean;
  short?: string;
  /** environment variable used when the flag is absent */
  env?: string;
  /** shown in help; applied when neither the flag nor `env` is given */
  default?: string;
}

export interface CommandSpec {
  /** e.g. "keys create" */
  name: string;
  /** one line for `canopy --help` */
  brief: string;
  /** the paragraph under Usage in the command's --help */
  summary: string;
  /** positional arguments, e.g. ["<file>"]; an entry ending in "?" is optional */
  positionals?: string[];
  options: Record<string, OptionSpec>;
  /** free text appended to the help (exit codes, examples) */
  notes?: string;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  help: boolean;
  values: Values;
  positionals: string[];
}

/** Parses `argv` (the words after the command name) against `spec`; throws UsageError. */
export function parseCommand(spec: CommandSpec, argv: string[], env: Record<string, string | undefined>): Parsed {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type };
    if (o.multiple) options[name].multiple = true;
    if (o.short) options[name].short = o.short;
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    // asking for help is never a usage error, whatever else is on the line
    if (argv.some((a) => a === "--help" || a === "-h")) return { help: true, values: {}, positionals: [] };
    throw new UsageError(describeParseError(err), spec.name);
  }
  if (parsed.values.help === true) return { help: true, values: {}, positionals: [] };
  const values: Values = {};
  for (const [name, o] of Object.entries(spec.options)) {
    let v = parsed.values[name] as string | boolean | string[] | undefined;
    if (v === undefined && o.env && env[o.env]) v = env[o.env];
    if (v === undefined && o.default !== undefined) v = o.default;
    if (o.type === "string" && typeof v === "string" && v === "") throw new UsageError(`--${name} must not be empty`, spec.name);
    if (o.required && (v === undefined || (Array.isArray(v) && v.length === 0))) {
      throw new UsageError(`missing --${name}${o.env ? ` (or ${o.env})` : ""}`, spec.name);
    }
    values[name] = v;
  }
  const declared = spec.positionals ?? [];
  const required = declared.filter((p) => !p.endsWith("?")).length;
  if (parsed.positionals.length > declared.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[declared.length])}`, spec.name);
  }
  if (parsed.positionals.length < required) throw new UsageError(`missing argument ${declared[parsed.positionals.length]}`, spec.name);
  return { help: false, values, positionals: parsed.positionals };
}

/** parseArgs' messages, shortened to name the flag at fault. */
function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const flag = /'(-[^']*)'/.exec(e.message ?? "")?.[1];
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${flag ?? ""}`.trim();
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return /argument missing/.test(e.message ?? "") ? `option ${flag?.replace(/ .*/, "") ?? ""} needs a value` : `option ${flag ?? ""} takes no value`;
    default:
      return e.message ?? String(err);
  }
}

/** The `--help` text of a command, from its spec. */
export function helpText(spec: CommandSpec): string {
  const opts = Object.entries(spec.options);
  const usage = [`canopy ${spec.name}`, ...(spec.positionals ?? []).map((p) => (p.endsWith("?") ? `[${p.slice(0, -1)}]` : p)), opts.length ? "[options]" : ""]
    .filter(Boolean)
    .join(" ");
  const rows = opts.map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ""}--${name}${o.type === "string" ? ` ${o.value ?? "<value>"}` : ""}`;
    const extra = [
      o.required ? "required" : "",
      o.multiple ? "repeatable" : "",
      o.env ? `env ${o.env}` : "",
      o.default !== undefined ? `default ${o.default}` : "",
    ].filter(Boolean);
    return [flag, `${o.description}${extra.length ? ` (${extra.join("; ")})` : ""}`];
  });
  rows.push(["-h, --help", "show this help"]);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  const lines = [
    `Usage: ${usage}`,
    "",
    ...wrap(spec.summary, 100),
    "",
    "Options:",
    ...rows.flatMap(([f, d]) => wrap(d, Math.max(40, 100 - width - 2)).map((line, i) => `  ${(i === 0 ? f : "").padEnd(width)}${line}`)),
  ];
  if (spec.notes) lines.push("", spec.notes.trimEnd());
  return lines.join("\n") + "\n";
}

/** Words of `text` in lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines;
}

/** A string flag's value (after env and default), or undefined. */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** A repeatable string flag's values (comma-separated lists are split too). */
export function list(values: Values, name: string): string[] {
  const v = values[name];
  const raw = Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
  return raw.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean);
}

/** A positive integer flag; throws UsageError naming the flag. */
export function positiveInt(values: Values, name: string, command: string): number {
  const raw = str(values, name);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(raw)}`, command);
  return n;
}

/**
 * An instant given as an ISO 8601 timestamp (`2027-01-01T00:00:00Z`, `2027-01-01`) or, when
 * `relativeTo` is given, a duration from then (`90d`, `12h`, `30m`, `45s`).
 */
export function parseInstant(raw: string, flag: string, command: string, relativeTo?: number): Date {
  const rel = /^(\d+)(s|m|h|d|w)$/.exec(raw);
  if (rel && relativeTo !== undefined) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[rel[2] as "s" | "m" | "h" | "d" | "w"];
    return new Date(relativeTo + Number(rel[1]) * unit);
  }
  // a date or date-time, with an explicit zone when a time is given (no local-time surprises)
  if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/i.test(raw)) {
    const d = new Date(raw);
    if (!Number.isNaN(d.getTime())) return d;
  }
  const forms = relativeTo !== undefined ? "an ISO 8601 timestamp such as 2027-01-01T00:00:00Z, or a duration such as 90d, 12h" : "an ISO 8601 timestamp such as 2027-01-01T00:00:00Z";
  throw new UsageError(`--${flag} must be ${forms}; got ${JSON.stringify(raw)}`, command);
}
