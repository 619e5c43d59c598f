/**
 * Ingest: what `POST /v1/events` and `POST /v1/events:batch` do, and a lean way to serve them.
 *
 * - {@link Ingest} (the service, {@link layer}) holds the rules both endpoints apply once a body has
 *   been read: schema decoding (`400` with paths), the `id` / `Idempotency-Key` check, routing
 *   (`422`), the payload schema of the type (`422 schema_mismatch`, `Schemas.check`, when the
 *   context has `Schemas.EventTypes`), the queue-depth guard (`503` + `Retry-After`), the enqueue (store failures as `503` /
 *   `500`, a duplicate id `200`, the same id with other content `409`) and the answer (`202` +
 *   `Location`; a batch reports each item, `conflict` among them). The `HttpApi` handlers
 *   (`Http.ts`) and the lean listener both use it, so they answer alike.
 * - {@link makeListener} is a plain `node:http` request listener for those two routes (exact paths,
 *   any query string) that runs one Effect per request on the application's runtime — no router,
 *   no `HttpServerRequest`, no per-request scope — and hands every other request (and every
 *   `POST /v1/events` with a `wait` query parameter) to the Effect application. It checks what the
 *   `HttpApi` path checks, in the same order: API key and rate limit (`401`, `429`), the
 *   `Idempotency-Key` header (`400`), then the body (`415`, `413`, `400`), then the rules above.
 *   With tracing on it opens the same `http.server POST` span, with the same attributes.
 *
 * @since 0.1.0
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { Headers, HttpServerResponse, HttpTraceContext } from "@effect/platform"
import {
  Cause,
  Chunk,
  Clock,
  Context,
  DateTime,
  Duration,
  Effect,
  Either,
  Exit,
  type Fiber,
  FiberId,
  FiberRef,
  FiberRefs,
  HashMap,
  Layer,
  MetricLabel,
  Option,
  Runtime,
  Schema,
  Tracer
} from "effect"
import * as Event from "../Event.js"
import * as Metrics from "../Metrics.js"
import * as Outbox from "../Outbox.js"
import * as Schemas from "../Schemas.js"
import type * as Store from "../Store.js"
import * as Api from "./Api.js"
import * as Auth from "./Auth.js"
import * as Body from "./Body.js"
import * as Errors from "./Errors.js"
import * as ServerOptions from "./Options.js"
import { uuidv7 } from "../internal/uuid.js"

/**
 * A JSON answer: status, headers (besides `content-type` and `content-length`) and the encoded body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: unknown
}

/**
 * The answer of a failure (the one error shape, `Cache-Control: no-store`).
 *
 * @since 0.1.0
 * @category encoding
 */
export const failureAnswer = (failure: Errors.ApiFailure): Answer => ({
  status: failure.error.status,
  headers: { "cache-control": "no-store", ...failure.headers },
  body: Errors.bodyOf(failure)
})

/**
 * An answer as an `HttpServerResponse` (what the `HttpApi` handlers return).
 *
 * @since 0.1.0
 * @category encoding
 */
export const toResponse = (answer: Answer): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(answer.body, { status: answer.status, headers: answer.headers })

/**
 * A delivery in an answer to `POST /v1/events`.
 *
 * @since 0.1.0
 * @category models
 */
