/**
 * Every endpoint of the HTTP API, against a real server on loopback, the in-memory store, real
 * loopback targets and (where deliveries must happen) a real worker.
 */
import SwaggerParser from "@apidevtools/swagger-parser"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as Event from "../../src/Event.js"
import * as Fault from "../../src/testing/Fault.js"
import * as Metrics from "../../src/Server/Metrics.js"
import { eventually, isErrorShape, promise, start, totalDeliveries } from "./harness.js"

const order = (extra: Record<string, unknown> = {}) => ({
  type: "order.placed",
  payload: { sku: "s-1", qty: 2 },
  ...extra
})

describe("POST /v1/events", () => {
  it.scopedLive("202 with the id and one pending delivery per routed target; the store has the event", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const r = yield* promise(() => h.request("/v1/events", { json: order({ key: "k-1", headers: { "x-t": "1" } }) }))
      assert.strictEqual(r.status, 202)
      assert.match(r.body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.deepStrictEqual(r.body.deliveries.map((d: any) => [d.target, d.status]).sort(), [["a", "pending"], [
        "b",
        "pending"
      ]])
      assert.strictEqual(r.body.duplicate, false)
      assert.strictEqual(r.headers.get("location"), `/v1/events/${r.body.id}`)
      const stored = yield* h.store.status(r.body.id)
      assert.isTrue(Option.isSome(stored))
      const event = Option.getOrThrow(stored).event
      assert.deepStrictEqual(event.payload, { sku: "s-1", qty: 2 })
      assert.strictEqual(event.key, "k-1")
      assert.deepStrictEqual(event.headers, { "x-t": "1" })
      // createdAt is stamped by the server, now.
      assert.isTrue(Math.abs(event.createdAt.epochMillis - Date.now()) < 60_000)
    }))

  it.scopedLive("the id comes from the body, or the Idempotency-Key header; a repeat answers 200 and enqueues nothing, other content 409", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const first = yield* promise(() => h.request("/v1/events", { json: order({ id: "evt-1" }) }))
      assert.strictEqual(first.status, 202)
      assert.strictEqual(first.body.id, "evt-1")
      const again = yield* promise(() => h.request("/v1/events", { json: order({ id: "evt-1" }) }))
      assert.strictEqual(again.status, 200)
      assert.strictEqual(again.body.duplicate, true)
      assert.deepStrictEqual(again.body.deliveries, first.body.deliveries)
      assert.strictEqual(yield* promise(() => totalDeliveries(h.store)), 2)
      // The same id with other content is not a duplicate: 409, naming the stored event; nothing stored.
      const other = yield* promise(() => h.request("/v1/events", { json: order({ id: "evt-1", payload: "other" }) }))
      assert.strictEqual(other.status, 409)
      assert.isTrue(isErrorShape(other.body, 409))
      assert.strictEqual(other.body.id, "evt-1")
      assert.strictEqual(other.headers.get("location"), "/v1/events/evt-1")
      assert.strictEqual(yield* promise(() => totalDeliveries(h.store)), 2)

      const byHeader = yield* promise(() =>
        h.request("/v1/events", { json: order(), headers: { "idempotency-key": "key-9" } })
      )
      assert.strictEqual(byHeader.status, 202)
      assert.strictEqual(byHeader.body.id, "key-9")
      const repeat = yield* promise(() =>
        h.request("/v1/events", { json: order(), headers: { "idempotency-key": "key-9" } })
      )
      assert.strictEqual(repeat.status, 200)
      assert.strictEqual(yield* promise(() => totalDeliveries(h.store)), 4)

      const same = yield* promise(() =>
        h.request("/v1/events", { json: order({ id: "key-10" }), headers: { "idempotency-key": "key-10" } })
      )
      assert.strictEqual(same.status, 202)
      const conflict = yield* promise(() =>
        h.request("/v1/events", { json: order({ id: "a" }), headers: { "idempotency-key": "b" } })
      )
      assert.strictEqual(conflict.status, 400)
      assert.isTrue(isErrorShape(conflict.body, 400))
      assert.strictEqual(conflict.body.error.issues[0].path, "id")
      assert.strictEqual(yield* promise(() => totalDeliveries(h.store)), 6)
    }))

  it.scopedLive("?wait=settled answers 200 with every delivery's outcome once they are delivered", () =>
    Effect.gen(function*() {
      const h = yield* start({ worker: true })
      const r = yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "w-1" }) }))
      assert.strictEqual(r.status, 200, r.text)
      assert.strictEqual(r.body.settled, true)
      assert.deepStrictEqual(r.body.deliveries.map((d: any) => [d.target, d.status, d.attempts]).sort(), [
        ["a", "delivered", 1],
        ["b", "delivered", 1]
      ])
      // The targets really received it, with the delivery's idempotency key.
      assert.deepStrictEqual(h.targets.a!.target.keys, ["w-1:a"])
      assert.deepStrictEqual(h.targets.b!.target.keys, ["w-1:b"])
    }))

  it.scopedLive("?wait=all answers 502 with the outcomes when a delivery is dead; ?wait=settled answers 200", () =>
    Effect.gen(function*() {
      const h = yield* start({ worker: true, targets: { a: undefined, b: () => Fault.status(400) } })
      const r = yield* promise(() => h.request("/v1/events?wait=all", { json: order({ id: "w-2" }) }))
      assert.strictEqual(r.status, 502, r.text)
      assert.isTrue(isErrorShape(r.body, 502))
      assert.strictEqual(r.body.error.code, "delivery_failed")
      assert.strictEqual(r.body.id, "w-2")
      const b = r.body.deliveries.find((d: any) => d.target === "b")
      assert.strictEqual(b.status, "dead")
      assert.strictEqual(b.lastError, "http_400")
      const dead = yield* promise(() => h.request("/v1/dead-letters"))
      assert.deepStrictEqual(
        dead.body.items.map((d: any) => [d.target, d.shadow]),
        [["b", undefined]],
        "a primary's dead letter is not marked"
      )
      const s = yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "w-3" }) }))
      assert.strictEqual(s.status, 200)
      assert.deepStrictEqual(s.body.deliveries.map((d: any) => [d.target, d.status]).sort(), [["a", "delivered"], [
        "b",
        "dead"
      ]])
    }))

  it.scopedLive("a shadow delivery is an observer: its dead letter is no 502, ?wait= does not wait for it, it is marked", () =>
    Effect.gen(function*() {
      // `s` mirrors the traffic and always refuses (dead at once); `h` is a shadow that hangs.
      const h = yield* start({
        worker: true,
        targets: { a: undefined, s: () => Fault.status(400), h: () => Fault.hang },
        routes: [["order.*", ["a"], ["s", "h"]]]
      })
      const r = yield* promise(() => h.request("/v1/events?wait=all", { json: order({ id: "sh-1" }) }))
      assert.strictEqual(r.status, 200, r.text)
      assert.strictEqual(r.body.settled, true)
      const byTarget = Object.fromEntries(r.body.deliveries.map((d: any) => [d.target, d]))
      assert.strictEqual(byTarget.a.status, "delivered")
      assert.strictEqual(byTarget.a.shadow, undefined)
      assert.strictEqual(byTarget.s.shadow, true)
      assert.strictEqual(byTarget.h.shadow, true)
      assert.include(["pending", "in_flight"], byTarget.h.status, "the hanging shadow was not waited for")
      // The shadow that refuses is dead-lettered all the same (visible), without failing the answer.
      yield* eventually(
        () => h.request("/v1/events/sh-1"),
        (s) => s.body.deliveries.some((d: any) => d.target === "s" && d.status === "dead")
      )
      const settled = yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "sh-2" }) }))
      assert.strictEqual(settled.status, 200, settled.text)
      assert.strictEqual(settled.body.settled, true)
      // Its dead letters are listed apart: marked `shadow: true`.
      const dead = yield* promise(() => h.request("/v1/dead-letters?target=s"))
      assert.strictEqual(dead.status, 200, dead.text)
      assert.isAtLeast(dead.body.items.length, 1)
      assert.isTrue(dead.body.items.every((d: any) => d.target === "s" && d.shadow === true), dead.text)
    }))

  it.scopedLive("?wait= gives up at the wait timeout (or Prefer: wait=N) with 202 and the current states", () =>
    Effect.gen(function*() {
      // No worker: nothing is ever delivered.
      const h = yield* start({ server: { waitTimeout: "300 millis" } })
      const started = Date.now()
      const r = yield* promise(() => h.request("/v1/events?wait=all", { json: order({ id: "w-4" }) }))
      assert.strictEqual(r.status, 202)
      assert.strictEqual(r.body.settled, false)
      assert.isTrue(r.body.deliveries.every((d: any) => d.status === "pending"))
      assert.isAtLeast(Date.now() - started, 250)
      // The server's own limit is an hour: an answer at all (within the test's timeout) is the
      // Prefer bound at work; that it waited ~1 s is a lower bound of the code's own.
      const h2 = yield* start({ server: { waitTimeout: "1 hour" } })
      const t2 = Date.now()
      const p = yield* promise(() =>
        h2.request("/v1/events?wait=settled", { json: order(), headers: { prefer: "wait=1" } })
      )
      assert.strictEqual(p.status, 202)
      assert.strictEqual(p.body.settled, false)
      assert.isAtLeast(Date.now() - t2, 900)
    }))
})

