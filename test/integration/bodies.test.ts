/**
 * Response bodies are always consumed, error bodies included (undici keeps a connection
 * busy until its body is read, so unread bodies leak connections until the pool stalls:
 * undici#1108, #3895). Hundreds of large error answers must leave the client healthy and
 * the number of sockets bounded by the concurrency.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Event, Router, Target } from "../../src/index.js"
import { makeSender, reply, startServer } from "./helpers.js"

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))

const BIG = 256 * 1024
const bigBody = Buffer.alloc(BIG, "x")
const CONCURRENCY = 16
const PER_TARGET = 100

describe("response bodies over loopback HTTP", () => {
  it.scopedLive("200 × 503 with 256 KiB bodies leave the client healthy and the sockets bounded", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res, { path }) => {
        if (path === "/ok") return reply(res, 200, { ok: true })
        // /sized: with a content-length (read whole, under maxResponseBytes);
        // /chunked: no length, and larger than its target's maxResponseBytes (drained).
        const headers: Record<string, string> = { "content-type": "text/plain" }
        if (path === "/sized") headers["content-length"] = String(BIG)
        res.writeHead(503, headers)
        res.end(bigBody)
      })
      const request = (path: string) => (event: Event.Event<string, { readonly n: number }>) =>
        HttpClientRequest.post(`${server.url}${path}`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
      // One attempt each, breaker off: every event really reaches the server once.
      const policy = { retry: { maxAttempts: 1 }, circuitBreaker: false } as const
      const Sized = Target.make("sized", { request: request("/sized"), policy })
      const Chunked = Target.make("chunked", {
        request: request("/chunked"),
        policy: { ...policy, maxResponseBytes: 64 * 1024 }
      })
      const Ok = Target.make("ok", { request: request("/ok") })
      const sender = yield* makeSender(
        Router.make(Ping).route("ping", [Sized, Chunked], { filter: (e) => e.payload.n >= 0 }).route("ping", [Ok], {
          filter: (e) => e.payload.n < 0
        })
      )
      const send = (n: number) => Effect.flatMap(Ping.make({ n }), sender.send)

      // 100 events × 2 failing targets = 200 error answers of 256 KiB, 16 events at a time.
      const failures = yield* Effect.forEach(Array.from({ length: PER_TARGET }, (_, i) => i), send, {
        concurrency: CONCURRENCY
      })
      for (const result of failures) {
        assert.strictEqual(result.outcomes.sized?._tag, "Failed")
        assert.strictEqual(result.outcomes.chunked?._tag, "Failed")
      }
      const sized = failures[0]!.outcomes.sized!
      assert.strictEqual(sized._tag === "Failed" && sized.error._tag === "TransientError" && sized.error.status, 503)
      assert.strictEqual(server.on("/sized").length, PER_TARGET)
      assert.strictEqual(server.on("/chunked").length, PER_TARGET)

      // The same client still works: every request delivered at its first attempt (no timeout, no
      // retry behind a stuck connection).
      const oks = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => -1 - i), send, { concurrency: 4 })
      for (const result of oks) {
        assert.strictEqual(result.outcomes.ok?._tag, "Delivered")
        assert.strictEqual(result.outcomes.ok?.attempts, 1)
      }
      assert.strictEqual(server.on("/ok").length, 20)

      // Connections were reused. At most 2 × 16 requests are in flight at once. A client that
      // reads every body still opens somewhat more sockets than that, because a new request
      // can be dispatched just before the previous one's socket is released (raw undici with
      // `arrayBuffer()` on every body, same load: 27 sockets for 16 in flight). A client that
      // leaves bodies unread opens one socket per request (raw undici: 200 for 200). So the
      // bound is 2.5 × the in-flight limit, far below the 220 requests sent.
      assert.isAtMost(server.connections(), Math.ceil(2.5 * 2 * CONCURRENCY))
    }))
})