export type Summary = typeof Api.DeliverySummary.Type

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * The event of a decoded `POST /v1/events` body at `now` (epoch ms: its `createdAt`, and the time
   * of its id when it has none), or why not (`400`, `422`). `idempotencyKey`: the decoded header.
   */
  readonly prepare: (
    body: unknown,
    idempotencyKey: string | undefined,
    now: number
  ) => Either.Either<Event.Any, Errors.ApiFailure>
  /** The events of a decoded `POST /v1/events:batch` body at `now`, or why not (`400`, `422`). */
  readonly prepareBatch: (body: unknown, now: number) => Either.Either<ReadonlyArray<Event.Any>, Errors.ApiFailure>
  /** The queue-depth guard (`503`), then the enqueue (never interrupted once started). */
  readonly store: (event: Event.Any) => Effect.Effect<Store.Enqueued, Errors.ApiFailure>
  /** The guard, then every event of a batch (16 at a time), and the batch's answer. */
  readonly storeBatch: (events: ReadonlyArray<Event.Any>) => Effect.Effect<Answer, Errors.ApiFailure>
  /** {@link Service.prepare} at the `Clock`'s time, then {@link Service.store}. */
  readonly accept: (
    body: unknown,
    idempotencyKey: string | undefined
  ) => Effect.Effect<Store.Enqueued, Errors.ApiFailure>
  /** {@link Service.prepareBatch} at the `Clock`'s time, then {@link Service.storeBatch}. */
  readonly acceptBatch: (body: unknown) => Effect.Effect<Answer, Errors.ApiFailure>
  /** The answer to a stored event: `202` (new) or `200` (duplicate), with `Location`. */
  readonly accepted: (enqueued: Store.Enqueued) => Answer
  /** `Location` of an event. */
  readonly location: (id: string) => Readonly<Record<string, string>>
  /** The deliveries of an enqueue, as an answer lists them. */
  readonly summaries: (enqueued: Store.Enqueued) => Array<Summary>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Ingest extends Context.Tag("fanout/server/Ingest")<Ingest, Service>() {}

/**
 * A new event id: a UUIDv7 (RFC 9562), as `Event.newId` makes them (src/internal/uuid.ts).
 *
 * @since 0.1.0
 * @category constructors
 */
export const newEventId = (unixMillis: number): string => uuidv7(unixMillis)

const noRouteIssue = (type: string, path: string): Errors.Issue => ({
  path,
  message: `No route matches the event type ${JSON.stringify(type)}`
})

/**
 * `422 schema_mismatch`: payloads that do not match their type's schema; each issue's `path` is a
 * JSON Pointer (RFC 6901) into the request body (`/payload/qty`, `/events/3/payload/qty`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const schemaMismatch = (
  mismatches: ReadonlyArray<{ readonly at: string; readonly mismatch: Schemas.PayloadMismatch }>,
  events = 1
): Errors.ApiFailure => {
  const first = mismatches[0]!.mismatch
  const message = events === 1
    ? `The payload does not match the schema of the event type ${JSON.stringify(first.type)}`
    : `${mismatches.length} of ${events} events do not match the schema of their type (the first: ${
      JSON.stringify(first.type)
    }); nothing was stored`
  const issues = mismatches.flatMap(({ at, mismatch }) =>
    mismatch.issues.map((issue) => ({ path: `${at}${issue.pointer}`, message: issue.message }))
  ).slice(0, 100)
  return Errors.make(422, "schema_mismatch", message, { issues })
}

const decodeOptions = { errors: "all", onExcessProperty: "error", exact: true } as const
const decodeEventSchema = Schema.decodeUnknownEither(Api.EventInput, decodeOptions)
const decodeBatchSchema = Schema.decodeUnknownEither(Api.BatchInput, decodeOptions)
const encodeBatchAccepted = Schema.encodeSync(Api.BatchAccepted)
const encodeBatchItems = Schema.encodeSync(Schema.Array(Api.BatchItem))

type EventInput = typeof Api.EventInput.Type

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype

/** A `type`: 1–200 characters of any kind. (Ids and keys are `Event.isId`: printable ASCII only.) */
const isTypeString = (value: unknown): value is string =>
  typeof value === "string" && value.length >= 1 && value.length <= 200

/**
 * `EventInput` without the schema interpreter, for the common valid body: the value the schema
 * decodes it to, or `undefined` whenever the schema has to look (anything unusual, every error).
 */
const fastEventInput = (value: unknown): EventInput | undefined => {
  if (!isPlainObject(value) || !("payload" in value)) return undefined
  let n = 1
  const { headers, id, key, type } = value
  if (!isTypeString(type)) return undefined
  n++
  if (id !== undefined) {
    if (!Event.isId(id)) return undefined
    n++
  }
  if (key !== undefined) {
    if (!Event.isId(key)) return undefined
    n++
  }
  if (headers !== undefined) {
    if (!isPlainObject(headers)) return undefined
    for (const name in headers) {
      if (name === "__proto__" || typeof headers[name] !== "string") return undefined
    }
    n++
  }
  // Any other property (`onExcessProperty: "error"`), or an own `undefined`, is the schema's to report.
  if (Object.keys(value).length !== n) return undefined
  return {
    ...(id !== undefined ? { id } : {}),
    type,
    ...(key !== undefined ? { key } : {}),
    payload: value.payload,
    ...(headers !== undefined ? { headers: headers as Readonly<Record<string, string>> } : {})
  }
}

