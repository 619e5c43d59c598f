import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import { suite } from "./StoreSuite.js"

/** A fresh temp directory per build, removed (with the database and its WAL files) after. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-store-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const fresh = (options: Partial<SqliteStore.Options> = {}) =>
  Layer.unwrapScoped(Effect.map(tempDir, (dir) => SqliteStore.layer({ ...options, filename: join(dir, "outbox.db") })))

const freshOutbox = Layer.unwrapScoped(
  Effect.map(tempDir, (dir) =>
    SqliteStore.layerClient().pipe(Layer.provideMerge(SqliteClient.layer({ filename: join(dir, "app.db") }))))
)

suite("sqlite", fresh(), { outbox: freshOutbox })

const event = (id: string) => Event.make("order.placed", { id }, { id })

describe("SqliteStore", () => {
  it.effect("group commit: 200 concurrent enqueues share far fewer transactions, and all are stored", () =>
    Effect.gen(function*() {
      const store = yield* Store.DeliveryStore
      const before = yield* store.diagnostics
      const events = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => `g-${i}`), event)
      const results = yield* Effect.all(events.map((e) => store.enqueue(e, ["a", "b"])), { concurrency: "unbounded" })
      assert.isTrue(results.every((r) => r.created))
      const after = yield* store.diagnostics
      const transactions = after.writeTransactions - before.writeTransactions
      assert.strictEqual(after.writeOperations - before.writeOperations, 200)
      assert.isAtMost(transactions, 20, `200 enqueues took ${transactions} transactions`)
      assert.isAbove(after.largestBatch, 10)
      const stats = yield* store.stats
      assert.strictEqual(stats.pending, 400)
      for (const e of events) assert.isTrue(Option.isSome(yield* store.status(e.id)))
    }).pipe(Effect.provide(fresh())))

  it.effect("sequential enqueues are not held back: each is its own commit", () =>
    Effect.gen(function*() {
      const store = yield* Store.DeliveryStore
      const before = yield* store.diagnostics
      for (let i = 0; i < 5; i++) yield* store.enqueue(yield* event(`s-${i}`), ["a"])
      const after = yield* store.diagnostics
      assert.strictEqual(after.writeTransactions - before.writeTransactions, 5)
    }).pipe(Effect.provide(fresh())))

  it.effect("PRAGMA synchronous is FULL by default, NORMAL when asked; WAL and a busy timeout are set", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const pragmas = (options: SqliteStore.StoreOptions, file: string) =>
        Effect.gen(function*() {
          yield* Store.DeliveryStore
          const sql = yield* SqlClient.SqlClient
          const [sync] = yield* sql<{ synchronous: number }>`PRAGMA synchronous`
          const [mode] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
          const [busy] = yield* sql<{ timeout: number }>`PRAGMA busy_timeout`
          return { synchronous: sync!.synchronous, journal: mode!.journal_mode, busy: busy!.timeout }
        }).pipe(
          Effect.provide(SqliteStore.layerClient(options).pipe(Layer.provideMerge(SqliteClient.layer({ filename: join(dir, file) }))))
        )
      // 2 = FULL, 1 = NORMAL
      assert.deepStrictEqual(yield* pragmas({}, "a.db"), { synchronous: 2, journal: "wal", busy: 5000 })
      assert.deepStrictEqual(yield* pragmas({ synchronous: "NORMAL", busyTimeoutMs: 1234 }, "b.db"), {
        synchronous: 1,
        journal: "wal",
        busy: 1234
      })
    }).pipe(Effect.scoped))

  it.effect("the event survives closing and reopening the file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const layer = SqliteStore.layer({ filename: join(dir, "outbox.db") })
      const e = yield* event("durable")
      yield* Effect.flatMap(Store.DeliveryStore, (store) => store.enqueue(e, ["a", "b"])).pipe(Effect.provide(layer))
      const claimed = yield* Effect.flatMap(Store.DeliveryStore, (store) => store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 }))
        .pipe(Effect.provide(layer))
      assert.deepStrictEqual(claimed.map((c) => c.idempotencyKey).sort(), ["durable:a", "durable:b"])
      assert.deepStrictEqual(Event.encode(claimed[0]!.event), Event.encode(e))
    }).pipe(Effect.scoped))

  it.effect("two connections to one file (two processes): claims stay exclusive, stale finishes are fenced", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "shared.db")
      const ctxA = yield* Layer.build(SqliteStore.layer({ filename }))
      const ctxB = yield* Layer.build(SqliteStore.layer({ filename }))
      const a = yield* Effect.provide(Store.DeliveryStore, ctxA)
      const b = yield* Effect.provide(Store.DeliveryStore, ctxB)
      const ids = Array.from({ length: 60 }, (_, i) => `two-${i}`)
      yield* Effect.forEach(ids, (id, i) => Effect.flatMap(event(id), (e) => (i % 2 === 0 ? a : b).enqueue(e, ["t"])), {
        concurrency: 8,
        discard: true
      })
      // both stores see every event, whichever wrote it
      assert.strictEqual((yield* a.stats).pending, 60)
      assert.strictEqual((yield* b.stats).pending, 60)
      const claims = yield* Effect.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? a : b).claim({ workerId: `w${i}`, limit: 5, leaseMs: 60_000 })),
        { concurrency: "unbounded" }
      )
      const claimedIds = claims.flat().map((c) => c.eventId)
      assert.strictEqual(claimedIds.length, 60)
      assert.deepStrictEqual(claimedIds.slice().sort(), ids.slice().sort())
      // a claim taken through A cannot be finished through B with a wrong lease, but can with the right one
      const one = claims.flat()[0]!
      assert.isFalse(yield* b.finish({ id: one.id, lease: "forged" }, { startedAt: 0, durationMs: 1, outcome: "success" }, Store.Next.Delivered()))
      assert.isTrue(yield* b.finish(one, { startedAt: 0, durationMs: 1, outcome: "success" }, Store.Next.Delivered()))
      assert.strictEqual((yield* a.stats).delivered, 1)
    }).pipe(Effect.scoped))

  it.effect("a store on its own connection ignores a transaction of another client (it cannot join it)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const app = yield* Layer.build(SqliteClient.layer({ filename: join(dir, "app.db") }))
      const sql = yield* Effect.provide(SqlClient.SqlClient, app)
      const store = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(SqliteStore.layer({ filename: join(dir, "outbox.db") })))
      yield* sql`CREATE TABLE orders (id TEXT PRIMARY KEY)`
      const e = yield* event("foreign")
      const outcome = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO orders (id) VALUES ('o-1')`
        assert.isTrue((yield* store.enqueue(e, ["a"])).created)
        // reads go to the store's own file, not to the application's open transaction
        assert.isTrue(Option.isSome(yield* store.status("foreign")))
        assert.strictEqual((yield* store.stats).pending, 1)
        return yield* Effect.fail("rollback" as const)
      })).pipe(Effect.flip)
      assert.strictEqual(outcome, "rollback")
      assert.strictEqual((yield* sql`SELECT id FROM orders`).length, 0)
      assert.isTrue(Option.isSome(yield* store.status("foreign")), "committed on its own, not rolled back with the app")
    }).pipe(Effect.scoped))

  it.effect("a bad filename fails with a typed StoreError, not a defect", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(Store.DeliveryStore, SqliteStore.layer({ filename: "/nonexistent-dir/deeper/outbox.db" }))
      )
      assert.strictEqual(error._tag, "StoreError")
      assert.strictEqual(error.reason, "Unavailable")
    }))

  it.effect("a bad table prefix is refused", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(Store.DeliveryStore, fresh({ prefix: "Robert'); DROP TABLE x;--" })))
      assert.strictEqual(error._tag, "StoreError")
    }))

  it.effect("two prefixes in one file are two independent stores; migrations run once per prefix", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "multi.db")
      const one = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(SqliteStore.layer({ filename, prefix: "one_" })))
      const two = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(SqliteStore.layer({ filename, prefix: "two_" })))
      yield* one.enqueue(yield* event("only-in-one"), ["a"])
      assert.isTrue(Option.isSome(yield* one.status("only-in-one")))
      assert.isTrue(Option.isNone(yield* two.status("only-in-one")))
      // reopening with the same prefix does not re-run (or fail on) the migration
      const again = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(SqliteStore.layer({ filename, prefix: "one_" })))
      assert.isTrue(Option.isSome(yield* again.status("only-in-one")))
    }).pipe(Effect.scoped))
})
