import { describe, expect, it } from "vitest";
import { parseTime } from "../../src/rest/json.js";
import { DomainError } from "../../src/domain/errors.js";

/** RFC 3339 timestamps of the REST surface, against Date.parse where it is defined and exact. */
describe("parseTime", () => {
  it.each([
    ["2026-05-01T00:00:00Z", Date.UTC(2026, 4, 1)],
    ["2026-12-31T23:59:59Z", Date.UTC(2026, 11, 31, 23, 59, 59)],
    ["2026-05-01t00:00:00z", Date.UTC(2026, 4, 1)],
    ["2026-05-01T02:30:00+02:30", Date.UTC(2026, 4, 1)],
    ["2026-04-30T19:00:00-05:00", Date.UTC(2026, 4, 1)],
    ["2026-05-01T00:00:00.5Z", Date.UTC(2026, 4, 1) + 500],
    ["2026-05-01T00:00:00.123Z", Date.UTC(2026, 4, 1) + 123],
    ["2026-05-01T00:00:00.123999999Z", Date.UTC(2026, 4, 1) + 123],
    ["2024-02-29T12:00:00Z", Date.UTC(2024, 1, 29, 12)],
    ["2000-02-29T00:00:00Z", Date.UTC(2000, 1, 29)],
    ["1970-01-01T00:00:00Z", 0],
    ["1969-12-31T23:59:59.999Z", -1],
    ["9999-12-31T23:59:59.999Z", Date.UTC(9999, 11, 31, 23, 59, 59, 999)],
  ])("%s", (text, ms) => {
    expect(parseTime(text, "effective_from")).toBe(ms);
  });

  it("years below 100 are not shifted into the 1900s", () => {
    expect(new Date(parseTime("0050-06-15T00:00:00Z", "at")).toISOString()).toBe("0050-06-15T00:00:00.000Z");
    expect(new Date(parseTime("0001-01-01T00:00:00Z", "at")).toISOString()).toBe("0001-01-01T00:00:00.000Z");
  });

  it.each([
    "2026-05-01",
    "2026-05-01T00:00:00",
    "2026-05-01 00:00:00Z",
    "2026-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-05-00T00:00:00Z",
    "2026-05-01T24:00:00Z",
    "2026-05-01T00:60:00Z",
    "2026-05-01T00:00:60Z",
    "2026-05-01T00:00:00+24:00",
    "2026-05-01T00:00:00.Z",
    "2026-05-01T00:00:00.1234567890Z",
    "0000-01-01T00:00:00Z",
    " 2026-05-01T00:00:00Z",
    "",
    "tomorrow",
  ])("refuses %j naming the field", (text) => {
    let err: unknown;
    try {
      parseTime(text, "assignments[3].effective_to");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).code).toBe("invalid_argument");
    expect((err as DomainError).field).toBe("assignments[3].effective_to");
    expect((err as DomainError).message).toMatch(/^assignments\[3\]\.effective_to: /);
  });

  it("an offset pushing the instant past 9999-12-31 is out of range", () => {
    expect(() => parseTime("9999-12-31T23:00:00-02:00", "at")).toThrow(/outside 0001-01-01\.\.9999-12-31/);
  });
});
