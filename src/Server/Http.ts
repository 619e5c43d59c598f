/**
 * The HTTP server: the handlers of {@link Api.Api}, the protection around them, and the Node
 * `http.Server` they run on.
 *
 * - `layer(options)` serves the API on `NodeHttpServer` (it needs `Outbox`, `Registry` and the
 *   `DeliveryStore`; `/metrics` uses a `MetricsRenderer` when one is provided, else renders this
 *   process's Effect metrics itself). Its output includes `HttpServer.HttpServer` (for the address).
 * - `makeApp(options)` builds the same application as an `HttpApp`, for tests and embedding.
 *
 * Every error response has one shape (`Errors.ErrorBody`), including those of the router (404,
 * 405) and of Node's own HTTP parser (400, 408, 431), which are written by a `clientError`
 * handler instead of Node's empty defaults.
 *
 * @since 0.1.0
 */
import * as NodeHttp from "node:http"
import type { Duplex } from "node:stream"
import {
  HttpApiBuilder,
  type HttpApiGroup,
  HttpApiSwagger,
  type HttpApp,
  HttpServer,
  type HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Clock, DateTime, Duration, Effect, Layer, Option, Schema } from "effect"
import type { Scope } from "effect"
import type * as Event from "../Event.js"
import * as Outbox from "../Outbox.js"
import * as Registry from "../Registry.js"
import * as Router from "../Router.js"
import type * as CircuitBreaker from "../Resilience/CircuitBreaker.js"
import * as Policy from "../Resilience/Policy.js"
import * as Source from "../Source.js"
import * as Store from "../Store.js"
import * as Api from "./Api.js"
import * as Auth from "./Auth.js"
import * as Body from "./Body.js"
import * as Dashboard from "./Dashboard.js"
import * as Errors from "./Errors.js"
import * as EventTypes from "./EventTypes.js"
import * as Graph from "./Graph.js"
import * as Ingest from "./Ingest.js"
import * as Metrics from "./Metrics.js"
import * as ServerOptions from "./Options.js"
import * as TargetStats from "./TargetStats.js"

export type { Options } from "./Options.js"

/**
 * What the server needs from the application.
 *
 * @since 0.1.0
 * @category models
 */
export type Requirements = Outbox.Outbox | Registry.Registry | Store.DeliveryStore

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const iso = (ms: number): string => new Date(ms).toISOString()

