/**
 * The loopback form of TestTarget, over real sockets: it really resets, hangs, delays and
 * answers 429 with Retry-After, as seen by a real Target on NodeHttpClient.layerUndici.
 *
 * Real time: lower bounds only, with a few ms of slack for timer granularity, and no tight
 * upper bounds (a loaded 2-core machine can be slow, never early).
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { Event, Target } from "../../src/index.js"
import type { Policy } from "../../src/index.js"
import { Fault, TestTarget } from "../../src/testing.js"

/** A target on `url` with `policy`, built over undici in the test's scope. */
const runtimeFor = (url: string, policy: Policy.Input) =>
  Effect.gen(function*() {
    const T = Target.make("orders", {
      request: (event) => HttpClientRequest.post(`${url}/orders`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload)),
      policy
    })
    const context = yield* Layer.build(T.layer.pipe(Layer.provide(NodeHttpClient.layerUndici)))
    return Context.get(context, T.tag)
  })

const event = Event.make("order.placed", { orderId: "o-1" }, { id: "evt-1" })

/** Waits (real time, bounded) until `check` holds. */
const eventually = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && !check(); i++) yield* Effect.sleep("10 millis")
    assert.isTrue(check(), what)
  })

describe("TestTarget.serve (loopback HTTP)", () => {
  it.scopedLive("delays: the answer comes after the latency; the ledger has the request as sent", () =>
    Effect.gen(function*() {
      const server = yield* TestTarget.serve(TestTarget.make("orders", { faults: [Fault.ok({ latency: 300 })] }))
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
      const runtime = yield* runtimeFor(server.url, {})
      const outcome = yield* runtime.deliver(yield* event)
      assert.strictEqual(outcome.attempts, 1)
      assert.isAtLeast(outcome.durationMs, 295, "not before the latency")
      const [r] = server.target.ledger
      assert.strictEqual(r?.method, "POST")
      assert.strictEqual(r?.path, "/orders")
      assert.strictEqual(r?.key, "evt-1:orders")
      assert.deepStrictEqual(JSON.parse(r!.body), { orderId: "o-1" })
      assert.match(r?.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      assert.strictEqual(r?.result, "answered")
      assert.isAtLeast(r!.completedAt! - r!.receivedAt, 295)
      assert.deepStrictEqual(outcome.response, { ok: true, target: "orders", key: "evt-1:orders", attempt: 1, seq: 1 })
    }))

  it.scopedLive("resets: the socket is destroyed; the target sees a transient network error and retries", () =>
    Effect.gen(function*() {
      const server = yield* TestTarget.serve(
        TestTarget.make("orders", { faults: [Fault.reset(), Fault.reset({ latency: 50 })] })
      )
      const runtime = yield* runtimeFor(server.url, { retry: { maxAttempts: 3, initialDelay: "10 millis" } })
      const outcome = yield* runtime.deliver(yield* event)
      assert.strictEqual(outcome.attempts, 3)
      assert.deepStrictEqual(server.target.ledger.map((r) => r.result), ["reset", "reset", "answered"])

      const single = yield* runtimeFor(server.url, { retry: { maxAttempts: 1 } })
      const failed = yield* Effect.flip(single.deliver(yield* Event.make("order.placed", {}, { id: "evt-2" })))
      assert.strictEqual(failed._tag, "Failed")
      assert.strictEqual(failed.error._tag, "TransientError")
      if (failed.error._tag === "TransientError") assert.strictEqual(failed.error.reason, "Network")
    }))

  it.scopedLive("hangs: no answer ever; the attempt times out, the client's abort is seen, the retry succeeds", () =>
    Effect.gen(function*() {
      const server = yield* TestTarget.serve(TestTarget.make("orders", { faults: [Fault.hang] }))
      const runtime = yield* runtimeFor(server.url, {
        timeout: "200 millis",
        retry: { maxAttempts: 2, initialDelay: "10 millis" }
      })
      const outcome = yield* runtime.deliver(yield* event)
      assert.strictEqual(outcome.attempts, 2)
      assert.isAtLeast(outcome.durationMs, 195)
      yield* eventually(
        () => server.target.ledger[0]?.result === "aborted",
        "the hung request is aborted by the client"
      )
      assert.deepStrictEqual(server.target.ledger.map((r) => r.result), ["aborted", "answered"])
    }))

  it.scopedLive("429 with Retry-After in seconds: the header is on the wire and the retry waits for it", () =>
    Effect.gen(function*() {
      const server = yield* TestTarget.serve(TestTarget.make("orders", { faults: [Fault.rateLimited(1)] }))
      const raw = yield* Effect.flatMap(HttpClient.HttpClient, (client) => client.post(`${server.url}/probe`)).pipe(
        Effect.provide(NodeHttpClient.layerUndici)
      )
      assert.strictEqual(raw.status, 429)
      assert.strictEqual(raw.headers["retry-after"], "1")
      const runtime = yield* runtimeFor(server.url, { retry: { maxAttempts: 2, initialDelay: "1 millis" } })
      const outcome = yield* runtime.deliver(yield* event)
      assert.strictEqual(outcome.attempts, 2)
      const [first, second] = server.target.requestsFor("evt-1:orders")
      assert.strictEqual(first?.status, 429)
      assert.isAtLeast(second!.receivedAt - first!.completedAt!, 990, "waited the second it was asked to")
    }))

  it.scopedLive("429 with Retry-After as an HTTP-date: the retry waits until that date", () =>
    Effect.gen(function*() {
      const server = yield* TestTarget.serve(
        TestTarget.make("orders", { faults: [Fault.rateLimited(1, { format: "http-date" })] })
      )
      const runtime = yield* runtimeFor(server.url, { retry: { maxAttempts: 2, initialDelay: "1 millis" } })
      const outcome = yield* runtime.deliver(yield* event)
      assert.strictEqual(outcome.attempts, 2)
      const [first, second] = server.target.requestsFor("evt-1:orders")
      // The date is the next whole second at least 1 s away: the wait is in [1 s, 2 s).
      const asked = Math.ceil((first!.completedAt! + 1000) / 1000) * 1000
      assert.isAtLeast(second!.receivedAt, asked - 10, "not before the date it was asked to wait for")
    }))

  it.live("closing the scope closes the server, hung connections included", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* TestTarget.serve(TestTarget.make("orders", { faults: [Fault.hang] })).pipe(
        Scope.extend(scope)
      )
      const hung = yield* Effect.fork(
        Effect.flatMap(HttpClient.HttpClient, (client) => client.post(`${server.url}/x`)).pipe(
          Effect.exit,
          Effect.provide(NodeHttpClient.layerUndici)
        )
      )
      yield* eventually(() => server.target.stats.received === 1, "the request arrived")
      yield* Scope.close(scope, Exit.void)
      const exit = yield* hung.await.pipe(Effect.flatten)
      assert.isTrue(Exit.isFailure(exit), "the hung request failed when the server closed")
      const after = yield* Effect.flatMap(HttpClient.HttpClient, (client) => client.get(`${server.url}/`)).pipe(
        Effect.exit,
        Effect.provide(NodeHttpClient.layerUndici)
      )
      assert.isTrue(Exit.isFailure(after), "nothing listens any more")
    }), { timeout: 20_000 })
})
