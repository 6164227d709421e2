import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { encodeCheckBulkResponse, encodeCheckResponse } from "../../src/api/check-wire.js";
import { checkResultToPb } from "../../src/api/convert.js";
import type { CheckResult, DenialReason, GrantingAssignment } from "../../src/engine/index.js";
import { CheckBulkResponseSchema, CheckResponseSchema } from "../../src/gen/canopy/v1/check_pb.js";
import { mulberry32 } from "../fixtures/random.js";

/**
 * The fast path's hand-written CheckResponse / CheckBulkResponse encoder must produce exactly the bytes
 * protobuf-es produces for checkResultToPb (what the Connect path sends), for every shape a result can take.
 */

const REASONS: Array<DenialReason | null> = [
  null,
  "UNKNOWN_IDENTITY",
  "UNKNOWN_PERMISSION",
  "UNKNOWN_NODE",
  "IDENTITY_INACTIVE",
  "NO_MEMBERSHIP",
  "MEMBERSHIP_INACTIVE",
  "NO_ASSIGNMENT",
  "PERMISSION_NOT_GRANTED",
  "ONLY_SCHEDULED",
  "ONLY_EXPIRED",
];

/** ids from plain ASCII to 2-, 3- and 4-byte UTF-8, lone surrogates and long strings */
const ID_PARTS = ["a", "Z9", "-", "_", "é", "ß", "中", "😀", "\ud800", "\udc00x", "\u0000", "\u007f", "\u0080", "\u07ff", "\u0800", "\uffff", "x".repeat(150)];

const INSTANTS = [0, 1, 999, 1000, -1, -1001, 1_767_225_600_123, 253402300799999, -62135596800000, 86_400_000];
const REVISIONS = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER];

function generator(seed: number) {
  const rnd = mulberry32(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const id = () => (rnd() < 0.1 ? "" : Array.from({ length: 1 + int(4) }, () => (rnd() < 0.6 ? pick(["ab", "n-1", "7f3a9c2e-1b"]) : pick(ID_PARTS))).join(""));
  const instant = () => (rnd() < 0.5 ? pick(INSTANTS) : 1_700_000_000_000 + int(10 ** 11) - 5 * 10 ** 10);
  const grant = (): GrantingAssignment => ({
    assignmentId: id(),
    roleId: id(),
    nodeId: id(),
    inherited: rnd() < 0.5,
    effectiveFrom: instant(),
    effectiveTo: rnd() < 0.5 ? null : instant(),
  });
  return (): CheckResult => {
    const denialReason = pick(REASONS);
    return {
      allowed: denialReason === null ? rnd() < 0.9 : false,
      identityId: id(),
      permission: id(),
      scope: rnd() < 0.7 ? "node" : "app_wide",
      effectiveNodeId: id(),
      grantingRoles: Array.from({ length: rnd() < 0.5 ? 0 : int(4) }, () => ({ roleId: id(), roleName: id() })),
      denialReason,
      explanation: Array.from({ length: rnd() < 0.5 ? 0 : int(4) }, grant),
      revision: pick(REVISIONS),
      at: instant(),
    };
  };
}

const protobufEs = (r: CheckResult) => toBinary(CheckResponseSchema, create(CheckResponseSchema, checkResultToPb(r)));
const protobufEsBulk = (rs: CheckResult[], revision: number) =>
  toBinary(CheckBulkResponseSchema, create(CheckBulkResponseSchema, { results: rs.map(checkResultToPb), revision: BigInt(revision) }));

describe("check-wire: hand-encoded CheckResponse / CheckBulkResponse = protobuf-es toBinary", () => {
  it("5,000 generated results, one by one", () => {
    const next = generator(1);
    for (let i = 0; i < 5000; i++) {
      const r = next();
      const want = Buffer.from(protobufEs(r)).toString("hex");
      expect(Buffer.from(encodeCheckResponse(r)).toString("hex"), JSON.stringify(r)).toBe(want);
    }
  });

  it("200 generated CheckBulk responses of 0..1,000 results, every revision", () => {
    const next = generator(2);
    const rnd = mulberry32(3);
    for (let i = 0; i < 200; i++) {
      const n = i === 0 ? 0 : i === 1 ? 1000 : Math.floor(rnd() * 60);
      const results = Array.from({ length: n }, next);
      const revision = REVISIONS[i % REVISIONS.length];
      expect(Buffer.from(encodeCheckBulkResponse(results, revision)).equals(Buffer.from(protobufEsBulk(results, revision)))).toBe(true);
    }
  });

  it("a plain allowed and a plain denied result (readable failure)", () => {
    const allowed: CheckResult = {
      allowed: true,
      identityId: "alice",
      permission: "doc.read",
      scope: "node",
      effectiveNodeId: "team-1",
      grantingRoles: [{ roleId: "r1", roleName: "viewer" }],
      denialReason: null,
      explanation: [{ assignmentId: "a1", roleId: "r1", nodeId: "root", inherited: true, effectiveFrom: 1_767_225_600_000, effectiveTo: null }],
      revision: 42,
      at: 1_767_225_600_123,
    };
    const denied: CheckResult = { ...allowed, allowed: false, grantingRoles: [], explanation: [], denialReason: "NO_ASSIGNMENT", scope: "app_wide", effectiveNodeId: "" };
    for (const r of [allowed, denied]) expect(Buffer.from(encodeCheckResponse(r)).toString("hex")).toBe(Buffer.from(protobufEs(r)).toString("hex"));
  });
});
