/**
 * Every mode of `send`, under TestClock, against TestTargets on the simulated client.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schema, Scope, TestClock } from "effect"
import { Event, Fanout, Router, Target } from "../src/index.js"
import type { Outcome } from "../src/index.js"
import { Fault, TestTarget, webhook } from "../src/testing.js"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Number }))
const Reservation = Schema.Struct({ ok: Schema.Boolean, key: Schema.String })

/** A target that POSTs the order to the TestTarget of the same name, optionally with a compensation (DELETE). */
const target = <const Name extends string>(
  name: Name,
  options: { readonly compensate?: boolean; readonly policy?: Target.Options<unknown, unknown>["policy"] } = {}
) =>
  Target.make(name, {
    accepts: Schema.Struct({ orderId: Schema.String }),
    request: (event) =>
      HttpClientRequest.post(`${TestTarget.urlOf(name)}/orders/${event.payload.orderId}`).pipe(
        HttpClientRequest.bodyUnsafeJson(event.payload)
      ),
    response: Reservation,
    policy: options.policy ?? { retry: { maxAttempts: 3, initialDelay: "100 millis", jitter: "none" } },
    ...(options.compensate === true
      ? {
        compensate: (
          { event, response }: {
            readonly event: Event.Event<string, { readonly orderId: string }>
            readonly response: typeof Reservation.Type
          }
        ) =>
          HttpClientRequest.del(`${TestTarget.urlOf(name)}/orders/${event.payload.orderId}`).pipe(
            HttpClientRequest.setHeader("x-reservation", response.key)
          )
      }
      : {})
  })

const Inventory = target("inventory", { compensate: true })
const Payments = target("payments", { compensate: true })
const Warehouse = target("warehouse", { compensate: true })
const Email = target("email")
const Shipping = target("shipping")
const Audit = target("audit")

const order = OrderPlaced.make({ orderId: "o-1", qty: 2 }, { id: "evt-1" })

/** Target layers over the simulated client serving `fakes`. */
const live = <R>(layer: Layer.Layer<R, never, never>) => layer
const over = (...fakes: ReadonlyArray<TestTarget.TestTarget>) => TestTarget.layer(...fakes)

const tag = (outcome: Outcome.Outcome | undefined) => outcome?._tag

