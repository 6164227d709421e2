/**
 * The Dockerfile, checked by reading it (no Docker engine here): every COPY source exists (in the repo
 * and not excluded by .dockerignore, or produced by the build stage), both stages use
 * node:20-bookworm-slim, the final stage runs as a non-root user, and the exec-form ENTRYPOINT runs a
 * file the build produces — the same one package.json's "bin" names. Needs `npm run build` first.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, posix, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = resolve(__dirname, "../..");

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Instructions of a Dockerfile: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!pending && (line === "" || line.startsWith("#"))) return;
    if (pending && line.startsWith("#")) return;
    if (!pending) start = i + 1;
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      return;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^(\S+)\s*(.*)$/.exec(full)!;
    out.push({ keyword: m[1].toUpperCase(), args: m[2], line: start });
  });
  return out;
}

function stages(instructions: Instruction[]): Stage[] {
  const result: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      result.push({ image: m[1], name: m[2], instructions: [] });
    } else {
      result[result.length - 1].instructions.push(ins);
    }
  }
  return result;
}

/** A COPY's flags, sources and destination (shell form only; the Dockerfile uses no JSON-form COPY). */
function copyParts(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith("--"));
  const paths = words.filter((w) => !w.startsWith("--"));
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1] };
}

function execForm(args: string): string[] {
  const parsed = JSON.parse(args) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "string")) throw new Error(`not an exec-form array: ${args}`);
  return parsed;
}

/** .dockerignore patterns as matchers of context-relative paths (`*` within one segment; a match also excludes everything below). */
function dockerignore(): Array<(path: string) => boolean> {
  const lines = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  expect(lines.some((l) => l.startsWith("!"))).toBe(false);
  return lines.map((pattern) => {
    const re = new RegExp(`^${pattern.replace(/^\/+|\/+$/g, "").replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*/g, "\u0000").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]").replace(/\u0000/g, ".*")}(/.*)?$`);
    return (path: string) => re.test(path);
  });
}

const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
const all = stages(parseDockerfile(text));
const build = all.find((s) => s.name === "build")!;
const final = all[all.length - 1];
const of = (s: Stage, keyword: string) => s.instructions.filter((i) => i.keyword === keyword);