const json = <A, I>(schema: Schema.Schema<A, I>, value: A, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(Schema.encodeSync(schema)(value), { status, headers })

/** Turns the expected failures of a handler into their responses. */
const respond = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, Errors.ApiFailure, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  Effect.catchAll(effect, (failure) => Effect.succeed(Errors.toResponse(failure)))

const decode = Errors.decode

const storeFailure = Errors.fromStoreError

const fromStore = <A, R>(effect: Effect.Effect<A, Store.StoreError, R>): Effect.Effect<A, Errors.ApiFailure, R> =>
  Effect.mapError(effect, storeFailure)

type Summary = typeof Api.DeliverySummary.Type

const summaryOfStatus = (held: ReadonlyMap<string, Graph.HeldBy>) => (d: Store.DeliveryStatus): Summary => ({
  id: d.id,
  target: d.target,
  status: d.status,
  attempts: d.totalAttempts,
  ...(d.lastError !== undefined ? { lastError: d.lastError } : {}),
  ...(d.lastErrorMessage !== undefined ? { lastErrorMessage: d.lastErrorMessage } : {}),
  ...(held.has(d.target) ? { heldBy: held.get(d.target)! } : {})
})

/** Every delivery's summary, with `heldBy` on those a dead input blocks. */
/**
 * Later delivery: a pending delivery not due yet, with no attempt made and no input awaited, waits
 * for its schedule (`deliverAt`/`delay`): shown as `scheduled`, with `deliverAt`.
 */
const scheduledView = (
  view: typeof Api.DeliveryView.Type,
  d: Store.DeliveryStatus | undefined,
  now: number
): typeof Api.DeliveryView.Type =>
  d !== undefined && d.status === "pending" && d.totalAttempts === 0 && (d.waiting ?? 0) === 0 &&
    d.nextAttemptAt !== undefined && d.nextAttemptAt > now
    ? { ...view, status: "scheduled", deliverAt: iso(d.nextAttemptAt) }
    : view

const summariesOfStatus = (deliveries: ReadonlyArray<Store.DeliveryStatus>): Array<Summary> =>
  deliveries.map(summaryOfStatus(Graph.heldBy(deliveries)))

const eventView = (
  status: Store.EventStatus,
  held: ReadonlyMap<string, Graph.HeldBy> = Graph.heldBy(status.deliveries)
): typeof Api.EventView.Type => ({
  id: status.event.id,
  type: status.event.type,
  ...(status.event.key !== undefined ? { key: status.event.key } : {}),
  payload: status.event.payload,
  headers: status.event.headers,
  createdAt: DateTime.formatIso(status.event.createdAt),
  enqueuedAt: iso(status.enqueuedAt),
  deliveries: status.deliveries.map((d) => ({
    id: d.id,
    target: d.target,
    idempotencyKey: d.idempotencyKey,
    status: d.status,
    attempts: d.attempts,
    totalAttempts: d.totalAttempts,
    ...(d.nextAttemptAt !== undefined ? { nextAttemptAt: iso(d.nextAttemptAt) } : {}),
    ...(d.leaseExpiresAt !== undefined ? { leaseExpiresAt: iso(d.leaseExpiresAt) } : {}),
    ...(d.lastError !== undefined ? { lastError: d.lastError } : {}),
    ...(d.lastErrorMessage !== undefined ? { lastErrorMessage: d.lastErrorMessage } : {}),
    ...(d.deadReason !== undefined ? { deadReason: d.deadReason } : {}),
    ...(d.finishedAt !== undefined ? { finishedAt: iso(d.finishedAt) } : {}),
    after: [...(d.after ?? [])],
    waiting: d.waiting ?? 0,
    ...(held.has(d.target) ? { heldBy: held.get(d.target)! } : {}),
    history: d.history.map((a) => ({
      number: a.number,
      startedAt: iso(a.startedAt),
      durationMs: a.durationMs,
      outcome: a.outcome,
      ...(a.status !== undefined ? { status: a.status } : {}),
      ...(a.errorTag !== undefined ? { errorTag: a.errorTag } : {}),
      ...(a.message !== undefined ? { message: a.message } : {}),
      ...(a.retryAfterMs !== undefined ? { retryAfterMs: a.retryAfterMs } : {}),
      ...(a.workerId !== undefined ? { workerId: a.workerId } : {})
    }))
  }))
})

/**
 * The comparisons of an event's mirrored shadows with their primaries: `pending` until both are
 * finished; then the status of each last attempt, and the stored answers (JSON) when both have one.
 */
const shadowComparisons = (
  mirrors: ReadonlyArray<Router.Mirror>,
  status: Store.EventStatus
): Array<typeof Api.ShadowComparisonView.Type> =>
  mirrors.flatMap((mirror): Array<typeof Api.ShadowComparisonView.Type> => {
    const primary = status.deliveries.find((d) => d.target === mirror.primary)
    const shadow = status.deliveries.find((d) => d.target === mirror.shadow)
    if (primary === undefined || shadow === undefined) return []
    const base = { shadow: mirror.shadow, primary: mirror.primary }
    const finished = (d: Store.DeliveryStatus) => d.status !== "pending" && d.status !== "in_flight"
    if (!finished(primary) || !finished(shadow)) {
      return [{ ...base, result: "pending" as const, compared: [], differences: [] }]
    }
    const body = (d: Store.DeliveryStatus): { readonly value: unknown } | undefined => {
      if (d.response === undefined) return undefined
      try {
        return { value: JSON.parse(d.response) }
      } catch {
        return { value: d.response }
      }
    }
    const a = body(primary)
    const b = body(shadow)
    const withBody = a !== undefined && b !== undefined
    const comparison = Router.compareAnswers(
      { status: primary.history.at(-1)?.status, body: withBody ? a.value : undefined },
      { status: shadow.history.at(-1)?.status, body: withBody ? b.value : undefined },
      mirror.ignore
    )
    return [{
      ...base,
      result: comparison.result,
      compared: withBody ? ["status" as const, "body" as const] : ["status" as const],
      differences: comparison.differences.map((d) => ({
        at: d.at,
        ...(d.primary !== undefined ? { primary: d.primary } : {}),
        ...(d.shadow !== undefined ? { shadow: d.shadow } : {})
      }))
    }]
  })

const deadLetterView = (d: Store.DeadLetter): typeof Api.DeadLetterView.Type => ({
  id: d.id,
  eventId: d.eventId,
  eventType: d.eventType,
  target: d.target,
  idempotencyKey: d.idempotencyKey,
  reason: d.reason,
  ...(d.lastError !== undefined ? { lastError: d.lastError } : {}),
  ...(d.lastErrorMessage !== undefined ? { lastErrorMessage: d.lastErrorMessage } : {}),
  attempts: d.attempts,
  totalAttempts: d.totalAttempts,
  deadAt: iso(d.deadAt),
  enqueuedAt: iso(d.enqueuedAt)
})

/** `Prefer: wait=<seconds>` (RFC 7240), in milliseconds. */
const preferWait = (prefer: string | undefined): number | undefined => {
  if (prefer === undefined) return undefined
  const match = /(?:^|[,;\s])wait\s*=\s*"?(\d{1,6})"?/i.exec(prefer)
  return match === null ? undefined : Number(match[1]) * 1000
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

const EventsLive = (options: ServerOptions.Options) =>
  HttpApiBuilder.group(Api.Api, "events", (handlers) =>
    Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const ingest = yield* Ingest.Ingest
      const registry = yield* Registry.Registry
      const store = yield* Store.DeliveryStore
      const limits: Body.Limits = options
      const { location, summaries } = ingest

      /** The shadow targets of the event (its routes' mirrored traffic): observers, never waited on. */
      const shadowsOf = (event: Event.Any): ReadonlySet<string> =>
        new Set(outbox.router.resolve(event).shadow.map((t) => t.name))
      const primaries = (status: Store.EventStatus) => {
        const shadows = shadowsOf(status.event)
        return shadows.size === 0 ? status.deliveries : status.deliveries.filter((d) => !shadows.has(d.target))
      }
      const summariesOf = (status: Store.EventStatus) => {
        const shadows = shadowsOf(status.event)
        return summariesOfStatus(status.deliveries).map((d) =>
          shadows.has(d.target) ? { ...d, shadow: true as const } : d
        )
      }

      const waitFor = (enqueued: Store.Enqueued, mode: "all" | "settled", waitMs: number) =>
        Effect.gen(function*() {
          // Settled: every primary delivery finished, or held for good by a dead input (pipelines) —
          // a blocked dependent never moves until an operator replays that input, so never wait on
          // it. Shadow deliveries are observers: neither waited for nor a reason for a 502.
          const done = (status: Store.EventStatus) => {
            const deliveries = primaries(status)
            return Graph.isSettled(deliveries) || (mode === "all" && deliveries.some((d) => d.status === "dead"))
          }
          const pollMs = options.waitPollMs
          const poll = Effect.gen(function*() {
            let delay = Math.min(10, pollMs)
            while (true) {
              const status = yield* outbox.status(enqueued.eventId)
              if (Option.isNone(status) || done(status.value)) return status
              yield* Effect.sleep(Duration.millis(delay))
              delay = Math.min(pollMs, Math.ceil(delay * 1.5))
            }
          })
          const settled = yield* poll.pipe(
            Effect.timeoutOption(Duration.millis(waitMs)),
            Effect.option,
            Effect.map((o) => Option.flatten(Option.flatten(o)))
          )
          const base = { id: enqueued.eventId, duplicate: !enqueued.created }
          if (Option.isNone(settled) || !done(settled.value)) {
            // Not settled in time (or unreadable): the event is stored all the same; say so with 202.
            const latest = yield* outbox.status(enqueued.eventId).pipe(Effect.option, Effect.map(Option.flatten))
            const deliveries = Option.match(latest, {
              onNone: () => summaries(enqueued),
              onSome: summariesOf
            })
            return json(Api.EventAccepted, { ...base, settled: false, deliveries }, 202, location(enqueued.eventId))
          }
          const deliveries = summariesOf(settled.value)
          const dead = primaries(settled.value).find((d) => d.status === "dead")
          if (mode === "all" && dead !== undefined) {
            const held = deliveries.filter((d) => d.heldBy !== undefined && d.shadow !== true).map((d) => d.target)
            return Errors.toResponse(
              Errors.make(
                502,
                "delivery_failed",
                `Delivery to ${dead.target} failed${dead.lastError !== undefined ? ` (${dead.lastError})` : ""}${
                  held.length > 0 ? `; held until a dead input is replayed: ${held.join(", ")}` : ""
                }`,
                {
                  extra: {
                    id: enqueued.eventId,
                    deliveries: Schema.encodeSync(Schema.Array(Api.DeliverySummary))(deliveries)
                  }
                }
              )
            )
          }
          const aggregate = yield* outbox.aggregate(settled.value).pipe(
            Effect.mapError((error) => Errors.make(500, "aggregate_failed", error.message))
          )
          return json(
            Api.EventAccepted,
            { ...base, settled: true, deliveries, ...(Option.isSome(aggregate) ? { aggregate: aggregate.value } : {}) },
            200,
            location(enqueued.eventId)
          )
        })

      return handlers
        .handleRaw("send", ({ headers, request, urlParams }) =>
          respond(Effect.gen(function*() {
            const body = yield* Body.readJson(request, limits)
            const enqueued = yield* ingest.accept(body, headers["idempotency-key"])
            if (urlParams.wait === undefined) return Ingest.toResponse(ingest.accepted(enqueued))
            const waitMs = Math.min(options.waitTimeoutMs, preferWait(headers.prefer) ?? Infinity)
            return yield* waitFor(enqueued, urlParams.wait, waitMs)
          })))
        .handleRaw("sendBatch", ({ request }) =>
          respond(Effect.flatMap(Body.readJson(request, limits), (body) =>
            Effect.map(ingest.acceptBatch(body), Ingest.toResponse))))
        .handleRaw("search", ({ urlParams }) =>
          respond(Effect.gen(function*() {
            const page = yield* fromStore(store.events({
              limit: urlParams.limit ?? 50,
              type: urlParams.type,
              status: urlParams.status,
              target: urlParams.target,
              since: urlParams.since,
              until: urlParams.until,
              cursor: urlParams.cursor
            }))
            return json(Api.EventPage, {
              items: page.items.map((item) => ({ ...item, enqueuedAt: iso(item.enqueuedAt) })),
              ...(page.next !== undefined ? { next: page.next } : {})
            })
          })))
        .handleRaw("status", ({ path }) =>
          respond(Effect.gen(function*() {
            const status = yield* fromStore(outbox.status(path.id))
            if (Option.isNone(status)) {
              return yield* Effect.fail(Errors.notFound(`No event with id ${JSON.stringify(path.id)}`))
            }
            const view = eventView(status.value)
            const now = yield* Clock.currentTimeMillis
            // A delivery to a target this configuration no longer names is held, not failed: say so.
            const deliveries = view.deliveries.map((d) =>
              registry.has(d.target) ? d : { ...d, unconfigured: true as const }
            ).map((d, i) =>
              scheduledView(d, status.value.deliveries[i], now)
            )
            const mirrors = outbox.router.mirrorsOf(status.value.event)
            return json(Api.EventView, {
              ...view,
              deliveries,
              ...(mirrors.length > 0 ? { shadowComparisons: shadowComparisons(mirrors, status.value) } : {})
            })
          })))
        .handleRaw("types", () =>
          Effect.map(EventTypes.current, (eventTypes) =>
            json(Api.EventTypesView, EventTypes.view(outbox.router, eventTypes))))
        .handleRaw("resend", ({ path }) =>
          respond(Effect.gen(function*() {
            const quoted = `${JSON.stringify(path.id)} to ${JSON.stringify(path.name)}`
            if (!registry.has(path.name)) {
              // Not configured here: resending would only leave it pending, unclaimed. Say which case it is.
              const status = yield* fromStore(outbox.status(path.id))
              if (Option.isNone(status)) {
                return yield* Effect.fail(Errors.notFound(`No event with id ${JSON.stringify(path.id)}`))
              }
              if (
                !status.value.deliveries.some((d) =>
                  d.target === path.name
                )
              ) {
                return yield* Effect.fail(Errors.notFound(`The event ${quoted} has no delivery`))
              }
              return yield* Effect.fail(Errors.make(
                422,
                "target_not_configured",
                `The target ${
                  JSON.stringify(path.name)
                } is not in this server's configuration: no worker would send the event ${quoted}`
              ))
            }
            const result = yield* fromStore(store.resend(path.id, path.name))
            switch (result._tag) {
              case "UnknownEvent":
                return yield* Effect.fail(Errors.notFound(`No event with id ${JSON.stringify(path.id)}`))
              case "NoDelivery":
                return yield* Effect.fail(Errors.notFound(`The event ${quoted} has no delivery`))
              case "Open":
                return yield* Effect.fail(Errors.make(
                  409,
                  "delivery_open",
                  `The delivery of ${quoted} is still ${result.status}: it will be sent; resend it once it is delivered`
                ))
              case "Dead":
                return yield* Effect.fail(Errors.make(
                  409,
                  "delivery_dead",
                  `The delivery of ${quoted} is dead: replay it (POST /v1/dead-letters/${result.id}/replay), with its idempotency key`
                ))
              case "Resent":
                return json(
                  Api.Resent,
                  {
                    id: result.id,
                    eventId: path.id,
                    target: result.target,
                    status: "pending" as const,
                    idempotencyKey: result.idempotencyKey,
                    resends: result.resends
                  },
                  202,
                  location(path.id)
                )
            }
          })))
    }))