describe("Fanout.send (settled)", () => {
  it.scoped("gives each target its own outcome; one failing target does not fail the others", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 50 })] })
      const email = TestTarget.make("email", { faults: Fault.script([Fault.status(400)], { then: "repeat" }) })
      const audit = TestTarget.make("audit", { faults: Fault.script([Fault.unavailable()], { then: "repeat" }) })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Email, Audit])
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(
          live(
            Layer.mergeAll(Inventory.layer, Email.layer, Audit.layer).pipe(Layer.provide(over(inventory, email, audit)))
          )
        )
      )
      const event = yield* order
      const fiber = yield* Effect.fork(sender.send(event))
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)

      assert.deepStrictEqual(Object.keys(result.outcomes).sort(), ["audit", "email", "inventory"])
      const delivered = result.outcomes.inventory
      assert.strictEqual(delivered?._tag, "Delivered")
      if (delivered?._tag === "Delivered") {
        assert.strictEqual(delivered.attempts, 1)
        assert.deepStrictEqual(delivered.response, { ok: true, key: "evt-1:inventory" })
        assert.strictEqual(delivered.durationMs, 50)
      }
      const permanent = result.outcomes.email
      assert.strictEqual(permanent?._tag, "Failed")
      if (permanent?._tag === "Failed") {
        assert.strictEqual(permanent.error._tag, "PermanentError")
        assert.strictEqual(permanent.attempts, 1)
      }
      const transient = result.outcomes.audit
      assert.strictEqual(transient?._tag, "Failed")
      if (transient?._tag === "Failed") {
        assert.strictEqual(transient.error._tag, "TransientError")
        assert.strictEqual(transient.attempts, 3)
      }
      // The ledgers agree: 1 request, 1 request, 3 retries 100 ms then 200 ms apart (jitter off).
      assert.strictEqual(email.ledger.length, 1)
      assert.deepStrictEqual(audit.ledger.map((r) => r.receivedAt), [0, 100, 300])
      assert.deepStrictEqual(inventory.ledger.map((r) => [r.method, r.path, r.key]), [[
        "POST",
        "/orders/o-1",
        "evt-1:inventory"
      ]])
      assert.strictEqual(result.durationMs, 300)
    }))

  it.scoped("NoRouteError for an event type no route matches, in every mode", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory")
      const Hook = webhook("inventory")
      const router = Router.make().route("order.*", [Hook])
      const sender = yield* Fanout.make(router).pipe(Effect.provide(Hook.layer.pipe(Layer.provide(over(inventory)))))
      const event = yield* Event.make("user.created", { orderId: "o-9" })
      for (const mode of ["settled", "all", "background"] as const) {
        const exit = yield* Effect.exit(sender.send(event, { mode } as { mode: "settled" }))
        assert.isTrue(Exit.isFailure(exit), mode)
        if (Exit.isFailure(exit)) {
          const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          assert.strictEqual(error?._tag, "NoRouteError", mode)
          assert.strictEqual(error?.type, "user.created")
        }
      }
      assert.strictEqual(inventory.ledger.length, 0)
    }))

  it.scoped("targets run concurrently: two targets of 200 ms each finish at 200 ms, not 400", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 200 })] })
      const payments = TestTarget.make("payments", { faults: [Fault.ok({ latency: 200 })] })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Payments])
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Payments.layer).pipe(Layer.provide(over(inventory, payments))))
      )
      const event = yield* order
      const fiber = yield* Effect.fork(sender.send(event))
      yield* TestClock.adjust("199 millis")
      assert.isTrue((yield* Fiber.poll(fiber))._tag === "None", "not done before 200 ms")
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(result.durationMs, 200)
      assert.strictEqual(tag(result.outcomes.inventory), "Delivered")
      assert.strictEqual(tag(result.outcomes.payments), "Delivered")
      assert.deepStrictEqual([...inventory.ledger, ...payments.ledger].map((r) => [r.receivedAt, r.completedAt]), [[
        0,
        200
      ], [0, 200]])
    }))
})

