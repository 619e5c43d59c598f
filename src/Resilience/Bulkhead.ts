/**
 * A bulkhead: a semaphore of `permits` with a bounded wait queue. Beyond the queue a
 * request is refused at once with `BulkheadRejectedError`, so a slow target cannot pile up
 * unbounded work (or memory) behind it.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { BulkheadRejectedError } from "../TargetError.js"
import type { BulkheadOptions } from "./Policy.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Bulkhead {
  readonly permits: number
  readonly queue: number
  /** Runs `effect` holding one permit; waits in the queue, or fails when the queue is full. */
  readonly run: <A, E, R, E2 = never>(
    effect: Effect.Effect<A, E, R>,
    /** Bounds a wait in the queue (e.g. by a deadline); applied only when no permit is free at once. */
    queued?: (wait: Effect.Effect<void>) => Effect.Effect<void, E2>
  ) => Effect.Effect<A, E | E2 | BulkheadRejectedError, R>
  /** Permits in use now. */
  readonly inFlight: Effect.Effect<number>
  /** Requests waiting for a permit now. */
  readonly waiting: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (target: string, options: BulkheadOptions): Effect.Effect<Bulkhead> =>
  Effect.gen(function*() {
    const semaphore = yield* Effect.makeSemaphore(options.permits)
    // Plain counters, mutated synchronously (single JS thread) in uninterruptible regions.
    let inFlight = 0
    let waiting = 0
    const reject = new BulkheadRejectedError({
      target,
      message: `${target}: bulkhead full (${options.permits} in flight, ${options.queue} waiting)`
    })
    return {
      permits: options.permits,
      queue: options.queue,
      run: <A, E, R, E2 = never>(
        effect: Effect.Effect<A, E, R>,
        queued?: (wait: Effect.Effect<void>) => Effect.Effect<void, E2>
      ) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.suspend((): Effect.Effect<A, E | E2 | BulkheadRejectedError, R> => {
            if (inFlight >= options.permits && waiting >= options.queue) return Effect.fail(reject)
            // A permit is free at once when nobody holds them all and nobody waits before us.
            const take: Effect.Effect<void, E2> = queued === undefined || (inFlight < options.permits && waiting === 0)
              ? semaphore.take(1)
              : queued(semaphore.take(1))
            waiting++
            return Effect.matchCauseEffect(restore(take), {
              onFailure: (cause) => {
                waiting--
                return Effect.failCause(cause)
              },
              onSuccess: () => {
                waiting--
                inFlight++
                return Effect.onExit(restore(effect), () => {
                  inFlight--
                  return semaphore.release(1)
                })
              }
            })
          })
        ),
      inFlight: Effect.sync(() => inFlight),
      waiting: Effect.sync(() => waiting)
    } satisfies Bulkhead
  })
