/**
 * Durable pipelines through the worker, over real loopback HTTP, on the memory store and on
 * SQLite: the graph is stored with the event, a dependent delivery becomes due only when its
 * inputs are delivered and receives their stored answers, a dead input holds its dependents
 * until it is replayed, and an answer over the stored bound dead-letters the dependent with a
 * clear reason.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Memory from "../../src/Store/Memory.js"
import type * as Store from "../../src/Store.js"
import { Event, Outbox, Pipeline, Router, Target } from "../../src/index.js"
import { reply, startServer, type TestServer } from "../integration/helpers.js"
import { eventually, makeEnv } from "./helpers.js"

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({ orderId: Schema.String, customerId: Schema.String, amount: Schema.Number })
)

const json = (server: TestServer, path: string) => server.on(path).map((r) => JSON.parse(r.body) as any)

const stores: ReadonlyArray<readonly [string, () => Layer.Layer<Store.DeliveryStore, any>]> = [
  ["memory", () => Memory.layer],
  ["SQLite", () => {
    const dir = mkdtempSync(join(tmpdir(), "fanout-pipeline-"))
    const cleanup = Layer.scopedDiscard(
      Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    )
    return Layer.merge(SqliteStore.layer({ filename: join(dir, "outbox.db") }), cleanup)
  }]
]

const statusOf = (store: Store.DeliveryStore, id: string) => Effect.map(store.status(id), Option.getOrThrow)

for (const [name, storeLayer] of stores) {
  describe(`durable pipelines (${name} store, loopback HTTP)`, () => {
    it.scopedLive(
      "enrich → inventory ∥ payment → shipping: each step gets its typed input, after its inputs",
      () =>
        Effect.gen(function*() {
          // When each inventory request was answered (same clock as the arrivals' `at`).
          const inventoryAnsweredAt = new Map<string, number>()
          const server = yield* startServer((_req, res, r) => {
            const body = JSON.parse(r.body || "null")
            if (r.path === "/customer") return reply(res, 200, { country: "NL", tier: "gold" })
            if (r.path === "/inventory") {
              return setTimeout(() => {
                inventoryAnsweredAt.set(r.key ?? "", performance.now())
                reply(res, 200, { reservationId: `res-${body.orderId}` })
              }, 30)
            }
            if (r.path === "/payment") return reply(res, 200, { chargeId: `ch-${body.orderId}`, amount: body.amount })
            if (r.path === "/shipping") return reply(res, 201, { trackingId: `tr-${body.orderId}` })
            reply(res, 404)
          })
          const post = (path: string) => (event: Event.Event<string, unknown>) =>
            HttpClientRequest.post(`${server.url}${path}`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
          const Customer = Target.make("customer", {
            request: post("/customer"),
            response: Schema.Struct({ country: Schema.String, tier: Schema.String })
          })
          const Inventory = Target.make("inventory", {
            request: post("/inventory"),
            response: Schema.Struct({ reservationId: Schema.String })
          })
          const Payment = Target.make("payment", {
            request: post("/payment"),
            response: Schema.Struct({ chargeId: Schema.String })
          })
          const Shipping = Target.make("shipping", { request: post("/shipping") })
          const pipeline = Pipeline.make(OrderPlaced)
            .enrich(Customer, (event, customer) => ({ ...event.payload, country: customer.country }))
            .step(Inventory)
            .step(Payment)
            .step(Shipping, {
              after: [Inventory, Payment],
              input: ({ event, inputs }) => ({
                orderId: event.payload.orderId,
                country: event.payload.country,
                reservationId: inputs.inventory.reservationId,
                chargeId: inputs.payment.chargeId
              })
            })
            .aggregate(({ event, outcomes, responses }) => ({
              order: event.payload.orderId,
              country: event.payload.country,
              reservation: responses.inventory.reservationId,
              shippingStatus: outcomes.shipping.status
            }))
          const env = yield* makeEnv([Customer, Inventory, Payment, Shipping], storeLayer())
          const outbox = yield* Outbox.make(Router.make(OrderPlaced), { pipelines: [pipeline] }).pipe(
            Effect.provide(env.context)
          )
          yield* env.start({ pollInterval: "2 seconds", pipelines: [pipeline] })
          const ids: Array<string> = []
          for (let i = 0; i < 5; i++) {
            const event = yield* OrderPlaced.make({ orderId: `o-${i}`, customerId: `c-${i}`, amount: 10 + i })
            const enqueued = yield* outbox.enqueue(event)
            assert.deepStrictEqual(enqueued.deliveries.map((d) => d.target), [
              "customer",
              "inventory",
              "payment",
              "shipping"
            ])
            ids.push(event.id)
          }
          yield* eventually("every step delivered", Effect.map(env.store.stats, (s) => s.delivered === 20), 15_000)

          const shipped = json(server, "/shipping")
          assert.strictEqual(shipped.length, 5)
          for (let i = 0; i < 5; i++) {
            assert.deepStrictEqual(shipped.find((b) => b.orderId === `o-${i}`), {
              orderId: `o-${i}`,
              country: "NL",
              reservationId: `res-o-${i}`,
              chargeId: `ch-o-${i}`
            })
            // The fan-out steps received the enriched payload.
            const paid = json(server, "/payment").find((b) => b.orderId === `o-${i}`)
            assert.deepStrictEqual(paid, { orderId: `o-${i}`, customerId: `c-${i}`, amount: 10 + i, country: "NL" })
          }
          // Order: no step before its inputs were answered.
          for (const id of ids) {
            const at = (path: string) => server.on(path).find((r) => r.key?.startsWith(`${id}:`))!.at
            assert.isBelow(at("/customer"), at("/inventory"))
            assert.isBelow(at("/customer"), at("/payment"))
            assert.isBelow(
              inventoryAnsweredAt.get(`${id}:inventory`)!,
              at("/shipping"),
              "shipping after inventory answered"
            )
            assert.isBelow(at("/payment"), at("/shipping"))
            assert.strictEqual(server.on("/shipping").filter((r) => r.key === `${id}:shipping`).length, 1)
          }
          const status = yield* statusOf(env.store, ids[0]!)
          const shipping = status.deliveries.find((d) => d.target === "shipping")!
          assert.deepStrictEqual(shipping.after, ["customer", "inventory", "payment"])
          assert.strictEqual(shipping.waiting, 0)
          assert.strictEqual(shipping.status, "delivered")
          // The aggregate, from the stored answers, as direct mode would compute it.
          const aggregate = yield* outbox.aggregate(status)
          assert.deepStrictEqual(Option.getOrThrow(aggregate), {
            order: "o-0",
            country: "NL",
            reservation: "res-o-0",
            shippingStatus: 201
          })
        }),
      { timeout: 30_000 }
    )

    it.scopedLive(
      "configured `after`: the dependent receives { event, inputs }; a dead input holds it until replayed",
      () =>
        Effect.gen(function*() {
          let broken = true
          const server = yield* startServer((_req, res, r) => {
            if (r.path === "/a") return broken ? reply(res, 400, { error: "bad" }) : reply(res, 200, { a: 1 })
            if (r.path === "/b") return reply(res, 200, { b: [true, "x"] })
            if (r.path === "/c") return reply(res, 200, { ok: true })
            reply(res, 404)
          })
          const post = (path: string) => (event: Event.Event<string, unknown>) =>
            HttpClientRequest.post(`${server.url}${path}`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
          const A = Target.make("a", { request: post("/a") })
          const B = Target.make("b", { request: post("/b") })
          const C = Target.make("c", { request: post("/c") })
          const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))
          const router = Router.make(Ping).route(Ping, [A, B, C])
          const env = yield* makeEnv([A, B, C], storeLayer())
          const outbox = yield* Outbox.make(router, { after: { c: ["a", "b"] } }).pipe(Effect.provide(env.context))
          const { worker } = yield* env.start({ pollInterval: "2 seconds" })
          const event = yield* Ping.make({ n: 7 })
          yield* outbox.enqueue(event)
          yield* eventually(
            "a dead, b delivered",
            Effect.map(env.store.stats, (s) => s.dead === 1 && s.delivered === 1)
          )
          // A fence instead of a pause: the worker claims again for every lane (its next poll) after
          // a died, and still leaves c alone.
          const claimsBefore = (yield* worker.state).claims
          yield* eventually("claims after a died", Effect.map(worker.state, (s) => s.claims >= claimsBefore + 3))
          let status = yield* statusOf(env.store, event.id)
          const c = status.deliveries.find((d) => d.target === "c")!
          assert.strictEqual(c.status, "pending")
          assert.strictEqual(c.waiting, 1)
          assert.deepStrictEqual(c.after, ["a", "b"])
          assert.strictEqual(server.on("/c").length, 0)
          const dead = yield* env.store.deadLetters({ limit: 10 })
          assert.deepStrictEqual(dead.items.map((d) => d.target), ["a"])

          broken = false
          const a = status.deliveries.find((d) => d.target === "a")!
          assert.isTrue(yield* env.store.replay(a.id))
          yield* eventually("all delivered", Effect.map(env.store.stats, (s) => s.delivered === 3))
          const [body] = json(server, "/c")
          assert.deepStrictEqual(body.inputs, { a: { a: 1 }, b: { b: [true, "x"] } })
          assert.strictEqual(body.event.id, event.id)
          assert.strictEqual(body.event.type, "ping")
          assert.deepStrictEqual(body.event.payload, { n: 7 })
          assert.strictEqual(server.on("/c")[0]!.key, `${event.id}:c`)
          status = yield* statusOf(env.store, event.id)
          assert.deepStrictEqual(status.deliveries.map((d) => [d.target, d.status, d.waiting]), [
            ["a", "delivered", 0],
            ["b", "delivered", 0],
            ["c", "delivered", 0]
          ])
        }),
      { timeout: 30_000 }
    )

    it.scopedLive(
      "an answer over maxStoredResponseBytes: the input is delivered, its dependent dead-lettered with the reason",
      () =>
        Effect.gen(function*() {
          const server = yield* startServer((_req, res, r) => {
            if (r.path === "/a") return reply(res, 200, { blob: "x".repeat(5_000) })
            reply(res, 200)
          })
          const post = (path: string) => (event: Event.Event<string, unknown>) =>
            HttpClientRequest.post(`${server.url}${path}`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
          const A = Target.make("a", { request: post("/a") })
          const C = Target.make("c", { request: post("/c") })
          const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))
          const env = yield* makeEnv([A, C], storeLayer())
          const outbox = yield* Outbox.make(Router.make(Ping).route(Ping, [A, C]), { after: { c: ["a"] } }).pipe(
            Effect.provide(env.context)
          )
          yield* env.start({ pollInterval: "2 seconds", maxStoredResponseBytes: 1_000 })
          const event = yield* Ping.make({ n: 1 })
          yield* outbox.enqueue(event)
          yield* eventually(
            "a delivered, c dead",
            Effect.map(env.store.stats, (s) => s.delivered === 1 && s.dead === 1)
          )
          const dead = yield* env.store.deadLetters({ limit: 10 })
          assert.strictEqual(dead.items[0]!.target, "c")
          assert.match(dead.items[0]!.lastErrorMessage ?? "", /input a .*larger than the worker stores/)
          assert.strictEqual(server.on("/c").length, 0)
        }),
      { timeout: 30_000 }
    )

    it.effect("an enqueue whose dependent's input is not routed fails with InvalidInput, writing nothing", () =>
      Effect.gen(function*() {
        const A = Target.make("a", { request: () => HttpClientRequest.post("http://127.0.0.1:9/a") })
        const C = Target.make("c", { request: () => HttpClientRequest.post("http://127.0.0.1:9/c") })
        const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))
        const env = yield* makeEnv([A, C], storeLayer())
        const outbox = yield* Outbox.make(Router.make(Ping).route(Ping, [C]), { after: { c: ["a"] } }).pipe(
          Effect.provide(env.context)
        )
        const event = yield* Ping.make({ n: 1 })
        const error = yield* Effect.flip(outbox.enqueue(event))
        assert.strictEqual(error._tag, "StoreError")
        assert.strictEqual((error as Store.StoreError).reason, "InvalidInput")
        assert.isTrue(Option.isNone(yield* env.store.status(event.id)))
      }).pipe(Effect.scoped))
  })
}

describe("durable pipelines: what cannot be persisted", () => {
  it("an enrichWith (effect) stage is refused when the outbox is built", () => {
    const A = Target.make("a", { request: () => HttpClientRequest.post("http://127.0.0.1:9/a") })
    const pipeline = Pipeline.make(OrderPlaced)
      .enrichWith("lookup", (event) => Effect.succeed(event.payload))
      .step(A)
    const plan = Pipeline.durablePlan(pipeline)
    assert.strictEqual(plan._tag, "Left")
    assert.match(String((plan as any).left.message), /lookup is an effect/)
  })
})
