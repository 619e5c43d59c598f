/**
 * The example of docs/testing.md ("Property-testing your own pipeline"), verbatim but for the
 * imports (`fanout` → ../../src/index.js, `fanout/testing` → ../../src/testing.js), so the
 * documented example keeps running.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Event, Router, Target } from "../../src/index.js"
import { arbitraries, keyOf, simulate, TestTarget } from "../../src/testing.js"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Int }))

// Your targets, pointed at the simulated address of a TestTarget of the same name.
const Inventory = Target.make("inventory", {
  accepts: OrderPlaced.payload,
  request: (event) =>
    HttpClientRequest.post(`${TestTarget.urlOf("inventory")}/reservations`).pipe(
      HttpClientRequest.bodyUnsafeJson(event.payload)
    ),
  compensate: ({ event }) =>
    HttpClientRequest.del(`${TestTarget.urlOf("inventory")}/reservations/${event.payload.orderId}`),
  policy: { timeout: "2 seconds", retry: { maxAttempts: 4 } }
})
const Email = Target.make("email", {
  request: (event) =>
    HttpClientRequest.post(`${TestTarget.urlOf("email")}/send`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
})
const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Email])

describe("order pipeline", () => {
  it.effect.prop(
    "no order is left half-done: every API took it, or the reservation was undone",
    [
      arbitraries.events(arbitraries.event(OrderPlaced)),
      arbitraries.faultScript(), // what the inventory API does, per idempotency key
      arbitraries.faultScript() // what the email API does
    ],
    ([events, inventory, email]) =>
      Effect.gen(function*() {
        const sim = yield* simulate({ router, testTargets: { inventory, email }, events, mode: "all" })
        for (const sent of sim.sends) {
          const reserved = sim.testTargets.inventory!.requestsFor(keyOf(sent.event, "inventory"))
            .some((r) => r.result === "answered" && r.status! < 300)
          if (sent.error === undefined) assert.isTrue(reserved)
          else if (reserved) assert.strictEqual(sent.outcomes.inventory?._tag, "Compensated")
        }
      }),
    { fastCheck: { numRuns: 200, seed: 42 } }
  )
})
