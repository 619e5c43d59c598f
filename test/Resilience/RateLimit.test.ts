import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Either, Fiber, TestClock } from "effect"
import * as Policy from "../../src/Resilience/Policy.js"
import * as RateLimit from "../../src/Resilience/RateLimit.js"

const limiterOf = (rateLimit: NonNullable<Policy.Input["rateLimit"]>) =>
  RateLimit.make("api", Policy.make({ rateLimit }).rateLimit)

/** Lets forked fibers run up to their next suspension point. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

/** Starts `n` takes at once; returns the TestClock instant at which each one was let through. */
const takeInstants = (limiter: RateLimit.RateLimiter, n: number, advance: Duration.DurationInput = "1 hour") =>
  Effect.gen(function*() {
    const instants: Array<number> = []
    const fiber = yield* Effect.fork(
      Effect.forEach(
        Array.from({ length: n }),
        () =>
          Effect.zipRight(
            limiter.take,
            Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => instants.push(t)))
          ),
        { concurrency: "unbounded", discard: true }
      )
    )
    yield* TestClock.adjust(advance)
    yield* Fiber.join(fiber)
    return instants
  })

describe("RateLimit", () => {
  it.effect("limit 4 per second: the first 4 go at once, then one every 250 ms", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf({ limit: 4, interval: "1 second" })
      const instants = yield* takeInstants(limiter, 10)
      assert.deepStrictEqual(instants, [0, 0, 0, 0, 250, 500, 750, 1000, 1250, 1500])
    }))

  it.effect("sequential takes follow the same schedule, and an idle period refills the bucket", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf({ limit: 2, interval: "1 second" })
      const instants: Array<number> = []
      const takeAndRecord = Effect.zipRight(
        limiter.take,
        Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => instants.push(t)))
      )
      const fiber = yield* Effect.fork(Effect.repeatN(takeAndRecord, 4))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(instants, [0, 0, 500, 1000, 1500])
      // Idle until t = 10 s: the bucket is full again, two go at once.
      const again = yield* takeInstants(limiter, 3)
      assert.deepStrictEqual(again, [10_000, 10_000, 10_500])
    }))

  it.effect("a take that would wait longer than maxWait fails with RateLimitedError carrying retryAfter", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf({ limit: 1, interval: "1 second", maxWait: "1500 millis" })
      yield* limiter.take // t = 0
      const second = yield* Effect.fork(limiter.take) // waits 1000 ms: allowed
      yield* settle
      const third = yield* Effect.either(limiter.take) // would wait 2000 ms: refused at once
      assert.isTrue(Either.isLeft(third))
      if (Either.isLeft(third)) {
        assert.strictEqual(third.left._tag, "RateLimitedError")
        assert.strictEqual(third.left.target, "api")
        assert.strictEqual(third.left.retryAfter, 2_000)
      }
      assert.strictEqual(yield* Clock.currentTimeMillis, 0, "refused without waiting")
      // The refusal consumed no slot: after the second, the next one waits exactly 1000 ms more.
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(second)
      const fourth = yield* takeInstants(limiter, 1)
      assert.deepStrictEqual(fourth, [2_000])
    }))

  it.effect("pauseFor holds every take until then (no rate limit configured)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimit.make("api", undefined)
      assert.strictEqual(yield* limiter.nextFreeAt, 0)
      yield* limiter.pauseFor(2_000)
      assert.strictEqual(yield* limiter.nextFreeAt, 2_000)
      const instants = yield* takeInstants(limiter, 5)
      assert.deepStrictEqual(instants, [2_000, 2_000, 2_000, 2_000, 2_000])
      assert.strictEqual(yield* limiter.nextFreeAt, 0)
      // After the pause, nothing holds them.
      const now = yield* Clock.currentTimeMillis
      assert.deepStrictEqual(yield* takeInstants(limiter, 3, "0 millis"), [now, now, now])
    }))

  it.effect("pauseFor never shortens an existing pause, and a longer one extends it", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf({ limit: 10, interval: "1 second" })
      yield* limiter.pauseFor(5_000)
      yield* limiter.pauseFor(1_000)
      assert.strictEqual(yield* limiter.nextFreeAt, 5_000)
      yield* TestClock.adjust("1 second")
      yield* limiter.pauseFor(6_000) // until t = 7000
      assert.strictEqual(yield* limiter.nextFreeAt, 7_000)
      const instants = yield* takeInstants(limiter, 2)
      assert.strictEqual(instants[0], 7_000)
      assert.isTrue(instants.every((t) => t >= 7_000))
    }))

  it.effect("a pause longer than maxWait makes takes fail fast with the time left", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimit.make("api", undefined, "10 seconds")
      yield* limiter.pauseFor(60_000)
      const result = yield* Effect.either(limiter.take)
      assert.isTrue(Either.isLeft(result))
      if (Either.isLeft(result)) assert.strictEqual(result.left.retryAfter, 60_000)
    }))

  it.effect("over a long run the rate is limit/interval (1000 takes at 7 per second)", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf({ limit: 7, interval: "1 second", maxWait: "1 day" })
      const n = 1000
      // Start every take at t = 0 and read the instants they are scheduled for from the
      // TestClock (stepping through 1000 sleeps would cost ~15 ms of real time each).
      const fibers = yield* Effect.forEach(Array.from({ length: n }), () => Effect.fork(limiter.take))
      yield* settle
      const sleeps = Chunk.toReadonlyArray(yield* TestClock.sleeps())
      assert.strictEqual(sleeps.length, n - 7, "all but the first 7 wait")
      const last = Math.max(...sleeps)
      // (n - limit) takes spread over `last` ms: limit per interval.
      const rate = ((n - 7) / last) * 1000
      assert.approximately(rate, 7, 1e-9)
      // And no window of one interval holds more than the burst plus the steady rate allows.
      const sorted = [...sleeps].sort((a, b) => a - b)
      for (let i = 0; i + 7 < sorted.length; i++) assert.isTrue(sorted[i + 7]! - sorted[i]! >= 1000 - 1e-6)
      yield* Effect.forEach(fibers, Fiber.interrupt, { discard: true })
    }))

  it.effect("the steady rate is exact when stepping real sleeps too (limit 3 per 900 ms, 20 takes)", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf({ limit: 3, interval: "900 millis" })
      const instants = yield* takeInstants(limiter, 20)
      assert.deepStrictEqual(instants.slice(0, 3), [0, 0, 0])
      const gaps = instants.slice(3).map((t, i) => t - instants[i + 2]!)
      assert.isTrue(gaps.every((g) => Math.abs(g - 300) < 1e-6), `gaps ${gaps}`)
      assert.approximately(instants.at(-1)!, 17 * 300, 1e-6)
    }))
})
