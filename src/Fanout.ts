/**
 * The fan-out: `send(event, { mode })` delivers an event to every target its routes name,
 * concurrently, each under its own policy.
 *
 * - `all`: every target must succeed. On a failure the others are interrupted; those that
 *   already succeeded and define `compensate` are compensated in reverse order (a saga).
 * - `settled`: every target is tried; the result is a typed outcome per target.
 * - `background`: returns at once; delivery goes on in a fiber owned by the `Fanout`
 *   service's scope, which lets it finish (up to a grace period) or interrupts it on close.
 *
 * @since 0.1.0
 */
import { Clock, Context, Data, Duration, Effect, Exit, Fiber, FiberRef, FiberSet, Layer } from "effect"
import type { Scope } from "effect"
import type * as Event from "./Event.js"
import type * as Outcome from "./Outcome.js"
import * as Registry from "./Registry.js"
import type * as Router from "./Router.js"
import type * as Target from "./Target.js"
import type { DeliveryError } from "./TargetError.js"
import { onIoScheduler } from "./internal/scheduler.js"
import { spanTrace } from "./internal/spanTrace.js"

/**
 * No route matches the event's type.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoRouteError extends Data.TaggedError("NoRouteError")<{
  readonly eventId: string
  readonly type: string
}> {
  override get message() {
    return `no route for event type ${JSON.stringify(this.type)} (event ${this.eventId})`
  }
}

/**
 * In `all` mode: a target failed. `target` and `error` name the first failure; `outcomes`
 * has every target's end state (delivered, failed, cancelled or compensated).
 *
 * @since 0.1.0
 * @category errors
 */
