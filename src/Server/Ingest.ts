/**
 * Ingest: what `POST /v1/events` and `POST /v1/events:batch` do, and a lean way to serve them.
 *
 * - {@link Ingest} (the service, {@link layer}) holds the rules both endpoints apply once a body has
 *   been read: schema decoding (`400` with paths), the `id` / `Idempotency-Key` check, routing
 *   (`422`), the queue-depth guard (`503` + `Retry-After`), the enqueue (store failures as `503` /
 *   `500`, a duplicate id `200`) and the answer (`202` + `Location`). The `HttpApi` handlers
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
import { Cause, Context, DateTime, Duration, Effect, Exit, FiberId, FiberRef, FiberRefs, Layer, Option, Runtime, Schema } from "effect"
import * as Event from "../Event.js"
import * as Outbox from "../Outbox.js"
import type * as Store from "../Store.js"
import * as Api from "./Api.js"
import * as Auth from "./Auth.js"
import * as Body from "./Body.js"
import * as Errors from "./Errors.js"
import type * as ServerOptions from "./Options.js"

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
   * Decodes a `POST /v1/events` body and stores its event (`idempotencyKey`: the decoded header).
   * Never interrupted once the store has it.
   */
  readonly accept: (body: unknown, idempotencyKey: string | undefined) => Effect.Effect<Store.Enqueued, Errors.ApiFailure>
  /** The answer to a stored event: `202` (new) or `200` (duplicate), with `Location`. */
  readonly accepted: (enqueued: Store.Enqueued) => Answer
  /** Decodes a `POST /v1/events:batch` body, stores its events and answers. */
  readonly acceptBatch: (body: unknown) => Effect.Effect<Answer, Errors.ApiFailure>
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

const noRouteIssue = (type: string, path: string): Errors.Issue => ({
  path,
  message: `No route matches the event type ${JSON.stringify(type)}`
})

const encodeAccepted = Schema.encodeSync(Api.EventAccepted)
const encodeBatchAccepted = Schema.encodeSync(Api.BatchAccepted)
const encodeBatchItems = Schema.encodeSync(Schema.Array(Api.BatchItem))

