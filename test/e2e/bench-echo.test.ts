import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../src/gen/canopy/bench/v1/echo_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

/**
 * The benchmark's transport floor (CANOPY_BENCH_ECHO): absent by default; when on, it answers
 * without an API key while every Canopy service still requires one.
 */
const ready = await backendReady();

const transports = {
  grpc: (url: string) => createGrpcTransport({ baseUrl: url }),
  "connect-h2": (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "2" }),
};

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e).code,
  );
}

describe.skipIf(!ready)("bench echo (CANOPY_BENCH_ECHO)", () => {
  let off: TestServer;
  let on: TestServer;
  beforeAll(async () => {
    [off, on] = await Promise.all([startTestServer(), startTestServer({ env: { CANOPY_BENCH_ECHO: "true" } })]);
  });
  afterAll(async () => {
    await Promise.all([off?.close(), on?.close()]);
  });

  it.each(Object.keys(transports) as Array<keyof typeof transports>)("is not served by default (%s)", async (protocol) => {
    const echo = createClient(EchoService, transports[protocol](off.url));
    expect(await codeOf(echo.echo({ payload: new Uint8Array([1]) }))).toBe(Code.Unimplemented);
  });

  it.each(Object.keys(transports) as Array<keyof typeof transports>)("echoes without an API key when enabled (%s)", async (protocol) => {
    const echo = createClient(EchoService, transports[protocol](on.url));
    const payload = new Uint8Array([0, 1, 2, 250, 255]);
    expect((await echo.echo({ payload })).payload).toEqual(payload);
  });

  it("leaves auth on every Canopy service when enabled", async () => {
    const check = createClient(CheckService, transports.grpc(on.url));
    expect(await codeOf(check.check({ identityId: "x", permission: "p", nodeId: "n" }))).toBe(Code.Unauthenticated);
  });
});
