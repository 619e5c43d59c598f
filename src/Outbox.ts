/**
 * The durable way to send: `enqueue(event)` writes the event and one delivery per routed
 * target to the `DeliveryStore` in one transaction and returns; workers deliver later
 * through the very same target and policy code as direct mode. Plus what operators need:
 * status with attempt history, dead letters, replay and purge.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, Either, Layer, Option } from "effect"
import * as TargetError from "./TargetError.js"
import type * as Event from "./Event.js"
import { NoRouteError } from "./Fanout.js"
import * as Pipeline from "./Pipeline.js"
import type * as Router from "./Router.js"
import * as Store from "./Store.js"
import type * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Enqueues an event for every target its routes name (shadow targets included). Idempotent on the
   * event id: the same id with the same content (type, key, payload) again answers `created: false`;
   * with other content it fails with `Store.ConflictError` and stores nothing. With
   * `options.availableAt` (epoch ms; later delivery) no delivery is due before that instant.
   */
  readonly enqueue: (
    event: Event.Any,
    options?: EnqueueOptions
  ) => Effect.Effect<Store.Enqueued, NoRouteError | Store.StoreError | Store.ConflictError>
  readonly status: (eventId: string) => Effect.Effect<Option.Option<Store.EventStatus>, Store.StoreError>
  readonly deadLetters: (query: Store.DeadLetterQuery) => Effect.Effect<Store.DeadLetterPage, Store.StoreError>
  readonly replay: (deliveryId: string) => Effect.Effect<boolean, Store.StoreError>
  readonly replayMany: (filter: Store.DeadLetterFilter) => Effect.Effect<number, Store.StoreError>
  readonly purge: (selection: string | Store.DeadLetterFilter) => Effect.Effect<number, Store.StoreError>
  readonly stats: Effect.Effect<Store.Stats, Store.StoreError>
  /** {@link Store.DeliveryStore.gauges}: depth and dead letters, cheap at any history size. */
  readonly gauges: Effect.Effect<Store.Gauges, Store.StoreError>
  readonly router: Router.Router<Event.Any, Target.Any>
  /**
   * The aggregate of a settled event, computed from its stored answers: `None` when no aggregate is
   * defined for its type (a pipeline's `aggregate`, or the `aggregates` option) or a delivery is not
   * delivered. A throwing aggregate function fails with a `PermanentError` (target `"aggregate"`).
   */
  readonly aggregate: (status: Store.EventStatus) => Effect.Effect<Option.Option<unknown>, TargetError.PermanentError>
}

/**
 * What {@link Service.enqueue} takes besides the event.
 *
 * @since 0.1.0
 * @category models
 */
export interface EnqueueOptions {
  /**
   * Later delivery: no delivery is attempted before this instant (epoch ms). The deliveries are
   * stored at once with it as their due time, so the schedule survives restarts; a time not after
   * now is due now. No horizon is enforced here (the server bounds it: `server.maxDelay`).
   */
  readonly availableAt?: number | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Outbox extends Context.Tag("fanout/Outbox")<Outbox, Service>() {}

/**
 * The targets an event is enqueued for, or `NoRouteError`.
 *
 * @since 0.1.0
 * @category routing
 */
export const targetsOf = (
  router: Router.Router<any, any>,
  event: Event.Any
): Effect.Effect<ReadonlyArray<string>, NoRouteError> =>
  Effect.suspend(() => {
    if (!router.hasRoute(event.type)) return Effect.fail(new NoRouteError({ eventId: event.id, type: event.type }))
    const { shadow, targets } = router.resolve(event)
    return Effect.succeed([...targets, ...shadow].map((t) => t.name))
  })

/**
 * Durable pipelines, for {@link make}.
 *
 * - `after`: target → the targets it runs after, whenever both are routed for an event (what a
 *   JSON configuration's `"after"` gives). A dependent receives `{ event, inputs }`
 *   ({@link Pipeline.defaultDependentEvent}). Every input of a routed dependent must be routed too,
 *   else the enqueue fails with an `InvalidInput` `StoreError`.
 * - `pipelines`: typed pipelines by event type; an event of such a type is enqueued with the
 *   pipeline's whole graph (enrich stages and steps, {@link Pipeline.durablePlan}), not its routes.
 *   Give the same pipelines to the worker so it builds each step's input the same way.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly after?: Store.Dependencies | undefined
  readonly pipelines?: ReadonlyArray<Pipeline.Any> | undefined
  /**
   * One answer per event type, computed from every delivery's answer once all are delivered (what
   * the server's `?wait=all` returns). Events of these types are enqueued with `keepAnswers`.
   */
  readonly aggregates?: Readonly<Record<string, AggregateFunction>> | undefined
}

/**
 * An aggregate of the configuration: the event (its envelope, as JSON) and each target's answer
 * (parsed JSON, or text) by name.
 *
 * @since 0.1.0
 * @category models
 */
export type AggregateFunction = (context: {
  readonly event: Pipeline.EncodedEvent
  readonly responses: Readonly<Record<string, unknown>>
}) => unknown

/**
 * The typed pipelines given to {@link make} cannot be told apart by event type: one has no event
 * type, or two have the same.
 *
 * @since 0.1.0
 * @category errors
 */
export class PipelinesError extends Data.TaggedError("PipelinesError")<{ readonly message: string }> {}

/**
 * Why {@link make} cannot take its typed pipelines: {@link PipelinesError}, or
 * {@link Pipeline.NotDurable} for a pipeline with an effect enrich stage.
 *
 * @since 0.1.0
 * @category errors
 */
export type PlanError = PipelinesError | Pipeline.NotDurable

interface Planned {
  readonly pipeline: Pipeline.Any
  readonly plan: Pipeline.DurablePlan
}

