/**
 * Type-level checks: this file is compiled by `tsc --noEmit -p .` (the tsconfig includes
 * test/). Every `@ts-expect-error` line must be an error, or tsc fails with "Unused
 * '@ts-expect-error' directive"; every other line must compile.
 */
import type { HttpClient } from "@effect/platform"
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import type { Scope } from "effect"
import { Effect, Layer, Schema } from "effect"
import { Event, Fanout, Router, Target } from "../src/index.js"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Number }))
const OrderCancelled = Event.define("order.cancelled", Schema.Struct({ orderId: Schema.String, reason: Schema.String }))
const UserCreated = Event.define("user.created", Schema.Struct({ userId: Schema.String }))

const post = (path: string) => HttpClientRequest.post(`http://127.0.0.1:1${path}`)

/** Needs only `orderId`: fits every order event. */
const Notify = Target.make("notify", {
  accepts: Schema.Struct({ orderId: Schema.String }),
  request: (e) => post(`/notify/${e.payload.orderId}`)
})
/** Needs `qty`: only order.placed has it. */
const Inventory = Target.make("inventory", {
  accepts: Schema.Struct({ orderId: Schema.String, qty: Schema.Number }),
  request: (e) => post(`/reserve/${e.payload.orderId}?qty=${e.payload.qty}`)
})
/** Needs `sku`, which no event has. */
const Warehouse = Target.make("warehouse", {
  accepts: Schema.Struct({ orderId: Schema.String, sku: Schema.String }),
  request: (e) => post(`/pick/${e.payload.sku}`)
})
/** No `accepts`: takes anything. */
const Audit = Target.make("audit", { request: () => post("/audit") })

// ---------------------------------------------------------------------------------------
// (a) A definition routed to a target whose `accepts` needs a field the payload lacks.

export const okExact = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Notify, Audit])

// @ts-expect-error Warehouse needs `sku`; order.placed has none
export const badExact = Router.make(OrderPlaced).route(OrderPlaced, [Warehouse])

// @ts-expect-error also as a shadow target
export const badShadow = Router.make(OrderPlaced).route(OrderPlaced, [Notify], { shadow: [Warehouse] })

// @ts-expect-error Inventory needs `qty`; order.cancelled has none
export const badCancelled = Router.make(OrderCancelled).route(OrderCancelled, [Inventory])

// The filter sees the typed payload.
export const okFilter = Router.make(OrderPlaced).route(OrderPlaced, [Notify], { filter: (e) => e.payload.qty > 1 })

// @ts-expect-error `sku` is not a field of order.placed
export const badFilter = Router.make(OrderPlaced).route(OrderPlaced, [Notify], { filter: (e) => e.payload.sku === "x" })

// ---------------------------------------------------------------------------------------
// (b) A wildcard route over typed events checks the union of the matching payloads.

const typed = Router.make(OrderPlaced, OrderCancelled, UserCreated)

// Every order.* payload has `orderId`.
export const okWildcard = typed.route("order.*", [Notify, Audit])

// @ts-expect-error order.cancelled (matched by order.*) has no `qty`
export const badWildcard = typed.route("order.*", [Inventory])

// @ts-expect-error `*` also matches user.created, which has no `orderId`
export const badStar = typed.route("*", [Notify])

// `*` with a target that takes anything is fine.
export const okStar = typed.route("*", [Audit])

// A pattern matching only order.placed accepts Inventory.
export const okNarrow = typed.route("order.placed", [Inventory])

// The filter of a wildcard route sees the union.
export const okWildcardFilter = typed.route("order.*", [Notify], {
  filter: (e) => e.type === "order.placed" ? e.payload.qty > 0 : e.payload.reason !== ""
})

// An untyped router routes any pattern to targets that take any payload.
export const okUntyped = Router.make().route("anything.*", [Audit])

// ---------------------------------------------------------------------------------------
// (c) Fanout.make(router) leaves every routed target's service in R until provided.

const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory], { shadow: [Notify] })
type Sender = Fanout.Sender<Event.TypeOf<typeof OrderPlaced>>

// @ts-expect-error the Inventory and Notify services are still required
export const unprovided: Effect.Effect<Sender, never, Scope.Scope> = Fanout.make(router)

export const partlyProvided = Fanout.make(router).pipe(Effect.provide(Inventory.layer))
// @ts-expect-error Notify (a shadow target) is still required
export const stillMissing: Effect.Effect<Sender, never, Scope.Scope | HttpClient.HttpClient> = partlyProvided

// Both layers provided: only the shared HttpClient (and the Scope) remain.
export const provided: Effect.Effect<Sender, never, Scope.Scope | HttpClient.HttpClient> = Fanout.make(router).pipe(
  Effect.provide(Layer.mergeAll(Inventory.layer, Notify.layer))
)

// Fanout.layer has the same requirement.
// @ts-expect-error the targets' layers are required by Fanout.layer
export const layerUnprovided: Layer.Layer<Fanout.Fanout, never, never> = Fanout.layer(Router.make().route("x", [Audit]))

// send takes the router's events only.
export const sendTyped = Effect.gen(function*() {
  const sender = yield* Fanout.make(router)
  const event = yield* OrderPlaced.make({ orderId: "o-1", qty: 1 })
  const settled: Fanout.Settled = yield* sender.send(event)
  const all: Fanout.AllDelivered = yield* sender.send(event, { mode: "all" }).pipe(Effect.orDie)
  const cancelled = yield* OrderCancelled.make({ orderId: "o-1", reason: "r" })
  // @ts-expect-error order.cancelled is not an event of this router
  yield* sender.send(cancelled)
  return [settled, all] as const
})

// @ts-expect-error a payload that does not match its definition
export const badPayload = OrderPlaced.make({ orderId: "o-1", qty: "two" })

describe("type-level checks (compiled by tsc)", () => {
  it("the checked values exist at run time", () => {
    assert.deepStrictEqual(router.targets.map((t) => t.name), ["inventory", "notify"])
    assert.isTrue(okWildcard.hasRoute("order.cancelled"))
    assert.isFalse(okWildcard.hasRoute("user.created"))
    assert.isTrue(Effect.isEffect(provided))
  })
})