const DeadLettersLive = (options: ServerOptions.Options) =>
  HttpApiBuilder.group(Api.Api, "deadLetters", (handlers) =>
    Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      return handlers
        .handleRaw("list", ({ urlParams }) =>
          respond(Effect.gen(function*() {
            const page = yield* fromStore(outbox.deadLetters({
              limit: urlParams.limit ?? 100,
              target: urlParams.target,
              errorLabel: urlParams.error,
              from: urlParams.from,
              to: urlParams.to,
              cursor: urlParams.cursor
            }))
            return json(Api.DeadLetterPage, {
              items: page.items.map((item) => {
                const view = deadLetterView(item)
                return outbox.router.isShadowOf(item.eventType, item.target) ? { ...view, shadow: true as const } : view
              }),
              ...(page.next !== undefined ? { next: page.next } : {})
            })
          })))
        .handleRaw("replay", ({ path }) =>
          respond(Effect.gen(function*() {
            const replayed = yield* fromStore(outbox.replay(path.id))
            if (!replayed) {
              return yield* Effect.fail(Errors.notFound(`No dead letter with id ${JSON.stringify(path.id)}`))
            }
            return json(Api.Replayed, { replayed: 1 }, 202)
          })))
        .handleRaw("replayMany", ({ request }) =>
          respond(Effect.gen(function*() {
            const body = yield* Body.readJson(request, options, { empty: {} })
            const filter = yield* decode(Api.DeadLetterFilter, body)
            const replayed = yield* fromStore(outbox.replayMany({
              target: filter.target,
              errorLabel: filter.error,
              from: filter.from,
              to: filter.to
            }))
            return json(Api.Replayed, { replayed }, 202)
          })))
        .handleRaw("purge", ({ path }) =>
          respond(Effect.gen(function*() {
            const removed = yield* fromStore(outbox.purge(path.id))
            if (removed === 0) {
              return yield* Effect.fail(Errors.notFound(`No dead letter with id ${JSON.stringify(path.id)}`))
            }
            return HttpServerResponse.empty({ status: 204 })
          })))
    }))

