import { describe, expect, it } from "vitest";
import { assignmentState, windowsOverlap, type AssignmentState } from "../../src/domain/model.js";

const H = 3_600_000;
const T = Date.UTC(2025, 0, 1);
const FAR = 8_640_000_000_000_000; // the largest valid Date

describe("assignmentState: half-open window [from, to)", () => {
  const cases: Array<{ name: string; from: number; to: number | null; t: number; want: AssignmentState }> = [
    { name: "one ms before from is scheduled", from: T, to: T + H, t: T - 1, want: "scheduled" },
    { name: "exactly from is active (inclusive start)", from: T, to: T + H, t: T, want: "active" },
    { name: "inside the window is active", from: T, to: T + H, t: T + H / 2, want: "active" },
    { name: "one ms before to is active", from: T, to: T + H, t: T + H - 1, want: "active" },
    { name: "exactly to is expired (exclusive end)", from: T, to: T + H, t: T + H, want: "expired" },
    { name: "after to is expired", from: T, to: T + H, t: T + 10 * H, want: "expired" },
    { name: "open end: far future is active", from: T, to: null, t: FAR, want: "active" },
    { name: "open end: exactly from is active", from: T, to: null, t: T, want: "active" },
    { name: "open end: before from is scheduled", from: T, to: null, t: T - 1, want: "scheduled" },
    { name: "one-ms window: from is active", from: T, to: T + 1, t: T, want: "active" },
    { name: "one-ms window: from + 1 is expired", from: T, to: T + 1, t: T + 1, want: "expired" },
    { name: "empty window (to == from): before is scheduled", from: T, to: T, t: T - 1, want: "scheduled" },
    { name: "empty window (to == from): at from is expired, never active", from: T, to: T, t: T, want: "expired" },
    { name: "epoch 0 start, t = 0 is active", from: 0, to: 1, t: 0, want: "active" },
  ];
  it.each(cases)("$name", ({ from, to, t, want }) => {
    expect(assignmentState({ effectiveFrom: from, effectiveTo: to }, t)).toBe(want);
  });
});

describe("windowsOverlap: half-open windows", () => {
  const a = T;
  const b = T + H;
  const c = T + 2 * H;
  const d = T + 3 * H;
  const w = (from: number, to: number | null) => ({ effectiveFrom: from, effectiveTo: to });
  const cases: Array<{ name: string; x: ReturnType<typeof w>; y: ReturnType<typeof w>; want: boolean }> = [
    { name: "touching [a,b) and [b,c) do not overlap", x: w(a, b), y: w(b, c), want: false },
    { name: "disjoint [a,b) and [c,d)", x: w(a, b), y: w(c, d), want: false },
    { name: "sharing one ms [a,b+1) and [b,c)", x: w(a, b + 1), y: w(b, c), want: true },
    { name: "identical windows", x: w(a, b), y: w(a, b), want: true },
    { name: "containment [a,d) ⊃ [b,c)", x: w(a, d), y: w(b, c), want: true },
    { name: "same start, different ends", x: w(a, b), y: w(a, c), want: true },
    { name: "same end, different starts", x: w(a, c), y: w(b, c), want: true },
    { name: "open end [a,∞) and later [c,d)", x: w(a, null), y: w(c, d), want: true },
    { name: "open end [b,∞) and earlier touching [a,b)", x: w(b, null), y: w(a, b), want: false },
    { name: "open end [b,∞) and earlier overlapping [a,b+1)", x: w(b, null), y: w(a, b + 1), want: true },
    { name: "two open ends always overlap", x: w(a, null), y: w(d, null), want: true },
    { name: "open end starting exactly at the other's end", x: w(a, c), y: w(c, null), want: false },
    { name: "open end starting one ms before the other's end", x: w(a, c), y: w(c - 1, null), want: true },
  ];
  it.each(cases)("$name", ({ x, y, want }) => {
    expect(windowsOverlap(x, y)).toBe(want);
    // overlap is symmetric
    expect(windowsOverlap(y, x)).toBe(want);
  });
});
