/**
 * The HTTP API, declared once with `@effect/platform` `HttpApi`: the handlers (`Http.ts`), the
 * OpenAPI document (`/openapi.json`) and Swagger UI (`/docs`) all come from these schemas.
 *
 * Response bodies are produced by encoding with the schemas declared here, so the document
 * cannot drift from what the server sends.
 *
 * @since 0.1.0
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity, OpenApi } from "@effect/platform"
import { ParseResult, Schema } from "effect"
import * as Event from "../Event.js"
import { ErrorBody, ErrorDetail } from "./Errors.js"

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

const errorAt = (status: number, description: string) =>
  ErrorBody.annotations(HttpApiSchema.annotations({ status, description }))

/**
 * @since 0.1.0
 * @category errors
 */
export const BadRequest = errorAt(400, "Malformed JSON, or a field did not match the schema (`issues` names each bad field)")
/**
 * @since 0.1.0
 * @category errors
 */
export const Unauthorized = errorAt(401, "No valid API key (`Authorization: Bearer <key>`)")
/**
 * @since 0.1.0
 * @category errors
 */
export const NotFound = errorAt(404, "Unknown id")
/**
 * @since 0.1.0
 * @category errors
 */
export const PayloadTooLarge = errorAt(413, "The body is larger than the server's `maxBodyBytes`")
/**
 * @since 0.1.0
 * @category errors
 */
export const UnsupportedMediaType = errorAt(415, "The body is not `application/json`")
/**
 * `409` of `POST /v1/events`: the id is stored with other content (type, key or payload); nothing
 * was stored. The error, plus the stored event's `id` (`Location` points at it).
 *
 * @since 0.1.0
 * @category errors
 */
export const Conflict = Schema.Struct({
  error: ErrorDetail,
  id: Schema.String.annotations({ description: "The id under which the other event is stored" })
}).annotations({
  identifier: "Conflict",
  ...HttpApiSchema.annotations({
    status: 409,
    description: "An event with this id is already stored with other content (type, key or payload): nothing was stored. " +
      "`Location` is the stored event. (The same content again is `200` with `duplicate: true`.)"
  })
})

/**
 * @since 0.1.0
 * @category errors
 */
export const NoRoute = errorAt(
  422,
  "No route matches the event type (`no_route`), or the payload does not match its type's schema (`schema_mismatch`: " +
    "each issue's `path` is a JSON Pointer into the request body, like `/payload/qty`); nothing was stored"
)
/**
 * @since 0.1.0
 * @category errors
 */
export const TooManyRequests = errorAt(
  429,
  "The API key's rate limit is exhausted (`rate_limited`), or this client address failed authentication too often (`too_many_auth_failures`); see `Retry-After`"
)
/**
 * @since 0.1.0
 * @category errors
 */
export const Unavailable = errorAt(
  503,
  "The store is busy (locked by another writer), unreachable or out of space (disk full), or the queue is full; see `Retry-After`"
)