describe("POST /v1/events:batch", () => {
  it.scopedLive("enqueues every event, with per-item results (duplicates marked)", () =>
    Effect.gen(function*() {
      const h = yield* start()
      yield* promise(() => h.request("/v1/events", { json: order({ id: "dup" }) }))
      const r = yield* promise(() =>
        h.request("/v1/events:batch", { json: { events: [order({ id: "b-1" }), order(), order({ id: "dup" })] } })
      )
      assert.strictEqual(r.status, 202, r.text)
      assert.deepStrictEqual(r.body.results.map((x: any) => x.status), ["accepted", "accepted", "duplicate"])
      assert.strictEqual(r.body.results[0].id, "b-1")
      assert.match(r.body.results[1].id, /^[0-9a-f-]{36}$/)
      assert.strictEqual(yield* promise(() => totalDeliveries(h.store)), 6)
      assert.isTrue(Option.isSome(yield* h.store.status(r.body.results[1].id)))
    }))

  it.scopedLive("a bad item is a 400 for the whole batch, naming the item; nothing is enqueued", () =>
    Effect.gen(function*() {
      const h = yield* start({ server: { maxBatch: 3 } })
      const bad = yield* promise(() =>
        h.request("/v1/events:batch", { json: { events: [order(), order(), { type: 7, payload: 1 }] } })
      )
      assert.strictEqual(bad.status, 400)
      assert.isTrue(isErrorShape(bad.body, 400))
      assert.deepStrictEqual(bad.body.error.issues.map((i: any) => i.path), ["events[2].type"])
      const unrouted = yield* promise(() =>
        h.request("/v1/events:batch", { json: { events: [order(), { type: "user.created", payload: 1 }] } })
      )
      assert.strictEqual(unrouted.status, 422)
      assert.deepStrictEqual(unrouted.body.error.issues.map((i: any) => i.path), ["events[1].type"])
      const tooMany = yield* promise(() =>
        h.request("/v1/events:batch", { json: { events: [order(), order(), order(), order()] } })
      )
      assert.strictEqual(tooMany.status, 400)
      assert.strictEqual(tooMany.body.error.issues[0].path, "events")
      const empty = yield* promise(() => h.request("/v1/events:batch", { json: { events: [] } }))
      assert.strictEqual(empty.status, 400)
      assert.strictEqual(yield* promise(() => totalDeliveries(h.store)), 0)
    }))
})

