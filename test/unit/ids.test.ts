import { describe, expect, it, vi } from "vitest";
import { newId } from "../../src/domain/ids.js";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The 48-bit timestamp at the front of a UUIDv7. */
const timestampOf = (id: string) => parseInt(id.replace(/-/g, "").slice(0, 12), 16);

describe("newId", () => {
  it("formats a UUIDv7 carrying the current time", () => {
    const before = Date.now();
    const id = newId();
    const after = Date.now();
    expect(id).toMatch(UUID_V7);
    expect(timestampOf(id)).toBeGreaterThanOrEqual(before);
    expect(timestampOf(id)).toBeLessThanOrEqual(after);
  });

  it("sorts ascending in creation order, also many times within one millisecond", () => {
    const made = Array.from({ length: 20_000 }, () => newId());
    expect(new Set(made).size).toBe(made.length);
    expect([...made].sort()).toEqual(made);
  });

  it("stays ascending when the clock stands still or steps back", () => {
    const spy = vi.spyOn(Date, "now");
    try {
      spy.mockReturnValue(Date.UTC(2030, 0, 1));
      const a = Array.from({ length: 1000 }, () => newId());
      spy.mockReturnValue(Date.UTC(2029, 0, 1));
      const b = Array.from({ length: 10 }, () => newId());
      const all = [...a, ...b];
      expect([...all].sort()).toEqual(all);
      expect(timestampOf(b[9])).toBe(Date.UTC(2030, 0, 1));
      expect(all.every((id) => UUID_V7.test(id))).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});
