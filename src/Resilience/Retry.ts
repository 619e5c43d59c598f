/**
 * Retry decisions: one pure function ({@link decide}) that both modes use — direct mode
 * through the `Schedule` built by {@link schedule}, durable mode to compute a delivery's
 * next attempt time.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Random, Schedule, ScheduleDecision, ScheduleInterval } from "effect"
import * as TargetError from "../TargetError.js"
import type { RetryOptions } from "./Policy.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Decision =
  | { readonly _tag: "Retry"; readonly delay: number; readonly honoredRetryAfter: boolean }
  | { readonly _tag: "GiveUp"; readonly reason: "Permanent" | "MaxAttempts" | "MaxElapsed" }

/**
 * The computed delay before retry number `retry` (1 for the first retry), before jitter:
 * `initialDelay * factor^(retry-1)`, capped at `maxDelay`.
 *
 * @since 0.1.0
 * @category delays
 */
export const baseDelay = (options: RetryOptions, retry: number): number =>
  Math.min(
    Duration.toMillis(options.maxDelay),
    Duration.toMillis(options.initialDelay) * Math.pow(options.factor, Math.max(0, retry - 1))
  )

/**
 * Decides what follows a failed attempt.
 *
 * - `attempts`: attempts made so far (this one included);
 * - `elapsed`: milliseconds since the first attempt started;
 * - `random`: a number in [0, 1) for the jitter;
 * - `budget`: milliseconds after which no retry starts (default `maxElapsed`; durable mode passes
 *   `maxAge` and the age of the delivery as `elapsed`).
 *
 * A permanent error gives up at once. A `Retry-After` (or rate-limit reset) replaces the
 * computed delay, capped at `maxDelay`. No retry is scheduled that would start past `maxElapsed`.
 *
 * @since 0.1.0
 * @category decisions
 */
export const decide = (
  options: RetryOptions,
  input: {
    readonly attempts: number
    readonly elapsed: number
    readonly error: TargetError.DeliveryError
    readonly random: number
    readonly budget?: number | undefined
  }
): Decision => {
  if (!TargetError.isTransient(input.error)) return { _tag: "GiveUp", reason: "Permanent" }
  if (input.attempts >= options.maxAttempts) return { _tag: "GiveUp", reason: "MaxAttempts" }
  const base = baseDelay(options, input.attempts)
  const jittered = options.jitter === "full"
    ? base * input.random
    : options.jitter === "equal"
    ? base / 2 + (base / 2) * input.random
    : base
  const asked = options.honorRetryAfter ? TargetError.retryAfter(input.error) : undefined
  const delay = Math.round(
    asked !== undefined ? Math.min(asked, Duration.toMillis(options.maxDelay)) : jittered
  )
  if (input.elapsed + delay > (input.budget ?? Duration.toMillis(options.maxElapsed))) {
    return { _tag: "GiveUp", reason: "MaxElapsed" }
  }
  return { _tag: "Retry", delay, honoredRetryAfter: asked !== undefined }
}

/**
 * The policy as an Effect `Schedule` over delivery errors. Its output is the decision taken
 * (so callers can log or count it); it stops on a permanent error, after `maxAttempts`, or
 * when the next delay would pass `maxElapsed`, counted from `startedAt` (the start of the first
 * attempt; default: the first failure). Jitter draws from the Effect `Random` service.
 *
 * @since 0.1.0
 * @category schedules
 */
export const schedule = (
  options: RetryOptions,
  startedAt?: number
): Schedule.Schedule<Decision, TargetError.DeliveryError> =>
  Schedule.makeWithState<
    { readonly attempts: number; readonly start: number | undefined },
    TargetError.DeliveryError,
    Decision
  >(
    { attempts: 0, start: undefined },
    (now, error, state) =>
      Effect.map(Random.next, (random) => {
        const start = state.start ?? startedAt ?? now
        const attempts = state.attempts + 1
        const decision = decide(options, { attempts, elapsed: now - start, error, random })
        return [
          { attempts, start },
          decision,
          decision._tag === "Retry"
            ? ScheduleDecision.continueWith(ScheduleInterval.after(now + decision.delay))
            : ScheduleDecision.done
        ] as const
      })
  )