describe("Dockerfile", () => {
  it("has a build stage and a final stage, both on node:20-bookworm-slim", () => {
    expect(all.map((s) => s.image)).toEqual(["node:20-bookworm-slim", "node:20-bookworm-slim"]);
    expect(build).toBeDefined();
    expect(final.name).toBeUndefined();
  });

  it("builds with the native toolchain, from the lockfile, and prunes dev dependencies", () => {
    const runs = of(build, "RUN").map((r) => r.args);
    expect(runs.join("\n")).toMatch(/apt-get install -y --no-install-recommends python3 make g\+\+/);
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    expect(runs.some((r) => /\bnpm run build\b/.test(r) && /\bnpm prune --omit=dev\b/.test(r))).toBe(true);
    expect(of(final, "RUN").some((r) => /apt-get|npm (ci|install)/.test(r.args))).toBe(false);
  });

  it("copies only paths that exist in the build context and are not excluded by .dockerignore", () => {
    const ignored = dockerignore();
    const contextCopies = all.flatMap((s) => of(s, "COPY").map((c) => copyParts(c.args))).filter((c) => c.from === undefined);
    expect(contextCopies.length).toBeGreaterThan(0);
    for (const c of contextCopies) {
      for (const source of c.sources) {
        const path = posix.normalize(source).replace(/^\.\//, "");
        expect({ source, exists: existsSync(join(ROOT, path)) }).toEqual({ source, exists: true });
        expect({ source, ignored: ignored.some((m) => m(path)) }).toEqual({ source, ignored: false });
      }
    }
    // what the build compiles is there: tsconfig's inputs are copied
    const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { include: string[] };
    const copied = contextCopies.flatMap((c) => c.sources.map((s) => s.replace(/^\.\//, "")));
    for (const pattern of tsconfig.include) expect(copied).toContain(pattern.split("/")[0]);
    expect(copied).toEqual(expect.arrayContaining(["package.json", "package-lock.json", "tsconfig.json"]));
  });

  it("copies from the build stage only what that stage has, and what exists after a local build", () => {
    const workdir = of(build, "WORKDIR").at(-1)!.args;
    expect(workdir).toBe("/app");
    const fromBuild = of(final, "COPY").map((c) => copyParts(c.args));
    expect(fromBuild.every((c) => c.from === "build")).toBe(true);
    const buildCopies = of(build, "COPY").flatMap((c) => copyParts(c.args).sources);
    for (const c of fromBuild) {
      for (const source of c.sources) {
        expect(source.startsWith(`${workdir}/`)).toBe(true);
        const rel = source.slice(workdir.length + 1);
        // produced in the build stage: copied into it, installed by npm ci, or compiled by npm run build
        const produced = buildCopies.includes(rel) || rel === "node_modules" || rel === "dist";
        expect({ rel, produced }).toEqual({ rel, produced: true });
        expect({ rel, existsLocally: existsSync(join(ROOT, rel)) }).toEqual({ rel, existsLocally: true });
      }
    }
    expect(fromBuild.map((c) => c.sources[0].slice(workdir.length + 1)).sort()).toEqual(["dist", "node_modules", "package.json"]);
  });

  it("runs as a non-root user created in the image", () => {
    const user = of(final, "USER").at(-1)!.args;
    const [uid, gid] = user.split(":");
    expect(uid).toBe("10001");
    expect(gid).toBe("10001");
    const runs = of(final, "RUN").map((r) => r.args).join("\n");
    expect(runs).toMatch(/useradd --system --uid 10001 --gid canopy/);
    expect(runs).toMatch(/groupadd --system --gid 10001 canopy/);
    // the data volume is the user's: created and chowned before VOLUME (later changes to a volume's
    // path in the image are discarded) and while still root
    expect(runs).toMatch(/mkdir -p \/app\/data && chown canopy:canopy \/app\/data/);
    const chown = final.instructions.findIndex((i) => i.keyword === "RUN" && i.args.includes("chown canopy:canopy /app/data"));
    const volume = final.instructions.findIndex((i) => i.keyword === "VOLUME");
    const switchUser = final.instructions.findIndex((i) => i.keyword === "USER");
    expect(chown).toBeLessThan(volume);
    expect(chown).toBeLessThan(switchUser);
    expect(of(final, "VOLUME").map((v) => execForm(v.args))).toEqual([["/app/data"]]);
    expect(of(final, "WORKDIR").map((w) => w.args)).toEqual(["/app"]);
    expect(of(final, "EXPOSE").map((e) => e.args)).toEqual(["8080"]);
    expect(of(final, "ENV").map((e) => e.args).join(" ")).toMatch(/CANOPY_HOST=0\.0\.0\.0/);
  });

  it("starts node directly (exec form) on the CLI the build produces, serving by default", async () => {
    const [entry] = of(final, "ENTRYPOINT");
    const cmd = of(final, "CMD");
    expect(execForm(entry.args)).toEqual(["node", "dist/src/cli.js"]);
    expect(cmd.map((c) => execForm(c.args))).toEqual([["serve"]]);
    // dist/src/cli.js is what tsc makes of src/cli.ts (rootDir ".", outDir "dist")
    const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { compilerOptions: { outDir: string; rootDir: string } };
    expect(tsconfig.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "." });
    expect(existsSync(join(ROOT, "src/cli.ts"))).toBe(true);
    const built = join(ROOT, "dist/src/cli.js");
    expect(readFileSync(built, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
    expect(statSync(built).mode & 0o111).not.toBe(0);
    // package.json's bin is the same file
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string> };
    expect(pkg.bin).toEqual({ canopy: "dist/src/cli.js" });
    // and "serve" is a command of it
    const { stdout } = await promisify(execFile)(process.execPath, [built, ...execForm(cmd[0].args), "--help"], { cwd: ROOT });
    expect(stdout).toMatch(/^Usage: canopy serve\b/);
  });

  it("checks health with node against /healthz on the serving port (exec form)", () => {
    const [health] = of(final, "HEALTHCHECK");
    const m = /^(.*?)CMD\s+(\[.*\])$/.exec(health.args)!;
    const argv = execForm(m[2]);
    expect(argv.slice(0, 2)).toEqual(["node", "-e"]);
    expect(argv[2]).toContain("/healthz");
    expect(argv[2]).toContain("process.env.CANOPY_PORT||8080");
  });
});
