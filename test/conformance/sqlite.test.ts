import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { newId } from "../../src/domain/ids.js";
import { createStore, isPostgresUrl, sqliteFilename } from "../../src/store/index.js";
import { createSqliteStore, openSqliteDatabase } from "../../src/store/sqlite.js";
import { StoreConflictError } from "../../src/store/store.js";
import { describeStoreConformance } from "./store.conformance.js";

const dir = mkdtempSync(join(tmpdir(), "canopy-sqlite-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A fresh database file per store, all inside this test file's temp dir. */
const freshFile = () => join(dir, `store-${++n}.db`);

describeStoreConformance("sqlite (file)", () => createSqliteStore({ filename: freshFile() }));

describe("sqlite store", () => {
  it("keeps committed data across close and reopen", async () => {
    const filename = freshFile();
    const account = { id: newId(), name: "Durable", createdAt: Date.UTC(2026, 0, 1) };
    const first = await createSqliteStore({ filename });
    await first.transaction((tx) => tx.insertAccount(account));
    await first.close();

    const second = await createSqliteStore({ filename });
    try {
      expect(await second.reader.listAllAccounts()).toEqual([account]);
      expect(await second.reader.getDefaultAccount()).toEqual(account);
    } finally {
      await second.close();
    }
  });

  it("opens with WAL, synchronous FULL, foreign keys on and a busy timeout", () => {
    const db = openSqliteDatabase(freshFile());
    try {
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(db.pragma("synchronous", { simple: true })).toBe(2); // FULL
      expect(db.pragma("foreign_keys", { simple: true })).toBe(1);
      expect(db.pragma("busy_timeout", { simple: true })).toBe(5000);
    } finally {
      db.close();
    }
  });

  it("enforces foreign keys through the store (not SQLite's default of off)", async () => {
    const store = await createSqliteStore({ filename: freshFile() });
    try {
      const app = { id: newId(), accountId: newId(), name: "orphan", createdAt: 0 };
      const err = await store.transaction((tx) => tx.insertApplication(app)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreConflictError);
      expect((err as StoreConflictError).constraint).toBe("foreign_key");
    } finally {
      await store.close();
    }
  });

  it("creates missing parent directories for the database file", async () => {
    const filename = join(dir, "nested", "deeper", "canopy.db");
    const store = await createSqliteStore({ filename });
    try {
      expect(store.dialect).toBe("sqlite");
      expect(await store.reader.listAllAccounts()).toEqual([]);
    } finally {
      await store.close();
    }
    const db = openSqliteDatabase(filename);
    try {
      const tables = db.prepare("select name from sqlite_master where type = 'table' order by name").pluck().all();
      expect(tables).toEqual(expect.arrayContaining(["accounts", "assignments", "environments", "idempotency_keys", "kysely_migration"]));
    } finally {
      db.close();
    }
  });

  it("works in memory", async () => {
    const store = await createSqliteStore({ filename: ":memory:" });
    try {
      const account = { id: newId(), name: "Ephemeral", createdAt: 1 };
      await store.transaction((tx) => tx.insertAccount(account));
      expect(await store.reader.listAllAccounts()).toEqual([account]);
    } finally {
      await store.close();
    }
  });
});

describe("createStore", () => {
  it("maps database URLs to SQLite files", () => {
    expect(sqliteFilename("sqlite:./data/canopy.db")).toBe("./data/canopy.db");
    expect(sqliteFilename("sqlite://./data/canopy.db")).toBe("./data/canopy.db");
    expect(sqliteFilename("sqlite:///var/lib/canopy.db")).toBe("/var/lib/canopy.db");
    expect(sqliteFilename("sqlite::memory:")).toBe(":memory:");
    expect(sqliteFilename("file:data/canopy.sqlite")).toBe("data/canopy.sqlite");
    expect(sqliteFilename("file:///tmp/canopy.db")).toBe("/tmp/canopy.db");
    expect(sqliteFilename("./data/canopy.db")).toBe("./data/canopy.db");
    expect(sqliteFilename("/srv/canopy.sqlite3")).toBe("/srv/canopy.sqlite3");
  });

  it("routes PostgreSQL URLs away from SQLite and refuses unknown schemes without echoing credentials", async () => {
    expect(isPostgresUrl("postgres://u:secret@db/canopy")).toBe(true);
    expect(isPostgresUrl("postgresql://db/canopy")).toBe(true);
    expect(isPostgresUrl("sqlite:./data/canopy.db")).toBe(false);
    expect(() => sqliteFilename("postgres://u:secret@db/canopy")).toThrow("names no SQLite file");
    const err = (await createStore("mysql://root:hunter2@db/canopy").catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain('"mysql:"');
    expect(err.message).not.toContain("hunter2");
    await expect(createStore("canopy.txt")).rejects.toThrow("unsupported database URL");
  });

  it("opens a migrated SQLite store from a sqlite: URL", async () => {
    const filename = freshFile();
    const store = await createStore(`sqlite:${filename}`);
    try {
      const account = { id: newId(), name: "Url", createdAt: 5 };
      await store.transaction((tx) => tx.insertAccount(account));
      expect(await store.reader.getAccount(account.id)).toEqual(account);
    } finally {
      await store.close();
    }
  });
});