/**
 * An instant, as an ISO-8601 string.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Instant = Schema.String.annotations({ jsonSchema: { type: "string", format: "date-time" } })

/**
 * An instant in a query string or filter: ISO-8601 (`2025-01-31T12:00:00Z`) or epoch milliseconds;
 * decodes to epoch milliseconds.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TimeParam = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (s, _, ast) => {
    const n = /^\d{1,16}$/.test(s) ? Number(s) : Date.parse(s)
    return Number.isFinite(n)
      ? ParseResult.succeed(n)
      : ParseResult.fail(
        new ParseResult.Type(ast, s, `Expected an ISO-8601 instant or epoch milliseconds, got ${JSON.stringify(s.slice(0, 60))}`)
      )
  },
  encode: (n) => ParseResult.succeed(new Date(n).toISOString())
}).annotations({
  identifier: "Time",
  description: "An ISO-8601 instant or epoch milliseconds"
})

/** An id in a path (`/v1/events/:id`, a delivery id): looked up, never stored, so only its length is checked. */
const PathId = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/**
 * What a producer posts: an event without `createdAt` (the server stamps it). `id` is optional:
 * it comes from here, or from the `Idempotency-Key` header, or is a new UUIDv7.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventInput = Schema.Struct({
  id: Schema.optional(Event.Id).annotations({
    description: "The event id and idempotency key (or send `Idempotency-Key`): 1-200 characters of printable ASCII " +
      "0x21-0x7E, no spaces or control characters"
  }),
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  key: Schema.optional(Event.Id).annotations({
    description: "The ordering key: the same alphabet as `id`"
  }),
  payload: Schema.Unknown.annotations({ description: "Any JSON value" }),
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  deliverAt: Schema.optional(Schema.String).annotations({
    description: "Later delivery: no attempt before this RFC 3339 instant (a past one is due now); " +
      "at most `server.maxDelay` ahead (default 30 days), else 422. Not with `delay`"
  }),
  delay: Schema.optional(Schema.String).annotations({
    description: "Later delivery: no attempt before this long after the server received it " +
      "(a duration: \"30 seconds\", \"5 minutes\"); at most `server.maxDelay`, else 422. Not with `deliverAt`"
  })
}).annotations({ identifier: "EventInput" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const DeliveryState = Schema.Literal("pending", "in_flight", "delivered", "dead", "compensated").annotations({
  identifier: "DeliveryState"
})

/**
 * The state a delivery's view shows: a {@link DeliveryState}, or `scheduled` — a pending delivery
 * of an event sent with `deliverAt` or `delay` whose time has not come yet (no attempt made, no
 * input awaited). Derived when the view is read; the store keeps it as `pending`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DeliveryViewState = Schema.Literal("pending", "scheduled", "in_flight", "delivered", "dead", "compensated")
  .annotations({ identifier: "DeliveryViewState" })

/**
 * Why a delivery of a pipeline is held for good: an input it runs after (directly, or through
 * other held deliveries) is dead. It stays pending until that input is replayed and delivered.
 *
 * @since 0.1.0
 * @category schemas
 */
export const HeldBy = Schema.Struct({
  target: Schema.String.annotations({ description: "The dead input (the root of the chain)" }),
  reason: Schema.String.annotations({ description: "Why that input was dead-lettered" })
}).annotations({
  identifier: "HeldBy",
  description: "Held because an input (directly or transitively) is dead; replay it to release this delivery"
})

/**
 * One delivery (the event to one target) in an answer to `POST /v1/events`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DeliverySummary = Schema.Struct({
  id: Schema.String,
  target: Schema.String,
  status: DeliveryState,
  attempts: Schema.optional(Schema.Int),
  lastError: Schema.optional(Schema.String),
  lastErrorMessage: Schema.optional(Schema.String),
  heldBy: Schema.optional(HeldBy),
  shadow: Schema.optional(Schema.Literal(true)).annotations({
    description:
      "A shadow delivery (mirrored traffic): an observer, whose outcome never changes the answer of ?wait= (it is not waited for, and its dead letter is no 502)"
  })
}).annotations({ identifier: "DeliverySummary" })

/**
 * The answer to `POST /v1/events`: `202` when the event was stored now, `200` when this id was
 * already stored (nothing enqueued twice), `200` after `?wait=` once settled (`settled: true`):
 * every delivery finished, or held by a dead input (`heldBy`, pipelines).
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventAccepted = Schema.Struct({
  id: Schema.String,
  duplicate: Schema.Boolean,
  settled: Schema.optional(Schema.Boolean),
  deliveries: Schema.Array(DeliverySummary),
  /**
   * After `?wait=`, once every delivery is delivered: the event type's aggregate (a pipeline's
   * `aggregate`, or the configuration's `aggregates`), computed from the targets' answers.
   */
  aggregate: Schema.optional(Schema.Unknown.annotations({ description: "The aggregate of the targets' answers" }))
}).annotations({ identifier: "EventAccepted" })

