import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createFileRegistry, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflection as ServerReflectionV1,
  type ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

/**
 * gRPC server reflection, v1 and v1alpha, without an API key: the services, and every file they need
 * down to google/protobuf/*, from the generated descriptors; then `buf curl` (a real reflection client)
 * lists the methods and calls an RPC with no local protos.
 */
const ready = await backendReady();
const run = promisify(execFile);
const BUF = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));

const SERVICES = [
  "canopy.v1.AdminService",
  "canopy.v1.AssignmentService",
  "canopy.v1.CatalogService",
  "canopy.v1.CheckService",
  "canopy.v1.HierarchyService",
  "canopy.v1.IdentityService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

type Request = MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"];

/** Sends the requests on one ServerReflectionInfo call (v1 or v1alpha) and returns the responses in order. */
async function reflect(url: string, version: "v1" | "v1alpha", requests: Request[]): Promise<ServerReflectionResponse["messageResponse"][]> {
  const transport = createGrpcTransport({ baseUrl: url });
  const client = version === "v1" ? createClient(ServerReflectionV1, transport) : createClient(ServerReflectionV1Alpha, transport);
  const out: ServerReflectionResponse["messageResponse"][] = [];
  // (both versions share field names and numbers; the v1alpha response is read through the same shape)
  for await (const res of client.serverReflectionInfo(
    (async function* () {
      for (const messageRequest of requests) yield { host: "", messageRequest };
    })() as AsyncIterable<never>,
  )) {
    out.push(res.messageResponse as ServerReflectionResponse["messageResponse"]);
  }
  return out;
}

function files(answer: ServerReflectionResponse["messageResponse"]): FileDescriptorProto[] {
  if (answer.case !== "fileDescriptorResponse") throw new Error(`expected files, got ${answer.case}: ${JSON.stringify(answer.value)}`);
  return answer.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/** A registry of `root` whose imports resolve only among `protos` (throws when one is missing). */
function registryOf(protos: FileDescriptorProto[], root: string) {
  const byName = new Map(protos.map((f) => [f.name, f]));
  return createFileRegistry(byName.get(root)!, (name) => byName.get(name));
}

function errorCode(answer: ServerReflectionResponse["messageResponse"]): number | undefined {
  return answer.case === "errorResponse" ? answer.value.errorCode : undefined;
}

describe.skipIf(!ready)("server reflection", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.close();
  });

  it.each(["v1", "v1alpha"] as const)("lists every canopy.v1 service, health and reflection (%s)", async (version) => {
    const [answer] = await reflect(s.url, version, [{ case: "listServices", value: "" }]);
    expect(answer.case).toBe("listServicesResponse");
    const names = answer.case === "listServicesResponse" ? answer.value.service.map((x) => x.name) : [];
    expect(names.sort()).toEqual(SERVICES);
  });

  it.each(["v1", "v1alpha"] as const)("file_containing_symbol for canopy.v1.CheckService: the file and a dependency closure that resolves (%s)", async (version) => {
    const [answer] = await reflect(s.url, version, [{ case: "fileContainingSymbol", value: "canopy.v1.CheckService" }]);
    const protos = files(answer);
    expect(protos[0].name).toBe("canopy/v1/check.proto");
    expect(protos.map((f) => f.name)).toEqual(["canopy/v1/check.proto", "google/protobuf/timestamp.proto"]);
    // a registry built from exactly these files resolves every import and type
    const registry = registryOf(protos, "canopy/v1/check.proto");
    const check = registry.getService("canopy.v1.CheckService");
    expect(check?.methods.map((m) => `${m.name}(${m.input.typeName}) ${m.output.typeName}`)).toEqual([
      "Check(canopy.v1.CheckRequest) canopy.v1.CheckResponse",
      "CheckBulk(canopy.v1.CheckBulkRequest) canopy.v1.CheckBulkResponse",
    ]);
    expect(registry.getMessage("canopy.v1.CheckResponse")?.fields.find((f) => f.name === "at")?.message?.typeName).toBe("google.protobuf.Timestamp");
  });

  it("sends each dependency once per call; a requested file always", async () => {
    const answers = await reflect(s.url, "v1", [
      { case: "fileContainingSymbol", value: "canopy.v1.AssignmentService.BulkCreateAssignments" },
      { case: "fileContainingSymbol", value: "canopy.v1.CheckRequest" },
      { case: "fileByFilename", value: "google/protobuf/timestamp.proto" },
    ]);
    const [assignment, check, timestamp] = answers.map((a) => files(a).map((f) => f.name));
    expect(assignment[0]).toBe("canopy/v1/assignment.proto");
    expect(assignment).toContain("canopy/v1/common.proto");
    expect(assignment).toContain("google/protobuf/timestamp.proto");
    expect(check).toEqual(["canopy/v1/check.proto"]);
    expect(timestamp).toEqual(["google/protobuf/timestamp.proto"]);
    // every file of the call together resolves
    const registry = registryOf(answers.flatMap(files), "canopy/v1/assignment.proto");
    expect(registry.getService("canopy.v1.AssignmentService")?.methods.find((m) => m.name === "BulkCreateAssignments")?.methodKind).toBe("bidi_streaming");
  });

  it("serves the health and reflection protos themselves", async () => {
    const [health, reflection] = await reflect(s.url, "v1alpha", [
      { case: "fileContainingSymbol", value: "grpc.health.v1.Health" },
      { case: "fileByFilename", value: "grpc/reflection/v1alpha/reflection.proto" },
    ]);
    expect(files(health).map((f) => f.name)).toEqual(["grpc/health/v1/health.proto"]);
    expect(files(reflection).map((f) => f.name)).toEqual(["grpc/reflection/v1alpha/reflection.proto"]);
  });

  it("answers extension queries and unknown names in an error_response, and the call goes on", async () => {
    const answers = await reflect(s.url, "v1", [
      { case: "fileByFilename", value: "canopy/v1/nope.proto" },
      { case: "fileContainingSymbol", value: "canopy.v1.Nope" },
      { case: "fileContainingExtension", value: { containingType: "canopy.v1.CheckRequest", extensionNumber: 100 } },
      { case: "allExtensionNumbersOfType", value: "canopy.v1.CheckRequest" },
      { case: "allExtensionNumbersOfType", value: "canopy.v1.Nope" },
      { case: "listServices", value: "" },
    ]);
    expect(answers.slice(0, 3).map(errorCode)).toEqual([Code.NotFound, Code.NotFound, Code.NotFound]);
    expect(answers[3]).toMatchObject({ case: "allExtensionNumbersResponse", value: { baseTypeName: "canopy.v1.CheckRequest", extensionNumber: [] } });
    expect(errorCode(answers[4])).toBe(Code.NotFound);
    expect(answers[5].case).toBe("listServicesResponse");
  });

  describe("buf curl (resolves the schema by reflection; no local protos)", () => {
    const curl = (...args: string[]) => run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { cwd: "/" });

    it("--list-services and --list-methods", async () => {
      const services = (await curl("--list-services", s.url)).stdout.trim().split("\n");
      expect(services).toEqual(SERVICES);
      const methods = (await curl("--list-methods", s.url)).stdout.trim().split("\n");
      expect(methods).toContain("canopy.v1.CheckService/Check");
      expect(methods).toContain("canopy.v1.CheckService/CheckBulk");
      expect(methods).toContain("canopy.v1.AssignmentService/BulkCreateAssignments");
      expect(methods).toContain("grpc.health.v1.Health/Watch");
      expect(methods).toContain("grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    });

    it("lists over v1alpha reflection too", async () => {
      const methods = (await curl("--reflect-protocol", "grpc-v1alpha", "--list-methods", s.url)).stdout.trim().split("\n");
      expect(methods).toContain("canopy.v1.HierarchyService/GetHierarchySchema");
    });

    it("calls HierarchyService/GetHierarchySchema with an API key", async () => {
      const expected = await s.clients(s.devKey).hierarchy.getHierarchySchema({});
      const { stdout } = await curl("-H", `x-api-key:${s.devKey}`, `${s.url}/canopy.v1.HierarchyService/GetHierarchySchema`);
      expect(JSON.parse(stdout)).toMatchObject({ rootNodeId: expected.rootNodeId, revision: String(expected.revision) });
    });

    it("checks health with no API key", async () => {
      const { stdout } = await curl("-d", '{"service":"canopy.v1.CheckService"}', `${s.url}/grpc.health.v1.Health/Check`);
      expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
    });
  });
});
