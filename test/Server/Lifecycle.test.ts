/**
 * Shutdown: closing the server's scope stops new connections at once, lets a request in progress
 * finish (its answer is delivered), and returns once it has.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { start } from "./harness.js"

const connects = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

describe("graceful shutdown", () => {
  it.live("a request in progress gets its answer; new connections are refused", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // No worker: `?wait=settled` holds the request until the 1.5 s wait timeout.
      const h = yield* start({ server: { waitTimeout: "1500 millis" } }).pipe(Scope.extend(scope))
      const pending = h.request("/v1/events?wait=settled", { json: { id: "slow", type: "order.placed", payload: 1 } })
      yield* Effect.sleep("300 millis")
      const closing = Effect.runPromise(Scope.close(scope, Exit.void))
      yield* Effect.sleep("200 millis")
      assert.isFalse(yield* Effect.promise(() => connects(h.port)), "still accepting after close began")
      const reply = yield* Effect.promise(() => pending)
      assert.strictEqual(reply.status, 202)
      assert.strictEqual(reply.body.id, "slow")
      assert.strictEqual(reply.body.settled, false)
      // Closed soon after its last answer (not after the 5 s keep-alive timeout of the client's connection).
      const t0 = Date.now()
      yield* Effect.promise(() => closing)
      assert.isBelow(Date.now() - t0, 4_000)
    }))
})
