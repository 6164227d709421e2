import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from "playwright-core";
import { expect } from "vitest";

/**
 * Real-browser support for the dashboard tests (test/browser): Debian's Chromium driven by
 * playwright-core (no downloaded browser), one browser per test file, a fresh context per test.
 *
 * Chromium must be at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Locally a
 * missing Chromium skips these tests with a message; under CI=true it fails the run.
 */
export const CHROMIUM = process.env.CANOPY_TEST_CHROMIUM || "/usr/bin/chromium";

/** Flags for a root user on a machine with no outside network: no sandbox, GPU or background traffic. */
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"];

/** Screenshots of every test land here (git-ignored). */
export const SHOTS = join(import.meta.dirname, "../../test-results/browser");

/** Generous bound for anything the UI waits on (a server round trip plus a render). */
export const UI_TIMEOUT = 15_000;

/** Whether the browser tests can run; throws under CI=true when Chromium is missing. Use in `describe.skipIf(!chromiumReady())`. */
export function chromiumReady(): boolean {
  if (existsSync(CHROMIUM)) return true;
  const reason = `${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the dashboard browser tests`;
  if (process.env.CI === "true") throw new Error(`${reason} (required under CI=true)`);
  console.warn(`skipping test/browser: ${reason}`);
  return false;
}

/** Launches Chromium; fails at once when the dashboard was never built (`npm test` builds it in pretest). */
export function launchBrowser(): Promise<Browser> {
  const index = join(import.meta.dirname, "../../dist/web/index.html");
  if (!existsSync(index)) throw new Error(`${index} is missing: run npm run build (npm test does) before the browser tests`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60_000 });
}

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export interface Session {
  context: BrowserContext;
  page: Page;
  /** uncaught exceptions in the page (asserted empty by `close`) */
  errors: string[];
  close(): Promise<void>;
}

/**
 * A fresh context (own sessionStorage) in UTC, so datetime-local fields mean the same instant as the
 * test's Date.UTC values. Every locator wait defaults to UI_TIMEOUT.
 */
export async function openPage(browser: Browser, viewport = DESKTOP): Promise<Session> {
  const context = await browser.newContext({ viewport, timezoneId: "UTC", locale: "en-GB", deviceScaleFactor: 1 });
  context.setDefaultTimeout(UI_TIMEOUT);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  return {
    context,
    page,
    errors,
    async close() {
      await context.close();
      expect(errors, "uncaught errors in the page").toEqual([]);
    },
  };
}

/** Opens the dashboard and signs in with `key`; resolves once the shell is there (on a phone the navigation is behind Menu). */
export async function signIn(page: Page, url: string, key: string): Promise<void> {
  await page.goto(url + "/");
  await page.getByTestId("signin-form").waitFor();
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main", includeHidden: true }).waitFor({ state: "attached" });
  await page.getByTestId("access-model").waitFor({ state: "attached" });
}

/** Clicks a main navigation link (on a phone, opens the menu first). */
export async function goTo(page: Page, label: "Overview" | "Identities" | "Roles & Permissions" | "Hierarchy" | "Check explorer"): Promise<void> {
  const link = page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: label, exact: true });
  if (!(await link.isVisible())) await page.getByRole("button", { name: "Menu" }).click();
  await link.click();
}

/** Polls until the locator's text (whitespace collapsed) equals / matches `want`. */
export async function expectText(locator: Locator, want: string | RegExp): Promise<void> {
  const read = async () => ((await locator.innerText({ timeout: UI_TIMEOUT })) ?? "").replace(/\s+/g, " ").trim();
  if (typeof want === "string") await expect.poll(read, { timeout: UI_TIMEOUT }).toBe(want);
  else await expect.poll(read, { timeout: UI_TIMEOUT }).toMatch(want);
}

/** Saves a full-page screenshot as test-results/browser/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string, path = join(SHOTS, `${name}.png`)): Promise<string> {
  mkdirSync(join(path, ".."), { recursive: true });
  await page.screenshot({ path, fullPage: true, animations: "disabled", caret: "hide" });
  return path;
}
