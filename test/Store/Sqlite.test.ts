import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"
import init from "../../src/Store/migrations/0001_init.js"
import { tables } from "../../src/Store/migrations/index.js"
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
// The same contract on @effect/sql-sqlite-node's client (the store's own lean client is the default above).
suite("sqlite (SqliteClient)", fresh({ client: "effect" }))

const event = (id: string) => Event.make("order.placed", { id }, { id })

describe("SqliteStore", () => {
  it.effect("a file that cannot be opened is a typed Unavailable StoreError, on either client", () =>
    Effect.gen(function*() {
      for (const client of ["lean", "effect"] as const) {
        const filename = join(tmpdir(), "fanout-no-such-dir", `${client}`, "outbox.db")
        const error = yield* Effect.flip(Effect.scoped(SqliteStore.make({ filename, client })))
        assert.strictEqual(error._tag, "StoreError")
        assert.strictEqual(error.reason, "Unavailable")
        assert.match(error.message, /^open: cannot open .*outbox\.db: .+/)
      }
    }))

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

  it.effect("group commit: one operation failing in a shared commit sinks only itself; the others are stored", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "outbox.db")
      const store = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(SqliteStore.layer({ filename })))
      // A second connection (another process, say) installs a trigger that refuses one event.
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`CREATE TRIGGER poison BEFORE INSERT ON fanout_events WHEN NEW.id = 'poison'
          BEGIN SELECT RAISE(ABORT, 'poisoned'); END`)
      }).pipe(Effect.provide(SqliteClient.layer({ filename })), Effect.scoped)
      const ids = Array.from({ length: 20 }, (_, i) => (i === 7 ? "poison" : `ok-${i}`))
      const events = yield* Effect.forEach(ids, event)
      const before = yield* store.diagnostics
      const results = yield* Effect.all(events.map((e) => Effect.either(store.enqueue(e, ["a", "b"]))), {
        concurrency: "unbounded"
      })
      const after = yield* store.diagnostics
      assert.isBelow(after.writeTransactions - before.writeTransactions, 20, "they shared commits")
      for (const [i, result] of results.entries()) {
        if (ids[i] === "poison") {
          assert.strictEqual(result._tag, "Left")
          assert.isTrue(Option.isNone(yield* store.status("poison")))
        } else {
          assert.strictEqual(result._tag, "Right", `${ids[i]}: ${JSON.stringify(result)}`)
          assert.strictEqual(Option.getOrThrow(yield* store.status(ids[i]!)).deliveries.length, 2)
        }
      }
      assert.strictEqual((yield* store.stats).pending, 38)
      // Alone in its commit (the fast pass's batch of one): the statement's error, typed.
      const alone = yield* Effect.either(store.enqueue(events[7]!, ["a"]))
      assert.strictEqual(alone._tag, "Left")
      if (alone._tag === "Left") {
        assert.strictEqual(alone.left._tag, "StoreError")
        assert.match(alone.left.message, /poisoned/)
      }
      assert.strictEqual((yield* store.stats).pending, 38)
    }).pipe(Effect.scoped))

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
      assert.isFalse(yield* b.finish({ id: one.id, lease: "forged" }, { startedAt: 0, durationMs: 1, outcome: "success" }, Store.Next.Delivered({})))
      assert.isTrue(yield* b.finish(one, { startedAt: 0, durationMs: 1, outcome: "success" }, Store.Next.Delivered({})))
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

