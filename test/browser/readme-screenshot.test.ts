import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../e2e/harness.js";
import { chromiumReady, DESKTOP, expectText, goTo, launchBrowser, openPage, screenshot, SHOTS, signIn, type Session } from "./browser.js";

/**
 * The README's Dashboard screenshot: Identities → Directory at 1280×800 with two identities ticked and
 * the action bar open. Every run writes test-results/browser/dashboard-directory.png;
 * `npm run screenshot:dashboard` (CANOPY_WRITE_DOCS_SCREENSHOT=1) also replaces docs/dashboard-directory.png.
 */
const ready = chromiumReady();
const DOCS_PNG = join(import.meta.dirname, "../../docs/dashboard-directory.png");

const PEOPLE = [
  ["ada@example.com", "Ada Lovelace"],
  ["grace@example.com", "Grace Hopper"],
  ["alan@example.com", "Alan Turing"],
  ["katherine@example.com", "Katherine Johnson"],
  ["edsger@example.com", "Edsger Dijkstra"],
  ["barbara@example.com", "Barbara Liskov"],
] as const;

/** width and height from a PNG's IHDR chunk */
function pngSize(file: string): { width: number; height: number } {
  const b = readFileSync(file);
  expect(b.subarray(1, 4).toString("latin1")).toBe("PNG");
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

describe.skipIf(!ready)("README dashboard screenshot (Chromium)", () => {
  let browser: Browser;
  let s: TestServer;
  let ui: Session | undefined;
  beforeAll(async () => {
    browser = await launchBrowser();
    s = await startTestServer();
    const c = s.clients(s.devKey);
    const { rootNodeId } = await c.hierarchy.getHierarchySchema({});
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "invoice.read" }, { key: "invoice.approve" }] });
    await c.catalog.createRole({ name: "viewer", permissionKeys: ["invoice.read"] });
    await c.catalog.createRole({ name: "approver", permissionKeys: ["invoice.read", "invoice.approve"] });
    await c.hierarchy.createNode({ parentId: rootNodeId, type: "region", name: "EMEA" });
    for (const [email, displayName] of PEOPLE) await c.identities.createIdentity({ identity: { email, displayName } });
  });
  afterAll(async () => {
    await ui?.close();
    await s?.close();
    await browser?.close();
  });

  it("Directory with the action bar open at 1280×800", async () => {
    ui = await openPage(browser, DESKTOP);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Identities");
    await page.getByTestId("identity-row").nth(PEOPLE.length - 1).waitFor();
    await page.getByRole("checkbox", { name: "Select grace@example.com" }).check();
    await page.getByRole("checkbox", { name: "Select katherine@example.com" }).check();
    await expectText(page.getByTestId("selection-count"), "2 identities selected");
    await page.getByTestId("action-bar").getByRole("button", { name: "Assign Role" }).waitFor();
    // no focus ring or hover state on the last-clicked checkbox in the picture
    await page.mouse.move(0, DESKTOP.height - 1);
    await page.getByRole("checkbox", { name: "Select katherine@example.com" }).blur();
    const path = await screenshot(page, "dashboard-directory", process.env.CANOPY_WRITE_DOCS_SCREENSHOT === "1" ? DOCS_PNG : join(SHOTS, "dashboard-directory.png"));
    expect(pngSize(path)).toEqual(DESKTOP);
  });

  it("the README's Dashboard section shows the committed screenshot", () => {
    const readme = readFileSync(join(import.meta.dirname, "../../README.md"), "utf8");
    const section = /## Dashboard\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? "";
    expect(section).toMatch(/!\[[^\]]+\]\(docs\/dashboard-directory\.png\)/);
    expect(pngSize(DOCS_PNG)).toEqual(DESKTOP);
  });
});
