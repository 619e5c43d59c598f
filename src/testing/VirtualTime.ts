/**
 * Virtual time for simulations: a `Clock` whose sleeps are timers in a queue, and a
 * `Scheduler` that knows when every simulated fiber is waiting. The driver jumps time to the
 * next timer only when nothing else can run, one timer at a time, in (time, registration)
 * order — a discrete-event simulation, deterministic and without real waits.
 *
 * (`TestClock.adjust` gives the same semantics, but it waits for the fibers to settle with
 * real `setTimeout`s, about 5 ms per wake-up; this waits one `setImmediate` turn.)
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Exit, Fiber, FiberRef, Option } from "effect"
import type { Scheduler } from "effect"

interface Timer {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
  cancelled: boolean
}

/**
 * A virtual clock and scheduler pair.
 *
 * @since 0.1.0
 * @category models
 */
export interface VirtualTime {
  readonly clock: Clock.Clock
  readonly scheduler: Scheduler.Scheduler
  /** Virtual now, in epoch milliseconds. */
  readonly now: () => number
  /** Timers not yet fired nor cancelled. */
  readonly pending: () => number
  /**
   * Runs `fiber` (forked under this clock and scheduler) to its end, moving virtual time from
   * one timer to the next whenever every simulated fiber is waiting. `None` when the next
   * timer lies past `horizon` ms after the start, or when nothing is left to wake.
   */
  readonly drive: <A, E>(
    fiber: Fiber.RuntimeFiber<A, E>,
    horizon: number
  ) => Effect.Effect<Exit.Exit<A, E> | "Horizon" | "Stalled">
}

const macrotask = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/**
 * A new virtual time starting at `start` (epoch milliseconds).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (start: number): VirtualTime => {
  let now = start
  let seq = 0
  const timers: Array<Timer> = []
  let live = 0

  // Scheduler: FIFO tasks, drained in microtasks; every 2048 drains, a macrotask (no starvation).
  const tasks: Array<() => void> = []
  let flushScheduled = false
  let depth = 0
  let ran = 0
  const flush = () => {
    flushScheduled = false
    let budget = 4096
    while (tasks.length > 0 && budget-- > 0) {
      const task = tasks.shift()!
      ran++
      task()
    }
    if (tasks.length > 0) schedule()
    else depth = 0
  }
  const schedule = () => {
    if (flushScheduled) return
    flushScheduled = true
    if (++depth >= 2048) {
      depth = 0
      setImmediate(flush)
    } else {
      queueMicrotask(flush)
    }
  }
  const scheduler: Scheduler.Scheduler = {
    scheduleTask: (task) => {
      tasks.push(task)
      schedule()
    },
    shouldYield: (fiber) =>
      fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
        ? 0
        : false
  }

  const sleep = (duration: Duration.Duration): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const millis = Duration.toMillis(duration)
      const timer: Timer = {
        at: now + (Number.isFinite(millis) ? Math.max(0, millis) : Number.POSITIVE_INFINITY),
        seq: seq++,
        wake: () => resume(Effect.void),
        cancelled: false
      }
      timers.push(timer)
      live++
      return Effect.sync(() => {
        if (!timer.cancelled) {
          timer.cancelled = true
          live--
        }
      })
    })

  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    currentTimeMillis: Effect.sync(() => now),
    unsafeCurrentTimeNanos: () => BigInt(Math.round(now * 1_000_000)),
    currentTimeNanos: Effect.sync(() => BigInt(Math.round(now * 1_000_000))),
    sleep
  }

  const nextTimer = (): Timer | undefined => {
    // Drop cancelled timers now and then, so the queue stays short.
    if (timers.length > 64 && live * 2 < timers.length) {
      const keep = timers.filter((t) => !t.cancelled)
      timers.length = 0
      timers.push(...keep)
    }
    let bestIndex = -1
    for (let i = 0; i < timers.length; i++) {
      const t = timers[i]!
      if (t.cancelled) continue
      const best = timers[bestIndex]
      if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) bestIndex = i
    }
    return bestIndex < 0 ? undefined : timers.splice(bestIndex, 1)[0]
  }

  const drive: VirtualTime["drive"] = (fiber, horizon) =>
    Effect.gen(function*() {
      while (true) {
        // Settle: run until a whole macrotask turn passes without a simulated task.
        const before = ran
        yield* macrotask
        if (ran !== before || tasks.length > 0 || flushScheduled) continue
        const done = yield* Fiber.poll(fiber)
        if (Option.isSome(done)) return done.value
        const timer = nextTimer()
        if (timer === undefined) return "Stalled" as const
        if (timer.at - start > horizon) {
          timers.push(timer)
          return "Horizon" as const
        }
        timer.cancelled = true
        live--
        now = Math.max(now, timer.at)
        timer.wake()
      }
    })

  return { clock, scheduler, now: () => now, pending: () => live, drive }
}

/** @internal */
export const isExit = <A, E>(u: Exit.Exit<A, E> | "Horizon" | "Stalled"): u is Exit.Exit<A, E> => Exit.isExit(u)
