/**
 * The one conformance suite every DeliveryStore must pass (Memory, SQLite, PostgreSQL).
 *
 * `layer` must build a FRESH, EMPTY store every time it is built: each test provides it anew.
 * Time is the TestClock unless a test says otherwise, so leases only expire when a test moves the clock.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, type Layer, Option, Ref, Stream, TestClock } from "effect"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"

type StoreLayer = Layer.Layer<Store.DeliveryStore, unknown>

export interface SuiteOptions {
  /** SQL stores: a fresh database holding the store on the application's own client (layerClient). */
  readonly outbox?: Layer.Layer<Store.DeliveryStore | SqlClient.SqlClient, unknown>
  /** When set, every test is skipped with this reason. */
  readonly skip?: string
}

const ok: Store.AttemptInput = { startedAt: 0, durationMs: 5, outcome: "success", status: 200 }
const failed = (outcome: string, extra: Partial<Store.AttemptInput> = {}): Store.AttemptInput => ({
  startedAt: 0,
  durationMs: 7,
  outcome,
  errorTag: "TransientError",
  message: `${outcome} happened`,
  ...extra
})

const makeEvent = (id: string, payload: unknown = { id }) =>
  Effect.orDie(Event.make("order.placed", payload, { id, key: "k-1" }))

const encode = (event: Event.Any) => Event.encode(event)

/** The error of an enqueue that must fail with a StoreError (not a ConflictError). */
const storeError = <A>(effect: Effect.Effect<A, Store.StoreError | Store.ConflictError>) =>
  Effect.map(Effect.flip(effect), (error) => {
    assert.strictEqual(error._tag, "StoreError", error.message)
    return error as Store.StoreError
  })

const getStatus = (id: string) =>
  Effect.flatMap(Store.DeliveryStore, (store) => store.status(id)).pipe(
    Effect.map(Option.getOrThrowWith(() => new Error(`no status for ${id}`)))
  )

const deliveryOf = (status: Store.EventStatus, target: string) => {
  const found = status.deliveries.find((d) => d.target === target)
  assert.isDefined(found, `delivery to ${target}`)
  return found!
}

/** Drives a delivery to dead after `attempts` failed attempts with the given outcome label. */
const killDelivery = (target: string, eventId: string, label: string, attempts = 1) =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    for (let i = 1; i <= attempts; i++) {
      const batch = yield* store.claim({ workerId: "killer", limit: 1_000, leaseMs: 60_000, targets: [target] })
      const claim = batch.find((c) => c.eventId === eventId)
      yield* store.release(batch.filter((c) => c !== claim))
      assert.isDefined(claim, `claim ${eventId} → ${target} (attempt ${i})`)
      const next = i === attempts ? Store.Next.Dead({ reason: `gave up on ${label}` }) : Store.Next.Retry({ at: 0 })
      const applied = yield* store.finish(claim!, failed(label), next)
      assert.isTrue(applied)
    }
  })

