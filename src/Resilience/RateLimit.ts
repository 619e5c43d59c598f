/**
 * A per-target rate limiter: a token bucket of `limit` tokens refilled over `interval`
 * (implemented as GCRA, so it needs no timer), plus a pause gate that a target's
 * `Retry-After` / rate-limit headers close until the time the API asked for. Time comes
 * from the Effect `Clock`, so it is exact under `TestClock`.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect } from "effect"
import { RateLimitedError } from "../TargetError.js"
import type { RateLimitOptions } from "./Policy.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter {
  /** Waits for a token (and for any pause); fails with `RateLimitedError` if that wait would exceed `maxWait`. */
  readonly take: Effect.Effect<void, RateLimitedError>
  /** Takes a token as `take` does, but gives the wait in milliseconds (0: go now) instead of sleeping it. */
  readonly reserve: Effect.Effect<number, RateLimitedError>
  /** Holds every request until `millis` from now (the API asked us to slow down). Never shortens a pause. */
  readonly pauseFor: (millis: number) => Effect.Effect<void>
  /** When the next request could go, in epoch milliseconds (0 when now). */
  readonly nextFreeAt: Effect.Effect<number>
  /**
   * The hot path's token, a plain call: takes one and gives true when it is free at `now` (no
   * wait); false otherwise, and nothing taken (the caller then goes through {@link RateLimiter.take}).
   *
   * @internal
   */
  readonly tryTakeNow: (now: number) => boolean
}

/**
 * The generic cell rate algorithm behind every rate limit of Fanout (a target's, and the server's
 * per-API-key one): `limit` requests per `intervalMs`, bursts of up to `limit`, no timer. Plain
 * state and arithmetic; the callers bring the clock.
 *
 * @since 0.1.0
 * @category models
 */
export class Gcra {
  /** Milliseconds between two requests at the steady rate. */
  readonly emission: number
  /** How far ahead of the steady rate a burst may run. */
  readonly tolerance: number
  /** Theoretical arrival time of the next request. */
  tat = 0
  constructor(limit: number, intervalMs: number) {
    this.emission = intervalMs / limit
    this.tolerance = intervalMs - this.emission
  }
  /** Milliseconds until a request may go at `now` (0: now). Takes nothing. */
  waitAt(now: number): number {
    const wait = Math.max(this.tat, now) - this.tolerance - now
    // Below a microsecond is rounding (emission is limit / interval, rarely exact), not a wait.
    return wait > 1e-3 ? wait : 0
  }
  /** Takes a slot `waitAt(now)` from now (the caller waits that long, or has checked it is 0). */
  take(now: number): void {
    this.tat = Math.max(this.tat, now) + this.emission
  }
  /** Holds every request until `now + millis`; never shortens a hold. */
  holdUntil(at: number): void {
    this.tat = Math.max(this.tat, at + this.tolerance)
  }
  /** Whether a full burst is available again at `now` (its state can be forgotten). */
  idleAt(now: number): boolean {
    return this.tat <= now
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  target: string,
  options: RateLimitOptions | undefined,
  maxWaitWhenPaused: Duration.DurationInput = "30 seconds"
): Effect.Effect<RateLimiter> =>
  Effect.sync(() => {
    // No limit: `Infinity` requests per 0 ms — emission and tolerance 0, so only a pause holds.
    const gcra = options ? new Gcra(options.limit, Duration.toMillis(options.interval)) : new Gcra(Infinity, 0)
    const maxWait = Duration.toMillis(options ? options.maxWait : maxWaitWhenPaused)
    const reserve = Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const wait = gcra.waitAt(now)
      if (wait > maxWait) {
        return Effect.fail(
          new RateLimitedError({
            target,
            message: `${target}: rate limited, next slot in ${Math.ceil(wait)} ms (max wait ${maxWait} ms)`,
            retryAfter: Math.ceil(wait)
          })
        )
      }
      gcra.take(now)
      return Effect.succeed(wait)
    })
    const take = Effect.flatMap(reserve, (wait) => wait > 0 ? Effect.sleep(Duration.millis(wait)) : Effect.void)
    return {
      take,
      reserve,
      pauseFor: (millis) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          gcra.holdUntil(now + millis)
        }),
      nextFreeAt: Effect.map(Clock.currentTimeMillis, (now) => {
        const at = gcra.tat - gcra.tolerance
        return at > now ? at : 0
      }),
      tryTakeNow: (now) => {
        if (gcra.waitAt(now) > 0) return false
        gcra.take(now)
        return true
      }
    }
  })
