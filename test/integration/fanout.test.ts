/**
 * Fan-out over real loopback HTTP: targets are called concurrently, and the idempotency key
 * on the wire is stable across the attempts of one (event, target) and distinct per target.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Event, Router, Target } from "../../src/index.js"
import type { ServerResponse } from "node:http"
import { performance } from "node:perf_hooks"
import { makeSender, type Received, reply, startServer } from "./helpers.js"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String }))

const post = (url: string) => (event: Event.Event<string, { readonly orderId: string }>) =>
  HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUnsafeJson({ orderId: event.payload.orderId }))

describe("fan-out over loopback HTTP", () => {
  it.scopedLive("calls the targets concurrently: B's request arrives before A's is answered", () =>
    Effect.gen(function*() {
      // Each "slow-*" request is held until the other target's request for the same order has
      // arrived, then both are answered. Sending one target after the other would leave the first
      // request parked: it is answered only by the fallback timer (a liveness guard, never reached
      // when the fan-out is concurrent), and the ordering assertions below fail. Nothing is timed.
      const parked = new Map<string, () => void>()
      const answeredAt = new Map<Received, number>()
      let fallbacks = 0
      const answer = (res: ServerResponse, r: Received) => {
        answeredAt.set(r, performance.now())
        reply(res, 200)
      }
      const server = yield* startServer((_req, res, r) => {
        const order = /"orderId":"([^"]+)"/.exec(r.body)?.[1] ?? ""
        if (!order.startsWith("slow")) return answer(res, r)
        const partner = parked.get(order)
        if (partner !== undefined) {
          parked.delete(order)
          partner()
          return answer(res, r)
        }
        const timer = setTimeout(() => {
          fallbacks++
          parked.delete(order)
          answer(res, r)
        }, 10_000)
        parked.set(order, () => {
          clearTimeout(timer)
          answer(res, r)
        })
      })
      const A = Target.make("a", { request: post(`${server.url}/a`), policy: { timeout: "20 seconds" } })
      const B = Target.make("b", { request: post(`${server.url}/b`), policy: { timeout: "20 seconds" } })
      const sender = yield* makeSender(Router.make(OrderPlaced).route(OrderPlaced, [A, B]))
      yield* Effect.flatMap(OrderPlaced.make({ orderId: "warm-up" }), sender.send)

      for (let i = 0; i < 3; i++) {
        const event = yield* OrderPlaced.make({ orderId: `slow-${i}` })
        const result = yield* sender.send(event)
        assert.strictEqual(result.outcomes.a?._tag, "Delivered")
        assert.strictEqual(result.outcomes.b?._tag, "Delivered")
        assert.strictEqual(result.outcomes.a?.attempts, 1)
        assert.strictEqual(result.outcomes.b?.attempts, 1)
        const [first, second] = server.received.filter((r) => r.body.includes(`slow-${i}`))
        assert.isDefined(first)
        assert.isDefined(second)
        assert.deepStrictEqual(new Set([first!.path, second!.path]), new Set(["/a", "/b"]))
        // Both requests were on the wire at once: the second arrived before the first was answered.
        assert.isDefined(answeredAt.get(first!))
        assert.isAtMost(
          second!.at,
          answeredAt.get(first!)!,
          `slow-${i}: the second request arrived after the first answer`
        )
      }
      assert.strictEqual(fallbacks, 0, "no request waited for its partner until the fallback timer")
    }))

  it.scopedLive("sends one idempotency key per (event, target), the same on every attempt", () =>
    Effect.gen(function*() {
      // Each path answers 503 twice, then 200: three attempts per target.
      const server = yield* startServer((_req, res, { nth }) => reply(res, nth <= 2 ? 503 : 200))
      const policy = { retry: { maxAttempts: 3, initialDelay: "5 millis" } } as const
      const A = Target.make("a", { request: post(`${server.url}/a`), policy })
      const B = Target.make("b", { request: post(`${server.url}/b`), policy })
      const sender = yield* makeSender(Router.make(OrderPlaced).route(OrderPlaced, [A, B]))

      const event = yield* OrderPlaced.make({ orderId: "o-2" })
      const result = yield* sender.send(event)
      assert.strictEqual(result.outcomes.a?._tag, "Delivered")
      assert.strictEqual(result.outcomes.a?.attempts, 3)
      assert.strictEqual(result.outcomes.b?.attempts, 3)

      const keysA = server.on("/a").map((r) => r.key)
      const keysB = server.on("/b").map((r) => r.key)
      assert.deepStrictEqual(keysA, [`${event.id}:a`, `${event.id}:a`, `${event.id}:a`])
      assert.deepStrictEqual(keysB, [`${event.id}:b`, `${event.id}:b`, `${event.id}:b`])
      assert.notStrictEqual(keysA[0], keysB[0])
      // Every attempt carried the same body too (the request is built once per delivery).
      assert.deepStrictEqual(new Set(server.on("/a").map((r) => r.body)).size, 1)

      // Another event gets other keys.
      const other = yield* OrderPlaced.make({ orderId: "o-3" })
      yield* sender.send(other)
      const lastA = server.on("/a").at(-1)
      assert.strictEqual(lastA?.key, `${other.id}:a`)
      assert.notStrictEqual(other.id, event.id)
    }))
})
