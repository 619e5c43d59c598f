/**
 * Operator events: what an operator wants to be told, emitted as ordinary Fanout events through
 * the outbox, so a route sends them to any target (a chat webhook, a pager) like any other event:
 *
 * | type | when | payload |
 * | --- | --- | --- |
 * | `fanout.target.circuit_opened` | a target's breaker opens | `{ target, openUntil, suppressed }` |
 * | `fanout.target.circuit_closed` | it closes again | `{ target, suppressed }` |
 * | `fanout.delivery.dead` | a delivery is dead-lettered | `{ target, deliveryId, eventId, eventType, reason, lastError, suppressed }` |
 * | `fanout.target.dlq_threshold` | a target's dead letters reach `dlqThreshold` | `{ target, dead, threshold, suppressed }` |
 * | `fanout.source.lagging` | a broker source of this process has `sourceLagThreshold` messages or more waiting at its broker | `{ source, lag, threshold, suppressed }` |
 *
 * - **Rate-limited** per kind and target: at most one event of a kind for a target per
 *   `minInterval` (default 1 minute); the ones left out are counted in the next one's `suppressed`.
 * - **Never looping**: a dead delivery of an operator event (type `fanout.*`) emits nothing.
 * - Only where a route takes them: with no route for a type, nothing is stored.
 *
 * Breakers are watched through their change streams (this process's breakers); dead letters and
 * the dead-letter counts are read from the store every `every` (default 1 second), from the dead
 * letters after the last one seen (a dead letter replayed and dead again keeps its id and is not
 * told twice). Only dead letters that appear while the process runs are told.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Schedule, Stream } from "effect"
import * as Event from "./Event.js"
import * as Outbox from "./Outbox.js"
import * as Registry from "./Registry.js"
import * as Source from "./Source.js"
import * as Store from "./Store.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** At most one event of a kind per target this often. Default 1 minute. */
  readonly minInterval?: Duration.DurationInput | undefined
  /** How often the store's dead letters are read. Default 1 second. */
  readonly every?: Duration.DurationInput | undefined
  /** `fanout.target.dlq_threshold` when a target holds this many dead letters. Default 100. */
  readonly dlqThreshold?: number | undefined
  /** `fanout.source.lagging` when a source's broker holds this many messages for it. Default 10,000. */
  readonly sourceLagThreshold?: number | undefined
}

/**
 * The event types.
 *
 * @since 0.1.0
 * @category constants
 */
export const types = {
  circuitOpened: "fanout.target.circuit_opened",
  circuitClosed: "fanout.target.circuit_closed",
  deliveryDead: "fanout.delivery.dead",
  dlqThreshold: "fanout.target.dlq_threshold",
  sourceLagging: "fanout.source.lagging"
} as const

/**
 * Whether an event type is an operator event's (`fanout.` prefix).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isOperatorType = (type: string): boolean => type.startsWith("fanout.")

/**
 * The rate limit: per (kind, target), whether an event may go now, and how many were held back.
 *
 * @since 0.1.0
 * @category constructors
 */
export const limiter = (minIntervalMs: number) => {
  const last = new Map<string, { at: number; suppressed: number }>()
  return (kind: string, target: string, now: number): number | undefined => {
    const key = `${kind}\u0000${target}`
    const entry = last.get(key)
    if (entry !== undefined && now - entry.at < minIntervalMs) {
      entry.suppressed++
      return undefined
    }
    last.set(key, { at: now, suppressed: 0 })
    return entry?.suppressed ?? 0
  }
}

