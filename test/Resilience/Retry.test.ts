import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Either, Fiber, Random, Schedule, TestClock } from "effect"
import * as fc from "fast-check"
import * as Policy from "../../src/Resilience/Policy.js"
import * as Retry from "../../src/Resilience/Retry.js"
import * as TargetError from "../../src/TargetError.js"

const transient = (retryAfter?: number) =>
  new TargetError.TransientError({
    target: "t",
    reason: "Status",
    status: 503,
    message: "503",
    ...(retryAfter !== undefined ? { retryAfter } : {})
  })
const permanent = new TargetError.PermanentError({ target: "t", reason: "Status", status: 400, message: "400" })

const retryOptions = (input: NonNullable<Policy.Input["retry"]>) => Policy.make({ retry: input }).retry

/**
 * Runs `Effect.retry(alwaysFailing, Retry.schedule(options))` under the TestClock and
 * returns the TestClock instants at which each attempt started (cockatiel style).
 */
const attemptInstants = (
  options: Policy.RetryOptions,
  errorOf: (attempt: number) => TargetError.DeliveryError,
  advance: Duration.DurationInput = "1 hour"
) =>
  Effect.gen(function*() {
    const instants: Array<number> = []
    const attempt = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      instants.push(now)
      return Effect.fail(errorOf(instants.length))
    })
    const fiber = yield* Effect.fork(Effect.either(Effect.retry(attempt, Retry.schedule(options))))
    yield* TestClock.adjust(advance)
    const result = yield* Fiber.join(fiber)
    return { instants, result }
  })

