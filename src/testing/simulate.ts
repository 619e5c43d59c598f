/**
 * `simulate`: runs a router's fan-out against TestTargets on the simulated client, in virtual
 * time, and returns what happened: every send's outcomes, every request each TestTarget
 * received, every circuit-breaker state change. Same inputs, same result.
 *
 * @since 0.1.0
 */
import { HttpClientRequest } from "@effect/platform"
import { Clock, Context, Data, Deferred, Duration, Effect, Fiber, Layer, Random, Stream } from "effect"
import type { Scope, TestClock } from "effect"
import type * as Event from "../Event.js"
import * as Fanout from "../Fanout.js"
import type * as Outcome from "../Outcome.js"
import type * as CircuitBreaker from "../Resilience/CircuitBreaker.js"
import type * as Policy from "../Resilience/Policy.js"
import type * as Router from "../Router.js"
import * as Target from "../Target.js"
import type * as Fault from "./Fault.js"
import * as TestTarget from "./TestTarget.js"
import * as VirtualTime from "./VirtualTime.js"

/**
 * The simulation did not finish within its horizon of virtual time (`"Horizon"`), or nothing
 * was left to run but it had not finished (`"Stalled"`: a fiber waits on something that is
 * neither time nor a TestTarget).
 *
 * @since 0.1.0
 * @category errors
 */
export class SimulationError extends Data.TaggedError("SimulationError")<{
  readonly reason: "Horizon" | "Stalled"
  readonly message: string
}> {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E extends Event.Any> {
  /** The routes; every target they name is built over the simulated client. */
  readonly router: Router.Router<E, any>
  /**
   * The fake APIs: TestTargets, or a record of name → faults (fresh TestTargets are made).
   * Targets reach them at `http://<name>.test` ({@link TestTarget.urlOf}).
   */
  readonly testTargets: ReadonlyArray<TestTarget.TestTarget> | Readonly<Record<string, Fault.Faults | undefined>>
  /** The events to send, in this order. */
  readonly events: Iterable<E>
  /** Fan-out mode of every send. Default `"settled"`. */
  readonly mode?: Fanout.Mode
  /** Sends in flight at once. Default `"unbounded"` (all events at time 0). */
  readonly concurrency?: number | "unbounded"
  /** The fan-out's grace period for background work at the end. Default 5 seconds. */
  readonly gracePeriod?: Duration.DurationInput
  /** Most virtual time the simulation may take. Default 1 hour. */
  readonly horizon?: Duration.DurationInput
  /** Seed of the `Random` service inside the simulation (retry jitter). Default 0. */
  readonly seed?: number
  /**
   * Record spans (and so send `traceparent` headers), as in production. Default true; false
   * makes a run about a third cheaper when a property does not look at tracing.
   */
  readonly tracing?: boolean
}

/**
 * One send and its end state.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sent<E extends Event.Any> {
  readonly event: E
  readonly mode: Fanout.Mode
  /** Every primary target's outcome (in `all` mode after a failure: from `FanoutFailed.outcomes`). */
  readonly outcomes: Readonly<Record<string, Outcome.Outcome>>
  /** Shadow targets the event was mirrored to. */
  readonly shadow: ReadonlyArray<string>
  /** `FanoutFailed` (mode `all`) or `NoRouteError`; undefined when the send succeeded. */
  readonly error: Fanout.FanoutFailed | Fanout.NoRouteError | undefined
  /** Virtual time when the send started and when its outcomes were known (ms). */
  readonly startedAt: number
  readonly finishedAt: number
}

/**
 * A circuit-breaker state as seen by a subscriber (`at` may lag the change; an `Open` state
 * carries its exact `openedAt` and `until`).
 *
 * @since 0.1.0
 * @category models
 */
