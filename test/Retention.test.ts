/**
 * Retention (issue 12, item 4): one pass removes delivered rows past `delivered` and dead letters past
 * `dead`, never pending or in-flight ones; `false` keeps a kind forever; the layer runs a pass at
 * start and every `every` (TestClock), counted in `fanout_retention_removed_total{kind}`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric, Option, TestClock } from "effect"
import * as Config from "../src/Config.js"
import * as Event from "../src/Event.js"
import * as Metrics from "../src/Metrics.js"
import * as Retention from "../src/Retention.js"
import * as Store from "../src/Store.js"
import * as MemoryStore from "../src/Store/Memory.js"

const day = 24 * 60 * 60 * 1000
const ok: Store.AttemptInput = { startedAt: 0, durationMs: 1, outcome: "success", status: 200 }
const removed = (kind: string) =>
  Effect.map(Metric.value(Metrics.retentionRemoved.pipe(Metric.tagged("kind", kind))), (s) => s.count)

/** Enqueues `id` to a and b; a is delivered, b dead-lettered, both now. */
const settle = (id: string) =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    yield* store.enqueue(yield* Event.make("order.placed", {}, { id }), ["a", "b"])
    const claimed = (yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000 })).filter((c) => c.eventId === id)
    for (const c of claimed) {
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      yield* store.finish(
        c,
        { ...ok, startedAt: now, ...(c.target === "b" ? { outcome: "http_500", status: 500 } : {}) },
        c.target === "a" ? Store.Next.Delivered() : Store.Next.Dead({ reason: "max_attempts" })
      )
    }
  })

const exists = (id: string) =>
  Effect.flatMap(Store.DeliveryStore, (store) => Effect.map(store.status(id), Option.isSome))
const targetsOf = (id: string) =>
  Effect.flatMap(
    Store.DeliveryStore,
    (store) =>
      Effect.map(store.status(id), (s) =>
        Option.match(s, { onNone: () => [], onSome: (s) => s.deliveries.map((d) => `${d.target}:${d.status}`) }))
  )

describe("Retention", () => {
  it.effect("a pass deletes delivered rows past `delivered` and dead letters past `dead`; pending rows stay", () =>
    Effect.gen(function*() {
      const store = yield* Store.DeliveryStore
      yield* settle("old")
      yield* store.enqueue(yield* Event.make("order.placed", {}, { id: "waiting" }), ["c"])
      yield* TestClock.adjust(6 * day)
      assert.deepStrictEqual(
        yield* Retention.runOnce(),
        { deliveries: 0, dead: 0, events: 0 },
        "nothing is 7 days old yet"
      )
      yield* TestClock.adjust(2 * day)
      const before = { deliveries: yield* removed("deliveries"), dead: yield* removed("dead") }
      assert.deepStrictEqual(yield* Retention.runOnce(), { deliveries: 1, dead: 0, events: 0 })
      assert.deepStrictEqual(yield* targetsOf("old"), ["b:dead"], "the dead letter stays (30 days)")
      yield* TestClock.adjust(23 * day)
      assert.deepStrictEqual(yield* Retention.runOnce(), { deliveries: 0, dead: 1, events: 0 })
      assert.isFalse(yield* exists("old"), "the event went with its last delivery")
      assert.deepStrictEqual(yield* targetsOf("waiting"), ["c:pending"], "a pending delivery is never removed")
      assert.strictEqual((yield* removed("deliveries")) - before.deliveries, 1)
      assert.strictEqual((yield* removed("dead")) - before.dead, 1)
    }).pipe(Effect.provide(MemoryStore.layer)))

  it.effect("`false` keeps that kind; custom durations", () =>
    Effect.gen(function*() {
      yield* settle("kept")
      yield* TestClock.adjust(400 * day)
      assert.deepStrictEqual(yield* Retention.runOnce({ delivered: false, dead: false }), {
        deliveries: 0,
        dead: 0,
        events: 0
      })
      assert.deepStrictEqual(yield* targetsOf("kept"), ["a:delivered", "b:dead"])
      assert.deepStrictEqual(yield* Retention.runOnce({ delivered: "1 hour", dead: false }), {
        deliveries: 1,
        dead: 0,
        events: 0
      })
      assert.deepStrictEqual(yield* targetsOf("kept"), ["b:dead"])
    }).pipe(Effect.provide(MemoryStore.layer)))

  it.scoped("the layer runs a pass at start and then every `every`", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(MemoryStore.layer)
      yield* Effect.provide(settle("e-1"), context)
      yield* TestClock.adjust(2 * day)
      yield* Layer.build(Retention.layer({ delivered: "1 day", dead: "10 days", every: "1 hour" })).pipe(
        Effect.provide(context)
      )
      // The pass at start (forked): once it has run, e-1's delivered row is gone, its dead letter kept.
      yield* TestClock.adjust(0)
      assert.deepStrictEqual(yield* Effect.provide(targetsOf("e-1"), context), ["b:dead"])
      yield* Effect.provide(settle("e-2"), context)
      yield* TestClock.adjust(day + 60 * 60 * 1000)
      // Passes ran every hour since: the first after e-2 was a day old removed its delivered row.
      assert.deepStrictEqual(yield* Effect.provide(targetsOf("e-2"), context), ["b:dead"])
      assert.deepStrictEqual(yield* Effect.provide(targetsOf("e-1"), context), ["b:dead"])
      yield* TestClock.adjust(8 * day)
      assert.isFalse(yield* Effect.provide(exists("e-1"), context), "e-1's dead letter is 10 days old")
      assert.deepStrictEqual(yield* Effect.provide(targetsOf("e-2"), context), ["b:dead"])
    }))

  it.effect("store.retention in the configuration: a bad value is a configuration error naming its path", () =>
    Effect.gen(function*() {
      const config = (retention: unknown) => ({
        store: { sqlite: "x.db", retention },
        targets: { a: { url: "http://127.0.0.1:1/a" } },
        routes: { "order.*": ["a"] }
      })
      for (const good of [false, {}, { delivered: "7 days", dead: false, every: "30 seconds" }, { dead: 86_400_000 }]) {
        yield* Config.decode("fanout.json", config(good))
      }
      const error = yield* Effect.flip(Config.decode("fanout.json", config({ delivered: "soon", keep: true })))
      // (the store section is a union: the other members' mismatches are listed too)
      assert.includeMembers(error.issues.map((i) => i.path), ["store.retention.delivered", "store.retention.keep"])
      const notObject = yield* Effect.flip(Config.decode("fanout.json", config("7 days")))
      assert.include(notObject.issues.map((i) => i.path), "store.retention")
    }))
})