/**
 * `502` of `?wait=all`: a delivery is dead. The error, plus every delivery's state (the deliveries
 * that run after the dead one carry `heldBy`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const DeliveryFailed = Schema.Struct({
  error: ErrorDetail,
  id: Schema.String,
  deliveries: Schema.Array(DeliverySummary)
}).annotations({
  identifier: "DeliveryFailed",
  ...HttpApiSchema.annotations({ status: 502, description: "`?wait=all`: a delivery was dead-lettered" })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const SendParams = Schema.Struct({
  wait: Schema.optional(
    Schema.Literal("all", "settled").annotations({ message: () => ({ message: "Expected \"all\" or \"settled\"", override: true }) })
  ).annotations({
    description: "Wait for the deliveries (bounded by the server's waitTimeout, or `Prefer: wait=<seconds>`): " +
      "`settled` until each is delivered, dead, or held by a dead input; `all` the same, but a dead delivery answers 502 at once"
  })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const SendHeaders = Schema.Struct({
  "idempotency-key": Schema.optional(Event.Id),
  prefer: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const BatchInput = Schema.Struct({
  events: Schema.Array(EventInput).pipe(Schema.minItems(1))
}).annotations({ identifier: "BatchInput" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const BatchItem = Schema.Struct({
  id: Schema.String,
  status: Schema.Literal("accepted", "duplicate", "conflict", "failed").annotations({
    description: "`accepted`: stored now; `duplicate`: already stored with the same content; `conflict`: the id is stored " +
      "with other content, nothing stored (`error` has code `conflict`, status 409); `failed`: not stored, retry it"
  }),
  deliveries: Schema.optional(Schema.Array(DeliverySummary)),
  error: Schema.optional(ErrorDetail)
}).annotations({ identifier: "BatchItem" })

/**
 * The answer to a batch: one item per event, in order. `202` when none failed; items that
 * conflict (`conflict`) were not stored, the others were.
 *
 * @since 0.1.0
 * @category schemas
 */
export const BatchAccepted = Schema.Struct({ results: Schema.Array(BatchItem) }).annotations({
  identifier: "BatchAccepted"
})

/**
 * `503` of a batch cut short by the store: which items were stored (`accepted`/`duplicate`) and
 * which were not (`failed`). Retry the failed ones with the same ids.
 *
 * @since 0.1.0
 * @category schemas
 */
export const BatchUnavailable = Schema.Struct({
  error: ErrorDetail,
  results: Schema.Array(BatchItem)
}).annotations({
  identifier: "BatchUnavailable",
  ...HttpApiSchema.annotations({ status: 503, description: "The store failed part-way: see each item" })
})

/**
 * @since 0.1.0
 * @category schemas
 */