describe("GET /v1/events/{id}", () => {
  it.scopedLive("per-target status with the attempt history; 404 when unknown", () =>
    Effect.gen(function*() {
      let failures = 1
      const h = yield* start({
        worker: true,
        targets: { a: undefined, b: () => (failures-- > 0 ? Fault.unavailable() : Fault.ok()) }
      })
      const r = yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "s-1" }) }))
      assert.strictEqual(r.status, 200, r.text)
      const s = yield* promise(() => h.request("/v1/events/s-1"))
      assert.strictEqual(s.status, 200)
      assert.strictEqual(s.body.id, "s-1")
      assert.strictEqual(s.body.type, "order.placed")
      assert.deepStrictEqual(s.body.payload, { sku: "s-1", qty: 2 })
      const b = s.body.deliveries.find((d: any) => d.target === "b")
      assert.strictEqual(b.status, "delivered")
      assert.strictEqual(b.idempotencyKey, "s-1:b")
      assert.deepStrictEqual(b.history.map((a: any) => [a.number, a.outcome, a.status]), [[1, "http_503", 503], [
        2,
        "success",
        200
      ]])
      assert.isFalse(Number.isNaN(Date.parse(b.history[0].startedAt)))
      assert.notProperty(b.history[0], "lease")
      // Ids with reserved characters round-trip through the Location header.
      // (Within the id alphabet, printable ASCII 0x21-0x7E: spaces and "ü" are refused since issue 10.)
      const odd = yield* promise(() => h.request("/v1/events", { json: order({ id: "ord/1+ü?#%" }) }))
      assert.strictEqual(odd.status, 400)
      assert.match(odd.body.error.issues[0].message, /index 6 \(char code 252\)/)
      const reserved = "ord/1?#%&+;=[]{}"
      const ok = yield* promise(() => h.request("/v1/events", { json: order({ id: reserved }) }))
      assert.strictEqual(ok.status, 202)
      const byLocation = yield* promise(() => h.request(ok.headers.get("location")!))
      assert.strictEqual(byLocation.status, 200, byLocation.text)
      assert.strictEqual(byLocation.body.id, reserved)
      const missing = yield* promise(() => h.request("/v1/events/nope"))
      assert.strictEqual(missing.status, 404)
      assert.isTrue(isErrorShape(missing.body, 404))
    }))
})