/**
 * Typed pipelines by event type, each with its durable plan, or the {@link PlanError}.
 *
 * @internal
 */
export const plans = (pipelines: ReadonlyArray<Pipeline.Any>): Either.Either<ReadonlyMap<string, Planned>, PlanError> => {
  const out = new Map<string, Planned>()
  for (const pipeline of pipelines) {
    const type = pipeline.graph.event
    if (type === undefined) {
      return Either.left(
        new PipelinesError({ message: "Outbox: a durable pipeline needs an event type (Pipeline.make(EventDefinition))" })
      )
    }
    if (out.has(type)) return Either.left(new PipelinesError({ message: `Outbox: two pipelines for event type ${type}` }))
    const plan = Pipeline.durablePlan(pipeline)
    if (Either.isLeft(plan)) return Either.left(plan.left)
    out.set(type, { pipeline, plan: plan.right })
  }
  return Either.right(out)
}

/**
 * The outbox over a router. With typed `pipelines` it fails with a {@link PlanError} when they
 * cannot be enqueued durably (checked when the outbox is built); without, it cannot fail.
 *
 * @since 0.1.0
 * @category constructors
 */
export function make<E extends Event.Any>(
  router: Router.Router<E, any>,
  options?: Options & { readonly pipelines?: undefined }
): Effect.Effect<Service, never, Store.DeliveryStore>
export function make<E extends Event.Any>(
  router: Router.Router<E, any>,
  options?: Options
): Effect.Effect<Service, PlanError, Store.DeliveryStore>
export function make<E extends Event.Any>(
  router: Router.Router<E, any>,
  options: Options = {}
): Effect.Effect<Service, PlanError, Store.DeliveryStore> {
  return options.pipelines === undefined
    ? build(router, options, new Map())
    : Effect.flatMap(plans(options.pipelines), (byType) => build(router, options, byType))
}

const build = <E extends Event.Any>(
  router: Router.Router<E, any>,
  options: Options,
  byType: ReadonlyMap<string, Planned>
): Effect.Effect<Service, never, Store.DeliveryStore> =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const after = options.after
    const aggregates = new Map(Object.entries(options.aggregates ?? {}))
    const place = (
      event: Event.Any,
      availableAt: number | undefined
    ): Effect.Effect<Store.Enqueued, NoRouteError | Store.StoreError | Store.ConflictError> => {
      const at = availableAt !== undefined ? { availableAt } : {}
      const typed = byType.get(event.type)
      if (typed !== undefined) {
        const { pipeline, plan } = typed
        const keepAnswers = pipeline.graph.aggregate
        return store.enqueue(event, plan.targets, { after: plan.after, ...(keepAnswers ? { keepAnswers } : {}), ...at })
      }
      return Effect.flatMap(targetsOf(router, event), (targets) => {
        const keepAnswers = aggregates.has(event.type)
        if (after === undefined && !keepAnswers) {
          return availableAt === undefined ? store.enqueue(event, targets) : store.enqueue(event, targets, at)
        }
        const routed: Record<string, ReadonlyArray<string>> = {}
        for (const target of targets) {
          const inputs = after?.[target]
          if (inputs !== undefined && inputs.length > 0) routed[target] = inputs
        }
        return store.enqueue(event, targets, { after: routed, ...(keepAnswers ? { keepAnswers } : {}), ...at })
      })
    }
    const aggregate = (status: Store.EventStatus): Effect.Effect<Option.Option<unknown>, TargetError.PermanentError> => {
      const typed = byType.get(status.event.type)
      if (typed !== undefined) return Pipeline.durableAggregate(typed.pipeline, status)
      const f = aggregates.get(status.event.type)
      if (f === undefined || status.deliveries.some((d) => d.status !== "delivered")) return Effect.succeed(Option.none())
      return Effect.gen(function*() {
        const responses: Record<string, unknown> = {}
        for (const d of status.deliveries) responses[d.target] = yield* Pipeline.parseStored("aggregate", d.target, d.response)
        const context = { event: Pipeline.encodeEvent(status.event), responses }
        return Option.some(
          yield* Effect.try({
            try: () => f(context),
            catch: (defect) =>
              new TargetError.PermanentError({
                target: "aggregate",
                reason: "Transform",
                message: `aggregate for ${status.event.type} failed: ${defect instanceof Error ? defect.message : String(defect)}`
              })
          })
        )
      })
    }
    return {
      enqueue: (event, options) =>
        place(event, options?.availableAt).pipe(
          Effect.withSpan("fanout.enqueue", {
            attributes: { "fanout.event.id": event.id, "fanout.event.type": event.type },
            captureStackTrace: false
          })
        ),
      status: store.status,
      deadLetters: store.deadLetters,
      replay: store.replay,
      replayMany: store.replayMany,
      purge: store.purge,
      stats: store.stats,
      gauges: store.gauges,
      router,
      aggregate
    } satisfies Service
  })

/**
 * The {@link Outbox} service ({@link make}: without typed `pipelines` it cannot fail).
 *
 * @since 0.1.0
 * @category layers
 */
export function layer<E extends Event.Any>(
  router: Router.Router<E, any>,
  options?: Options & { readonly pipelines?: undefined }
): Layer.Layer<Outbox, never, Store.DeliveryStore>
export function layer<E extends Event.Any>(
  router: Router.Router<E, any>,
  options?: Options
): Layer.Layer<Outbox, PlanError, Store.DeliveryStore>
export function layer<E extends Event.Any>(
  router: Router.Router<E, any>,
  options: Options = {}
): Layer.Layer<Outbox, PlanError, Store.DeliveryStore> {
  return Layer.effect(Outbox, make(router, options))
}