/** A breaker's state as the targets views show it. */
const circuitView = (state: CircuitBreaker.State) =>
  state._tag === "Closed"
    ? { state: "closed" as const, consecutiveFailures: state.consecutiveFailures }
    : state._tag === "Open"
    ? { state: "open" as const, openUntil: iso(state.until) }
    : { state: "half_open" as const }

/**
 * Targets the store holds deliveries for that are not configured here (removed from the
 * configuration): nothing claims them, so they are shown rather than left silent.
 */
const orphansOf = <C extends { readonly pending: number; readonly inFlight: number; readonly dead: number }>(
  registry: Registry.Registry["Type"],
  queue: Option.Option<{ readonly targets: Readonly<Record<string, C>> }>
): Array<{ readonly name: string; readonly queue: C }> =>
  Option.match(queue, {
    onNone: () => [],
    onSome: (q) =>
      Object.entries(q.targets)
        .filter(([name, counts]) => !registry.has(name) && counts.pending + counts.inFlight + counts.dead > 0)
        .map(([name, counts]) => ({ name, queue: counts }))
        .sort((a, b) => a.name.localeCompare(b.name))
  })

const TargetsLive = HttpApiBuilder.group(Api.Api, "targets", (handlers) =>
  Effect.gen(function*() {
    const registry = yield* Registry.Registry
    const outbox = yield* Outbox.Outbox
    const stats = yield* TargetStats.make()
    const store = yield* Store.DeliveryStore
    return handlers.handleRaw("list", () =>
      respond(Effect.gen(function*() {
        const queue = yield* Effect.option(outbox.stats)
        const targets = yield* Effect.forEach([...registry.values()], (runtime) =>
          Effect.gen(function*() {
            const state = yield* runtime.breaker.state
            const counts = Option.flatMapNullable(queue, (q) => q.targets[runtime.name])
            const view: typeof Api.TargetView.Type = {
              name: runtime.name,
              policy: Policy.toJSON(runtime.policy),
              circuit: circuitView(state),
              inFlight: yield* runtime.bulkhead.inFlight,
              waiting: yield* runtime.bulkhead.waiting,
              ...(Option.isSome(counts) ? { queue: counts.value } : {}),
              recent: yield* stats.recent(runtime.name)
            }
            return view
          }))
        return json(Api.TargetsView, { targets, orphans: orphansOf(registry, queue) })
      })))
      .handleRaw("live", () =>
        respond(Effect.gen(function*() {
          // The gauges (pending, in flight, dead) only: partial-index reads, not the delivered history.
          const queue = yield* Effect.option(store.gauges)
          const now = yield* Clock.currentTimeMillis
          const targets = yield* Effect.forEach([...registry.values()], (runtime) =>
            Effect.gen(function*() {
              const state = yield* runtime.breaker.state
              // A target with no open or dead delivery has no gauge row: zeros.
              const counts = Option.map(queue, (q) => q.targets[runtime.name] ?? { pending: 0, inFlight: 0, dead: 0 })
              const view: typeof Api.TargetLiveView.Type = {
                name: runtime.name,
                circuit: circuitView(state),
                inFlight: yield* runtime.bulkhead.inFlight,
                waiting: yield* runtime.bulkhead.waiting,
                ...(Option.isSome(counts) ? { queue: counts.value } : {}),
                recent: yield* stats.recent(runtime.name)
              }
              return view
            }))
          return json(Api.TargetsLiveView, { at: iso(now), targets, orphans: orphansOf(registry, queue) })
        })))
      .handleRaw("purgeOrphan", ({ path }) =>
        respond(Effect.gen(function*() {
          if (registry.has(path.name)) {
            return yield* Effect.fail(Errors.make(
              409,
              "target_configured",
              `The target ${
                JSON.stringify(path.name)
              } is in this server's configuration: its deliveries are sent, not purged ` +
                "(its dead letters can be purged with DELETE /v1/dead-letters/{id})"
            ))
          }
          const removed = yield* fromStore(store.purgeTarget(path.name))
          return json(Api.OrphanPurged, { target: path.name, ...removed })
        })))
  }))