/**
 * Decodes a `POST /v1/events` body with `Api.EventInput` (every issue, no excess property): the
 * schema's own answer, with a shortcut for the common valid body that decodes to the same value.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeEventInput = (body: unknown): Either.Either<EventInput, Errors.ApiFailure> => {
  const fast = fastEventInput(body)
  if (fast !== undefined) return Either.right(fast)
  return Either.mapLeft(decodeEventSchema(body), (error) => Errors.invalidRequest(Errors.issuesOf(error)))
}

/**
 * Decodes a `POST /v1/events:batch` body with `Api.BatchInput`, as {@link decodeEventInput} does.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeBatchInput = (body: unknown): Either.Either<typeof Api.BatchInput.Type, Errors.ApiFailure> => {
  if (isPlainObject(body) && Array.isArray(body.events) && body.events.length > 0 && Object.keys(body).length === 1) {
    const events: Array<EventInput> = []
    for (const e of body.events) {
      const fast = fastEventInput(e)
      if (fast === undefined) break
      events.push(fast)
    }
    if (events.length === body.events.length) return Either.right({ events })
  }
  return Either.mapLeft(decodeBatchSchema(body), (error) => Errors.invalidRequest(Errors.issuesOf(error)))
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/

/**
 * Later delivery: when an input's deliveries fall due (`deliverAt`, an RFC 3339 instant, or
 * `delay`, a duration from `now`), `undefined` without either, or why not: both given or a bad
 * value (`422 invalid_schedule`), more than `maxDelayMs` ahead (`422 schedule_beyond_horizon`).
 * A time in the past is returned as it is (the store makes it due now).
 *
 * @since 0.1.0
 * @category decoding
 */
export const scheduleOf = (
  input: { readonly deliverAt?: string | undefined; readonly delay?: string | undefined },
  now: number,
  maxDelayMs: number,
  at = ""
): Either.Either<number | undefined, Errors.ApiFailure> => {
  const { delay, deliverAt } = input
  if (deliverAt === undefined && delay === undefined) return Either.right(undefined)
  const invalid = (path: string, message: string) =>
    Either.left(
      Errors.make(422, "invalid_schedule", `Invalid schedule: ${message}`, { issues: [{ path: at + path, message }] })
    )
  if (deliverAt !== undefined && delay !== undefined) return invalid("deliverAt", "Give deliverAt or delay, not both")
  let due: number
  if (deliverAt !== undefined) {
    const parsed = RFC3339.test(deliverAt) ? Date.parse(deliverAt) : Number.NaN
    if (!Number.isFinite(parsed)) {
      return invalid(
        "deliverAt",
        `Expected an RFC 3339 date-time (2026-01-02T03:04:05Z), got ${JSON.stringify(deliverAt)}`
      )
    }
    due = parsed
  } else {
    // `Duration.decode` reads "-5 seconds" as zero: a negative delay is refused here instead.
    const decoded = delay!.startsWith("-") ? Option.none() : Duration.decodeUnknown(delay)
    const millis = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : Number.NaN
    if (!Number.isFinite(millis) || millis < 0) {
      return invalid("delay", `Expected a duration such as "30 seconds" or "5 minutes", got ${JSON.stringify(delay)}`)
    }
    due = now + Math.ceil(millis)
  }
  if (due - now > maxDelayMs) {
    const path = deliverAt !== undefined ? "deliverAt" : "delay"
    const message = `At most ${Duration.format(Duration.millis(maxDelayMs))} ahead (server.maxDelay), got ${
      Duration.format(Duration.millis(due - now))
    }`
    return Either.left(Errors.make(422, "schedule_beyond_horizon", `Schedule beyond the horizon: ${message}`, {
      issues: [{ path: at + path, message }]
    }))
  }
  return Either.right(due)
}

