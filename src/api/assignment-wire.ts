import { WireType } from "@bufbuild/protobuf/wire";
import type { ItemResult } from "../domain/assignment-service.js";
import type { Assignment } from "../domain/model.js";
import type { BulkCreateAssignmentsResponse } from "../gen/canopy/v1/assignment_pb.js";
import { AssignmentState } from "../gen/canopy/v1/common_pb.js";
import { intSize, tag, timestampBodySize, uintSize, utf8Length, WIRE_LEN, WIRE_VARINT, WireWriter } from "./wire.js";

/**
 * The per-item results of BulkCreateAssignments encoded by hand, for the binary codecs (gRPC,
 * gRPC-Web, Connect+proto). Building each result through protobuf-es (itemResultToPb, create, the
 * reflective toBinary) made eight message objects per item (response, result, status, assignment,
 * four Timestamps) and walked them field by field: a large share of a bulk import's server time.
 *
 * The bytes are exactly protobuf-es's for `{ kind: { case: "result", value: itemResultToPb(r, now) } }`
 * (fields in number order, proto3 defaults omitted, every set Timestamp written):
 * test/unit/assignment-wire.test.ts compares them on generated results. Any field added to
 * AssignmentItemResult, ItemStatus or Assignment must be added here too — that test fails until it is.
 *
 * Connect-node serializes whatever message a handler yields with protobuf-es's toBinary, which
 * writes a message's unknown fields (`$unknown`, the public API protobuf-es keeps them in) after
 * its known ones. `preEncodedResult` hands Connect a BulkCreateAssignmentsResponse whose only
 * content is field 1 (`result`) as such an unknown field, already encoded: toBinary copies the bytes
 * and the wire sees the same message. JSON codecs ignore unknown fields, so handlers must use this
 * only when `isBinaryCodec(content-type)`; JSON keeps the protobuf-es path.
 */

/** a string field's bytes; `len` is its UTF-8 length */
const stringFieldSize = (len: number) => (len === 0 ? 0 : 1 + uintSize(len) + len);

/** a set Timestamp field (field numbers here are < 16: one tag byte) */
const timestampFieldSize = (ms: number) => {
  const body = timestampBodySize(ms);
  return 1 + uintSize(body) + body;
};

const STATE: Record<"scheduled" | "active" | "expired", AssignmentState> = {
  scheduled: AssignmentState.SCHEDULED,
  active: AssignmentState.ACTIVE,
  expired: AssignmentState.EXPIRED,
};

/** assignmentState() of model.ts, as the enum number */
function stateOf(a: Assignment, now: number): AssignmentState {
  if (now < a.effectiveFrom) return STATE.scheduled;
  if (a.effectiveTo !== null && now >= a.effectiveTo) return STATE.expired;
  return STATE.active;
}

/** UTF-8 lengths of one result's strings, computed once for sizing and writing */
const lens = new Int32Array(7);

/**
 * Size of AssignmentItemResult's body; fills `lens` (status message, field, reason; assignment id,
 * identity, role, node). `statusSize`/`assignmentSize` return the nested bodies through `nested`.
 */
const nested = new Float64Array(2);

function itemResultBodySize(r: ItemResult, now: number): number {
  const s = r.status;
  lens[0] = utf8Length(s.message);
  lens[1] = utf8Length(s.field);
  lens[2] = utf8Length(s.reason);
  const statusBody = (s.code !== 0 ? 1 + intSize(s.code) : 0) + stringFieldSize(lens[0]) + stringFieldSize(lens[1]) + stringFieldSize(lens[2]);
  nested[0] = statusBody;
  let size = (r.index !== 0 ? 1 + uintSize(r.index) : 0) + 1 + uintSize(statusBody) + statusBody;
  const a = r.assignment;
  if (a !== undefined) {
    lens[3] = utf8Length(a.id);
    lens[4] = utf8Length(a.identityId);
    lens[5] = utf8Length(a.roleId);
    lens[6] = utf8Length(a.nodeId);
    const body =
      stringFieldSize(lens[3]) +
      stringFieldSize(lens[4]) +
      stringFieldSize(lens[5]) +
      stringFieldSize(lens[6]) +
      timestampFieldSize(a.effectiveFrom) +
      (a.effectiveTo === null ? 0 : timestampFieldSize(a.effectiveTo)) +
      2 + // state: never 0 (UNSPECIFIED), one byte
      timestampFieldSize(a.createdAt) +
      timestampFieldSize(a.updatedAt);
    nested[1] = body;
    size += 1 + uintSize(body) + body;
  }
  return size;
}

