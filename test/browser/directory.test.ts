import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AssignmentState } from "../../src/gen/canopy/v1/common_pb.js";
import { startTestServer, T0, type Clients, type TestServer } from "../e2e/harness.js";
import { chromiumReady, expectText, goTo, launchBrowser, openPage, PHONE, screenshot, signIn, type Session } from "./browser.js";

/**
 * Identities → Directory in a real Chromium against a real server (SQLite, manual clock at T0):
 * tick → action bar → Assign Role → toast → the identity's Assignments panel, singly and in bulk,
 * a scheduled assignment, and the same flow at phone width. Data is set up through the Connect
 * clients; every write the UI makes is read back through the API too.
 */
const ready = chromiumReady();

interface Seed {
  c: Clients;
  rootId: string;
  rootName: string;
  salesId: string;
  roleId: string;
  ids: Record<"alice" | "bob" | "carol", string>;
}

/** invoice.read, role viewer, node Sales (team) under the root, identities alice/bob/carol. */
async function seed(s: TestServer): Promise<Seed> {
  const c = s.clients(s.devKey);
  const schema = await c.hierarchy.getHierarchySchema({});
  const root = await c.hierarchy.getNode({ id: schema.rootNodeId });
  await c.catalog.batchCreatePermissions({ permissions: [{ key: "invoice.read" }] });
  const role = await c.catalog.createRole({ name: "viewer", permissionKeys: ["invoice.read"] });
  const sales = await c.hierarchy.createNode({ parentId: schema.rootNodeId, type: "team", name: "Sales" });
  const ids = {} as Seed["ids"];
  for (const who of ["alice", "bob", "carol"] as const) {
    const r = await c.identities.createIdentity({ identity: { email: `${who}@example.com`, displayName: who[0].toUpperCase() + who.slice(1) } });
    ids[who] = r.identity!.id;
  }
  const rootNode = root.node!;
  return { c, rootId: schema.rootNodeId, rootName: rootNode.name || rootNode.type, salesId: sales.node!.id, roleId: role.role!.id, ids };
}

