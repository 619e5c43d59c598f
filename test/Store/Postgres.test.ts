/**
 * The conformance suite against a real PostgreSQL (127.0.0.1:5432, database `test`, trust auth).
 * Every store built here gets its own table prefix, dropped afterwards, so runs never collide.
 *
 * Unreachable database: the tests are skipped with a warning, unless FANOUT_REQUIRE_POSTGRES=1,
 * in which case they fail.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Migrator from "@effect/sql/Migrator"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Metric, Option, Queue, Redacted, Ref, Stream } from "effect"
import * as Metrics from "../../src/Metrics.js"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"
import init from "../../src/Store/migrations/0001_init.js"
import { tables } from "../../src/Store/migrations/index.js"
import * as PostgresStore from "../../src/Store/Postgres.js"
import { suite } from "./StoreSuite.js"
import { skipReason, url } from "./pgAvailable.js"

const skip = skipReason("Store/Postgres.test", "PostgresStore")

const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`
let counter = 0
const newPrefix = () => `fanout_t${runId}_${(counter++).toString(36)}_`

/** Drops every table with this prefix when the scope closes (after the store using it has closed). */
const dropAfter = (prefix: string) =>
  Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const sql = yield* PgClient.make({ url: Redacted.make(url) })
      for (const table of ["attempts", "deliveries", "targets", "events", "migrations"]) {
        yield* sql.unsafe(`DROP TABLE IF EXISTS ${prefix}${table} CASCADE`)
      }
    }).pipe(Effect.scoped, Effect.provide(Reactivity.layer), Effect.orDie)
  )

/** A store (its own pool) on `prefix`'s tables. */
const storeOn = (prefix: string) =>
  Effect.flatMap(
    Layer.build(PostgresStore.layer({ url, prefix })),
    (context) => Effect.provide(Store.DeliveryStore, context)
  )

/** Two stores (two pools, as two processes would have) on a fresh prefix, dropped when the scope closes. */
const twoPools = Effect.gen(function*() {
  const prefix = newPrefix()
  yield* dropAfter(prefix)
  return [yield* storeOn(prefix), yield* storeOn(prefix), prefix] as const
})

/** Until the store on `prefix` that subscribed to its wake-ups is listening (`fanout_store_listening` is 1). */
const listeningOn = (prefix: string) =>
  Effect.gen(function*() {
    const gauge = Metrics.storeListening.pipe(Metric.tagged("channel", `${prefix}work`))
    for (let i = 0; i < 200 && (yield* Metric.value(gauge)).value !== 1; i++) yield* Effect.sleep("25 millis")
    assert.strictEqual((yield* Metric.value(gauge)).value, 1, "LISTEN is up")
  })

/** Until `woken` has counted `n` wake-ups (at most 10 s). */
const untilWoken = (woken: Ref.Ref<number>, n: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 400 && (yield* Ref.get(woken)) < n; i++) yield* Effect.sleep("25 millis")
    assert.strictEqual(yield* Ref.get(woken), n)
  })

/** Counts the wake-ups `store` sees, until `fiber` is interrupted. */
const countWakeups = (store: Store.DeliveryStore) =>
  Effect.gen(function*() {
    const woken = yield* Ref.make(0)
    const fiber = yield* Effect.fork(Stream.runForEach(store.wakeups, () => Ref.update(woken, (n) => n + 1)))
    return { woken, fiber }
  })

const fresh = (prefix: string = newPrefix()) =>
  Layer.unwrapScoped(Effect.as(dropAfter(prefix), PostgresStore.layer({ url, prefix, maxConnections: 8 })))

const freshOutbox = Layer.unwrapScoped(
  Effect.suspend(() => {
    const prefix = newPrefix()
    return Effect.as(
      dropAfter(prefix),
      PostgresStore.layerClient({ prefix }).pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) })))
    )
  })
)

const freshLayer = Layer.unwrapScoped(Effect.suspend(() => Effect.succeed(fresh())))

suite("postgres", freshLayer, { outbox: freshOutbox, ...(skip !== undefined ? { skip } : {}) })

const event = (id: string) => Effect.orDie(Event.make("order.placed", { id }, { id }))

