/**
 * Type-level checks of the pipeline builder: compiled by `tsc --noEmit -p .`. Every
 * `@ts-expect-error` line must be an error (or tsc fails with "Unused '@ts-expect-error'
 * directive"); every other line must compile. The `it` blocks check the run-time side of the
 * same declarations (the graph each builds, and that the bad ones also throw at run time).
 */
import type { HttpClient } from "@effect/platform"
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Layer, Schema } from "effect"
import type { Outcome } from "../../src/index.js"
import { Event, Pipeline, Target } from "../../src/index.js"

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({ orderId: Schema.String, customerId: Schema.String, amount: Schema.Number })
)
const post = (path: string) => HttpClientRequest.post(`http://127.0.0.1:1${path}`)

const Customer = Target.make("customer", {
  accepts: Schema.Struct({ customerId: Schema.String }),
  request: (e) => post(`/customers/${e.payload.customerId}`),
  response: Schema.Struct({ name: Schema.String, tier: Schema.Literal("gold", "standard") })
})
/** Needs the enriched payload (`tier`). */
const Inventory = Target.make("inventory", {
  accepts: Schema.Struct({ orderId: Schema.String, tier: Schema.String }),
  request: () => post("/reservations"),
  response: Schema.Struct({ reservationId: Schema.String })
})
const Payment = Target.make("payment", {
  accepts: Schema.Struct({ orderId: Schema.String, amount: Schema.Number }),
  request: () => post("/charges"),
  response: Schema.Struct({ chargeId: Schema.String })
})
const Shipping = Target.make("shipping", {
  accepts: Schema.Struct({ orderId: Schema.String, reservationId: Schema.String, chargeId: Schema.String }),
  request: () => post("/shipments"),
  response: Schema.Struct({ trackingId: Schema.String })
})
/** Takes the default input of a step after inventory. */
const Audit = Target.make("audit", {
  accepts: Schema.Struct({
    event: Schema.Struct({ id: Schema.String, payload: Schema.Struct({ orderId: Schema.String }) }),
    inputs: Schema.Struct({ inventory: Schema.Struct({ reservationId: Schema.String }) })
  }),
  request: () => post("/audit")
})
/** No `accepts`, no `response`: takes anything, answers `unknown`. */
const Log = Target.make("log", { request: () => post("/log") })

const enriched = Pipeline.make(OrderPlaced).enrich(Customer, (event, customer) => ({
  ...event.payload,
  tier: customer.tier
}))

// ---------------------------------------------------------------------------------------
// The order pipeline of the issue type-checks, and its types flow to the result.

export const order = enriched
  .step(Inventory)
  .step(Payment)
  .step(Shipping, {
    after: [Inventory, Payment],
    input: ({ event, inputs }) => ({
      orderId: event.payload.orderId,
      reservationId: inputs.inventory.reservationId,
      chargeId: inputs.payment.chargeId
    })
  })
  .aggregate(({ event, responses }) => ({
    orderId: event.payload.orderId,
    tier: event.payload.tier,
    trackingId: responses.shipping.trackingId
  }))

type OrderSteps = Pipeline.StepsOf<typeof order>
export const stepsCheck: OrderSteps = {
  inventory: { reservationId: "r" },
  payment: { chargeId: "c" },
  shipping: { trackingId: "t" },
  customer: undefined as never
} as any as OrderSteps
// @ts-expect-error a step's answer has the type of its target's response schema
export const badSteps: OrderSteps["inventory"] = { chargeId: "c" }

const event: Event.TypeOf<typeof OrderPlaced> = {
  id: "evt-1",
  type: "order.placed",
  payload: { orderId: "o-1", customerId: "c-1", amount: 1 },
  headers: {},
  createdAt: DateTime.unsafeMake(0)
}
export const all = Pipeline.run(order, event, { mode: "all" }).pipe(
  Effect.map((result) => {
    const tracking: string = result.aggregate.trackingId
    const reservation: string = result.outcomes.inventory.response.reservationId
    const tier: "gold" | "standard" = result.event.payload.tier as "gold" | "standard"
    return [tracking, reservation, tier]
  })
)
// The run requires exactly the four targets' services (the enrich target included).
export const needs: Effect.Effect<unknown, unknown, Target.Id<"customer" | "inventory" | "payment" | "shipping">> = all
// @ts-expect-error without the customer target's service, the run cannot be provided
export const missing: Effect.Effect<unknown, unknown, Target.Id<"inventory" | "payment" | "shipping">> = all

export const settled = Pipeline.run(order, event).pipe(
  Effect.map((result) => {
    const shipping = result.outcomes.shipping
    // settled outcomes may be blocked, with the name of the input that did not succeed
    const by: string | undefined = shipping._tag === "Blocked" ? shipping.by : undefined
    // @ts-expect-error in settled mode the aggregate may be missing
    const tracking: string = result.aggregate.trackingId
    return [by, tracking]
  })
)
// @ts-expect-error an event of another type is not this pipeline's
export const wrongEvent = Pipeline.run(order, { ...event, type: "order.cancelled" as const })

// ---------------------------------------------------------------------------------------
// What must not type-check.