const SourcesLive = HttpApiBuilder.group(Api.Api, "sources", (handlers) =>
  Effect.gen(function*() {
    // The sources of this process (none when it runs none).
    const stats = yield* Effect.serviceOption(Source.Stats)
    return handlers.handleRaw("list", () =>
      respond(Effect.gen(function*() {
        const views = Option.isSome(stats) ? yield* stats.value.list : []
        return json(Api.SourcesView, {
          sources: views.map((v) => ({
            name: v.name,
            kind: v.kind,
            describe: v.describe,
            state: v.state,
            received: v.received,
            stored: v.stored,
            duplicates: v.duplicates,
            acked: v.acked,
            rejected: v.rejected,
            redelivered: v.redelivered,
            retried: v.retried,
            ...(v.lag !== undefined ? { lag: v.lag } : {}),
            ...(v.lastError !== undefined ? { lastError: v.lastError } : {})
          }))
        })
      })))
  }))

const OpsLive = HttpApiBuilder.group(Api.Api, "ops", (handlers) =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const renderer = yield* Effect.serviceOption(Metrics.MetricsRenderer)
    const render = Option.match(renderer, { onNone: () => Metrics.renderSnapshot, onSome: (r) => r.render })
    return handlers
      .handleRaw("healthz", () => Effect.succeed(HttpServerResponse.unsafeJson({ status: "ok" })))
      .handleRaw("readyz", () =>
        store.gauges.pipe(
          Effect.match({
            onFailure: (error) =>
              Errors.toResponse(Errors.unavailable("not_ready", `The store is not ready (${error.reason})`, 1)),
            onSuccess: (stats) => HttpServerResponse.unsafeJson({ status: "ready", depth: stats.depth })
          })
        ))
      .handleRaw("metrics", () =>
        Effect.map(render, (text) =>
          HttpServerResponse.text(text, {
            contentType: Metrics.contentType,
            headers: { "cache-control": "no-store" }
          })))
  }))

