/**
 * 429 with `Retry-After` over real HTTP: the retry waits what the server asked (not the
 * computed backoff), and the target's rate limiter holds the target's other requests too.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { Event, Router, Target } from "../../src/index.js"
import { makeSender, reply, startServer } from "./helpers.js"

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))

// The computed backoff would be 10 ms exactly (no jitter): any wait near 1 s is the server's.
const policy = { retry: { maxAttempts: 3, initialDelay: "10 millis", jitter: "none" } } as const

const setup = (retryAfter: () => string) =>
  Effect.gen(function*() {
    let headerSent: string | undefined
    const server = yield* startServer((_req, res, { nth }) => {
      if (nth === 1) {
        headerSent = retryAfter()
        reply(res, 429, { error: "slow down" }, { "retry-after": headerSent })
      } else {
        reply(res, 200)
      }
    })
    const T = Target.make("t", {
      request: (event: Event.Event<string, { readonly n: number }>) =>
        HttpClientRequest.post(`${server.url}/rl`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload)),
      policy
    })
    const sender = yield* makeSender(Router.make(Ping).route(Ping, [T]))
    return { server, sender, header: () => headerSent }
  })

describe("Retry-After over loopback HTTP", () => {
  it.scopedLive("429 with Retry-After: 1 waits about 1 s, and holds the target's other requests meanwhile", () =>
    Effect.gen(function*() {
      const { sender, server } = yield* setup(() => "1")
      const runtime = sender.targets.get("t")!

      const first = yield* Ping.make({ n: 1 })
      const fiber = yield* Effect.fork(sender.send(first))
      // Once the client has read the 429, the limiter is paused (it says when the next request may go).
      const pausedUntil = yield* Effect.gen(function*() {
        let at = 0
        while ((at = yield* runtime.limiter.nextFreeAt) === 0) yield* Effect.sleep("1 millis")
        return at
      }).pipe(Effect.timeout("5 seconds"), Effect.orDie)
      const pauseSeenAt = Date.now()
      const second = yield* Ping.make({ n: 2 })
      const other = yield* sender.send(second)
      const result = yield* Fiber.join(fiber)

      const r1 = result.outcomes.t
      assert.strictEqual(r1?._tag, "Delivered")
      assert.strictEqual(r1?.attempts, 2)
      assert.strictEqual(other.outcomes.t?._tag, "Delivered")
      assert.strictEqual(other.outcomes.t?.attempts, 1)

      const rejected = server.received[0]!
      const retried = server.received.find((r) => r.nth > 1 && r.key === `${first.id}:t`)!
      const held = server.received.find((r) => r.key === `${second.id}:t`)!
      // Timer and clock granularity: allow 50 ms below the 1 000 ms asked for.
      assert.isAtLeast(retried.at - rejected.at, 950)
      assert.isAtLeast(held.at - rejected.at, 950)
      // …and not longer than asked: the instant the limiter was paused until (the code's own
      // decision, recorded) is at most 1 s after the 429 was read, which was before we saw the pause.
      assert.isAtMost(pausedUntil, pauseSeenAt + 1_000)
      assert.isAtLeast(pausedUntil, rejected.wallAt + 1_000 - 50)
      assert.strictEqual(server.received.length, 3)
    }))

  it.scopedLive("429 with an HTTP-date Retry-After waits until that date", () =>
    Effect.gen(function*() {
      // 2 s ahead, written with 1 s precision: the wait is between 1 and 2 s.
      const { header, sender, server } = yield* setup(() => new Date(Date.now() + 2_000).toUTCString())
      const event = yield* Ping.make({ n: 1 })
      const result = yield* sender.send(event)

      assert.strictEqual(result.outcomes.t?._tag, "Delivered")
      assert.strictEqual(result.outcomes.t?.attempts, 2)
      const date = Date.parse(header()!)
      const [rejected, retried] = server.received
      assert.isAtLeast(date - rejected!.wallAt, 1_000 - 50)
      // The retry did not go before the date the server named (50 ms for clock granularity).
      assert.isAtLeast(retried!.wallAt, date - 50)
      assert.isAtLeast(retried!.at - rejected!.at, 950)
    }))
})
