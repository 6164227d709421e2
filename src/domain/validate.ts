import { InvalidArgumentError, LimitExceededError } from "./errors.js";
import type { JsonObject, PageRequest } from "./model.js";
import type { Limits } from "./limits.js";
import type { Keyset, Store, StoreReader } from "../store/store.js";

/**
 * Field validators. Each throws an InvalidArgumentError naming the field, so every error the API
 * returns says which part of the request is at fault. String limits are documented in README "Limits".
 */

export const MAX_ID_LENGTH = 64;
export const MAX_NAME_LENGTH = 200;
export const MAX_DESCRIPTION_LENGTH = 2000;
export const MAX_KEY_LENGTH = 128;
export const MAX_EMAIL_LENGTH = 320;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 200;

/** `resource.action`: at least two dot-separated lowercase segments of [a-z0-9_-]. */
export const PERMISSION_KEY = /^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/;
/** Node types, environment and category names: a conservative identifier. */
export const TYPE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function requireText(value: string, field: string, max = MAX_NAME_LENGTH): string {
  const v = value.trim();
  if (v.length === 0) throw new InvalidArgumentError(field, "is required");
  if (v.length > max) throw new InvalidArgumentError(field, `must be at most ${max} characters`);
  return v;
}

export function optionalText(value: string | undefined, field: string, max = MAX_NAME_LENGTH): string {
  const v = (value ?? "").trim();
  if (v.length > max) throw new InvalidArgumentError(field, `must be at most ${max} characters`);
  return v;
}

/** An id reference: required, bounded; its existence is checked by the caller. */
export function requireId(value: string, field: string): string {
  if (value.length === 0) throw new InvalidArgumentError(field, "is required");
  if (value.length > MAX_ID_LENGTH) throw new InvalidArgumentError(field, `must be at most ${MAX_ID_LENGTH} characters`);
  return value;
}

export function requirePermissionKey(value: string, field: string): string {
  if (value.length === 0) throw new InvalidArgumentError(field, "is required");
  if (value.length > MAX_KEY_LENGTH) throw new InvalidArgumentError(field, `must be at most ${MAX_KEY_LENGTH} characters`);
  if (!PERMISSION_KEY.test(value)) {
    throw new InvalidArgumentError(
      field,
      `${JSON.stringify(value)} is not a permission key: use lowercase "resource.action", two or more dot-separated segments of [a-z0-9_-]`,
      "catalog.invalid_permission_key",
    );
  }
  return value;
}

export function requireTypeName(value: string, field: string): string {
  if (value.length === 0) throw new InvalidArgumentError(field, "is required");
  if (value.length > 64) throw new InvalidArgumentError(field, "must be at most 64 characters");
  if (!TYPE_NAME.test(value)) throw new InvalidArgumentError(field, `${JSON.stringify(value)} must match ${TYPE_NAME}`);
  return value;
}

export function requireEmail(value: string, field: string): string {
  const v = value.trim().toLowerCase();
  if (v.length === 0) throw new InvalidArgumentError(field, "is required");
  if (v.length > MAX_EMAIL_LENGTH) throw new InvalidArgumentError(field, `must be at most ${MAX_EMAIL_LENGTH} characters`);
  if (!EMAIL.test(v)) throw new InvalidArgumentError(field, `${JSON.stringify(value)} is not an e-mail address`);
  return v;
}

export function checkMetadata(value: JsonObject | undefined, field: string, limits: Limits): JsonObject {
  if (value === undefined) return {};
  const size = Buffer.byteLength(JSON.stringify(value));
  if (size > limits.maxMetadataBytes) {
    throw new InvalidArgumentError(field, `is ${size} bytes serialized; at most ${limits.maxMetadataBytes} allowed`);
  }
  return value;
}

export function checkCount(count: number, max: number, field: string, what: string): void {
  if (count > max) throw new LimitExceededError(field, max, what);
}

/** Validates page_size / page_token into a keyset request. Tokens are opaque: base64url of the last id. */
export function pageRequest(pageSize: number, pageToken: string, limits: Limits): PageRequest {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw new InvalidArgumentError("page_size", "must be zero or positive");
  if (pageSize > limits.maxPageSize) {
    throw new InvalidArgumentError("page_size", `must be at most ${limits.maxPageSize}`);
  }
  let afterId = "";
  if (pageToken !== "") {
    afterId = Buffer.from(pageToken, "base64url").toString("utf8");
    if (!UUID.test(afterId)) throw new InvalidArgumentError("page_token", "is not a page token returned by this API");
  }
  return { pageSize: pageSize === 0 ? limits.defaultPageSize : pageSize, afterId };
}

