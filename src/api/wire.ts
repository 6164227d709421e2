/**
 * Protobuf wire primitives shared by the hand-written encoders (check-wire.ts, assignment-wire.ts):
 * sizes computed the way protobuf-es writes (proto3 defaults omitted, UTF-8 as TextEncoder encodes it)
 * and a writer into a buffer sized from them. The encoders' unit tests compare their bytes with
 * protobuf-es's.
 */

export const WIRE_VARINT = 0;
export const WIRE_LEN = 2;
export const tag = (field: number, wire: number) => (field << 3) | wire;

/** UTF-8 length as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2;
      i++;
    } else n += 2;
  }
  return n;
}

/** bytes of a varint for 0 <= n <= 2^53 */
export function uintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** int32/int64 as protobuf writes them: negatives take 10 bytes (sign-extended to 64 bits) */
export const intSize = (n: number) => (n < 0 ? 10 : uintSize(n));

/** a length-delimited field of body length `len`: tag, length, body */
export const lenFieldSize = (field: number, len: number) => uintSize(tag(field, WIRE_LEN)) + uintSize(len) + len;

/** google.protobuf.Timestamp body for epoch ms (as convert.ts ts() builds it) */
export function timestampBodySize(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  return (seconds !== 0 ? 1 + intSize(seconds) : 0) + (nanos !== 0 ? 1 + uintSize(nanos) : 0);
}

export class WireWriter {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  uint(n: number): void {
    const buf = this.buf;
    while (n >= 128) {
      buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    buf[this.pos++] = n;
  }

  int(n: number): void {
    if (n >= 0) return this.uint(n);
    let v = BigInt.asUintN(64, BigInt(n));
    while (v >= 128n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  /** tag and length of a length-delimited field whose body follows */
  header(field: number, len: number): void {
    this.uint(tag(field, WIRE_LEN));
    this.uint(len);
  }

  /** a string field of UTF-8 length `len` (nothing when empty) */
  string(field: number, s: string, len: number = utf8Length(s)): void {
    if (len === 0) return;
    this.header(field, len);
    if (len === s.length) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else this.pos += this.buf.write(s, this.pos, len, "utf8");
  }

  /** a set Timestamp field */
  timestamp(field: number, ms: number): void {
    this.header(field, timestampBodySize(ms));
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms - seconds * 1000) * 1_000_000;
    if (seconds !== 0) {
      this.uint(tag(1, WIRE_VARINT));
      this.int(seconds);
    }
    if (nanos !== 0) {
      this.uint(tag(2, WIRE_VARINT));
      this.uint(nanos);
    }
  }
}
