import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { decodeCheckBulkRequest, decodeCheckRequest } from "../../src/api/check-decode.js";
import { CheckBulkRequestSchema, CheckRequestSchema, type CheckBulkRequest, type CheckRequest } from "../../src/gen/canopy/v1/check_pb.js";
import { mulberry32 } from "../fixtures/random.js";

/**
 * The fast path's hand decoders must give exactly what protobuf-es gives for every request they accept,
 * and hand everything else (non-ASCII, negative or huge numbers, repeated messages, malformed bytes)
 * back to protobuf-es by returning undefined.
 */

const ASCII_IDS = ["", "a", "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", "invoice.read", "x".repeat(200), "\u0000\u007f", "~!@#$%^&*()"];
const OTHER_IDS = ["é", "中文", "😀", "\ud800"];

function rng(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)] };
}

type Gen = ReturnType<typeof rng>;

function id(r: Gen, unicode: boolean): string {
  return unicode && r.next() < 0.1 ? r.pick(OTHER_IDS) : r.pick(ASCII_IDS);
}

function randomAt(r: Gen) {
  const k = r.int(6);
  if (k === 0) return undefined;
  if (k === 1) return timestampFromMs(-r.int(1e12)); // negative seconds: protobuf-es only
  if (k === 2) return { seconds: 0n, nanos: 0 };
  return timestampFromMs(Date.UTC(2026, 0, 1) + r.int(1e9));
}

function randomMinRevision(r: Gen): bigint {
  const k = r.int(5);
  return k === 0 ? 2n ** 60n : k === 1 ? BigInt(r.int(1000)) : 0n;
}

function sameCheck(a: CheckRequest, b: CheckRequest): void {
  expect({ identityId: a.identityId, permission: a.permission, scope: a.scope, nodeId: a.nodeId, explain: a.explain, minRevision: a.minRevision }).toEqual({
    identityId: b.identityId,
    permission: b.permission,
    scope: b.scope,
    nodeId: b.nodeId,
    explain: b.explain,
    minRevision: b.minRevision,
  });
  expect(a.at === undefined ? undefined : { seconds: a.at.seconds, nanos: a.at.nanos }).toEqual(b.at === undefined ? undefined : { seconds: b.at.seconds, nanos: b.at.nanos });
}

/** an unknown field (number 99) of each wire type a client might send */
const UNKNOWN = [
  Uint8Array.of((99 << 3) | 0, 0x96, 0x01),
  Uint8Array.of(0x98, 0x06, 0x05), // field 99, varint, two-byte tag
  Uint8Array.of((15 << 3) | 2, 3, 0x61, 0x62, 0x63),
  Uint8Array.of((14 << 3) | 5, 1, 2, 3, 4),
  Uint8Array.of((13 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8),
];

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
};

describe("hand decoder: CheckRequest", () => {
  it("agrees with protobuf-es on 5,000 generated requests and takes the fast path for the plain ones", () => {
    const r = rng(99);
    let fast = 0;
    for (let n = 0; n < 5000; n++) {
      const msg = create(CheckRequestSchema, {
        identityId: id(r, true),
        permission: id(r, true),
        scope: r.pick([0, 1, 2, 2, 7]),
        nodeId: id(r, true),
        at: randomAt(r),
        explain: r.next() < 0.3,
        minRevision: randomMinRevision(r),
      });
      let bytes = toBinary(CheckRequestSchema, msg);
      if (r.next() < 0.2) bytes = concat(bytes, r.pick(UNKNOWN));
      if (r.next() < 0.1) bytes = concat(bytes, toBinary(CheckRequestSchema, create(CheckRequestSchema, { identityId: "later-wins", scope: 1 })));
      const want = fromBinary(CheckRequestSchema, bytes);
      const got = decodeCheckRequest(bytes);
      if (got !== undefined) {
        fast++;
        sameCheck(got, want);
      }
    }
    expect(fast).toBeGreaterThan(1500);
  });

  it("gives malformed and truncated bodies back to protobuf-es", () => {
    const good = toBinary(CheckRequestSchema, create(CheckRequestSchema, { identityId: "abc", permission: "p", nodeId: "n", at: timestampFromMs(1e12) }));
    expect(decodeCheckRequest(good)).toBeDefined();
    // a cut inside a field is refused; a cut between fields is a valid shorter message, decoded as protobuf-es does
    let refused = 0;
    for (let cut = 1; cut < good.length; cut++) {
      const got = decodeCheckRequest(good.subarray(0, cut));
      if (got === undefined) refused++;
      else sameCheck(got, fromBinary(CheckRequestSchema, good.subarray(0, cut)));
    }
    expect(refused).toBeGreaterThan(good.length / 2);
    expect(decodeCheckRequest(Uint8Array.of(0x0a, 0x05, 0x61))).toBeUndefined(); // length beyond the body
    expect(decodeCheckRequest(Uint8Array.of(0x08, 0x01))).toBeUndefined(); // identity_id as a varint
    expect(decodeCheckRequest(Uint8Array.of((9 << 3) | 3))).toBeUndefined(); // a group
    // field number 0 is illegal: protobuf-es refuses it, so must the fast decoder
    expect(() => fromBinary(CheckRequestSchema, Uint8Array.of(0x00, 0x01))).toThrow();
    expect(decodeCheckRequest(Uint8Array.of(0x00, 0x01))).toBeUndefined();
    expect(decodeCheckBulkRequest(Uint8Array.of(0x0a, 0x02, 0x00, 0x01))).toBeUndefined();
    // a tag padded to 6 bytes: protobuf-es refuses it ("varint overflows uint32"), so must the fast decoder
    const padded = Uint8Array.of(0x8a, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01, 0x61);
    expect(() => fromBinary(CheckRequestSchema, padded)).toThrow();
    expect(decodeCheckRequest(padded)).toBeUndefined();
    // padded to 2 bytes both accept, with the same value
    const short = Uint8Array.of(0x8a, 0x00, 0x01, 0x61);
    expect(fromBinary(CheckRequestSchema, short).identityId).toBe("a");
    expect(decodeCheckRequest(short)?.identityId).toBe("a");
    expect(decodeCheckRequest(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))).toBeUndefined();
    expect(decodeCheckRequest(new Uint8Array(0))).toEqual(expect.objectContaining({ identityId: "", scope: 0, minRevision: 0n, at: undefined }));
  });
});