describe.skipIf(!ready)("dashboard directory (Chromium)", () => {
  let browser: Browser;
  let s: TestServer;
  let d: Seed;
  let ui: Session;
  beforeAll(async () => {
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });
  beforeEach(async () => {
    s = await startTestServer();
    d = await seed(s);
  });
  afterEach(async () => {
    await ui?.close();
    await s?.close();
  });

  it("assigns a role to one ticked identity at a chosen node; the Assignments panel and the API show exactly that assignment", async () => {
    ui = await openPage(browser);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Identities");
    await page.getByTestId("identity-row").nth(2).waitFor();

    await page.getByRole("checkbox", { name: "Select alice@example.com" }).check();
    const bar = page.getByTestId("action-bar");
    await expectText(bar.getByTestId("selection-count"), "1 identity selected");
    await bar.getByRole("button", { name: "Assign Role" }).click();

    const dialog = page.getByRole("dialog", { name: "Assign role to alice@example.com" });
    await dialog.waitFor();
    expect(await dialog.getAttribute("data-testid")).toBe("assign-dialog");
    await dialog.getByTestId("assign-role").selectOption({ label: "viewer" });
    await dialog.getByTestId("assign-node").selectOption({ label: `${d.rootName} / Sales` });
    await screenshot(page, "single-assign-dialog");
    await dialog.getByTestId("assign-submit").click();

    await expectText(page.getByTestId("toast-text"), "Assigned the role to alice@example.com");
    await dialog.waitFor({ state: "detached" });
    // the selection is cleared after the assignment, and the action bar hides
    await expect.poll(() => bar.getAttribute("aria-hidden")).toBe("true");

    await page.getByRole("button", { name: "Assignments of alice@example.com" }).click();
    const panel = page.getByTestId("assignments-panel");
    await panel.getByTestId("assignment-row").first().waitFor();
    expect(await panel.getByTestId("assignment-row").count()).toBe(1);
    await expectText(panel.getByTestId("assignment-role"), "viewer");
    await expectText(panel.getByTestId("assignment-state"), "active");
    await expectText(panel.getByTestId("assignment-node"), `at ${d.rootName} / Sales`);
    await expectText(panel.getByTestId("assignment-window"), "2026-01-01 00:00 → no end");
    await screenshot(page, "single-assign-panel");

    const { assignments } = await d.c.assignments.listAssignments({ pageSize: 100 });
    expect(assignments.map((a) => ({ identityId: a.identityId, roleId: a.roleId, nodeId: a.nodeId, state: a.state, to: a.effectiveTo }))).toEqual([
      { identityId: d.ids.alice, roleId: d.roleId, nodeId: d.salesId, state: AssignmentState.ACTIVE, to: undefined },
    ]);
    expect(await panel.getByTestId("assignment-row").getAttribute("data-assignment-id")).toBe(assignments[0].id);
  });

  it("assigns in bulk to three identities, one of which already holds the role: Assigned 2, skipped 1, no duplicate", async () => {
    await d.c.assignments.createAssignment({ assignment: { identityId: d.ids.alice, roleId: d.roleId, nodeId: d.rootId } });
    ui = await openPage(browser);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Identities");
    await page.getByTestId("identity-row").nth(2).waitFor();

    for (const who of ["alice", "bob", "carol"]) await page.getByRole("checkbox", { name: `Select ${who}@example.com` }).check();
    await expectText(page.getByTestId("selection-count"), "3 identities selected");
    expect(await page.getByTestId("select-all").isChecked()).toBe(true);
    await page.getByTestId("action-bar").getByRole("button", { name: "Assign Role" }).click();

    const dialog = page.getByRole("dialog", { name: "Assign role to 3 identities" });
    await dialog.waitFor();
    await dialog.getByTestId("assign-role").selectOption({ label: "viewer" });
    // the node defaults to the root
    expect(await dialog.getByTestId("assign-node").inputValue()).toBe(d.rootId);
    await dialog.getByTestId("assign-submit").click();

    await expectText(page.getByTestId("toast-text"), "Assigned 2, skipped 1 (already had the role)");
    const details = page.getByTestId("toast-details");
    await details.getByText("Show reasons (1)").click();
    await expectText(details.getByRole("listitem"), /^alice@example\.com: skipped, already had the role/);
    await screenshot(page, "bulk-assign-toast");

    const { assignments } = await d.c.assignments.listAssignments({ roleId: d.roleId, pageSize: 100 });
    expect(assignments).toHaveLength(3);
    expect(assignments.map((a) => a.identityId).sort()).toEqual([d.ids.alice, d.ids.bob, d.ids.carol].sort());
    expect(new Set(assignments.map((a) => a.nodeId))).toEqual(new Set([d.rootId]));
  });

  it("shows an assignment made with a future Effective from as scheduled (server clock at T0)", async () => {
    ui = await openPage(browser);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Identities");
    await page.getByRole("button", { name: "Assignments of bob@example.com" }).click();
    const panel = page.getByTestId("assignments-panel");
    await panel.getByTestId("assignments-empty").waitFor();
    // the panel's own Assign Role opens the dialog for this identity
    await panel.getByRole("button", { name: "Assign Role" }).click();
    const dialog = page.getByRole("dialog", { name: "Assign role to bob@example.com" });
    await dialog.getByTestId("assign-role").selectOption({ label: "viewer" });
    // the browser runs in UTC: 2026-03-01 09:00 local is that instant in UTC, two months after T0
    await dialog.getByTestId("assign-effective-from").fill("2026-03-01T09:00");
    await dialog.getByTestId("assign-effective-to").fill("2026-06-30T18:00");
    await dialog.getByTestId("assign-submit").click();
    await expectText(page.getByTestId("toast-text"), "Assigned the role to bob@example.com");
    await dialog.waitFor({ state: "detached" });

    // the panel re-reads after the write
    const row = panel.getByTestId("assignment-row");
    await row.waitFor();
    await expectText(row.getByTestId("assignment-state"), "scheduled");
    await expectText(row.getByTestId("assignment-role"), "viewer");
    await expectText(row.getByTestId("assignment-node"), `at ${d.rootName}`);
    await expectText(row.getByTestId("assignment-window"), "2026-03-01 09:00 → 2026-06-30 18:00");
    await screenshot(page, "scheduled-assignment");

    const { assignments } = await d.c.assignments.listAssignments({ identityId: d.ids.bob, pageSize: 100 });
    expect(assignments).toHaveLength(1);
    expect(assignments[0].state).toBe(AssignmentState.SCHEDULED);
    expect(timestampDate(assignments[0].effectiveFrom!).toISOString()).toBe("2026-03-01T09:00:00.000Z");
    expect(timestampDate(assignments[0].effectiveTo!).toISOString()).toBe("2026-06-30T18:00:00.000Z");
    expect(Date.parse("2026-03-01T09:00:00Z")).toBeGreaterThan(T0);
  });

  it("works at phone width (390×844): menu, directory, action bar and the assign dialog fit the screen", async () => {
    ui = await openPage(browser, PHONE);
    const { page } = ui;
    await signIn(page, s.url, s.devKey);
    await goTo(page, "Identities");
    await page.getByTestId("identity-row").nth(2).waitFor();
    await page.getByRole("checkbox", { name: "Select carol@example.com" }).check();
    const bar = page.getByTestId("action-bar");
    await expectText(bar.getByTestId("selection-count"), "1 identity selected");
    await screenshot(page, "phone-directory");
    await bar.getByRole("button", { name: "Assign Role" }).click();
    const dialog = page.getByRole("dialog", { name: "Assign role to carol@example.com" });
    await dialog.getByTestId("assign-submit").waitFor();
    await screenshot(page, "phone-assign-dialog");

    const box = await dialog.boundingBox();
    expect(box).not.toBeNull();
    expect(box!.x).toBeGreaterThanOrEqual(0);
    expect(box!.x + box!.width).toBeLessThanOrEqual(PHONE.width);
    for (const field of ["assign-role", "assign-node", "assign-effective-from", "assign-effective-to", "assign-submit"]) {
      const b = await dialog.getByTestId(field).boundingBox();
      expect({ field, fits: b !== null && b.x >= 0 && b.x + b.width <= PHONE.width }).toEqual({ field, fits: true });
    }
    // nothing wider than the screen (a string expression: the test code is type-checked without DOM types)
    expect(await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth")).toBeLessThanOrEqual(0);

    await dialog.getByTestId("assign-submit").click();
    await expectText(page.getByTestId("toast-text"), "Assigned the role to carol@example.com");
    const { assignments } = await d.c.assignments.listAssignments({ identityId: d.ids.carol, pageSize: 100 });
    expect(assignments.map((a) => [a.roleId, a.nodeId])).toEqual([[d.roleId, d.rootId]]);
  });
});
