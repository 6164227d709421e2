import { performance } from "node:perf_hooks";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { CheckResponseSchema } from "../../src/gen/canopy/v1/check_pb.js";

/**
 * A check client in a process of its own (forked by storage-bench's churn): closed loops of Check over
 * one grpc-js connection, every answer compared with the expected one. It keeps nothing but the
 * request bodies, so its own garbage collection cannot add pauses to the latencies it records — the
 * benchmark process holds the whole large workload and would.
 *
 * Protocol (IPC messages):
 *   parent → child  { type: "init", port, apiKey, bodies: base64[], expected: boolean[] } → { type: "ready" }
 *   parent → child  { type: "run", id, concurrency, offset, seconds? }  (no seconds: until { type: "stop", id })
 *   child → parent  { type: "done", id, samples: [start, end, ok][], seconds, errors }  (times: epoch ms)
 */

export type LoopSample = [start: number, end: number, ok: boolean];

export type LoopRequest =
  | { type: "init"; port: number; apiKey: string; bodies: string[]; expected: boolean[] }
  | { type: "run"; id: number; concurrency: number; offset: number; seconds?: number }
  | { type: "stop"; id: number };

export type LoopReply = { type: "ready" } | { type: "done"; id: number; samples: LoopSample[]; seconds: number; errors: number };

const now = () => performance.timeOrigin + performance.now();

if (process.send) {
  let client: grpc.Client | undefined;
  let md: grpc.Metadata;
  let bodies: Buffer[] = [];
  let expected: boolean[] = [];
  const stops = new Set<number>();
  const id = (b: Buffer) => b;
  const unary = (body: Buffer) =>
    new Promise<Buffer>((resolve, reject) =>
      client!.makeUnaryRequest("/canopy.v1.CheckService/Check", id, id, body, md, { deadline: Date.now() + 30_000 }, (err, value) => (err ? reject(err) : resolve(value!))),
    );

  process.on("message", (m: LoopRequest) => {
    if (m.type === "init") {
      client = new grpc.Client(`127.0.0.1:${m.port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
      md = new grpc.Metadata();
      md.set("x-api-key", m.apiKey);
      bodies = m.bodies.map((b) => Buffer.from(b, "base64"));
      expected = m.expected;
      process.send!({ type: "ready" } satisfies LoopReply);
    } else if (m.type === "stop") {
      stops.add(m.id);
    } else if (m.type === "run") {
      const t0 = now();
      const until = m.seconds !== undefined ? () => now() >= t0 + m.seconds! * 1000 : () => stops.has(m.id);
      const samples: LoopSample[] = [];
      let next = m.offset;
      let errors = 0;
      void Promise.all(
        Array.from({ length: m.concurrency }, async () => {
          while (!until()) {
            const i = next++ % bodies.length;
            const start = now();
            try {
              const allowed = fromBinary(CheckResponseSchema, await unary(bodies[i])).allowed;
              samples.push([start, now(), allowed === expected[i]]);
            } catch {
              errors++;
            }
          }
        }),
      ).then(() => {
        stops.delete(m.id);
        process.send!({ type: "done", id: m.id, samples, seconds: (now() - t0) / 1000, errors } satisfies LoopReply);
      });
    }
  });
  process.on("disconnect", () => {
    client?.close();
    process.exit(0);
  });
}
