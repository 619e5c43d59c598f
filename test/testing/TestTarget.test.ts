/**
 * The simulated form of TestTarget: script semantics per idempotency key, each fault, latency
 * under TestClock, the ledger and the concurrency stats.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, TestClock } from "effect"
import { Fault, TestTarget } from "../../src/testing.js"
import { parseRetryAfter } from "../../src/internal/retryAfter.js"

const post = (target: TestTarget.TestTarget, key: string | undefined, body = "{}") => {
  let request = HttpClientRequest.post(`${target.url}/things?x=1`).pipe(
    HttpClientRequest.bodyText(body, "application/json")
  )
  if (key !== undefined) request = HttpClientRequest.setHeader(request, "idempotency-key", key)
  return Effect.flatMap(HttpClient.HttpClient, (client) => client.execute(request))
}

const status = (target: TestTarget.TestTarget, key: string | undefined) =>
  Effect.map(post(target, key), (response) => response.status)

describe("TestTarget (simulated client)", () => {
  it.effect("a script applies per idempotency key; after it, 200 (then: ok) or the last step again (then: repeat)", () =>
    Effect.gen(function*() {
      const ok = TestTarget.make("scripted", { faults: Fault.script([Fault.unavailable(), Fault.status(500)]) })
      const repeat = TestTarget.make("repeating", {
        faults: Fault.script([Fault.ok(), Fault.status(502)], { then: "repeat" })
      })
      const statuses = yield* Effect.all([
        status(ok, "k1"),
        status(ok, "k1"),
        status(ok, "k2"),
        status(ok, "k1"),
        status(ok, "k1"),
        status(repeat, "k1"),
        status(repeat, "k1"),
        status(repeat, "k1")
      ]).pipe(Effect.provide(TestTarget.layer(ok, repeat)))
      assert.deepStrictEqual(statuses, [503, 500, 503, 200, 200, 200, 502, 502])
      assert.deepStrictEqual(ok.requestsFor("k1").map((r) => r.attempt), [1, 2, 3, 4])
      assert.deepStrictEqual(ok.requestsFor("k2").map((r) => r.attempt), [1])
      assert.deepStrictEqual(ok.keys, ["k1", "k2"])
    }))

  it.effect("without an idempotency key, method and path count as the key", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("nokey", { faults: [Fault.unavailable()] })
      const statuses = yield* Effect.all([status(target, undefined), status(target, undefined)]).pipe(
        Effect.provide(TestTarget.layer(target))
      )
      assert.deepStrictEqual(statuses, [503, 200])
      assert.deepStrictEqual(target.ledger.map((r) => [r.key, r.attempt]), [[undefined, 1], [undefined, 2]])
    }))

  it.effect("the ledger records method, url, path, headers, body, key, traceparent, times and results", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("recorder", { faults: [Fault.ok({ latency: 40, status: 201 })] })
      yield* TestClock.adjust("1 second")
      const fiber = yield* Effect.fork(
        post(target, "evt-1:recorder", "{\"n\":1}").pipe(
          Effect.withSpan("test"),
          Effect.provide(TestTarget.layer(target))
        )
      )
      yield* TestClock.adjust("40 millis")
      const response = yield* Fiber.join(fiber)
      assert.strictEqual(response.status, 201)
      assert.deepStrictEqual(yield* response.json, {
        ok: true,
        target: "recorder",
        key: "evt-1:recorder",
        attempt: 1,
        seq: 1
      })
      const [r] = target.ledger
      assert.isDefined(r)
      assert.strictEqual(r!.method, "POST")
      assert.strictEqual(r!.url, "http://recorder.test/things?x=1")
      assert.strictEqual(r!.path, "/things?x=1")
      assert.strictEqual(r!.body, "{\"n\":1}")
      assert.strictEqual(r!.headers["content-type"], "application/json")
      assert.strictEqual(r!.key, "evt-1:recorder")
      assert.match(r!.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      assert.deepStrictEqual([r!.receivedAt, r!.completedAt, r!.result, r!.status, r!.seq], [
        1000,
        1040,
        "answered",
        201,
        1
      ])
    }))

  it.effect("latency is exact under TestClock", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("slow", { faults: [Fault.ok({ latency: 100 })] })
      const fiber = yield* Effect.fork(status(target, "k").pipe(Effect.provide(TestTarget.layer(target))))
      yield* TestClock.adjust("99 millis")
      assert.strictEqual((yield* Fiber.poll(fiber))._tag, "None")
      assert.strictEqual(target.stats.inFlight, 1)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(fiber), 200)
      assert.strictEqual(target.stats.inFlight, 0)
    }))

  it.effect("429 with Retry-After in seconds and as an HTTP-date (rounded up to the next second)", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("limited", {
        faults: (request) => Fault.rateLimited(2, { format: request.attempt === 1 ? "seconds" : "http-date" })
      })
      yield* TestClock.adjust("1500 millis")
      const [first, second] = yield* Effect.all([post(target, "k"), post(target, "k")]).pipe(
        Effect.provide(TestTarget.layer(target))
      )
      assert.strictEqual(first!.status, 429)
      assert.strictEqual(first!.headers["retry-after"], "2")
      assert.strictEqual(second!.headers["retry-after"], "Thu, 01 Jan 1970 00:00:04 GMT")
      // What the core reads from them at 1500 ms: 2 s, and 2.5 s (the date is a whole second).
      assert.strictEqual(parseRetryAfter(first!.headers, 1500, 429), 2000)
      assert.strictEqual(parseRetryAfter(second!.headers, 1500, 429), 2500)
    }))

  it.effect("a reset is a transport RequestError (ECONNRESET), after its latency", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("flaky", { faults: [Fault.reset({ latency: 30 })] })
      const fiber = yield* Effect.fork(Effect.exit(post(target, "k").pipe(Effect.provide(TestTarget.layer(target)))))
      yield* TestClock.adjust("30 millis")
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual(error?._tag, "RequestError")
      if (error?._tag === "RequestError") {
        assert.strictEqual(error.reason, "Transport")
        assert.strictEqual((error.cause as { code?: string }).code, "ECONNRESET")
      }
      assert.deepStrictEqual(target.ledger.map((r) => [r.result, r.completedAt]), [["reset", 30]])
      assert.strictEqual(target.stats.resets, 1)
    }))

  it.effect("a hang never answers; interrupting the client marks the request aborted", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("hung", { faults: [Fault.hang] })
      const fiber = yield* Effect.fork(
        post(target, "k").pipe(
          Effect.timeout(Duration.seconds(5)),
          Effect.exit,
          Effect.provide(TestTarget.layer(target))
        )
      )
      yield* TestClock.adjust("1 hour")
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isFailure(exit), "timed out")
      assert.deepStrictEqual(target.ledger.map((r) => [r.result, r.completedAt]), [["aborted", 5000]])
      assert.deepStrictEqual(target.stats, {
        received: 1,
        inFlight: 0,
        maxInFlight: 1,
        answered: 0,
        resets: 0,
        aborted: 1
      })
    }))

  it.effect("maxInFlight counts overlapping requests", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("busy", { faults: (r) => Fault.ok({ latency: r.attempt * 100 }) })
      const fiber = yield* Effect.fork(
        Effect.all([status(target, "a"), status(target, "b"), status(target, "b"), status(target, "c")], {
          concurrency: 2
        }).pipe(Effect.provide(TestTarget.layer(target)))
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      assert.strictEqual(target.stats.maxInFlight, 2)
      assert.strictEqual(target.stats.answered, 4)
    }))

  it.effect("a request to an origin no TestTarget serves is refused (transport error)", () =>
    Effect.gen(function*() {
      const target = TestTarget.make("known")
      const exit = yield* Effect.flatMap(HttpClient.HttpClient, (client) => client.get("http://unknown.test/")).pipe(
        Effect.exit,
        Effect.provide(TestTarget.layer(target))
      )
      const error = Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual(error?._tag === "RequestError" ? error.reason : undefined, "Transport")
      assert.strictEqual((error?.cause as { code?: string } | undefined)?.code, "ECONNREFUSED")
    }))

  it.effect("a random model is deterministic for a seed (two targets, same requests, same faults)", () =>
    Effect.gen(function*() {
      const model = Fault.random({ seed: 42, serverError: 0.3, reset: 0.1, hang: 0.05 })
      const one = TestTarget.make("r1", { faults: model })
      const two = TestTarget.make("r2", { faults: model })
      const run = (target: TestTarget.TestTarget) =>
        Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (i) => Effect.either(status(target, `k${i}`).pipe(Effect.timeout("1 second"))),
          { concurrency: "unbounded" }
        ).pipe(
          Effect.provide(TestTarget.layer(target))
        )
      const f1 = yield* Effect.fork(run(one))
      const f2 = yield* Effect.fork(run(two))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(f1)
      yield* Fiber.join(f2)
      const steps = (t: TestTarget.TestTarget) => t.ledger.map((r) => Fault.describe(r.step))
      assert.deepStrictEqual(steps(one), steps(two))
      assert.isTrue(new Set(steps(one)).size >= 3, "a mix of faults")
    }))

  it("a random model follows its probabilities and latency range", () => {
    const choose = Fault.chooser(
      Fault.random({
        seed: 7,
        serverError: 0.3,
        rateLimited: 0.1,
        clientError: 0.05,
        reset: 0.1,
        hang: 0.05,
        latency: [10, 50]
      })
    )
    const incoming = {
      method: "POST",
      url: "http://x.test/",
      path: "/",
      headers: {},
      body: "",
      key: "k",
      attempt: 1,
      receivedAt: 0
    }
    const steps = Array.from({ length: 4000 }, () => choose(incoming))
    const share = (p: (s: Fault.Step) => boolean) => steps.filter(p).length / steps.length
    const near = (actual: number, expected: number) =>
      assert.isTrue(Math.abs(actual - expected) < 0.03, `${actual} vs ${expected}`)
    near(share((s) => s._tag === "Respond" && s.status === 503), 0.3)
    near(share((s) => s._tag === "Respond" && s.status === 429 && s.retryAfter !== undefined), 0.1)
    near(share((s) => s._tag === "Respond" && s.status === 400), 0.05)
    near(share((s) => s._tag === "Reset"), 0.1)
    near(share((s) => s._tag === "Hang"), 0.05)
    near(share((s) => s._tag === "Respond" && s.status === 200), 0.4)
    assert.isTrue(steps.every((s) => s._tag === "Hang" || (s.latency >= 10 && s.latency <= 50)))
  })

  it("fault constructors reject values no HTTP server could send", () => {
    assert.throws(() => Fault.status(99), RangeError)
    assert.throws(() => Fault.status(600), RangeError)
    assert.throws(() => Fault.ok({ latency: -1 }), RangeError)
    assert.throws(() => Fault.rateLimited(-1), RangeError)
    assert.throws(() => Fault.random({ seed: 1, serverError: 0.8, reset: 0.5 }), RangeError)
    assert.throws(() => TestTarget.make("no spaces"), TypeError)
    assert.strictEqual(
      Fault.describe(Fault.rateLimited(2, { format: "http-date", latency: 5 })),
      "429 (Retry-After 2 s as http-date) after 5 ms"
    )
  })
})