/**
 * Watches this process's breakers and the store's dead letters, and enqueues the operator
 * events, until the scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<never, never, Outbox.Outbox | Registry.Registry | Store.DeliveryStore> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const registry = yield* Registry.Registry
    const store = yield* Store.DeliveryStore
    const minIntervalMs = Duration.toMillis(Duration.decode(options.minInterval ?? "1 minute"))
    const every = Duration.decode(options.every ?? "1 second")
    const threshold = options.dlqThreshold ?? 100
    const lagThreshold = options.sourceLagThreshold ?? 10_000
    // The sources of this process (`fanout serve`, `fanout consume`), when there are any.
    const sources = yield* Effect.serviceOption(Source.Stats)
    const allow = limiter(minIntervalMs)
    let seq = 0

    /** Enqueues one operator event about `subject` (a target, or with `about: "source"` a source). */
    const emit = (
      type: string,
      subject: string,
      payload: Record<string, unknown>,
      about: "target" | "source" = "target"
    ) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const suppressed = allow(type, subject, now)
        if (suppressed === undefined) return
        const id = `${type}:${subject}:${now}:${++seq}`.slice(0, 200)
        const event = yield* Event.make(type, { ...payload, [about]: subject, suppressed }, { id })
        // A type no route takes is not stored (NoRouteError): nothing to tell, nobody to tell it to.
        yield* outbox.enqueue(event)
      }).pipe(
        Effect.catchAll((error) =>
          error._tag === "NoRouteError"
            ? Effect.void
            : Effect.logWarning(`fanout operator events: ${type} for ${subject} not stored (${error._tag})`)
        )
      )

    // Breakers: every transition into open, and back to closed.
    for (const runtime of registry.values()) {
      let previous: string | undefined
      yield* runtime.breaker.changes.pipe(
        Stream.runForEach((state) => {
          const was = previous
          previous = state._tag
          if (was === undefined || was === state._tag) return Effect.void
          if (state._tag === "Open") {
            return emit(types.circuitOpened, runtime.name, { openUntil: new Date(state.until).toISOString() })
          }
          if (state._tag === "Closed") return emit(types.circuitClosed, runtime.name, {})
          return Effect.void
        }),
        Effect.forkScoped
      )
    }

    // Dead letters: those after the last one seen at start, then after the last one told.
    const lastDead = Effect.gen(function*() {
      let cursor: string | undefined
      let last: string | undefined
      do {
        const page: Store.DeadLetterPage = yield* store.deadLetters({ limit: 1000, cursor })
        last = page.items[page.items.length - 1]?.id ?? last
        cursor = page.next
      } while (cursor !== undefined)
      return last
    })
    let cursor = yield* lastDead.pipe(Effect.orElseSucceed(() => undefined))
    const over = new Set<string>()
    const lagging = new Set<string>()
    const pass = Effect.gen(function*() {
      while (true) {
        const page = yield* store.deadLetters({ limit: 100, cursor })
        for (const dead of page.items) {
          if (!isOperatorType(dead.eventType)) {
            yield* emit(types.deliveryDead, dead.target, {
              deliveryId: dead.id,
              eventId: dead.eventId,
              eventType: dead.eventType,
              reason: dead.reason,
              lastError: dead.lastError ?? null
            })
          }
        }
        cursor = page.items[page.items.length - 1]?.id ?? cursor
        if (page.next === undefined) break
      }
      const gauges = yield* store.gauges
      for (const [target, counts] of Object.entries(gauges.targets)) {
        if (counts.dead >= threshold && !over.has(target)) {
          over.add(target)
          yield* emit(types.dlqThreshold, target, { dead: counts.dead, threshold })
        } else if (counts.dead < threshold) over.delete(target)
      }
      // Sources falling behind: told once when the lag reaches the threshold, again only after it
      // fell below and rose again (and at most once per interval).
      if (sources._tag === "Some") {
        for (const view of yield* sources.value.list) {
          if (view.lag === undefined) continue
          if (view.lag >= lagThreshold && !lagging.has(view.name)) {
            lagging.add(view.name)
            yield* emit(types.sourceLagging, view.name, { lag: view.lag, threshold: lagThreshold }, "source")
          } else if (view.lag < lagThreshold) lagging.delete(view.name)
        }
      }
    }).pipe(
      Effect.catchAll((error) =>
        Effect.logWarning(`fanout operator events: reading the store failed (${error.reason})`)
      )
    )
    yield* Effect.forkScoped(Effect.repeat(pass, Schedule.spaced(every)))
  }))