// A mapper reading a field the input's response lacks (`inventory` has no chargeId).
export const badField = () =>
  enriched.step(Inventory).step(Payment).step(Shipping, {
    after: [Inventory, Payment],
    input: ({ event, inputs }) => ({
      orderId: event.payload.orderId,
      reservationId: inputs.inventory.reservationId,
      // @ts-expect-error `inventory` answers { reservationId } only
      chargeId: inputs.inventory.chargeId
    })
  })

// A mapper reading an input the step does not run after.
export const notAnInput = () =>
  enriched.step(Inventory).step(Payment).step(Shipping, {
    after: [Inventory],
    input: ({ event, inputs }) => ({
      orderId: event.payload.orderId,
      reservationId: inputs.inventory.reservationId,
      // @ts-expect-error payment is a step, but not an input of this one
      chargeId: inputs.payment.chargeId
    })
  })

// @ts-expect-error `after` must name a step already added (payment is not)
export const unknownAfter = () => enriched.step(Inventory).step(Log, { after: [Inventory, Payment] })

// @ts-expect-error also by name
export const unknownAfterName = () => enriched.step(Inventory).step(Log, { after: ["inventory", "payment"] })

export const notAccepted = () =>
  // @ts-expect-error the mapped input lacks `chargeId`, which Shipping requires
  enriched.step(Inventory).step(Payment).step(Shipping, {
    after: [Inventory, Payment],
    input: ({ event, inputs }) => ({ orderId: event.payload.orderId, reservationId: inputs.inventory.reservationId })
  })

export const defaultNotAccepted = () =>
  // @ts-expect-error Shipping does not accept the default `{ event, inputs }` input
  enriched.step(Inventory).step(Payment).step(Shipping, { after: [Inventory, Payment] })

// The default input fits a target that declares it.
export const defaultAccepted = enriched.step(Inventory).step(Audit, { after: [Inventory] })

// @ts-expect-error ... and not one whose inputs differ (audit needs inventory's answer)
export const defaultWrongInputs = () => enriched.step(Payment).step(Audit, { after: [Payment] })

// @ts-expect-error Inventory needs `tier`: the raw order (before enrichment) lacks it
export const beforeEnrich = () => Pipeline.make(OrderPlaced).step(Inventory)

// @ts-expect-error the enrich target must accept the event (Inventory needs tier)
export const badEnrichTarget = () => Pipeline.make(OrderPlaced).enrich(Inventory, (e) => e.payload)

// @ts-expect-error the enrich function sees the customer's typed answer (no `email`)
export const badEnrichField = () => Pipeline.make(OrderPlaced).enrich(Customer, (_e, c) => ({ email: c.email }))

// @ts-expect-error a step name may appear once (names are idempotency keys)
export const duplicate = () => enriched.step(Inventory).step(Inventory)

// @ts-expect-error enrich stages come before the first step
export const enrichLate = () => enriched.step(Inventory).enrich(Customer, (e) => e.payload)

export const readUnknown = () =>
  // @ts-expect-error `unknown` answers (no response schema) cannot be read as objects
  enriched.step(Log).step(Payment, { after: [Log], input: ({ inputs }) => inputs.log.amount })

// @ts-expect-error aggregate sees only the steps of the pipeline
export const badAggregate = () => enriched.step(Inventory).aggregate(({ responses }) => responses.payment.chargeId)

// Outcomes carry the typed answers.
export const outcomeType = (o: Outcome.Delivered<{ readonly reservationId: string }>) => o.response.reservationId

describe("pipeline types", () => {
  it("the typed builder records the graph by name", () => {
    assert.deepStrictEqual(order.graph, {
      event: "order.placed",
      enrich: ["customer"],
      steps: [
        { name: "inventory", after: [], input: "event" },
        { name: "payment", after: [], input: "event" },
        { name: "shipping", after: ["inventory", "payment"], input: "mapped" }
      ],
      order: ["inventory", "payment", "shipping"],
      aggregate: true
    })
    assert.strictEqual(defaultAccepted.graph.steps[1]!.input, "inputs")
    // The graph is plain data: it round-trips through its schema (JSON).
    const json = JSON.parse(JSON.stringify(order.graph))
    assert.deepStrictEqual(Schema.decodeUnknownSync(Pipeline.GraphSchema)(json), order.graph)
  })

  it("what the types reject about the graph also fails at run time", () => {
    assert.throws(duplicate, /"inventory" appears twice/)
    assert.throws(unknownAfter, /runs after "payment", which is not a step/)
    assert.throws(unknownAfterName, /runs after "payment", which is not a step/)
    assert.throws(enrichLate, /enrich stages come before the first step/)
    assert.throws(() => (enriched as any).step(Customer), /"customer" appears twice/)
    // The type-only rejections build (types are erased), which is why they are type tests.
    assert.doesNotThrow(badField)
  })

  it("a pipeline is provided like any Effect program: a layer graph of its targets", () => {
    const layers = Layer.mergeAll(Customer.layer, Inventory.layer, Payment.layer, Shipping.layer)
    const program = all.pipe(Effect.provide(layers))
    const check: Effect.Effect<unknown, unknown, HttpClient.HttpClient> = program
    assert.isDefined(check)
  })
})
