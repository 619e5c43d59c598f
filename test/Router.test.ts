import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Event, Router, Target } from "../src/index.js"

const target = <const N extends string>(name: N) =>
  Target.make(name, { request: () => HttpClientRequest.post(`http://127.0.0.1:1/${name}`) })

const Inventory = target("inventory")
const Billing = target("billing")
const Notify = target("notify")
const Audit = target("audit")
const Analytics = target("analytics")

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, total: Schema.Number }))
const OrderCancelled = Event.define("order.cancelled", Schema.Struct({ orderId: Schema.String }))
const UserCreated = Event.define("user.created", Schema.Struct({ userId: Schema.String }))

const names = (ts: ReadonlyArray<Target.Any>) => ts.map((t) => t.name)

const eventOf = (type: string, payload: unknown = {}) => Effect.runSync(Event.make(type, payload, { id: "e-1" }))

describe("Router", () => {
  const router = Router.make(OrderPlaced, OrderCancelled, UserCreated)
    .route(OrderPlaced, [Inventory, Billing])
    .route("order.*", [Notify, Billing])
    .route("*", [Analytics])

  it("an event goes to the union of every matching route (exact and wildcard), each target once", () => {
    assert.deepStrictEqual(names(router.resolve(eventOf("order.placed")).targets), [
      "inventory",
      "billing",
      "notify",
      "analytics"
    ])
    assert.deepStrictEqual(names(router.resolve(eventOf("order.cancelled")).targets), [
      "notify",
      "billing",
      "analytics"
    ])
    assert.deepStrictEqual(names(router.resolve(eventOf("user.created")).targets), ["analytics"])
  })

  it("wildcards: `order.*` does not match `order` nor `orders.x`; `*` matches anything; dots are literal", () => {
    const r = Router.make().route("order.*", [Notify]).route("a.b", [Audit])
    assert.isTrue(r.hasRoute("order.placed"))
    assert.isTrue(r.hasRoute("order.placed.v2"))
    assert.isFalse(r.hasRoute("order"))
    assert.isFalse(r.hasRoute("orders.placed"))
    assert.isFalse(r.hasRoute("orderXplaced"))
    assert.isTrue(r.hasRoute("a.b"))
    assert.isFalse(r.hasRoute("aXb"), "a dot in a pattern is not a regex wildcard")
    assert.isTrue(Router.make().route("*", [Notify]).hasRoute("anything.at.all"))
    assert.isTrue(Router.make().route("*.created", [Notify]).hasRoute("user.created"))
    assert.isFalse(Router.make().route("*.created", [Notify]).hasRoute("user.deleted"))
  })

  it("hasRoute ignores filters; resolve applies them", () => {
    const r = Router.make(OrderPlaced)
      .route(OrderPlaced, [Inventory])
      .route(OrderPlaced, [Billing], { filter: (e) => e.payload.total > 100 })
    const small = Effect.runSync(OrderPlaced.make({ orderId: "o", total: 10 }))
    const big = Effect.runSync(OrderPlaced.make({ orderId: "o", total: 1000 }))
    assert.deepStrictEqual(names(r.resolve(small).targets), ["inventory"])
    assert.deepStrictEqual(names(r.resolve(big).targets), ["inventory", "billing"])
    const onlyFiltered = Router.make(OrderPlaced).route(OrderPlaced, [Billing], { filter: () => false })
    assert.isTrue(onlyFiltered.hasRoute("order.placed"))
    assert.deepStrictEqual(onlyFiltered.resolve(small), { targets: [], shadow: [] })
    assert.isFalse(onlyFiltered.hasRoute("order.cancelled"))
  })

  it("shadow targets are mirrored; a target primary anywhere is not a shadow", () => {
    const r = Router.make(OrderPlaced, OrderCancelled)
      .route(OrderPlaced, [Inventory], { shadow: [Audit, Billing] })
      .route("order.*", [Billing], { shadow: [Audit] })
    const placed = r.resolve(eventOf("order.placed"))
    assert.deepStrictEqual(names(placed.targets), ["inventory", "billing"])
    assert.deepStrictEqual(names(placed.shadow), ["audit"])
    const cancelled = r.resolve(eventOf("order.cancelled"))
    assert.deepStrictEqual(names(cancelled.targets), ["billing"])
    assert.deepStrictEqual(names(cancelled.shadow), ["audit"])
    // By type alone (a dead letter's): audit only mirrors; billing is primary for every order type.
    assert.isTrue(r.isShadowOf("order.placed", "audit"))
    assert.isFalse(r.isShadowOf("order.placed", "billing"))
    assert.isFalse(r.isShadowOf("order.placed", "inventory"))
    assert.isFalse(r.isShadowOf("user.created", "audit"), "no route matches")
    // Shadow-only routing is allowed.
    const shadowOnly = Router.make().route("x", [], { shadow: [Audit] }).resolve(eventOf("x"))
    assert.deepStrictEqual({ targets: names(shadowOnly.targets), shadow: names(shadowOnly.shadow) }, {
      targets: [],
      shadow: ["audit"]
    })
  })

  it("a target named twice in one route throws (targets or shadow); an empty pattern throws", () => {
    assert.throws(() => Router.make().route("x", [Notify, Notify]), TypeError, "notify")
    assert.throws(() => Router.make().route("x", [Notify], { shadow: [Notify] }), TypeError, "notify")
    assert.throws(() => Router.make().route("", [Notify]), TypeError)
    // The same target in two different routes is fine (deduped at resolve time).
    assert.doesNotThrow(() => Router.make().route("x", [Notify]).route("*", [Notify]))
  })

  it("targets lists every routed target once; routes are immutable (route returns a new router)", () => {
    const r = Router.make().route("a", [Notify, Billing], { shadow: [Audit] }).route("*", [Notify])
    assert.deepStrictEqual(names(r.targets), ["notify", "billing", "audit"])
    const base = Router.make().route("a", [Notify])
    const extended = base.route("b", [Billing])
    assert.isFalse(base.hasRoute("b"))
    assert.isTrue(extended.hasRoute("b"))
    // With a `*` route, every type has a route; without, unknown types have none.
    assert.isTrue(router.hasRoute("payment.done"))
    assert.isFalse(base.hasRoute("payment.done"))
  })
})