/**
 * The body of a `202`/`200` answer to `POST /v1/events`: what `Schema.encodeSync(Api.EventAccepted)`
 * gives (the same properties in the same order), built directly.
 *
 * @since 0.1.0
 * @category encoding
 */
export const acceptedBody = (enqueued: Store.Enqueued): typeof Api.EventAccepted.Encoded => ({
  id: enqueued.eventId,
  duplicate: !enqueued.created,
  deliveries: enqueued.deliveries.map((d) => ({ id: d.id, target: d.target, status: d.status }))
})

/** How often a run of refused enqueues is logged (the first refusal after a quiet spell at once). */
const refusalLogIntervalMs = 10_000

/**
 * Counts the events ingest could not store (`fanout_ingest_refused_total{reason}`) and logs them
 * without flooding: a warning for the first refusal of a reason, then at most one line per
 * {@link refusalLogIntervalMs} with how many were refused since the last line.
 */
const makeRefusals = () => {
  const seen = new Map<string, { loggedAt: number; since: number }>()
  const count = (reason: string, events: number, line: (since: number) => Effect.Effect<void>): Effect.Effect<void> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      Metrics.ingestRefused.unsafeUpdate(events, [MetricLabel.make("reason", reason)])
      const state = seen.get(reason)
      if (state !== undefined && now - state.loggedAt < refusalLogIntervalMs) {
        state.since += events
        return Effect.void
      }
      const since = (state?.since ?? 0) + events
      seen.set(reason, { loggedAt: now, since: 0 })
      return line(since)
    })
  return {
    /** Counts and logs `error`, which the producer is answered with `answer`. */
    refused: (error: Store.StoreError, answer: Errors.ApiFailure) =>
      count(error.reason.toLowerCase(), 1, (since) =>
        Effect.logWarning(
          `fanout server: the store refused ${
            since === 1 ? "an event" : `${since} events`
          } (${error.reason}); answering ${answer.error.status} ${answer.error.code}, nothing stored for ${
            since === 1 ? "it" : "them"
          }`
        ).pipe(Effect.annotateLogs({ reason: error.reason, operation: error.operation, error: error.message }))),
    full: (events: number) =>
      count("queue_full", events, (since) =>
        Effect.logWarning(
          `fanout server: the queue is at its bound (server.maxQueueDepth); answered ${
            since === 1 ? "an event" : `${since} events`
          } 503 queue_full`
        ))
  }
}

