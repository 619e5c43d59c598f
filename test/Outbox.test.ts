/**
 * `Outbox.make` refuses typed pipelines it cannot enqueue durably with a `PlanError` in the error
 * channel (not a thrown error, which would be a defect); without pipelines it cannot fail.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import * as Memory from "../src/Store/Memory.js"
import type * as Store from "../src/Store.js"
import { Event, Outbox, Pipeline, Router, Target } from "../src/index.js"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String }))
const A = Target.make("a", { request: () => HttpClientRequest.post("http://127.0.0.1:9/a") })
const B = Target.make("b", { request: () => HttpClientRequest.post("http://127.0.0.1:9/b") })
const router = Router.make(OrderPlaced).route(OrderPlaced, [A])

const planOf = (pipelines: ReadonlyArray<Pipeline.Any>) =>
  Outbox.make(router, { pipelines }).pipe(Effect.either, Effect.provide(Memory.layer))

describe("Outbox.make: typed pipelines", () => {
  it.effect("an effect enrich stage fails with Pipeline.NotDurable", () =>
    Effect.gen(function*() {
      const pipeline = Pipeline.make(OrderPlaced).enrichWith("lookup", (event) => Effect.succeed(event.payload)).step(A)
      const result = yield* planOf([pipeline])
      assert.isTrue(Either.isLeft(result))
      if (Either.isLeft(result)) {
        assert.instanceOf(result.left, Pipeline.NotDurable)
        assert.match(result.left.message, /lookup is an effect/)
      }
    }))

  it.effect("a pipeline without an event type, or two for one type, fail with PipelinesError", () =>
    Effect.gen(function*() {
      const untyped = yield* planOf([Pipeline.make().step(A)])
      assert.isTrue(Either.isLeft(untyped))
      if (Either.isLeft(untyped)) {
        assert.instanceOf(untyped.left, Outbox.PipelinesError)
        assert.strictEqual(
          untyped.left.message,
          "Outbox: a durable pipeline needs an event type (Pipeline.make(EventDefinition))"
        )
      }
      const twice = yield* planOf([Pipeline.make(OrderPlaced).step(A), Pipeline.make(OrderPlaced).step(B)])
      assert.isTrue(Either.isLeft(twice))
      if (Either.isLeft(twice)) {
        assert.instanceOf(twice.left, Outbox.PipelinesError)
        assert.strictEqual(twice.left.message, "Outbox: two pipelines for event type order.placed")
      }
    }))

  it.effect("valid pipelines, and none, build the outbox", () =>
    Effect.gen(function*() {
      const result = yield* planOf([Pipeline.make(OrderPlaced).step(A)])
      assert.isTrue(Either.isRight(result))
      // Without pipelines the error channel is `never`.
      const outbox: Effect.Effect<Outbox.Service, never, Store.DeliveryStore> = Outbox.make(router, { after: {} })
      yield* outbox.pipe(Effect.provide(Memory.layer))
    }))
})
