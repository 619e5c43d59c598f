import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, TestClock } from "effect"
import * as fc from "fast-check"
import * as Bulkhead from "../../src/Resilience/Bulkhead.js"
import type { BulkheadRejectedError } from "../../src/TargetError.js"

/** Lets forked fibers run up to their next suspension point. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("Bulkhead", () => {
  /** Runs every hold concurrently through the bulkhead; returns the largest number seen in flight at once. */
  const maxConcurrent = (
    bulkhead: Bulkhead.Bulkhead,
    holds: ReadonlyArray<number>,
    hold: (n: number) => Effect.Effect<void>
  ) =>
    Effect.gen(function*() {
      let current = 0
      let max = 0
      const results = yield* Effect.forEach(holds, (n) =>
        bulkhead.run(Effect.gen(function*() {
          current++
          max = Math.max(max, current)
          assert.isAtMost(yield* bulkhead.inFlight, bulkhead.permits)
          yield* hold(n)
          current--
          return n
        })), { concurrency: "unbounded" })
      assert.deepStrictEqual(results, holds, "every task completed, in order")
      return max
    })

  // A TestClock step costs ~10-25 ms of real time (it polls with setTimeout until fibers
  // suspend), so the 200-run property varies interleavings with scheduler yields, and the
  // random TestClock sleeps run over a few fixed fast-check samples below.
  it("never more than `permits` in flight, whatever the interleaving; every task completes", () =>
    fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 16 }),
        (permits, holds) =>
          Effect.runPromise(Effect.gen(function*() {
            const bulkhead = yield* Bulkhead.make("t", { permits, queue: 100 })
            const max = yield* maxConcurrent(bulkhead, holds, (n) => Effect.repeatN(Effect.yieldNow(), n))
            // All were started at once, so the bound is reached, not merely respected.
            assert.strictEqual(max, Math.min(permits, holds.length))
            assert.strictEqual(yield* bulkhead.inFlight, 0)
            assert.strictEqual(yield* bulkhead.waiting, 0)
          }))
      ),
      { numRuns: 200 }
    ))

  it.effect("never more than `permits` in flight with random TestClock sleeps", () =>
    Effect.gen(function*() {
      const scenarios = fc.sample(
        fc.record({
          permits: fc.integer({ min: 1, max: 4 }),
          sleeps: fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 5, maxLength: 12 })
        }),
        { numRuns: 4, seed: 7 }
      )
      for (const { permits, sleeps } of scenarios) {
        const bulkhead = yield* Bulkhead.make("t", { permits, queue: 100 })
        const fiber = yield* Effect.fork(maxConcurrent(bulkhead, sleeps, (n) => Effect.sleep(n)))
        yield* TestClock.adjust("1 hour")
        const max = yield* Fiber.join(fiber)
        assert.strictEqual(max, Math.min(permits, sleeps.length))
        assert.strictEqual(yield* bulkhead.inFlight, 0)
      }
    }))

  it.effect("beyond permits + queue a request is refused at once with BulkheadRejectedError", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make("api", { permits: 2, queue: 3 })
      const gate = yield* Deferred.make<void>()
      let ran = 0
      const blocked = bulkhead.run(Effect.zipRight(Effect.sync(() => ran++), Deferred.await(gate)))
      const fibers = yield* Effect.forEach([1, 2, 3, 4, 5], () => Effect.fork(blocked))
      yield* settle
      assert.strictEqual(yield* bulkhead.inFlight, 2)
      assert.strictEqual(yield* bulkhead.waiting, 3)
      assert.strictEqual(ran, 2)
      const sixth = yield* Effect.either(bulkhead.run(Effect.sync(() => ran++)))
      assert.isTrue(Either.isLeft(sixth))
      const error = (sixth as Either.Left<BulkheadRejectedError, number>).left
      assert.strictEqual(error._tag, "BulkheadRejectedError")
      assert.strictEqual(error.target, "api")
      assert.strictEqual(ran, 2, "the refused effect never ran")
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(ran, 5)
      assert.strictEqual(yield* bulkhead.inFlight, 0)
      assert.strictEqual(yield* bulkhead.waiting, 0)
    }))

  it.effect("queue 0: the first beyond permits is refused", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make("t", { permits: 1, queue: 0 })
      const fiber = yield* Effect.fork(bulkhead.run(Effect.never))
      yield* settle
      const second = yield* Effect.either(bulkhead.run(Effect.void))
      assert.isTrue(Either.isLeft(second))
      yield* Fiber.interrupt(fiber)
      assert.isTrue(Either.isRight(yield* Effect.either(bulkhead.run(Effect.void))))
    }))

  it.effect("a failing effect releases its permit", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make("t", { permits: 1, queue: 0 })
      for (let i = 0; i < 3; i++) {
        const exit = yield* Effect.exit(bulkhead.run(Effect.fail("boom")))
        assert.deepStrictEqual(exit, Exit.fail("boom"))
      }
      const defect = yield* Effect.exit(bulkhead.run(Effect.die("bug")))
      assert.isTrue(Exit.isFailure(defect))
      assert.strictEqual(yield* bulkhead.inFlight, 0)
      assert.strictEqual(yield* bulkhead.run(Effect.succeed(7)), 7)
    }))

  it.effect("interrupting a running or a waiting request releases everything (no leak)", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make("t", { permits: 1, queue: 1 })
      const running = yield* Effect.fork(bulkhead.run(Effect.never))
      const queued = yield* Effect.fork(bulkhead.run(Effect.never))
      yield* settle
      assert.strictEqual(yield* bulkhead.inFlight, 1)
      assert.strictEqual(yield* bulkhead.waiting, 1)
      yield* Fiber.interrupt(queued)
      assert.strictEqual(yield* bulkhead.waiting, 0)
      yield* Fiber.interrupt(running)
      assert.strictEqual(yield* bulkhead.inFlight, 0)
      // Both slots are usable again: one in flight and one waiting at once.
      const gate = yield* Deferred.make<void>()
      const a = yield* Effect.fork(bulkhead.run(Deferred.await(gate)))
      const b = yield* Effect.fork(bulkhead.run(Deferred.await(gate)))
      yield* settle
      assert.strictEqual(yield* bulkhead.inFlight, 1)
      assert.strictEqual(yield* bulkhead.waiting, 1)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(a)
      yield* Fiber.join(b)
      assert.strictEqual(yield* bulkhead.inFlight, 0)
    }))

  it.effect("many interrupted holders under TestClock leave no permit behind", () =>
    Effect.gen(function*() {
      const bulkhead = yield* Bulkhead.make("t", { permits: 3, queue: 50 })
      const fibers = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) => Effect.fork(bulkhead.run(Effect.sleep(`${(i % 5) + 1} seconds`)))
      )
      yield* TestClock.adjust("1500 millis")
      yield* Effect.forEach(fibers, Fiber.interrupt)
      assert.strictEqual(yield* bulkhead.inFlight, 0)
      assert.strictEqual(yield* bulkhead.waiting, 0)
      // Full capacity again: 3 at once.
      let current = 0
      let max = 0
      const probe = bulkhead.run(Effect.gen(function*() {
        current++
        max = Math.max(max, current)
        yield* Effect.sleep("1 second")
        current--
      }))
      const all = yield* Effect.fork(Effect.all([probe, probe, probe, probe], { concurrency: "unbounded" }))
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(all)
      assert.strictEqual(max, 3)
    }))
})
