import { toBinary, type DescEnum, type DescExtension, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { ServerReflection as ServerReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** A reflection request's `message_request` oneof (identical in v1 and v1alpha). */
type ReflectionRequest =
  | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: undefined; value?: undefined };

/** A reflection response's `message_response` oneof, as an init shape both versions accept. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: Array<{ name: string }> } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * gRPC server reflection (`grpc.reflection.v1` and `v1alpha`, for `buf curl`, grpcurl and friends):
 * serves the FileDescriptorProtos of every service on `router` and their dependencies, straight from
 * the descriptors protobuf-es generated (src/gen), so clients need no local protos. No API key. Call
 * after every other service is registered; the descriptor pool is built at the first request.
 */
export function registerReflection(router: ConnectRouter): void {
  let pool: DescriptorPool | undefined;
  const answerAll = async function* <R extends { host: string; messageRequest: ReflectionRequest }>(requests: AsyncIterable<R>) {
    pool ??= createDescriptorPool([...new Set(router.handlers.map((h) => h.service))]);
    // per call, like grpc-go: each file is sent once as a dependency; a requested file is always sent
    const sent = new Set<string>();
    for await (const req of requests) {
      yield { validHost: req.host, originalRequest: req, messageResponse: pool.answer(req.messageRequest, sent) };
    }
  };
  router.service(ServerReflectionV1, { serverReflectionInfo: (requests) => answerAll(requests) }, { interceptors: [] });
  router.service(ServerReflectionV1Alpha, { serverReflectionInfo: (requests) => answerAll(requests) }, { interceptors: [] });
}

interface DescriptorPool {
  answer(req: ReflectionRequest, sent: Set<string>): ReflectionAnswer;
}

/** Every file the services need (transitively), indexed by file name, symbol and extension. */
function createDescriptorPool(services: DescService[]): DescriptorPool {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensions: DescExtension[] = [];
  const messages = new Set<string>();

  const addMessage = (m: DescMessage) => {
    symbols.set(m.typeName, m.file);
    messages.add(m.typeName);
    m.nestedMessages.forEach(addMessage);
    m.nestedEnums.forEach(addEnum);
    m.nestedExtensions.forEach(addExtension);
  };
  const addEnum = (e: DescEnum) => symbols.set(e.typeName, e.file);
  const addExtension = (x: DescExtension) => {
    symbols.set(x.typeName, x.file);
    extensions.push(x);
  };
  const addFile = (f: DescFile) => {
    if (files.has(f.proto.name)) return;
    files.set(f.proto.name, f);
    f.dependencies.forEach(addFile);
    f.messages.forEach(addMessage);
    f.enums.forEach(addEnum);
    f.extensions.forEach(addExtension);
    for (const s of f.services) {
      symbols.set(s.typeName, f);
      for (const m of s.methods) symbols.set(`${s.typeName}.${m.name}`, f);
    }
  };
  for (const s of services) addFile(s.file);

  const encoded = new Map<string, Uint8Array>();
  const encode = (f: DescFile) => {
    let bytes = encoded.get(f.proto.name);
    if (!bytes) encoded.set(f.proto.name, (bytes = toBinary(FileDescriptorProtoSchema, f.proto)));
    return bytes;
  };
  /** The file, then (breadth first) each dependency not yet sent on this call. */
  const withDependencies = (file: DescFile, sent: Set<string>): ReflectionAnswer => {
    const out: Uint8Array[] = [];
    const queue = [file];
    for (let f = queue.shift(); f; f = queue.shift()) {
      if (out.length === 0 || !sent.has(f.proto.name)) {
        sent.add(f.proto.name);
        out.push(encode(f));
      }
      queue.push(...f.dependencies.filter((d) => !sent.has(d.proto.name)));
    }
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
  };
  const notFound = (errorMessage: string): ReflectionAnswer => ({ case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage } });

  return {
    answer(req, sent) {
      switch (req.case) {
        case "listServices":
          return { case: "listServicesResponse", value: { service: services.map((s) => ({ name: s.typeName })) } };
        case "fileByFilename": {
          const file = files.get(req.value);
          return file ? withDependencies(file, sent) : notFound(`file ${req.value} not found`);
        }
        case "fileContainingSymbol": {
          const file = symbols.get(req.value);
          return file ? withDependencies(file, sent) : notFound(`symbol ${req.value} not found`);
        }
        case "fileContainingExtension": {
          const { containingType, extensionNumber } = req.value;
          const x = extensions.find((e) => e.extendee.typeName === containingType && e.number === extensionNumber);
          return x ? withDependencies(x.file, sent) : notFound(`extension ${extensionNumber} of ${containingType} not found`);
        }
        case "allExtensionNumbersOfType":
          if (!messages.has(req.value)) return notFound(`type ${req.value} not found`);
          return {
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: req.value, extensionNumber: extensions.filter((e) => e.extendee.typeName === req.value).map((e) => e.number) },
          };
        default:
          return { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "message_request is not set" } };
      }
    },
  };
}
