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
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  target: string,
  options: RateLimitOptions | undefined,
  maxWaitWhenPaused: Duration.DurationInput = "30 seconds"
): Effect.Effect<RateLimiter> =>
  Effect.sync(() => {
    const emission = options ? Duration.toMillis(options.interval) / options.limit : 0
    const tolerance = options ? Duration.toMillis(options.interval) - emission : 0
    const maxWait = Duration.toMillis(options ? options.maxWait : maxWaitWhenPaused)
    // Theoretical arrival time of the next request (GCRA). A pause pushes it forward.
    let tat = 0
    const reserve = Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const base = Math.max(tat, now)
      const wait = Math.max(0, base - tolerance - now)
      if (wait > maxWait) {
        return Effect.fail(
          new RateLimitedError({
            target,
            message: `${target}: rate limited, next slot in ${Math.ceil(wait)} ms (max wait ${maxWait} ms)`,
            retryAfter: Math.ceil(wait)
          })
        )
      }
      tat = base + emission
      return Effect.succeed(wait)
    })
    const take = Effect.flatMap(reserve, (wait) => wait > 0 ? Effect.sleep(Duration.millis(wait)) : Effect.void)
    return {
      take,
      reserve,
      pauseFor: (millis) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          tat = Math.max(tat, now + millis + tolerance)
        }),
      nextFreeAt: Effect.map(Clock.currentTimeMillis, (now) => {
        const at = tat - tolerance
        return at > now ? at : 0
      }),
      tryTakeNow: (now) => {
        const base = Math.max(tat, now)
        if (base - tolerance > now) return false
        tat = base + emission
        return true
      }
    }
  })
