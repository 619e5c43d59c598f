/**
 * Sources: events that arrive on a message broker (NATS JetStream, RabbitMQ, Redis Streams)
 * instead of `POST /v1/events`.
 *
 * A {@link Source} opens a scoped {@link Connection}: a `Stream` of broker {@link Message}s, each
 * with an ack, a reject (to the broker's dead-letter path) and a retry (hand it back for later).
 * {@link run} turns each message into an event through an {@link Intake} (the same validation
 * and enqueue as `POST /v1/events` in the server; {@link outboxIntake} in a library program) and
 * **acks a message only after its event is stored** (the enqueue returned, i.e. after the group
 * commit that holds it). A crash between the two makes the broker redeliver the message; the
 * store's dedup by event id absorbs the repeat.
 *
 * - A message that can never become an event (not JSON, not the envelope, no route, another
 *   event under its id) is rejected to the broker's dead-letter mechanism and counted: never
 *   retried forever.
 * - A transient store failure hands the message back (with a delay where the broker has one).
 * - Backpressure: while the store's queue depth is at or above `maxQueueDepth`, no message is
 *   taken (at most `concurrency` are held, plus what the adapter's bounded prefetch holds).
 * - A lost connection is reopened with exponential backoff (capped), forever; un-acked messages
 *   come back from the broker. Interrupting {@link run} drains: the messages being stored finish
 *   and are acked, then the connection closes.
 *
 * @since 0.1.0
 */
import { Clock, Context, Data, DateTime, Duration, Effect, Either, Layer, Schedule, Schema, Stream } from "effect"
import type { Scope } from "effect"
import * as Event from "./Event.js"
import * as Metrics from "./Metrics.js"
import * as Outbox from "./Outbox.js"
import * as Store from "./Store.js"

// ---------------------------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------------------------

/**
 * A broker operation failed: connecting, setting up the consumer, reading, or settling a message.
 *
 * @since 0.1.0
 * @category errors
 */
export class SourceError extends Data.TaggedError("SourceError")<{
  readonly source: string
  readonly operation: string
  readonly message: string
}> {}

/**
 * One broker message.
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  /** The event id the broker gives this message (used when the body names none). */
  readonly id: string
  readonly body: Uint8Array
  /** The broker delivered it before. */
  readonly redelivered: boolean
  /** Settles it: stored, never again. */
  readonly ack: Effect.Effect<void, SourceError>
  /** Settles it to the broker's dead-letter path: it can never become an event. */
  readonly reject: (reason: string) => Effect.Effect<void, SourceError>
  /** Hands it back, to be delivered again after about `delay` (a transient store failure). */
  readonly retry: (delay: Duration.Duration) => Effect.Effect<void, SourceError>
}

/**
 * An open connection to the broker: its messages, and how many wait there (the lag).
 *
 * @since 0.1.0
 * @category models
 */
export interface Connection {
  readonly messages: Stream.Stream<Message, SourceError>
  readonly lag: Effect.Effect<number, SourceError>
}

/**
 * A source: `connect` opens a {@link Connection} in a scope (closed: the connection drained and closed).
 *
 * @since 0.1.0
 * @category models
 */
export interface Source {
  readonly name: string
  /** `nats`, `amqp`, `redis`, … */
  readonly kind: string
  /** Where it reads from, for logs and `/v1/sources` (never with credentials). */
  readonly describe: string
  readonly connect: Effect.Effect<Connection, SourceError, Scope.Scope>
}

// ---------------------------------------------------------------------------------------------
// The intake: message → event → store
// ---------------------------------------------------------------------------------------------

/**
 * The message can never become an event (the `code` is the HTTP API's: `invalid_request`,
 * `no_route`, `conflict`, `not_json`, …).
 *
 * @since 0.1.0
 * @category errors
 */
export class Rejected extends Data.TaggedError("SourceRejected")<{ readonly code: string; readonly message: string }> {}

/**
 * The store could not take the event now; the message goes back to the broker for later.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unavailable extends Data.TaggedError("SourceUnavailable")<{ readonly message: string }> {}

/**
 * How a decoded body becomes a stored event.
 *
 * @since 0.1.0
 * @category models
 */
