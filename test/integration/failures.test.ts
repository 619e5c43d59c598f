/**
 * How real transport failures and statuses become outcomes: per-attempt timeouts and the
 * delivery deadline, connection resets, permanent 400 vs transient 503.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { Outcome } from "../../src/index.js"
import { Event, Router, Target } from "../../src/index.js"
import { makeSender, reply, startServer, timed } from "./helpers.js"

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))

const post = (url: string) => (event: Event.Event<string, { readonly n: number }>) =>
  HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))

type Settled = Outcome.Delivered | Outcome.Failed | Outcome.Skipped

const failed = (outcome: Settled | undefined): Outcome.Failed => {
  assert.strictEqual(outcome?._tag, "Failed", `expected Failed, got ${JSON.stringify(outcome)}`)
  return outcome as Outcome.Failed
}

/** A single target at `path` with `policy`, fanned out alone. */
const single = (url: string, policy: Target.Options<{ readonly n: number }, unknown>["policy"]) =>
  Effect.gen(function*() {
    const T = Target.make("t", { request: post(url), ...(policy !== undefined ? { policy } : {}) })
    const sender = yield* makeSender(Router.make(Ping).route(Ping, [T]))
    return (n: number) =>
      Effect.flatMap(Ping.make({ n }), (event) => Effect.map(sender.send(event), (r) => r.outcomes.t))
  })

describe("timeouts over loopback HTTP", () => {
  it.scopedLive("a target that never answers: TimeoutError(attempt) on each attempt, retried, Failed after maxAttempts", () =>
    Effect.gen(function*() {
      const server = yield* startServer(() => {
        // never answer; the socket is closed when the client gives up (or at teardown)
      })
      const send = yield* single(`${server.url}/hang`, {
        timeout: "150 millis",
        retry: { maxAttempts: 3, initialDelay: "10 millis" },
        circuitBreaker: false
      })
      const [outcome, elapsed] = yield* timed(send(1))
      const f = failed(outcome)
      assert.strictEqual(f.attempts, 3)
      assert.strictEqual(f.error._tag, "TimeoutError")
      assert.strictEqual(f.error._tag === "TimeoutError" && f.error.scope, "attempt")
      // The retries really happened on the wire: three requests, one per attempt.
      yield* server.until(() => server.received.length >= 3)
      assert.strictEqual(server.received.length, 3)
      // Three 150 ms attempts at least (a lower bound of the policy's own; the scope "attempt" above
      // shows the 150 ms per-attempt timeout fired, not the 10 s default).
      assert.isAbove(elapsed, 3 * 150 - 10)
    }))

  it.scopedLive("the deadline ends a delivery with TimeoutError(deadline)", () =>
    Effect.gen(function*() {
      const server = yield* startServer(() => {})
      const send = yield* single(`${server.url}/hang`, {
        timeout: "150 millis",
        deadline: "400 millis",
        retry: { maxAttempts: 50, initialDelay: "10 millis", jitter: "none", factor: 1 },
        circuitBreaker: false
      })
      const [outcome, elapsed] = yield* timed(send(1))
      const f = failed(outcome)
      assert.strictEqual(f.error._tag, "TimeoutError")
      assert.strictEqual(f.error._tag === "TimeoutError" && f.error.scope, "deadline")
      // 400 ms fit two full attempts (2 × 150 ms + 10 ms waits) and the start of a third.
      // No attempt ends before its 150 ms timeout, so at most three can start within 400 ms: the
      // deadline stopped it (a count, not a time; 50 attempts were allowed).
      assert.isAtLeast(f.attempts, 2)
      assert.isAtMost(f.attempts, 3)
      assert.isAbove(elapsed, 390)
    }))
})

describe("connection resets over loopback HTTP", () => {
  it.scopedLive("a reset is TransientError(Network) and is retried", () =>
    Effect.gen(function*() {
      const server = yield* startServer((req) => req.socket.destroy())
      const send = yield* single(`${server.url}/reset`, {
        retry: { maxAttempts: 3, initialDelay: "10 millis" },
        circuitBreaker: false
      })
      const f = failed(yield* send(1))
      assert.strictEqual(f.attempts, 3)
      assert.strictEqual(f.error._tag, "TransientError")
      assert.strictEqual(f.error._tag === "TransientError" && f.error.reason, "Network")
      assert.strictEqual(server.received.length, 3)
    }))

  it.scopedLive("a reset then a success is Delivered with attempts 2", () =>
    Effect.gen(function*() {
      const server = yield* startServer((req, res, { nth }) => (nth === 1 ? req.socket.destroy() : reply(res, 200)))
      const send = yield* single(`${server.url}/flaky`, { retry: { initialDelay: "10 millis" } })
      const outcome = yield* send(1)
      assert.strictEqual(outcome?._tag, "Delivered")
      assert.strictEqual(outcome?.attempts, 2)
      assert.deepStrictEqual(outcome?._tag === "Delivered" && outcome.response, { ok: true })
      assert.strictEqual(server.received.length, 2)
      // The reset connection was not reused: the success came on a new one.
      assert.strictEqual(server.connections(), 2)
    }))
})

describe("status classification over loopback HTTP", () => {
  it.scopedLive("a permanent 400 is not retried", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => reply(res, 400, { error: "bad order" }))
      const send = yield* single(`${server.url}/bad`, { retry: { maxAttempts: 5, initialDelay: "10 millis" } })
      const f = failed(yield* send(1))
      assert.strictEqual(f.attempts, 1)
      assert.strictEqual(f.error._tag, "PermanentError")
      assert.strictEqual(f.error._tag === "PermanentError" && f.error.status, 400)
      assert.include(f.error.message, "bad order")
      // The send has returned, so no retry of it can come later: one request in all.
      assert.strictEqual(server.received.length, 1)
    }))

  it.scopedLive("503 is retried: until maxAttempts, or until it succeeds", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res, { path, nth }) =>
        reply(res, path === "/down" || nth === 1 ? 503 : 200)
      )
      const down = yield* single(`${server.url}/down`, {
        retry: { maxAttempts: 4, initialDelay: "10 millis" },
        circuitBreaker: false
      })
      const f = failed(yield* down(1))
      assert.strictEqual(f.attempts, 4)
      assert.strictEqual(f.error._tag === "TransientError" && f.error.status, 503)
      assert.strictEqual(server.on("/down").length, 4)

      const flaky = yield* single(`${server.url}/flaky`, { retry: { initialDelay: "10 millis" } })
      const outcome = yield* flaky(2)
      assert.strictEqual(outcome?._tag, "Delivered")
      assert.strictEqual(outcome?.attempts, 2)
      assert.strictEqual(server.on("/flaky").length, 2)
    }))
})