describe("dead letters", () => {
  it.scopedLive("list with filters and paging, replay one, replay by filter, delete", () =>
    Effect.gen(function*() {
      let bFails = true
      const h = yield* start({
        worker: true,
        targets: {
          a: (req) => (req.body.includes("\"bad-a\"") ? Fault.status(410) : Fault.ok()),
          b: () => (bFails ? Fault.status(400) : Fault.ok())
        }
      })
      for (const id of ["d-1", "d-2", "d-3"]) {
        const r = yield* promise(() =>
          h.request("/v1/events?wait=settled", { json: order({ id, payload: id === "d-3" ? "bad-a" : 1 }) })
        )
        assert.strictEqual(r.status, 200, r.text)
      }
      const all = yield* promise(() => h.request("/v1/dead-letters"))
      assert.strictEqual(all.status, 200)
      assert.strictEqual(all.body.items.length, 4) // b for all three, a for d-3
      const onlyA = yield* promise(() => h.request("/v1/dead-letters?target=a"))
      assert.deepStrictEqual(onlyA.body.items.map((d: any) => [d.eventId, d.target, d.lastError]), [[
        "d-3",
        "a",
        "http_410"
      ]])
      const byLabel = yield* promise(() => h.request("/v1/dead-letters?error=http_400"))
      assert.strictEqual(byLabel.body.items.length, 3)
      const future = yield* promise(() =>
        h.request(`/v1/dead-letters?from=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`)
      )
      assert.strictEqual(future.body.items.length, 0)
      const past = yield* promise(() => h.request(`/v1/dead-letters?to=${Date.now() + 60_000}&from=0`))
      assert.strictEqual(past.body.items.length, 4)
      const badTime = yield* promise(() => h.request("/v1/dead-letters?from=yesterday"))
      assert.strictEqual(badTime.status, 400)
      assert.strictEqual(badTime.body.error.issues[0].path, "from")
      const badLimit = yield* promise(() => h.request("/v1/dead-letters?limit=0"))
      assert.strictEqual(badLimit.status, 400)

      // Paging: two pages of two, no overlap, no gap.
      const p1 = yield* promise(() => h.request("/v1/dead-letters?limit=2"))
      assert.strictEqual(p1.body.items.length, 2)
      assert.isString(p1.body.next)
      const p2 = yield* promise(() => h.request(`/v1/dead-letters?limit=2&cursor=${encodeURIComponent(p1.body.next)}`))
      const ids = [...p1.body.items, ...p2.body.items].map((d: any) => d.id)
      assert.deepStrictEqual([...new Set(ids)].sort(), all.body.items.map((d: any) => d.id).sort())

      // Replay one: b is fixed now; the delivery goes out again with the same idempotency key.
      bFails = false
      const d1b = all.body.items.find((d: any) => d.eventId === "d-1" && d.target === "b")
      const replay = yield* promise(() => h.request(`/v1/dead-letters/${d1b.id}/replay`, { method: "POST" }))
      assert.strictEqual(replay.status, 202)
      assert.deepStrictEqual(replay.body, { replayed: 1 })
      const delivered = yield* eventually(
        () => h.request("/v1/events/d-1"),
        (r) => r.body.deliveries.find((d: any) => d.target === "b").status === "delivered"
      )
      assert.strictEqual(delivered.body.deliveries.find((d: any) => d.target === "b").status, "delivered")
      assert.strictEqual(h.targets.b!.target.requestsFor("d-1:b").length, 2)
      const again = yield* promise(() => h.request(`/v1/dead-letters/${d1b.id}/replay`, { method: "POST" }))
      assert.strictEqual(again.status, 404)
      assert.isTrue(isErrorShape(again.body, 404))

      // Bulk replay by filter: only target b's.
      const bulk = yield* promise(() => h.request("/v1/dead-letters:replay", { json: { target: "b" } }))
      assert.strictEqual(bulk.status, 202, bulk.text)
      assert.deepStrictEqual(bulk.body, { replayed: 2 })
      yield* eventually(() => h.request("/v1/dead-letters"), (r) => r.body.items.length === 1)
      const left = yield* promise(() => h.request("/v1/dead-letters"))
      assert.deepStrictEqual(left.body.items.map((d: any) => d.target), ["a"])
      const badFilter = yield* promise(() => h.request("/v1/dead-letters:replay", { json: { target: 5 } }))
      assert.strictEqual(badFilter.status, 400)
      assert.strictEqual(badFilter.body.error.issues[0].path, "target")

      // Delete: 204, then 404.
      const del = yield* promise(() => h.request(`/v1/dead-letters/${left.body.items[0].id}`, { method: "DELETE" }))
      assert.strictEqual(del.status, 204)
      assert.strictEqual(del.text, "")
      const del2 = yield* promise(() => h.request(`/v1/dead-letters/${left.body.items[0].id}`, { method: "DELETE" }))
      assert.strictEqual(del2.status, 404)
      assert.isTrue(isErrorShape(del2.body, 404))
      const none = yield* promise(() => h.request("/v1/dead-letters"))
      assert.strictEqual(none.body.items.length, 0)
    }))

  it.scopedLive("bulk replay with an empty body replays every dead letter", () =>
    Effect.gen(function*() {
      let fail = true
      const h = yield* start({ worker: true, targets: { a: () => (fail ? Fault.status(400) : Fault.ok()) } })
      yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "e-1" }) }))
      yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "e-2" }) }))
      fail = false
      const r = yield* promise(() => h.request("/v1/dead-letters:replay", { method: "POST" }))
      assert.strictEqual(r.status, 202, r.text)
      assert.deepStrictEqual(r.body, { replayed: 2 })
    }))
})