export const AttemptView = Schema.Struct({
  number: Schema.Int,
  startedAt: Instant,
  durationMs: Schema.Number,
  outcome: Schema.String,
  status: Schema.optional(Schema.Int),
  errorTag: Schema.optional(Schema.String),
  message: Schema.optional(Schema.String),
  retryAfterMs: Schema.optional(Schema.Number),
  workerId: Schema.optional(Schema.String)
}).annotations({ identifier: "Attempt" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const DeliveryView = Schema.Struct({
  id: Schema.String,
  target: Schema.String,
  idempotencyKey: Schema.String,
  status: DeliveryViewState,
  attempts: Schema.Int,
  totalAttempts: Schema.Int,
  nextAttemptAt: Schema.optional(Instant),
  deliverAt: Schema.optional(Instant).annotations({
    description: "A `scheduled` delivery: when it falls due (no attempt starts before)"
  }),
  leaseExpiresAt: Schema.optional(Instant),
  lastError: Schema.optional(Schema.String),
  lastErrorMessage: Schema.optional(Schema.String),
  deadReason: Schema.optional(Schema.String),
  finishedAt: Schema.optional(Instant),
  after: Schema.Array(Schema.String).annotations({
    description: "The targets this delivery runs after (durable pipelines); empty for a plain delivery"
  }),
  waiting: Schema.Int.annotations({
    description: "Inputs not delivered yet; while > 0 a pending delivery is held (not attempted)"
  }),
  heldBy: Schema.optional(HeldBy),
  unconfigured: Schema.optional(Schema.Literal(true)).annotations({
    description:
      "The target is not in this server's configuration (removed since): no worker claims the delivery; it is held until the target is configured again"
  }),
  history: Schema.Array(AttemptView)
}).annotations({ identifier: "Delivery" })

/**
 * A shadow's answer compared with the answer of the primary it mirrors (a route's
 * `"shadow": { "<shadow>": "<primary>" }`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const ShadowComparisonView = Schema.Struct({
  shadow: Schema.String,
  primary: Schema.String,
  result: Schema.Literal("match", "differ", "pending").annotations({
    description: "`pending` until both deliveries are finished"
  }),
  compared: Schema.Array(Schema.Literal("status", "body")).annotations({
    description: "What was compared: the HTTP status always; the JSON body when both answers are stored"
  }),
  differences: Schema.Array(Schema.Struct({
    at: Schema.String.annotations({ description: "`status`, or a JSON Pointer into the body" }),
    primary: Schema.optional(Schema.Unknown),
    shadow: Schema.optional(Schema.Unknown)
  })).annotations({ description: "The first differences (at most 20)" })
}).annotations({ identifier: "ShadowComparison" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const EventView = Schema.Struct({
  id: Schema.String,
  type: Schema.String,
  key: Schema.optional(Schema.String),
  payload: Schema.Unknown,
  headers: Schema.Record({ key: Schema.String, value: Schema.String }),
  createdAt: Instant,
  enqueuedAt: Instant,
  deliveries: Schema.Array(DeliveryView),
  shadowComparisons: Schema.optional(Schema.Array(ShadowComparisonView)).annotations({
    description: "For each shadow that mirrors a primary: their answers compared"
  })
}).annotations({ identifier: "EventStatus" })

/**
 * The query of `GET /v1/events` (every field narrows; `since`/`until` bound the enqueue time).
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventSearchParams = Schema.Struct({
  type: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))).annotations({
    description: "The event type (exact)"
  }),
  status: Schema.optional(DeliveryState).annotations({
    description: "Events with a delivery in this state (to `target`, when given too)"
  }),
  target: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))).annotations({
    description: "Events with a delivery to this target"
  }),
  since: Schema.optional(TimeParam).annotations({ description: "Enqueued at or after" }),
  until: Schema.optional(TimeParam).annotations({ description: "Enqueued at or before" }),
  cursor: Schema.optional(Schema.String.pipe(Schema.maxLength(600))).annotations({
    description: "The `next` of the previous page (opaque)"
  }),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))).annotations({
    description: "1–1000, default 50"
  })
})

/**
 * One event of a search page: its id, type, when it was enqueued, and each delivery's state.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventListItem = Schema.Struct({
  id: Schema.String,
  type: Schema.String,
  enqueuedAt: Instant,
  deliveries: Schema.Array(Schema.Struct({ id: Schema.String, target: Schema.String, status: DeliveryState }))
}).annotations({ identifier: "EventListItem" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const EventPage = Schema.Struct({
  items: Schema.Array(EventListItem),
  next: Schema.optional(Schema.String).annotations({ description: "Pass as `cursor` for the next page; absent on the last" })
}).annotations({ identifier: "EventPage" })

const IdPath = Schema.Struct({ id: PathId })

/**
 * The answer to `POST /v1/events/{id}/targets/{name}/resend`: the delivery, pending again under its
 * new idempotency key.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Resent = Schema.Struct({
  id: Schema.String.annotations({ description: "The delivery (the same id: its history goes on)" }),
  eventId: Schema.String,
  target: Schema.String,
  status: Schema.Literal("pending"),
  idempotencyKey: Schema.String.annotations({
    description: "`<event id>:<target>:resend-<n>` after the n-th resend: the target can tell it from the original"
  }),
  resends: Schema.Int.annotations({ description: "How many times this delivery has been resent, this one included" })
}).annotations({ identifier: "Resent" })

/**
 * `409` of a resend: the delivery is still open (`delivery_open`: pending or in flight, it will be
 * sent anyway) or dead (`delivery_dead`: replay it instead). Nothing was changed.
 *
 * @since 0.1.0
 * @category errors
 */
export const ResendConflict = errorAt(
  409,
  "The delivery is not finished: still pending or in flight (`delivery_open`), or dead (`delivery_dead`: replay the dead letter instead); nothing was changed"
)

/**
 * `422` of a resend: the event has a delivery to this target, but this server's configuration no
 * longer names it (`target_not_configured`): no worker would send it.
 *
 * @since 0.1.0
 * @category errors
 */
export const TargetNotConfigured = errorAt(
  422,
  "The target is not in this server's configuration (`target_not_configured`): nothing was changed"
)

const ResendPath = Schema.Struct({ id: PathId, name: PathId })

/**
 * One event type of `GET /v1/event-types`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventTypeView = Schema.Struct({
  type: Schema.String,
  validated: Schema.Boolean.annotations({
    description: "Whether payloads of this type are checked at ingest (a declared schema); false: any JSON payload"
  }),
  kind: Schema.optional(Schema.Literal("json-schema", "effect-schema")).annotations({
    description: "`json-schema`: declared as a JSON Schema (draft 2020-12, Ajv); `effect-schema`: an Effect Schema (TypeScript configuration)"
  }),
  schema: Schema.optional(Schema.Unknown).annotations({ description: "The payload's JSON Schema" }),
  ref: Schema.optional(Schema.String).annotations({ description: "The component of the OpenAPI document that holds the schema" })
}).annotations({ identifier: "EventType" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const EventTypesView = Schema.Struct({
  types: Schema.Array(EventTypeView).annotations({
    description: "The declared types (validated), then the exact types routes name"
  }),
  patterns: Schema.Array(Schema.String).annotations({
    description: "Wildcard route patterns: their events are accepted with any payload, unless their type is declared"
  })
}).annotations({ identifier: "EventTypes" })

/**
 * @since 0.1.0
 * @category groups
 */
export class Events extends HttpApiGroup.make("events")
  .add(
    HttpApiEndpoint.post("send", "/v1/events")
      .setPayload(EventInput)
      .setUrlParams(SendParams)
      .setHeaders(SendHeaders)
      .addSuccess(EventAccepted.annotations({ description: "Stored; or, after `?wait=`, settled" }), { status: 202 })
      .addSuccess(EventAccepted.annotations({ description: "Already stored (same id), or settled after `?wait=`" }))
      .addError(BadRequest)
      .addError(PayloadTooLarge)
      .addError(UnsupportedMediaType)
      .addError(NoRoute)
      .addError(Conflict)
      .addError(DeliveryFailed)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Send an event to every target its type is routed to")
  )
  .add(
    // `::` is the router's escape for a literal `:`.
    HttpApiEndpoint.post("sendBatch", "/v1/events::batch")
      .setPayload(BatchInput)
      .addSuccess(BatchAccepted, { status: 202 })
      .addError(BadRequest)
      .addError(PayloadTooLarge)
      .addError(UnsupportedMediaType)
      .addError(NoRoute)
      .addError(BatchUnavailable)
      .annotate(OpenApi.Summary, "Send several events (all or nothing on validation)")
  )
  .add(
    HttpApiEndpoint.get("search", "/v1/events")
      .setUrlParams(EventSearchParams)
      .addSuccess(EventPage)
      .addError(BadRequest)
      .addError(Unavailable)
      .annotate(
        OpenApi.Summary,
        "Find events, newest first: by type, delivery status, target, enqueue time; page with cursor"
      )
  )
  .add(
    HttpApiEndpoint.get("status", "/v1/events/:id")
      .setPath(IdPath)
      .addSuccess(EventView)
      .addError(NotFound)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "An event's deliveries, with every attempt")
  )
  .add(
    HttpApiEndpoint.get("types", "/v1/event-types")
      .addSuccess(EventTypesView)
      .annotate(OpenApi.Summary, "The event types: their payload schemas (checked at ingest) and the route patterns")
  )
  .add(
    HttpApiEndpoint.post("resend", "/v1/events/:id/targets/:name/resend")
      .setPath(ResendPath)
      .addSuccess(Resent, { status: 202 })
      .addError(NotFound)
      .addError(ResendConflict)
      .addError(TargetNotConfigured)
      .addError(Unavailable)
      .annotate(
        OpenApi.Summary,
        "Send a delivered event to one target again, under a new idempotency key (<event id>:<target>:resend-<n>)"
      )
  )
{}

// ---------------------------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const DeadLetterView = Schema.Struct({
  id: Schema.String,
  eventId: Schema.String,
  eventType: Schema.String,
  target: Schema.String,
  idempotencyKey: Schema.String,
  reason: Schema.String,
  lastError: Schema.optional(Schema.String),
  lastErrorMessage: Schema.optional(Schema.String),
  attempts: Schema.Int,
  totalAttempts: Schema.Int,
  deadAt: Instant,
  enqueuedAt: Instant,
  shadow: Schema.optional(Schema.Literal(true)).annotations({
    description: "A shadow delivery's dead letter (mirrored traffic): listed apart from the ones that failed a primary"
  })
}).annotations({ identifier: "DeadLetter" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const DeadLetterPage = Schema.Struct({
  items: Schema.Array(DeadLetterView),
  next: Schema.optional(Schema.String)
}).annotations({ identifier: "DeadLetterPage" })

const Limit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))