/**
 * The ingest rules over the `Outbox`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options:
    & Pick<ServerOptions.Options, "maxQueueDepth" | "queueCheckTtlMs" | "overloadRetryAfterSeconds" | "maxBatch">
    & { readonly maxDelayMs?: number | undefined }
): Effect.Effect<Service, never, Outbox.Outbox> =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const maxDelayMs = options.maxDelayMs ?? ServerOptions.defaults.maxDelayMs
    /**
     * Later delivery: the due time of each prepared event sent with `deliverAt` / `delay`, from
     * `prepare` to `store` (kept out of the envelope; the store keeps it as the deliveries' due time).
     */
    const scheduled = new WeakMap<Event.Any, number>()
    const eventTypes = Option.getOrElse(yield* Effect.serviceOption(Schemas.EventTypes), () => Schemas.empty)
    const maxDepth = options.maxQueueDepth
    const cachedGauges = yield* Effect.cachedWithTTL(
      Effect.either(outbox.gauges),
      Duration.millis(options.queueCheckTtlMs)
    )

    const refusals = makeRefusals()

    /** 503 while the queue is at its bound (a reading at most `queueCheckTtl` old; an unreadable store lets enqueue decide). */
    const guardDepth: ((events: number) => Effect.Effect<void, Errors.ApiFailure>) | undefined = maxDepth === undefined
      ? undefined
      : (events) =>
        Effect.flatMap(cachedGauges, (stats) =>
          stats._tag === "Right" && stats.right.depth >= maxDepth
            ? Effect.zipRight(
              refusals.full(events),
              Effect.fail(Errors.unavailable(
                "queue_full",
                `The queue holds ${stats.right.depth} deliveries (limit ${maxDepth}); retry later`,
                options.overloadRetryAfterSeconds
              ))
            )
            : Effect.void)

    const toEvent = (input: EventInput, id: string, now: number): Event.Any => ({
      id,
      type: input.type,
      ...(input.key !== undefined ? { key: input.key } : {}),
      payload: input.payload,
      headers: input.headers ?? {},
      createdAt: DateTime.unsafeMake(now)
    })

    const enqueue = (event: Event.Any) =>
      outbox.enqueue(event, scheduleFor(event)).pipe(
        // Once the store has it, the answer must get out: never cut an enqueue short.
        Effect.uninterruptible,
        Effect.catchAll((error) =>
          error._tag === "NoRouteError"
            ? Effect.fail(Errors.noRoute([noRouteIssue(error.type, "type")]))
            : error._tag === "ConflictError"
            ? Effect.fail(Errors.conflict(error.eventId))
            : Effect.suspend(() => {
              const answer = Errors.fromStoreError(error)
              return Effect.zipRight(refusals.refused(error, answer), Effect.fail(answer))
            })
        )
      )

    const scheduleFor = (event: Event.Any): Outbox.EnqueueOptions | undefined => {
      const availableAt = scheduled.get(event)
      return availableAt === undefined ? undefined : { availableAt }
    }

    const location = (id: string) => ({ location: `/v1/events/${encodeURIComponent(id)}` })

    const summaries = (enqueued: Store.Enqueued): Array<Summary> =>
      enqueued.deliveries.map((d) => ({ id: d.id, target: d.target, status: d.status }))

    const prepare = (
      body: unknown,
      key: string | undefined,
      now: number
    ): Either.Either<Event.Any, Errors.ApiFailure> => {
      const decoded = decodeEventInput(body)
      if (Either.isLeft(decoded)) return Either.left(decoded.left)
      const input = decoded.right
      if (input.id !== undefined && key !== undefined && input.id !== key) {
        return Either.left(Errors.invalidRequest([{ path: "id", message: "Differs from the Idempotency-Key header" }]))
      }
      const event = toEvent(input, input.id ?? key ?? newEventId(now), now)
      if (!outbox.router.hasRoute(event.type)) return Either.left(Errors.noRoute([noRouteIssue(event.type, "type")]))
      const due = scheduleOf(input, now, maxDelayMs)
      if (Either.isLeft(due)) return Either.left(due.left)
      const checked = Schemas.check(eventTypes, event)
      if (Either.isLeft(checked)) return Either.left(schemaMismatch([{ at: "/payload", mismatch: checked.left }]))
      if (due.right !== undefined) scheduled.set(event, due.right)
      return Either.right(event)
    }

    const prepareBatch = (body: unknown, now: number): Either.Either<ReadonlyArray<Event.Any>, Errors.ApiFailure> => {
      const decoded = decodeBatchInput(body)
      if (Either.isLeft(decoded)) return Either.left(decoded.left)
      const input = decoded.right
      if (input.events.length > options.maxBatch) {
        return Either.left(Errors.invalidRequest([{
          path: "events",
          message: `At most ${options.maxBatch} events per batch, got ${input.events.length}`
        }]))
      }
      const unrouted = input.events.flatMap((e, i) =>
        outbox.router.hasRoute(e.type) ? [] : [noRouteIssue(e.type, `events[${i}].type`)]
      )
      if (unrouted.length > 0) return Either.left(Errors.noRoute(unrouted))
      const dues: Array<number | undefined> = []
      for (let i = 0; i < input.events.length; i++) {
        const due = scheduleOf(input.events[i]!, now, maxDelayMs, `events[${i}].`)
        // All or nothing, as for payloads: one bad schedule refuses the whole batch.
        if (Either.isLeft(due)) return Either.left(due.left)
        dues.push(due.right)
      }
      const events = input.events.map((e) => toEvent(e, e.id ?? newEventId(now), now))
      events.forEach((event, i) => {
        const due = dues[i]
        if (due !== undefined) scheduled.set(event, due)
      })
      const mismatches = events.flatMap((event, i) => {
        const checked = Schemas.check(eventTypes, event)
        return Either.isLeft(checked) ? [{ at: `/events/${i}/payload`, mismatch: checked.left }] : []
      })
      // All or nothing: one payload that does not match refuses the whole batch.
      return mismatches.length > 0 ? Either.left(schemaMismatch(mismatches, events.length)) : Either.right(events)
    }

    const store = (event: Event.Any) =>
      guardDepth === undefined ? enqueue(event) : Effect.zipRight(guardDepth(1), enqueue(event))

    const storeAll = (events: ReadonlyArray<Event.Any>) =>
      Effect.gen(function*() {
        const results = yield* Effect.forEach(
          events,
          (event) =>
            enqueue(event).pipe(
              Effect.match({
                onFailure: (failure): typeof Api.BatchItem.Type => ({
                  id: event.id,
                  // Another event under this id: not stored, and retrying will not store it.
                  status: failure.error.status === 409 ? "conflict" : "failed",
                  error: failure.error
                }),
                onSuccess: (enqueued): typeof Api.BatchItem.Type => ({
                  id: enqueued.eventId,
                  status: enqueued.created ? "accepted" : "duplicate",
                  deliveries: summaries(enqueued)
                })
              })
            ),
          { concurrency: 16 }
        )
        const failed = results.filter((r) => r.status === "failed")
        if (failed.length > 0) {
          const first = failed[0]!.error!
          return failureAnswer(
            Errors.make(
              first.status >= 500 ? first.status : 503,
              first.code,
              `${failed.length} of ${results.length} events were not stored (${first.message}); retry those with the same ids`,
              {
                headers: first.status === 503 ? { "retry-after": "1" } : {},
                extra: { results: encodeBatchItems(results) }
              }
            )
          )
        }
        return { status: 202, headers: {}, body: encodeBatchAccepted({ results }) } satisfies Answer
      })

    const storeBatch = (events: ReadonlyArray<Event.Any>) =>
      guardDepth === undefined ? storeAll(events) : Effect.zipRight(guardDepth(events.length), storeAll(events))

    const accepted = (enqueued: Store.Enqueued): Answer => ({
      status: enqueued.created ? 202 : 200,
      headers: location(enqueued.eventId),
      body: acceptedBody(enqueued)
    })

    return {
      prepare,
      prepareBatch,
      store,
      storeBatch,
      accept: (body, key) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.flatMap(prepare(body, key, now), store)),
      acceptBatch: (body) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.flatMap(prepareBatch(body, now), storeBatch)),
      accepted,
      location,
      summaries
    } satisfies Service
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options:
    & Pick<ServerOptions.Options, "maxQueueDepth" | "queueCheckTtlMs" | "overloadRetryAfterSeconds" | "maxBatch">
    & { readonly maxDelayMs?: number | undefined }
): Layer.Layer<Ingest, never, Outbox.Outbox> => Layer.effect(Ingest, make(options))

