/**
 * Durable pipelines through the HTTP API: a real server on loopback, the memory store, real
 * loopback targets and a real worker. `GET /v1/events/{id}` shows each step's graph state
 * (`after`, `waiting`, `heldBy`), and `?wait=` never hangs on a dependent held by a dead input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fault from "../../src/testing/Fault.js"
import { eventually, isErrorShape, promise, start } from "./harness.js"

const order = (id: string) => ({
  id,
  type: "order.placed",
  key: "k-1",
  payload: { sku: "s-1", qty: 2 },
  headers: { "x-t": "1" }
})

const byTarget = (body: any): Record<string, any> => Object.fromEntries(body.deliveries.map((d: any) => [d.target, d]))

describe("durable pipelines through the API", () => {
  it.scopedLive("c runs after a and b: held, then delivered with { event, inputs } built from their answers", () =>
    Effect.gen(function*() {
      const h = yield* start({
        targets: {
          // a answers slowly, so c is seen held.
          a: () => Fault.ok({ latency: 400, body: { reservationId: "r-1", items: [1, 2] } }),
          b: () => Fault.ok({ body: "paid-42" }),
          c: undefined
        },
        routes: [["order.*", ["a", "b", "c"]]],
        after: { c: ["a", "b"] },
        worker: true
      })
      const posted = yield* promise(() => h.request("/v1/events", { json: order("p-1") }))
      assert.strictEqual(posted.status, 202, posted.text)

      const early = yield* promise(() => h.request("/v1/events/p-1"))
      assert.strictEqual(early.status, 200, early.text)
      const held = byTarget(early.body)
      assert.deepStrictEqual(held.a.after, [])
      assert.strictEqual(held.a.waiting, 0)
      assert.deepStrictEqual(held.c.after, ["a", "b"])
      assert.strictEqual(held.c.status, "pending")
      assert.isAtLeast(held.c.waiting, 1)
      assert.isUndefined(held.c.heldBy)
      assert.deepStrictEqual(held.c.history, [])

      const done = yield* eventually(
        () => h.request("/v1/events/p-1"),
        (r) => r.body.deliveries.every((d: any) => d.status === "delivered")
      )
      const finished = byTarget(done.body)
      assert.deepStrictEqual(["a", "b", "c"].map((t) => finished[t].status), ["delivered", "delivered", "delivered"])
      assert.strictEqual(finished.c.waiting, 0)
      assert.isUndefined(finished.c.heldBy)

      // c got one request: the original envelope, and each input's answer (JSON parsed, or text).
      const received = h.targets.c!.target.ledger
      assert.strictEqual(received.length, 1)
      const body = JSON.parse(received[0]!.body)
      assert.deepStrictEqual(body, {
        event: {
          id: "p-1",
          type: "order.placed",
          key: "k-1",
          payload: { sku: "s-1", qty: 2 },
          headers: { "x-t": "1" },
          createdAt: done.body.createdAt
        },
        inputs: { a: { reservationId: "r-1", items: [1, 2] }, b: "paid-42" }
      })
      // a and b got the plain payload, once each, before c.
      assert.deepStrictEqual(JSON.parse(h.targets.a!.target.ledger[0]!.body), { sku: "s-1", qty: 2 })
      assert.strictEqual(h.targets.b!.target.ledger.length, 1)
      assert.isBelow(h.targets.a!.target.ledger[0]!.order, received[0]!.order)

      // ?wait=settled waits for the whole graph.
      const waited = yield* promise(() => h.request("/v1/events?wait=settled", { json: order("p-2") }))
      assert.strictEqual(waited.status, 200, waited.text)
      assert.isTrue(waited.body.settled)
      assert.deepStrictEqual(waited.body.deliveries.map((d: any) => [d.target, d.status]).sort(), [
        ["a", "delivered"],
        ["b", "delivered"],
        ["c", "delivered"]
      ])
    }))

  it.scopedLive("a dead input holds its dependents (heldBy, transitively); ?wait= returns; a replay releases them", () =>
    Effect.gen(function*() {
      let failA = true
      const h = yield* start({
        targets: {
          a: () => (failA ? Fault.status(400) : Fault.ok({ body: { reservationId: "r-2" } })),
          b: undefined,
          c: undefined,
          d: undefined
        },
        routes: [["order.*", ["a", "b", "c", "d"]]],
        after: { c: ["a", "b"], d: ["c"] },
        server: { waitTimeout: "8 seconds" },
        worker: true
      })
      const settled = yield* promise(() => h.request("/v1/events?wait=settled", { json: order("f-1") }))
      // 200 + settled: true is the answer of a wait that ended because everything settled; a wait
      // that ran into the 8 s timeout answers 202 with settled: false.
      assert.strictEqual(settled.status, 200, settled.text)
      assert.isTrue(settled.body.settled)
      const summary = byTarget(settled.body)
      assert.strictEqual(summary.a.status, "dead")
      assert.strictEqual(summary.b.status, "delivered")
      assert.strictEqual(summary.c.status, "pending")
      assert.strictEqual(summary.c.heldBy.target, "a")
      assert.strictEqual(summary.d.heldBy.target, "a")
      assert.isUndefined(summary.b.heldBy)

      const status = yield* promise(() => h.request("/v1/events/f-1"))
      const view = byTarget(status.body)
      assert.deepStrictEqual(view.c.heldBy, { target: "a", reason: `${view.a.deadReason} (${view.a.lastError})` })
      assert.strictEqual(view.a.lastError, "http_400")
      assert.strictEqual(view.c.waiting, 1)
      assert.deepStrictEqual(view.d.after, ["c"])
      assert.strictEqual(view.d.waiting, 1)
      assert.deepStrictEqual(view.d.heldBy, view.c.heldBy)
      assert.deepStrictEqual(view.c.history, [])
      assert.strictEqual(h.targets.c!.target.ledger.length, 0)
      assert.strictEqual(h.targets.d!.target.ledger.length, 0)

      // ?wait=all reports the failure (502) and which deliveries it holds.
      const all = yield* promise(() => h.request("/v1/events?wait=all", { json: order("f-2") }))
      assert.strictEqual(all.status, 502, all.text)
      assert.isTrue(isErrorShape(all.body, 502))
      assert.strictEqual(all.body.error.code, "delivery_failed")
      assert.include(all.body.error.message, "Delivery to a failed")
      assert.deepStrictEqual(
        all.body.deliveries.filter((d: any) => d.heldBy !== undefined).map((d: any) => [d.target, d.heldBy.target])
          .sort(),
        [["c", "a"], ["d", "a"]]
      )

      // Replaying the dead input releases the chain.
      failA = false
      const replayed = yield* promise(() =>
        h.request(`/v1/dead-letters/${encodeURIComponent(view.a.id)}/replay`, { method: "POST" })
      )
      assert.strictEqual(replayed.status, 202, replayed.text)
      const released = yield* eventually(
        () => h.request("/v1/events/f-1"),
        (r) => r.body.deliveries.every((d: any) => d.status === "delivered")
      )
      const after = byTarget(released.body)
      assert.deepStrictEqual(["a", "b", "c", "d"].map((t) => after[t].status), [
        "delivered",
        "delivered",
        "delivered",
        "delivered"
      ])
      assert.isUndefined(after.c.heldBy)
      assert.deepStrictEqual(JSON.parse(h.targets.c!.target.ledger[0]!.body).inputs.a, { reservationId: "r-2" })
    }))

  it.scopedLive("the OpenAPI document describes after, waiting and heldBy", () =>
    Effect.gen(function*() {
      const h = yield* start()
      const doc = (yield* promise(() => h.request("/openapi.json"))).body
      const delivery = doc.components.schemas.Delivery
      assert.includeMembers(delivery.required, ["after", "waiting"])
      assert.strictEqual(delivery.properties.waiting.type, "integer")
      assert.isDefined(delivery.properties.heldBy)
      assert.includeMembers(doc.components.schemas.HeldBy.required, ["target", "reason"])
    }))

  it.scopedLive("?wait=all answers the configured aggregate of the targets' answers; a throwing aggregate is a 500", () =>
    Effect.gen(function*() {
      const h = yield* start({
        targets: {
          a: () => Fault.ok({ body: { reservationId: "r-9" } }),
          b: () => Fault.ok({ body: { chargeId: "ch-9" } }),
          c: () => Fault.ok({ body: { trackingId: "t-9" } })
        },
        routes: [["order.*", ["a", "b", "c"]], ["broken.*", ["a"]]],
        after: { c: ["a", "b"] },
        aggregates: {
          "order.placed": ({ event, responses }) => ({
            orderId: event.id,
            reservation: (responses["a"] as any).reservationId,
            charge: (responses["b"] as any).chargeId,
            tracking: (responses["c"] as any).trackingId
          }),
          "broken.x": () => {
            throw new Error("no answer for you")
          }
        },
        worker: true
      })
      const answer = yield* promise(() => h.request("/v1/events?wait=all", { json: order("agg-1") }))
      assert.strictEqual(answer.status, 200, answer.text)
      assert.isTrue(answer.body.settled)
      assert.deepStrictEqual(answer.body.aggregate, {
        orderId: "agg-1",
        reservation: "r-9",
        charge: "ch-9",
        tracking: "t-9"
      })
      // Without an aggregate for the type there is none in the answer.
      const plain = yield* promise(() =>
        h.request("/v1/events?wait=all", { json: { ...order("agg-2"), type: "order.shipped" } })
      )
      assert.strictEqual(plain.status, 200, plain.text)
      assert.isUndefined(plain.body.aggregate)
      const broken = yield* promise(() =>
        h.request("/v1/events?wait=all", { json: { ...order("agg-3"), type: "broken.x" } })
      )
      assert.strictEqual(broken.status, 500, broken.text)
      assert.isTrue(isErrorShape(broken.body, 500), broken.text)
      assert.match(broken.body.error.message, /no answer for you/)
    }))
})
