/**
 * Retention: how long finished deliveries are kept, applied on a schedule.
 *
 * - `delivered`: delivered and compensated deliveries that finished longer ago than this are deleted
 *   with their attempt history (`DeliveryStore.retention`, which keeps an input's stored answer while
 *   a sibling may still need it); events left without deliveries go with them.
 * - `dead`: dead letters that died longer ago than this are purged (`DeliveryStore.purge` with
 *   `to`), as `fanout dlq purge --all` would.
 * - `every`: how often; the first pass runs at start.
 *
 * An id is remembered (a second `POST` with it is a `200 duplicate`, or a `409` with other content)
 * as long as its event is stored: once retention has removed the event, the same id is a new event.
 * So `delivered` is also the de-duplication window for events whose deliveries all succeeded.
 *
 * The stores delete in chunks of 1,000 rows, each chunk its own short transaction, so a pass never
 * holds the write lock for long. Each pass is counted in `fanout_retention_removed_total{kind}`
 * (`deliveries`, `dead`, `events`) and logged at info when it removed something; a failed pass is
 * logged as a warning and the next one runs on schedule.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, MetricLabel, Schedule } from "effect"
import * as Metrics from "./Metrics.js"
import * as Store from "./Store.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Keep delivered and compensated deliveries this long after they finished; `false`: forever. Default 7 days. */
  readonly delivered?: Duration.DurationInput | false | undefined
  /** Keep dead letters this long after they died; `false`: until purged by hand. Default 30 days. */
  readonly dead?: Duration.DurationInput | false | undefined
  /** How often a pass runs (the first at start). Default 1 minute. */
  readonly every?: Duration.DurationInput | undefined
}

/**
 * The defaults of {@link Options}.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = { delivered: Duration.days(7), dead: Duration.days(30), every: Duration.minutes(1) } as const

/**
 * What one pass removed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Pass {
  /** Delivered and compensated deliveries deleted. */
  readonly deliveries: number
  /** Dead letters purged. */
  readonly dead: number
  /** Events deleted with the delivered ones (left without deliveries). */
  readonly events: number
}

const counter = (kind: string) => {
  const labels = [MetricLabel.make("kind", kind)]
  return (n: number) => {
    if (n > 0) Metrics.retentionRemoved.unsafeUpdate(n, labels)
  }
}
const countDeliveries = counter("deliveries")
const countDead = counter("dead")
const countEvents = counter("events")

/**
 * One pass of retention over the store in context: the delivered rows, then the dead letters.
 *
 * @since 0.1.0
 * @category running
 */
export const runOnce = (options: Options = {}): Effect.Effect<Pass, Store.StoreError, Store.DeliveryStore> =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const delivered = options.delivered === undefined ? defaults.delivered : options.delivered
    const dead = options.dead === undefined ? defaults.dead : options.dead
    const removed = delivered === false ? { deliveries: 0, events: 0 } : yield* store.retention(delivered)
    let purged = 0
    if (dead !== false) {
      const now = yield* Clock.currentTimeMillis
      purged = yield* store.purge({ to: now - Duration.toMillis(Duration.decode(dead)) })
    }
    countDeliveries(removed.deliveries)
    countDead(purged)
    countEvents(removed.events)
    return { deliveries: removed.deliveries, dead: purged, events: removed.events }
  })

/**
 * Runs {@link runOnce} at start and then every `every`, for as long as the layer lives. A failed pass
 * is logged (`fanout retention: pass failed (<reason>); next in <every>`) and does not stop the next.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<never, never, Store.DeliveryStore> =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const every = Duration.decode(options.every ?? defaults.every)
      const pass = runOnce(options).pipe(
        Effect.tap((pass) =>
          pass.deliveries + pass.dead + pass.events > 0
            ? Effect.logInfo(
              `fanout retention: removed ${pass.deliveries} delivered, ${pass.dead} dead, ${pass.events} events`
            )
            : Effect.void
        ),
        Effect.catchAll((error) =>
          Effect.logWarning(`fanout retention: pass failed (${error.reason}); next in ${Duration.format(every)}`).pipe(
            Effect.annotateLogs({ error: error.message })
          )
        )
      )
      yield* Effect.forkScoped(Effect.repeat(pass, Schedule.spaced(every)))
    })
  )
