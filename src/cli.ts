#!/usr/bin/env node
import { run } from "./cli/run.js";

/**
 * `canopy`: the command line (serve, migrate, keys, check, export, import). Exit codes: 0 success,
 * 1 runtime or server error, 2 usage error, 3 check denied. `canopy --help` lists the commands.
 */
const outcome = await run(process.argv.slice(2), {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  env: process.env,
});
if (outcome !== "serving") {
  // exit once stdout has been flushed; idle keep-alive sockets must not keep a finished command alive
  process.stdout.write("", () => process.exit(outcome));
}
