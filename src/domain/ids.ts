import { randomFillSync } from "node:crypto";

/**
 * UUIDv7 ids (RFC 9562): 48-bit ms timestamp, then a 42-bit counter (rand_a + the top of rand_b,
 * "method 1"), then 32 random bits. The counter is seeded randomly with its top bit clear on every
 * new millisecond and incremented within one, so ids made in sequence by this process always sort
 * ascending as strings — the store pages by id, and id order is creation order.
 */

const COUNTER_MAX = 2 ** 42 - 1;
/** ASCII codes of the two hex digits of each byte value */
const HEX_HI = Uint8Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0").charCodeAt(0));
const HEX_LO = Uint8Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0").charCodeAt(1));
const bytes = new Uint8Array(16);
/** the id's 36 characters, rendered into one string at once (a flat string, not a chain of concatenations) */
const text = Buffer.alloc(36, "-");
/** random bytes drawn in bulk: one getrandom per 1,024 ids instead of one per id */
const pool = new Uint8Array(4096);
let poolAt = pool.length;

function random(n: number): number {
  if (poolAt + n > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += n;
  return at;
}

let lastMs = -1;
let counter = 0;

/** A new UUIDv7, greater than every id this process made before it. */
export function newId(): string {
  let ms = Date.now();
  if (ms > lastMs) {
    counter = randomCounter();
  } else {
    // same millisecond, or the wall clock stepped back: stay on the last one and count
    ms = lastMs;
    if (++counter > COUNTER_MAX) {
      ms += 1;
      counter = randomCounter();
    }
  }
  lastMs = ms;

  const r = random(4);
  bytes[12] = pool[r];
  bytes[13] = pool[r + 1];
  bytes[14] = pool[r + 2];
  bytes[15] = pool[r + 3];
  const hi = Math.floor(ms / 2 ** 16);
  bytes[0] = hi >>> 24;
  bytes[1] = (hi >>> 16) & 0xff;
  bytes[2] = (hi >>> 8) & 0xff;
  bytes[3] = hi & 0xff;
  bytes[4] = (ms >>> 8) & 0xff;
  bytes[5] = ms & 0xff;
  const counterHi = Math.floor(counter / 2 ** 30); // 12 bits -> rand_a
  const counterLo = counter % 2 ** 30; // 30 bits -> top of rand_b
  bytes[6] = 0x70 | (counterHi >>> 8);
  bytes[7] = counterHi & 0xff;
  bytes[8] = 0x80 | (counterLo >>> 24);
  bytes[9] = (counterLo >>> 16) & 0xff;
  bytes[10] = (counterLo >>> 8) & 0xff;
  bytes[11] = counterLo & 0xff;

  let at = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) at++; // the dash stays in place
    text[at++] = HEX_HI[bytes[i]];
    text[at++] = HEX_LO[bytes[i]];
  }
  return text.toString("latin1", 0, 36);
}

/** 41 random bits: the counter's top bit starts clear so a millisecond has 2^41 ids of headroom. */
function randomCounter(): number {
  const r = random(6);
  return (pool[r] & 0x01) * 2 ** 40 + pool[r + 1] * 2 ** 32 + ((pool[r + 2] << 24) >>> 0) + (pool[r + 3] << 16) + (pool[r + 4] << 8) + pool[r + 5];
}
