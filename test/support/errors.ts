import { ConnectError } from "@connectrpc/connect";

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
