import type { CheckResult, GrantingAssignment } from "../engine/index.js";
import { denialToPb, scopeToPb } from "./convert.js";
import { intSize, lenFieldSize, tag, timestampBodySize, uintSize, utf8Length, WIRE_VARINT, WireWriter } from "./wire.js";

/**
 * CheckBulkResponse / CheckResponse encoded straight from the engine's results, for the fast path.
 * Going through protobuf-es (checkResultToPb, create, toBinary) built ~10 objects per result and
 * walked them reflectively: for 1,000 results that was most of a CheckBulk's server time. The bytes
 * are exactly protobuf-es's (fields in number order, proto3 defaults omitted, every repeated element
 * and every set Timestamp written): test/unit/check-wire.test.ts compares them on generated results.
 * Any field added to check.proto must be added here too — that test fails until it is.
 */

const int64Size = intSize;
const stringSize = (field: number, s: string) => (s.length === 0 ? 0 : lenFieldSize(field, utf8Length(s)));
const messageSize = lenFieldSize;

function roleBodySize(r: { roleId: string; roleName: string }): number {
  return stringSize(1, r.roleId) + stringSize(2, r.roleName);
}

function grantBodySize(g: GrantingAssignment): number {
  return (
    stringSize(1, g.assignmentId) +
    stringSize(2, g.roleId) +
    stringSize(3, g.nodeId) +
    (g.inherited ? 2 : 0) +
    messageSize(5, timestampBodySize(g.effectiveFrom)) +
    (g.effectiveTo === null ? 0 : messageSize(6, timestampBodySize(g.effectiveTo)))
  );
}

function resultBodySize(r: CheckResult): number {
  let size = (r.allowed ? 2 : 0) + stringSize(2, r.permission);
  const scope = scopeToPb(r.scope);
  if (scope !== 0) size += 1 + uintSize(scope);
  size += stringSize(4, r.effectiveNodeId);
  for (const role of r.grantingRoles) size += messageSize(5, roleBodySize(role));
  const denial = denialToPb(r.denialReason);
  if (denial !== 0) size += 1 + uintSize(denial);
  for (const g of r.explanation) size += messageSize(7, grantBodySize(g));
  if (r.revision !== 0) size += 1 + int64Size(r.revision);
  size += messageSize(9, timestampBodySize(r.at));
  return size + stringSize(10, r.identityId);
}

class Writer extends WireWriter {
  result(r: CheckResult, size: number): void {
    this.header(1, size);
    if (r.allowed) {
      this.uint(tag(1, WIRE_VARINT));
      this.uint(1);
    }
    this.string(2, r.permission);
    const scope = scopeToPb(r.scope);
    if (scope !== 0) {
      this.uint(tag(3, WIRE_VARINT));
      this.uint(scope);
    }
    this.string(4, r.effectiveNodeId);
    for (const role of r.grantingRoles) {
      this.header(5, roleBodySize(role));
      this.string(1, role.roleId);
      this.string(2, role.roleName);
    }
    const denial = denialToPb(r.denialReason);
    if (denial !== 0) {
      this.uint(tag(6, WIRE_VARINT));
      this.uint(denial);
    }
    for (const g of r.explanation) {
      this.header(7, grantBodySize(g));
      this.string(1, g.assignmentId);
      this.string(2, g.roleId);
      this.string(3, g.nodeId);
      if (g.inherited) {
        this.uint(tag(4, WIRE_VARINT));
        this.uint(1);
      }
      this.timestamp(5, g.effectiveFrom);
      if (g.effectiveTo !== null) this.timestamp(6, g.effectiveTo);
    }
    if (r.revision !== 0) {
      this.uint(tag(8, WIRE_VARINT));
      this.int(r.revision);
    }
    this.timestamp(9, r.at);
    this.string(10, r.identityId);
  }
}

/** CheckBulkResponse bytes for domain results: what the Connect handler's message serializes to. */
export function encodeCheckBulkResponse(results: readonly CheckResult[], revision: number): Uint8Array {
  const sizes = new Int32Array(results.length);
  let total = revision !== 0 ? 1 + int64Size(revision) : 0;
  for (let i = 0; i < results.length; i++) {
    const size = resultBodySize(results[i]);
    sizes[i] = size;
    total += messageSize(1, size);
  }
  const w = new Writer(Buffer.allocUnsafe(total));
  for (let i = 0; i < results.length; i++) w.result(results[i], sizes[i]);
  if (revision !== 0) {
    w.uint(tag(2, WIRE_VARINT));
    w.int(revision);
  }
  if (w.pos !== total) throw new Error(`internal: CheckBulkResponse encoder wrote ${w.pos} of ${total} bytes`);
  return w.buf;
}

/** CheckResponse bytes for one result (the body of `result` without its field header). */
export function encodeCheckResponse(r: CheckResult): Uint8Array {
  const size = resultBodySize(r);
  const w = new Writer(Buffer.allocUnsafe(messageSize(1, size)));
  w.result(r, size);
  if (w.pos !== w.buf.length) throw new Error(`internal: CheckResponse encoder wrote ${w.pos} of ${w.buf.length} bytes`);
  // drop the field-1 header: a CheckResponse on its own is just the body
  return w.buf.subarray(w.buf.length - size);
}
