/**
 * The example of docs/testing.md ("Durable mode"), verbatim but for the imports (`fanout` →
 * ../../src/index.js, `fanout/testing` → ../../src/testing.js), so the documented example keeps
 * running.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Schema } from "effect"
import { Event, Router, Target } from "../../src/index.js"
import { arbitraries, simulateDurable, TestTarget } from "../../src/testing.js"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Int }))

const Inventory = Target.make("inventory", {
  accepts: OrderPlaced.payload,
  request: (event) =>
    HttpClientRequest.post(`${TestTarget.urlOf("inventory")}/reservations`).pipe(
      HttpClientRequest.bodyUnsafeJson(event.payload)
    ),
  policy: { timeout: "2 seconds", retry: { maxAttempts: 4 } }
})
const Email = Target.make("email", {
  request: (event) =>
    HttpClientRequest.post(`${TestTarget.urlOf("email")}/send`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
})
const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Email])

// Kill either of two workers at any instant of the first 10 s; each comes back within 30 s.
const crashes = fc.array(
  fc.record({
    worker: fc.integer({ min: 0, max: 1 }),
    at: fc.integer({ min: 0, max: 10_000 }),
    restartAfter: fc.integer({ min: 0, max: 30_000 })
  }),
  { maxLength: 3 }
)

describe("durable order pipeline", () => {
  it.effect.prop(
    "through crashes, every order reaches each API or its dead letters, under one idempotency key",
    [
      arbitraries.events(arbitraries.event(OrderPlaced)),
      arbitraries.faultScript(), // what the inventory API does, per idempotency key
      arbitraries.faultScript(), // what the email API does
      crashes
    ],
    ([events, inventory, email, crashes]) =>
      Effect.gen(function*() {
        const sim = yield* simulateDurable({
          router,
          testTargets: { inventory, email },
          events,
          workers: 2,
          leaseMs: 5_000,
          crashes
        })
        assert.isTrue(sim.settled)
        for (const delivery of sim.deliveries) {
          assert.include(["delivered", "dead"], delivery.status) // no loss
          for (const request of delivery.requests) assert.strictEqual(request.key, delivery.idempotencyKey)
        }
        assert.deepStrictEqual(sim.afterDead, []) // nothing sent after a dead letter
      }),
    { timeout: 60_000, fastCheck: { numRuns: 50, seed: 42 } }
  )
})