describe("Retry.baseDelay / decide", () => {
  it("jitter none: delays are initialDelay*factor^(n-1) capped at maxDelay, exactly", () => {
    const options = retryOptions({ maxAttempts: 8, initialDelay: 100, factor: 2, maxDelay: 1000, jitter: "none" })
    const delays = [1, 2, 3, 4, 5, 6, 7].map((attempts) => {
      const d = Retry.decide(options, { attempts, elapsed: 0, error: transient(), random: 0.7 })
      assert.strictEqual(d._tag, "Retry")
      return d._tag === "Retry" ? d.delay : -1
    })
    assert.deepStrictEqual(delays, [100, 200, 400, 800, 1000, 1000, 1000])
    assert.deepStrictEqual([1, 2, 3].map((n) => Retry.baseDelay({ ...options, factor: 3 }, n)), [100, 300, 900])
  })

  it.prop(
    "full jitter stays in [0, d], equal jitter in [d/2, d], none is d",
    {
      initial: fc.integer({ min: 1, max: 5_000 }),
      factor: fc.integer({ min: 1, max: 4 }),
      maxDelay: fc.integer({ min: 1, max: 60_000 }),
      attempts: fc.integer({ min: 1, max: 12 }),
      random: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })
    },
    ({ attempts, factor, initial, maxDelay, random }) => {
      const base = { maxAttempts: 100, initialDelay: initial, factor, maxDelay, maxElapsed: "1 day" } as const
      const d = Math.min(maxDelay, initial * factor ** (attempts - 1))
      const delayOf = (jitter: "full" | "equal" | "none") => {
        const decision = Retry.decide(retryOptions({ ...base, jitter }), {
          attempts,
          elapsed: 0,
          error: transient(),
          random
        })
        if (decision._tag !== "Retry") throw new Error(`expected a retry, got ${decision.reason}`)
        assert.isFalse(decision.honoredRetryAfter)
        return decision.delay
      }
      const full = delayOf("full")
      const equal = delayOf("equal")
      assert.isTrue(full >= 0 && full <= d, `full ${full} not in [0, ${d}]`)
      assert.isTrue(equal >= d / 2 && equal <= d, `equal ${equal} not in [${d / 2}, ${d}]`)
      assert.strictEqual(delayOf("none"), d)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "never schedules a retry that would start past maxElapsed",
    {
      attempts: fc.integer({ min: 1, max: 10 }),
      elapsed: fc.integer({ min: 0, max: 20_000 }),
      maxElapsed: fc.integer({ min: 0, max: 20_000 }),
      retryAfter: fc.option(fc.integer({ min: 0, max: 50_000 }), { nil: undefined }),
      random: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })
    },
    ({ attempts, elapsed, maxElapsed, random, retryAfter }) => {
      const options = retryOptions({ maxAttempts: 11, initialDelay: 50, maxDelay: 5_000, maxElapsed, jitter: "equal" })
      const decision = Retry.decide(options, { attempts, elapsed, error: transient(retryAfter), random })
      if (decision._tag === "Retry") assert.isTrue(elapsed + decision.delay <= maxElapsed)
      else assert.strictEqual(decision.reason, "MaxElapsed")
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("stops after maxAttempts", () => {
    const options = retryOptions({ maxAttempts: 3, jitter: "none" })
    const at = (attempts: number) => Retry.decide(options, { attempts, elapsed: 0, error: transient(), random: 0 })
    assert.strictEqual(at(2)._tag, "Retry")
    assert.deepStrictEqual(at(3), { _tag: "GiveUp", reason: "MaxAttempts" })
    assert.deepStrictEqual(retryOptions({ maxAttempts: 1 }).maxAttempts, 1)
    assert.deepStrictEqual(
      Retry.decide(retryOptions({ maxAttempts: 1 }), { attempts: 1, elapsed: 0, error: transient(), random: 0 }),
      { _tag: "GiveUp", reason: "MaxAttempts" }
    )
  })

  it("a permanent error (or a deadline timeout) gives up at once", () => {
    const options = retryOptions({ maxAttempts: 10 })
    const deadline = new TargetError.TimeoutError({ target: "t", message: "late", scope: "deadline", timeout: 1 })
    const attemptTimeout = new TargetError.TimeoutError({ target: "t", message: "slow", scope: "attempt", timeout: 1 })
    for (const error of [permanent, deadline]) {
      assert.deepStrictEqual(Retry.decide(options, { attempts: 1, elapsed: 0, error, random: 0 }), {
        _tag: "GiveUp",
        reason: "Permanent"
      })
    }
    assert.strictEqual(
      Retry.decide(options, { attempts: 1, elapsed: 0, error: attemptTimeout, random: 0 })._tag,
      "Retry"
    )
  })

  it("Retry-After replaces the computed delay, capped at maxDelay; honorRetryAfter:false ignores it", () => {
    const options = retryOptions({ initialDelay: 100, maxDelay: 10_000, jitter: "none" })
    const decide = (o: Policy.RetryOptions, error: TargetError.DeliveryError) =>
      Retry.decide(o, { attempts: 1, elapsed: 0, error, random: 0.5 })
    assert.deepStrictEqual(decide(options, transient(4_000)), { _tag: "Retry", delay: 4_000, honoredRetryAfter: true })
    assert.deepStrictEqual(decide(options, transient(60_000)), {
      _tag: "Retry",
      delay: 10_000,
      honoredRetryAfter: true
    })
    // Shorter than the computed delay is honoured too (the server knows best).
    assert.deepStrictEqual(decide(options, transient(20)), { _tag: "Retry", delay: 20, honoredRetryAfter: true })
    // Local refusals carry a retryAfter as well.
    const limited = new TargetError.RateLimitedError({ target: "t", message: "slow down", retryAfter: 750 })
    const open = new TargetError.CircuitOpenError({ target: "t", message: "open", retryAfter: 1_500 })
    assert.deepStrictEqual(decide(options, limited), { _tag: "Retry", delay: 750, honoredRetryAfter: true })
    assert.deepStrictEqual(decide(options, open), { _tag: "Retry", delay: 1_500, honoredRetryAfter: true })
    const ignoring = { ...options, honorRetryAfter: false }
    assert.deepStrictEqual(decide(ignoring, transient(4_000)), { _tag: "Retry", delay: 100, honoredRetryAfter: false })
  })
})