/**
 * @since 0.1.0
 * @category schemas
 */
export const DeadLetterParams = Schema.Struct({
  target: Schema.optional(Schema.String),
  error: Schema.optional(Schema.String).annotations({ description: "The last attempt's outcome label: http_400, timeout, …" }),
  from: Schema.optional(TimeParam),
  to: Schema.optional(TimeParam),
  cursor: Schema.optional(Schema.String),
  limit: Schema.optional(Limit).annotations({ description: "1–1000, default 100" })
})

/**
 * The filter of a bulk replay (every field narrows; `{}` replays every dead letter).
 *
 * @since 0.1.0
 * @category schemas
 */
export const DeadLetterFilter = Schema.Struct({
  target: Schema.optional(Schema.String),
  error: Schema.optional(Schema.String),
  from: Schema.optional(Schema.Union(Schema.Number, TimeParam)),
  to: Schema.optional(Schema.Union(Schema.Number, TimeParam))
}).annotations({ identifier: "DeadLetterFilter" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const Replayed = Schema.Struct({ replayed: Schema.Int }).annotations({ identifier: "Replayed" })

/**
 * @since 0.1.0
 * @category groups
 */
export class DeadLetters extends HttpApiGroup.make("deadLetters")
  .add(
    HttpApiEndpoint.get("list", "/v1/dead-letters")
      .setUrlParams(DeadLetterParams)
      .addSuccess(DeadLetterPage)
      .addError(BadRequest)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Dead letters, oldest first; filter by target, error label, time; page with cursor")
  )
  .add(
    HttpApiEndpoint.post("replay", "/v1/dead-letters/:id/replay")
      .setPath(IdPath)
      .addSuccess(Replayed, { status: 202 })
      .addError(NotFound)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Replay one dead delivery (same idempotency key)")
  )
  .add(
    HttpApiEndpoint.post("replayMany", "/v1/dead-letters::replay")
      .setPayload(DeadLetterFilter)
      .addSuccess(Replayed, { status: 202 })
      .addError(BadRequest)
      .addError(PayloadTooLarge)
      .addError(UnsupportedMediaType)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Replay every dead letter matching a filter")
  )
  .add(
    HttpApiEndpoint.del("purge", "/v1/dead-letters/:id")
      .setPath(IdPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Delete one dead letter and its history")
  )
{}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

const Counts = Schema.Struct({
  pending: Schema.Int,
  inFlight: Schema.Int,
  delivered: Schema.Int,
  dead: Schema.Int,
  compensated: Schema.Int
}).annotations({ identifier: "Counts" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const TargetView = Schema.Struct({
  name: Schema.String,
  policy: Schema.Unknown.annotations({ description: "The resilience policy (durations in milliseconds)" }),
  circuit: Schema.Struct({
    state: Schema.Literal("closed", "open", "half_open"),
    consecutiveFailures: Schema.optional(Schema.Int),
    openUntil: Schema.optional(Instant)
  }),
  inFlight: Schema.Int,
  waiting: Schema.Int,
  queue: Schema.optional(Counts),
  recent: Schema.Struct({
    windowSeconds: Schema.Number,
    attempts: Schema.Int,
    successes: Schema.Int,
    perSecond: Schema.Number,
    latencyMs: Schema.optional(Schema.Struct({ p50: Schema.Number, p90: Schema.Number, p99: Schema.Number }))
  }).annotations({ description: "Attempts made by this process over the last window" })
}).annotations({ identifier: "Target" })

/**
 * @since 0.1.0
 * @category groups
 */
export const OrphanView = Schema.Struct({
  name: Schema.String,
  queue: Counts
}).annotations({
  identifier: "Orphan",
  description:
    "A target the store holds deliveries for that this server's configuration no longer names: its pending deliveries are held (no worker claims them) until the target is configured again"
})

/**
 * The answer to `DELETE /v1/targets/{name}/deliveries`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const OrphanPurged = Schema.Struct({
  target: Schema.String,
  deliveries: Schema.Int.annotations({ description: "Deliveries deleted (pending and dead; in-flight ones stay)" }),
  events: Schema.Int.annotations({ description: "Events deleted because they had no delivery left" })
}).annotations({ identifier: "OrphanPurged" })

/**
 * `409` of `DELETE /v1/targets/{name}/deliveries`: the target is configured; its deliveries are sent.
 *
 * @since 0.1.0
 * @category errors
 */
export const TargetConfigured = errorAt(
  409,
  "The target is in this server's configuration (`target_configured`): only an orphan's deliveries are purged here"
)

/**
 * @since 0.1.0
 * @category schemas
 */
export const TargetsView = Schema.Struct({
  targets: Schema.Array(TargetView),
  orphans: Schema.Array(OrphanView)
}).annotations({ identifier: "Targets" })

const QueueGauges = Schema.Struct({
  pending: Schema.Int,
  inFlight: Schema.Int,
  dead: Schema.Int
}).annotations({ identifier: "QueueGauges" })

/**
 * One target in `GET /v1/targets:live`: what `GET /v1/targets` says of it, with the queue as its
 * gauges only (pending, in flight, dead) and without the policy.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TargetLiveView = Schema.Struct({
  name: Schema.String,
  circuit: TargetView.fields.circuit,
  inFlight: Schema.Int,
  waiting: Schema.Int,
  queue: Schema.optional(QueueGauges),
  recent: TargetView.fields.recent
}).annotations({ identifier: "TargetLive" })

/**
 * The answer to `GET /v1/targets:live`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const TargetsLiveView = Schema.Struct({
  at: Instant,
  targets: Schema.Array(TargetLiveView),
  orphans: Schema.Array(Schema.Struct({ name: Schema.String, queue: QueueGauges }))
}).annotations({ identifier: "TargetsLive" })

/**
 * @since 0.1.0
 * @category groups
 */
export class Targets extends HttpApiGroup.make("targets")
  .add(
    HttpApiEndpoint.get("list", "/v1/targets")
      .addSuccess(TargetsView)
      .annotate(
        OpenApi.Summary,
        "Every target: policy, circuit state, in flight, queue, recent rate and latency; and the orphans, targets no longer configured that still hold deliveries"
      )
  )
  .add(
    // `::` is the router's escape for a literal `:`.
    HttpApiEndpoint.get("live", "/v1/targets::live")
      .addSuccess(TargetsLiveView)
      .annotate(
        OpenApi.Summary,
        "What a live view polls: every target's circuit, in flight, queue gauges (pending, in flight, dead; read from the store's partial indexes, so the cost follows the queue, not the history), recent rate and latency"
      )
  )
  .add(
    HttpApiEndpoint.del("purgeOrphan", "/v1/targets/:name/deliveries")
      .setPath(Schema.Struct({ name: PathId }))
      .addSuccess(OrphanPurged)
      .addError(TargetConfigured)
      .addError(Unavailable)
      .annotate(
        OpenApi.Summary,
        "Delete the pending and dead deliveries of a target this configuration no longer names (an orphan)"
      )
  )
{}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category schemas
 */
export const SourceView = Schema.Struct({
  name: Schema.String,
  kind: Schema.String.annotations({ description: "`nats`, `amqp` or `redis`" }),
  describe: Schema.String.annotations({ description: "Where it reads from (never with credentials)" }),
  state: Schema.Literal("connecting", "running", "reconnecting", "stopped"),
  received: Schema.Int,
  stored: Schema.Int.annotations({ description: "Messages whose event is in the store (duplicates included)" }),
  duplicates: Schema.Int.annotations({ description: "Redelivered messages whose event the store already held" }),
  acked: Schema.Int,
  rejected: Schema.Int.annotations({ description: "Sent to the broker's dead-letter path: they can never become events" }),
  redelivered: Schema.Int,
  retried: Schema.Int.annotations({ description: "Handed back to the broker after a transient store failure" }),
  lag: Schema.optional(Schema.Int).annotations({
    description: "Messages waiting at the broker at the last reading (JetStream num_pending, queue depth, group lag)"
  }),
  lastError: Schema.optional(Schema.String)
}).annotations({ identifier: "Source" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const SourcesView = Schema.Struct({ sources: Schema.Array(SourceView) }).annotations({ identifier: "Sources" })

/**
 * @since 0.1.0
 * @category groups
 */
export class Sources extends HttpApiGroup.make("sources")
  .add(
    HttpApiEndpoint.get("list", "/v1/sources")
      .addSuccess(SourcesView)
      .annotate(
        OpenApi.Summary,
        "The message sources this process consumes: received, stored, acked, rejected, redelivered, lag"
      )
  )
{}

// ---------------------------------------------------------------------------------------------
// Operations (no API key)
// ---------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category groups
 */
export class Ops extends HttpApiGroup.make("ops")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Liveness: the process answers")
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ready"), depth: Schema.Int }))
      .addError(errorAt(503, "The store is unreachable"))
      .annotate(OpenApi.Summary, "Readiness: the store answers (its migrations ran at start)")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .annotate(OpenApi.Summary, "Prometheus metrics")
  )
{}

// ---------------------------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------------------------

/**
 * The producer API key check (and per-key rate limit) on every `/v1` endpoint.
 *
 * @since 0.1.0
 * @category middleware
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("fanout/server/Authorization", {
  failure: Schema.Union(Unauthorized, TooManyRequests),
  security: { bearer: HttpApiSecurity.bearer }
}) {}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

/**
 * The routes the document shows with `{name}` where the router has a literal `:name`.
 */
const colonPaths: ReadonlyArray<readonly [string, string]> = [
  ["/v1/events:{batch}", "/v1/events:batch"],
  ["/v1/dead-letters:{replay}", "/v1/dead-letters:replay"],
  ["/v1/targets:{live}", "/v1/targets:live"]
]

/** The component every error response refers to. */
const errorComponent = {
  type: "object",
  required: ["error"],
  properties: { error: { $ref: "#/components/schemas/ErrorDetail" } },
  additionalProperties: false,
  description: "Every error response has this shape"
}

/**
 * Tidies the generated document: literal `:` paths; the platform's own decode error (never sent:
 * the server answers every error with {@link ErrorBody}) replaced by ours; unused components dropped.
 */
const tidyDocument = (spec: Record<string, any>): Record<string, any> => {
  const paths: Record<string, any> = {}
  for (const [path, item] of Object.entries(spec.paths ?? {})) {
    const fixed = colonPaths.find(([from]) => from === path)
    if (fixed !== undefined) {
      for (const op of Object.values(item as Record<string, any>)) {
        if (op && Array.isArray(op.parameters)) {
          op.parameters = op.parameters.filter((p: any) => !(p.in === "path"))
          if (op.parameters.length === 0) delete op.parameters
        }
      }
    }
    paths[fixed?.[1] ?? path] = item
  }
  const out = JSON.parse(
    JSON.stringify({ ...spec, paths }).replaceAll("#/components/schemas/HttpApiDecodeError", "#/components/schemas/Error")
  )
  const schemas: Record<string, unknown> = out.components?.schemas ?? {}
  schemas.Error = errorComponent
  delete schemas.HttpApiDecodeError
  // Drop the components nothing refers to any more (the platform's Issue, PropertyKey, …).
  const refsIn = (value: unknown): Array<string> =>
    [...JSON.stringify(value).matchAll(/"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!)
  const used = new Set<string>()
  let frontier = refsIn({ ...out, components: { ...out.components, schemas: {} } })
  while (frontier.length > 0) {
    const next: Array<string> = []
    for (const name of frontier) {
      if (used.has(name)) continue
      used.add(name)
      next.push(...refsIn(schemas[name]))
    }
    frontier = next
  }
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name]
  if (out.components !== undefined) out.components.schemas = schemas
  return out
}

/**
 * The whole API.
 *
 * @since 0.1.0
 * @category api
 */
export class Api extends HttpApi.make("fanout")
  .add(Events.middleware(Authorization))
  .add(DeadLetters.middleware(Authorization))
  .add(Targets.middleware(Authorization))
  .add(Sources.middleware(Authorization))
  .add(Ops)
  .annotateContext(OpenApi.annotations({
    title: "Fanout",
    version: "0.1.0",
    description: "Send one event to several HTTP APIs at once, reliably. Every error has the body " +
      "`{ \"error\": { \"code\", \"message\", \"status\", \"issues\"? } }`.",
    transform: tidyDocument
  }))
{}