/** Writes field 1 of BulkCreateAssignmentsResponse's value: the length varint and the body (sizes from itemResultBodySize). */
function writeItemResult(w: WireWriter, r: ItemResult, now: number, size: number): void {
  w.uint(size);
  if (r.index !== 0) {
    w.buf[w.pos++] = tag(1, WIRE_VARINT);
    w.uint(r.index);
  }
  const s = r.status;
  w.buf[w.pos++] = tag(2, WIRE_LEN);
  w.uint(nested[0]);
  if (s.code !== 0) {
    w.buf[w.pos++] = tag(1, WIRE_VARINT);
    w.int(s.code);
  }
  w.string(2, s.message, lens[0]);
  w.string(3, s.field, lens[1]);
  w.string(4, s.reason, lens[2]);
  const a = r.assignment;
  if (a !== undefined) {
    w.buf[w.pos++] = tag(3, WIRE_LEN);
    w.uint(nested[1]);
    w.string(1, a.id, lens[3]);
    w.string(2, a.identityId, lens[4]);
    w.string(3, a.roleId, lens[5]);
    w.string(4, a.nodeId, lens[6]);
    w.timestamp(5, a.effectiveFrom);
    if (a.effectiveTo !== null) w.timestamp(6, a.effectiveTo);
    w.buf[w.pos++] = tag(7, WIRE_VARINT);
    w.buf[w.pos++] = stateOf(a, now);
    w.timestamp(8, a.createdAt);
    w.timestamp(9, a.updatedAt);
  }
}

/**
 * For each result, the value of BulkCreateAssignmentsResponse field 1 (`result`) as it appears on the
 * wire after the field's tag: the body's length as a varint, then the AssignmentItemResult body.
 * `now` is the instant the assignments' `state` is computed at (itemResultToPb's `now`). The results
 * share one buffer.
 */
export function encodeItemResults(results: readonly ItemResult[], now: number): Uint8Array[] {
  // sizes first (the strings' UTF-8 lengths are recomputed on the second pass: cheaper than keeping them)
  const sizes = new Float64Array(results.length);
  let total = 0;
  for (let i = 0; i < results.length; i++) {
    const size = itemResultBodySize(results[i], now);
    sizes[i] = size;
    total += uintSize(size) + size;
  }
  const w = new WireWriter(Buffer.allocUnsafe(total));
  const out: Uint8Array[] = new Array(results.length);
  for (let i = 0; i < results.length; i++) {
    const start = w.pos;
    const size = itemResultBodySize(results[i], now); // refills lens/nested for this result
    writeItemResult(w, results[i], now, size);
    if (w.pos - start !== uintSize(sizes[i]) + sizes[i]) throw new Error(`internal: AssignmentItemResult encoder wrote ${w.pos - start} bytes, expected ${uintSize(sizes[i]) + sizes[i]}`);
    out[i] = w.buf.subarray(start, w.pos);
  }
  return out;
}

const RESPONSE_TYPE_NAME = "canopy.v1.BulkCreateAssignmentsResponse";
/** the oneof unset: the result travels as an unknown field (shared, never mutated) */
const NO_KIND = Object.freeze({ case: undefined, value: undefined }) as BulkCreateAssignmentsResponse["kind"];

/**
 * A BulkCreateAssignmentsResponse that serializes (toBinary) to exactly the bytes of the `result`
 * the encoded value came from. Only for binary codecs: see the module comment.
 */
export function preEncodedResult(encodedResult: Uint8Array): BulkCreateAssignmentsResponse {
  return {
    $typeName: RESPONSE_TYPE_NAME,
    kind: NO_KIND,
    $unknown: [{ no: 1, wireType: WireType.LengthDelimited, data: encodedResult }],
  } as BulkCreateAssignmentsResponse;
}

/**
 * Whether a request's content type is one of the binary (protobuf) codecs Connect serves: gRPC
 * (`application/grpc`, `+proto`), gRPC-Web (`application/grpc-web`, `+proto`) and Connect streaming
 * (`application/connect+proto`). Anything else (JSON, parameters, unknown) is false.
 */
export function isBinaryCodec(contentType: string | null): boolean {
  return contentType !== null && /^application\/(?:grpc(?:-web)?(?:\+proto)?|connect\+proto)$/i.test(contentType);
}