describe("SqliteStore: dependencies (migration 0002)", () => {
  const ok = { startedAt: 0, durationMs: 1, outcome: "success" }

  it.effect("a database created by migration 0001 is upgraded: its rows stay plain and claimable, pipelines work", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const filename = join(dir, "old.db")
      const old = yield* event("from-0001")
      // the schema as 0001 left it, with a pending delivery in it
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrator.make({})({
          loader: Migrator.fromRecord({ "0001_init": init(sql, tables("fanout_"), "sqlite") }),
          table: "fanout_migrations"
        })
        yield* sql`INSERT INTO fanout_events (id, type, envelope, enqueued_at)
          VALUES (${old.id}, ${old.type}, ${JSON.stringify(Event.encode(old))}, 0)`
        yield* sql`INSERT INTO fanout_targets (name) VALUES ('a')`
        yield* sql`INSERT INTO fanout_deliveries (event_id, target, status, available_at, enqueued_at, updated_at)
          VALUES (${old.id}, 'a', 'pending', 0, 0, 0)`
      }).pipe(Effect.scoped, Effect.provide(SqliteClient.layer({ filename })))

      const ctx = yield* Layer.build(SqliteStore.layerClient().pipe(Layer.provideMerge(SqliteClient.layer({ filename }))))
      const store = yield* Effect.provide(Store.DeliveryStore, ctx)
      const sql = yield* Effect.provide(SqlClient.SqlClient, ctx)
      const applied = yield* sql<{ migration_id: number }>`SELECT migration_id FROM fanout_migrations ORDER BY migration_id`
      assert.deepStrictEqual(applied.map((row) => row.migration_id), [1, 2, 3, 4, 5, 6, 7])
      const [due] = yield* sql<{ sql: string }>`SELECT sql FROM sqlite_master WHERE name = 'fanout_deliveries_due'`
      assert.include(due!.sql, "waiting = 0")
      // Migration 0004: the status indexes became partial ones over the open, dead and finished rows.
      const indexes = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'fanout_deliveries' AND name LIKE 'fanout_deliveries_%' ORDER BY name`
      assert.includeMembers(indexes.map((i) => i.name), ["fanout_deliveries_dead", "fanout_deliveries_finished", "fanout_deliveries_open"])
      assert.notInclude(indexes.map((i) => i.name), "fanout_deliveries_status")
      const [open] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM fanout_deliveries INDEXED BY fanout_deliveries_open WHERE status IN ('pending', 'in_flight')`
      assert.strictEqual(open!.n, 1)
      const status = Option.getOrThrow(yield* store.status("from-0001"))
      assert.deepStrictEqual(status.deliveries.map((d) => [d.target, d.status, d.after, d.waiting]), [["a", "pending", [], 0]])
      // Migration 0003: stored before fingerprints, the event has none; any content under its id is a duplicate.
      const legacy = yield* store.enqueue({ ...old, payload: { other: true }, type: "order.other" }, ["a", "b"])
      assert.deepStrictEqual([legacy.created, legacy.deliveries.map((d) => d.target)], [false, ["a"]])
      const fingerprints = yield* sql<{ id: string; fingerprint: string | null }>`SELECT id, fingerprint FROM fanout_events ORDER BY id`
      assert.deepStrictEqual(fingerprints.map((r) => [r.id, r.fingerprint]), [["from-0001", null]])
      const fresh = yield* event("new")
      yield* store.enqueue(fresh, ["a", "b"], { after: { b: ["a"] } })
      const [stored] = yield* sql<{ fingerprint: string }>`SELECT fingerprint FROM fanout_events WHERE id = 'new'`
      assert.strictEqual(stored!.fingerprint, Event.fingerprint(fresh))
      assert.match(stored!.fingerprint, /^[0-9a-f]{64}$/)
      const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
      assert.deepStrictEqual(claimed.map((c) => [c.idempotencyKey, c.after, c.inputs, c.dependents]), [
        ["from-0001:a", [], {}, 0],
        ["new:a", [], {}, 1]
      ])
      assert.isTrue(yield* store.finish(claimed[1]!, ok, Store.Next.Delivered({ response: "\"A\"" })))
      const [b] = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
      assert.deepStrictEqual([b?.idempotencyKey, b?.inputs], ["new:b", { a: "\"A\"" }])
    }).pipe(Effect.scoped))

  it.effect("rows: dependency columns as enqueued; the answer is kept only for deliveries with dependents", () =>
    Effect.gen(function*() {
      const store = yield* Store.DeliveryStore
      const sql = yield* SqlClient.SqlClient
      yield* store.enqueue(yield* event("cols"), ["a", "b", "c", "d"], { after: { c: ["b", "a"], d: ["c"] } })
      yield* store.enqueue(yield* event("cols-plain"), ["a"])
      const rows = () =>
        sql<{ event_id: string; target: string; after_targets: string | null; waiting: number; dependents: number; response: string | null }>`
          SELECT event_id, target, after_targets, waiting, dependents, response FROM fanout_deliveries ORDER BY id`
      assert.deepStrictEqual((yield* rows()).map((r) => [r.event_id, r.target, r.after_targets, r.waiting, r.dependents]), [
        ["cols", "a", null, 0, 1],
        ["cols", "b", null, 0, 1],
        ["cols", "c", "[\"a\",\"b\"]", 2, 1],
        ["cols", "d", "[\"c\"]", 1, 0],
        ["cols-plain", "a", null, 0, 0]
      ])
      for (let round = 0; round < 4; round++) {
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
        for (const c of claimed) {
          assert.isTrue(yield* store.finish(c, ok, Store.Next.Delivered({ response: JSON.stringify(c.idempotencyKey) })))
        }
      }
      assert.deepStrictEqual((yield* rows()).map((r) => [r.event_id, r.target, r.waiting, r.response]), [
        ["cols", "a", 0, "\"cols:a\""],
        ["cols", "b", 0, "\"cols:b\""],
        ["cols", "c", 0, "\"cols:c\""],
        ["cols", "d", 0, null],
        ["cols-plain", "a", 0, null]
      ])
      assert.strictEqual((yield* store.stats).delivered, 5)
    }).pipe(Effect.scoped, Effect.provide(freshOutbox)))

  it.effect("query plans: claims read the partial index `_due`, a release reads the event's deliveries only", () =>
    Effect.gen(function*() {
      const store = yield* Store.DeliveryStore
      const sql = yield* SqlClient.SqlClient
      yield* store.enqueue(yield* event("plan"), ["a", "b"], { after: { b: ["a"] } })
      const plan = (statement: string) =>
        Effect.map(sql.unsafe<{ detail: string }>(`EXPLAIN QUERY PLAN ${statement}`), (rows) => rows.map((r) => r.detail).join(" | "))
      const claimPlan = yield* plan(`SELECT d.id FROM fanout_deliveries d JOIN fanout_events e ON e.id = d.event_id
        WHERE d.target = 'a' AND d.status IN ('pending', 'in_flight') AND d.waiting = 0 AND d.available_at <= 5
        ORDER BY d.available_at, d.id LIMIT 10`)
      assert.include(claimPlan, "USING INDEX fanout_deliveries_due")
      const releasePlan = yield* plan(`UPDATE fanout_deliveries SET waiting = waiting - 1, available_at = 1
        WHERE event_id = 'plan' AND +status = 'pending' AND waiting > 0
          AND EXISTS (SELECT 1 FROM json_each(after_targets) WHERE json_each.value = 'a')`)
      assert.include(releasePlan, "sqlite_autoindex_fanout_deliveries_1 (event_id=?)")
    }).pipe(Effect.scoped, Effect.provide(freshOutbox)))
})