describe("Fanout.send (all)", () => {
  it.scoped("a failure interrupts the others, compensates the succeeded ones once each in reverse order, cancels the rest", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 50 })] })
      const payments = TestTarget.make("payments", { faults: [Fault.ok({ latency: 100 })] })
      // In flight when shipping fails; it has a compensation, so its attempt is let finish (saga needs it).
      const warehouse = TestTarget.make("warehouse", { faults: [Fault.ok({ latency: 300 })] })
      // In flight when shipping fails, no compensation: interrupted.
      const email = TestTarget.make("email", { faults: [Fault.ok({ latency: 1000 })] })
      const shipping = TestTarget.make("shipping", { faults: [Fault.status(422, { latency: 150 })] })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Payments, Warehouse, Email, Shipping])
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(
          Layer.mergeAll(Inventory.layer, Payments.layer, Warehouse.layer, Email.layer, Shipping.layer).pipe(
            Layer.provide(over(inventory, payments, warehouse, email, shipping))
          )
        )
      )
      const event = yield* order
      const fiber = yield* Effect.fork(Effect.either(sender.send(event, { mode: "all" })))
      yield* TestClock.adjust("5 seconds")
      const result = yield* Fiber.join(fiber)

      assert.strictEqual(result._tag, "Left")
      if (result._tag !== "Left") return
      const failure = result.left
      assert.strictEqual(failure._tag, "FanoutFailed")
      if (failure._tag !== "FanoutFailed") return
      assert.strictEqual(failure.target, "shipping")
      assert.strictEqual(failure.error._tag, "PermanentError")
      const outcomes = failure.outcomes
      assert.strictEqual(tag(outcomes.shipping), "Failed")
      assert.strictEqual(tag(outcomes.email), "Cancelled")
      for (const name of ["inventory", "payments", "warehouse"]) {
        const outcome = outcomes[name]
        assert.strictEqual(tag(outcome), "Compensated", name)
        if (outcome?._tag === "Compensated") {
          assert.strictEqual(outcome.compensation._tag, "Delivered", name)
          assert.strictEqual(outcome.delivered._tag, "Delivered", name)
        }
      }
      // The interrupted request was abandoned by the client at 150 ms.
      assert.deepStrictEqual(email.ledger.map((r) => [r.result, r.completedAt]), [["aborted", 150]])
      // Exactly one compensation per succeeded target, carrying what the target answered...
      const deletes = [inventory, payments, warehouse].flatMap((fake) =>
        fake.ledger.filter((r) => r.method === "DELETE")
      )
      assert.deepStrictEqual(
        deletes.map((r) => [r.target, r.key, r.headers["x-reservation"]]).sort(),
        [
          ["inventory", "evt-1:inventory:compensate", "evt-1:inventory"],
          ["payments", "evt-1:payments:compensate", "evt-1:payments"],
          ["warehouse", "evt-1:warehouse:compensate", "evt-1:warehouse"]
        ]
      )
      // ...in reverse order of success (inventory at 50 ms, payments at 100, warehouse at 300).
      assert.deepStrictEqual(deletes.sort((a, b) => a.order - b.order).map((r) => r.target), [
        "warehouse",
        "payments",
        "inventory"
      ])
      assert.isTrue(
        deletes.every((r) => r.receivedAt >= 300),
        "compensations start once the in-flight saga step is done"
      )
      // No compensation for targets that never succeeded.
      assert.isFalse([...email.ledger, ...shipping.ledger].some((r) => r.method === "DELETE"))
    }))

  it.scoped("a target waiting to retry when another fails is Cancelled, and sends nothing more", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", {
        faults: Fault.script([Fault.unavailable()], { then: "repeat" })
      })
      const shipping = TestTarget.make("shipping", { faults: [Fault.status(400, { latency: 50 })] })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Shipping])
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Shipping.layer).pipe(Layer.provide(over(inventory, shipping))))
      )
      const event = yield* order
      const fiber = yield* Effect.fork(Effect.either(sender.send(event, { mode: "all" })))
      yield* TestClock.adjust("5 seconds")
      const result = yield* Fiber.join(fiber)
      assert.strictEqual(result._tag, "Left")
      if (result._tag === "Left" && result.left._tag === "FanoutFailed") {
        assert.strictEqual(tag(result.left.outcomes.inventory), "Cancelled")
        // Not compensated: it never succeeded.
        assert.isFalse(inventory.ledger.some((r) => r.method === "DELETE"))
      } else {
        assert.fail("expected FanoutFailed")
      }
      // First attempt at 0, retry scheduled at 100 ms, cancelled at 50 ms: one request only.
      assert.strictEqual(inventory.ledger.length, 1)
    }))

  it.scoped("all targets delivered: the outcomes of every target, no compensation", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.unavailable(), Fault.ok()] })
      const payments = TestTarget.make("payments")
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Payments])
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Payments.layer).pipe(Layer.provide(over(inventory, payments))))
      )
      const event = yield* order
      const fiber = yield* Effect.fork(sender.send(event, { mode: "all" }))
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual(Object.keys(result.outcomes).sort(), ["inventory", "payments"])
      assert.strictEqual(result.outcomes.inventory?.attempts, 2)
      assert.isFalse([...inventory.ledger, ...payments.ledger].some((r) => r.method === "DELETE"))
    }))
})

