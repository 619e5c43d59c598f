/**
 * The durable way to send: `enqueue(event)` writes the event and one delivery per routed
 * target to the `DeliveryStore` in one transaction and returns; workers deliver later
 * through the very same target and policy code as direct mode. Plus what operators need:
 * status with attempt history, dead letters, replay and purge.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import type { Option } from "effect"
import type * as Event from "./Event.js"
import { NoRouteError } from "./Fanout.js"
import type * as Router from "./Router.js"
import * as Store from "./Store.js"
import type * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Enqueues an event for every target its routes name (shadow targets included). Idempotent on the event id. */
  readonly enqueue: (event: Event.Any) => Effect.Effect<Store.Enqueued, NoRouteError | Store.StoreError>
  readonly status: (eventId: string) => Effect.Effect<Option.Option<Store.EventStatus>, Store.StoreError>
  readonly deadLetters: (query: Store.DeadLetterQuery) => Effect.Effect<Store.DeadLetterPage, Store.StoreError>
  readonly replay: (deliveryId: string) => Effect.Effect<boolean, Store.StoreError>
  readonly replayMany: (filter: Store.DeadLetterFilter) => Effect.Effect<number, Store.StoreError>
  readonly purge: (selection: string | Store.DeadLetterFilter) => Effect.Effect<number, Store.StoreError>
  readonly stats: Effect.Effect<Store.Stats, Store.StoreError>
  readonly router: Router.Router<Event.Any, Target.Any>
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
 * @since 0.1.0
 * @category constructors
 */
export const make = <E extends Event.Any>(
  router: Router.Router<E, any>
): Effect.Effect<Service, never, Store.DeliveryStore> =>
  Effect.map(Store.DeliveryStore, (store) => ({
    enqueue: (event) =>
      Effect.flatMap(targetsOf(router, event), (targets) => store.enqueue(event, targets)).pipe(
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
    router: router as unknown as Router.Router<Event.Any, Target.Any>
  }))

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = <E extends Event.Any>(router: Router.Router<E, any>): Layer.Layer<Outbox, never, Store.DeliveryStore> =>
  Layer.effect(Outbox, make(router))
