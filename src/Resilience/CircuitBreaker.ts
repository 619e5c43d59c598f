/**
 * A circuit breaker in cockatiel's words: `Closed` → `Open` after `failureThreshold`
 * consecutive failures (or a failure ratio over a window); `Open` → `HalfOpen` once
 * `resetAfter` has passed; `HalfOpen` lets `halfOpenProbes` requests through: that many
 * successes close it, one failure opens it again. Its state is a `SubscriptionRef`, so it can
 * be read and watched.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Exit, Stream, SubscriptionRef } from "effect"
import { CircuitOpenError } from "../TargetError.js"
import type { CircuitBreakerOptions } from "./Policy.js"

/**
 * @since 0.1.0
 * @category models
 */
export type State =
  | { readonly _tag: "Closed"; readonly consecutiveFailures: number }
  | { readonly _tag: "Open"; readonly openedAt: number; readonly until: number }
  | { readonly _tag: "HalfOpen"; readonly probes: number; readonly successes: number }

/**
 * @since 0.1.0
 * @category models
 */
export interface CircuitBreaker {
  /**
   * Runs `effect` if the breaker allows it, and records its result: a failure for which
   * `isFailure` is true counts against the target; an interruption counts as nothing.
   */
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    isFailure: (error: E) => boolean
  ) => Effect.Effect<A, E | CircuitOpenError, R>
  readonly state: Effect.Effect<State>
  readonly changes: Stream.Stream<State>
  /**
   * The hot path's admission, a plain call: true when the breaker is closed (a call admitted
   * so is an ordinary one, not a probe); false when a call must go through {@link CircuitBreaker.run}.
   *
   * @internal
   */
  readonly closedNow: () => boolean
  /**
   * Records the result of a call admitted by {@link CircuitBreaker.closedNow} at `now`: undefined
   * when that changes nothing (a success of a closed breaker with no failures counted, the usual
   * case), else the Effect that records it.
   *
   * @internal
   */
  readonly recordClosed: (outcome: "success" | "failure" | "ignored", now: number) => Effect.Effect<void> | undefined
}

const closed: State = { _tag: "Closed", consecutiveFailures: 0 }

/**
 * A breaker that is always closed (policy without a breaker).
 *
 * @since 0.1.0
 * @category constructors
 */