describe("hand decoder: CheckBulkRequest", () => {
  it("agrees with protobuf-es on 1,000 generated requests of up to 300 items", () => {
    const r = rng(7);
    let fast = 0;
    for (let n = 0; n < 1000; n++) {
      const unicode = r.next() < 0.2;
      const items = Array.from({ length: r.int(300) }, () => ({ identityId: id(r, unicode), permission: id(r, unicode), scope: r.pick([0, 1, 2, 9]), nodeId: id(r, unicode) }));
      let bytes = toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items, at: randomAt(r), explain: r.next() < 0.5, minRevision: randomMinRevision(r) }));
      if (r.next() < 0.2) bytes = concat(bytes, r.pick(UNKNOWN));
      // a second body appended: its items are appended, its scalars win
      if (r.next() < 0.1) bytes = concat(bytes, toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items: [{ identityId: "extra" }], explain: true })));
      const want: CheckBulkRequest = fromBinary(CheckBulkRequestSchema, bytes);
      const got = decodeCheckBulkRequest(bytes);
      if (got === undefined) continue;
      fast++;
      expect(got.items.length).toBe(want.items.length);
      got.items.forEach((item, i) => {
        const w = want.items[i];
        expect([item.identityId, item.permission, item.scope, item.nodeId]).toEqual([w.identityId, w.permission, w.scope, w.nodeId]);
      });
      expect([got.explain, got.minRevision]).toEqual([want.explain, want.minRevision]);
      expect(got.at === undefined ? undefined : [got.at.seconds, got.at.nanos]).toEqual(want.at === undefined ? undefined : [want.at.seconds, want.at.nanos]);
    }
    expect(fast).toBeGreaterThan(300);
  });

  it("gives a repeated `at`, truncated items and non-ASCII ids back to protobuf-es", () => {
    const one = toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items: [{ identityId: "i", permission: "p", nodeId: "n" }], at: timestampFromMs(5000) }));
    expect(decodeCheckBulkRequest(one)?.items).toHaveLength(1);
    expect(decodeCheckBulkRequest(concat(one, one))).toBeUndefined(); // `at` twice: protobuf-es merges messages
    let refused = 0;
    for (let cut = 1; cut < one.length; cut++) {
      const got = decodeCheckBulkRequest(one.subarray(0, cut));
      if (got === undefined) refused++;
      else expect(got.items.map((i) => i.identityId)).toEqual(fromBinary(CheckBulkRequestSchema, one.subarray(0, cut)).items.map((i) => i.identityId));
    }
    expect(refused).toBeGreaterThan(one.length / 2);
    const accented = toBinary(CheckBulkRequestSchema, create(CheckBulkRequestSchema, { items: [{ identityId: "é" }] }));
    expect(decodeCheckBulkRequest(accented)).toBeUndefined();
  });
});