export interface BreakerChange {
  readonly at: number
  readonly state: CircuitBreaker.State
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Simulation<E extends Event.Any> {
  readonly sends: ReadonlyArray<Sent<E>>
  /** The TestTargets by name (their `ledger`, `stats` and `requestsFor`). */
  readonly testTargets: Readonly<Record<string, TestTarget.TestTarget>>
  /** Every request every TestTarget received, in global arrival order. */
  readonly ledger: ReadonlyArray<TestTarget.Received>
  /** Each routed target's breaker states, from the initial one. */
  readonly breakers: Readonly<Record<string, ReadonlyArray<BreakerChange>>>
  /** Each routed target's effective policy. */
  readonly policies: Readonly<Record<string, Policy.Policy>>
  readonly startedAt: number
  /** When everything (background and shadow deliveries included) was over. */
  readonly finishedAt: number
}

/**
 * The idempotency key the core sends for an event at a target: `<event id>:<target>`.
 *
 * @since 0.1.0
 * @category getters
 */
export const keyOf = (event: Event.Any, target: string): string => `${event.id}:${target}`

/**
 * The periods a breaker was open: `[openedAt, until)` for each `Open` state, in order.
 *
 * @since 0.1.0
 * @category getters
 */
export const openWindows = (
  changes: ReadonlyArray<BreakerChange>
): ReadonlyArray<{ readonly openedAt: number; readonly until: number }> => {
  const windows: Array<{ readonly openedAt: number; readonly until: number }> = []
  for (const { state } of changes) {
    if (state._tag !== "Open") continue
    const last = windows[windows.length - 1]
    if (last !== undefined && last.openedAt === state.openedAt && last.until === state.until) continue
    windows.push({ openedAt: state.openedAt, until: state.until })
  }
  return windows
}

const isTestClock = (clock: Clock.Clock): clock is TestClock.TestClock =>
  typeof (clock as Partial<TestClock.TestClock>).adjust === "function" &&
  (clock as Partial<TestClock.TestClock>).sleeps !== undefined

/**
 * Runs a fan-out against fake APIs, deterministically, in virtual time. Each routed target is
 * built from its own layer over the simulated client (fresh breakers, bulkheads and limiters),
 * the events are sent (concurrently by default) in the given mode, background and shadow
 * deliveries are awaited (up to the grace period), and the result holds every send's outcomes,
 * every TestTarget's ledger and every breaker's state changes.
 *
 * Time: the simulation has its own clock, starting at the current `Clock` time. It jumps from
 * one timer to the next as soon as every simulated fiber waits (the semantics of
 * `TestClock.adjust`, without its real-time settling pauses, so a run takes milliseconds).
 * Under `TestClock` (`it.effect`), the TestClock is moved forward by the simulated time at the
 * end; under the live clock no real time passes. Jitter draws from a `Random` seeded by `seed`.
 *
 * @example
 * ```ts
 * const sim = yield* simulate({
 *   router,
 *   testTargets: { inventory: Fault.script([Fault.unavailable(), Fault.ok()]), notify: undefined },
 *   events: [event],
 *   mode: "all"
 * })
 * assert.strictEqual(sim.sends[0]!.outcomes.inventory?._tag, "Delivered")
 * ```
 *
 * @since 0.1.0
 * @category simulation
 */
export const simulate = <E extends Event.Any>(options: Options<E>): Effect.Effect<Simulation<E>, SimulationError> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const fakes: ReadonlyArray<TestTarget.TestTarget> = Array.isArray(options.testTargets)
      ? options.testTargets as ReadonlyArray<TestTarget.TestTarget>
      : Object.entries(options.testTargets as Record<string, Fault.Faults | undefined>).map(([name, faults]) =>
        TestTarget.make(name, faults === undefined ? {} : { faults })
      )
    const byName: Record<string, TestTarget.TestTarget> = {}
    for (const fake of fakes) byName[fake.name] = fake
    const horizon = Duration.toMillis(Duration.decode(options.horizon ?? "1 hour"))
    const mode = options.mode ?? "settled"
    const events = Array.from(options.events)
    const router = options.router
    const targets = router.targets

    const run = Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const layers = targets.map((t) => t.layer as Layer.Layer<unknown>)
      const context = yield* Layer.build(
        (layers.length === 0 ? Layer.empty : Layer.mergeAll(...(layers as [Layer.Layer<unknown>]))).pipe(
          Layer.provide(TestTarget.layer(...fakes))
        )
      )
      const breakers: Record<string, Array<BreakerChange>> = {}
      const policies: Record<string, Policy.Policy> = {}
      const runtimes: Array<Target.Runtime<unknown>> = []
      for (const target of targets) {
        const runtime = Context.unsafeGet(context, target.tag) as Target.Runtime<unknown>
        runtimes.push(runtime)
        policies[target.name] = runtime.policy
        const log: Array<BreakerChange> = (breakers[target.name] = [])
        const subscribed = yield* Deferred.make<void>()
        yield* Effect.forkScoped(
          Stream.runForEach(
            runtime.breaker.changes,
            (state) =>
              Effect.flatMap(
                Clock.currentTimeMillis,
                (at) =>
                  Effect.sync(() => log.push({ at, state })).pipe(
                    Effect.zipRight(Deferred.succeed(subscribed, undefined))
                  )
              )
          )
        )
        yield* Deferred.await(subscribed)
      }