// ---------------------------------------------------------------------------------------------
// Errors outside the handlers: router, decoding of path/query/headers, defects
// ---------------------------------------------------------------------------------------------

interface RouteTemplate {
  readonly method: string
  readonly pattern: RegExp
}

const templateOf = (method: string, path: string): RouteTemplate => {
  const source = path.split("/").map((segment) => {
    // `::` is a literal `:`; `:name` a parameter.
    const parts = segment.split("::").map((part) =>
      part.split(/:[A-Za-z_][A-Za-z0-9_]*\??/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("[^/]+")
    )
    return parts.join(":")
  }).join("/")
  return { method, pattern: new RegExp(`^${source}$`) }
}

const routeTemplates: ReadonlyArray<RouteTemplate> = [
  ...Object.values(Api.Api.groups).flatMap((group) =>
    Object.values(group.endpoints).map((endpoint) => templateOf(endpoint.method, endpoint.path))
  ),
  templateOf("GET", "/openapi.json"),
  templateOf("GET", "/docs")
]

const notRouted = (request: HttpServerRequest.HttpServerRequest): Errors.ApiFailure => {
  const path = request.url.split("?")[0] ?? "/"
  const allow = [...new Set(routeTemplates.filter((t) => t.pattern.test(path)).map((t) => t.method))]
  return allow.length > 0
    ? Errors.methodNotAllowed(request.method, allow)
    : Errors.notFound(`No route for ${request.method} ${path.slice(0, 200)}`)
}

const failureResponse = (
  error: unknown,
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  if (error instanceof Errors.ApiFailure) return Effect.succeed(Errors.toResponse(error))
  const tag = (error as { _tag?: unknown })?._tag
  if (tag === "HttpApiDecodeError") {
    const issues = (error as { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> }).issues
      .map((issue) => ({ path: Errors.formatPath(issue.path), message: issue.message }))
    return Effect.succeed(Errors.toResponse(Errors.invalidRequest(Errors.tidy(issues))))
  }
  if (tag === "RouteNotFound") return Effect.succeed(Errors.toResponse(notRouted(request)))
  if (tag === "RequestError") {
    return Effect.succeed(
      Errors.toResponse(Errors.make(400, "bad_request", (error as HttpServerError.RequestError).message))
    )
  }
  return Effect.as(
    Effect.logError("fanout server: unexpected failure", error),
    Errors.toResponse(Errors.internal())
  )
}

const ErrorsLive = HttpApiBuilder.middleware((app) =>
  Effect.catchAllCause(app, (cause) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
      const failure = Cause.failureOption(cause)
      if (Option.isSome(failure)) return failureResponse(failure.value, request)
      return Effect.as(
        Effect.logError("fanout server: defect", cause),
        Errors.toResponse(Errors.internal())
      )
    }))
)

// ---------------------------------------------------------------------------------------------
// Assembly
// ---------------------------------------------------------------------------------------------

/**
 * What the server's two request paths share (the `HttpApi` handlers and the lean ingest listener):
 * the API-key check with its rate-limit buckets, and the ingest rules with their queue-depth reading.
 */
const layerShared = (
  options: ServerOptions.Options
): Layer.Layer<Auth.AuthCheck | Ingest.Ingest, never, Outbox.Outbox> =>
  Layer.merge(Auth.layerCheck(options), Ingest.layer(options))