/**
 * The ingest rules over the `Outbox`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Pick<ServerOptions.Options, "maxQueueDepth" | "queueCheckTtlMs" | "overloadRetryAfterSeconds" | "maxBatch">
): Effect.Effect<Service, never, Outbox.Outbox> =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const maxDepth = options.maxQueueDepth
    const cachedStats = yield* Effect.cachedWithTTL(Effect.either(outbox.stats), Duration.millis(options.queueCheckTtlMs))

    /** 503 while the queue is at its bound (a reading at most `queueCheckTtl` old; an unreadable store lets enqueue decide). */
    const guardDepth: Effect.Effect<void, Errors.ApiFailure> = maxDepth === undefined
      ? Effect.void
      : Effect.flatMap(cachedStats, (stats) =>
        stats._tag === "Right" && stats.right.depth >= maxDepth
          ? Effect.fail(
            Errors.unavailable(
              "queue_full",
              `The queue holds ${stats.right.depth} deliveries (limit ${maxDepth}); retry later`,
              options.overloadRetryAfterSeconds
            )
          )
          : Effect.void)

    const toEvent = (input: typeof Api.EventInput.Type, id: string) =>
      Effect.map(DateTime.now, (now): Event.Any => ({
        id,
        type: input.type,
        ...(input.key !== undefined ? { key: input.key } : {}),
        payload: input.payload,
        headers: input.headers ?? {},
        createdAt: now
      }))

    const enqueue = (event: Event.Any) =>
      outbox.enqueue(event).pipe(
        // Once the store has it, the answer must get out: never cut an enqueue short.
        Effect.uninterruptible,
        Effect.mapError((error) =>
          error._tag === "NoRouteError" ? Errors.noRoute([noRouteIssue(error.type, "type")]) : Errors.fromStoreError(error)
        )
      )

    const location = (id: string) => ({ location: `/v1/events/${encodeURIComponent(id)}` })

    const summaries = (enqueued: Store.Enqueued): Array<Summary> =>
      enqueued.deliveries.map((d) => ({ id: d.id, target: d.target, status: d.status }))

    const accept = (body: unknown, key: string | undefined) =>
      Effect.gen(function*() {
        const input = yield* Errors.decode(Api.EventInput, body)
        if (input.id !== undefined && key !== undefined && input.id !== key) {
          return yield* Effect.fail(Errors.invalidRequest([{ path: "id", message: "Differs from the Idempotency-Key header" }]))
        }
        const event = yield* toEvent(input, input.id ?? key ?? (yield* Event.newId))
        if (!outbox.router.hasRoute(event.type)) return yield* Effect.fail(Errors.noRoute([noRouteIssue(event.type, "type")]))
        yield* guardDepth
        return yield* enqueue(event)
      })

    const accepted = (enqueued: Store.Enqueued): Answer => ({
      status: enqueued.created ? 202 : 200,
      headers: location(enqueued.eventId),
      body: encodeAccepted({ id: enqueued.eventId, duplicate: !enqueued.created, deliveries: summaries(enqueued) })
    })

    const acceptBatch = (body: unknown) =>
      Effect.gen(function*() {
        const input = yield* Errors.decode(Api.BatchInput, body)
        if (input.events.length > options.maxBatch) {
          return yield* Effect.fail(Errors.invalidRequest([{
            path: "events",
            message: `At most ${options.maxBatch} events per batch, got ${input.events.length}`
          }]))
        }
        const unrouted = input.events.flatMap((e, i) =>
          outbox.router.hasRoute(e.type) ? [] : [noRouteIssue(e.type, `events[${i}].type`)]
        )
        if (unrouted.length > 0) return yield* Effect.fail(Errors.noRoute(unrouted))
        yield* guardDepth
        const events = yield* Effect.forEach(input.events, (e) =>
          Effect.flatMap(e.id !== undefined ? Effect.succeed(e.id) : Event.newId, (id) => toEvent(e, id)))
        const results = yield* Effect.forEach(
          events,
          (event) =>
            enqueue(event).pipe(
              Effect.match({
                onFailure: (failure): typeof Api.BatchItem.Type => ({ id: event.id, status: "failed", error: failure.error }),
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

    return { accept, accepted, acceptBatch, location, summaries }
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Pick<ServerOptions.Options, "maxQueueDepth" | "queueCheckTtlMs" | "overloadRetryAfterSeconds" | "maxBatch">
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

const decodeSendHeaders = Schema.decodeUnknown(Api.SendHeaders)

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

/** Writes an answer as the platform's Node server writes an `HttpServerResponse.unsafeJson`. */
const write = (res: ServerResponse, answer: Answer, text: string): void => {
  if (res.writableEnded) return
  res.writeHead(answer.status, {
    ...answer.headers,
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text))
  })
  res.end(text)
}

/**
 * The lean listener for `POST /v1/events` and `POST /v1/events:batch`; every other request goes
 * to `fallback` (the Effect application's listener). Answers exactly as the `HttpApi` handlers do.
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
    const { check } = yield* Auth.AuthCheck
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const traced = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentTracerEnabled)

    const send = (req: IncomingMessage): Effect.Effect<Answer, Errors.ApiFailure> =>
      Effect.flatMap(check(req.headers.authorization), () => {
        const key = req.headers["idempotency-key"]
        const decoded: Effect.Effect<string | undefined, Errors.ApiFailure> = key === undefined
          ? Effect.succeed(undefined)
          : Effect.mapBoth(decodeSendHeaders({ "idempotency-key": key }), {
            onFailure: (error) => Errors.invalidRequest(Errors.issuesOf(error)),
            onSuccess: (headers) => headers["idempotency-key"]
          })
        return Effect.flatMap(decoded, (idempotencyKey) =>
          Effect.flatMap(Body.readJsonFrom(req, options), (body) =>
            Effect.map(ingest.accept(body, idempotencyKey), ingest.accepted)))
      })

    const sendBatch = (req: IncomingMessage): Effect.Effect<Answer, Errors.ApiFailure> =>
      Effect.flatMap(check(req.headers.authorization), () => Effect.flatMap(Body.readJsonFrom(req, options), ingest.acceptBatch))

    /** Failures as answers; a defect is logged (as the `HttpApi` path logs it) and answered 500. */
    const answer = (effect: Effect.Effect<Answer, Errors.ApiFailure>): Effect.Effect<Answer> =>
      Effect.catchAllCause(effect, (cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) return Effect.succeed(failureAnswer(failure.value))
        return Effect.as(Effect.logError("fanout server: defect", cause), failureAnswer(Errors.internal()))
      })

    const respond = (res: ServerResponse, effect: Effect.Effect<Answer>): Effect.Effect<void> =>
      Effect.map(effect, (a) => write(res, a, JSON.stringify(a.body)))

    /** The platform's `http.server` span (`HttpMiddleware.tracer`), with the same attributes. */
    const withSpan = (req: IncomingMessage, res: ServerResponse, route: string, effect: Effect.Effect<Answer>) =>
      Effect.withFiberRuntime<void>((fiber) => {
        // Node's headers are the platform's `Headers` (a plain record of lower-case names), as its own server passes them.
        const headers = req.headers as unknown as Headers.Headers
        const redactedNames = fiber.getFiberRef(Headers.currentRedactedNames)
        const url = requestUrl(req)
        return Effect.useSpan(`http.server ${req.method}`, {
          parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(headers)),
          kind: "server",
          captureStackTrace: false
        }, (span) => {
          span.attribute("http.request.method", req.method ?? "POST")
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
          return Effect.map(Effect.withParentSpan(effect, span), (a) => {
            const text = JSON.stringify(a.body)
            span.attribute("http.response.status_code", a.status)
            const responseHeaders = { ...a.headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) }
            for (const [name, value] of Object.entries(Headers.redact(Headers.fromInput(responseHeaders), redactedNames))) {
              span.attribute(`http.response.header.${name}`, String(value))
            }
            write(res, a, text)
          })
        })
      })

    return (req, res) => {
      if (req.method !== "POST") return fallback(req, res)
      const url = req.url ?? "/"
      const q = url.indexOf("?")
      const path = q < 0 ? url : url.slice(0, q)
      const batch = path === "/v1/events:batch"
      if (!batch && (path !== "/v1/events" || (q >= 0 && mayWait(url.slice(q + 1))))) return fallback(req, res)
      const program = answer(batch ? sendBatch(req) : send(req))
      const fiber = runFork(
        traced ? withSpan(req, res, batch ? "/v1/events::batch" : "/v1/events", program) : respond(res, program)
      )
      res.on("close", () => {
        if (!res.writableEnded) fiber.unsafeInterruptAsFork(FiberId.none)
      })
      fiber.addObserver((exit) => {
        // Only an interruption (the client went away) ends without an answer; never leave a request hanging.
        if (Exit.isFailure(exit) && !res.writableEnded && !res.destroyed) res.destroy()
      })
    }
  })
