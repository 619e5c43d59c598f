/**
 * Pipelines, direct mode, on the test kit's simulated APIs in virtual time: graph validation,
 * enrichment, dependent steps and their inputs, blocking, aggregation, sagas in `all` mode.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Schema } from "effect"
import { Event, Pipeline, Target, TargetError } from "../../src/index.js"
import { Fault, TestTarget, webhook } from "../../src/testing.js"
import { outcomesOf, requestsOf, simulatePipeline } from "./harness.js"

const fast = { retry: { maxAttempts: 3, initialDelay: 10, jitter: "none" as const }, circuitBreaker: false as const }

describe("graph validation", () => {
  it("names the cycle", () => {
    const result = Pipeline.validateGraph({
      steps: [{ name: "a", after: [] }, { name: "b", after: ["a", "d"] }, { name: "c", after: ["b"] }, {
        name: "d",
        after: ["c"]
      }]
    })
    assert.isTrue(Either.isLeft(result))
    const error = Either.getLeft(result).pipe((o) => o._tag === "Some" ? o.value : undefined)!
    assert.strictEqual(error._tag, "Cycle")
    assert.deepStrictEqual((error as Pipeline.Cycle).cycle, ["b", "d", "c", "b"])
    assert.strictEqual(error.message, "pipeline: cycle b → d → c → b (each step runs after the next one)")
  })

  it("a step after itself is a cycle of one", () => {
    const result = Pipeline.validateGraph({ steps: [{ name: "a", after: ["a"] }] })
    assert.deepStrictEqual(
      Either.getLeft(result).pipe((o) => o._tag === "Some" ? o.value.message : ""),
      "pipeline: cycle a → a (each step runs after the next one)"
    )
  })

  it("unknown references and duplicates", () => {
    const unknown = Pipeline.validateGraph({ steps: [{ name: "shipping", after: ["invntory"] }] })
    assert.deepStrictEqual(
      Either.getLeft(unknown).pipe((o) => o._tag === "Some" ? o.value : undefined),
      new Pipeline.UnknownStep({ step: "shipping", reference: "invntory" })
    )
    assert.include(
      Either.getLeft(unknown).pipe((o) => o._tag === "Some" ? o.value.message : ""),
      `step "shipping" runs after "invntory", which is not a step`
    )
    const twice = Pipeline.validateGraph({ steps: [{ name: "a" }, { name: "a" }] })
    assert.deepStrictEqual(
      Either.getLeft(twice).pipe((o) => o._tag === "Some" ? o.value : undefined),
      new Pipeline.DuplicateStep({ step: "a" })
    )
    // An enrich stage and a step share the idempotency-key space: same name, same key.
    const clash = Pipeline.validateGraph({ enrich: ["customer"], steps: [{ name: "customer" }] })
    assert.strictEqual(Either.getLeft(clash).pipe((o) => o._tag === "Some" ? o.value._tag : ""), "DuplicateStep")
    // Enrich stages are not steps: nothing runs "after" them (every step does).
    const afterEnrich = Pipeline.validateGraph({ enrich: ["customer"], steps: [{ name: "a", after: ["customer"] }] })
    assert.strictEqual(Either.getLeft(afterEnrich).pipe((o) => o._tag === "Some" ? o.value._tag : ""), "UnknownStep")
  })

  it("a valid graph gets a topological order (ties in declaration order)", () => {
    const result = Pipeline.validateGraph({
      steps: [{ name: "c", after: ["a", "b", "a"] }, { name: "b", after: ["a"] }, { name: "a" }, { name: "d" }]
    })
    assert.deepStrictEqual(
      result,
      Either.right({
        enrich: [],
        steps: [{ name: "c", after: ["a", "b"] }, { name: "b", after: ["a"] }, { name: "a", after: [] }, {
          name: "d",
          after: []
        }],
        order: ["a", "b", "c", "d"]
      })
    )
  })

  it("fromSteps (the untyped form) validates too", () => {
    const a = webhook("a")
    const b = webhook("b")
    const cycle = Pipeline.fromSteps([{ target: a, after: ["b"] }, { target: b, after: ["a"] }])
    assert.deepStrictEqual(
      Either.getLeft(cycle).pipe((o) => o._tag === "Some" ? o.value : undefined),
      new Pipeline.Cycle({ cycle: ["a", "b", "a"] })
    )
    const ok = Pipeline.fromSteps([{ target: b, after: ["a"] }, { target: a }])
    assert.isTrue(Either.isRight(ok))
    assert.deepStrictEqual(Either.getOrThrow(ok).graph.order, ["a", "b"])
  })
})

// ---------------------------------------------------------------------------------------
// The order domain, on simulated APIs.

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({ orderId: Schema.String, customerId: Schema.String, amount: Schema.Number })
)
const url = TestTarget.urlOf
const Customer = Target.make("customer", {
  accepts: Schema.Struct({ customerId: Schema.String }),
  request: (e) => HttpClientRequest.get(`${url("customer")}/customers/${e.payload.customerId}`),
  response: Schema.Struct({ name: Schema.String, country: Schema.String }),
  policy: fast
})
const Inventory = Target.make("inventory", {
  accepts: Schema.Struct({ orderId: Schema.String, country: Schema.String }),
  request: (e) =>
    HttpClientRequest.post(`${url("inventory")}/reservations`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload)),
  response: Schema.Struct({ reservationId: Schema.String }),
  compensate: ({ response }) => HttpClientRequest.del(`${url("inventory")}/reservations/${response.reservationId}`),
  policy: fast
})
const Payment = Target.make("payment", {
  accepts: Schema.Struct({ orderId: Schema.String, amount: Schema.Number }),
  request: (e) => HttpClientRequest.post(`${url("payment")}/charges`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload)),
  response: Schema.Struct({ chargeId: Schema.String }),
  compensate: ({ response }) => HttpClientRequest.del(`${url("payment")}/charges/${response.chargeId}`),
  policy: fast
})
const Shipping = Target.make("shipping", {
  accepts: Schema.Struct({ orderId: Schema.String, reservationId: Schema.String, chargeId: Schema.String }),
  request: (e) =>
    HttpClientRequest.post(`${url("shipping")}/shipments`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload)),
  response: Schema.Struct({ trackingId: Schema.String }),
  policy: fast
})
/** Takes the default input `{ event, inputs }`. */
const Audit = webhook("audit", { policy: fast })

