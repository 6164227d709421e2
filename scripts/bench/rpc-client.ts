import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { fromBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { EchoService } from "../../src/gen/canopy/bench/v1/echo_pb.js";
import { CheckBulkRequestSchema, CheckRequestSchema, CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { cerbosAllowed, cerbosSchemas } from "./cerbos-peer.js";

/**
 * The Node load generator of the RPC benchmark, run as its own process (`node rpc-client.js job.json`)
 * so that it never shares an event loop with the server it measures. `concurrency` closed loops over
 * one HTTP/2 connection (Connect-node's session manager), each awaiting a call before sending the
 * next. Every answer, warm-up included, is compared with the expected one the driver wrote next to
 * the requests. Prints `START` and `END` around the measured window (so the driver can sample the
 * server's CPU) and then one JSON line of results.
 */
export interface ClientJob {
  target: "check" | "bulk" | "echo" | "cerbos";
  protocol: "grpc" | "connect";
  baseUrl: string;
  apiKey?: string;
  concurrency: number;
  warmupSeconds: number;
  seconds: number;
  /** length-prefixed (u32 LE) binary request messages */
  requestsFile: string;
  /** one byte (0/1) per check, in request order (bulk: every item of every request); echo: none */
  expectedFile?: string;
  /** CheckBulk items per request */
  batch?: number;
  /** accept gzip responses, as Connect-node clients do by default (the benchmark otherwise turns it off) */
  gzip?: boolean;
}

export interface ClientResult {
  /** calls that completed inside the measured window */
  calls: number;
  seconds: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  errorSample: string;
  /** answers compared with the expected ones (warm-up included) */
  checked: number;
  mismatches: number;
  /** client CPU over the window, % of one core */
  clientCpu: number;
}

/** Reads the driver's request file: u32 LE length, then that many bytes, repeated. */
export function readFrames(file: string): Uint8Array[] {
  const buf = readFileSync(file);
  const out: Uint8Array[] = [];
  for (let off = 0; off < buf.length; ) {
    const len = buf.readUInt32LE(off);
    out.push(new Uint8Array(buf.buffer, buf.byteOffset + off + 4, len));
    off += 4 + len;
  }
  return out;
}

function quantile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

type Call = (req: unknown, opts?: unknown) => Promise<unknown>;

async function run(job: ClientJob): Promise<ClientResult> {
  const frames = readFrames(job.requestsFile);
  const expected = job.expectedFile ? readFileSync(job.expectedFile) : undefined;
  const batch = job.batch ?? 1;
  let service: DescService;
  let schema: DescMessage;
  let method: string;
  let verify: (req: unknown, res: unknown, i: number) => boolean;
  switch (job.target) {
    case "check":
      [service, schema, method] = [CheckService, CheckRequestSchema, "check"];
      verify = (_req, res, i) => (res as { allowed: boolean }).allowed === (expected![i] === 1);
      break;
    case "bulk":
      [service, schema, method] = [CheckService, CheckBulkRequestSchema, "checkBulk"];
      verify = (_req, res, i) => {
        const results = (res as { results: Array<{ allowed: boolean }> }).results;
        if (results.length !== batch) return false;
        for (let k = 0; k < batch; k++) if (results[k].allowed !== (expected![i * batch + k] === 1)) return false;
        return true;
      };
      break;
    case "echo":
      [service, schema, method] = [EchoService, EchoService.method.echo.input, "echo"];
      verify = (req, res) => (res as { payload: Uint8Array }).payload.length === (req as { payload: Uint8Array }).payload.length;
      break;
    case "cerbos": {
      const c = cerbosSchemas();
      [service, schema, method] = [c.service, c.request, "checkResources"];
      verify = (req, res, i) => {
        const permission = (req as { resources: Array<{ actions: string[] }> }).resources[0].actions[0];
        return cerbosAllowed(res, permission) === (expected![i] === 1);
      };
      break;
    }
  }
  const requests = frames.map((f) => fromBinary(schema, f));
  const transportOptions = { baseUrl: job.baseUrl, httpVersion: "2" as const, acceptCompression: job.gzip ? [compressionGzip] : [] };
  const transport = job.protocol === "grpc" ? createGrpcTransport(transportOptions) : createConnectTransport(transportOptions);
  const client = createClient(service, transport) as unknown as Record<string, Call>;
  const call: Call = (req, opts) => client[method](req, opts);
  const callOptions = job.apiKey ? { headers: { "x-api-key": job.apiKey } } : {};

  const latencies: number[] = [];
  let phase: "warmup" | "measure" | "stop" = "warmup";
  let windowStart = 0;
  let windowEnd = 0;
  let next = 0;
  let errors = 0;
  let errorSample = "";
  let checked = 0;
  let mismatches = 0;
  let calls = 0;

  const loop = async () => {
    while (phase !== "stop") {
      const i = next++ % requests.length;
      const t0 = performance.now();
      try {
        const res = await call(requests[i], callOptions);
        const t1 = performance.now();
        checked += batch;
        if (!verify(requests[i], res, i)) mismatches += batch;
        if (phase === "measure") {
          calls++;
          latencies.push(t1 - t0);
        }
      } catch (err) {
        errors++;
        errorSample ||= String(err instanceof Error ? err.message : err).slice(0, 200);
        if (errors > 1000) phase = "stop";
      }
    }
  };

  const loops = Array.from({ length: job.concurrency }, loop);
  await new Promise((r) => setTimeout(r, job.warmupSeconds * 1000));
  const cpu0 = process.cpuUsage();
  process.stdout.write("START\n");
  phase = "measure";
  windowStart = performance.now();
  await new Promise((r) => setTimeout(r, job.seconds * 1000));
  phase = "stop";
  windowEnd = performance.now();
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write("END\n");
  await Promise.all(loops);
  const elapsed = (windowEnd - windowStart) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    calls,
    seconds: elapsed,
    callsPerSec: calls / elapsed,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    errors,
    errorSample,
    checked,
    mismatches,
    clientCpu: ((cpu.user + cpu.system) / 1000 / (windowEnd - windowStart)) * 100,
  };
}

const jobFile = process.argv[2];
if (jobFile) {
  run(JSON.parse(readFileSync(jobFile, "utf8")) as ClientJob).then(
    (result) => {
      process.stdout.write(JSON.stringify(result) + "\n");
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`rpc-client: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
