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
  readonly run: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | BulkheadRejectedError, R>
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
      run: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.suspend((): Effect.Effect<A, E | BulkheadRejectedError, R> => {
            if (inFlight >= options.permits && waiting >= options.queue) return Effect.fail(reject)
            waiting++
            return Effect.matchCauseEffect(restore(semaphore.take(1)), {
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
