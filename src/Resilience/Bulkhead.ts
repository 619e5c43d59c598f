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
  /**
   * Takes a permit at once if one is free and nobody waits for one (the hot path's admission,
   * a plain call); false otherwise, and nothing taken. A permit taken so must be given back with
   * {@link Bulkhead.releaseNow}. Call it only where the fiber cannot be interrupted before the
   * release is registered (inside `uninterruptibleMask`).
   *
   * @internal
   */
  readonly tryAcquireNow: () => boolean
  /** Gives back a permit taken by {@link Bulkhead.tryAcquireNow}. @internal */
  readonly releaseNow: () => void
}

/**
 * The bulkhead's permits: Effect's `Semaphore` semantics (a waiter takes its permit when it runs
 * again, so an interruption in between loses nothing), plus the synchronous take and release the
 * delivery's hot path uses instead of an Effect per admission (DESIGN §8).
 */
class Permits {
  taken = 0
  readonly waiters = new Set<() => void>()
  constructor(readonly permits: number) {}
  tryTake(): boolean {
    if (this.taken >= this.permits) return false
    this.taken++
    return true
  }
  release(): void {
    this.taken--
    for (const wake of this.waiters) {
      if (this.taken >= this.permits) break
      wake()
    }
  }
  readonly take: Effect.Effect<void> = Effect.async<void>((resume) => {
    const now = Effect.suspend((): Effect.Effect<void> => this.tryTake() ? Effect.void : this.take)
    if (this.taken < this.permits) {
      resume(now)
      return
    }
    const wake = () => {
      if (this.taken >= this.permits) return
      this.waiters.delete(wake)
      resume(now)
    }
    this.waiters.add(wake)
    return Effect.sync(() => {
      this.waiters.delete(wake)
    })
  })
  readonly giveBack: Effect.Effect<void> = Effect.sync(() => this.release())
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (target: string, options: BulkheadOptions): Effect.Effect<Bulkhead> =>
  Effect.sync(() => {
    const semaphore = new Permits(options.permits)
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
              ? semaphore.take
              : queued(semaphore.take)
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
                  return semaphore.giveBack
                })
              }
            })
          })
        ),
      inFlight: Effect.sync(() => inFlight),
      waiting: Effect.sync(() => waiting),
      tryAcquireNow: () => {
        if (waiting > 0 || !semaphore.tryTake()) return false
        inFlight++
        return true
      },
      releaseNow: () => {
        inFlight--
        semaphore.release()
      }
    } satisfies Bulkhead
  })