export interface Intake {
  /** The event of a decoded body (the `POST /v1/events` envelope) at `now`, with `id` when it names none. */
  readonly prepare: (body: unknown, id: string, now: number) => Either.Either<Event.Any, Rejected>
  /** Stores it: `created: false` for a duplicate of a stored event. */
  readonly store: (event: Event.Any) => Effect.Effect<{ readonly created: boolean }, Rejected | Unavailable>
  /** The store's queue depth (for backpressure). */
  readonly depth: Effect.Effect<number, Unavailable>
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const EnvelopeInput = Schema.Struct({
  id: Schema.optional(Event.Id),
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  key: Schema.optional(Event.Id),
  payload: Schema.Unknown,
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
})
const decodeEnvelope = Schema.decodeUnknownEither(EnvelopeInput, {
  errors: "all",
  onExcessProperty: "error",
  exact: true
})

/**
 * The body with `id` when it names none (an envelope without `id`), else the body as it is.
 *
 * @since 0.1.0
 * @category intake
 */
export const withDefaultId = (body: unknown, id: string): unknown =>
  isPlainObject(body) && body.id === undefined ? { ...body, id } : body

/**
 * An {@link Intake} on the {@link Outbox.Outbox} alone, for a library program: the envelope's
 * schema (the one `POST /v1/events` decodes), a route for its type, `Outbox.enqueue`. (The
 * server's sources use its ingest rules instead, which answer the same.)
 *
 * @since 0.1.0
 * @category intake
 */
export const outboxIntake: Effect.Effect<Intake, never, Outbox.Outbox> = Effect.map(Outbox.Outbox, (outbox) => ({
  prepare: (body, id, now) => {
    const decoded = decodeEnvelope(withDefaultId(body, id))
    if (Either.isLeft(decoded)) {
      return Either.left(new Rejected({ code: "invalid_request", message: decoded.left.message }))
    }
    const input = decoded.right
    if (!outbox.router.hasRoute(input.type)) {
      return Either.left(
        new Rejected({ code: "no_route", message: `No route for event type ${JSON.stringify(input.type)}` })
      )
    }
    return Either.right({
      id: input.id ?? id,
      type: input.type,
      ...(input.key !== undefined ? { key: input.key } : {}),
      payload: input.payload,
      headers: input.headers ?? {},
      createdAt: DateTime.unsafeMake(now)
    })
  },
  store: (event) =>
    outbox.enqueue(event).pipe(
      Effect.uninterruptible,
      Effect.mapError((error) =>
        error._tag === "NoRouteError"
          ? new Rejected({ code: "no_route", message: `No route for event type ${JSON.stringify(error.type)}` })
          : error._tag === "ConflictError"
          ? new Rejected({ code: "conflict", message: `Another event is stored under id ${error.eventId}` })
          : Store.isRetryable(error) || error.reason !== "InvalidInput"
          ? new Unavailable({ message: `the store refused the event (${error.reason})` })
          : new Rejected({ code: "invalid_request", message: error.message })
      )
    ),
  depth: Effect.mapBoth(outbox.gauges, {
    onFailure: (error) => new Unavailable({ message: `the store's depth is unreadable (${error.reason})` }),
    onSuccess: (gauges) => gauges.depth
  })
}))

/**
 * How a message body becomes the input of {@link Intake.prepare}: by default the body is the
 * `POST /v1/events` envelope; with `type`, the whole body is the payload of an event of that type.
 *
 * @since 0.1.0
 * @category models
 */
export interface Mapping {
  readonly type?: string | undefined
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * The decoded body of a message (JSON, UTF-8) as {@link Intake.prepare} takes it, or why not.
 *
 * @since 0.1.0
 * @category intake
 */
export const decodeBody = (body: Uint8Array, mapping: Mapping = {}): Either.Either<unknown, Rejected> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(utf8.decode(body))
  } catch {
    return Either.left(new Rejected({ code: "not_json", message: "The message body is not JSON (UTF-8)" }))
  }
  return Either.right(mapping.type === undefined ? parsed : { type: mapping.type, payload: parsed })
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

/**
 * What a source did since the process started (`/v1/sources`, `fanout sources`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Counters {
  received: number
  stored: number
  /** Stored before: the broker redelivered a message whose event the store already held. */
  duplicates: number
  acked: number
  rejected: number
  redelivered: number
  retried: number
  /** Messages waiting at the broker at the last reading (none before the first). */
  lag: number | undefined
  state: "connecting" | "running" | "reconnecting" | "stopped"
  /** The last connection failure (no credentials: the adapters' messages never carry them). */
  lastError: string | undefined
}

/**
 * One source's counters, with its name, kind and where it reads.
 *
 * @since 0.1.0
 * @category models
 */