const d = skip !== undefined ? describe.skip : describe
d(`PostgresStore${skip !== undefined ? ` (skipped: ${skip})` : ""}`, () => {
  it.live(
    "NOTIFY wakes an idle store in another process (another pool) on enqueue and replay",
    () =>
      Effect.gen(function*() {
        const [producer, worker] = yield* twoPools
        const { woken, fiber } = yield* countWakeups(worker)
        // LISTEN is set up asynchronously: keep producing until the worker hears one (at most ~10 s)
        const waitWoken = (
          label: string,
          act: (i: number) => Effect.Effect<unknown, Store.StoreError | Store.ConflictError>
        ) =>
          Effect.gen(function*() {
            const before = yield* Ref.get(woken)
            for (let i = 0; i < 100 && (yield* Ref.get(woken)) === before; i++) {
              yield* act(i)
              yield* Effect.sleep("100 millis")
            }
            assert.isAbove(yield* Ref.get(woken), before, `woken by ${label} through NOTIFY`)
          })
        yield* waitWoken("enqueue", (i) => Effect.flatMap(event(`n-${i}`), (e) => producer.enqueue(e, ["a"])))
        const claimed = yield* worker.claim({ workerId: "w", limit: 1, leaseMs: 60_000 })
        yield* worker.finish(
          claimed[0]!,
          { startedAt: 0, durationMs: 1, outcome: "http_400" },
          Store.Next.Dead({ reason: "x" })
        )
        yield* waitWoken("replay", () => producer.replay(claimed[0]!.id))
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.scoped),
    { timeout: 30_000 }
  )

  it.live(
    "an enqueue inside the application's transaction NOTIFYs when that transaction commits",
    () =>
      Effect.gen(function*() {
        const prefix = newPrefix()
        yield* dropAfter(prefix)
        const app = yield* Layer.build(
          PostgresStore.layerClient({ prefix }).pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) })))
        )
        const producer = yield* Effect.provide(Store.DeliveryStore, app)
        const sql = yield* Effect.provide(PgClient.PgClient, app)
        const worker = yield* storeOn(prefix)
        const { woken, fiber } = yield* countWakeups(worker)
        for (let i = 0; i < 100 && (yield* Ref.get(woken)) === 0; i++) {
          yield* sql.withTransaction(Effect.flatMap(event(`tx-n-${i}`), (e) => producer.enqueue(e, ["a"])))
          yield* Effect.sleep("100 millis")
        }
        assert.isAbove(yield* Ref.get(woken), 0, "woken through NOTIFY on the application's commit")
        // A rolled-back transaction's NOTIFY is never delivered. A listener gets notifications in commit
        // order: between a fence notified before the rollback and one after it, nothing else arrives.
        const channel = `${prefix}work`
        const heard = yield* Queue.unbounded<string>()
        yield* Effect.forkScoped(Stream.runForEach(sql.listen(channel), (payload) => Queue.offer(heard, payload)))
        for (let i = 0; i < 100 && (yield* Queue.size(heard)) === 0; i++) {
          yield* sql`SELECT pg_notify(${channel}, 'ready')`
          yield* Effect.sleep("50 millis")
        }
        const upTo = (fence: string) =>
          Effect.gen(function*() {
            const seen: Array<string> = []
            yield* sql`SELECT pg_notify(${channel}, ${fence})`
            for (;;) {
              const payload = yield* Queue.take(heard)
              if (payload === fence) return seen
              seen.push(payload)
            }
          }).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => `fence ${fence} not heard` }))
        yield* upTo("before")
        yield* sql.withTransaction(
          Effect.flatMap(event("tx-n-rollback"), (e) => producer.enqueue(e, ["a"])).pipe(
            Effect.zipRight(Effect.fail("abort"))
          )
        ).pipe(Effect.ignore)
        assert.deepStrictEqual(yield* upTo("after"), [], "no NOTIFY from the rolled-back transaction")
        assert.isTrue(Option.isNone(yield* worker.status("tx-n-rollback")))
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.scoped),
    { timeout: 30_000 }
  )

  it.effect("two pools on one database: concurrent claims never hand out a row twice (SKIP LOCKED)", () =>
    Effect.gen(function*() {
      const [a, b] = yield* twoPools
      const ids = Array.from({ length: 100 }, (_, i) => `pool-${i}`)
      yield* Effect.forEach(ids, (id, i) => Effect.flatMap(event(id), (e) => (i % 2 ? a : b).enqueue(e, ["x", "y"])), {
        concurrency: 10,
        discard: true
      })
      // SKIP LOCKED may hand a claimer fewer rows than are due (others hold locks for a moment): go round
      // until everything is claimed, then check nothing was handed out twice
      const keys: Array<string> = []
      for (let round = 0; round < 50 && keys.length < 200; round++) {
        const claims = yield* Effect.all(
          Array.from(
            { length: 20 },
            (_, i) => (i % 2 ? a : b).claim({ workerId: `w${i}`, limit: 10, leaseMs: 60_000 })
          ),
          { concurrency: "unbounded" }
        )
        keys.push(...claims.flat().map((c) => c.idempotencyKey))
      }
      assert.strictEqual(keys.length, 200)
      assert.strictEqual(new Set(keys).size, 200)
      assert.strictEqual((yield* b.stats).inFlight, 200)
    }).pipe(Effect.scoped))

  it.effect("migrations run once per prefix, also when two stores start at the same time", () =>
    Effect.gen(function*() {
      const prefix = newPrefix()
      yield* dropAfter(prefix)
      const [one, two] = yield* Effect.all([
        Layer.build(PostgresStore.layer({ url, prefix })),
        Layer.build(PostgresStore.layer({ url, prefix }))
      ], { concurrency: "unbounded" })
      const s1 = yield* Effect.provide(Store.DeliveryStore, one)
      const s2 = yield* Effect.provide(Store.DeliveryStore, two)
      yield* s1.enqueue(yield* event("m-1"), ["a"])
      assert.isTrue(Option.isSome(yield* s2.status("m-1")))
    }).pipe(Effect.scoped))

  it.effect("dependencies: a database created by migration 0001 is upgraded; answers kept only with dependents", () =>
    Effect.gen(function*() {
      const prefix = newPrefix()
      yield* dropAfter(prefix)
      const t = tables(prefix)
      const old = yield* event("from-0001")
      // the schema as 0001 left it, with a pending delivery in it
      yield* Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        yield* Migrator.make({})({
          loader: Migrator.fromRecord({ "0001_init": init(sql, t, "pg") }),
          table: t.migrations
        })
        yield* sql`INSERT INTO ${sql(t.events)} (id, type, envelope, enqueued_at)
          VALUES (${old.id}, ${old.type}, ${JSON.stringify(Event.encode(old))}, 0)`
        yield* sql`INSERT INTO ${sql(t.targets)} (name) VALUES ('a')`
        yield* sql`INSERT INTO ${sql(t.deliveries)} (event_id, target, status, available_at, enqueued_at, updated_at)
          VALUES (${old.id}, 'a', 'pending', 0, 0, 0)`
      }).pipe(Effect.scoped, Effect.provide(PgClient.layer({ url: Redacted.make(url) })))

      const ctx = yield* Layer.build(
        PostgresStore.layerClient({ prefix }).pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) })))
      )
      const store = yield* Effect.provide(Store.DeliveryStore, ctx)
      const sql = yield* Effect.provide(PgClient.PgClient, ctx)
      const applied = yield* sql<{ migration_id: number }>`SELECT migration_id FROM ${
        sql(t.migrations)
      } ORDER BY migration_id`
      assert.deepStrictEqual(applied.map((row) => row.migration_id), [1, 2, 3, 4, 5, 6, 7])
      const [due] = yield* sql<
        { indexdef: string }
      >`SELECT indexdef FROM pg_indexes WHERE indexname = ${`${t.deliveries}_due`}`
      assert.include(due!.indexdef, "waiting = 0")
      const status = Option.getOrThrow(yield* store.status("from-0001"))
      assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.status, x.after, x.waiting]), [[
        "a",
        "pending",
        [],
        0
      ]])
      // Migration 0003: stored before fingerprints, the event has none; any content under its id is a duplicate.
      const legacy = yield* store.enqueue({ ...old, payload: { other: true }, type: "order.other" }, ["a", "b"])
      assert.deepStrictEqual([legacy.created, legacy.deliveries.map((d) => d.target)], [false, ["a"]])
      const fingerprints = yield* sql<{ id: string; fingerprint: string | null }>`SELECT id, fingerprint FROM ${
        sql(t.events)
      } ORDER BY id`
      assert.deepStrictEqual(fingerprints.map((r) => [r.id, r.fingerprint]), [["from-0001", null]])

      const ok = { startedAt: 0, durationMs: 1, outcome: "success" }
      yield* store.enqueue(yield* event("cols"), ["a", "b", "c", "d"], { after: { c: ["b", "a"], d: ["c"] } })
      const rows = () =>
        sql<
          {
            event_id: string
            target: string
            after_targets: string | null
            waiting: number
            dependents: number
            response: string | null
          }
        >`
          SELECT event_id, target, after_targets, waiting, dependents, response FROM ${sql(t.deliveries)} ORDER BY id`
      assert.deepStrictEqual(
        (yield* rows()).map((r) => [r.event_id, r.target, r.after_targets, r.waiting, r.dependents]),
        [
          ["from-0001", "a", null, 0, 0],
          ["cols", "a", null, 0, 1],
          ["cols", "b", null, 0, 1],
          ["cols", "c", "[\"a\",\"b\"]", 2, 1],
          ["cols", "d", "[\"c\"]", 1, 0]
        ]
      )
      for (let round = 0; round < 4; round++) {
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000 })
        for (const c of claimed) {
          assert.deepStrictEqual(Object.keys(c.inputs), c.after)
          assert.isTrue(
            yield* store.finish(c, ok, Store.Next.Delivered({ response: JSON.stringify(c.idempotencyKey) }))
          )
        }
      }
      assert.deepStrictEqual((yield* rows()).map((r) => [r.event_id, r.target, r.waiting, r.response]), [
        ["from-0001", "a", 0, null],
        ["cols", "a", 0, "\"cols:a\""],
        ["cols", "b", 0, "\"cols:b\""],
        ["cols", "c", 0, "\"cols:c\""],
        ["cols", "d", 0, null]
      ])
      assert.strictEqual((yield* store.stats).delivered, 5)
    }).pipe(Effect.scoped))

  it.live(
    "dependencies: NOTIFY wakes another process when a delivery makes a dependent due",
    () =>
      Effect.gen(function*() {
        const [producer, worker, prefix] = yield* twoPools
        const { woken, fiber } = yield* countWakeups(worker)
        // LISTEN is set up asynchronously; from then on, every NOTIFY committed reaches the worker.
        yield* listeningOn(prefix)
        yield* producer.enqueue(yield* event("notify-pipe"), ["a", "b"], { after: { b: ["a"] } })
        // exactly one NOTIFY for that enqueue; the claim sends none
        yield* untilWoken(woken, 1)
        const [input] = yield* producer.claim({ workerId: "w", limit: 10, leaseMs: 60_000 })
        const before = yield* Ref.get(woken)
        assert.isTrue(
          yield* producer.finish(input!, { startedAt: 0, durationMs: 1, outcome: "success" }, Store.Next.Delivered({}))
        )
        for (let i = 0; i < 50 && (yield* Ref.get(woken)) === before; i++) yield* Effect.sleep("100 millis")
        assert.isAbove(yield* Ref.get(woken), before, "woken through NOTIFY by the release")
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.scoped),
    { timeout: 30_000 }
  )

  it.live(
    "dependencies: concurrent deliveries of two inputs through two pools release their dependent exactly once",
    () =>
      Effect.gen(function*() {
        const [a, b] = yield* twoPools
        const ok = { startedAt: 0, durationMs: 1, outcome: "success" }
        const n = 30
        for (let i = 0; i < n; i++) {
          yield* a.enqueue(yield* event(`fan-${i}`), ["x", "y", "z"], { after: { z: ["x", "y"] } })
        }
        const inputs = yield* a.claim({ workerId: "w", limit: 1_000, leaseMs: 60_000 })
        assert.strictEqual(inputs.length, 2 * n)
        // each event's two inputs finish at the same time, one through each pool
        yield* Effect.forEach(
          inputs,
          (c) => (c.target === "x" ? a : b).finish(c, ok, Store.Next.Delivered({ response: `"${c.target}"` })),
          {
            concurrency: "unbounded",
            discard: true
          }
        )
        const released = yield* b.claim({ workerId: "w", limit: 1_000, leaseMs: 60_000 })
        assert.strictEqual(released.length, n)
        for (const c of released) {
          assert.strictEqual(c.target, "z")
          assert.deepStrictEqual(c.inputs, { x: "\"x\"", y: "\"y\"" })
        }
        const status = Option.getOrThrow(yield* a.status("fan-0"))
        assert.strictEqual(status.deliveries.find((x) => x.target === "z")!.waiting, 0)
      }).pipe(Effect.scoped),
    { timeout: 30_000 }
  )

  // ---- group commit ------------------------------------------------------------------------

  /** A store (its own pool) on a fresh prefix, and a plain client on the same database. */
  const storeAndClient = Effect.gen(function*() {
    const prefix = newPrefix()
    yield* dropAfter(prefix)
    const store = yield* storeOn(prefix)
    const sql = yield* PgClient.make({ url: Redacted.make(url) }).pipe(Effect.provide(Reactivity.layer))
    return { store, sql, t: tables(prefix) } as const
  })
  const ok = { startedAt: 0, durationMs: 1, outcome: "success" }

  it.effect("group commit: 200 concurrent enqueues share far fewer transactions, and all are stored", () =>
    Effect.gen(function*() {
      const { store } = yield* storeAndClient
      const before = yield* store.diagnostics
      const events = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => `g-${i}`), event)
      const results = yield* Effect.all(events.map((e) => store.enqueue(e, ["a", "b"])), { concurrency: "unbounded" })
      assert.isTrue(results.every((r) => r.created))
      const after = yield* store.diagnostics
      const transactions = after.writeTransactions - before.writeTransactions
      assert.strictEqual(after.writeOperations - before.writeOperations, 200)
      assert.isAtMost(transactions, 20, `200 enqueues took ${transactions} transactions`)
      assert.isAbove(after.largestBatch, 10)
      assert.strictEqual((yield* store.stats).pending, 400)
      // every caller got its own event's deliveries, in target order
      for (const [i, r] of results.entries()) {
        assert.strictEqual(r.eventId, events[i]!.id)
        assert.deepStrictEqual(r.deliveries.map((d) => [d.target, d.status]), [["a", "pending"], ["b", "pending"]])
        assert.isBelow(Number(r.deliveries[0]!.id), Number(r.deliveries[1]!.id))
      }
      const status = Option.getOrThrow(yield* store.status("g-17"))
      assert.deepStrictEqual(status.deliveries.map((d) => d.id), results[17]!.deliveries.map((d) => d.id))
    }).pipe(Effect.scoped))

  it.effect("group commit: duplicates in one batch and of stored events answer the first enqueue", () =>
    Effect.gen(function*() {
      const { store } = yield* storeAndClient
      const stored = yield* store.enqueue(yield* event("dup-stored"), ["a"])
      const fresh = yield* event("dup-fresh")
      const results = yield* Effect.all([
        store.enqueue(fresh, ["a", "b"]),
        store.enqueue(yield* event("dup-stored"), ["b", "c"]),
        store.enqueue(fresh, ["c"]),
        store.enqueue(yield* event("dup-other"), ["a"])
      ], { concurrency: "unbounded" })
      assert.deepStrictEqual(results.map((r) => r.created), [true, false, false, true])
      assert.deepStrictEqual(results[1]!.deliveries, stored.deliveries)
      assert.deepStrictEqual(results[2]!.deliveries, results[0]!.deliveries)
      assert.strictEqual((yield* store.stats).pending, 4)
    }).pipe(Effect.scoped))

  it.effect("group commit: one operation failing in a shared statement sinks only itself; the others are stored", () =>
    Effect.gen(function*() {
      const { sql, store, t } = yield* storeAndClient
      // Another client installs a trigger that refuses one event.
      yield* sql.unsafe(`CREATE FUNCTION ${t.events}_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$`)
      yield* sql.unsafe(
        `CREATE TRIGGER poison BEFORE INSERT ON ${t.events} FOR EACH ROW EXECUTE FUNCTION ${t.events}_poison()`
      )
      yield* Effect.addFinalizer(() =>
        Effect.ignore(sql.unsafe(`DROP FUNCTION IF EXISTS ${t.events}_poison() CASCADE`))
      )
      const ids = Array.from({ length: 20 }, (_, i) => (i === 7 ? "poison" : `ok-${i}`))
      const events = yield* Effect.forEach(ids, event)
      const before = yield* store.diagnostics
      const results = yield* Effect.all(events.map((e) => Effect.either(store.enqueue(e, ["a", "b"]))), {
        concurrency: "unbounded"
      })
      const after = yield* store.diagnostics
      assert.strictEqual(after.writeOperations - before.writeOperations, 19, "the failed one wrote nothing")
      for (const [i, result] of results.entries()) {
        if (ids[i] === "poison") {
          assert.strictEqual(result._tag, "Left")
          if (result._tag === "Left") {
            assert.strictEqual(result.left._tag === "StoreError" && result.left.operation, "enqueue")
          }
          assert.isTrue(Option.isNone(yield* store.status("poison")))
        } else {
          assert.strictEqual(result._tag, "Right", `${ids[i]}: ${JSON.stringify(result)}`)
          assert.strictEqual(Option.getOrThrow(yield* store.status(ids[i]!)).deliveries.length, 2)
        }
      }
      assert.strictEqual((yield* store.stats).pending, 38)
    }).pipe(Effect.scoped))

  it.effect("group commit: concurrent finishes and extensions are fenced per row; a row twice in a batch applies once", () =>
    Effect.gen(function*() {
      const { store } = yield* storeAndClient
      yield* Effect.forEach(
        Array.from({ length: 14 }, (_, i) => `f-${i}`),
        (id) => Effect.flatMap(event(id), (e) => store.enqueue(e, ["a"])),
        {
          discard: true
        }
      )
      const all = yield* store.claim({ workerId: "w1", limit: 100, leaseMs: 1_000 })
      assert.strictEqual(all.length, 14)
      const claims = all.slice(0, 12)
      // stale leases: of rows finished in the same batch, and of rows still in flight (12, 13 and the extended 8)
      const stale = [...claims.slice(0, 2), all[12]!, all[13]!, claims[8]!].map((c) => ({
        id: c.id,
        lease: `${c.lease}-stale`
      }))
      const before = yield* store.diagnostics
      const results = yield* Effect.all([
        ...claims.slice(0, 8).map((c, i) =>
          store.finish(
            c,
            i % 2 === 0 ? ok : { startedAt: 0, durationMs: 1, outcome: "http_503", message: "m" },
            i % 2 === 0
              ? Store.Next.Delivered({})
              : Store.Next.Retry({ at: 5_000 })
          )
        ),
        ...stale.map((c) => store.finish(c, ok, Store.Next.Delivered({}))),
        ...claims.slice(8).map((c) => store.extendLease(c, 60_000)),
        // the same row twice: the second sees the first's result
        store.finish(claims[0]!, ok, Store.Next.Dead({ reason: "late" })),
        store.extendLease(claims[1]!, 60_000),
        store.extendLease(stale[3]!, 60_000)
      ], { concurrency: "unbounded" })
      assert.deepStrictEqual(results, [
        ...Array(8).fill(true),
        ...Array(5).fill(false),
        ...Array(4).fill(true),
        false,
        false,
        false
      ])
      const after = yield* store.diagnostics
      assert.isBelow(after.writeTransactions - before.writeTransactions, 20, "they shared statements")
      const byTarget = yield* store.stats
      assert.deepStrictEqual([byTarget.delivered, byTarget.pending, byTarget.inFlight], [4, 4, 6])
      for (const c of [all[12]!, all[13]!]) {
        const untouched = Option.getOrThrow(yield* store.status(c.eventId)).deliveries[0]!
        assert.deepStrictEqual([untouched.status, untouched.history.length], ["in_flight", 0])
      }
      const delivered = Option.getOrThrow(yield* store.status(claims[0]!.eventId)).deliveries[0]!
      assert.strictEqual(delivered.status, "delivered")
      assert.strictEqual(delivered.history.length, 1)
      assert.strictEqual(delivered.history[0]!.lease, claims[0]!.lease)
      assert.strictEqual(delivered.history[0]!.workerId, "w1")
      const retried = Option.getOrThrow(yield* store.status(claims[1]!.eventId)).deliveries[0]!
      assert.deepStrictEqual([retried.status, retried.nextAttemptAt, retried.lastError, retried.lastErrorMessage], [
        "pending",
        5_000,
        "http_503",
        "m"
      ])
      const extended = Option.getOrThrow(yield* store.status(claims[9]!.eventId)).deliveries[0]!
      assert.strictEqual(extended.status, "in_flight")
      assert.isAbove(extended.leaseExpiresAt!, 50_000)
    }).pipe(Effect.scoped))

  it.effect("group commit: two inputs of one dependent delivered in one batch release it once", () =>
    Effect.gen(function*() {
      const { store } = yield* storeAndClient
      for (let i = 0; i < 10; i++) {
        yield* store.enqueue(yield* event(`join-${i}`), ["x", "y", "z"], { after: { z: ["x", "y"] } })
      }
      const inputs = yield* store.claim({ workerId: "w", limit: 100, leaseMs: 60_000 })
      assert.strictEqual(inputs.length, 20)
      const applied = yield* Effect.all(
        inputs.map((c) => store.finish(c, ok, Store.Next.Delivered({ response: `"${c.target}"` }))),
        { concurrency: "unbounded" }
      )
      assert.isTrue(applied.every(Boolean))
      const released = yield* store.claim({ workerId: "w", limit: 100, leaseMs: 60_000 })
      assert.strictEqual(released.length, 10)
      for (const c of released) assert.deepStrictEqual(c.inputs, { x: "\"x\"", y: "\"y\"" })
      const status = Option.getOrThrow(yield* store.status("join-3"))
      assert.deepStrictEqual(status.deliveries.map((d) => [d.target, d.waiting]), [["x", 0], ["y", 0], ["z", 0]])
    }).pipe(Effect.scoped))

  it.effect("group commit: sequential writes are not held back, each is its own commit; off when asked", () =>
    Effect.gen(function*() {
      const { store } = yield* storeAndClient
      const before = yield* store.diagnostics
      for (let i = 0; i < 5; i++) yield* store.enqueue(yield* event(`s-${i}`), ["a"])
      assert.strictEqual((yield* store.diagnostics).writeTransactions - before.writeTransactions, 5)
      const prefix = newPrefix()
      yield* dropAfter(prefix)
      const plain = yield* Effect.flatMap(
        Layer.build(PostgresStore.layer({ url, prefix, groupCommit: false })),
        (context) => Effect.provide(Store.DeliveryStore, context)
      )
      const events = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => `p-${i}`), event)
      yield* Effect.all(events.map((e) => plain.enqueue(e, ["a"])), { concurrency: "unbounded" })
      const diagnostics = yield* plain.diagnostics
      assert.strictEqual(diagnostics.writeTransactions, diagnostics.writeOperations)
      assert.strictEqual(diagnostics.largestBatch, 1)
      // Without group commit too: the same content again is a duplicate, other content a conflict.
      const again = yield* plain.enqueue(events[0]!, ["a"])
      assert.isFalse(again.created)
      const conflict = yield* Effect.flip(plain.enqueue({ ...events[0]!, payload: { other: 1 } }, ["a"]))
      assert.strictEqual(conflict._tag, "ConflictError")
    }).pipe(Effect.scoped))

  it.effect("an unreachable server fails with a typed StoreError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(Store.DeliveryStore, PostgresStore.layer({ url: "postgres://postgres@127.0.0.1:1/none" }))
      )
      assert.strictEqual(error._tag, "StoreError")
      assert.strictEqual(error.reason, "Unavailable")
    }))
})
