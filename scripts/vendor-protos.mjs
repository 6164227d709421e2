#!/usr/bin/env node
// Copies the third-party protos Canopy serves (gRPC health checking, server reflection v1 and v1alpha)
// verbatim from the npm packages that ship them into proto-vendor/, under their canonical import paths
// (the buf schema registry is not reachable here). `npm run generate` runs it before `buf generate`;
// `--check` only compares (exit 1 when proto-vendor/ differs), which scripts/check-generated.mjs runs in CI.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendorDir = join(root, "proto-vendor");

/** Each vendored file: its path under proto-vendor/ (= its import path), the package and the path inside it. */
const SOURCES = [
  { path: "grpc/health/v1/health.proto", pkg: "grpc-health-check", from: "proto/health/v1/health.proto" },
  { path: "grpc/reflection/v1/reflection.proto", pkg: "@grpc/reflection", from: "build/proto/grpc/reflection/v1/reflection.proto" },
  { path: "grpc/reflection/v1alpha/reflection.proto", pkg: "@grpc/reflection", from: "build/proto/grpc/reflection/v1alpha/reflection.proto" },
];

function packageDir(pkg) {
  const dir = join(root, "node_modules", ...pkg.split("/"));
  if (!existsSync(join(dir, "package.json"))) {
    console.error(`vendor-protos: ${pkg} is not installed; run npm install first`);
    process.exit(1);
  }
  return dir;
}

/** What proto-vendor/ must contain: relative path → content. */
function expected() {
  const files = new Map();
  const origins = [];
  for (const s of SOURCES) {
    const dir = packageDir(s.pkg);
    const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    files.set(s.path, readFileSync(join(dir, s.from)));
    origins.push(`| \`${s.path}\` | \`${s.pkg}@${version}\` \`${s.from}\` |`);
  }
  // every package above is the gRPC authors' Apache-2.0 work: one copy of the licence travels with the files
  files.set("LICENSE", readFileSync(join(packageDir(SOURCES[0].pkg), "LICENSE")));
  files.set(
    "README.md",
    Buffer.from(
      [
        "# proto-vendor",
        "",
        "Third-party protos, copied verbatim from npm packages by `scripts/vendor-protos.mjs` (run by",
        "`npm run generate`; CI checks them with `scripts/check-generated.mjs`). Do not edit: bump the",
        "package in package.json and regenerate. Excluded from `buf lint`; generated into `src/gen/grpc`.",
        "",
        "| file | copied from |",
        "| --- | --- |",
        ...origins,
        "",
      ].join("\n"),
    ),
  );
  return files;
}

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)).split(sep).join("/"))
    .sort();
}

const want = expected();
if (process.argv.includes("--check")) {
  const stale = [];
  for (const file of new Set([...want.keys(), ...listFiles(vendorDir)])) {
    const content = want.get(file);
    const path = join(vendorDir, file);
    if (!content) stale.push(`${file} (should not exist)`);
    else if (!existsSync(path)) stale.push(`${file} (missing)`);
    else if (!readFileSync(path).equals(content)) stale.push(`${file} (differs)`);
  }
  if (stale.length > 0) {
    console.error("vendor-protos: proto-vendor/ is stale; run `npm run generate`. Stale files:");
    for (const line of stale.sort()) console.error(`  proto-vendor/${line}`);
    process.exit(1);
  }
  console.log(`vendor-protos: proto-vendor/ is up to date (${want.size} files)`);
} else {
  rmSync(vendorDir, { recursive: true, force: true });
  for (const [file, content] of want) {
    mkdirSync(dirname(join(vendorDir, file)), { recursive: true });
    writeFileSync(join(vendorDir, file), content);
  }
  console.log(`vendor-protos: wrote ${want.size} files to proto-vendor/`);
}