describe("Retry.schedule under TestClock: the instants at which attempts run", () => {
  it.effect("exponential, no jitter: 0, 100, 300, 700, 1500 then gives up with the last error", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 5, initialDelay: 100, factor: 2, jitter: "none" })
      const { instants, result } = yield* attemptInstants(options, () => transient())
      assert.deepStrictEqual(instants, [0, 100, 300, 700, 1500])
      assert.isTrue(Either.isLeft(result))
    }))

  it.effect("maxDelay caps the gaps: 0, 100, 300, 600, 900, 1200", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 6, initialDelay: 100, factor: 2, maxDelay: 300, jitter: "none" })
      const { instants } = yield* attemptInstants(options, () => transient())
      assert.deepStrictEqual(instants, [0, 100, 300, 600, 900, 1200])
    }))

  it.effect("maxElapsed: no retry is scheduled past it", () =>
    Effect.gen(function*() {
      // Next delays: 100 (t=100), 200 (t=300), 400 (t=700 > 500: give up).
      const options = retryOptions({ maxAttempts: 10, initialDelay: 100, maxElapsed: 500, jitter: "none" })
      const { instants } = yield* attemptInstants(options, () => transient())
      assert.deepStrictEqual(instants, [0, 100, 300])
    }))

  it.effect("a permanent error runs exactly one attempt", () =>
    Effect.gen(function*() {
      const { instants, result } = yield* attemptInstants(retryOptions({ maxAttempts: 5 }), () => permanent)
      assert.deepStrictEqual(instants, [0])
      assert.deepStrictEqual(result, Either.left(permanent))
    }))

  it.effect("transient, then permanent: stops at the permanent one", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 5, initialDelay: 100, jitter: "none" })
      const { instants } = yield* attemptInstants(options, (n) => n < 3 ? transient() : permanent)
      assert.deepStrictEqual(instants, [0, 100, 300])
    }))

  it.effect("Retry-After sets the gap (capped at maxDelay); honorRetryAfter:false keeps the backoff", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 4, initialDelay: 100, maxDelay: 5_000, jitter: "none" })
      const asked = [2_000, 60_000, 10]
      const honoured = yield* attemptInstants(options, (n) => transient(asked[n - 1]))
      assert.deepStrictEqual(honoured.instants, [0, 2_000, 7_000, 7_010])
      const ignored = yield* attemptInstants({ ...options, honorRetryAfter: false }, (n) => transient(asked[n - 1]))
      assert.deepStrictEqual(ignored.instants.map((t) => t - ignored.instants[0]!), [0, 100, 300, 700])
    }))

  it.effect("succeeds on the third attempt: two retries, then the value", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 5, initialDelay: 100, jitter: "none" })
      const instants: Array<number> = []
      const attempt = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        instants.push(now)
        return instants.length < 3 ? Effect.fail(transient()) : Effect.succeed("ok")
      })
      const fiber = yield* Effect.fork(Effect.retry(attempt, Retry.schedule(options)))
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Fiber.join(fiber), "ok")
      assert.deepStrictEqual(instants, [0, 100, 300])
    }))

  it.effect("full jitter under TestClock: each gap is random in [0, d], and they are not all d", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 8, initialDelay: 100, factor: 2, maxDelay: 2_000, jitter: "full" })
      const { instants } = yield* attemptInstants(options, () => transient())
      assert.strictEqual(instants.length, 8)
      const gaps = instants.slice(1).map((t, i) => t - instants[i]!)
      const ds = gaps.map((_, i) => Math.min(2_000, 100 * 2 ** i))
      gaps.forEach((gap, i) => assert.isTrue(gap >= 0 && gap <= ds[i]!, `gap ${gap} not in [0, ${ds[i]}]`))
      assert.notDeepEqual(gaps, ds)
    }).pipe(Effect.withRandom(Random.make(42))))

  it.prop(
    "the schedule's jitter (from the Random service) keeps each delay in its band",
    {
      seed: fc.integer(),
      jitter: fc.constantFrom("full" as const, "equal" as const),
      maxAttempts: fc.integer({ min: 1, max: 10 })
    },
    ({ jitter, maxAttempts, seed }) => {
      const options = retryOptions({ maxAttempts, initialDelay: 100, factor: 2, maxDelay: 3_000, jitter })
      const outputs = Chunk.toReadonlyArray(Effect.runSync(
        Schedule.run(Retry.schedule(options), 0, Array.from({ length: maxAttempts }, () => transient())).pipe(
          Effect.withRandom(Random.make(seed))
        )
      ))
      assert.strictEqual(outputs.length, maxAttempts)
      assert.deepStrictEqual(outputs.at(-1), { _tag: "GiveUp", reason: "MaxAttempts" })
      outputs.slice(0, -1).forEach((decision, i) => {
        const d = Math.min(3_000, 100 * 2 ** i)
        const low = jitter === "full" ? 0 : d / 2
        if (decision._tag !== "Retry") throw new Error("expected a retry")
        assert.isTrue(decision.delay >= low && decision.delay <= d, `${decision.delay} not in [${low}, ${d}]`)
      })
    },
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("the schedule's output is the decision taken (Schedule.run, no sleeping)", () =>
    Effect.gen(function*() {
      const options = retryOptions({ maxAttempts: 4, initialDelay: 100, jitter: "none" })
      const outputs = yield* Schedule.run(Retry.schedule(options), 0, [
        transient(),
        transient(3_000),
        transient(),
        transient()
      ])
      assert.deepStrictEqual(Chunk.toReadonlyArray(outputs), [
        { _tag: "Retry", delay: 100, honoredRetryAfter: false },
        { _tag: "Retry", delay: 3_000, honoredRetryAfter: true },
        { _tag: "Retry", delay: 400, honoredRetryAfter: false },
        { _tag: "GiveUp", reason: "MaxAttempts" }
      ])
    }))
})