describe("GET /v1/targets", () => {
  it.scopedLive("policy, circuit, in flight, queue and recent rate and latency; no secret anywhere", () =>
    Effect.gen(function*() {
      const h = yield* start({
        worker: true,
        targetHeaders: { authorization: "Bearer target-secret-123" },
        signingSecret: "whsec_c2lnbmluZy1zZWNyZXQtNDU2"
      })
      for (let i = 0; i < 3; i++) {
        const r = yield* promise(() => h.request("/v1/events?wait=settled", { json: order() }))
        assert.strictEqual(r.status, 200)
      }
      const r = yield* promise(() => h.request("/v1/targets"))
      assert.strictEqual(r.status, 200)
      assert.deepStrictEqual(r.body.targets.map((t: any) => t.name).sort(), ["a", "b"])
      const a = r.body.targets.find((t: any) => t.name === "a")
      assert.strictEqual(a.policy.timeoutMs, 2000)
      assert.strictEqual(a.policy.retry.maxAttempts, 2)
      assert.strictEqual(a.circuit.state, "closed")
      assert.strictEqual(a.inFlight, 0)
      assert.strictEqual(a.queue.delivered, 3)
      // Metrics are process-global: at least this test's 3 attempts, all successes, with a latency.
      assert.isAtLeast(a.recent.attempts, 3)
      assert.isAtLeast(a.recent.successes, 3)
      assert.isAbove(a.recent.perSecond, 0)
      assert.isNumber(a.recent.latencyMs.p99)
      assert.notInclude(r.text, "target-secret-123")
      assert.notInclude(r.text, "c2lnbmluZy1zZWNyZXQtNDU2")
      // The targets did get the secret header (so its absence above means something).
      assert.strictEqual(h.targets.a!.target.ledger[0]!.headers["authorization"], "Bearer target-secret-123")
    }))

  it.scopedLive("orphans: deliveries to a target no longer configured are listed apart, held, not claimed", () =>
    Effect.gen(function*() {
      const h = yield* start({ worker: true })
      // Stored when the configuration still named `retired` (the store takes any target name).
      const old = yield* Event.make("order.placed", { qty: 1 }, { id: "orphan-1" })
      yield* h.store.enqueue(old, ["a", "retired"])
      yield* eventually(
        () => h.request("/v1/targets"),
        (r) => r.body.targets.find((t: any) => t.name === "a")?.queue?.delivered === 1
      )
      const r = yield* promise(() => h.request("/v1/targets"))
      assert.strictEqual(r.status, 200)
      assert.deepStrictEqual(r.body.targets.map((t: any) => t.name).sort(), ["a", "b"])
      assert.deepStrictEqual(r.body.orphans, [{
        name: "retired",
        queue: { pending: 1, inFlight: 0, delivered: 0, dead: 0, compensated: 0 }
      }])
      const status = yield* promise(() => h.request("/v1/events/orphan-1"))
      assert.deepStrictEqual(
        status.body.deliveries.map((d: any) => [d.target, d.status, d.unconfigured]).sort(),
        [["a", "delivered", undefined], ["retired", "pending", true]]
      )
    }))

  it.scopedLive("shows an open circuit", () =>
    Effect.gen(function*() {
      const h = yield* start({
        worker: true,
        targets: { a: () => Fault.unavailable() },
        policy: { retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 1, resetAfter: "1 minute" } }
      })
      yield* promise(() => h.request("/v1/events?wait=settled", { json: order() }))
      const r = yield* eventually(() => h.request("/v1/targets"), (r) => r.body.targets[0].circuit.state === "open")
      assert.strictEqual(r.body.targets[0].circuit.state, "open")
      assert.isFalse(Number.isNaN(Date.parse(r.body.targets[0].circuit.openUntil)))
    }))
})

