/**
 * Shutdown: closing the server's scope stops new connections at once, lets a request in progress
 * finish (its answer is delivered), and returns once it has.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { eventually, start } from "./harness.js"

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
      // No worker: `?wait=settled` holds the request until the 4 s wait timeout. Idle keep-alive
      // connections would stay open for 10 minutes, and so would the shutdown grace: a close that
      // waited for them could not finish within the test's timeout, so closing at all shows that it
      // closed them as they became idle (checked: without that, this test times out).
      const h = yield* start({
        server: { waitTimeout: "4 seconds", keepAliveTimeout: "10 minutes", shutdownGrace: "10 minutes" }
      }).pipe(Scope.extend(scope))
      let answered = false
      const pending = h.request("/v1/events?wait=settled", { json: { id: "slow", type: "order.placed", payload: 1 } })
        .finally(() => (answered = true))
      // In progress: stored, and now waiting to settle (no sleep: the stored event is the signal).
      const stored = yield* eventually(
        () => Effect.runPromise(Effect.map(h.store.status("slow"), Option.isSome)),
        (ok) => ok
      )
      assert.isTrue(stored, "the request reached the server")
      const closing = Effect.runPromise(Scope.close(scope, Exit.void))
      // New connections are refused once the close has begun (polled, not slept on) ...
      assert.isFalse(yield* eventually(() => connects(h.port), (ok) => !ok), "still accepting after close began")
      // ... while the request in progress still has its answer to come (its wait runs to 4 s).
      assert.isFalse(answered, "the request in progress was answered before new connections were refused")
      const reply = yield* Effect.promise(() => pending)
      assert.strictEqual(reply.status, 202)
      assert.strictEqual(reply.body.id, "slow")
      assert.strictEqual(reply.body.settled, false)
      // Closed after its last answer, not after the keep-alive timeout of the client's connection.
      yield* Effect.promise(() => closing)
    }), { timeout: 30_000 })
})
