/**
 * Later delivery in the worker (issue 15, item 3): a delivery enqueued with `availableAt` is not
 * attempted before that instant, and is attempted then without waiting for the poll — the worker
 * asks `store.nextDue` after a short claim and wakes the lane exactly then. The poll interval is
 * one minute here, so nothing else can deliver within the tests' bounds. Real worker, real SQLite
 * file, a real loopback target that records when each request arrived; the schedule survives
 * closing and reopening the store (a restart). On PostgreSQL, an event scheduled by another
 * process (another pool) wakes the worker through LISTEN/NOTIFY, and it is delivered on time too.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import { HttpClientRequest } from "@effect/platform"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted, Ref, Schema, Stream } from "effect"
import * as PostgresStore from "../../src/Store/Postgres.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Store from "../../src/Store.js"
import { skipReason, url } from "../Store/pgAvailable.js"
import { Event, Target } from "../../src/index.js"
import { reply, startServer } from "../integration/helpers.js"
import { eventually, makeEnv } from "./helpers.js"

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))

const setup = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-scheduled-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const filename = join(dir, "outbox.db")
  const server = yield* startServer((_req, res) => reply(res, 200))
  const T = Target.make("t", {
    request: (event: Event.Event<string, unknown>) =>
      HttpClientRequest.post(`${server.url}/t`).pipe(HttpClientRequest.bodyUnsafeJson({ id: event.id })),
    policy: { circuitBreaker: false }
  })
  /** When the target received each event (its `Date.now()` on arrival). */
  const receivedAt = (id: string) => server.on("/t").filter((r) => JSON.parse(r.body).id === id).map((r) => r.wallAt)
  return { filename, server, T, receivedAt }
})

describe("later delivery in the worker", () => {
  it.scopedLive("each scheduled delivery arrives at or after its instant, woken exactly (poll interval 1 minute)", () =>
    Effect.gen(function*() {
      const { T, filename, receivedAt, server } = yield* setup
      const env = yield* makeEnv([T], SqliteStore.layer({ filename }))
      yield* env.start({ pollInterval: "1 minute" })
      const now = Date.now()
      // Out of order on purpose: the wake-up re-arms for the next one after each delivery.
      const plan = [["late", now + 900], ["early", now + 300], ["middle", now + 600]] as const
      for (const [id, at] of plan) {
        yield* env.store.enqueue(yield* Ping.make({ n: 1 }, { id }), ["t"], { availableAt: at })
      }
      const due = yield* Ping.make({ n: 2 }, { id: "now" })
      yield* env.store.enqueue(due, ["t"])
      yield* eventually("every event delivered", Effect.sync(() => server.on("/t").length === 4), 20_000)
      for (const [id, at] of plan) {
        const got = receivedAt(id)
        assert.strictEqual(got.length, 1, id)
        assert.isAtLeast(got[0]!, at, `${id} arrived before its instant`)
      }
      const order = server.on("/t").map((r) => JSON.parse(r.body).id)
      assert.deepStrictEqual(order, ["now", "early", "middle", "late"])
      const status = () => Effect.map(env.store.status("late"), (s) => Option.getOrThrow(s).deliveries[0]!)
      yield* eventually("its finish written", Effect.map(status(), (d) => d.status === "delivered"))
      const late = yield* status()
      assert.strictEqual(late.totalAttempts, 1)
      assert.isAtLeast(late.history[0]!.startedAt, now + 900)
    }))

  it.scopedLive("the schedule survives a restart: stored, reopened, delivered at or after its instant", () =>
    Effect.gen(function*() {
      const { T, filename, receivedAt, server } = yield* setup
      const at = Date.now() + 700
      // The first process: enqueue, then close the store (no worker ran).
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* SqliteStore.make({ filename })
        yield* store.enqueue(yield* Ping.make({ n: 1 }, { id: "kept" }), ["t"], { availableAt: at })
      }))
      // The second: the delivery is there, pending with its due time; a worker delivers it on time.
      const env = yield* makeEnv([T], SqliteStore.layer({ filename }))
      const stored = Option.getOrThrow(yield* env.store.status("kept")).deliveries[0]!
      assert.strictEqual(stored.status, "pending")
      assert.strictEqual(stored.nextAttemptAt, at)
      assert.deepStrictEqual(stored.history, [])
      yield* env.start({ pollInterval: "1 minute" })
      yield* eventually("the scheduled event delivered", Effect.sync(() => server.on("/t").length === 1), 20_000)
      assert.isAtLeast(receivedAt("kept")[0]!, at)
    }))
})

const pgSkip = skipReason("Worker/Scheduled.test", "later delivery on PostgreSQL")
const prefix = `fanout_sch${process.pid.toString(36)}${Date.now().toString(36)}_`

describe.skipIf(pgSkip !== undefined)(
  `later delivery on PostgreSQL${pgSkip !== undefined ? ` (skipped: ${pgSkip})` : ""}`,
  () => {
    it.scopedLive("an event scheduled through another pool wakes the idle worker, and arrives at or after its instant", () =>
      Effect.gen(function*() {
        // Drop the tables when done (after both stores have closed: finalizers run in reverse).
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            const sql = yield* PgClient.make({ url: Redacted.make(url) })
            for (const table of ["attempts", "deliveries", "targets", "events", "migrations"]) {
              yield* sql.unsafe(`DROP TABLE IF EXISTS ${prefix}${table} CASCADE`)
            }
          }).pipe(Effect.scoped, Effect.provide(Reactivity.layer), Effect.orDie)
        )
        const { T, receivedAt, server } = yield* setup
        const env = yield* makeEnv([T], PostgresStore.layer({ url, prefix }))
        // The producer: a store of its own (its own pool, as another process would have).
        const producer = yield* Effect.flatMap(
          Layer.build(PostgresStore.layer({ url, prefix })),
          (context) => Effect.provide(Store.DeliveryStore, context)
        )
        yield* env.start({ pollInterval: "1 minute" })
        // The worker's LISTEN connection is up once a NOTIFY of the producer reaches its store: probe
        // events (to a target no worker serves) until one does.
        const woken = yield* Ref.make(0)
        yield* Effect.forkScoped(Stream.runForEach(env.store.wakeups, () => Ref.update(woken, (n) => n + 1)))
        let probes = 0
        yield* eventually(
          "the worker's store hears the producer's NOTIFY",
          Effect.gen(function*() {
            yield* producer.enqueue(yield* Ping.make({ n: 0 }, { id: `probe-${++probes}` }), ["nobody"])
            yield* Effect.sleep("50 millis")
            return (yield* Ref.get(woken)) > 0
          })
        )
        const at = Date.now() + 800
        yield* producer.enqueue(yield* Ping.make({ n: 1 }, { id: "pg-1" }), ["t"], { availableAt: at })
        yield* eventually("the scheduled event delivered", Effect.sync(() => server.on("/t").length === 1), 20_000)
        assert.isAtLeast(receivedAt("pg-1")[0]!, at)
      }))
  }
)
