import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";

/**
 * Awaits a call (or a promise) that must fail and returns its error as a ConnectError; a success is
 * itself a test failure that shows what came back.
 */
export async function failure(call: (() => Promise<unknown>) | Promise<unknown>): Promise<ConnectError> {
  let result: unknown;
  try {
    result = await (typeof call === "function" ? call() : call);
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error(`expected the call to fail, but it succeeded with ${JSON.stringify(result, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`);
}

/** What a refused call must look like. */
export interface Expected {
  code: Code;
  /** exact value of the canopy-error-field header */
  field?: string;
  /** exact value of the canopy-error-reason header */
  reason?: string;
  /** substrings the message must contain (ids or field names); functions are read when the case runs */
  mentions?: Array<string | (() => string)>;
}

/** Asserts the code, the field and reason headers, the ids the message names, and a non-empty message. */
export function assertError(err: ConnectError, exp: Expected): void {
  const got: Record<string, unknown> = { code: Code[err.code] };
  const want: Record<string, unknown> = { code: Code[exp.code] };
  if (exp.field !== undefined) {
    got.field = err.metadata.get("canopy-error-field");
    want.field = exp.field;
  }
  if (exp.reason !== undefined) {
    got.reason = err.metadata.get("canopy-error-reason");
    want.reason = exp.reason;
  }
  expect(got, `error was: [${Code[err.code]}] ${err.rawMessage}`).toEqual(want);
  for (const m of exp.mentions ?? []) {
    const text = typeof m === "function" ? m() : m;
    expect(text.length, "a fixture id was not set").toBeGreaterThan(0);
    expect(err.rawMessage, "the message names what is at fault").toContain(text);
  }
  // every error names something: a field header or a non-empty message
  expect(err.rawMessage.length).toBeGreaterThan(0);
}