// ---------------------------------------------------------------------------------------------
// The lean listener
// ---------------------------------------------------------------------------------------------

/**
 * A `node:http` request listener.
 *
 * @since 0.1.0
 * @category models
 */
export type Listener = (req: IncomingMessage, res: ServerResponse) => void

const decodeSendHeaders = Schema.decodeUnknownEither(Api.SendHeaders)

/** Does this query string (after `?`) possibly name `wait` (also percent-encoded)? Such requests go to the Effect app. */
const mayWait = (query: string): boolean => query.includes("wait") || query.includes("%") || query.includes("WAIT")

/** The request's URL as the platform's tracer records it (credentials redacted); none when unparseable. */
const requestUrl = (req: IncomingMessage): URL | undefined => {
  const protocol = req.headers["x-forwarded-proto"] === "https" ? "https" : "http"
  try {
    const url = new URL(req.url ?? "/", `${protocol}://${req.headers.host ?? "localhost"}`)
    if (url.username !== "" || url.password !== "") {
      url.username = "REDACTED"
      url.password = "REDACTED"
    }
    return url
  } catch {
    return undefined
  }
}

/** The headers the platform's Node server sends with an `HttpServerResponse.unsafeJson`, in its order. */
const headersOf = (answer: Answer, text: string): Record<string, string> => ({
  ...answer.headers,
  "content-type": "application/json",
  "content-length": String(Buffer.byteLength(text))
})

