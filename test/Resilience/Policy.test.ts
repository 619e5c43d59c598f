import { assert, describe, it } from "@effect/vitest"
import { Duration } from "effect"
import * as Policy from "../../src/Resilience/Policy.js"

const ms = Duration.toMillis

describe("Policy.make", () => {
  it("fills every field with the documented defaults", () => {
    const p = Policy.make()
    assert.deepStrictEqual(Policy.make({}), p)
    assert.strictEqual(ms(p.timeout), 10_000)
    assert.strictEqual(ms(p.deadline), 120_000)
    assert.deepStrictEqual(
      {
        ...p.retry,
        initialDelay: ms(p.retry.initialDelay),
        maxDelay: ms(p.retry.maxDelay),
        maxElapsed: ms(p.retry.maxElapsed),
        maxAge: ms(p.retry.maxAge)
      },
      {
        maxAttempts: 5,
        initialDelay: 100,
        factor: 2,
        maxDelay: 30_000,
        maxElapsed: 120_000,
        maxAge: 86_400_000,
        jitter: "full",
        honorRetryAfter: true
      }
    )
    assert.deepStrictEqual(p.bulkhead, { permits: 64, queue: 1024 })
    assert.strictEqual(p.rateLimit, undefined)
    assert.strictEqual(p.circuitBreaker?.failureThreshold, 5)
    assert.strictEqual(p.circuitBreaker?.failureRatio, undefined)
    assert.strictEqual(ms(p.circuitBreaker!.resetAfter), 30_000)
    assert.strictEqual(p.circuitBreaker?.halfOpenProbes, 1)
    assert.strictEqual(p.maxResponseBytes, 1024 * 1024)
  })

  it("takes overrides in every duration form, keeping the other defaults", () => {
    const p = Policy.make({
      timeout: "2 seconds",
      deadline: Duration.minutes(5),
      retry: { maxAttempts: 8, initialDelay: 250, jitter: "equal", honorRetryAfter: false },
      bulkhead: { permits: 4 },
      rateLimit: { limit: 10, interval: "1 second" },
      circuitBreaker: { failureThreshold: 3, failureRatio: { threshold: 0.5, window: "1 minute" }, halfOpenProbes: 2 },
      maxResponseBytes: 4096
    })
    assert.strictEqual(ms(p.timeout), 2_000)
    assert.strictEqual(ms(p.deadline), 300_000)
    assert.strictEqual(p.retry.maxAttempts, 8)
    assert.strictEqual(ms(p.retry.initialDelay), 250)
    assert.strictEqual(p.retry.factor, 2)
    assert.strictEqual(p.retry.jitter, "equal")
    assert.strictEqual(p.retry.honorRetryAfter, false)
    assert.deepStrictEqual(p.bulkhead, { permits: 4, queue: 1024 })
    assert.strictEqual(p.rateLimit?.limit, 10)
    assert.strictEqual(ms(p.rateLimit!.interval), 1_000)
    assert.strictEqual(ms(p.rateLimit!.maxWait), 30_000)
    assert.strictEqual(p.circuitBreaker?.failureThreshold, 3)
    assert.strictEqual(p.circuitBreaker?.failureRatio?.minimumRequests, 10)
    assert.strictEqual(ms(p.circuitBreaker!.failureRatio!.window), 60_000)
    assert.strictEqual(ms(p.circuitBreaker!.resetAfter), 30_000)
    assert.strictEqual(p.circuitBreaker?.halfOpenProbes, 2)
    assert.strictEqual(p.maxResponseBytes, 4096)
  })

  it("circuitBreaker: false turns the breaker off; a negative or fractional queue is clamped to an integer ≥ 0", () => {
    assert.strictEqual(Policy.make({ circuitBreaker: false }).circuitBreaker, undefined)
    assert.strictEqual(Policy.make({ bulkhead: { queue: -5 } }).bulkhead.queue, 0)
    assert.strictEqual(Policy.make({ bulkhead: { queue: 2.7 } }).bulkhead.queue, 2)
  })

  it("bad numbers throw RangeError at declaration time, naming the field", () => {
    const bad: ReadonlyArray<readonly [Policy.Input, string]> = [
      [{ retry: { maxAttempts: 0 } }, "retry.maxAttempts"],
      [{ retry: { maxAttempts: 1.5 } }, "retry.maxAttempts"],
      [{ retry: { maxAttempts: Number.NaN } }, "retry.maxAttempts"],
      [{ retry: { factor: 0.5 } }, "retry.factor"],
      [{ retry: { factor: Number.NaN } }, "retry.factor"],
      [{ bulkhead: { permits: 0 } }, "bulkhead.permits"],
      [{ bulkhead: { permits: -1 } }, "bulkhead.permits"],
      [{ rateLimit: { limit: 0, interval: "1 second" } }, "rateLimit.limit"],
      [{ circuitBreaker: { failureThreshold: 0 } }, "circuitBreaker.failureThreshold"],
      [{ circuitBreaker: { halfOpenProbes: 0 } }, "circuitBreaker.halfOpenProbes"],
      [{ maxResponseBytes: 0 }, "maxResponseBytes"]
    ]
    for (const [input, field] of bad) {
      assert.throws(() => Policy.make(input), RangeError, field)
    }
    assert.doesNotThrow(() => Policy.make({ retry: { maxAttempts: 1, factor: 1 }, bulkhead: { permits: 1, queue: 0 } }))
  })

  it("toJSON gives plain milliseconds", () => {
    const json = Policy.toJSON(Policy.make({
      timeout: "3 seconds",
      retry: { maxAge: "2 days" },
      rateLimit: { limit: 5, interval: "2 seconds", maxWait: 500 },
      circuitBreaker: { failureRatio: { threshold: 0.25, window: "30 seconds", minimumRequests: 20 } }
    }))
    assert.deepStrictEqual(json, {
      timeoutMs: 3_000,
      deadlineMs: 120_000,
      retry: {
        maxAttempts: 5,
        initialDelayMs: 100,
        factor: 2,
        maxDelayMs: 30_000,
        maxElapsedMs: 120_000,
        maxAgeMs: 172_800_000,
        jitter: "full",
        honorRetryAfter: true
      },
      bulkhead: { permits: 64, queue: 1024 },
      rateLimit: { limit: 5, intervalMs: 2_000, maxWaitMs: 500 },
      circuitBreaker: {
        failureThreshold: 5,
        failureRatio: { threshold: 0.25, windowMs: 30_000, minimumRequests: 20 },
        resetAfterMs: 30_000,
        halfOpenProbes: 1
      },
      maxResponseBytes: 1024 * 1024
    })
    // It survives JSON.stringify unchanged (no Duration objects left in it).
    assert.deepStrictEqual(JSON.parse(JSON.stringify(json)), json)
    const off = Policy.toJSON(Policy.make({ circuitBreaker: false }))
    assert.strictEqual(off.rateLimit, undefined)
    assert.strictEqual(off.circuitBreaker, undefined)
  })
})