export const suite = (name: string, layer: StoreLayer, options: SuiteOptions = {}) => {
  const d = options.skip !== undefined ? describe.skip : describe
  d(`DeliveryStore conformance: ${name}${options.skip !== undefined ? ` (skipped: ${options.skip})` : ""}`, () => {
    const test = <A, E>(title: string, body: () => Effect.Effect<A, E, Store.DeliveryStore>) =>
      it.effect(title, () => Effect.scoped(Effect.provide(body(), layer)))

    // ---- enqueue ---------------------------------------------------------------------------

    test("enqueue writes the event and one pending delivery per target, due now", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(1_000)
        const event = yield* makeEvent("e-1", { orderId: "o-1", qty: 2 })
        const result = yield* store.enqueue(event, ["inventory", "notification", "inventory"])
        assert.strictEqual(result.eventId, "e-1")
        assert.isTrue(result.created)
        assert.deepStrictEqual(result.deliveries.map((x) => [x.target, x.status]), [
          ["inventory", "pending"],
          ["notification", "pending"]
        ])
        const status = yield* getStatus("e-1")
        assert.deepStrictEqual(encode(status.event), encode(event))
        assert.strictEqual(status.enqueuedAt, 1_000)
        assert.strictEqual(status.deliveries.length, 2)
        for (const delivery of status.deliveries) {
          assert.strictEqual(delivery.status, "pending")
          assert.strictEqual(delivery.attempts, 0)
          assert.strictEqual(delivery.nextAttemptAt, 1_000)
          assert.strictEqual(delivery.idempotencyKey, `e-1:${delivery.target}`)
          assert.deepStrictEqual(delivery.history, [])
        }
        assert.deepStrictEqual(new Set(status.deliveries.map((x) => x.id)), new Set(result.deliveries.map((x) => x.id)))
      }))

    test("gauges agree with stats on pending, in-flight, dead, depth and oldest age, overall and per target", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const empty = yield* store.gauges
        assert.deepStrictEqual(empty, {
          pending: 0,
          inFlight: 0,
          dead: 0,
          depth: 0,
          oldestPendingAgeMs: 0,
          targets: {}
        })
        yield* store.enqueue(yield* makeEvent("g-1"), ["a", "b"])
        yield* TestClock.adjust(1_000)
        yield* store.enqueue(yield* makeEvent("g-2"), ["a", "b"])
        yield* store.enqueue(yield* makeEvent("g-3"), ["a"])
        yield* TestClock.adjust(500)
        // One delivered, one in flight, one dead; the rest pending.
        const [delivered] = yield* store.claim({ workerId: "w", limit: 1, leaseMs: 60_000, targets: ["b"] })
        assert.isTrue(yield* store.finish(delivered!, ok, Store.Next.Delivered({})))
        yield* store.claim({ workerId: "w", limit: 1, leaseMs: 60_000, targets: ["b"] })
        yield* killDelivery("a", "g-3", "http_400")
        const stats = yield* store.stats
        const gauges = yield* store.gauges
        assert.deepStrictEqual(
          {
            pending: gauges.pending,
            inFlight: gauges.inFlight,
            dead: gauges.dead,
            depth: gauges.depth,
            oldest: gauges.oldestPendingAgeMs
          },
          {
            pending: stats.pending,
            inFlight: stats.inFlight,
            dead: stats.dead,
            depth: stats.depth,
            oldest: stats.oldestPendingAgeMs
          }
        )
        assert.deepStrictEqual({ pending: gauges.pending, inFlight: gauges.inFlight, dead: gauges.dead }, {
          pending: 2,
          inFlight: 1,
          dead: 1
        })
        assert.strictEqual(gauges.oldestPendingAgeMs, 1_500, "g-1 → a, enqueued 1.5 s ago, is the oldest")
        assert.deepStrictEqual(gauges.targets, {
          a: { pending: 2, inFlight: 0, dead: 1 },
          b: { pending: 0, inFlight: 1, dead: 0 }
        })
      }))

    test("enqueue is idempotent on the event id: the second (same content) returns the first and writes nothing", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const first = yield* store.enqueue(yield* makeEvent("dup", { v: 1 }), ["a", "b"])
        yield* TestClock.adjust(5_000)
        // Another createdAt and other headers (a new traceparent on a retry): still the same event.
        const retry = {
          ...(yield* makeEvent("dup", { v: 1 })),
          headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
        }
        const again = yield* store.enqueue(retry, ["a", "b", "c"])
        assert.isTrue(first.created)
        assert.isFalse(again.created)
        assert.deepStrictEqual(again.deliveries, first.deliveries)
        const status = yield* getStatus("dup")
        assert.deepStrictEqual(status.event.payload, { v: 1 })
        assert.deepStrictEqual(status.event.headers, {})
        assert.deepStrictEqual(status.deliveries.map((x) => x.target).sort(), ["a", "b"])
        const stats = yield* store.stats
        assert.strictEqual(stats.pending, 2)
        // the duplicate reports the current state of the first enqueue's deliveries
        const [claim] = yield* store.claim({ workerId: "w", limit: 1, leaseMs: 1_000, targets: ["a"] })
        const third = yield* store.enqueue(yield* makeEvent("dup", { v: 1 }), ["a"])
        assert.deepStrictEqual(third.deliveries.find((x) => x.id === claim!.id)?.status, "in_flight")
      }))

    test("the same id with another payload, type or key is a ConflictError naming the id; nothing is written", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const original = yield* makeEvent("cf", { v: 1, list: [1, 2] })
        const first = yield* store.enqueue(original, ["a", "b"])
        const before = yield* getStatus("cf")
        const variants: ReadonlyArray<readonly [string, Event.Any]> = [
          ["payload", { ...original, payload: { v: 2, list: [1, 2] } }],
          ["payload member order", { ...original, payload: { list: [1, 2], v: 1 } }],
          ["type", { ...original, type: "order.cancelled" }],
          ["key", { ...original, key: "k-2" }],
          ["no key", (({ key: _key, ...rest }) => rest)(original)]
        ]
        for (const [what, variant] of variants) {
          const error = yield* Effect.flip(store.enqueue(variant, ["a", "b", "c"]))
          assert.strictEqual(error._tag, "ConflictError", what)
          if (error._tag !== "ConflictError") continue
          assert.strictEqual(error.eventId, "cf")
          assert.strictEqual(error.fingerprint, Event.fingerprint(variant), what)
          assert.strictEqual(error.storedFingerprint, Event.fingerprint(original), what)
          assert.include(error.message, "\"cf\"")
        }
        // Nothing changed: the stored event, its deliveries; and the same content is still a duplicate.
        const after = yield* getStatus("cf")
        assert.deepStrictEqual(encode(after.event), encode(before.event))
        assert.deepStrictEqual(
          after.deliveries.map((d) => [d.id, d.target, d.status]),
          before.deliveries.map((d) => [d.id, d.target, d.status])
        )
        assert.strictEqual((yield* store.stats).pending, 2)
        const again = yield* store.enqueue(original, ["a"])
        assert.deepStrictEqual([again.created, again.deliveries], [false, first.deliveries])
      }))

    test("concurrent enqueues of one id with two contents: one created, the same content duplicates, the other conflicts", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const a = yield* makeEvent("race", { v: "a" })
        const b = yield* makeEvent("race", { v: "b" })
        const events = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b))
        const results = yield* Effect.all(events.map((e) => Effect.either(store.enqueue(e, ["a", "b"]))), {
          concurrency: "unbounded"
        })
        const created = results.flatMap((r, i) => (r._tag === "Right" && r.right.created ? [events[i]!] : []))
        assert.strictEqual(created.length, 1)
        const winner = created[0]!
        for (const [i, r] of results.entries()) {
          if (events[i] === winner) assert.isTrue(r._tag === "Right", `${i}: same content as the stored one`)
          else assert.isTrue(r._tag === "Left" && r.left._tag === "ConflictError", `${i}: other content`)
        }
        assert.deepStrictEqual((yield* getStatus("race")).event.payload, winner.payload)
        assert.strictEqual((yield* store.stats).pending, 2)
      }))

    test("20 concurrent enqueues of the same id create one event", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const event = yield* makeEvent("same")
        const results = yield* Effect.all(Array.from({ length: 20 }, () => store.enqueue(event, ["a", "b"])), {
          concurrency: "unbounded"
        })
        assert.strictEqual(results.filter((r) => r.created).length, 1)
        const ids = new Set(results.flatMap((r) => r.deliveries.map((x) => x.id)))
        assert.strictEqual(ids.size, 2)
        const stats = yield* store.stats
        assert.strictEqual(stats.pending, 2)
        assert.strictEqual((yield* getStatus("same")).deliveries.length, 2)
      }))

    test("bad input fails with a typed InvalidInput error, never a defect", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const event = yield* makeEvent("bad")
        const noTargets = yield* storeError(store.enqueue(event, []))
        assert.strictEqual(noTargets.reason, "InvalidInput")
        const bigint = yield* storeError(store.enqueue(yield* makeEvent("big", { n: 1n }), ["a"]))
        assert.strictEqual(bigint._tag, "StoreError")
        assert.strictEqual(bigint.reason, "InvalidInput")
        const emptyId = yield* storeError(store.enqueue({ ...event, id: "" }, ["a"]))
        assert.strictEqual(emptyId.reason, "InvalidInput")
        // The id alphabet (printable ASCII 0x21-0x7E) for ids and keys: the store refuses what Event.make refuses.
        for (
          const bad of [{ ...event, id: "a\nb" }, { ...event, id: "a b" }, { ...event, id: "café" }, {
            ...event,
            key: "k\r1"
          }, { ...event, key: "" }]
        ) {
          const refused = yield* storeError(store.enqueue(bad, ["a"]))
          assert.strictEqual(refused.reason, "InvalidInput", JSON.stringify(bad.id))
          assert.match(refused.message, /Invalid character at index \d+ \(char code \d+\)|at least 1 character/)
        }
        assert.isTrue(Option.isNone(yield* store.status("a\nb")))
        const badLimit = yield* Effect.flip(store.claim({ workerId: "w", limit: 0, leaseMs: 1_000 }))
        assert.strictEqual(badLimit.reason, "InvalidInput")
        const badLease = yield* Effect.flip(store.claim({ workerId: "w", limit: 1, leaseMs: -5 }))
        assert.strictEqual(badLease.reason, "InvalidInput")
        assert.isTrue(Option.isNone(yield* store.status("big")))
        assert.isTrue(Option.isNone(yield* store.status("bad")))
      }))

    test("status of an unknown event is none", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        assert.isTrue(Option.isNone(yield* store.status("nope")))
      }))

    // ---- claim -----------------------------------------------------------------------------

    test("claim returns due deliveries with the decoded event, a unique lease per row and its expiry", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(5_000)
        const event = yield* makeEvent("c-1", { nested: { list: [1, "two", null] } })
        yield* store.enqueue(event, ["a", "b"])
        const claimed = yield* store.claim({ workerId: "w-1", limit: 10, leaseMs: 30_000 })
        assert.strictEqual(claimed.length, 2)
        assert.deepStrictEqual(claimed.map((c) => c.target).sort(), ["a", "b"])
        for (const c of claimed) {
          assert.deepStrictEqual(encode(c.event), encode(event))
          assert.strictEqual(c.eventId, "c-1")
          assert.strictEqual(c.idempotencyKey, `c-1:${c.target}`)
          assert.strictEqual(c.attempts, 0)
          assert.strictEqual(c.firstAttemptAt, undefined)
          assert.strictEqual(c.leaseExpiresAt, 35_000)
          assert.strictEqual(c.enqueuedAt, 5_000)
          assert.strictEqual(c.workerId, "w-1")
        }
        assert.notStrictEqual(claimed[0]!.lease, claimed[1]!.lease)
        // in flight under a live lease: nobody else gets them
        assert.deepStrictEqual(yield* store.claim({ workerId: "w-2", limit: 10, leaseMs: 30_000 }), [])
        const status = yield* getStatus("c-1")
        for (const delivery of status.deliveries) {
          assert.strictEqual(delivery.status, "in_flight")
          assert.strictEqual(delivery.leaseExpiresAt, 35_000)
        }
      }))

    test("claim honours limit, the targets filter and the next attempt time", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (let i = 0; i < 5; i++) yield* store.enqueue(yield* makeEvent(`l-${i}`), ["a", "b"])
        const onlyB = yield* store.claim({ workerId: "w", limit: 3, leaseMs: 60_000, targets: ["b"] })
        assert.strictEqual(onlyB.length, 3)
        assert.isTrue(onlyB.every((c) => c.target === "b"))
        assert.deepStrictEqual(yield* store.claim({ workerId: "w", limit: 3, leaseMs: 1_000, targets: ["zzz"] }), [])
        assert.deepStrictEqual(yield* store.claim({ workerId: "w", limit: 3, leaseMs: 1_000, targets: [] }), [])
        // reschedule one 10 s ahead: not claimable before then
        const applied = yield* store.finish(onlyB[0]!, failed("http_503"), Store.Next.Retry({ at: 10_000 }))
        assert.isTrue(applied)
        const rest = yield* store.claim({ workerId: "w", limit: 100, leaseMs: 60_000, targets: ["b"] })
        assert.strictEqual(rest.length, 2)
        assert.isFalse(rest.some((c) => c.id === onlyB[0]!.id))
        yield* TestClock.adjust(9_999)
        assert.deepStrictEqual(yield* store.claim({ workerId: "w", limit: 100, leaseMs: 60_000, targets: ["b"] }), [])
        yield* TestClock.adjust(1)
        const due = yield* store.claim({ workerId: "w", limit: 100, leaseMs: 60_000, targets: ["b"] })
        assert.deepStrictEqual(due.map((c) => c.id), [onlyB[0]!.id])
        assert.strictEqual(due[0]!.attempts, 1)
        assert.strictEqual(due[0]!.firstAttemptAt, 0)
      }))

    test("claims are fair across targets: a huge backlog does not starve the others", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (let i = 0; i < 60; i++) yield* store.enqueue(yield* makeEvent(`big-${i}`), ["big"])
        yield* TestClock.adjust(10)
        for (let i = 0; i < 3; i++) yield* store.enqueue(yield* makeEvent(`small-${i}`), ["small1", "small2"])
        const claimed = yield* store.claim({ workerId: "w", limit: 6, leaseMs: 60_000 })
        const count = (target: string) => claimed.filter((c) => c.target === target).length
        assert.strictEqual(claimed.length, 6)
        assert.strictEqual(count("small1"), 2)
        assert.strictEqual(count("small2"), 2)
        assert.strictEqual(count("big"), 2)
        // within a target, the oldest due comes first
        assert.deepStrictEqual(claimed.filter((c) => c.target === "big").map((c) => c.eventId), ["big-0", "big-1"])
        assert.deepStrictEqual(claimed.filter((c) => c.target === "small1").map((c) => c.eventId), [
          "small-0",
          "small-1"
        ])
      }))

    test("an expired lease is reclaimed (a crashed worker's deliveries come back), with a new lease", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("crash"), ["a"])
        const [first] = yield* store.claim({ workerId: "crashed", limit: 1, leaseMs: 1_000 })
        assert.isDefined(first)
        yield* TestClock.adjust(999)
        assert.deepStrictEqual(yield* store.claim({ workerId: "w-2", limit: 1, leaseMs: 1_000 }), [])
        yield* TestClock.adjust(1)
        const [second] = yield* store.claim({ workerId: "w-2", limit: 1, leaseMs: 1_000 })
        assert.isDefined(second)
        assert.strictEqual(second!.id, first!.id)
        assert.notStrictEqual(second!.lease, first!.lease)
        assert.strictEqual(second!.attempts, 0)
        assert.strictEqual(second!.leaseExpiresAt, 2_000)
        assert.strictEqual(second!.workerId, "w-2")
      }))

    // ---- later delivery (availableAt) -------------------------------------------------------

    test("a scheduled enqueue is stored at once, pending, not claimable before its time, claimable at it", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(1_000)
        const result = yield* store.enqueue(yield* makeEvent("sch-1"), ["a", "b"], { availableAt: 61_000 })
        assert.isTrue(result.created)
        assert.deepStrictEqual(result.deliveries.map((x) => x.status), ["pending", "pending"])
        const status = yield* getStatus("sch-1")
        assert.strictEqual(status.enqueuedAt, 1_000)
        assert.deepStrictEqual(status.deliveries.map((x) => x.nextAttemptAt), [61_000, 61_000])
        assert.strictEqual((yield* store.gauges).pending, 2)
        // nextDue: the earliest future due time per target.
        assert.deepStrictEqual(yield* store.nextDue!("a"), Option.some(61_000))
        assert.deepStrictEqual(yield* store.nextDue!("other"), Option.none())
        assert.deepStrictEqual(yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 }), [])
        yield* TestClock.adjust(59_999)
        assert.deepStrictEqual(yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 }), [])
        yield* TestClock.adjust(1)
        assert.deepStrictEqual(yield* store.nextDue!("a"), Option.none())
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
        assert.deepStrictEqual(claimed.map((c) => c.target).sort(), ["a", "b"])
        assert.isTrue(claimed.every((c) => c.enqueuedAt === 1_000 && c.attempts === 0))
      }))

    test("a scheduled delivery does not hold back the target's due ones; nextDue gives the earliest", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(1_000)
        yield* store.enqueue(yield* makeEvent("sch-late"), ["a"], { availableAt: 50_000 })
        yield* store.enqueue(yield* makeEvent("sch-early"), ["a"], { availableAt: 20_000 })
        yield* store.enqueue(yield* makeEvent("sch-now"), ["a"])
        assert.deepStrictEqual(yield* store.nextDue!("a"), Option.some(20_000))
        const first = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 100_000 })
        assert.deepStrictEqual(first.map((c) => c.eventId), ["sch-now"])
        yield* TestClock.adjust(19_000)
        const second = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 100_000 })
        assert.deepStrictEqual(second.map((c) => c.eventId), ["sch-early"])
        // In-flight rows (their lease expiry) are not a due time.
        assert.deepStrictEqual(yield* store.nextDue!("a"), Option.some(50_000))
      }))

    test("a scheduled time not after now is due now; a time that is not a finite number is InvalidInput", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(10_000)
        yield* store.enqueue(yield* makeEvent("sch-past"), ["a"], { availableAt: 5_000 })
        assert.strictEqual(deliveryOf(yield* getStatus("sch-past"), "a").nextAttemptAt, 10_000)
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
        assert.deepStrictEqual(claimed.map((c) => c.eventId), ["sch-past"])
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
          const error = yield* storeError(
            store.enqueue(yield* makeEvent(`sch-bad-${bad}`), ["a"], { availableAt: bad })
          )
          assert.strictEqual(error.reason, "InvalidInput")
          assert.isTrue(Option.isNone(yield* store.status(`sch-bad-${bad}`)))
        }
      }))

    // ---- fencing ---------------------------------------------------------------------------

    test("fencing: a stale worker's finish, extend and release are rejected and change nothing", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("fence"), ["a"])
        const [stale] = yield* store.claim({ workerId: "stale", limit: 1, leaseMs: 1_000 })
        yield* TestClock.adjust(1_500)
        const [live] = yield* store.claim({ workerId: "live", limit: 1, leaseMs: 10_000 })
        assert.strictEqual(live!.id, stale!.id)
        const before = yield* getStatus("fence")
        assert.isFalse(yield* store.finish(stale!, failed("http_400"), Store.Next.Dead({ reason: "stale says dead" })))
        assert.isFalse(yield* store.finish(stale!, ok, Store.Next.Delivered({})))
        assert.isFalse(yield* store.extendLease(stale!, 999_999))
        assert.strictEqual(yield* store.release([stale!]), 0)
        const after = yield* getStatus("fence")
        assert.deepStrictEqual(after, before)
        assert.strictEqual(deliveryOf(after, "a").status, "in_flight")
        assert.strictEqual(deliveryOf(after, "a").leaseExpiresAt, 11_500)
        // the live worker's outcome stands, and is recorded with its lease and worker
        assert.isTrue(yield* store.finish(live!, { ...ok, startedAt: 1_500 }, Store.Next.Delivered({})))
        const done = deliveryOf(yield* getStatus("fence"), "a")
        assert.strictEqual(done.status, "delivered")
        assert.strictEqual(done.history.length, 1)
        assert.strictEqual(done.history[0]!.lease, live!.lease)
        assert.strictEqual(done.history[0]!.workerId, "live")
        // a finished lease cannot be used twice, nor with a made-up id
        assert.isFalse(yield* store.finish(live!, ok, Store.Next.Delivered({})))
        assert.isFalse(yield* store.finish({ id: "not-an-id", lease: live!.lease }, ok, Store.Next.Delivered({})))
        assert.isFalse(yield* store.finish({ id: "999999", lease: live!.lease }, ok, Store.Next.Delivered({})))
      }))

    test("a reclaim never resurrects a delivered row", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("done"), ["a"])
        const [claim] = yield* store.claim({ workerId: "w", limit: 1, leaseMs: 1_000 })
        assert.isTrue(yield* store.finish(claim!, ok, Store.Next.Delivered({})))
        yield* TestClock.adjust(60_000)
        assert.deepStrictEqual(yield* store.claim({ workerId: "sweeper", limit: 10, leaseMs: 1_000 }), [])
        assert.strictEqual(yield* store.release([claim!]), 0)
        assert.isFalse(yield* store.extendLease(claim!, 1_000))
        const delivery = deliveryOf(yield* getStatus("done"), "a")
        assert.strictEqual(delivery.status, "delivered")
        assert.strictEqual((yield* store.stats).delivered, 1)
      }))

    test("finish racing a reclaim: exactly one of them wins for every row", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const n = 20
        for (let i = 0; i < n; i++) yield* store.enqueue(yield* makeEvent(`race-${i}`), ["a"])
        const claims = yield* store.claim({ workerId: "slow", limit: n, leaseMs: 1_000 })
        assert.strictEqual(claims.length, n)
        yield* TestClock.adjust(1_000)
        // interleave the stale holder's finishes with another worker's claims, claims first
        const finished: Array<readonly [string, boolean]> = []
        const reclaimed: Array<ReadonlyArray<Store.Claimed>> = []
        const racers: Array<Effect.Effect<void, Store.StoreError>> = []
        claims.forEach((c, i) => {
          if (i % 5 === 0) {
            racers.push(Effect.map(store.claim({ workerId: "sweeper", limit: 5, leaseMs: 1_000 }), (batch) => {
              reclaimed.push(batch)
            }))
          }
          racers.push(Effect.map(store.finish(c, ok, Store.Next.Delivered({})), (applied) => {
            finished.push([c.id, applied])
          }))
        })
        yield* Effect.all(racers, { concurrency: "unbounded", discard: true })
        const reclaimedIds = reclaimed.flat().map((c) => c.id)
        assert.strictEqual(new Set(reclaimedIds).size, reclaimedIds.length, "no row reclaimed twice")
        for (const [id, applied] of finished) {
          assert.notStrictEqual(applied, reclaimedIds.includes(id), `row ${id}: finish applied XOR reclaimed`)
        }
        const stats = yield* store.stats
        assert.strictEqual(stats.delivered + stats.inFlight, n)
        assert.strictEqual(stats.inFlight, reclaimedIds.length)
      }))

    // ---- finish ----------------------------------------------------------------------------

    test("finish appends the attempt history and applies Retry, Dead and Delivered", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("f-1"), ["a", "b"])
        yield* TestClock.adjust(100)
        const first = yield* store.claim({ workerId: "w-1", limit: 10, leaseMs: 5_000 })
        const a = first.find((c) => c.target === "a")!
        const b = first.find((c) => c.target === "b")!
        const attempt = failed("http_429", { startedAt: 100, durationMs: 12, status: 429, retryAfterMs: 2_000 })
        assert.isTrue(yield* store.finish(a, attempt, Store.Next.Retry({ at: 2_100 })))
        assert.isTrue(
          yield* store.finish(
            b,
            failed("http_400", { startedAt: 100, status: 400, errorTag: "PermanentError" }),
            Store.Next.Dead({ reason: "permanent" })
          )
        )
        let status = yield* getStatus("f-1")
        const pa = deliveryOf(status, "a")
        assert.strictEqual(pa.status, "pending")
        assert.strictEqual(pa.attempts, 1)
        assert.strictEqual(pa.totalAttempts, 1)
        assert.strictEqual(pa.nextAttemptAt, 2_100)
        assert.strictEqual(pa.leaseExpiresAt, undefined)
        assert.strictEqual(pa.lastError, "http_429")
        assert.strictEqual(pa.lastErrorMessage, "http_429 happened")
        assert.deepStrictEqual(pa.history, [{
          number: 1,
          startedAt: 100,
          durationMs: 12,
          outcome: "http_429",
          status: 429,
          errorTag: "TransientError",
          message: "http_429 happened",
          retryAfterMs: 2_000,
          lease: a.lease,
          workerId: "w-1"
        }])
        const pb = deliveryOf(status, "b")
        assert.strictEqual(pb.status, "dead")
        assert.strictEqual(pb.deadReason, "permanent")
        assert.strictEqual(pb.finishedAt, 100)
        assert.strictEqual(pb.nextAttemptAt, undefined)
        yield* TestClock.adjust(2_000)
        const [again] = yield* store.claim({ workerId: "w-2", limit: 10, leaseMs: 5_000 })
        assert.strictEqual(again!.id, a.id)
        assert.strictEqual(again!.attempts, 1)
        assert.strictEqual(again!.firstAttemptAt, 100)
        assert.isTrue(yield* store.finish(again!, { ...ok, startedAt: 2_100 }, Store.Next.Delivered({})))
        status = yield* getStatus("f-1")
        const da = deliveryOf(status, "a")
        assert.strictEqual(da.status, "delivered")
        assert.strictEqual(da.finishedAt, 2_100)
        assert.strictEqual(da.attempts, 2)
        assert.deepStrictEqual(da.history.map((h) => [h.number, h.outcome, h.workerId]), [[1, "http_429", "w-1"], [
          2,
          "success",
          "w-2"
        ]])
        assert.strictEqual(da.lastError, "http_429", "a success keeps the last error for the record")
      }))

    test("extendLease moves the expiry; release hands deliveries back without counting an attempt", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("x-1"), ["a", "b"])
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
        yield* TestClock.adjust(800)
        assert.isTrue(yield* store.extendLease(claimed[0]!, 1_000))
        yield* TestClock.adjust(200)
        // claimed[1]'s lease expired at 1000; claimed[0]'s now runs to 1800
        const reclaimed = yield* store.claim({ workerId: "other", limit: 10, leaseMs: 1_000 })
        assert.deepStrictEqual(reclaimed.map((c) => c.id), [claimed[1]!.id])
        assert.strictEqual(deliveryOf(yield* getStatus("x-1"), claimed[0]!.target).leaseExpiresAt, 1_800)
        assert.strictEqual(yield* store.release([claimed[0]!, claimed[1]!, ...reclaimed]), 2)
        const status = yield* getStatus("x-1")
        for (const delivery of status.deliveries) {
          assert.strictEqual(delivery.status, "pending")
          assert.strictEqual(delivery.nextAttemptAt, 1_000)
          assert.strictEqual(delivery.attempts, 0)
          assert.deepStrictEqual(delivery.history, [])
        }
        assert.strictEqual((yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })).length, 2)
        assert.strictEqual(yield* store.release([]), 0)
      }))

    // ---- many producers, many consumers ----------------------------------------------------

    test("4 producers × 4 claimers: every delivery claimed and finished exactly once", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const producers = 4
        const perProducer = 25
        const targets = ["a", "b"]
        const expected = producers * perProducer * targets.length
        const seen = yield* Ref.make<Array<string>>([])
        const finishedCount = yield* Ref.make(0)
        const produce = (p: number) =>
          Effect.forEach(Array.from({ length: perProducer }, (_, i) => i), (i) =>
            Effect.flatMap(makeEvent(`p${p}-${String(i).padStart(3, "0")}`), (event) =>
              store.enqueue(event, targets)), {
            discard: true
          })
        const consume = (worker: number) =>
          Effect.gen(function*() {
            for (let spins = 0; spins < 200_000; spins++) {
              if ((yield* Ref.get(finishedCount)) >= expected) {
                return
              }
              const batch = yield* store.claim({ workerId: `c${worker}`, limit: 5, leaseMs: 60_000 })
              if (batch.length === 0) {
                yield* Effect.yieldNow()
                continue
              }
              for (const claim of batch) {
                yield* Ref.update(seen, (all) => [...all, `${claim.eventId}:${claim.target}`])
                const applied = yield* store.finish(claim, ok, Store.Next.Delivered({}))
                assert.isTrue(applied, `finish of ${claim.idempotencyKey}`)
                yield* Ref.update(finishedCount, (n) =>
                  n + 1)
              }
            }
            assert.fail(`consumer ${worker} gave up`)
          })
        yield* Effect.all([
          ...Array.from({ length: producers }, (_, p) =>
            produce(p)),
          ...Array.from({ length: 4 }, (_, c) => consume(c))
        ], { concurrency: "unbounded", discard: true })
        const keys = (yield* Ref.get(seen)).slice().sort()
        const enqueued = Array.from({ length: producers }, (_, p) =>
          Array.from({ length: perProducer }, (_, i) =>
            targets.map((t) =>
              `p${p}-${String(i).padStart(3, "0")}:${t}`
            ))).flat(2)
          .sort()
        assert.deepStrictEqual(keys, enqueued)
        const stats = yield* store.stats
        assert.strictEqual(stats.delivered, expected)
        assert.strictEqual(stats.depth, 0)
      }))

    // ---- dead letters ----------------------------------------------------------------------

    test("dead letters: filters by target, error label and time, and pages without gaps or repeats", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("d-1"), ["a", "b"])
        yield* store.enqueue(yield* makeEvent("d-2"), ["a", "b"])
        yield* store.enqueue(yield* makeEvent("d-3"), ["a", "b"])
        yield* store.enqueue(yield* makeEvent("alive"), ["a"])
        yield* TestClock.adjust(1_000)
        yield* killDelivery("a", "d-1", "http_400")
        yield* killDelivery("b", "d-1", "http_410")
        yield* TestClock.adjust(1_000)
        yield* killDelivery("a", "d-2", "http_400", 3)
        yield* killDelivery("b", "d-2", "timeout")
        yield* TestClock.adjust(1_000)
        yield* killDelivery("a", "d-3", "http_400")
        const all = yield* store.deadLetters({ limit: 100 })
        assert.strictEqual(all.items.length, 5)
        assert.strictEqual(all.next, undefined)
        const d2a = all.items.find((x) => x.eventId === "d-2" && x.target === "a")!
        assert.strictEqual(d2a.eventType, "order.placed")
        assert.strictEqual(d2a.idempotencyKey, "d-2:a")
        assert.strictEqual(d2a.reason, "gave up on http_400")
        assert.strictEqual(d2a.lastError, "http_400")
        assert.strictEqual(d2a.lastErrorMessage, "http_400 happened")
        assert.strictEqual(d2a.attempts, 3)
        assert.strictEqual(d2a.totalAttempts, 3)
        assert.strictEqual(d2a.deadAt, 2_000)
        assert.strictEqual(d2a.enqueuedAt, 0)
        const pairs = (page: Store.DeadLetterPage) => page.items.map((x) => `${x.eventId}:${x.target}`).sort()
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, target: "a" })), [
          "d-1:a",
          "d-2:a",
          "d-3:a"
        ])
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, errorLabel: "http_400" })), [
          "d-1:a",
          "d-2:a",
          "d-3:a"
        ])
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, target: "b", errorLabel: "timeout" })), [
          "d-2:b"
        ])
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, from: 2_000 })), [
          "d-2:a",
          "d-2:b",
          "d-3:a"
        ])
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, to: 1_000 })), ["d-1:a", "d-1:b"])
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, from: 1_500, to: 2_500 })), [
          "d-2:a",
          "d-2:b"
        ])
        assert.deepStrictEqual(pairs(yield* store.deadLetters({ limit: 100, errorLabel: "nope" })), [])
        // paging
        const pages: Array<Store.DeadLetterPage> = []
        let cursor: string | undefined
        do {
          const page: Store.DeadLetterPage = yield* store.deadLetters({ limit: 2, cursor })
          pages.push(page)
          cursor = page.next
        } while (cursor !== undefined && pages.length < 10)
        assert.deepStrictEqual(pages.map((p) => p.items.length), [2, 2, 1])
        const paged = pages.flatMap((p) => p.items.map((x) => x.id))
        assert.deepStrictEqual(paged, all.items.map((x) => x.id))
        const exact = yield* store.deadLetters({ limit: 5 })
        assert.strictEqual(exact.next, undefined, "no next page when exactly `limit` remain")
        const bad = yield* Effect.flip(store.deadLetters({ limit: 2, cursor: "garbage" }))
        assert.strictEqual(bad.reason, "InvalidInput")
      }))

    test("replay: back to pending, due now, scheduling reset; history and idempotency key kept", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("r-1"), ["a", "b"])
        yield* killDelivery("a", "r-1", "http_503", 2)
        yield* TestClock.adjust(5_000)
        const [dead] = (yield* store.deadLetters({ limit: 10 })).items
        assert.isTrue(yield* store.replay(dead!.id))
        const delivery = deliveryOf(yield* getStatus("r-1"), "a")
        assert.strictEqual(delivery.status, "pending")
        assert.strictEqual(delivery.nextAttemptAt, 5_000)
        assert.strictEqual(delivery.attempts, 0)
        assert.strictEqual(delivery.totalAttempts, 2)
        assert.strictEqual(delivery.history.length, 2)
        assert.strictEqual(delivery.deadReason, undefined)
        assert.strictEqual(delivery.idempotencyKey, "r-1:a")
        assert.deepStrictEqual((yield* store.deadLetters({ limit: 10 })).items, [])
        const [claim] = yield* store.claim({ workerId: "w", limit: 1, leaseMs: 1_000, targets: ["a"] })
        assert.strictEqual(claim!.id, dead!.id)
        assert.strictEqual(claim!.idempotencyKey, "r-1:a")
        assert.strictEqual(claim!.attempts, 0)
        assert.strictEqual(claim!.firstAttemptAt, undefined)
        // The retry budget's age counts from the replay (the worker's maxAge), not from the enqueue.
        assert.strictEqual(claim!.replayedAt, 5_000)
        assert.strictEqual(claim!.enqueuedAt, 0)
        assert.isTrue(yield* store.finish(claim!, { ...ok, startedAt: 5_000 }, Store.Next.Delivered({})))
        const after = deliveryOf(yield* getStatus("r-1"), "a")
        assert.deepStrictEqual(after.history.map((h) => h.number), [1, 2, 3])
        // only dead deliveries replay
        assert.isFalse(yield* store.replay(dead!.id))
        const pendingB = deliveryOf(yield* getStatus("r-1"), "b")
        assert.isFalse(yield* store.replay(pendingB.id))
        assert.isFalse(yield* store.replay("424242"))
        assert.isFalse(yield* store.replay("not a number"))
      }))

    test("replayMany replays exactly the dead letters matching the filter", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (const id of ["m-1", "m-2", "m-3"]) yield* store.enqueue(yield* makeEvent(id), ["a", "b"])
        yield* killDelivery("a", "m-1", "http_500")
        yield* killDelivery("a", "m-2", "http_500")
        yield* killDelivery("b", "m-2", "http_500")
        yield* killDelivery("a", "m-3", "timeout")
        assert.strictEqual(yield* store.replayMany({ target: "a", errorLabel: "http_500" }), 2)
        const left = (yield* store.deadLetters({ limit: 10 })).items.map((x) => `${x.eventId}:${x.target}`).sort()
        assert.deepStrictEqual(left, ["m-2:b", "m-3:a"])
        assert.strictEqual(deliveryOf(yield* getStatus("m-1"), "a").status, "pending")
        yield* TestClock.adjust(7_000)
        assert.strictEqual(yield* store.replayMany({ target: "b" }), 1)
        const replayed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
        assert.deepStrictEqual(
          replayed.map((c) => [`${c.eventId}:${c.target}`, c.replayedAt]).sort(),
          [["m-1:a", 0], ["m-1:b", undefined], ["m-2:a", 0], ["m-2:b", 7_000], ["m-3:b", undefined]]
        )
        yield* store.release(replayed)
        assert.strictEqual(yield* store.replayMany({ target: "nobody" }), 0)
        assert.strictEqual(yield* store.replayMany({}), 1)
        assert.strictEqual((yield* store.stats).dead, 0)
      }))

    test("resend: a finished delivery back to pending, due now, under a new idempotency key; the rest refused, unchanged", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const claimOne = (target: string) =>
          Effect.map(store.claim({ workerId: "w", limit: 10, leaseMs: 60_000, targets: [target] }), (batch) => {
            assert.strictEqual(batch.length, 1, `one claim for ${target}`)
            return batch[0]!
          })
        yield* store.enqueue(yield* makeEvent("s-1"), ["a", "b", "c"])
        const first = yield* claimOne("a")
        assert.strictEqual(first.idempotencyKey, "s-1:a")
        assert.isTrue(yield* store.finish(first, ok, Store.Next.Delivered({})))
        yield* TestClock.adjust(3_000)

        assert.deepStrictEqual(yield* store.resend("nope", "a"), { _tag: "UnknownEvent" })
        assert.deepStrictEqual(yield* store.resend("s-1", "zzz"), { _tag: "NoDelivery" })
        const b = deliveryOf(yield* getStatus("s-1"), "b")
        assert.deepStrictEqual(yield* store.resend("s-1", "b"), { _tag: "Open", id: b.id, status: "pending" })

        const resent = yield* store.resend("s-1", "a")
        assert.deepStrictEqual(resent, {
          _tag: "Resent",
          id: first.id,
          target: "a",
          idempotencyKey: "s-1:a:resend-1",
          resends: 1
        })
        const pending = deliveryOf(yield* getStatus("s-1"), "a")
        assert.deepStrictEqual(
          [
            pending.status,
            pending.nextAttemptAt,
            pending.attempts,
            pending.totalAttempts,
            pending.finishedAt,
            pending.idempotencyKey
          ],
          ["pending", 3_000, 0, 1, undefined, "s-1:a:resend-1"]
        )
        assert.deepStrictEqual(yield* store.resend("s-1", "a"), { _tag: "Open", id: first.id, status: "pending" })
        const again = yield* claimOne("a")
        assert.deepStrictEqual(
          [again.id, again.idempotencyKey, again.attempts, again.firstAttemptAt, again.replayedAt, again.enqueuedAt],
          [first.id, "s-1:a:resend-1", 0, undefined, 3_000, 0]
        )
        assert.deepStrictEqual(yield* store.resend("s-1", "a"), { _tag: "Open", id: first.id, status: "in_flight" })
        assert.isTrue(yield* store.finish(again, { ...ok, startedAt: 3_000 }, Store.Next.Delivered({})))
        const done = deliveryOf(yield* getStatus("s-1"), "a")
        assert.deepStrictEqual([done.status, done.history.map((h) => h.number)], ["delivered", [1, 2]])

        // Each resend a key of its own; its dead letter carries it.
        const second = yield* store.resend("s-1", "a")
        assert.strictEqual(second._tag === "Resent" ? second.idempotencyKey : second._tag, "s-1:a:resend-2")
        yield* killDelivery("a", "s-1", "http_400")
        const [deadA] = (yield* store.deadLetters({ limit: 10, target: "a" })).items
        assert.strictEqual(deadA!.idempotencyKey, "s-1:a:resend-2")
        assert.deepStrictEqual(yield* store.resend("s-1", "a"), { _tag: "Dead", id: first.id })
        assert.strictEqual(deliveryOf(yield* getStatus("s-1"), "a").status, "dead", "a refused resend changes nothing")

        // A compensated delivery may be resent too.
        const c = yield* claimOne("c")
        assert.isTrue(yield* store.finish(c, ok, Store.Next.Compensated()))
        const compensated = yield* store.resend("s-1", "c")
        assert.strictEqual(
          compensated._tag === "Resent" ? compensated.idempotencyKey : compensated._tag,
          "s-1:c:resend-1"
        )
      }))

    test("resend: a pipeline input sent again does not run its (delivered or held) dependents again", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const claimAllNow = () => store.claim({ workerId: "w", limit: 100, leaseMs: 60_000 })
        yield* store.enqueue(yield* makeEvent("p-1"), ["a", "b"], { after: { b: ["a"] } })
        for (const target of ["a", "b"]) {
          const [claim] = yield* claimAllNow()
          assert.strictEqual(claim?.target, target)
          assert.isTrue(yield* store.finish(claim!, ok, Store.Next.Delivered({ response: `"${target}"` })))
        }
        const resent = yield* store.resend("p-1", "a")
        assert.strictEqual(resent._tag, "Resent")
        const [a, ...none] = yield* claimAllNow()
        assert.deepStrictEqual([a?.idempotencyKey, none.length], ["p-1:a:resend-1", 0])
        assert.isTrue(yield* store.finish(a!, ok, Store.Next.Delivered({ response: "\"a again\"" })))
        const status = yield* getStatus("p-1")
        assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.status, x.waiting, x.history.length]), [
          ["a", "delivered", 0, 2],
          ["b", "delivered", 0, 1]
        ])
        assert.deepStrictEqual(yield* claimAllNow(), [])
      }))

    test("purgeTarget: every pending and dead delivery to one target goes (held dependents too), in-flight ones stay", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("o-1"), ["gone", "kept"]) // pending for gone
        yield* store.enqueue(yield* makeEvent("o-2"), ["gone"]) // dead for gone: the event goes with it
        yield* killDelivery("gone", "o-2", "http_400")
        yield* store.enqueue(yield* makeEvent("o-3"), ["gone"]) // in flight for gone: stays
        // o-3's delivery in flight, o-1's handed back (pending again)
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000, targets: ["gone"] })
        const o3 = claimed.find((c) => c.eventId === "o-3")
        assert.isDefined(o3, `o-3 claimed among ${claimed.map((c) => c.eventId).join(", ")}`)
        yield* store.release(claimed.filter((c) => c !== o3))
        yield* store.enqueue(yield* makeEvent("o-4"), ["gone", "after-gone"], { after: { "after-gone": ["gone"] } })

        const removed = yield* store.purgeTarget("gone")
        // o-1:gone, o-2:gone (dead), o-4:gone and its held dependent o-4:after-gone
        assert.deepStrictEqual(removed, { deliveries: 4, events: 2 })
        assert.deepStrictEqual((yield* getStatus("o-1")).deliveries.map((d) => d.target), ["kept"])
        assert.isTrue(Option.isNone(yield* store.status("o-2")))
        assert.isTrue(Option.isNone(yield* store.status("o-4")))
        assert.deepStrictEqual((yield* getStatus("o-3")).deliveries.map((d) => [d.target, d.status]), [[
          "gone",
          "in_flight"
        ]])
        assert.deepStrictEqual((yield* store.deadLetters({ limit: 10 })).items, [])
        assert.deepStrictEqual(yield* store.purgeTarget("gone"), { deliveries: 0, events: 0 })
        assert.deepStrictEqual(yield* store.purgeTarget("nobody"), { deliveries: 0, events: 0 })
        assert.isTrue(yield* store.finish(o3!, ok, Store.Next.Delivered({})), "the in-flight lease still holds")
      }))

    test("purge deletes dead letters (by id or filter) with their history, and events left empty", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (const id of ["p-1", "p-2", "p-3"]) yield* store.enqueue(yield* makeEvent(id), ["a", "b"])
        yield* killDelivery("a", "p-1", "http_400")
        yield* killDelivery("b", "p-1", "http_400")
        yield* killDelivery("a", "p-2", "http_404")
        yield* killDelivery("a", "p-3", "http_400")
        const dead = (yield* store.deadLetters({ limit: 10 })).items
        const p2a = dead.find((x) => x.eventId === "p-2")!
        assert.strictEqual(yield* store.purge(p2a.id), 1)
        const p2 = yield* getStatus("p-2")
        assert.deepStrictEqual(p2.deliveries.map((x) => x.target), ["b"], "the event keeps its other delivery")
        // a pending delivery is not a dead letter: purge leaves it
        assert.strictEqual(yield* store.purge(deliveryOf(p2, "b").id), 0)
        assert.strictEqual(yield* store.purge("999999"), 0)
        assert.strictEqual(yield* store.purge({ errorLabel: "http_400", target: "b" }), 1)
        assert.strictEqual(yield* store.purge({ errorLabel: "http_400" }), 2)
        assert.isTrue(Option.isNone(yield* store.status("p-1")), "p-1 had only dead deliveries: gone")
        assert.deepStrictEqual((yield* getStatus("p-3")).deliveries.map((x) => x.target), ["b"])
        assert.deepStrictEqual((yield* store.deadLetters({ limit: 10 })).items, [])
        const stats = yield* store.stats
        assert.strictEqual(stats.dead, 0)
        assert.strictEqual(stats.pending, 2)
        // a purged event id can be enqueued afresh
        assert.isTrue((yield* store.enqueue(yield* makeEvent("p-1"), ["a"])).created)
      }))

    // ---- dependencies (durable pipelines) --------------------------------------------------

    const claimAll = (targets?: ReadonlyArray<string>) =>
      Effect.flatMap(
        Store.DeliveryStore,
        (store) =>
          store.claim({ workerId: "w", limit: 100, leaseMs: 60_000, ...(targets !== undefined ? { targets } : {}) })
      )
    const keysOf = (claimed: ReadonlyArray<Store.Claimed>) => claimed.map((c) => c.idempotencyKey).sort()
    const delivered = (response?: string) => Store.Next.Delivered(response === undefined ? {} : { response })

    test("dependencies: a dependent is held until all its inputs are delivered, then due at once with their answers", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(1_000)
        const result = yield* store.enqueue(yield* makeEvent("pipe"), ["a", "b", "c"], { after: { c: ["a", "b"] } })
        assert.isTrue(result.created)
        assert.deepStrictEqual(result.deliveries.map((x) => [x.target, x.status]), [
          ["a", "pending"],
          ["b", "pending"],
          [
            "c",
            "pending"
          ]
        ])
        let status = yield* getStatus("pipe")
        assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.after, x.waiting]), [
          ["a", [], 0],
          ["b", [], 0],
          ["c", ["a", "b"], 2]
        ])
        // a plain event alongside: its claim carries no inputs
        yield* store.enqueue(yield* makeEvent("plain"), ["c"])
        assert.deepStrictEqual(deliveryOf(yield* getStatus("plain"), "c").after, [])
        assert.strictEqual(deliveryOf(yield* getStatus("plain"), "c").waiting, 0)

        const first = yield* claimAll()
        assert.deepStrictEqual(keysOf(first), ["pipe:a", "pipe:b", "plain:c"])
        const a = first.find((c) => c.idempotencyKey === "pipe:a")!
        const b = first.find((c) => c.idempotencyKey === "pipe:b")!
        const plain = first.find((c) => c.idempotencyKey === "plain:c")!
        assert.deepStrictEqual([a.after, a.inputs, a.dependents], [[], {}, 1])
        assert.deepStrictEqual([b.after, b.inputs, b.dependents], [[], {}, 1])
        assert.deepStrictEqual([plain.after, plain.inputs, plain.dependents], [[], {}, 0])
        assert.isTrue(yield* store.finish(plain, ok, delivered()))

        // one input delivered: still held, whatever the clock says
        yield* TestClock.adjust(500)
        assert.isTrue(yield* store.finish(a, ok, delivered(JSON.stringify({ stock: 7 }))))
        assert.deepStrictEqual(yield* claimAll(), [])
        assert.strictEqual(deliveryOf(yield* getStatus("pipe"), "c").waiting, 1)
        // a retry of the other input releases nothing
        assert.isTrue(yield* store.finish(b, failed("http_503"), Store.Next.Retry({ at: 3_000 })))
        yield* TestClock.adjust(100_000)
        const [b2] = yield* claimAll()
        assert.strictEqual(b2!.idempotencyKey, "pipe:b")
        assert.deepStrictEqual(yield* claimAll(["c"]), [])
        assert.strictEqual(deliveryOf(yield* getStatus("pipe"), "c").status, "pending")

        // the last input delivered: due at once (no clock move), with both stored answers
        assert.isTrue(yield* store.finish(b2!, ok, delivered("\"b-answer\"")))
        status = yield* getStatus("pipe")
        const held = deliveryOf(status, "c")
        assert.strictEqual(held.waiting, 0)
        assert.isAtMost(held.nextAttemptAt!, yield* TestClock.currentTimeMillis)
        const [c] = yield* claimAll()
        assert.isDefined(c)
        assert.strictEqual(c!.idempotencyKey, "pipe:c")
        assert.deepStrictEqual(c!.after, ["a", "b"])
        assert.strictEqual(c!.dependents, 0)
        assert.deepStrictEqual(Object.keys(c!.inputs).sort(), ["a", "b"])
        assert.strictEqual(c!.inputs.a, JSON.stringify({ stock: 7 }))
        assert.strictEqual(c!.inputs.b, "\"b-answer\"")
        assert.isTrue(yield* store.finish(c!, ok, delivered("\"ignored: no dependents\"")))
        assert.deepStrictEqual((yield* getStatus("pipe")).deliveries.map((x) => x.status), [
          "delivered",
          "delivered",
          "delivered"
        ])
      }))

    test("dependencies: held deliveries take no claim slots and do not count as due work", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (let i = 0; i < 5; i++) {
          yield* store.enqueue(yield* makeEvent(`held-${i}`), ["first", "second"], { after: { second: ["first"] } })
        }
        yield* TestClock.adjust(10)
        yield* store.enqueue(yield* makeEvent("free"), ["second"])
        // the five held `second` rows are older, yet the one due row is found with limit 1
        const [one] = yield* store.claim({ workerId: "w", limit: 1, leaseMs: 1_000, targets: ["second"] })
        assert.strictEqual(one?.idempotencyKey, "free:second")
        const stats = yield* store.stats
        assert.strictEqual(stats.targets.second?.pending, 5, "held rows are pending")
        assert.strictEqual(stats.targets.second?.inFlight, 1)
      }))

    test("dependencies: a diamond and a chain release step by step; after is normalised to enqueue order", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        // a → (b, c) → d; inputs given out of order and repeated
        yield* store.enqueue(yield* makeEvent("diamond"), ["a", "b", "c", "d"], {
          after: { b: ["a"], c: ["a"], d: ["c", "b", "c"] }
        })
        const status = yield* getStatus("diamond")
        assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.after, x.waiting]), [
          ["a", [], 0],
          ["b", ["a"], 1],
          ["c", ["a"], 1],
          ["d", ["b", "c"], 2]
        ])
        const [a, ...none] = yield* claimAll()
        assert.deepStrictEqual([a?.idempotencyKey, none.length], ["diamond:a", 0])
        assert.strictEqual(a!.dependents, 2)
        assert.isTrue(yield* store.finish(a!, ok, delivered("\"A\"")))
        const middle = yield* claimAll()
        assert.deepStrictEqual(keysOf(middle), ["diamond:b", "diamond:c"])
        for (const m of middle) {
          assert.deepStrictEqual(m.after, ["a"])
          assert.deepStrictEqual(m.inputs, { a: "\"A\"" })
          assert.strictEqual(m.dependents, 1)
        }
        const b = middle.find((m) => m.target === "b")!
        const c = middle.find((m) => m.target === "c")!
        // b delivered without an answer: d sees undefined for it
        assert.isTrue(yield* store.finish(b, ok, delivered()))
        assert.deepStrictEqual(yield* claimAll(), [])
        assert.isTrue(yield* store.finish(c, ok, delivered("\"C\"")))
        const [d] = yield* claimAll()
        assert.strictEqual(d?.idempotencyKey, "diamond:d")
        assert.deepStrictEqual(d!.after, ["b", "c"])
        assert.strictEqual(d!.inputs.b, undefined)
        assert.strictEqual(d!.inputs.c, "\"C\"")

        // c after a and b; d after c
        yield* store.enqueue(yield* makeEvent("chain"), ["a", "b", "c", "d"], { after: { c: ["a", "b"], d: ["c"] } })
        const ab = yield* claimAll()
        assert.deepStrictEqual(keysOf(ab), ["chain:a", "chain:b"])
        for (const x of ab) assert.isTrue(yield* store.finish(x, ok, delivered(`"${x.target}"`)))
        const [cc, ...rest] = yield* claimAll()
        assert.deepStrictEqual([cc?.idempotencyKey, rest.length], ["chain:c", 0])
        assert.deepStrictEqual(cc!.inputs, { a: "\"a\"", b: "\"b\"" })
        assert.strictEqual(deliveryOf(yield* getStatus("chain"), "d").waiting, 1)
        assert.isTrue(yield* store.finish(cc!, ok, delivered("\"c\"")))
        const [dd] = yield* claimAll()
        assert.strictEqual(dd?.idempotencyKey, "chain:d")
        assert.deepStrictEqual(dd!.inputs, { c: "\"c\"" })
      }))

    test("dependencies: a dead input holds its dependents (not dead letters, not claimable); replay + delivery releases them", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("stuck"), ["a", "b", "c"], { after: { b: ["a"], c: ["b"] } })
        yield* killDelivery("a", "stuck", "http_400", 2)
        let status = yield* getStatus("stuck")
        assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.status, x.waiting]), [
          ["a", "dead", 0],
          ["b", "pending", 1],
          ["c", "pending", 1]
        ])
        const dead = (yield* store.deadLetters({ limit: 10 })).items
        assert.deepStrictEqual(dead.map((x) => x.idempotencyKey), ["stuck:a"])
        yield* TestClock.adjust(1_000_000)
        assert.deepStrictEqual(yield* claimAll(), [])
        const stats = yield* store.stats
        assert.deepStrictEqual([stats.pending, stats.dead, stats.inFlight], [2, 1, 0])
        // replayed: the input runs again; its dependents stay held until it is delivered
        assert.isTrue(yield* store.replay(dead[0]!.id))
        const [a] = yield* claimAll()
        assert.strictEqual(a?.idempotencyKey, "stuck:a")
        assert.isTrue(yield* store.finish(a!, failed("http_503"), Store.Next.Retry({ at: 0 })))
        const [again, ...none] = yield* claimAll()
        assert.deepStrictEqual([again?.idempotencyKey, none.length], ["stuck:a", 0])
        assert.isTrue(yield* store.finish(again!, ok, delivered("\"finally\"")))
        status = yield* getStatus("stuck")
        assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.status, x.waiting]), [
          ["a", "delivered", 0],
          ["b", "pending", 0],
          ["c", "pending", 1]
        ])
        const [b] = yield* claimAll()
        assert.strictEqual(b?.idempotencyKey, "stuck:b")
        assert.deepStrictEqual(b!.inputs, { a: "\"finally\"" })
        // a compensated input releases nothing either
        yield* store.enqueue(yield* makeEvent("saga"), ["a", "b"], { after: { b: ["a"] } })
        const [sa] = yield* claimAll(["a"])
        assert.isTrue(yield* store.finish(sa!, ok, Store.Next.Compensated()))
        assert.deepStrictEqual(yield* claimAll(), [])
        assert.strictEqual(deliveryOf(yield* getStatus("saga"), "b").waiting, 1)
      }))

    test("dependencies: a fenced (lost-lease) Delivered releases nothing, and a finished lease cannot release twice", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("fenced"), ["a", "x", "b"], { after: { b: ["a", "x"] } })
        const [stale] = yield* claimAll(["a"])
        yield* TestClock.adjust(60_000)
        const [live] = yield* claimAll(["a"])
        assert.strictEqual(live?.id, stale!.id)
        assert.isFalse(yield* store.finish(stale!, ok, delivered("\"stale\"")))
        assert.strictEqual(deliveryOf(yield* getStatus("fenced"), "b").waiting, 2)
        assert.isTrue(yield* store.finish(live!, ok, delivered("\"live\"")))
        assert.strictEqual(deliveryOf(yield* getStatus("fenced"), "b").waiting, 1)
        assert.isFalse(yield* store.finish(live!, ok, delivered("\"twice\"")))
        assert.isFalse(yield* store.finish(stale!, ok, delivered("\"stale again\"")))
        assert.strictEqual(deliveryOf(yield* getStatus("fenced"), "b").waiting, 1)
        const [x, ...none] = yield* claimAll()
        assert.deepStrictEqual([x?.idempotencyKey, none.length], ["fenced:x", 0])
        assert.isTrue(yield* store.finish(x!, ok, delivered()))
        const [b] = yield* claimAll()
        assert.strictEqual(b?.idempotencyKey, "fenced:b")
        assert.strictEqual(b!.inputs.a, "\"live\"")
      }))

    test("dependencies: bad after (unknown target, self, cycle) fails InvalidInput and writes nothing", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const event = yield* makeEvent("bad-after")
        const cases: ReadonlyArray<Store.Dependencies> = [
          { z: ["a"] },
          { b: ["z"] },
          { a: ["a"] },
          { a: ["b"], b: ["a"] },
          { a: ["c"], b: ["a"], c: ["b"] },
          { b: "a" as unknown as ReadonlyArray<string> },
          { b: [1 as unknown as string] }
        ]
        for (const after of cases) {
          const error = yield* storeError(store.enqueue(event, ["a", "b", "c"], { after }))
          assert.strictEqual(error._tag, "StoreError", JSON.stringify(after))
          assert.strictEqual(error.reason, "InvalidInput", JSON.stringify(after))
        }
        assert.isTrue(Option.isNone(yield* store.status("bad-after")))
        assert.strictEqual((yield* store.stats).depth, 0)
        assert.deepStrictEqual(yield* claimAll(), [])
        // the id is still free; an empty after is a plain enqueue
        const plain = yield* store.enqueue(event, ["a", "b"], { after: {} })
        assert.isTrue(plain.created)
        assert.deepStrictEqual((yield* getStatus("bad-after")).deliveries.map((x) => [x.after, x.waiting]), [[[], 0], [
          [],
          0
        ]])
        const empty = yield* store.enqueue(yield* makeEvent("empty-inputs"), ["a", "b"], { after: { b: [] } })
        assert.isTrue(empty.created)
        assert.strictEqual((yield* claimAll()).length, 4)
      }))

    test("dependencies: a duplicate enqueue (with or without after) writes nothing", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const first = yield* store.enqueue(yield* makeEvent("dup-pipe", { v: 1 }), ["a", "b"], { after: { b: ["a"] } })
        const before = yield* getStatus("dup-pipe")
        const again = yield* store.enqueue(yield* makeEvent("dup-pipe", { v: 1 }), ["a", "b", "c"], {
          after: { a: ["b", "c"] }
        })
        const plain = yield* store.enqueue(yield* makeEvent("dup-pipe", { v: 1 }), ["a", "b"])
        assert.isTrue(first.created)
        assert.isFalse(again.created)
        assert.isFalse(plain.created)
        assert.deepStrictEqual(again.deliveries, first.deliveries)
        assert.deepStrictEqual(plain.deliveries, first.deliveries)
        assert.deepStrictEqual(yield* getStatus("dup-pipe"), before)
        const [a, ...none] = yield* claimAll()
        assert.deepStrictEqual([a?.idempotencyKey, none.length, a?.dependents], ["dup-pipe:a", 0, 1])
      }))

    test("dependencies: retention and purge remove pipelined deliveries cleanly; the id can be reused afresh", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("done-pipe"), ["a", "b", "c"], { after: { c: ["a", "b"] } })
        yield* store.enqueue(yield* makeEvent("dead-pipe"), ["a", "b"], { after: { b: ["a"] } })
        for (const x of yield* claimAll()) {
          if (x.eventId === "done-pipe") assert.isTrue(yield* store.finish(x, ok, delivered(`"${x.target}"`)))
          else assert.isTrue(yield* store.finish(x, ok, delivered("\"a\"")))
        }
        for (const x of yield* claimAll()) {
          if (x.eventId === "done-pipe") assert.isTrue(yield* store.finish(x, ok, delivered()))
          else assert.isTrue(yield* store.finish(x, failed("http_400"), Store.Next.Dead({ reason: "no" })))
        }
        yield* TestClock.adjust(10)
        // dead-pipe:a is kept: its dependent b is dead, and a replay of b would need a's answer
        assert.deepStrictEqual(yield* store.retention(5), { deliveries: 3, events: 1 })
        assert.isTrue(Option.isNone(yield* store.status("done-pipe")))
        assert.strictEqual(deliveryOf(yield* getStatus("dead-pipe"), "a").status, "delivered")
        const [deadB] = (yield* store.deadLetters({ limit: 10 })).items
        assert.strictEqual(deadB?.idempotencyKey, "dead-pipe:b")
        assert.strictEqual(yield* store.purge(deadB!.id), 1)
        // b gone: a's answer is needed no more
        assert.deepStrictEqual(yield* store.retention(5), { deliveries: 1, events: 1 })
        assert.isTrue(Option.isNone(yield* store.status("dead-pipe")), "the event had nothing left")
        assert.deepStrictEqual(yield* store.stats, {
          pending: 0,
          inFlight: 0,
          delivered: 0,
          dead: 0,
          compensated: 0,
          depth: 0,
          oldestPendingAgeMs: 0,
          targets: (yield* store.stats).targets
        })
        // the same ids enqueued again start from scratch: nothing of the old pipelines leaks in
        yield* store.enqueue(yield* makeEvent("done-pipe"), ["a", "b", "c"], { after: { c: ["b"] } })
        yield* store.enqueue(yield* makeEvent("dead-pipe"), ["a", "b"])
        assert.deepStrictEqual((yield* getStatus("done-pipe")).deliveries.map((x) => [x.target, x.after, x.waiting]), [
          ["a", [], 0],
          ["b", [], 0],
          ["c", ["b"], 1]
        ])
        const fresh = yield* claimAll()
        assert.deepStrictEqual(keysOf(fresh), ["dead-pipe:a", "dead-pipe:b", "done-pipe:a", "done-pipe:b"])
        const a = fresh.find((x) => x.idempotencyKey === "done-pipe:a")!
        assert.strictEqual(a.dependents, 0)
        assert.isTrue(yield* store.finish(a, ok, delivered("\"new a\"")))
        assert.deepStrictEqual(yield* claimAll(), [], "c waits for b only")
        const b = fresh.find((x) => x.idempotencyKey === "done-pipe:b")!
        assert.isTrue(yield* store.finish(b, ok, delivered("\"new b\"")))
        const [c] = yield* claimAll()
        assert.deepStrictEqual(c?.inputs, { b: "\"new b\"" })
      }))

    test("dependencies: retention keeps an input's answer while a dependent still needs it", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("keep"), ["a", "b", "c"], { after: { c: ["a", "b"] } })
        for (const x of yield* claimAll()) {
          if (x.target === "a") assert.isTrue(yield* store.finish(x, ok, delivered("\"kept\"")))
          else assert.isTrue(yield* store.finish(x, failed("http_400"), Store.Next.Dead({ reason: "no" })))
        }
        yield* TestClock.adjust(100)
        assert.deepStrictEqual(yield* store.retention(5), { deliveries: 0, events: 0 })
        const b = deliveryOf(yield* getStatus("keep"), "b")
        assert.isTrue(yield* store.replay(b.id))
        const [b2] = yield* claimAll()
        assert.isTrue(yield* store.finish(b2!, ok, delivered("\"b\"")))
        const [c] = yield* claimAll()
        assert.deepStrictEqual(c?.inputs, { a: "\"kept\"", b: "\"b\"" })
      }))

    test("dependencies: purging a dead input removes the dependents it held, transitively", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("cascade"), ["a", "b", "c", "d"], { after: { c: ["a", "b"], d: ["c"] } })
        for (const x of yield* claimAll()) {
          if (x.target === "b") assert.isTrue(yield* store.finish(x, ok, delivered("\"b\"")))
          else assert.isTrue(yield* store.finish(x, failed("http_400"), Store.Next.Dead({ reason: "no" })))
        }
        const a = deliveryOf(yield* getStatus("cascade"), "a")
        // a, and c and d which could never run without it; b (delivered) stays
        assert.strictEqual(yield* store.purge(a.id), 3)
        assert.deepStrictEqual((yield* getStatus("cascade")).deliveries.map((x) => [x.target, x.status]), [[
          "b",
          "delivered"
        ]])
        const stats = yield* store.stats
        assert.strictEqual(stats.depth, 0)
      }))

    test("keepAnswers: every delivery's answer is stored and shown by status; a plain event stores none", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("kept"), ["a", "b", "c"], { after: { c: ["a"] }, keepAnswers: true })
        yield* store.enqueue(yield* makeEvent("plain"), ["a"])
        const first = yield* claimAll()
        assert.deepStrictEqual(first.map((x) => [x.idempotencyKey, x.dependents]).sort(), [
          ["kept:a", 2],
          ["kept:b", 1],
          ["plain:a", 0]
        ])
        for (const x of first) assert.isTrue(yield* store.finish(x, ok, delivered(`"${x.idempotencyKey}"`)))
        const [c] = yield* claimAll()
        assert.strictEqual(c?.dependents, 1)
        assert.deepStrictEqual(c?.inputs, { a: "\"kept:a\"" })
        assert.isTrue(yield* store.finish(c!, ok, delivered("{\"c\":true}")))
        assert.deepStrictEqual((yield* getStatus("kept")).deliveries.map((x) => [x.target, x.response]), [
          ["a", "\"kept:a\""],
          ["b", "\"kept:b\""],
          ["c", "{\"c\":true}"]
        ])
        assert.strictEqual(deliveryOf(yield* getStatus("plain"), "a").response, undefined)
      }))

    test("wakeups signal a dependent made due by its last input's delivery", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* makeEvent("wake-pipe"), ["a", "b"], { after: { b: ["a"] } })
        const [a] = yield* claimAll()
        const woken = yield* Ref.make(0)
        const fiber = yield* Effect.fork(Stream.runForEach(store.wakeups, () => Ref.update(woken, (n) => n + 1)))
        // the subscription starts asynchronously: release and re-claim a plain row until it hears one
        yield* store.enqueue(yield* makeEvent("wake-plain"), ["x"])
        for (let i = 0; i < 50 && (yield* Ref.get(woken)) === 0; i++) {
          yield* store.release(yield* claimAll(["x"]))
          for (let j = 0; j < 20; j++) yield* Effect.yieldNow()
        }
        assert.isAbove(yield* Ref.get(woken), 0, "subscribed")
        for (let j = 0; j < 100; j++) yield* Effect.yieldNow()
        const before = yield* Ref.get(woken)
        assert.isTrue(yield* store.finish(a!, ok, delivered()))
        for (let i = 0; i < 1_000 && (yield* Ref.get(woken)) === before; i++) yield* Effect.yieldNow()
        assert.isAbove(yield* Ref.get(woken), before, "woken by the delivery that released b")
        yield* Fiber.interrupt(fiber)
      }))

    // ---- stats and retention ---------------------------------------------------------------

    test("stats: depth, oldest pending age, counts overall and per target", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const empty = yield* store.stats
        assert.deepStrictEqual(empty, {
          pending: 0,
          inFlight: 0,
          delivered: 0,
          dead: 0,
          compensated: 0,
          depth: 0,
          oldestPendingAgeMs: 0,
          targets: {}
        })
        yield* TestClock.adjust(1_000)
        yield* store.enqueue(yield* makeEvent("s-1"), ["a", "b"])
        yield* TestClock.adjust(1_000)
        yield* store.enqueue(yield* makeEvent("s-2"), ["a", "b"])
        yield* store.enqueue(yield* makeEvent("s-3"), ["a"])
        yield* TestClock.adjust(500)
        const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000, targets: ["b"] })
        assert.strictEqual(claimed.length, 2)
        yield* store.finish(claimed[0]!, ok, Store.Next.Delivered({}))
        yield* killDelivery("a", "s-1", "http_400")
        const stats = yield* store.stats
        assert.strictEqual(stats.pending, 2)
        assert.strictEqual(stats.inFlight, 1)
        assert.strictEqual(stats.delivered, 1)
        assert.strictEqual(stats.dead, 1)
        assert.strictEqual(stats.depth, 3)
        // the oldest pending or in-flight delivery was enqueued at 1 000 (s-1 → b, or s-2's) — see which is left
        const left = claimed[0]!.eventId === "s-1" ? 2_000 : 1_000
        assert.strictEqual(stats.oldestPendingAgeMs, 2_500 - left)
        assert.deepStrictEqual(stats.targets.a, { pending: 2, inFlight: 0, delivered: 0, dead: 1, compensated: 0 })
        assert.deepStrictEqual(stats.targets.b, { pending: 0, inFlight: 1, delivered: 1, dead: 0, compensated: 0 })
      }))

    test("retention deletes old delivered rows only, and events left with no delivery", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (const id of ["old-1", "old-2", "new-1"]) {
          yield* store.enqueue(yield* makeEvent(id), id === "old-2" ? ["a", "b"] : ["a"])
        }
        yield* store.enqueue(yield* makeEvent("stuck"), ["a", "b", "c"])
        // at t=0: old-1 → a delivered; old-2 → a delivered, → b still pending; stuck → a dead, b in flight, c pending
        const claimA = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000_000, targets: ["a"] })
        for (const c of claimA) {
          if (c.eventId === "old-1" || c.eventId === "old-2") yield* store.finish(c, ok, Store.Next.Delivered({}))
          if (c.eventId === "stuck") yield* store.finish(c, failed("http_400"), Store.Next.Dead({ reason: "x" }))
          if (c.eventId === "new-1") yield* store.release([c])
        }
        yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000_000, targets: ["b"] }).pipe(
          Effect.flatMap((cs) => store.release(cs.filter((c) => c.eventId === "old-2")))
        )
        yield* TestClock.adjust(100_000)
        const newA = (yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000, targets: ["a"] }))
          .find((c) => c.eventId === "new-1")!
        yield* store.finish(newA, ok, Store.Next.Delivered({}))
        const removed = yield* store.retention("1 minute")
        assert.deepStrictEqual(removed, { deliveries: 2, events: 1 })
        assert.isTrue(Option.isNone(yield* store.status("old-1")))
        assert.deepStrictEqual((yield* getStatus("old-2")).deliveries.map((x) => [x.target, x.status]), [[
          "b",
          "pending"
        ]])
        assert.strictEqual(deliveryOf(yield* getStatus("new-1"), "a").status, "delivered")
        const stuck = yield* getStatus("stuck")
        assert.deepStrictEqual(stuck.deliveries.map((x) => [x.target, x.status]), [["a", "dead"], ["b", "in_flight"], [
          "c",
          "pending"
        ]])
        assert.deepStrictEqual(yield* store.retention("1 minute"), { deliveries: 0, events: 0 })
        yield* TestClock.adjust(1)
        assert.deepStrictEqual(yield* store.retention(0), { deliveries: 1, events: 1 })
      }))

    test("retention works in chunks past 1 000 rows", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const n = 1_005
        yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
          Effect.flatMap(makeEvent(`bulk-${i}`), (e) => store.enqueue(e, ["a"])), { concurrency: 16, discard: true })
        let finished = 0
        while (finished < n) {
          const batch = yield* store.claim({ workerId: "w", limit: 200, leaseMs: 60_000 })
          yield* Effect.forEach(batch, (c) =>
            store.finish(c, ok, Store.Next.Delivered({})), { concurrency: 16, discard: true })
          finished += batch.length
          if (batch.length === 0) {
            assert.fail("ran dry")
          }
        }
        yield* TestClock.adjust(10)
        assert.deepStrictEqual(yield* store.retention(5), { deliveries: n, events: n })
        assert.strictEqual((yield* store.stats).delivered, 0)
      }))

    // ---- wake-ups and diagnostics ----------------------------------------------------------

    test("wakeups signal new work (enqueue, replay, release)", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const woken = yield* Ref.make(0)
        const fiber = yield* Effect.fork(Stream.runForEach(store.wakeups, () => Ref.update(woken, (n) => n + 1)))
        const until = (label: string, act: Effect.Effect<unknown, Store.StoreError | Store.ConflictError>) =>
          Effect.gen(function*() {
            const before = yield* Ref.get(woken)
            yield* act
            for (let i = 0; i < 1_000 && (yield* Ref.get(woken)) === before; i++) yield* Effect.yieldNow()
            assert.isAbove(yield* Ref.get(woken), before, `woken by ${label}`)
          })
        // the subscription starts asynchronously: enqueue until the first signal arrives
        for (let i = 0; i < 50 && (yield* Ref.get(woken)) === 0; i++) {
          yield* store.enqueue(yield* makeEvent(`w-${i}`), ["a"])
          for (let j = 0; j < 20; j++) yield* Effect.yieldNow()
        }
        assert.isAbove(yield* Ref.get(woken), 0, "woken by enqueue")
        yield* until("enqueue", Effect.flatMap(makeEvent("w-next"), (e) => store.enqueue(e, ["a"])))
        const claimed = yield* store.claim({ workerId: "w", limit: 2, leaseMs: 1_000 })
        yield* until("release", store.release(claimed))
        yield* killDelivery("a", "w-next", "http_500")
        const [dead] = (yield* store.deadLetters({ limit: 1 })).items
        yield* until("replay", store.replay(dead!.id))
        yield* Fiber.interrupt(fiber)
      }))

    test("diagnostics count write operations", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const before = yield* store.diagnostics
        yield* store.enqueue(yield* makeEvent("diag"), ["a"])
        const [claim] = yield* store.claim({ workerId: "w", limit: 1, leaseMs: 1_000 })
        yield* store.finish(claim!, ok, Store.Next.Delivered({}))
        const after = yield* store.diagnostics
        assert.strictEqual(after.writeOperations - before.writeOperations, 3)
        assert.isAtLeast(after.writeTransactions - before.writeTransactions, 1)
        assert.isAtMost(after.writeTransactions - before.writeTransactions, 3)
      }))

    // ---- event search ----------------------------------------------------------------------

    const typed = (type: string, id: string) => Effect.orDie(Event.make(type, { id }, { id }))
    const ids = (page: Store.EventPage) => page.items.map((item) => item.id)
    /** Every page of a query, in order, with its size. */
    const allPages = (query: Omit<Store.EventQuery, "cursor">) =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        const pages: Array<Array<string>> = []
        let cursor: string | undefined
        do {
          const page = yield* store.events({ ...query, cursor })
          pages.push(ids(page))
          cursor = page.next
          assert.isAtMost(pages.length, 50, "the cursor makes progress")
        } while (cursor !== undefined)
        return pages
      })

    test("events: newest first (enqueue time, then id), paged by an opaque cursor, none skipped or repeated", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        // Two at the same instant (ordered by id between them), the others 10 ms apart.
        for (const [i, id] of ["ev-1", "ev-2", "ev-3", "ev-4", "ev-5", "ev-6", "ev-7"].entries()) {
          if (i !== 3) yield* TestClock.adjust(10)
          yield* store.enqueue(yield* typed("order.placed", id), ["a"])
        }
        const expected = ["ev-7", "ev-6", "ev-5", "ev-4", "ev-3", "ev-2", "ev-1"]
        const first = yield* store.events({ limit: 100 })
        assert.deepStrictEqual(ids(first), expected)
        assert.isUndefined(first.next)
        assert.deepStrictEqual(first.items[0]!.deliveries.map((d) => [d.target, d.status]), [["a", "pending"]])
        assert.strictEqual(first.items[0]!.type, "order.placed")
        assert.strictEqual(first.items[6]!.enqueuedAt, 10)
        assert.deepStrictEqual(yield* allPages({ limit: 3 }), [["ev-7", "ev-6", "ev-5"], ["ev-4", "ev-3", "ev-2"], [
          "ev-1"
        ]])
        // A page exactly full says no more only when nothing follows.
        assert.deepStrictEqual(yield* allPages({ limit: 7 }), [expected])
        // An event enqueued after a page was read does not shift the next page.
        const page = yield* store.events({ limit: 2 })
        yield* TestClock.adjust(10)
        yield* store.enqueue(yield* typed("order.placed", "ev-8"), ["a"])
        assert.deepStrictEqual(ids(yield* store.events({ limit: 2, cursor: page.next })), ["ev-5", "ev-4"])
      }))

    test("events: type, target, status and time range narrow, alone and together", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* TestClock.adjust(100)
        yield* store.enqueue(yield* typed("order.placed", "o-1"), ["a", "b"]) // t=100
        yield* TestClock.adjust(100)
        yield* store.enqueue(yield* typed("user.created", "u-1"), ["b"]) // t=200
        yield* TestClock.adjust(100)
        yield* store.enqueue(yield* typed("order.placed", "o-2"), ["a"]) // t=300
        yield* TestClock.adjust(100)
        yield* store.enqueue(yield* typed("order.placed", "o-3"), ["c"]) // t=400
        yield* killDelivery("a", "o-1", "http_400")
        // o-2 → a delivered; o-3 → c in flight.
        const claims = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000, targets: ["a"] })
        const o2 = claims.find((c) => c.eventId === "o-2")!
        assert.isTrue(yield* store.finish(o2, ok, Store.Next.Delivered({})))
        yield* store.release(claims.filter((c) => c !== o2))
        yield* store.claim({ workerId: "w", limit: 10, leaseMs: 60_000, targets: ["c"] })

        const find = (query: Omit<Store.EventQuery, "limit">) => Effect.map(store.events({ limit: 100, ...query }), ids)
        assert.deepStrictEqual(yield* find({ type: "order.placed" }), ["o-3", "o-2", "o-1"])
        assert.deepStrictEqual(yield* find({ type: "user.created" }), ["u-1"])
        assert.deepStrictEqual(yield* find({ type: "nope" }), [])
        assert.deepStrictEqual(yield* find({ target: "b" }), ["u-1", "o-1"])
        assert.deepStrictEqual(yield* find({ status: "dead" }), ["o-1"])
        assert.deepStrictEqual(yield* find({ status: "delivered" }), ["o-2"])
        assert.deepStrictEqual(yield* find({ status: "in_flight" }), ["o-3"])
        assert.deepStrictEqual(yield* find({ status: "pending" }), ["u-1", "o-1"])
        assert.deepStrictEqual(yield* find({ status: "compensated" }), [])
        // Status and target together: a delivery to that target in that status.
        assert.deepStrictEqual(yield* find({ status: "pending", target: "b" }), ["u-1", "o-1"])
        assert.deepStrictEqual(yield* find({ status: "pending", target: "a" }), [])
        assert.deepStrictEqual(yield* find({ status: "dead", target: "b" }), [])
        assert.deepStrictEqual(yield* find({ status: "delivered", target: "a", type: "order.placed" }), ["o-2"])
        // Time range, inclusive.
        assert.deepStrictEqual(yield* find({ since: 200, until: 300 }), ["o-2", "u-1"])
        assert.deepStrictEqual(yield* find({ since: 301 }), ["o-3"])
        assert.deepStrictEqual(yield* find({ until: 100, type: "order.placed" }), ["o-1"])
        assert.deepStrictEqual(yield* find({ since: 100, status: "pending", type: "user.created" }), ["u-1"])
        // Each item carries its deliveries' states.
        const [o1] = (yield* store.events({ limit: 1, status: "dead" })).items
        assert.deepStrictEqual(
          o1!.deliveries.map((d) => [d.target, d.status]).sort(),
          [["a", "dead"], ["b", "pending"]]
        )
        // Filtered pages page too, on the driving index of each kind.
        assert.deepStrictEqual(yield* allPages({ limit: 1, status: "pending" }), [["u-1"], ["o-1"]])
        assert.deepStrictEqual(yield* allPages({ limit: 2, type: "order.placed" }), [["o-3", "o-2"], ["o-1"]])
        assert.deepStrictEqual(yield* allPages({ limit: 1, target: "a" }), [["o-2"], ["o-1"]])
      }))

    test("events: a bad cursor or limit is InvalidInput; purged events are gone from the search", () =>
      Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        for (const cursor of ["not a cursor", "bm9wZQ", Buffer.from(JSON.stringify(["x", 1])).toString("base64url")]) {
          const error = yield* Effect.flip(store.events({ limit: 10, cursor }))
          assert.strictEqual(error.reason, "InvalidInput", cursor)
        }
        for (const limit of [0, -1, 1.5]) {
          const error = yield* Effect.flip(store.events({ limit }))
          assert.strictEqual(error.reason, "InvalidInput", String(limit))
        }
        yield* store.enqueue(yield* typed("order.placed", "p-1"), ["a"])
        yield* killDelivery("a", "p-1", "http_400")
        assert.deepStrictEqual(ids(yield* store.events({ limit: 10 })), ["p-1"])
        assert.strictEqual(yield* store.purge({ target: "a" }), 1)
        assert.deepStrictEqual(ids(yield* store.events({ limit: 10 })), [])
      }))

    // ---- transactional outbox (SQL stores) -------------------------------------------------

    if (options.outbox !== undefined) {
      const outbox = options.outbox
      const withApp = <A, E>(
        body: (
          sql: SqlClient.SqlClient,
          table: string
        ) => Effect.Effect<A, E, Store.DeliveryStore | SqlClient.SqlClient>
      ) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = `app_orders_${Math.random().toString(36).slice(2, 10)}`
          yield* sql.unsafe(`CREATE TABLE ${table} (id TEXT PRIMARY KEY)`)
          return yield* body(sql, table).pipe(Effect.ensuring(Effect.ignore(sql.unsafe(`DROP TABLE ${table}`))))
        }).pipe(Effect.scoped, Effect.provide(outbox))

      it.effect("transactional outbox: an app transaction that fails leaves neither its row nor the event", () =>
        withApp((sql, table) =>
          Effect.gen(function*() {
            const store = yield* Store.DeliveryStore
            const event = yield* makeEvent("tx-fail")
            const before = yield* store.diagnostics
            const error = yield* sql.withTransaction(Effect.gen(function*() {
              yield* sql`INSERT INTO ${sql(table)} (id) VALUES (${"o-1"})`
              const enqueued = yield* store.enqueue(event, ["a", "b"])
              assert.isTrue(enqueued.created)
              // inside the transaction the event is visible
              assert.isTrue(Option.isSome(yield* store.status("tx-fail")))
              return yield* Effect.fail("order rejected" as const)
            })).pipe(Effect.flip)
            assert.strictEqual(error, "order rejected")
            const rows = yield* sql`SELECT id FROM ${sql(table)}`
            assert.strictEqual(rows.length, 0)
            assert.isTrue(Option.isNone(yield* store.status("tx-fail")))
            assert.strictEqual((yield* store.stats).depth, 0)
            assert.deepStrictEqual(yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 }), [])
            const after = yield* store.diagnostics
            assert.strictEqual(
              after.writeTransactions,
              before.writeTransactions + 1,
              "only the claim committed on its own"
            )
            // the event id is free again
            assert.isTrue((yield* store.enqueue(event, ["a"])).created)
          })
        ))

      it.effect("transactional outbox: an app transaction that commits leaves exactly one event with its deliveries", () =>
        withApp((sql, table) =>
          Effect.gen(function*() {
            const store = yield* Store.DeliveryStore
            const event = yield* makeEvent("tx-ok")
            const before = yield* store.diagnostics
            const results = yield* sql.withTransaction(Effect.gen(function*() {
              yield* sql`INSERT INTO ${sql(table)} (id) VALUES (${"o-2"})`
              const first = yield* store.enqueue(event, ["a", "b"])
              const dup = yield* store.enqueue(event, ["a", "b"])
              return [first, dup] as const
            }))
            assert.isTrue(results[0].created)
            assert.isFalse(results[1].created)
            assert.strictEqual(
              (yield* store.diagnostics).writeTransactions,
              before.writeTransactions,
              "no transaction of its own"
            )
            const rows = yield* sql<{ id: string }>`SELECT id FROM ${sql(table)}`
            assert.deepStrictEqual(rows.map((r) => r.id), ["o-2"])
            const status = yield* getStatus("tx-ok")
            assert.deepStrictEqual(status.deliveries.map((x) => [x.target, x.status]), [["a", "pending"], [
              "b",
              "pending"
            ]])
            const claimed = yield* store.claim({ workerId: "w", limit: 10, leaseMs: 1_000 })
            assert.deepStrictEqual(claimed.map((c) => c.idempotencyKey).sort(), ["tx-ok:a", "tx-ok:b"])
          })
        ))

      it.effect("transactional outbox: a rejected enqueue inside the app transaction does not poison it", () =>
        withApp((sql, table) =>
          Effect.gen(function*() {
            const store = yield* Store.DeliveryStore
            yield* sql.withTransaction(Effect.gen(function*() {
              yield* sql`INSERT INTO ${sql(table)} (id) VALUES (${"o-3"})`
              const bad = yield* Effect.either(store.enqueue(yield* makeEvent("tx-bad", { n: 1n }), ["a"]))
              assert.isTrue(Either.isLeft(bad))
              yield* store.enqueue(yield* makeEvent("tx-good"), ["a"])
            }))
            assert.strictEqual((yield* sql`SELECT id FROM ${sql(table)}`).length, 1)
            assert.isTrue(Option.isSome(yield* store.status("tx-good")))
            assert.isTrue(Option.isNone(yield* store.status("tx-bad")))
          })
        ))
    }
  })
}