/** Every group's handlers (what {@link layerHandlers} and the server's own routes provide). */
const layerGroups = (options: ServerOptions.Options) =>
  Layer.mergeAll(EventsLive(options), DeadLettersLive(options), TargetsLive, SourcesLive, OpsLive)

/**
 * Fanout's handlers, as the `HttpApiBuilder.group` layers of every group of {@link Api.Api}
 * (`events`, `deadLetters`, `targets`, `sources`, `ops`), with the API-key middleware and the ingest rules
 * they share: what an application provides to its own `HttpApiBuilder.api(FanoutApi)` (or to
 * `HttpApiBuilder.api(FanoutApi.add(MyGroup))`, its own groups beside Fanout's) to serve Fanout's
 * API from its own `HttpServer`, under its own middleware. `POST /v1/events` and
 * `POST /v1/events:batch` are answered by these handlers (the lean listener of {@link layer} is
 * an addition of Fanout's own Node server).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerHandlers = (
  options: ServerOptions.Options | ServerOptions.Input = {}
): Layer.Layer<
  | HttpApiGroup.ApiGroup<"fanout", "events">
  | HttpApiGroup.ApiGroup<"fanout", "deadLetters">
  | HttpApiGroup.ApiGroup<"fanout", "targets">
  | HttpApiGroup.ApiGroup<"fanout", "sources">
  | HttpApiGroup.ApiGroup<"fanout", "ops">,
  never,
  Requirements
> => {
  const resolved = resolveOptions(options)
  return layerGroups(resolved).pipe(
    Layer.provide(Auth.layerAuthorization),
    Layer.provide(layerShared(resolved))
  )
}

/**
 * The one error shape (`{ "error": { code, message, status, issues? } }`) for what fails outside
 * Fanout's handlers: a path, query or header that does not decode (400), an unknown route (404 or
 * 405 for Fanout's routes), a defect (500). An `HttpApiBuilder.middleware`: it applies to every
 * route of the application it is provided to (optional when mounting {@link layerHandlers}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerErrors: Layer.Layer<never> = ErrorsLive

/** The API's routes over the shared pieces in context. */
const layerRoutes = (options: ServerOptions.Options) =>
  Layer.mergeAll(
    ErrorsLive,
    // `/openapi.json`, with the declared payload schemas of the event types.
    EventTypes.layerOpenApi({ path: "/openapi.json" }),
    HttpApiSwagger.layer({ path: "/docs" })
  ).pipe(
    Layer.provideMerge(
      HttpApiBuilder.api(Api.Api).pipe(
        Layer.provide(layerGroups(options)),
        Layer.provide(Auth.layerAuthorization)
      )
    )
  )

/**
 * The API's routes (handlers, auth, error mapping, `/openapi.json`, `/docs`), registered on the
 * `HttpApiBuilder` router.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerApi = (options: ServerOptions.Options) =>
  layerRoutes(options).pipe(Layer.provide(layerShared(options)))

/** The application over the shared pieces in context. */
const appOf = (
  options: ServerOptions.Options
): Effect.Effect<HttpApp.Default, never, Requirements | Auth.AuthCheck | Ingest.Ingest | Scope.Scope> =>
  Effect.gen(function*() {
    const routes = layerRoutes(options).pipe(
      Layer.provideMerge(Layer.mergeAll(HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer))
    )
    const context = yield* Layer.build(routes)
    const app = yield* Effect.provide(HttpApiBuilder.httpApp, context)
    const platform = yield* Layer.build(NodeHttpServer.layerContext)
    return Effect.provide(Dashboard.wrap(options)(app), platform) as HttpApp.Default
  })

