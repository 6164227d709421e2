import { defineConfig } from "vitest/config";

/**
 * Four projects: pure/unit and store conformance (each conformance file picks its own backend), the
 * end-to-end suite twice — once over SQLite, once over PostgreSQL (CANOPY_TEST_BACKEND) — and the
 * dashboard in a real Chromium (test/browser, playwright-core) against a server on SQLite.
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    projects: [
      { extends: true, test: { name: "unit", include: ["test/unit/**/*.test.ts", "test/conformance/**/*.test.ts"] } },
      { extends: true, test: { name: "e2e-sqlite", include: ["test/e2e/**/*.test.ts"], env: { CANOPY_TEST_BACKEND: "sqlite" } } },
      { extends: true, test: { name: "e2e-postgres", include: ["test/e2e/**/*.test.ts"], env: { CANOPY_TEST_BACKEND: "postgres" } } },
      { extends: true, test: { name: "browser", include: ["test/browser/**/*.test.ts"], env: { CANOPY_TEST_BACKEND: "sqlite" } } },
    ],
  },
});