/** What a request turns into before the store: one event, or a batch's events. */
type Prepared =
  | { readonly _tag: "One"; readonly event: Event.Any }
  | { readonly _tag: "Batch"; readonly events: ReadonlyArray<Event.Any> }

/**
 * The lean listener for `POST /v1/events` (without a `wait` query parameter) and
 * `POST /v1/events:batch`; every other request goes to `fallback` (the Effect application's
 * listener). Answers exactly as the `HttpApi` handlers do.
 *
 * Everything before the store is plain synchronous code and Node callbacks (API key, rate limit,
 * `Idempotency-Key`, media type, body, JSON, schema, route); a request refused there runs no
 * Effect at all. A request that reaches the store runs one Effect on the application's runtime
 * (queue-depth guard, enqueue, answer). With tracing on, the `http.server` span the platform's
 * server would open is opened when the request arrives and ended with its answer, and the enqueue
 * runs under it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeListener = (
  options: Body.Limits,
  fallback: Listener
): Effect.Effect<Listener, never, Ingest | Auth.AuthCheck> =>
  Effect.gen(function*() {
    const ingest = yield* Ingest
    const { verify } = yield* Auth.AuthCheck
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const runFork = Runtime.runFork(runtime)
    const traced = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerEnabled)
    const noBody = {}

    /**
     * Everything before the store, then `done` (once; at once when refused before the body is read).
     * Returns a function that stops reading the body.
     */
    const prepare = (
      req: IncomingMessage,
      batch: boolean,
      now: number,
      done: (prepared: Either.Either<Prepared, Errors.ApiFailure>) => void
    ): () => void => {
      const caller = verify(req.headers.authorization, req.socket.remoteAddress, now)
      if (Either.isLeft(caller)) {
        done(Either.left(caller.left))
        return noop
      }
      let idempotencyKey: string | undefined
      const key = req.headers["idempotency-key"]
      if (!batch && key !== undefined) {
        const decoded = decodeSendHeaders({ "idempotency-key": key })
        if (Either.isLeft(decoded)) {
          done(Either.left(Errors.invalidRequest(Errors.issuesOf(decoded.left))))
          return noop
        }
        idempotencyKey = decoded.right["idempotency-key"]
      }
      return Body.readJsonWith(req, options, noBody, (body) => {
        if (Either.isLeft(body)) return done(Either.left(body.left))
        if (batch) {
          const events = ingest.prepareBatch(body.right, now)
          return done(Either.map(events, (events): Prepared => ({ _tag: "Batch", events })))
        }
        const event = ingest.prepare(body.right, idempotencyKey, now)
        done(Either.map(event, (event): Prepared => ({ _tag: "One", event })))
      })
    }

    const store = (prepared: Prepared): Effect.Effect<Answer, Errors.ApiFailure> =>
      prepared._tag === "One"
        ? Effect.map(ingest.store(prepared.event), ingest.accepted)
        : ingest.storeBatch(prepared.events)

    /** Failures as answers; a defect is logged (as the `HttpApi` path logs it) and answered 500. */
    const answer = (effect: Effect.Effect<Answer, Errors.ApiFailure>): Effect.Effect<Answer> =>
      Effect.catchAllCause(effect, (cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) return Effect.succeed(failureAnswer(failure.value))
        return Effect.as(Effect.logError("fanout server: defect", cause), failureAnswer(Errors.internal()))
      })

    // Tracing: the span `HttpMiddleware.tracer` opens on the platform's server, made as `Effect.useSpan`
    // makes it (the runtime's tracer, clock, span annotations and links), from the request's arrival
    // to its answer; the enqueue runs under it.
    const tracer = yield* Effect.tracer
    const timing = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerTimingEnabled)
    const annotations = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerSpanAnnotations)
    const links = Chunk.toReadonlyArray(FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerSpanLinks))
    const redactedNames = FiberRefs.getOrDefault(runtime.fiberRefs, Headers.currentRedactedNames)
    const ambientParent = Context.getOption(runtime.context, Tracer.ParentSpan)
    const nanos = () => timing ? clock.unsafeCurrentTimeNanos() : BigInt(0)

    const startSpan = (req: IncomingMessage, route: string): Tracer.Span => {
      // Only with tracing on: a typed copy of Node's headers (lower-case names already).
      const headers = Headers.fromInput(req.headers)
      const parent = HttpTraceContext.fromHeaders(headers)
      const span = tracer.span(
        `http.server ${req.method}`,
        Option.isSome(parent) ? parent : ambientParent,
        Context.empty(),
        links,
        nanos(),
        "server",
        { kind: "server", captureStackTrace: false, ...(Option.isSome(parent) ? { parent: parent.value } : {}) }
      )
      HashMap.forEach(annotations, (value, key) => span.attribute(key, value))
      span.attribute("http.request.method", req.method ?? "POST")
      const url = requestUrl(req)
      if (url !== undefined) {
        span.attribute("url.full", url.toString())
        span.attribute("url.path", url.pathname)
        const query = url.search.slice(1)
        if (query !== "") span.attribute("url.query", query)
        span.attribute("url.scheme", url.protocol.slice(0, -1))
      }
      if (req.headers["user-agent"] !== undefined) span.attribute("user_agent.original", req.headers["user-agent"])
      for (const [name, value] of Object.entries(Headers.redact(headers, redactedNames))) {
        span.attribute(`http.request.header.${name}`, String(value))
      }
      if (req.socket.remoteAddress !== undefined) span.attribute("client.address", req.socket.remoteAddress)
      span.attribute("http.route", route)
      return span
    }

    const endSpan = (span: Tracer.Span, answer: Answer | undefined, headers: Record<string, string> | undefined) => {
      if (answer !== undefined && headers !== undefined) {
        span.attribute("http.response.status_code", answer.status)
        for (const [name, value] of Object.entries(Headers.redact(Headers.fromInput(headers), redactedNames))) {
          span.attribute(`http.response.header.${name}`, String(value))
        }
      }
      span.end(nanos(), answer === undefined ? Exit.interrupt(FiberId.none) : Exit.succeed(answer))
    }

    return (req, res) => {
      if (req.method !== "POST") return fallback(req, res)
      const url = req.url ?? "/"
      const q = url.indexOf("?")
      const path = q < 0 ? url : url.slice(0, q)
      const batch = path === "/v1/events:batch"
      if (!batch && (path !== "/v1/events" || (q >= 0 && mayWait(url.slice(q + 1))))) return fallback(req, res)

      const span = traced ? startSpan(req, batch ? "/v1/events::batch" : "/v1/events") : undefined
      let closed = false
      let fiber: Fiber.RuntimeFiber<Answer> | undefined
      let stopReading: () => void = noop
      res.once("close", () => {
        closed = true
        stopReading()
        if (!res.writableEnded) {
          if (fiber !== undefined) fiber.unsafeInterruptAsFork(FiberId.none)
          else if (span !== undefined) endSpan(span, undefined, undefined)
        }
      })
      const write = (a: Answer) => {
        const text = JSON.stringify(a.body)
        const headers = headersOf(a, text)
        if (span !== undefined) endSpan(span, a, headers)
        if (closed || res.writableEnded) return
        res.writeHead(a.status, headers)
        res.end(text)
      }
      const run = (effect: Effect.Effect<Answer>) => {
        fiber = runFork(span === undefined ? effect : Effect.withParentSpan(effect, span))
        fiber.addObserver((exit) => {
          if (Exit.isSuccess(exit)) return write(exit.value)
          if (span !== undefined) endSpan(span, undefined, undefined)
          // Only an interruption (the client went away) ends without an answer; never leave a request hanging.
          if (!closed && !res.writableEnded) res.destroy()
        })
      }
      const defect = (cause: unknown) => run(answer(Effect.die(cause)))
      try {
        stopReading = prepare(req, batch, clock.unsafeCurrentTimeMillis(), (prepared) => {
          try {
            if (Either.isLeft(prepared)) write(failureAnswer(prepared.left))
            else run(answer(store(prepared.right)))
          } catch (cause) {
            defect(cause)
          }
        })
      } catch (cause) {
        defect(cause)
      }
    }
  })

const noop = (): void => {}
