import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { CheckBulkItem, CheckBulkRequest, CheckRequest } from "../gen/canopy/v1/check_pb.js";

/**
 * Hand decoders for the fast path's requests (CheckRequest, CheckBulkRequest), for the plain encoding
 * every client library produces: ASCII strings, non-negative integers below 2^49, each message field
 * at most once. They return undefined for anything else — non-ASCII bytes, negative or huge numbers,
 * group wire types, a wire type that does not match the field, truncated input — and the caller then
 * decodes with protobuf-es, which also raises the canonical error for malformed input. So the result
 * is always what protobuf-es would have produced (test/unit/check-decode.test.ts compares them on
 * generated requests); only the cost differs: protobuf-es builds each message reflectively, which was
 * the largest transport cost of a 1,000-item CheckBulk.
 *
 * The objects returned carry exactly the fields the handlers read (no `$typeName`/`$unknown`): they
 * are requests to answer, never re-encoded.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;
const FAIL = -1;

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

/** cursor of the decode in progress (decoding is synchronous and not re-entrant) */
let pos = 0;

/** A varint below 2^49, or FAIL (too large, negative int64, truncated). */
function varint(b: Uint8Array, end: number): number {
  let result = 0;
  let scale = 1;
  while (pos < end) {
    const byte = b[pos++];
    result += (byte & 0x7f) * scale;
    if (byte < 0x80) return result;
    scale *= 128;
    if (scale > 2 ** 42) return FAIL;
  }
  return FAIL;
}

/**
 * A field tag, or FAIL where protobuf-es refuses it or decodes it differently: field number 0, and any
 * tag longer than 4 bytes (protobuf-es rejects padded or uint32-overflowing tags; field numbers below
 * 2^25 always fit in 4 bytes, and longer ones are left to protobuf-es).
 */
function tagAt(b: Uint8Array, end: number): number {
  const start = pos;
  const tag = varint(b, end);
  return tag === FAIL || tag < 8 || pos - start > 4 ? FAIL : tag;
}

/** An ASCII string of `len` bytes at `pos`, or undefined (non-ASCII or truncated). */
function ascii(b: Uint8Array, len: number, end: number): string | undefined {
  const to = pos + len;
  if (to > end) return undefined;
  for (let i = pos; i < to; i++) if (b[i] >= 0x80) return undefined;
  // for ASCII, latin1 is UTF-8; Node's native slice makes one flat string without a copy of the bytes
  const s = latin1Slice.call(b, pos, to);
  pos = to;
  return s;
}

/** Skips an unknown field's value; false when it cannot (groups, truncation). */
function skip(b: Uint8Array, wire: number, end: number): boolean {
  if (wire === WIRE_VARINT) return varint(b, end) !== FAIL;
  if (wire === WIRE_FIXED64) return (pos += 8) <= end;
  if (wire === WIRE_FIXED32) return (pos += 4) <= end;
  if (wire === WIRE_LEN) {
    const len = varint(b, end);
    return len !== FAIL && (pos += len) <= end;
  }
  return false;
}

/** The four check fields shared by CheckRequest (1–4) and CheckBulkItem. */
interface CheckFields {
  identityId: string;
  permission: string;
  scope: number;
  nodeId: string;
}

/** Reads field `field` of a check (1–4) into `out`; false when the value is not plain. */
function checkField(b: Uint8Array, field: number, wire: number, end: number, out: CheckFields): boolean {
  if (field === 3) {
    if (wire !== WIRE_VARINT) return false;
    const v = varint(b, end);
    if (v === FAIL || v > 0x7fffffff) return false;
    out.scope = v;
    return true;
  }
  if (wire !== WIRE_LEN) return false;
  const len = varint(b, end);
  if (len === FAIL) return false;
  const s = ascii(b, len, end);
  if (s === undefined) return false;
  if (field === 1) out.identityId = s;
  else if (field === 2) out.permission = s;
  else out.nodeId = s;
  return true;
}

