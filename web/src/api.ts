import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../src/gen/canopy/v1/admin_pb.js";
import { AssignmentService } from "../../src/gen/canopy/v1/assignment_pb.js";
import { CatalogService } from "../../src/gen/canopy/v1/catalog_pb.js";
import { CheckService } from "../../src/gen/canopy/v1/check_pb.js";
import { HierarchyService } from "../../src/gen/canopy/v1/hierarchy_pb.js";
import { IdentityService } from "../../src/gen/canopy/v1/identity_pb.js";

/** The dashboard's clients: the same Connect services every other client uses, over Connect JSON on this origin. */
export interface Api {
  admin: Client<typeof AdminService>;
  assignments: Client<typeof AssignmentService>;
  catalog: Client<typeof CatalogService>;
  check: Client<typeof CheckService>;
  hierarchy: Client<typeof HierarchyService>;
  identities: Client<typeof IdentityService>;
}

/** Clients sending `key` and, when given, the `canopy-environment` header (admin keys acting in an environment). */
export function createApi(key: string, environmentId?: string): Api {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("x-api-key", key);
    if (environmentId) req.header.set("canopy-environment", environmentId);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: window.location.origin, interceptors: [auth] });
  return {
    admin: createClient(AdminService, transport),
    assignments: createClient(AssignmentService, transport),
    catalog: createClient(CatalogService, transport),
    check: createClient(CheckService, transport),
    hierarchy: createClient(HierarchyService, transport),
    identities: createClient(IdentityService, transport),
  };
}

/** The server's own message (ConnectError.rawMessage), never a wrapped "[code] …" string. */
export function errorMessage(err: unknown): string {
  const e = ConnectError.from(err);
  if (e.code === Code.Unknown && /fetch|network/i.test(e.rawMessage)) return `The server could not be reached: ${e.rawMessage}`;
  return e.rawMessage || Code[e.code];
}

export function errorCode(err: unknown): Code {
  return ConnectError.from(err).code;
}

/** Every page of a paginated List call (page_size 1000, the server's maximum). */
export async function listAll<T>(page: (pageToken: string) => Promise<{ items: T[]; next: string }>): Promise<T[]> {
  const all: T[] = [];
  let token = "";
  do {
    const p = await page(token);
    all.push(...p.items);
    token = p.next;
  } while (token);
  return all;
}

export const tsToDate = (t: Timestamp | undefined): Date | undefined => (t ? timestampDate(t) : undefined);
export const dateToTs = (d: Date | undefined): Timestamp | undefined => (d ? timestampFromDate(d) : undefined);

/** `2026-05-01 09:30` in the browser's zone, or "—". */
export function formatTime(t: Timestamp | undefined): string {
  const d = tsToDate(t);
  if (!d) return "—";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `<input type="datetime-local">` value as a Date (local time), or undefined when empty. */
export function fromLocalInput(value: string): Date | undefined {
  return value ? new Date(value) : undefined;
}

const SESSION_KEY = "canopy.apiKey";
const ENV_KEY = "canopy.environment";

/** The pasted API key lives in sessionStorage only: it is gone when the tab closes. */
export const session = {
  key: () => sessionStorage.getItem(SESSION_KEY) ?? "",
  setKey: (k: string) => sessionStorage.setItem(SESSION_KEY, k),
  environment: () => sessionStorage.getItem(ENV_KEY) ?? "",
  setEnvironment: (id: string) => sessionStorage.setItem(ENV_KEY, id),
  clear: () => {
    sessionStorage.removeItem(SESSION_KEY);
    sessionStorage.removeItem(ENV_KEY);
  },
};