export class FanoutFailed extends Data.TaggedError("FanoutFailed")<{
  readonly eventId: string
  readonly target: string
  readonly error: DeliveryError
  readonly outcomes: Readonly<Record<string, Outcome.Outcome>>
}> {
  override get message() {
    return `event ${this.eventId}: ${this.target} failed: ${this.error.message}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Settled {
  readonly eventId: string
  readonly type: string
  readonly outcomes: Readonly<Record<string, Outcome.Delivered | Outcome.Failed | Outcome.Skipped>>
  /** Shadow targets the event was mirrored to (delivered in the background). */
  readonly shadow: ReadonlyArray<string>
  readonly durationMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface AllDelivered {
  readonly eventId: string
  readonly type: string
  readonly outcomes: Readonly<Record<string, Outcome.Delivered>>
  readonly shadow: ReadonlyArray<string>
  readonly durationMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Background {
  readonly eventId: string
  readonly targets: ReadonlyArray<string>
  readonly shadow: ReadonlyArray<string>
  /** Waits for the background delivery's per-target outcomes. */
  readonly await: Effect.Effect<Settled>
}

/**
 * @since 0.1.0
 * @category models
 */
export type Mode = "all" | "settled" | "background"

/**
 * @since 0.1.0
 * @category models
 */
export interface Sender<E extends Event.Any> {
  readonly send: {
    (event: E, options: { readonly mode: "all" }): Effect.Effect<AllDelivered, FanoutFailed | NoRouteError>
    (event: E, options: { readonly mode: "background" }): Effect.Effect<Background, NoRouteError>
    (event: E, options?: { readonly mode?: "settled" }): Effect.Effect<Settled, NoRouteError>
  }
  /** The run-time of every routed target, by name (policy, breaker, bulkhead, limiter). */
  readonly targets: ReadonlyMap<string, Target.Runtime<unknown>>
  readonly router: Router.Router<E, any>
}

/**
 * The fan-out service of an application whose events are untyped (the server's). Typed
 * applications can build their own tag over `Sender<Router.EventsOf<typeof router>>` with
 * {@link make}.
 *
 * @since 0.1.0
 * @category tags
 */
export class Fanout extends Context.Tag("fanout/Fanout")<Fanout, Sender<Event.Any>>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** On scope close, how long background deliveries may run before they are interrupted. Default 5 seconds. */
  readonly gracePeriod?: Duration.DurationInput
}

/**
 * Runs `effects` at once and collects their results in order: the first on the caller's fiber,
 * each other one in a fiber of its own (one fiber per delivery, none for the first). The same
 * as `Effect.all(effects, { concurrency: "unbounded" })` for effects that cannot fail, at a
 * fraction of its cost: that one builds a scope, deferreds and a queue per call and joins each
 * child's fiber refs back (measured here: about 6× the CPU of this for two effects). On
 * interruption (or a defect), the forked ones still running are interrupted and awaited.
 */
const concurrently = <A>(effects: ReadonlyArray<Effect.Effect<A>>): Effect.Effect<Array<A>> => {
  const [first, ...rest] = effects
  if (first === undefined) return Effect.succeed([])
  if (rest.length === 0) return Effect.map(first, (a) => [a])
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forEach(rest, (effect) => Effect.fork(restore(effect))), (forks) =>
      restore(
        Effect.flatMap(first, (head) =>
          Effect.map(Effect.forEach(forks, (fiber) => Effect.flatten(fiber.await)), (tail) => [head, ...tail]))
      ).pipe(Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Fiber.interruptAll(forks))))
  )
}

/**
 * Builds the fan-out for a router. Requires every routed target's service, so a route
 * naming a target the application does not provide fails type-checking.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <E extends Event.Any, T extends Target.Any>(
  router: Router.Router<E, T>,
  options?: Options
) => Effect.Effect<Sender<E>, never, Target.Requirements<T> | Scope.Scope> = (router, options) => makeAny(router, options)

/** {@link make}; its sender takes any event (one without a route fails with `NoRouteError`). */
const makeAny = <T extends Target.Any>(
  router: Router.Router<Event.Any, T>,
  options: Options = {}
): Effect.Effect<Sender<Event.Any>, never, Target.Requirements<T> | Scope.Scope> =>
  Effect.gen(function*() {
    // `Router.targets` is typed `Target.Any`; they are the router's `T` (every target its routes name).
    const runtimes = yield* Registry.make(router.targets as ReadonlyArray<T>)
    const background = yield* FiberSet.make<unknown, never>()
    const grace = Duration.decode(options.gracePeriod ?? "5 seconds")
    // Finalizers are uninterruptible: without `interruptible`, the timeout could not cut the wait
    // short and the grace period would never end before every background delivery did.
    yield* Effect.addFinalizer(() =>
      Effect.interruptible(FiberSet.awaitEmpty(background)).pipe(Effect.timeout(grace), Effect.ignore)
    )

    const runtimeOf = (target: Target.Any) => runtimes.get(target.name)!

    const resolve = (event: Event.Any) =>
      Effect.suspend(() => {
        if (!router.hasRoute(event.type)) return Effect.fail(new NoRouteError({ eventId: event.id, type: event.type }))
        return Effect.succeed(router.resolve(event))
      })

    const mirror = (event: Event.Any, shadow: ReadonlyArray<Target.Any>) =>
      shadow.length === 0
        ? Effect.void
        : FiberSet.run(
          background,
          Effect.forEach(shadow, (t) => Effect.either(runtimeOf(t).deliver(event, { role: "shadow" })), {
            concurrency: "unbounded",
            discard: true
          }).pipe(Effect.withSpan("fanout.shadow", { attributes: { "fanout.event.id": event.id } }))
        ).pipe(Effect.asVoid)

    const settle = (
      event: Event.Any,
      targets: ReadonlyArray<Target.Any>
    ): Effect.Effect<Record<string, Outcome.Delivered | Outcome.Failed | Outcome.Skipped>> =>
      Effect.map(
        concurrently(targets.map((t) => Effect.merge(runtimeOf(t).deliver(event)))),
        (outcomes) => {
          const record: Record<string, Outcome.Delivered | Outcome.Failed | Outcome.Skipped> = {}
          for (let i = 0; i < targets.length; i++) record[targets[i]!.name] = outcomes[i]!
          return record
        }
      )

    // The hot path of `send`: plain combinators rather than a generator.
    const settleResolved = (event: Event.Any, { shadow, targets }: Router.Resolution): Effect.Effect<Settled> =>
      Effect.clockWith((clock) => {
        const start = clock.unsafeCurrentTimeMillis()
        const settled = Effect.map(settle(event, targets), (outcomes): Settled => ({
          eventId: event.id,
          type: event.type,
          outcomes,
          shadow: shadow.map((t) => t.name),
          durationMs: clock.unsafeCurrentTimeMillis() - start
        }))
        return shadow.length === 0 ? settled : Effect.zipRight(mirror(event, shadow), settled)
      })

    const sendSettled = (event: Event.Any): Effect.Effect<Settled, NoRouteError> =>
      Effect.flatMap(resolve(event), (resolution) => settleResolved(event, resolution))

    const sendAll = (event: Event.Any): Effect.Effect<AllDelivered, FanoutFailed | NoRouteError> =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        const { shadow, targets } = yield* resolve(event)
        yield* mirror(event, shadow)
        const outcomes: Record<string, Outcome.Outcome> = {}
        // Targets with a compensation, in the order they succeeded.
        const succeeded: Array<{ readonly runtime: Target.Runtime<unknown>; readonly delivered: Outcome.Delivered }> = []
        const result = yield* Effect.all(
          targets.map((t) => {
            const runtime = runtimeOf(t)
            return runtime.deliver(event, {
              finishInFlight: runtime.hasCompensation,
              onDelivered: (delivered) =>
                Effect.sync(() => {
                  outcomes[t.name] = delivered
                  if (runtime.hasCompensation) succeeded.push({ runtime, delivered })
                })
            }).pipe(
              Effect.tapError((failure) => Effect.sync(() => (outcomes[t.name] = failure))),
              Effect.onInterrupt(() =>
                Effect.sync(() => {
                  outcomes[t.name] ??= { _tag: "Cancelled", target: t.name }
                })
              )
            )
          }),
          { concurrency: "unbounded", mode: "default", discard: true }
        ).pipe(Effect.either)
        if (result._tag === "Right") {
          return {
            eventId: event.id,
            type: event.type,
            outcomes: outcomes as Record<string, Outcome.Delivered>,
            shadow: shadow.map((t) => t.name),
            durationMs: (yield* Clock.currentTimeMillis) - start
          }
        }
        const failure = result.left
        // The saga's undo runs to the end even if the caller is interrupted meanwhile. It runs in
        // a fiber of its own, interruptible inside (not under `Effect.uninterruptible`): there,
        // the per-attempt timeouts of the compensations could not interrupt an attempt that never
        // answers, and the send would hang.
        const undo = yield* Effect.forkDaemon(Effect.interruptible(Effect.forEach(succeeded.reverse(), ({ delivered, runtime }) =>
          Effect.map(Effect.merge(runtime.compensate(event, delivered.response)), (compensation) => {
            outcomes[runtime.name] = { _tag: "Compensated", target: runtime.name, delivered, compensation }
          }), { discard: true })))
        yield* Effect.onInterrupt(Fiber.join(undo), () => Fiber.await(undo))
        return yield* new FanoutFailed({ eventId: event.id, target: failure.target, error: failure.error, outcomes })
      })

    const sendBackground = (event: Event.Any): Effect.Effect<Background, NoRouteError> =>
      Effect.gen(function*() {
        const resolution = yield* resolve(event)
        const fiber = yield* FiberSet.run(background, settleResolved(event, resolution))
        return {
          eventId: event.id,
          targets: resolution.targets.map((t) => t.name),
          shadow: resolution.shadow.map((t) => t.name),
          await: Fiber.join(fiber)
        }
      })

    // The span's stack line, taken once (`Effect.withSpan` would create an `Error` per send).
    const sendTrace = spanTrace()
    function send(event: Event.Any, sendOptions: { readonly mode: "all" }): Effect.Effect<AllDelivered, FanoutFailed | NoRouteError>
    function send(event: Event.Any, sendOptions: { readonly mode: "background" }): Effect.Effect<Background, NoRouteError>
    function send(event: Event.Any, sendOptions?: { readonly mode?: "settled" }): Effect.Effect<Settled, NoRouteError>
    function send(
      event: Event.Any,
      sendOptions?: { readonly mode?: Mode }
    ): Effect.Effect<AllDelivered | Background | Settled, FanoutFailed | NoRouteError> {
      const mode = sendOptions?.mode ?? "settled"
      const run: Effect.Effect<AllDelivered | Background | Settled, FanoutFailed | NoRouteError> = mode === "all" ? sendAll(event) : mode === "background" ? sendBackground(event) : sendSettled(event)
      // No span when tracing is off; no log annotation around the fan-out (a fiber's annotations
      // are copied at every fork below it): Fanout's own log lines name their event.
      // The deliveries run on the I/O-friendly scheduler (see internal/scheduler).
      return onIoScheduler(FiberRef.getWith(FiberRef.currentTracerEnabled, (traced) =>
        traced
          ? Effect.withSpan(run, "fanout.send", {
            attributes: { "fanout.event.id": event.id, "fanout.event.type": event.type, "fanout.mode": mode },
            captureStackTrace: sendTrace
          })
          : run))
    }

    const sender: Sender<Event.Any> = { send, targets: runtimes, router }
    return sender
  })

/**
 * The {@link Fanout} service for a router: requires each routed target's layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E extends Event.Any, T extends Target.Any>(
  router: Router.Router<E, T>,
  options?: Options
): Layer.Layer<Fanout, never, Target.Requirements<T>> =>
  Layer.scoped(Fanout, makeAny(router, options))

/**
 * Sends through the {@link Fanout} service.
 *
 * @since 0.1.0
 * @category accessors
 */
export function send(event: Event.Any, options: { readonly mode: "all" }): Effect.Effect<AllDelivered, FanoutFailed | NoRouteError, Fanout>
export function send(event: Event.Any, options: { readonly mode: "background" }): Effect.Effect<Background, NoRouteError, Fanout>
export function send(event: Event.Any, options?: { readonly mode?: "settled" }): Effect.Effect<Settled, NoRouteError, Fanout>
export function send(
  event: Event.Any,
  options?: { readonly mode?: Mode }
): Effect.Effect<AllDelivered | Background | Settled, FanoutFailed | NoRouteError, Fanout> {
  return Effect.flatMap(Fanout, (fanout) => sendWith(fanout, event, options))
}

/** One call of the overloaded `send` for any mode. */
const sendWith = (
  fanout: Sender<Event.Any>,
  event: Event.Any,
  options: { readonly mode?: Mode } | undefined
): Effect.Effect<AllDelivered | Background | Settled, FanoutFailed | NoRouteError> => {
  const mode = options?.mode
  return mode === "all"
    ? fanout.send(event, allMode)
    : mode === "background"
    ? fanout.send(event, backgroundMode)
    : fanout.send(event)
}

const allMode = { mode: "all" } as const
const backgroundMode = { mode: "background" } as const