function timestamp(b: Uint8Array, end: number): Timestamp | undefined {
  let seconds = 0;
  let nanos = 0;
  while (pos < end) {
    const tag = tagAt(b, end);
    if (tag === FAIL) return undefined;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 || field === 2) {
      if (wire !== WIRE_VARINT) return undefined;
      const v = varint(b, end);
      if (v === FAIL || (field === 2 && v > 0x7fffffff)) return undefined;
      if (field === 1) seconds = v;
      else nanos = v;
    } else if (!skip(b, wire, end)) return undefined;
  }
  return pos === end ? ({ seconds: BigInt(seconds), nanos } as Timestamp) : undefined;
}

/** The request fields after the checks: `at`, `explain`, `min_revision`. */
interface RequestFields {
  at: Timestamp | undefined;
  explain: boolean;
  minRevision: bigint;
}

/**
 * Reads `at` (field `first`, at most once: protobuf-es would merge two), `explain` (first + 1) or
 * `min_revision` (first + 2) into `out`; false when the value is not plain.
 */
function requestField(b: Uint8Array, field: number, wire: number, end: number, first: number, out: RequestFields): boolean {
  if (field === first) {
    if (wire !== WIRE_LEN || out.at !== undefined) return false;
    const len = varint(b, end);
    if (len === FAIL || pos + len > end) return false;
    out.at = timestamp(b, pos + len);
    return out.at !== undefined;
  }
  if (wire !== WIRE_VARINT) return false;
  const v = varint(b, end);
  if (v === FAIL) return false;
  if (field === first + 1) out.explain = v !== 0;
  else out.minRevision = BigInt(v);
  return true;
}

/** CheckRequest, or undefined when protobuf-es must decode it. */
export function decodeCheckRequest(b: Uint8Array): CheckRequest | undefined {
  pos = 0;
  const end = b.length;
  const out = { identityId: "", permission: "", scope: 0, nodeId: "", at: undefined as Timestamp | undefined, explain: false, minRevision: 0n };
  while (pos < end) {
    const tag = tagAt(b, end);
    if (tag === FAIL) return undefined;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field >= 1 && field <= 4) {
      if (!checkField(b, field, wire, end, out)) return undefined;
    } else if (field >= 5 && field <= 7) {
      if (!requestField(b, field, wire, end, 5, out)) return undefined;
    } else if (!skip(b, wire, end)) return undefined;
  }
  return pos === end ? (out as unknown as CheckRequest) : undefined;
}

/** CheckBulkRequest, or undefined when protobuf-es must decode it. */
export function decodeCheckBulkRequest(b: Uint8Array): CheckBulkRequest | undefined {
  pos = 0;
  const end = b.length;
  const items: CheckFields[] = [];
  const out = { items, at: undefined as Timestamp | undefined, explain: false, minRevision: 0n };
  while (pos < end) {
    const tag = tagAt(b, end);
    if (tag === FAIL) return undefined;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1) {
      if (wire !== WIRE_LEN) return undefined;
      const len = varint(b, end);
      if (len === FAIL || pos + len > end) return undefined;
      const to = pos + len;
      const item: CheckFields = { identityId: "", permission: "", scope: 0, nodeId: "" };
      while (pos < to) {
        const t = tagAt(b, to);
        if (t === FAIL) return undefined;
        const f = Math.floor(t / 8);
        const w = t & 7;
        if (f >= 1 && f <= 4) {
          if (!checkField(b, f, w, to, item)) return undefined;
        } else if (!skip(b, w, to)) return undefined;
      }
      if (pos !== to) return undefined;
      items.push(item);
    } else if (field >= 2 && field <= 4) {
      if (!requestField(b, field, wire, end, 2, out)) return undefined;
    } else if (!skip(b, wire, end)) return undefined;
  }
  return pos === end ? (out as unknown as CheckBulkRequest) : undefined;
}

export type { CheckBulkItem };