describe("operations", () => {
  it.scopedLive("/healthz, /readyz, /metrics, /openapi.json, /docs", () =>
    Effect.gen(function*() {
      const h = yield* start({ worker: true })
      yield* promise(() => h.request("/v1/events?wait=settled", { json: order() }))
      const health = yield* promise(() => h.request("/healthz"))
      assert.deepStrictEqual([health.status, health.body], [200, { status: "ok" }])
      const ready = yield* promise(() => h.request("/readyz"))
      assert.strictEqual(ready.status, 200)
      assert.strictEqual(ready.body.status, "ready")
      const metrics = yield* promise(() => h.request("/metrics"))
      assert.strictEqual(metrics.status, 200)
      assert.match(metrics.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/)
      assert.match(metrics.text, /# TYPE fanout_attempts_total counter/)
      assert.match(metrics.text, /fanout_attempts_total\{[^}]*target="a"[^}]*\} \d+/)
      assert.match(metrics.text, /fanout_attempt_duration_\w+_bucket\{[^}]*le="\+Inf"\} \d+/)
      const docs = yield* promise(() => h.request("/docs"))
      assert.strictEqual(docs.status, 200)
      assert.match(docs.headers.get("content-type")!, /text\/html/)
      assert.include(docs.text, "swagger")
    }))

  it.scopedLive("the OpenAPI document is valid and shows the colon paths and the security scheme", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const r = yield* promise(() => h.request("/openapi.json"))
      assert.strictEqual(r.status, 200)
      const doc = r.body
      yield* promise(() => SwaggerParser.validate(structuredClone(doc)))
      for (
        const path of [
          "/v1/events",
          "/v1/events:batch",
          "/v1/events/{id}",
          "/v1/dead-letters",
          "/v1/dead-letters/{id}/replay",
          "/v1/dead-letters:replay",
          "/v1/dead-letters/{id}",
          "/v1/targets",
          "/healthz",
          "/readyz",
          "/metrics"
        ]
      ) {
        assert.property(doc.paths, path)
      }
      assert.notProperty(doc.paths, "/v1/events:{batch}")
      assert.property(doc.components.securitySchemes, "bearer")
      assert.deepStrictEqual(doc.paths["/v1/events"].post.security, [{ bearer: [] }])
      assert.isUndefined(doc.paths["/healthz"].get.security?.[0]?.bearer)
      // Every error response is documented with the one shape.
      let errors = 0
      for (const item of Object.values(doc.paths) as Array<any>) {
        for (const op of Object.values(item) as Array<any>) {
          for (const [status, response] of Object.entries(op.responses) as Array<[string, any]>) {
            if (Number(status) < 400) continue
            errors++
            const schema = response.content["application/json"].schema
            const alternatives = schema.anyOf ?? [schema]
            for (const alt of alternatives) {
              const resolved = alt.$ref === undefined ? alt : doc.components.schemas[alt.$ref.split("/").at(-1)]
              assert.strictEqual(resolved.properties.error.$ref, "#/components/schemas/ErrorDetail", `${status}`)
            }
          }
        }
      }
      assert.isAtLeast(errors, 20)
      // 409: the same id with other content, naming the stored event.
      const conflict = doc.paths["/v1/events"].post.responses["409"]
      assert.isDefined(conflict, "409 documented for POST /v1/events")
      assert.include(conflict.description, "other content")
      assert.deepStrictEqual(doc.components.schemas.Conflict.required, ["error", "id"])
      assert.include(doc.components.schemas.BatchItem.properties.status.enum, "conflict")
      // The id alphabet is in the schema (a pattern) and its description.
      const input = doc.components.schemas.EventInput.properties
      assert.strictEqual(input.id.pattern, "^[!-~]+$")
      assert.strictEqual(input.key.pattern, "^[!-~]+$")
      assert.notInclude(JSON.stringify(doc), "HttpApiDecodeError")
    }))

  it.scopedLive("/readyz is 503 with the error shape when the store does not answer", () =>
    Effect.gen(function*() {
      const { StoreError } = yield* Effect.promise(() => import("../../src/Store.js"))
      const h = yield* start({
        wrapStore: (s) => ({
          ...s,
          gauges: Effect.fail(new StoreError({ operation: "gauges", reason: "Unavailable", message: "down" }))
        })
      })
      const r = yield* promise(() => h.request("/readyz"))
      assert.strictEqual(r.status, 503)
      assert.isTrue(isErrorShape(r.body, 503))
      assert.isNotNull(r.headers.get("retry-after"))
      const health = yield* promise(() => h.request("/healthz"))
      assert.strictEqual(health.status, 200)
    }))

  it.scopedLive("/metrics uses the MetricsRenderer when one is provided", () =>
    Effect.gen(function*() {
      const h = yield* start({
        renderer: Layer.succeed(Metrics.MetricsRenderer, {
          render: Effect.succeed("# TYPE custom_total counter\ncustom_total 7\n")
        })
      })
      const r = yield* promise(() => h.request("/metrics"))
      assert.strictEqual(r.text, "# TYPE custom_total counter\ncustom_total 7\n")
    }))
})

describe("routing errors", () => {
  it.scopedLive("unknown routes are 404 and wrong methods 405 with Allow, in the one shape", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const cases: Array<[string, string, number, string | null]> = [
        ["GET", "/nope", 404, null],
        ["GET", "/v1/events:batch", 405, "POST"],
        ["DELETE", "/v1/events", 405, "POST, GET"],
        ["PUT", "/v1/events/abc", 405, "GET"],
        ["GET", "/v1/dead-letters:replay", 405, "POST"],
        ["GET", "/v1/dead-letters/x/replay", 405, "POST"],
        ["POST", "/healthz", 405, "GET"],
        ["GET", "/v1/events:other", 404, null]
      ]
      for (const [method, path, status, allow] of cases) {
        const r = yield* promise(() => h.request(path, { method }))
        assert.strictEqual(r.status, status, `${method} ${path}`)
        assert.isTrue(isErrorShape(r.body, status), r.text)
        assert.strictEqual(r.headers.get("allow"), allow)
      }
    }))
})