const order = Pipeline.make(OrderPlaced)
  .enrich(Customer, (event, customer) => ({ ...event.payload, country: customer.country, customer: customer.name }))
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
  .step(Audit, { after: [Shipping] })
  .aggregate(({ event, responses }) => ({
    orderId: event.payload.orderId,
    customer: event.payload.customer,
    reservationId: responses.inventory.reservationId,
    chargeId: responses.payment.chargeId,
    trackingId: responses.shipping.trackingId
  }))

const apis = (
  overrides: Partial<Record<"customer" | "inventory" | "payment" | "shipping" | "audit", Fault.Faults>> = {}
) => ({
  customer: overrides.customer ?? [Fault.ok({ latency: 30, body: { name: "Ada", country: "FR" } })],
  inventory: overrides.inventory ?? [Fault.ok({ latency: 100, body: { reservationId: "r-1" } })],
  payment: overrides.payment ?? [Fault.ok({ latency: 200, body: { chargeId: "c-1" } })],
  shipping: overrides.shipping ?? [Fault.ok({ latency: 50, body: { trackingId: "t-1" } })],
  audit: overrides.audit
})

const placeOrder = OrderPlaced.make({ orderId: "o-1", customerId: "cu-9", amount: 42 }, { id: "evt-1", key: "cu-9" })

