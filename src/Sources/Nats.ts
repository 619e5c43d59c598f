/**
 * A NATS JetStream source: a durable pull consumer on a stream and a subject filter, explicit ack.
 *
 * - The stream must exist; the durable consumer is created when missing (explicit ack, the
 *   subject filter) and used as it is when it exists.
 * - A stored message is acked with a confirmed ack (`ackAck`); a transient store failure is
 *   `nak`ed with a delay; a message that can never become an event is `term`ed (JetStream then
 *   publishes a `MSG_TERMINATED` advisory, the dead-letter path).
 * - Event id: the `Nats-Msg-Id` header when present, else `<stream>:<stream sequence>`.
 * - Lag: the consumer's `num_pending`.
 * - The client reconnects by itself; a closed connection fails the stream and {@link Source.run}
 *   reconnects with backoff. Closing the scope stops the consumer and drains the connection.
 *
 * @since 0.1.0
 */
import { AckPolicy, type ConsumerMessages, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect, Option, Redacted, Stream } from "effect"
import * as Source from "../Source.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly name: string
  readonly servers: string | ReadonlyArray<string>
  readonly stream: string
  readonly subject: string
  readonly durable: string
  /** Messages pulled ahead (default 256). */
  readonly batch?: number | undefined
  /** How long JetStream waits for an ack before redelivering (default 30 s). */
  readonly ackWait?: Duration.DurationInput | undefined
  readonly user?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  readonly token?: Redacted.Redacted<string> | undefined
}

const errorMessage = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/**
 * The event id of a message: its `Nats-Msg-Id` header, else `<stream>:<sequence>`.
 *
 * @since 0.1.0
 * @category ids
 */
export const idOf = (stream: string, msg: Pick<JsMsg, "headers" | "seq">): string => {
  const header = msg.headers?.get("Nats-Msg-Id")
  return header !== undefined && header !== "" ? header : `${stream}:${msg.seq}`
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Source.Source => {
  const servers = typeof options.servers === "string" ? [options.servers] : [...options.servers]
  const fail = (operation: string) => (cause: unknown) =>
    new Source.SourceError({ source: options.name, operation, message: errorMessage(cause) })
  const attempt = <A>(operation: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fail(operation) })

  const connection = Effect.acquireRelease(
    attempt("connect", () =>
      connect({
        servers,
        name: `fanout-source-${options.name}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...(options.user !== undefined ? { user: options.user } : {}),
        ...(options.password !== undefined ? { pass: Redacted.value(options.password) } : {}),
        ...(options.token !== undefined ? { token: Redacted.value(options.token) } : {})
      })),
    (nc: NatsConnection) =>
      Effect.promise(() => nc.drain().catch(() => undefined)).pipe(
        Effect.timeout("5 seconds"),
        Effect.ignore,
        Effect.zipRight(Effect.promise(() => nc.close().catch(() => undefined)))
      )
  )

  const connect_ = Effect.gen(function*() {
    const nc = yield* connection
    const jsm = yield* attempt("setup", () => jetstreamManager(nc))
    yield* attempt("setup", () => jsm.streams.info(options.stream))
    yield* attempt(
      "setup",
      () =>
        jsm.consumers.info(options.stream, options.durable).catch((error: unknown) =>
          (error as { name?: string }).name === "ConsumerNotFoundError" ||
            /consumer not found/i.test(errorMessage(error))
            ? jsm.consumers.add(options.stream, {
              durable_name: options.durable,
              ack_policy: AckPolicy.Explicit,
              filter_subject: options.subject,
              // JetStream takes nanoseconds.
              ack_wait: Duration.toMillis(Duration.decode(options.ackWait ?? "30 seconds")) * 1_000_000
            })
            : Promise.reject(error)
        )
    )
    const consumer = yield* attempt("setup", () => jetstream(nc).consumers.get(options.stream, options.durable))
    const messages: ConsumerMessages = yield* Effect.acquireRelease(
      attempt("read", () => consumer.consume({ max_messages: options.batch ?? 256 })),
      // `stop`, not `close`: close waits for the pending pull to expire.
      (m) => Effect.sync(() => m.stop())
    )
    const iterator = messages[Symbol.asyncIterator]()
    const toMessage = (msg: JsMsg): Source.Message => ({
      id: idOf(options.stream, msg),
      body: msg.data,
      redelivered: msg.redelivered,
      ack: Effect.flatMap(
        attempt("ack", () => msg.ackAck({ timeout: 5_000 })),
        (ok) => ok ? Effect.void : Effect.fail(fail("ack")("the server did not confirm the ack"))
      ),
      // Without a reason: servers before 2.10 do not take `+TERM <reason>` (no advisory then); the reason is in Fanout's log.
      reject: () => Effect.try({ try: () => msg.term(), catch: fail("term") }),
      retry: (delay) => Effect.try({ try: () => msg.nak(Duration.toMillis(delay)), catch: fail("nak") })
    })
    return {
      messages: Stream.repeatEffectOption(
        Effect.tryPromise({ try: () => iterator.next(), catch: (e) => Option.some(fail("read")(e)) }).pipe(
          Effect.flatMap((next) =>
            next.done === true ? Effect.fail(Option.none()) : Effect.succeed(toMessage(next.value))
          )
        )
      ),
      lag: Effect.map(attempt("lag", () => consumer.info()), (info) => info.num_pending)
    } satisfies Source.Connection
  })

  return {
    name: options.name,
    kind: "nats",
    describe: `nats stream ${options.stream} (${options.subject}) as ${options.durable}`,
    connect: connect_
  }
}