      const sends = yield* Effect.scoped(
        Effect.gen(function*() {
          const sender = yield* Fanout.make(
            router,
            options.gracePeriod === undefined ? {} : {
              gracePeriod: options.gracePeriod
            }
          ).pipe(Effect.provide(context as Context.Context<never>)) as Effect.Effect<
            Fanout.Sender<E>,
            never,
            Scope.Scope
          >
          return yield* Effect.forEach(events, (event) => sendOne(sender, event, mode), {
            concurrency: options.concurrency ?? "unbounded"
          })
        })
      )
      // Let the breaker subscribers catch up with the last state of each breaker.
      for (let i = 0; i < runtimes.length; i++) {
        const runtime = runtimes[i]!
        const log = breakers[runtime.name]!
        for (let spins = 0; spins < 1000; spins++) {
          const current = yield* runtime.breaker.state
          if (log.length > 0 && log[log.length - 1]!.state === current) break
          yield* Effect.yieldNow()
        }
      }
      const finishedAt = yield* Clock.currentTimeMillis
      return {
        sends,
        breakers,
        policies,
        startedAt,
        finishedAt
      }
    }).pipe(Effect.scoped)

    const start = clock.unsafeCurrentTimeMillis()
    const time = VirtualTime.make(start)
    const fiber = yield* Effect.fork(
      run.pipe(
        Effect.withTracerEnabled(options.tracing ?? true),
        Effect.withRandom(Random.make(options.seed ?? 0)),
        Effect.withClock(time.clock),
        Effect.withScheduler(time.scheduler)
      )
    )
    const exit = yield* time.drive(fiber, horizon)
    if (!VirtualTime.isExit(exit)) {
      // Let the interruption run its finalizers in virtual time too, then give up.
      yield* Fiber.interruptFork(fiber)
      yield* time.drive(fiber, horizon * 2)
      return yield* new SimulationError({
        reason: exit,
        message: exit === "Horizon"
          ? `simulation did not finish within its horizon of ${horizon} ms of virtual time`
          : `simulation stalled after ${
            time.now() - start
          } ms of virtual time: a fiber waits on something that is neither time nor a TestTarget`
      })
    }
    if (isTestClock(clock)) yield* clock.adjust(time.now() - start)
    const result = yield* exit
    const ledger = fakes.flatMap((fake) => fake.ledger).sort((a, b) => a.order - b.order)
    const simulation: Simulation<E> = { ...result, testTargets: byName, ledger }
    return simulation
  })

const sendOne = <E extends Event.Any>(sender: Fanout.Sender<E>, event: E, mode: Fanout.Mode): Effect.Effect<Sent<E>> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    let outcomes: Readonly<Record<string, Outcome.Outcome>> = {}
    let shadow: ReadonlyArray<string> = []
    let error: Fanout.FanoutFailed | Fanout.NoRouteError | undefined
    if (mode === "all") {
      const result = yield* Effect.either(sender.send(event, { mode: "all" }))
      if (result._tag === "Right") {
        outcomes = result.right.outcomes
        shadow = result.right.shadow
      } else {
        error = result.left
        if (result.left._tag === "FanoutFailed") outcomes = result.left.outcomes
      }
    } else if (mode === "background") {
      const result = yield* Effect.either(sender.send(event, { mode: "background" }))
      if (result._tag === "Right") {
        const settled = yield* result.right.await
        outcomes = settled.outcomes
        shadow = settled.shadow
      } else {
        error = result.left
      }
    } else {
      const result = yield* Effect.either(sender.send(event))
      if (result._tag === "Right") {
        outcomes = result.right.outcomes
        shadow = result.right.shadow
      } else {
        error = result.left
      }
    }
    const finishedAt = yield* Clock.currentTimeMillis
    const sent: Sent<E> = { event, mode, outcomes, shadow, error, startedAt, finishedAt }
    return sent
  })

/**
 * @since 0.1.0
 * @category models
 */
export interface WebhookOptions {
  readonly policy?: Policy.Input
  /** Give the target a compensation: `DELETE http://<name>.test/events/<id>`. */
  readonly compensate?: boolean
}

/**
 * A ready-made target for a TestTarget of the same name: `POST http://<name>.test/events/<id>`
 * with the event's payload as JSON (and, with `compensate`, `DELETE` of the same path as its
 * compensation). Handy for property tests of routing and policies.
 *
 * @since 0.1.0
 * @category constructors
 */
export const webhook = <const Name extends string>(
  name: Name,
  options: WebhookOptions = {}
): Target.Target<Name, unknown, unknown> => {
  const base = TestTarget.urlOf(name)
  return Target.make<Name, unknown, unknown>(name, {
    request: (event) =>
      HttpClientRequest.post(`${base}/events/${encodeURIComponent(event.id)}`).pipe(
        HttpClientRequest.bodyUnsafeJson(event.payload ?? null)
      ),
    ...(options.policy !== undefined ? { policy: options.policy } : {}),
    ...(options.compensate === true
      ? { compensate: ({ event }) => HttpClientRequest.del(`${base}/events/${encodeURIComponent(event.id)}`) }
      : {})
  })
}