/**
 * The application as an `HttpApp` (no server), for tests and for mounting elsewhere. Every route
 * of the API is here, `POST /v1/events` and `POST /v1/events:batch` included (the lean listener
 * of {@link layer} is an addition of the Node server, not of the app).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeApp = (
  options: ServerOptions.Options | ServerOptions.Input = {}
): Effect.Effect<HttpApp.Default, never, Requirements | Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = resolveOptions(options)
    const shared = yield* Layer.build(layerShared(resolved))
    return yield* Effect.provide(appOf(resolved), shared)
  })

const resolveOptions = (options: ServerOptions.Options | ServerOptions.Input): ServerOptions.Options =>
  "headersTimeoutMs" in options ? options as ServerOptions.Options : ServerOptions.make(options as ServerOptions.Input)

const rawAnswered = new WeakSet<Duplex>()

/**
 * The Node server with the protections set: header size (431), header and request timeouts
 * (slow clients), keep-alive timeout, and one error shape for what Node's parser refuses.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeNodeServer = (options: ServerOptions.Options): NodeHttp.Server => {
  const server = NodeHttp.createServer({
    maxHeaderSize: options.maxHeaderBytes,
    headersTimeout: options.headersTimeoutMs,
    requestTimeout: options.requestTimeoutMs,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    connectionsCheckingInterval: options.connectionsCheckingIntervalMs,
    // An HTTP/1.1 request without Host would get Node's bodiless 400; the API does not need it.
    requireHostHeader: false
  })
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (rawAnswered.has(socket)) return
    rawAnswered.add(socket)
    const response = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (error.code === "ECONNRESET" || error.code === "EPIPE" || !socket.writable || response?.headersSent === true) {
      socket.destroy()
      return
    }
    const [status, code, message] = error.code === "HPE_HEADER_OVERFLOW"
      ? [431, "headers_too_large", `The request headers are larger than ${options.maxHeaderBytes} bytes`] as const
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "request_timeout", "The request was not received in time"] as const
      : [400, "bad_request", `Malformed HTTP request${error.code ? ` (${error.code})` : ""}`] as const
    // Half-close after the answer; whatever the client still sends is read and dropped, then the socket goes.
    socket.end(Errors.rawResponse(status, code, message))
    socket.on("error", () => {})
    setTimeout(() => socket.destroy(), 2_000).unref()
  })
  server.on("checkExpectation", (_req: NodeHttp.IncomingMessage, res: NodeHttp.ServerResponse) => {
    const body = JSON.stringify({
      error: { code: "expectation_failed", message: "Only Expect: 100-continue is supported", status: 417 }
    })
    res.writeHead(417, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      connection: "close"
    })
    res.end(body)
  })
  return server
}

/**
 * Stops accepting, lets requests in progress finish for up to `shutdownGraceMs`, then closes
 * every connection left (keep-alive and slow clients included).
 */
const shutdown = (server: NodeHttp.Server, graceMs: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    let finished = false
    const done = () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      clearInterval(sweep)
      resume(Effect.void)
    }
    const timer = setTimeout(() => {
      server.closeAllConnections()
      setTimeout(done, 100).unref()
    }, graceMs)
    // Keep-alive connections become idle as their last answer goes out: close them then, not after keepAliveTimeout.
    const sweep = setInterval(() => server.closeIdleConnections(), 25)
    if (!server.listening) {
      server.closeAllConnections()
      return done()
    }
    server.close(() => done())
    server.closeIdleConnections()
  })

/**
 * Serves the API on a Node `http.Server` listening on `options.host:options.port`, until the
 * scope closes (then: graceful shutdown). Output: `HttpServer.HttpServer` (its `address`).
 *
 * With `leanIngest` (the default), `POST /v1/events` (without `?wait=`) and `POST /v1/events:batch`
 * are answered by the lean listener of {@link Ingest.makeListener} in front of the Effect
 * application, with the same rules and answers; everything else goes to the application.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ServerOptions.Options | ServerOptions.Input = {}
): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError, Requirements> => {
  const resolved = resolveOptions(options)
  let node: NodeHttp.Server | undefined
  const serve = Layer.scopedDiscard(Effect.gen(function*() {
    const shared = yield* Layer.build(layerShared(resolved))
    const app = yield* Effect.provide(appOf(resolved), shared)
    const server = yield* HttpServer.HttpServer
    const before = new Set(node?.listeners("request") ?? [])
    yield* server.serve(app)
    if (resolved.leanIngest && node !== undefined) {
      const target = node
      // The application's listener, just installed by `serve`: the lean one goes in its place and hands it the rest.
      const installed = target.listeners("request").filter((l) => !before.has(l)) as Array<Ingest.Listener>
      for (const l of installed) target.off("request", l)
      const fallback: Ingest.Listener = (req, res) => {
        for (const l of installed) l(req, res)
      }
      const lean = yield* Effect.provide(Ingest.makeListener(resolved, fallback), shared)
      target.on("request", lean)
      yield* Effect.addFinalizer(() => Effect.sync(() => target.off("request", lean)))
    }
    // Registered after `serve`, so it runs first on close: drain before the handler is removed.
    yield* Effect.addFinalizer(() => node === undefined ? Effect.void : shutdown(node, resolved.shutdownGraceMs))
  }))
  const nodeServer = NodeHttpServer.layer(() => (node = makeNodeServer(resolved)), {
    port: resolved.port,
    host: resolved.host
  })
  return Layer.effect(HttpServer.HttpServer, HttpServer.HttpServer).pipe(
    Layer.provide(serve.pipe(Layer.provideMerge(nodeServer)))
  )
}

/**
 * The `http://host:port` a served `HttpServer` listens on.
 *
 * @since 0.1.0
 * @category accessors
 */
export const url: Effect.Effect<string, never, HttpServer.HttpServer> = Effect.map(
  HttpServer.HttpServer,
  (server) =>
    server.address._tag === "TcpAddress"
      ? `http://${
        server.address.hostname.includes(":") ? `[${server.address.hostname}]` : server.address.hostname
      }:${server.address.port}`
      : `http+unix://${encodeURIComponent(server.address.path)}`
)