describe("Fanout.send (background)", () => {
  it.scoped("returns at once; await gives the outcomes", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 300 })] })
      const email = TestTarget.make("email", { faults: [Fault.status(400, { latency: 100 })] })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Email])
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Email.layer).pipe(Layer.provide(over(inventory, email))))
      )
      const event = yield* order
      // No clock adjustment needed to get the handle: it does not wait for any target.
      const handle = yield* sender.send(event, { mode: "background" })
      assert.deepStrictEqual([...handle.targets].sort(), ["email", "inventory"])
      assert.strictEqual(handle.eventId, "evt-1")
      const waiting = yield* Effect.fork(handle.await)
      yield* TestClock.adjust("299 millis")
      assert.isTrue((yield* Fiber.poll(waiting))._tag === "None")
      yield* TestClock.adjust("1 millis")
      const settled = yield* Fiber.join(waiting)
      assert.strictEqual(tag(settled.outcomes.inventory), "Delivered")
      assert.strictEqual(tag(settled.outcomes.email), "Failed")
      assert.strictEqual(settled.durationMs, 300)
    }))

  it.effect("closing the Fanout's scope lets in-flight deliveries finish within the grace period, and interrupts them after", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 500 })] })
      const email = TestTarget.make("email", { faults: [Fault.ok({ latency: 5000 })] })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Email])
      const scope = yield* Scope.make()
      const sender = yield* Fanout.make(router, { gracePeriod: "1 second" }).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Email.layer).pipe(Layer.provide(over(inventory, email)))),
        Scope.extend(scope)
      )
      const event = yield* order
      yield* sender.send(event, { mode: "background" })
      yield* TestClock.adjust("10 millis")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("600 millis")
      // Within the grace period: inventory answered at 500 ms, email still in flight, scope still closing.
      assert.deepStrictEqual(inventory.ledger.map((r) => [r.result, r.completedAt]), [["answered", 500]])
      assert.deepStrictEqual(email.ledger.map((r) => r.result), ["pending"])
      assert.isTrue((yield* Fiber.poll(closing))._tag === "None", "close waits for in-flight work")
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      // The grace period (1 s after the close began at 10 ms) ended: email was interrupted then.
      assert.deepStrictEqual(email.ledger.map((r) => [r.result, r.completedAt]), [["aborted", 1010]])
    }))
})

describe("Fanout.send (shadow targets)", () => {
  it.scoped("a failing shadow never changes the result, in all mode", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 20 })] })
      const audit = TestTarget.make("audit", {
        faults: Fault.script([Fault.status(500, { latency: 10 })], { then: "repeat" })
      })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory], { shadow: [Audit] })
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Audit.layer).pipe(Layer.provide(over(inventory, audit))))
      )
      const event = yield* order
      const fiber = yield* Effect.fork(sender.send(event, { mode: "all" }))
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual(Object.keys(result.outcomes), ["inventory"])
      assert.deepStrictEqual(result.shadow, ["audit"])
      assert.strictEqual(result.durationMs, 20)
      // The shadow was mirrored the same event (with its own key), and failed on its own (3 attempts).
      assert.deepStrictEqual(audit.ledger.map((r) => [r.key, r.status]), [
        ["evt-1:audit", 500],
        ["evt-1:audit", 500],
        ["evt-1:audit", 500]
      ])
    }))

  it.scoped("a slow shadow does not delay a settled send", () =>
    Effect.gen(function*() {
      const inventory = TestTarget.make("inventory", { faults: [Fault.ok({ latency: 20 })] })
      const audit = TestTarget.make("audit", { faults: [Fault.ok({ latency: 1000 })] })
      const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory], { shadow: [Audit] })
      const sender = yield* Fanout.make(router).pipe(
        Effect.provide(Layer.mergeAll(Inventory.layer, Audit.layer).pipe(Layer.provide(over(inventory, audit))))
      )
      const event = yield* order
      const fiber = yield* Effect.fork(sender.send(event))
      yield* TestClock.adjust("20 millis")
      const result = yield* Fiber.join(fiber)
      assert.deepStrictEqual(Object.keys(result.outcomes), ["inventory"])
      assert.strictEqual(result.durationMs, 20)
      assert.deepStrictEqual(audit.ledger.map((r) => r.result), ["pending"])
      yield* TestClock.adjust("980 millis")
      assert.deepStrictEqual(audit.ledger.map((r) => [r.result, r.completedAt]), [["answered", 1000]])
    }))
})
