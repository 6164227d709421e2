import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { encodeItemResults, isBinaryCodec, preEncodedResult } from "../../src/api/assignment-wire.js";
import { itemResultToPb } from "../../src/api/convert.js";
import type { ItemResult } from "../../src/domain/assignment-service.js";
import { GRPC_CODE } from "../../src/domain/errors.js";
import { BulkCreateAssignmentsResponseSchema } from "../../src/gen/canopy/v1/assignment_pb.js";
import { mulberry32 } from "../fixtures/random.js";

/**
 * BulkCreateAssignments' hand-encoded per-item results must be exactly the bytes protobuf-es writes for
 * `{ result: itemResultToPb(r, now) }` (what the JSON path and the handler used to send), for every
 * shape a result can take, both as raw bytes and through toBinary of the message the handler yields.
 */

/** ids from plain ASCII to 2-, 3- and 4-byte UTF-8, lone surrogates and long strings */
const ID_PARTS = ["a", "Z9", "-", "_", "é", "ß", "中", "😀", "\ud800", "\udc00x", "\u0000", "\u007f", "\u0080", "\u07ff", "\u0800", "\uffff", "x".repeat(150)];

const INSTANTS = [0, 1, 999, 1000, -1, -1001, 1_767_225_600_123, 1_767_225_600_000, 253402300799999, -62135596800000, 86_400_000];
const INDEXES = [0, 1, 127, 128, 999, 16_383, 16_384, 99_999, 2_097_151, 2_097_152, 268_435_455, 268_435_456, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
/** every code an item can carry, plus a few the encoder must not special-case */
const CODES = [...new Set(Object.values(GRPC_CODE)), 1, 2, 4, 11, 12, 15, 127, 128, 300];
const REASONS = ["", "rbac.assignment_conflict", "rbac.invalid_window", "identity.inactive", "identity.no_membership", "store.conflict", "batch.aborted"];

function generator(seed: number) {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const id = (emptyOk = true) =>
    emptyOk && rnd() < 0.05 ? "" : Array.from({ length: 1 + int(4) }, () => (rnd() < 0.6 ? pick(["ab", "n-1", "0196f3c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d"]) : pick(ID_PARTS))).join("");
  const instant = () => (rnd() < 0.5 ? pick(INSTANTS) : 1_700_000_000_000 + int(10 ** 11) - 5 * 10 ** 10);
  return (): { r: ItemResult; now: number } => {
    const index = rnd() < 0.5 ? pick(INDEXES) : int(1_000_000);
    const now = instant();
    if (rnd() < 0.5) {
      const effectiveFrom = rnd() < 0.4 ? now : instant();
      const created = rnd() < 0.8 ? now : instant();
      return {
        now,
        r: {
          index,
          status: { code: 0, message: "", field: "", reason: "" },
          assignment: {
            id: id(),
            environmentId: id(),
            identityId: id(),
            roleId: id(),
            nodeId: id(),
            effectiveFrom,
            effectiveTo: rnd() < 0.5 ? null : rnd() < 0.5 ? effectiveFrom + 1 + int(10 ** 9) : instant(),
            createdAt: created,
            updatedAt: rnd() < 0.8 ? created : instant(),
          },
        },
      };
    }
    const code = pick(CODES);
    return {
      now,
      r: {
        index,
        status: {
          code,
          message: rnd() < 0.1 ? "" : `identity ${id()} already holds role ${id()} at node ${id()}`,
          field: rnd() < 0.1 ? "" : `items[${index}].${pick(["identity_id", "role_id", "node_id", "effective_to"])}`,
          reason: pick(REASONS),
        },
      },
    };
  };
}

const protobufEs = (r: ItemResult, now: number) =>
  toBinary(BulkCreateAssignmentsResponseSchema, create(BulkCreateAssignmentsResponseSchema, { kind: { case: "result", value: itemResultToPb(r, now) } }));

/** the wire bytes of the message the handler yields for one encoded result */
const handWritten = (encoded: Uint8Array) => toBinary(BulkCreateAssignmentsResponseSchema, preEncodedResult(encoded));

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("assignment-wire: hand-encoded AssignmentItemResult = protobuf-es toBinary", () => {
  it("20,000 generated results, one by one (successes with assignments, every code, unicode ids, large indexes)", () => {
    const next = generator(1);
    for (let i = 0; i < 20_000; i++) {
      const { r, now } = next();
      const [encoded] = encodeItemResults([r], now);
      const want = hex(protobufEs(r, now));
      expect(hex(handWritten(encoded)), JSON.stringify(r)).toBe(want);
      // the encoded value is field 1's: tag byte 0x0a + value = the whole message
      expect("0a" + hex(encoded)).toBe(want);
    }
  });

  it("chunks of 0..5,000 results share one buffer and each encodes alone", () => {
    const rnd = mulberry32(3);
    const next = generator(2);
    for (let c = 0; c < 40; c++) {
      const now = 1_767_225_600_123 + c;
      const n = c === 0 ? 0 : c === 1 ? 5000 : Math.floor(rnd() * 300);
      const results = Array.from({ length: n }, () => next().r);
      const encoded = encodeItemResults(results, now);
      expect(encoded.length).toBe(n);
      for (let i = 0; i < n; i++) expect(hex(handWritten(encoded[i]))).toBe(hex(protobufEs(results[i], now)));
    }
  });

  it("decodes to the same message protobuf-es builds (readable failure)", () => {
    const now = 1_767_225_600_123;
    const ok: ItemResult = {
      index: 130_000,
      status: { code: 0, message: "", field: "", reason: "" },
      assignment: {
        id: "0196f3c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d",
        environmentId: "env",
        identityId: "ïdentity-中-😀",
        roleId: "role",
        nodeId: "node",
        effectiveFrom: now + 1000,
        effectiveTo: now + 2000,
        createdAt: now,
        updatedAt: now,
      },
    };
    const bad: ItemResult = { index: 0, status: { code: 6, message: "duplicate", field: "items[0]", reason: "rbac.assignment_conflict" } };
    for (const r of [ok, bad]) {
      const decoded = fromBinary(BulkCreateAssignmentsResponseSchema, handWritten(encodeItemResults([r], now)[0]));
      expect(decoded).toEqual(create(BulkCreateAssignmentsResponseSchema, { kind: { case: "result", value: itemResultToPb(r, now) } }));
    }
  });

  it("only binary content types take the hand-encoded path", () => {
    for (const t of ["application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto", "application/connect+proto", "Application/GRPC+Proto"]) {
      expect(isBinaryCodec(t), t).toBe(true);
    }
    for (const t of [null, "", "application/grpc+json", "application/grpc-web+json", "application/connect+json", "application/json", "application/grpc-web-text", "application/grpc; charset=utf-8", "application/proto"]) {
      expect(isBinaryCodec(t), String(t)).toBe(false);
    }
  });
});