export interface View extends Readonly<Counters> {
  readonly name: string
  readonly kind: string
  readonly describe: string
}

/**
 * Every running source's counters in this process.
 *
 * @since 0.1.0
 * @category tags
 */
export class Stats extends Context.Tag("fanout/Source/Stats")<Stats, {
  readonly register: (source: Source) => Counters
  readonly list: Effect.Effect<ReadonlyArray<View>>
}>() {}

/**
 * @since 0.1.0
 * @category layers
 */
export const layerStats: Layer.Layer<Stats> = Layer.sync(Stats, () => {
  const all = new Map<string, { readonly source: Source; readonly counters: Counters }>()
  return {
    register: (source) => {
      const counters: Counters = {
        received: 0,
        stored: 0,
        duplicates: 0,
        acked: 0,
        rejected: 0,
        redelivered: 0,
        retried: 0,
        lag: undefined,
        state: "connecting",
        lastError: undefined
      }
      all.set(source.name, { source, counters })
      return counters
    },
    list: Effect.sync(() =>
      [...all.values()].map(({ counters, source }) => ({
        name: source.name,
        kind: source.kind,
        describe: source.describe,
        ...counters
      }))
    )
  }
})

// ---------------------------------------------------------------------------------------------
// Running a source
// ---------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  readonly intake: Intake
  readonly mapping?: Mapping | undefined
  /** Messages stored at once (default 32). */
  readonly concurrency?: number | undefined
  /** Stop taking messages while the queue depth is at or above this. */
  readonly maxQueueDepth?: number | undefined
  /** How old a depth reading may be (default 100 ms); also the wait between readings while full. */
  readonly depthCheck?: Duration.DurationInput | undefined
  /** Delay before a message handed back after a transient store failure comes again (default 1 s). */
  readonly retryDelay?: Duration.DurationInput | undefined
  /** How often the lag is read (default 5 s). */
  readonly lagEvery?: Duration.DurationInput | undefined
  /** Reconnect backoff: exponential from this (default 100 ms) … */
  readonly reconnectBase?: Duration.DurationInput | undefined
  /** … capped at this (default 5 s). */
  readonly reconnectMax?: Duration.DurationInput | undefined
}

const outcome = (source: string, name: string) =>
  Metrics.labelled(Metrics.sourceMessages, "source", source).tagged("outcome", name)

