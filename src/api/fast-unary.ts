import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Canopy } from "../domain/canopy.js";
import type { EnvironmentContext } from "../domain/auth.js";
import type { ApiKeyScope } from "../domain/model.js";
import { EchoRequestSchema, EchoResponseSchema, EchoService } from "../gen/canopy/bench/v1/echo_pb.js";
import { CheckBulkRequestSchema, CheckRequestSchema, CheckService } from "../gen/canopy/v1/check_pb.js";
import { authenticateCall, awaitMinRevision, callEnvironment, type HeaderGetter } from "./call.js";
import { answerCheck, answerCheckBulk } from "./check-handler.js";
import { encodeCheckBulkResponse, encodeCheckResponse } from "./check-wire.js";
import { decodeCheckBulkRequest, decodeCheckRequest } from "./check-decode.js";
import { scopeFor } from "./interceptors.js";

/** What a fast unary method gets from its transport besides the request message. */
export interface UnaryCall {
  header: HeaderGetter;
  /** the call's signal (deadline, client gone); created on first use, since most calls never wait */
  signal: () => AbortSignal;
}

/**
 * A unary RPC the fast path (src/server/fast-path.ts) answers without the Connect adapter. `run` goes
 * through exactly the steps of the Connect interceptors and handler, in their order (auth → min_revision
 * → environment → handler), using the same functions; any error it throws is mapped by toConnectError.
 */
export interface FastUnaryMethod {
  /** `package.Service/Method`, for logs */
  procedure: string;
  /** true when the Connect registration runs no interceptors (the bench echo): no metrics, logs or request id either */
  bare?: boolean;
  /** protobuf binary → message; a malformed body is the ConnectError Connect raises (INTERNAL "parse binary: …") */
  decode(bytes: Uint8Array): unknown;
  /** answers a decoded request with the response message's bytes */
  run(request: unknown, call: UnaryCall): Promise<Uint8Array>;
}

function decoder<D extends DescMessage>(schema: D): (bytes: Uint8Array) => MessageShape<D> {
  return (bytes) => {
    try {
      return fromBinary(schema, bytes);
    } catch (e) {
      // the same error Connect's binary serialization raises
      throw new ConnectError(`parse binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal);
    }
  };
}

/** The interceptors' steps, in their order: auth and scope → min_revision → environment (with the staleness guard). */
async function authorize(canopy: Canopy, call: UnaryCall, scope: ApiKeyScope, minRevision: bigint): Promise<EnvironmentContext> {
  const principal = await authenticateCall(canopy, call.header, scope);
  await awaitMinRevision(canopy, principal, call.header, minRevision, call.signal);
  return callEnvironment(canopy, principal, call.header);
}

/** The fast methods by request path (`/canopy.v1.CheckService/Check`). Echo only with CANOPY_BENCH_ECHO. */
export function fastUnaryMethods(canopy: Canopy, opts: { benchEcho: boolean }): Map<string, FastUnaryMethod> {
  const methods = new Map<string, FastUnaryMethod>();
  const checkScope = scopeFor(CheckService.typeName, CheckService.method.check.name);
  const decodeCheck = decoder(CheckRequestSchema);
  methods.set(`/${CheckService.typeName}/${CheckService.method.check.name}`, {
    procedure: `${CheckService.typeName}/${CheckService.method.check.name}`,
    // the plain encoding by hand, anything else (and every error) through protobuf-es
    decode: (bytes) => decodeCheckRequest(bytes) ?? decodeCheck(bytes),
    async run(request, call) {
      const req = request as ReturnType<typeof decodeCheck>;
      const env = await authorize(canopy, call, checkScope, req.minRevision);
      return encodeCheckResponse(await answerCheck(canopy, env, req, req.minRevision === 0n ? undefined : call.signal()));
    },
  });
  const decodeBulk = decoder(CheckBulkRequestSchema);
  const bulkScope = scopeFor(CheckService.typeName, CheckService.method.checkBulk.name);
  methods.set(`/${CheckService.typeName}/${CheckService.method.checkBulk.name}`, {
    procedure: `${CheckService.typeName}/${CheckService.method.checkBulk.name}`,
    decode: (bytes) => decodeCheckBulkRequest(bytes) ?? decodeBulk(bytes),
    async run(request, call) {
      const req = request as ReturnType<typeof decodeBulk>;
      const env = await authorize(canopy, call, bulkScope, req.minRevision);
      const { results, revision } = await answerCheckBulk(canopy, env, req, req.minRevision === 0n ? undefined : call.signal());
      return encodeCheckBulkResponse(results, revision);
    },
  });
  if (opts.benchEcho) {
    const decodeEcho = decoder(EchoRequestSchema);
    methods.set(`/${EchoService.typeName}/${EchoService.method.echo.name}`, {
      procedure: `${EchoService.typeName}/${EchoService.method.echo.name}`,
      decode: decodeEcho,
      // no interceptors, like the Connect registration in server.ts
      bare: true,
      run: async (request) => toBinary(EchoResponseSchema, create(EchoResponseSchema, { payload: (request as ReturnType<typeof decodeEcho>).payload })),
    });
  }
  return methods;
}
