import pino from "pino";
import type { Logger } from "../domain/runtime.js";

/**
 * Where a secret could sit in a logged object: request headers (alone, under `req`, or one level down)
 * and fields named after keys. Canopy's own log calls never pass headers or keys (the request lines carry
 * ids, codes and timings only); this is the net under any future call that would.
 */
export const REDACT_PATHS = [
  'headers["x-api-key"]',
  "headers.authorization",
  "headers.cookie",
  'req.headers["x-api-key"]',
  "req.headers.authorization",
  "req.headers.cookie",
  '*.headers["x-api-key"]',
  "*.headers.authorization",
  "*.headers.cookie",
  'header["x-api-key"]',
  "header.authorization",
  "apiKey",
  "api_key",
  "secret",
  "*.apiKey",
  "*.api_key",
  "*.secret",
];

const REDACT = { paths: REDACT_PATHS, censor: "[redacted]" };

/** The service's JSON logger (pino) with redaction; `destination` defaults to stdout. */
export function createLogger(level: string, destination?: pino.DestinationStream): pino.Logger {
  return destination ? pino({ level, redact: REDACT }, destination) : pino({ level, redact: REDACT });
}

/**
 * A logger handed in from outside (main.ts, tests) gets the same redaction as a child; a logger that is
 * not pino (no `child`) is used as it is.
 */
export function withRedaction(logger: Logger): Logger {
  const child = (logger as Partial<pino.Logger>).child;
  return typeof child === "function" ? (child.call(logger, {}, { redact: REDACT }) as Logger) : logger;
}

/** Whether `logger` would write an info line (pino answers; anything else is assumed to). */
export function infoEnabled(logger: Logger): boolean {
  const f = (logger as Partial<pino.Logger>).isLevelEnabled;
  return typeof f === "function" ? f.call(logger, "info") : true;
}
