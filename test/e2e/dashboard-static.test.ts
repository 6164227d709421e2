import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createWebApp } from "../../src/server/web-app.js";
import { backendReady, startTestServer, type TestServer } from "./harness.js";

/**
 * The admin dashboard's static files at `/` (src/server/web-app.ts, built into dist/web by `npm run build`,
 * which `pretest` runs): index.html never cached and referencing the hashed bundle, assets with their
 * content types and a long cache, client routes answered with index.html, and the API, probe, metrics
 * and RPC paths untouched.
 */
const ready = await backendReady();

describe.skipIf(!ready)("dashboard static files", () => {
  let s: TestServer;
  let html: string;
  beforeAll(async () => {
    s = await startTestServer();
    html = await (await fetch(s.url + "/")).text();
  });
  afterAll(async () => {
    await s?.close();
  });

  it("serves index.html at / with no-store, referencing the built JS and CSS", async () => {
    const res = await fetch(s.url + "/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(html).toMatch(/<div id="root"><\/div>/);
    expect(html).toMatch(/<script type="module" crossorigin src="\/assets\/index-[\w-]+\.js"><\/script>/);
    expect(html).toMatch(/href="\/assets\/index-[\w-]+\.css"/);
  });

  it("serves the hashed assets with their content types and a year-long immutable cache; HEAD has no body", async () => {
    const js = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1];
    const css = /href="(\/assets\/[^"]+\.css)"/.exec(html)![1];
    const jsRes = await fetch(s.url + js);
    expect(jsRes.status).toBe(200);
    expect(jsRes.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(jsRes.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    const body = await jsRes.text();
    // the bundle talks Connect (connect-web) with the API key and environment headers; no body in failure output
    expect(["connect-protocol-version", "x-api-key", "canopy-environment"].filter((s) => !body.toLowerCase().includes(s))).toEqual([]);
    const cssRes = await fetch(s.url + css);
    expect(cssRes.headers.get("content-type")).toBe("text/css; charset=utf-8");
    const head = await fetch(s.url + js, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBe(Buffer.byteLength(body));
    expect(await head.text()).toBe("");
  });

  it("answers the client routes (deep links, reloads) with index.html, and unknown paths and missing assets not at all", async () => {
    for (const path of ["/overview", "/identities", "/identities/123", "/hierarchy", "/roles", "/check?x=1"]) {
      const res = await fetch(s.url + path);
      expect({ path, status: res.status, type: res.headers.get("content-type") }).toEqual({ path, status: 200, type: "text/html; charset=utf-8" });
      expect(await res.text()).toBe(html);
    }
    expect((await fetch(s.url + "/assets/nope-123.js")).status).toBe(404);
    expect((await fetch(s.url + "/no-such-page")).status).toBe(404);
    expect((await fetch(s.url + "/assets/..%2f..%2fpackage.json")).status).toBe(404);
    expect((await fetch(s.url + "/", { method: "POST" })).headers.get("content-type") ?? "").not.toMatch(/text\/html/);
  });

  it("does not shadow the REST API, the probes, metrics or Connect RPCs", async () => {
    expect((await fetch(s.url + "/healthz")).headers.get("content-type")).toMatch(/application\/json/);
    expect((await fetch(s.url + "/readyz")).status).toBe(200);
    expect((await fetch(s.url + "/metrics")).headers.get("content-type")).toMatch(/text\/plain/);
    const rest = await fetch(s.url + "/api/v1/roles", { headers: { "x-api-key": s.devKey } });
    expect(rest.status).toBe(200);
    expect(rest.headers.get("content-type")).toMatch(/application\/json/);
    expect(await rest.json()).toMatchObject({ items: [] });
    const rpc = await fetch(s.url + "/canopy.v1.CatalogService/ListRoles", {
      method: "POST",
      headers: { "x-api-key": s.devKey, "content-type": "application/json" },
      body: "{}",
    });
    expect(rpc.status).toBe(200);
    expect(await rpc.json()).toEqual({ roles: [], nextPageToken: "" });
    // a GET of a Connect path is Connect's answer, not the dashboard
    const get = await fetch(s.url + "/canopy.v1.CatalogService/ListRoles");
    expect(get.headers.get("content-type") ?? "").not.toMatch(/text\/html/);
    const grpcHealth = await fetch(s.url + "/grpc.health.v1.Health/Check", { method: "GET" });
    expect(grpcHealth.headers.get("content-type") ?? "").not.toMatch(/text\/html/);
  });
});

describe("dashboard without a web build", () => {
  it("answers / with a 503 saying to run npm run build, and never throws", async () => {
    const handler = createWebApp({ root: mkdtempSync(join(tmpdir(), "canopy-noweb-")) });
    const answer = await new Promise<{ status: number; headers: Record<string, string>; body: string }>((resolve) => {
      const res = {
        writeHead(status: number, headers: Record<string, string>) {
          this.status = status;
          this.headers = headers;
        },
        end(body?: string) {
          resolve({ status: this.status, headers: this.headers, body: String(body ?? "") });
        },
        status: 0,
        headers: {} as Record<string, string>,
      };
      expect(handler({ method: "GET", url: "/" } as http.IncomingMessage, res as unknown as http.ServerResponse)).toBe(true);
    });
    expect(answer.status).toBe(503);
    expect(answer.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(answer.body).toMatch(/npm run build/);
    expect(handler({ method: "GET", url: "/api/v1/roles" } as http.IncomingMessage, {} as http.ServerResponse)).toBe(false);
    expect(handler({ method: "GET", url: "/assets/x.js" } as http.IncomingMessage, {} as http.ServerResponse)).toBe(false);
  });
});
