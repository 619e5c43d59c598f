import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Stream, TestClock } from "effect"
import * as CircuitBreaker from "../../src/Resilience/CircuitBreaker.js"
import * as Policy from "../../src/Resilience/Policy.js"

type Input = Exclude<Policy.Input["circuitBreaker"], false | undefined>

const breakerOf = (input: Input) => CircuitBreaker.make("api", Policy.make({ circuitBreaker: input }).circuitBreaker)

/** Lets forked fibers run up to their next suspension point. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

/** "ignored" errors are not the target's fault (like a 4xx); anything else counts. */
const isFailure = (e: string) => e !== "ignored"

const harness = (breaker: CircuitBreaker.CircuitBreaker) => {
  let runs = 0
  const call = <A, E extends string>(effect: Effect.Effect<A, E>) =>
    Effect.either(breaker.run(Effect.zipRight(Effect.sync(() => runs++), effect), isFailure))
  return {
    runs: () => runs,
    succeed: call(Effect.succeed("ok")),
    fail: call(Effect.fail("boom")),
    ignored: call(Effect.fail("ignored")),
    call,
    tag: Effect.map(breaker.state, (s) => s._tag)
  }
}

describe("CircuitBreaker", () => {
  it.effect("Closed → Open after failureThreshold consecutive failures", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 3, resetAfter: "30 seconds" })
      const h = harness(breaker)
      yield* h.fail
      yield* h.fail
      assert.deepStrictEqual(yield* breaker.state, { _tag: "Closed", consecutiveFailures: 2 })
      yield* TestClock.adjust("1 second")
      yield* h.fail
      assert.deepStrictEqual(yield* breaker.state, { _tag: "Open", openedAt: 1_000, until: 31_000 })
    }))

  it.effect("errors the predicate ignores do not count; a success resets the count", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 3 })
      const h = harness(breaker)
      for (let i = 0; i < 10; i++) yield* h.ignored
      assert.deepStrictEqual(yield* breaker.state, { _tag: "Closed", consecutiveFailures: 0 })
      yield* h.fail
      yield* h.fail
      yield* h.succeed
      yield* h.fail
      yield* h.fail
      yield* h.ignored
      assert.deepStrictEqual(yield* breaker.state, { _tag: "Closed", consecutiveFailures: 2 })
      yield* h.fail
      assert.strictEqual(yield* h.tag, "Open")
    }))

  it.effect("Open rejects with CircuitOpenError carrying retryAfter, without running the effect", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 1, resetAfter: "30 seconds" })
      const h = harness(breaker)
      yield* h.fail
      assert.strictEqual(h.runs(), 1)
      const first = yield* h.succeed
      yield* TestClock.adjust("10 seconds")
      const later = yield* h.succeed
      assert.strictEqual(h.runs(), 1, "the effect never ran while open")
      for (const [result, left] of [[first, 30_000], [later, 20_000]] as const) {
        assert.isTrue(Either.isLeft(result))
        if (Either.isLeft(result)) {
          const error = result.left
          assert.isTrue(typeof error !== "string" && error._tag === "CircuitOpenError")
          if (typeof error !== "string") {
            assert.strictEqual(error.retryAfter, left)
            assert.strictEqual(error.target, "api")
          }
        }
      }
    }))

  it.effect("after resetAfter it goes HalfOpen; a probe success closes it", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 1, resetAfter: "5 seconds" })
      const h = harness(breaker)
      yield* h.fail
      yield* TestClock.adjust("4999 millis")
      assert.isTrue(Either.isLeft(yield* h.succeed))
      assert.strictEqual(h.runs(), 1)
      yield* TestClock.adjust("1 millis")
      const gate = yield* Deferred.make<void>()
      const probe = yield* Effect.fork(h.call(Deferred.await(gate)))
      yield* settle
      assert.deepStrictEqual(yield* breaker.state, { _tag: "HalfOpen", probes: 1, successes: 0 })
      assert.strictEqual(h.runs(), 2)
      yield* Deferred.succeed(gate, undefined)
      assert.isTrue(Either.isRight(yield* Fiber.join(probe)))
      assert.deepStrictEqual(yield* breaker.state, { _tag: "Closed", consecutiveFailures: 0 })
    }))

  it.effect("HalfOpen lets at most halfOpenProbes concurrent probes through; that many successes close it", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 1, resetAfter: "5 seconds", halfOpenProbes: 2 })
      const h = harness(breaker)
      yield* h.fail
      yield* TestClock.adjust("5 seconds")
      const gates = [yield* Deferred.make<void>(), yield* Deferred.make<void>()] as const
      const [first, second] = yield* Effect.forEach(gates, (gate) => Effect.fork(h.call(Deferred.await(gate))))
      yield* settle
      assert.deepStrictEqual(yield* breaker.state, { _tag: "HalfOpen", probes: 2, successes: 0 })
      const third = yield* h.succeed
      assert.isTrue(Either.isLeft(third))
      assert.strictEqual(h.runs(), 3, "the third call did not run")
      yield* Deferred.succeed(gates[0], undefined)
      yield* Fiber.join(first!)
      assert.deepStrictEqual(yield* breaker.state, { _tag: "HalfOpen", probes: 2, successes: 1 })
      yield* Deferred.succeed(gates[1], undefined)
      yield* Fiber.join(second!)
      assert.strictEqual(yield* h.tag, "Closed")
    }))

  it.effect("a probe failure reopens it for another resetAfter", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 1, resetAfter: "5 seconds" })
      const h = harness(breaker)
      yield* h.fail
      yield* TestClock.adjust("7 seconds")
      yield* h.fail
      assert.deepStrictEqual(yield* breaker.state, { _tag: "Open", openedAt: 7_000, until: 12_000 })
      const rejected = yield* h.succeed
      assert.isTrue(Either.isLeft(rejected) && typeof rejected.left !== "string" && rejected.left.retryAfter === 5_000)
    }))

  it.effect("an interrupted probe frees its slot", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 1, resetAfter: "5 seconds", halfOpenProbes: 1 })
      const h = harness(breaker)
      yield* h.fail
      yield* TestClock.adjust("5 seconds")
      const stuck = yield* Effect.fork(h.call(Effect.never))
      yield* settle
      assert.isTrue(Either.isLeft(yield* h.succeed), "the only probe slot is taken")
      yield* Fiber.interrupt(stuck)
      assert.deepStrictEqual(yield* breaker.state, { _tag: "HalfOpen", probes: 0, successes: 0 })
      assert.isTrue(Either.isRight(yield* h.succeed))
      assert.strictEqual(yield* h.tag, "Closed")
    }))

  it.effect("a probe failing with an ignored error frees its slot without closing or opening", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 1, resetAfter: "5 seconds" })
      const h = harness(breaker)
      yield* h.fail
      yield* TestClock.adjust("5 seconds")
      yield* h.ignored
      assert.deepStrictEqual(yield* breaker.state, { _tag: "HalfOpen", probes: 0, successes: 0 })
    }))

  it.effect("failureRatio opens when failures/requests ≥ threshold with ≥ minimumRequests in the window", () =>
    Effect.gen(function*() {
      const input: Input = {
        failureThreshold: 100,
        failureRatio: { threshold: 0.5, window: "10 seconds", minimumRequests: 4 },
        resetAfter: "1 minute"
      }
      // 2 of 4 failed: opens on the 4th.
      const a = harness(yield* breakerOf(input))
      yield* a.succeed
      yield* a.fail
      yield* a.succeed
      assert.strictEqual(yield* a.tag, "Closed", "3 requests are fewer than minimumRequests")
      yield* a.fail
      assert.strictEqual(yield* a.tag, "Open")
      // 1 of 4 failed: stays closed; ignored errors are not requests.
      const b = harness(yield* breakerOf(input))
      yield* b.succeed
      yield* b.succeed
      yield* b.ignored
      yield* b.ignored
      yield* b.succeed
      yield* b.fail
      assert.strictEqual(yield* b.tag, "Closed")
      // Old samples leave the window: 3 failures at t=0, then 1 success + 1 failure at t=11s.
      const c = harness(yield* breakerOf(input))
      yield* c.fail
      yield* c.fail
      yield* c.fail
      yield* TestClock.adjust("11 seconds")
      yield* c.succeed
      yield* c.fail
      assert.strictEqual(yield* c.tag, "Closed", "only 2 requests are in the window")
      yield* c.fail
      yield* c.succeed
      yield* c.fail
      assert.strictEqual(yield* c.tag, "Open", "3 of 5 in the window failed")
    }))

  it.effect("`changes` observes the transitions Closed → Open → HalfOpen → Closed", () =>
    Effect.gen(function*() {
      const breaker = yield* breakerOf({ failureThreshold: 2, resetAfter: "5 seconds" })
      const h = harness(breaker)
      const seen: Array<CircuitBreaker.State> = []
      const watcher = yield* Effect.fork(Stream.runForEach(breaker.changes, (s) => Effect.sync(() => seen.push(s))))
      yield* settle
      yield* h.fail
      yield* h.fail
      yield* h.succeed // rejected while open
      yield* TestClock.adjust("5 seconds")
      yield* h.succeed // the probe: HalfOpen, then Closed
      yield* settle
      yield* Fiber.interrupt(watcher)
      const tags = seen.map((s) => s._tag).filter((tag, i, all) => i === 0 || all[i - 1] !== tag)
      assert.deepStrictEqual(tags, ["Closed", "Open", "HalfOpen", "Closed"])
      assert.deepStrictEqual(seen.find((s) => s._tag === "Open"), { _tag: "Open", openedAt: 0, until: 5_000 })
    }))

  it.effect("disabled (policy circuitBreaker: false) always runs the effect", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make("api", Policy.make({ circuitBreaker: false }).circuitBreaker)
      const h = harness(breaker)
      for (let i = 0; i < 20; i++) yield* h.fail
      assert.isTrue(Either.isRight(yield* h.succeed))
      assert.strictEqual(h.runs(), 21)
    }))
})