export const disabled: CircuitBreaker = {
  run: (effect) => effect,
  state: Effect.succeed(closed),
  changes: Stream.make(closed),
  closedNow: () => true,
  recordClosed: () => undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (target: string, options: CircuitBreakerOptions | undefined): Effect.Effect<CircuitBreaker> =>
  options === undefined ? Effect.succeed(disabled) : Effect.gen(function*() {
    const ref = yield* SubscriptionRef.make<State>(closed)
    const resetAfter = Duration.toMillis(options.resetAfter)
    const ratio = options.failureRatio
    const windowMs = ratio ? Duration.toMillis(ratio.window) : 0
    // Sliding window of recent outcomes for the ratio rule: [time, failed].
    let samples: Array<readonly [number, boolean]> = []

    // The state, readable synchronously. It is written only inside the `SubscriptionRef`'s update
    // functions (so `changes` sees every transition, in order); a closed breaker's admissions
    // and successes, which change nothing, never touch the `SubscriptionRef`.
    let current: State = closed

    const open = (now: number): State => {
      samples = []
      return { _tag: "Open", openedAt: now, until: now + resetAfter }
    }

    // Admission: returns whether this call is a half-open probe, or fails when open.
    const admitSlow = (now: number) =>
      SubscriptionRef.modify(ref, (state): readonly [CircuitOpenError | "closed" | "probe", State] => {
        switch (state._tag) {
          case "Closed":
            return ["closed", state]
          case "Open":
            if (now < state.until) {
              return [
                new CircuitOpenError({
                  target,
                  message: `${target}: circuit open for ${state.until - now} ms more`,
                  retryAfter: state.until - now
                }),
                state
              ]
            }
            return ["probe", current = { _tag: "HalfOpen", probes: 1, successes: 0 }]
          case "HalfOpen":
            if (state.probes < options.halfOpenProbes) {
              return ["probe", current = { ...state, probes: state.probes + 1 }]
            }
            return [
              new CircuitOpenError({ target, message: `${target}: circuit half-open, probes in flight` }),
              state
            ]
        }
      }).pipe(Effect.flatMap((r) => typeof r === "string" ? Effect.succeed(r) : Effect.fail(r)))

    const admitted = Effect.succeed("closed" as const)
    const admit = Effect.clockWith((clock) =>
      current._tag === "Closed" ? admitted : admitSlow(clock.unsafeCurrentTimeMillis())
    )

    // Records a sample for the ratio rule (closed state only).
    const sample = (now: number, failed: boolean) => {
      samples.push([now, failed])
      const from = now - windowMs
      if (samples.length > 0 && samples[0]![0] < from) samples = samples.filter(([t]) => t >= from)
    }

    const next = (kind: "closed" | "probe", outcome: "success" | "failure", state: State, now: number): State => {
      if (kind === "probe") {
        if (state._tag !== "HalfOpen") return state
        if (outcome === "failure") return open(now)
        const successes = state.successes + 1
        return successes >= options.halfOpenProbes ? closed : { ...state, successes }
      }
      if (state._tag !== "Closed") return state
      if (ratio) sample(now, outcome === "failure")
      if (outcome === "success") return state.consecutiveFailures === 0 ? state : closed
      const consecutiveFailures = state.consecutiveFailures + 1
      if (consecutiveFailures >= options.failureThreshold) return open(now)
      if (ratio && samples.length >= ratio.minimumRequests) {
        const failures = samples.reduce((n, [, failed]) => n + (failed ? 1 : 0), 0)
        if (failures / samples.length >= ratio.threshold) return open(now)
      }
      return { _tag: "Closed", consecutiveFailures }
    }

    const recordAt = (
      kind: "closed" | "probe",
      outcome: "success" | "failure" | "ignored",
      now: number
    ): Effect.Effect<void> | undefined => {
      // Changes nothing: an ignored result of a non-probe.
      if (kind === "closed" && outcome === "ignored") return undefined
      // Fast path: a success while closed with no failures counted leaves the state as it is.
      if (
        kind === "closed" && outcome === "success" && current._tag === "Closed" && current.consecutiveFailures === 0
      ) {
        if (ratio) sample(now, false)
        return undefined
      }
      return SubscriptionRef.update(ref, (state): State => {
        if (outcome === "ignored") {
          // Only probes get here: give the probe's slot back.
          return (current = state._tag === "HalfOpen" ? { ...state, probes: state.probes - 1 } : state)
        }
        return (current = next(kind, outcome, state, now))
      })
    }

    const record = (kind: "closed" | "probe", outcome: "success" | "failure" | "ignored"): Effect.Effect<void> =>
      kind === "closed" && outcome === "ignored"
        ? Effect.void
        : Effect.clockWith((clock) => recordAt(kind, outcome, clock.unsafeCurrentTimeMillis()) ?? Effect.void)

    return {
      run: <A, E, R>(effect: Effect.Effect<A, E, R>, isFailure: (error: E) => boolean) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(admit, (kind) =>
            Effect.onExit(restore(effect), (exit) =>
              record(
                kind,
                Exit.isSuccess(exit)
                  ? "success"
                  : Exit.isInterrupted(exit)
                  ? "ignored"
                  : exit.cause._tag === "Fail" && isFailure(exit.cause.error)
                  ? "failure"
                  : "ignored"
              )))
        ),
      state: SubscriptionRef.get(ref),
      changes: ref.changes,
      closedNow: () => current._tag === "Closed",
      recordClosed: (outcome, now) => recordAt("closed", outcome, now)
    } satisfies CircuitBreaker
  })