/**
 * Runs a source until interrupted (then drains): every message stored, then acked; rejected to
 * the dead-letter path when it can never become an event; handed back on a transient failure.
 * Connection failures are logged and retried with backoff forever, so it never fails.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (source: Source, options: RunOptions): Effect.Effect<never, never, Stats> =>
  Effect.gen(function*() {
    const stats = yield* Stats
    const counters = stats.register(source)
    const { intake } = options
    const mapping = options.mapping ?? {}
    const concurrency = options.concurrency ?? 32
    const retryDelay = Duration.decode(options.retryDelay ?? "1 second")
    const depthCheck = Duration.decode(options.depthCheck ?? "100 millis")
    const labels = {
      received: outcome(source.name, "received"),
      stored: outcome(source.name, "stored"),
      acked: outcome(source.name, "acked"),
      rejected: outcome(source.name, "rejected"),
      redelivered: outcome(source.name, "redelivered"),
      retried: outcome(source.name, "retried")
    }
    const lagGauge = Metrics.labelled(Metrics.sourceLag, "source", source.name)
    const count = (name: keyof typeof labels) => {
      counters[name]++
      labels[name].unsafeUpdate(1, [])
    }
    const annotations = { source: source.name, kind: source.kind }

    // Backpressure: wait (without taking the message's slot from the stream) while the queue is full.
    const max = options.maxQueueDepth
    const cachedDepth = yield* Effect.cachedWithTTL(Effect.either(intake.depth), depthCheck)
    const gate: Effect.Effect<void> = max === undefined ? Effect.void : cachedDepth.pipe(
      Effect.repeat({
        schedule: Schedule.spaced(depthCheck),
        until: (depth) => Either.isLeft(depth) || depth.right < max
      }),
      Effect.asVoid
    )

    const settle = (what: string, effect: Effect.Effect<void, SourceError>) =>
      Effect.catchAll(effect, (error) =>
        // The message stays unsettled at the broker: it comes back (after a reconnect, a timeout, a reclaim).
        Effect.logWarning(`fanout source: could not ${what} a message (${error.message}); the broker will redeliver it`)
          .pipe(Effect.annotateLogs(annotations)))

    const reject = (message: Message, why: Rejected) =>
      Effect.zipRight(
        Effect.logWarning(`fanout source: rejected a message to the dead-letter path (${why.code}: ${why.message})`)
          .pipe(
            Effect.annotateLogs({ ...annotations, messageId: message.id })
          ),
        settle("reject", Effect.tap(message.reject(`${why.code}: ${why.message}`), () => count("rejected")))
      )

    const handle = (message: Message): Effect.Effect<void> =>
      Effect.gen(function*() {
        count("received")
        if (message.redelivered) count("redelivered")
        const body = decodeBody(message.body, mapping)
        if (Either.isLeft(body)) return yield* reject(message, body.left)
        const now = yield* Clock.currentTimeMillis
        const event = intake.prepare(body.right, message.id, now)
        if (Either.isLeft(event)) return yield* reject(message, event.left)
        yield* Effect.annotateCurrentSpan({ "fanout.event.id": event.right.id, "fanout.event.type": event.right.type })
        const stored = yield* Effect.either(intake.store(event.right))
        if (Either.isLeft(stored)) {
          const error = stored.left
          if (error._tag === "SourceRejected") return yield* reject(message, error)
          count("retried")
          yield* Effect.logWarning(`fanout source: ${error.message}; the message goes back to the broker`).pipe(
            Effect.annotateLogs(annotations)
          )
          return yield* settle("hand back", message.retry(retryDelay))
        }
        count("stored")
        if (!stored.right.created) counters.duplicates++
        yield* settle("ack", Effect.tap(message.ack, () => count("acked")))
      }).pipe(
        // Once taken, a message is stored and settled before a shutdown closes the connection.
        Effect.uninterruptible,
        Effect.withSpan("fanout.source.message", {
          kind: "consumer",
          attributes: {
            "fanout.source": source.name,
            "messaging.system": source.kind,
            "messaging.message.id": message.id
          },
          captureStackTrace: false
        })
      )

    const lagEvery = Duration.decode(options.lagEvery ?? "5 seconds")
    const session = Effect.scoped(Effect.gen(function*() {
      const connection = yield* source.connect
      counters.state = "running"
      counters.lastError = undefined
      yield* Effect.logInfo(`fanout source: consuming ${source.describe}`).pipe(Effect.annotateLogs(annotations))
      yield* connection.lag.pipe(
        Effect.tap((lag) =>
          Effect.sync(() => {
            counters.lag = lag
            lagGauge.unsafeUpdate(lag, [])
          })
        ),
        Effect.ignore,
        Effect.repeat(Schedule.spaced(lagEvery)),
        Effect.forkScoped
      )
      yield* connection.messages.pipe(
        Stream.mapEffect((message) => Effect.zipRight(gate, handle(message)), { concurrency, unordered: true }),
        Stream.runDrain
      )
      return yield* new SourceError({ source: source.name, operation: "read", message: "the message stream ended" })
    }))

    const backoff = Schedule.exponential(Duration.decode(options.reconnectBase ?? "100 millis")).pipe(
      Schedule.either(Schedule.spaced(Duration.decode(options.reconnectMax ?? "5 seconds"))),
      Schedule.resetAfter("30 seconds")
    )
    return yield* session.pipe(
      Effect.tapError((error) =>
        Effect.zipRight(
          Effect.sync(() => {
            counters.state = "reconnecting"
            counters.lastError = `${error.operation}: ${error.message}`
          }),
          Effect.logWarning(`fanout source: ${error.operation} failed (${error.message}); reconnecting`).pipe(
            Effect.annotateLogs(annotations)
          )
        )
      ),
      Effect.retry(backoff),
      Effect.orDie,
      Effect.ensuring(Effect.sync(() => {
        counters.state = "stopped"
      })),
      Effect.onInterrupt(() =>
        Effect.logInfo("fanout source: drained and stopped").pipe(Effect.annotateLogs(annotations))
      )
    )
  })

/**
 * Runs sources in the background of a layer's scope (stopped and drained when it closes).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRun = (
  sources: ReadonlyArray<{ readonly source: Source; readonly options: RunOptions }>
): Layer.Layer<never, never, Stats> =>
  Layer.scopedDiscard(
    Effect.forEach(sources, ({ options, source }) => Effect.forkScoped(run(source, options)), { discard: true })
  )