describe("stepEvent (shared with the durable mode)", () => {
  it.effect("derives the event each step receives", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const enriched = { ...event, payload: { ...event.payload, country: "FR", customer: "Ada" } }
      const inventory = Either.getOrThrow(Pipeline.stepEvent(order, "inventory", enriched, {}))
      assert.strictEqual(inventory, enriched, "a step without inputs gets the enriched event itself")
      const shipping = Either.getOrThrow(
        Pipeline.stepEvent(order, "shipping", enriched, {
          inventory: { reservationId: "r" },
          payment: { chargeId: "c" }
        })
      )
      assert.deepStrictEqual(shipping.payload, { orderId: "o-1", reservationId: "r", chargeId: "c" })
      assert.deepStrictEqual([shipping.id, shipping.type, shipping.key, shipping.createdAt], [
        event.id,
        event.type,
        event.key,
        event.createdAt
      ])
      const audit = Either.getOrThrow(Pipeline.stepEvent(order, "audit", enriched, { shipping: { trackingId: "t" } }))
      assert.deepStrictEqual((audit.payload as any).inputs, { shipping: { trackingId: "t" } })
      assert.strictEqual((audit.payload as any).event.createdAt, new Date(event.createdAt.epochMillis).toISOString())
      // A mapper that cannot build its input (here: inputs missing) is a permanent error.
      const broken = Pipeline.stepEvent(order, "shipping", enriched, {})
      assert.strictEqual(Either.getLeft(broken).pipe((o) => o._tag === "Some" ? o.value.reason : ""), "Transform")
      assert.isTrue(Either.isLeft(Pipeline.stepEvent(order, "nope", enriched, {})))
    }))
})

