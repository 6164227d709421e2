import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DenialReason } from "../../src/gen/canopy/v1/check_pb.js";
import { startTestServer, type TestServer } from "../e2e/harness.js";
import { chromiumReady, expectText, goTo, launchBrowser, openPage, screenshot, signIn, type Session } from "./browser.js";

/**
 * The rest of the dashboard in a real Chromium against a real server (SQLite, manual clock at T0):
 * the Overview banner and Setup Guide on a fresh environment, moving a node in the Hierarchy, and a
 * denied check explained by the Check explorer — each confirmed through the Connect API.
 */
const ready = chromiumReady();

describe.skipIf(!ready)("dashboard workspace pages (Chromium)", () => {
  let browser: Browser;
  let s: TestServer;
  let ui: Session;
  beforeAll(async () => {
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });
  beforeEach(async () => {
    s = await startTestServer();
  });
  afterEach(async () => {
    await ui?.close();
    await s?.close();
  });

  it("shows the getting-started banner on a fresh environment, and its button opens the Setup Guide on Invite & Assign Users", async () => {
    ui = await openPage(browser);
    const { page } = ui;
    // the admin key: the environment switcher lists every environment and starts on development
    await signIn(page, s.url, s.adminKey);
    const env = page.getByTestId("env-switcher");
    await expect.poll(() => env.locator("option:checked").innerText()).toMatch(/\/ development$/);
    await expectText(page.getByTestId("access-model"), "Hierarchy RBAC");

    const banner = page.getByTestId("overview-banner");
    await expectText(banner.getByRole("paragraph"), "You haven't invited any users or assigned them roles yet.");
    expect(await page.getByTestId("overview-ready").count()).toBe(0);
    await screenshot(page, "overview-banner");

    await banner.getByRole("button", { name: "Complete Invite & Assign Users Setup" }).click();
    const guide = page.getByRole("dialog", { name: "Setup Guide" });
    await guide.waitFor();
    expect(await guide.getAttribute("data-testid")).toBe("setup-guide");
    const tab = guide.getByRole("tab", { name: "Invite & Assign Users" });
    await expect.poll(() => tab.getAttribute("aria-selected")).toBe("true");
    expect(await guide.getByRole("tab", { name: "How access works" }).getAttribute("aria-selected")).toBe("false");
    await guide.getByRole("tabpanel").getByRole("link", { name: "Invite identities" }).waitFor();
    await expect.poll(() => guide.getByTestId("setup-step-invite").getAttribute("data-completed")).toBe("false");
    expect(await guide.getByTestId("setup-step-assign").getAttribute("data-completed")).toBe("false");
    await screenshot(page, "setup-guide");

    // Esc closes the guide and the banner stays while nothing is set up
    await page.keyboard.press("Escape");
    await guide.waitFor({ state: "detached" });
    await banner.waitFor();
  });

  it("moves a node under another through the Move dialog; GetAncestors confirms the new path", async () => {
    const c = s.clients(s.devKey);
    const { rootNodeId } = await c.hierarchy.getHierarchySchema({});
    const emea = (await c.hierarchy.createNode({ parentId: rootNodeId, type: "region", name: "EMEA" })).node!;
    const berlin = (await c.hierarchy.createNode({ parentId: emea.id, type: "office", name: "Berlin" })).node!;
    const sales = (await c.hierarchy.createNode({ parentId: rootNodeId, type: "team", name: "Sales" })).node!;

    ui = await openPage(browser);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Hierarchy");
    const tree = page.getByTestId("hierarchy-tree");
    const node = (id: string) => tree.locator(`[data-testid="tree-node"][data-node-id="${id}"]`);
    await node(sales.id).waitFor();
    await screenshot(page, "hierarchy-before-move");

    await page.getByRole("button", { name: "Move Sales", exact: true }).click();
    const dialog = page.getByRole("dialog", { name: "Move Sales" });
    await dialog.waitFor();
    // Sales itself is not offered as its own parent
    const offered = await dialog.getByTestId("node-parent").locator("option").evaluateAll((os) => os.map((o) => o.getAttribute("value") ?? ""));
    expect(offered.sort()).toEqual([rootNodeId, emea.id, berlin.id].sort());
    await dialog.getByTestId("node-parent").selectOption(berlin.id);
    await dialog.getByTestId("node-submit").click();
    await dialog.waitFor({ state: "detached" });
    await expectText(page.getByTestId("toast-text"), "Moved Sales");

    // the tree re-reads: Sales now sits inside Berlin, inside EMEA
    await node(emea.id).locator(`[data-node-id="${berlin.id}"] [data-node-id="${sales.id}"]`).waitFor();
    expect(await tree.locator(`[data-node-id="${rootNodeId}"] > ul > [data-node-id="${sales.id}"]`).count()).toBe(0);
    await screenshot(page, "hierarchy-after-move");

    const { ancestors } = await c.hierarchy.getAncestors({ id: sales.id });
    expect(ancestors.map((a) => a.id)).toEqual([rootNodeId, emea.id, berlin.id]);
    expect((await c.hierarchy.getNode({ id: sales.id })).node!.parentId).toBe(berlin.id);
  });

  it("explains a denied check (PERMISSION_NOT_GRANTED, then NO_ASSIGNMENT) exactly as the API's Check answers", async () => {
    const c = s.clients(s.devKey);
    const { rootNodeId } = await c.hierarchy.getHierarchySchema({});
    await c.catalog.batchCreatePermissions({ permissions: [{ key: "invoice.read" }, { key: "invoice.write" }] });
    const viewer = (await c.catalog.createRole({ name: "viewer", permissionKeys: ["invoice.read"] })).role!;
    const bob = (await c.identities.createIdentity({ identity: { email: "bob@example.com" } })).identity!;
    const carol = (await c.identities.createIdentity({ identity: { email: "carol@example.com" } })).identity!;
    await c.assignments.createAssignment({ assignment: { identityId: bob.id, roleId: viewer.id, nodeId: rootNodeId } });

    ui = await openPage(browser);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Check explorer");
    const form = page.getByTestId("check-form");
    const result = page.getByTestId("check-result");

    const ask = async (identity: string, permission: string) => {
      await form.getByTestId("check-identity").selectOption({ label: identity });
      await form.getByTestId("check-permission").selectOption(permission);
      await form.getByRole("button", { name: "Check", exact: true }).click();
    };

    // bob holds viewer at the root, which does not grant invoice.write
    await ask("bob@example.com", "invoice.write");
    await result.waitFor();
    await expect.poll(() => result.getAttribute("data-allowed")).toBe("false");
    await expectText(result.getByTestId("check-decision"), "Denied");
    await expectText(result.getByTestId("check-denial-reason"), "Reason: Assignments exist, but none of their roles grants this permission PERMISSION_NOT_GRANTED");
    expect(await result.getByTestId("check-path").count()).toBe(0);
    await screenshot(page, "check-denied");
    const api1 = await c.check.check({ identityId: bob.id, permission: "invoice.write", nodeId: rootNodeId });
    expect({ allowed: api1.allowed, reason: DenialReason[api1.denialReason] }).toEqual({ allowed: false, reason: "PERMISSION_NOT_GRANTED" });

    // carol holds nothing
    await ask("carol@example.com", "invoice.read");
    await expectText(result.getByTestId("check-denial-reason"), /NO_ASSIGNMENT$/);
    await expectText(result.getByTestId("check-decision"), "Denied");
    const api2 = await c.check.check({ identityId: carol.id, permission: "invoice.read", nodeId: rootNodeId });
    expect({ allowed: api2.allowed, reason: DenialReason[api2.denialReason] }).toEqual({ allowed: false, reason: "NO_ASSIGNMENT" });

    // and the allowed case shows the granting path the API explains
    await ask("bob@example.com", "invoice.read");
    await expect.poll(() => result.getAttribute("data-allowed")).toBe("true");
    await expectText(result.getByTestId("check-decision"), "Allowed");
    const api3 = await c.check.check({ identityId: bob.id, permission: "invoice.read", nodeId: rootNodeId, explain: true });
    expect(api3.allowed).toBe(true);
    expect(await result.getByTestId("check-path-item").count()).toBe(api3.explanation.length);
    await expectText(result.getByTestId("check-path-item").first(), /^Role viewer assigned at \S+ at this node/);
  });
});