/** Pages over rows fetched with limit = pageSize + 1. */
export function toPage<T extends { id: string }>(rows: T[], req: PageRequest): { items: T[]; nextPageToken: string } {
  if (rows.length <= req.pageSize) return { items: rows, nextPageToken: "" };
  const items = rows.slice(0, req.pageSize);
  return { items, nextPageToken: Buffer.from(items[items.length - 1].id, "utf8").toString("base64url") };
}

/** Offset paging for in-memory lists (subtrees): the token is base64url of the next offset. */
export function offsetPage<T>(all: T[], pageSize: number, pageToken: string, limits: Limits): { items: T[]; nextPageToken: string } {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw new InvalidArgumentError("page_size", "must be zero or positive");
  if (pageSize > limits.maxPageSize) throw new InvalidArgumentError("page_size", `must be at most ${limits.maxPageSize}`);
  const size = pageSize === 0 ? limits.defaultPageSize : pageSize;
  let offset = 0;
  if (pageToken !== "") {
    const raw = Buffer.from(pageToken, "base64url").toString("utf8");
    if (!/^o:\d{1,9}$/.test(raw)) throw new InvalidArgumentError("page_token", "is not a page token returned by this API");
    offset = Number(raw.slice(2));
  }
  const items = all.slice(offset, offset + size);
  const next = offset + size < all.length ? Buffer.from(`o:${offset + size}`, "utf8").toString("base64url") : "";
  return { items, nextPageToken: next };
}

/** A numbered page as a request carries it, raw; 0 = the default (page 1; take = limits.defaultPageSize). */
export interface NumberedPageInput {
  page: number;
  take: number;
}

/** One numbered page and the size of the whole list; `page` and `take` are the effective (defaulted) values. */
export interface NumberedPage<T> {
  items: T[];
  itemCount: number;
  page: number;
  take: number;
}

/** A validated numbered page: 1-based `page`, `take` in 1..max, and the row `offset` it starts at. */
export interface NumberedPageRequest {
  page: number;
  take: number;
  offset: number;
}

/**
 * Validates page / take (numbered pages, the REST envelope) like pageRequest validates page_size.
 * A page past the end is valid (it is empty); an offset beyond exact integers is refused.
 */
export function numberedPageRequest(input: NumberedPageInput, limits: Limits): NumberedPageRequest {
  if (!Number.isSafeInteger(input.page) || input.page < 0) throw new InvalidArgumentError("page", "must be a positive integer");
  if (!Number.isInteger(input.take) || input.take < 0) throw new InvalidArgumentError("take", "must be a positive integer");
  if (input.take > limits.maxPageSize) throw new InvalidArgumentError("take", `must be at most ${limits.maxPageSize}`);
  const page = input.page === 0 ? 1 : input.page;
  const take = input.take === 0 ? limits.defaultPageSize : input.take;
  const lastPage = Math.floor(Number.MAX_SAFE_INTEGER / take) + 1;
  if (page > lastPage) throw new InvalidArgumentError("page", `must be at most ${lastPage} with take ${take}`);
  return { page, take, offset: (page - 1) * take };
}

/**
 * Reads one numbered page from the store: the count, then (unless the page starts past the end) the
 * rows at its offset. Two queries, run in one snapshot so the total and the items agree even while
 * others write. `list` and `count` must apply the same filter (the store builds both from one query).
 */
export async function readNumberedPage<T>(
  store: Pick<Store, "snapshot">,
  req: NumberedPageRequest,
  list: (reader: StoreReader, window: Keyset) => Promise<T[]>,
  count: (reader: StoreReader) => Promise<number>,
): Promise<NumberedPage<T>> {
  return store.snapshot(async (reader) => {
    const itemCount = await count(reader);
    const items = req.offset < itemCount ? await list(reader, { limit: req.take, afterId: "", offset: req.offset }) : [];
    return { items, itemCount, page: req.page, take: req.take };
  });
}

/** A numbered page of an in-memory list (subtrees). */
export function numberedSlice<T>(all: readonly T[], req: NumberedPageRequest): NumberedPage<T> {
  return { items: all.slice(req.offset, req.offset + req.take), itemCount: all.length, page: req.page, take: req.take };
}