describe("direct mode", () => {
  it.effect("enrich, fan out, dependent steps with typed inputs, one combined answer", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const run = yield* simulatePipeline({ pipeline: order, event, mode: "all", testTargets: apis() })
      assert.isTrue(Either.isRight(run.result), JSON.stringify(run.result))
      const result = Either.getOrThrow(run.result)
      assert.deepStrictEqual(result.aggregate, {
        orderId: "o-1",
        customer: "Ada",
        reservationId: "r-1",
        chargeId: "c-1",
        trackingId: "t-1"
      })
      // Critical path: customer 30, then max(inventory 100, payment 200), then shipping 50, audit 0.
      assert.strictEqual(result.durationMs, 280)
      assert.strictEqual(run.finishedAt - run.startedAt, 280)

      // What each API received: the enriched payload, the mapped input, the default input.
      const body = (name: string) => JSON.parse(requestsOf(run, event, name)[0]!.body)
      assert.deepStrictEqual(body("inventory"), { orderId: "o-1", country: "FR" })
      assert.deepStrictEqual(body("payment"), { orderId: "o-1", amount: 42 })
      assert.deepStrictEqual(body("shipping"), { orderId: "o-1", reservationId: "r-1", chargeId: "c-1" })
      assert.deepStrictEqual(body("audit"), {
        event: {
          id: "evt-1",
          type: "order.placed",
          key: "cu-9",
          payload: { orderId: "o-1", customerId: "cu-9", amount: 42, country: "FR", customer: "Ada" },
          headers: {},
          createdAt: new Date(event.createdAt.epochMillis).toISOString()
        },
        inputs: { shipping: { trackingId: "t-1" } }
      })
      // Every request carries the step's idempotency key `<event id>:<step>` (derived events keep the id).
      for (const name of ["customer", "inventory", "payment", "shipping", "audit"]) {
        assert.strictEqual(requestsOf(run, event, name).length, 1, name)
      }
      // Shipping started the moment payment (the later input) answered, not later.
      const paymentDone = requestsOf(run, event, "payment")[0]!.completedAt!
      assert.strictEqual(requestsOf(run, event, "shipping")[0]!.receivedAt, paymentDone)
      // The timeline: one entry per call, on the Clock.
      const t0 = result.startedAt
      assert.deepStrictEqual(
        result.timeline.map((t) => [t.step, t.phase, t.startedAt - t0, t.endedAt - t0, t.outcome]),
        [
          ["customer", "enrich", 0, 30, "Delivered"],
          ["inventory", "deliver", 30, 130, "Delivered"],
          ["payment", "deliver", 30, 230, "Delivered"],
          ["shipping", "deliver", 230, 280, "Delivered"],
          ["audit", "deliver", 280, 280, "Delivered"]
        ]
      )
      assert.strictEqual(result.event.payload.customer, "Ada")
    }))

  it.effect("a failed input blocks its dependents, transitively, and they send nothing (settled)", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const run = yield* simulatePipeline({
        pipeline: order,
        event,
        testTargets: apis({ inventory: [Fault.status(409, { latency: 20 })] })
      })
      const result = Either.getOrThrow(run.result)
      const o = result.outcomes
      assert.strictEqual(o.inventory._tag, "Failed")
      assert.strictEqual(o.payment._tag, "Delivered", "an unrelated step is not affected")
      assert.deepStrictEqual(o.shipping, { _tag: "Blocked", target: "shipping", by: "inventory", root: "inventory" })
      assert.deepStrictEqual(o.audit, { _tag: "Blocked", target: "audit", by: "shipping", root: "inventory" })
      assert.isUndefined(result.aggregate, "no aggregate unless every step was delivered")
      assert.strictEqual(requestsOf(run, event, "shipping").length, 0)
      assert.strictEqual(requestsOf(run, event, "audit").length, 0)
      // A blocked step is known blocked as soon as its input failed: the run ends with payment.
      assert.strictEqual(result.durationMs, 30 + 200)
    }))

  it.effect("a transient enrich failure fails the run as transient, before any step", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const run = yield* simulatePipeline({
        pipeline: order,
        event,
        testTargets: apis({ customer: Fault.script([Fault.unavailable()], { then: "repeat" }) })
      })
      assert.isTrue(Either.isLeft(run.result))
      const error = Either.getLeft(run.result).pipe((o) => o._tag === "Some" ? o.value : undefined)!
      assert.strictEqual(error._tag, "EnrichFailed")
      const enrich = error as Pipeline.EnrichFailed
      assert.strictEqual(enrich.step, "customer")
      assert.isTrue(enrich.transient)
      assert.strictEqual(enrich.outcome?.attempts, 3, "retried under the customer target's policy")
      assert.strictEqual(requestsOf(run, event, "customer").length, 3)
      for (const name of ["inventory", "payment", "shipping", "audit"]) {
        assert.strictEqual(run.testTargets[name]!.ledger.length, 0, name)
      }
    }))

  it.effect("a permanent enrich failure, and an enrich function that throws, are permanent", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const notFound = yield* simulatePipeline({
        pipeline: order,
        event,
        testTargets: apis({ customer: [Fault.status(404)] })
      })
      const e1 = Either.getLeft(notFound.result).pipe((o) =>
        o._tag === "Some" ? o.value : undefined
      ) as Pipeline.EnrichFailed
      assert.strictEqual(e1._tag, "EnrichFailed")
      assert.isFalse(e1.transient)
      assert.strictEqual(e1.error._tag, "PermanentError")
      assert.strictEqual(requestsOf(notFound, event, "customer").length, 1, "not retried")

      const throwing = Pipeline.make(OrderPlaced).enrich(Customer, () => {
        throw new Error("no country")
      }).step(Payment)
      const threw = yield* simulatePipeline({ pipeline: throwing, event, testTargets: apis() })
      const e2 = Either.getLeft(threw.result).pipe((o) =>
        o._tag === "Some" ? o.value : undefined
      ) as Pipeline.EnrichFailed
      assert.strictEqual(e2.error._tag, "PermanentError")
      assert.include(e2.error.message, "no country")
      assert.strictEqual(threw.testTargets.payment!.ledger.length, 0)
    }))

  it.effect("enrichWith: any effect, with its own services, classified by its error", () =>
    Effect.gen(function*() {
      class Rates extends Context.Tag("test/Rates")<Rates, { readonly eur: (amount: number) => number }>() {}
      const event = yield* placeOrder
      const pipeline = Pipeline.make(OrderPlaced)
        .enrichWith(
          "rates",
          (e) => Effect.map(Rates, (rates) => ({ ...e.payload, amount: rates.eur(e.payload.amount) }))
        )
        .step(Payment)
      const run = yield* simulatePipeline({
        pipeline,
        event,
        testTargets: apis(),
        context: Context.make(Rates, { eur: (amount) => amount * 2 })
      })
      assert.deepStrictEqual(JSON.parse(requestsOf(run, event, "payment")[0]!.body), { orderId: "o-1", amount: 84 })
      assert.deepStrictEqual(pipeline.graph.enrich, ["rates"])

      const failing = Pipeline.make(OrderPlaced)
        .enrichWith(
          "fx",
          () => Effect.fail(new TargetError.TransientError({ target: "fx", reason: "Custom", message: "fx down" }))
        )
        .step(Payment)
      const failed = yield* simulatePipeline({ pipeline: failing, event, testTargets: apis() })
      const error = Either.getLeft(failed.result).pipe((o) =>
        o._tag === "Some" ? o.value : undefined
      ) as Pipeline.EnrichFailed
      assert.strictEqual(error.step, "fx")
      assert.isTrue(error.transient)
      assert.strictEqual(failed.testTargets.payment!.ledger.length, 0)
    }))

  it.effect("an input mapper that throws fails its step permanently, without a request", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const pipeline = Pipeline.make(OrderPlaced).step(Payment).step(Shipping, {
        after: [Payment],
        input: () => {
          throw new Error("no reservation")
        }
      }).step(Audit, { after: [Shipping] })
      const run = yield* simulatePipeline({ pipeline, event, testTargets: apis() })
      const o = Either.getOrThrow(run.result).outcomes
      assert.strictEqual(o.shipping._tag, "Failed")
      const error = o.shipping._tag === "Failed" ? o.shipping.error : undefined
      assert.strictEqual(error?._tag, "PermanentError")
      assert.strictEqual(error?._tag === "PermanentError" ? error.reason : "", "Transform")
      assert.strictEqual(o.audit._tag, "Blocked")
      assert.strictEqual(requestsOf(run, event, "shipping").length, 0)
    }))

  it.effect("all mode: a failure compensates every delivered step, dependents before their inputs", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      // inventory → shipping (compensable here) and payment; audit after shipping fails for good.
      const ShippingC = Target.make("shipping", {
        ...Shipping.options,
        compensate: ({ response }) => HttpClientRequest.del(`${url("shipping")}/shipments/${response.trackingId}`)
      })
      const pipeline = Pipeline.make(OrderPlaced)
        .enrich(Customer, (e, c) => ({ ...e.payload, country: c.country }))
        .step(Inventory)
        .step(Payment)
        .step(ShippingC, {
          after: [Inventory, Payment],
          input: ({ event, inputs }) => ({
            orderId: event.payload.orderId,
            reservationId: inputs.inventory.reservationId,
            chargeId: inputs.payment.chargeId
          })
        })
        .step(Audit, { after: [ShippingC] })
      const run = yield* simulatePipeline({
        pipeline,
        event,
        mode: "all",
        testTargets: apis({ audit: [Fault.status(422, { latency: 10 })] })
      })
      const error = Either.getLeft(run.result).pipe((o) =>
        o._tag === "Some" ? o.value : undefined
      ) as Pipeline.PipelineFailed
      assert.strictEqual(error._tag, "PipelineFailed")
      assert.strictEqual(error.step, "audit")
      assert.strictEqual(error.error._tag, "PermanentError")
      const o = error.outcomes
      for (const name of ["inventory", "payment", "shipping"]) {
        assert.strictEqual(o[name]!._tag, "Compensated", name)
        assert.strictEqual(requestsOf(run, event, name, ":compensate").length, 1, `${name} compensated once`)
      }
      assert.strictEqual(o.audit!._tag, "Failed")
      // Shipping (the dependent) was undone before inventory and payment (its inputs).
      const undo = (name: string) => requestsOf(run, event, name, ":compensate")[0]!
      assert.isBelow(undo("shipping").completedOrder!, undo("inventory").order)
      assert.isBelow(undo("shipping").completedOrder!, undo("payment").order)
      // Inventory and payment are independent: undone concurrently.
      assert.strictEqual(undo("inventory").receivedAt, undo("payment").receivedAt)
      assert.deepStrictEqual(
        error.timeline.filter((t) => t.phase === "compensate").map((t) => t.step).sort(),
        ["inventory", "payment", "shipping"]
      )
    }))

  it.effect("all mode: running steps are interrupted; an in-flight compensable attempt is let finish, then undone", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const Slow = webhook("slow", { policy: fast }) // no compensation: interrupted mid-request
      const Undoable = webhook("undoable", { policy: fast, compensate: true })
      const Later = webhook("later", { policy: fast })
      const Fails = webhook("fails", { policy: fast })
      const pipeline = Pipeline.make(OrderPlaced).step(Fails).step(Slow).step(Undoable).step(Later, { after: [Slow] })
      const run = yield* simulatePipeline({
        pipeline,
        event,
        mode: "all",
        testTargets: {
          fails: [Fault.status(400, { latency: 50 })],
          slow: [Fault.ok({ latency: 500 })],
          undoable: (req) => req.method === "DELETE" ? Fault.ok() : Fault.ok({ latency: 300 }),
          later: undefined
        }
      })
      const error = Either.getLeft(run.result).pipe((o) =>
        o._tag === "Some" ? o.value : undefined
      ) as Pipeline.PipelineFailed
      const o = error.outcomes
      assert.strictEqual(o.fails!._tag, "Failed")
      assert.strictEqual(o.slow!._tag, "Cancelled")
      assert.strictEqual(requestsOf(run, event, "slow")[0]!.result, "aborted")
      assert.strictEqual(o.later!._tag, "Cancelled", "waiting on a cancelled input: cancelled, not blocked")
      assert.strictEqual(o.undoable!._tag, "Compensated")
      assert.strictEqual(requestsOf(run, event, "undoable")[0]!.result, "answered")
      assert.strictEqual(requestsOf(run, event, "undoable", ":compensate").length, 1)
      // The run waited for the in-flight attempt (300 ms), not for the slow one (500 ms).
      assert.strictEqual(run.finishedAt - run.startedAt, 300)
    }))

  it.effect("all mode: steps behind the failed one are Blocked by it, not Cancelled", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const A = webhook("a", { policy: fast })
      const B = webhook("b", { policy: fast })
      const C = webhook("c", { policy: fast })
      const pipeline = Pipeline.make(OrderPlaced).step(A).step(B, { after: [A] }).step(C, { after: [B] })
      const run = yield* simulatePipeline({
        pipeline,
        event,
        mode: "all",
        testTargets: { a: [Fault.status(400)], b: undefined, c: undefined }
      })
      const o = outcomesOf(run)
      assert.deepStrictEqual(o.b, { _tag: "Blocked", target: "b", by: "a", root: "a" })
      assert.deepStrictEqual(o.c, { _tag: "Blocked", target: "c", by: "b", root: "a" })
    }))

  it.effect("settled mode: the aggregate when every step was delivered", () =>
    Effect.gen(function*() {
      const event = yield* placeOrder
      const run = yield* simulatePipeline({ pipeline: order, event, testTargets: apis() })
      const result = Either.getOrThrow(run.result)
      assert.strictEqual(result.aggregate?.trackingId, "t-1")
    }))
})
