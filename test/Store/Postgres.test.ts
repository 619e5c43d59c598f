/**
 * The conformance suite against a real PostgreSQL (127.0.0.1:5432, database `test`, trust auth).
 * Every store built here gets its own table prefix, dropped afterwards, so runs never collide.
 *
 * Unreachable database: the tests are skipped with a warning, unless FANOUT_REQUIRE_POSTGRES=1,
 * in which case they fail.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Fiber, Layer, Option, Redacted, Ref, Stream } from "effect"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"
import * as PostgresStore from "../../src/Store/Postgres.js"
import { suite } from "./StoreSuite.js"

const url = process.env.FANOUT_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const required = process.env.FANOUT_REQUIRE_POSTGRES === "1"

/** Connects once (3 s timeout): undefined when reachable, else why not. */
const reachable: string | undefined = await Effect.runPromise(
  Effect.scoped(PgClient.make({ url: Redacted.make(url), connectTimeout: "3 seconds" })).pipe(
    Effect.provide(Reactivity.layer),
    Effect.as(undefined),
    Effect.catchAllCause((cause) => Effect.succeed(Cause.pretty(cause).split("\n")[0]))
  )
)

const skip = reachable !== undefined && !required
  ? `PostgreSQL unreachable at ${url.replace(/\/\/[^@]*@/, "//")} (${reachable}); set FANOUT_REQUIRE_POSTGRES=1 to fail instead`
  : undefined
if (skip !== undefined) console.warn(`[Store/Postgres.test] skipped: ${skip}`)

if (reachable !== undefined && required) {
  describe("PostgresStore", () => {
    it("PostgreSQL is required (FANOUT_REQUIRE_POSTGRES=1) but unreachable", () => {
      assert.fail(`cannot reach ${url}: ${reachable}`)
    })
  })
}

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

const event = (id: string) => Event.make("order.placed", { id }, { id })

const d = skip !== undefined ? describe.skip : describe
d(`PostgresStore${skip !== undefined ? ` (skipped: ${skip})` : ""}`, () => {
  it.live("NOTIFY wakes an idle store in another process (another pool) on enqueue and replay", () =>
    Effect.gen(function*() {
      const prefix = newPrefix()
      yield* dropAfter(prefix)
      const producer = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(PostgresStore.layer({ url, prefix })))
      const worker = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(PostgresStore.layer({ url, prefix })))
      const woken = yield* Ref.make(0)
      const fiber = yield* Effect.fork(Stream.runForEach(worker.wakeups, () => Ref.update(woken, (n) => n + 1)))
      // LISTEN is set up asynchronously: keep producing until the worker hears one (at most ~10 s)
      const waitWoken = (label: string, act: (i: number) => Effect.Effect<unknown, Store.StoreError>) =>
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
      yield* worker.finish(claimed[0]!, { startedAt: 0, durationMs: 1, outcome: "http_400" }, Store.Next.Dead({ reason: "x" }))
      yield* waitWoken("replay", () => producer.replay(claimed[0]!.id))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.live("an enqueue inside the application's transaction NOTIFYs when that transaction commits", () =>
    Effect.gen(function*() {
      const prefix = newPrefix()
      yield* dropAfter(prefix)
      const app = yield* Layer.build(
        PostgresStore.layerClient({ prefix }).pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url) })))
      )
      const producer = yield* Effect.provide(Store.DeliveryStore, app)
      const sql = yield* Effect.provide(PgClient.PgClient, app)
      const worker = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(PostgresStore.layer({ url, prefix })))
      const woken = yield* Ref.make(0)
      const fiber = yield* Effect.fork(Stream.runForEach(worker.wakeups, () => Ref.update(woken, (n) => n + 1)))
      for (let i = 0; i < 100 && (yield* Ref.get(woken)) === 0; i++) {
        yield* sql.withTransaction(Effect.flatMap(event(`tx-n-${i}`), (e) => producer.enqueue(e, ["a"])))
        yield* Effect.sleep("100 millis")
      }
      assert.isAbove(yield* Ref.get(woken), 0, "woken through NOTIFY on the application's commit")
      // a rolled-back transaction's NOTIFY is never delivered
      yield* Effect.sleep("300 millis")
      const before = yield* Ref.get(woken)
      yield* sql.withTransaction(
        Effect.flatMap(event("tx-n-rollback"), (e) => producer.enqueue(e, ["a"])).pipe(Effect.zipRight(Effect.fail("abort")))
      ).pipe(Effect.ignore)
      yield* Effect.sleep("500 millis")
      assert.strictEqual(yield* Ref.get(woken), before)
      assert.isTrue(Option.isNone(yield* worker.status("tx-n-rollback")))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.scoped), { timeout: 30_000 })

  it.effect("two pools on one database: concurrent claims never hand out a row twice (SKIP LOCKED)", () =>
    Effect.gen(function*() {
      const prefix = newPrefix()
      yield* dropAfter(prefix)
      const a = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(PostgresStore.layer({ url, prefix })))
      const b = yield* Effect.provide(Store.DeliveryStore, yield* Layer.build(PostgresStore.layer({ url, prefix })))
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
          Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).claim({ workerId: `w${i}`, limit: 10, leaseMs: 60_000 })),
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

  it.effect("an unreachable server fails with a typed StoreError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(Store.DeliveryStore, PostgresStore.layer({ url: "postgres://postgres@127.0.0.1:1/none" }))
      )
      assert.strictEqual(error._tag, "StoreError")
      assert.strictEqual(error.reason, "Unavailable")
    }))
})
