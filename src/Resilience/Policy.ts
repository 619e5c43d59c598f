/**
 * A target's resilience policy: pure data with defaults, applied in one place
 * (`Target`'s delivery). Every field is optional on input; {@link make} fills the rest.
 *
 * @since 0.1.0
 */
import { Duration } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 5. 1 means no retry. */
  readonly maxAttempts: number
  /** Delay before the first retry. Default 100 millis. */
  readonly initialDelay: Duration.Duration
  /** Growth of the delay per retry. Default 2. */
  readonly factor: number
  /** Cap on any one delay (computed or asked by `Retry-After`). Default 30 seconds. */
  readonly maxDelay: Duration.Duration
  /** Direct mode: no retry is scheduled past this time since the first attempt. Default 2 minutes. */
  readonly maxElapsed: Duration.Duration
  /** Durable mode: no retry is scheduled past this age of the delivery; then it is dead-lettered. Default 1 day. */
  readonly maxAge: Duration.Duration
  /** `"full"`: the delay is random in [0, d]; `"equal"`: in [d/2, d]; `"none"`: exactly d. Default "full". */
  readonly jitter: "full" | "equal" | "none"
  /** Honour the server's `Retry-After` / rate-limit reset over the computed delay (still capped). Default true. */
  readonly honorRetryAfter: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BulkheadOptions {
  /** Requests in flight at once for this target. Default 64. */
  readonly permits: number
  /** Requests allowed to wait for a permit; beyond, `BulkheadRejectedError`. Default 1024. */
  readonly queue: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RateLimitOptions {
  /** Requests per interval (token bucket; the bucket holds `limit` tokens). */
  readonly limit: number
  readonly interval: Duration.Duration
  /** Longest wait for a token before failing with `RateLimitedError`. Default 30 seconds. */
  readonly maxWait: Duration.Duration
}

/**
 * @since 0.1.0
 * @category models
 */
export interface CircuitBreakerOptions {
  /** Opens after this many consecutive failures. Default 5. */
  readonly failureThreshold: number
  /** Also opens when the failure ratio over `window` reaches `threshold` with at least `minimumRequests`. */
  readonly failureRatio?: {
    readonly threshold: number
    readonly window: Duration.Duration
    readonly minimumRequests: number
  } | undefined
  /** Cool-down in the open state before probes are let through. Default 30 seconds. */
  readonly resetAfter: Duration.Duration
  /** Probes allowed at once in the half-open state; that many successes close the breaker. Default 1. */
  readonly halfOpenProbes: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Policy {
  /** Per attempt. Default 10 seconds. */
  readonly timeout: Duration.Duration
  /** Overall, all attempts and waits included (direct mode). Default 2 minutes. */
  readonly deadline: Duration.Duration
  readonly retry: RetryOptions
  readonly bulkhead: BulkheadOptions
  readonly rateLimit: RateLimitOptions | undefined
  readonly circuitBreaker: CircuitBreakerOptions | undefined
  /** Response bodies larger than this are discarded unread into memory. Default 1 MiB. */
  readonly maxResponseBytes: number
}

/**
 * What a user writes: every field optional, durations as `Duration.DurationInput`
 * (`"2 seconds"`, `Duration.millis(100)`, a number of milliseconds). `false` turns a
 * breaker off.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input {
  readonly timeout?: Duration.DurationInput
  readonly deadline?: Duration.DurationInput
  readonly retry?: {
    readonly maxAttempts?: number
    readonly initialDelay?: Duration.DurationInput
    readonly factor?: number
    readonly maxDelay?: Duration.DurationInput
    readonly maxElapsed?: Duration.DurationInput
    readonly maxAge?: Duration.DurationInput
    readonly jitter?: "full" | "equal" | "none"
    readonly honorRetryAfter?: boolean
  }
  readonly bulkhead?: { readonly permits?: number; readonly queue?: number }
  readonly rateLimit?: {
    readonly limit: number
    readonly interval: Duration.DurationInput
    readonly maxWait?: Duration.DurationInput
  }
  readonly circuitBreaker?: false | {
    readonly failureThreshold?: number
    readonly failureRatio?: {
      readonly threshold: number
      readonly window: Duration.DurationInput
      readonly minimumRequests?: number
    }
    readonly resetAfter?: Duration.DurationInput
    readonly halfOpenProbes?: number
  }
  readonly maxResponseBytes?: number
}

const positiveInt = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`policy: ${name} must be an integer >= 1, got ${value}`)
  }
  return value
}

/**
 * The defaults, stated once.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaults: Policy = {
  timeout: Duration.seconds(10),
  deadline: Duration.minutes(2),
  retry: {
    maxAttempts: 5,
    initialDelay: Duration.millis(100),
    factor: 2,
    maxDelay: Duration.seconds(30),
    maxElapsed: Duration.minutes(2),
    maxAge: Duration.days(1),
    jitter: "full",
    honorRetryAfter: true
  },
  bulkhead: { permits: 64, queue: 1024 },
  rateLimit: undefined,
  circuitBreaker: {
    failureThreshold: 5,
    resetAfter: Duration.seconds(30),
    halfOpenProbes: 1
  },
  maxResponseBytes: 1024 * 1024
}

/**
 * Fills an input with the defaults and checks its numbers (a bad number is a programming
 * error, thrown at declaration time, never at delivery time).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (input: Input = {}): Policy => {
  const d = defaults
  const r = input.retry ?? {}
  const cb = input.circuitBreaker
  const factor = r.factor ?? d.retry.factor
  if (!(factor >= 1)) throw new RangeError(`policy: retry.factor must be >= 1, got ${factor}`)
  return {
    timeout: Duration.decode(input.timeout ?? d.timeout),
    deadline: Duration.decode(input.deadline ?? d.deadline),
    retry: {
      maxAttempts: positiveInt("retry.maxAttempts", r.maxAttempts ?? d.retry.maxAttempts),
      initialDelay: Duration.decode(r.initialDelay ?? d.retry.initialDelay),
      factor,
      maxDelay: Duration.decode(r.maxDelay ?? d.retry.maxDelay),
      maxElapsed: Duration.decode(r.maxElapsed ?? d.retry.maxElapsed),
      maxAge: Duration.decode(r.maxAge ?? d.retry.maxAge),
      jitter: r.jitter ?? d.retry.jitter,
      honorRetryAfter: r.honorRetryAfter ?? d.retry.honorRetryAfter
    },
    bulkhead: {
      permits: positiveInt("bulkhead.permits", input.bulkhead?.permits ?? d.bulkhead.permits),
      queue: Math.max(0, Math.floor(input.bulkhead?.queue ?? d.bulkhead.queue))
    },
    rateLimit: input.rateLimit === undefined ? undefined : {
      limit: positiveInt("rateLimit.limit", input.rateLimit.limit),
      interval: Duration.decode(input.rateLimit.interval),
      maxWait: Duration.decode(input.rateLimit.maxWait ?? "30 seconds")
    },
    circuitBreaker: cb === false ? undefined : {
      failureThreshold: positiveInt(
        "circuitBreaker.failureThreshold",
        cb?.failureThreshold ?? d.circuitBreaker!.failureThreshold
      ),
      failureRatio: cb?.failureRatio === undefined ? undefined : {
        threshold: cb.failureRatio.threshold,
        window: Duration.decode(cb.failureRatio.window),
        minimumRequests: cb.failureRatio.minimumRequests ?? 10
      },
      resetAfter: Duration.decode(cb?.resetAfter ?? d.circuitBreaker!.resetAfter),
      halfOpenProbes: positiveInt("circuitBreaker.halfOpenProbes", cb?.halfOpenProbes ?? 1)
    },
    maxResponseBytes: positiveInt("maxResponseBytes", input.maxResponseBytes ?? d.maxResponseBytes)
  }
}

/**
 * A JSON-friendly view (durations as milliseconds), for `/v1/targets` and logs.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toJSON = (policy: Policy) => ({
  timeoutMs: Duration.toMillis(policy.timeout),
  deadlineMs: Duration.toMillis(policy.deadline),
  retry: {
    maxAttempts: policy.retry.maxAttempts,
    initialDelayMs: Duration.toMillis(policy.retry.initialDelay),
    factor: policy.retry.factor,
    maxDelayMs: Duration.toMillis(policy.retry.maxDelay),
    maxElapsedMs: Duration.toMillis(policy.retry.maxElapsed),
    maxAgeMs: Duration.toMillis(policy.retry.maxAge),
    jitter: policy.retry.jitter,
    honorRetryAfter: policy.retry.honorRetryAfter
  },
  bulkhead: policy.bulkhead,
  rateLimit: policy.rateLimit && {
    limit: policy.rateLimit.limit,
    intervalMs: Duration.toMillis(policy.rateLimit.interval),
    maxWaitMs: Duration.toMillis(policy.rateLimit.maxWait)
  },
  circuitBreaker: policy.circuitBreaker && {
    failureThreshold: policy.circuitBreaker.failureThreshold,
    failureRatio: policy.circuitBreaker.failureRatio && {
      threshold: policy.circuitBreaker.failureRatio.threshold,
      windowMs: Duration.toMillis(policy.circuitBreaker.failureRatio.window),
      minimumRequests: policy.circuitBreaker.failureRatio.minimumRequests
    },
    resetAfterMs: Duration.toMillis(policy.circuitBreaker.resetAfter),
    halfOpenProbes: policy.circuitBreaker.halfOpenProbes
  },
  maxResponseBytes: policy.maxResponseBytes
})
