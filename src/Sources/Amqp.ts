/**
 * A RabbitMQ source (AMQP 0-9-1, `amqplib`): one queue, manual ack, a prefetch.
 *
 * - An existing queue is used as it is: checked passively (`checkQueue`), never redeclared with
 *   other arguments. A missing one is declared durable, with no arguments.
 * - A stored message is acked; a message that can never become an event is `nack`ed with
 *   `requeue=false`, so the queue's own dead-letter exchange (`x-dead-letter-exchange`) gets it
 *   (without one, RabbitMQ drops it); a transient store failure requeues it after the delay.
 * - Event id: the `message-id` property when present, else the SHA-256 of the body (hex): two
 *   messages with the same body and no `message-id` are one event.
 * - Lag: the queue's ready messages (`messageCount`).
 * - The connection is named `fanout-source-<name>` (seen in `rabbitmqctl list_connections`). A
 *   closed connection or channel fails the stream and {@link Source.run} reconnects with backoff;
 *   un-acked messages are requeued by RabbitMQ. Closing the scope cancels the consumer, then
 *   closes the channel and the connection.
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { type Channel, type ChannelModel, connect, type ConsumeMessage } from "amqplib"
import { Effect, Redacted, Stream } from "effect"
import * as Source from "../Source.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly name: string
  /** `amqp://user:password@host:port/vhost` (redacted: it holds the password). */
  readonly url: Redacted.Redacted<string>
  readonly queue: string
  /** Messages delivered ahead of their acks (default 100). */
  readonly prefetch?: number | undefined
}

const errorMessage = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/**
 * The event id of a message: its `message-id` property, else the SHA-256 of its body.
 *
 * @since 0.1.0
 * @category ids
 */
export const idOf = (msg: Pick<ConsumeMessage, "properties" | "content">): string => {
  const id: unknown = msg.properties.messageId
  return typeof id === "string" && id !== "" ? id : createHash("sha256").update(msg.content).digest("hex")
}

/** An `amqp://` URL without its credentials, for logs. */
const describeUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`
  } catch {
    return "amqp://?"
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Source.Source => {
  const prefetch = options.prefetch ?? 100
  const fail = (operation: string) => (cause: unknown) =>
    new Source.SourceError({ source: options.name, operation, message: errorMessage(cause) })
  const attempt = <A>(operation: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fail(operation) })
  const connectionName = `fanout-source-${options.name}`

  const open = Effect.gen(function*() {
    const conn: ChannelModel = yield* Effect.acquireRelease(
      attempt(
        "connect",
        () => connect(Redacted.value(options.url), { clientProperties: { connection_name: connectionName } })
      ),
      (c) => Effect.promise(() => c.close().catch(() => undefined))
    )
    // Errors come as `close` too; without a listener an `error` event would throw.
    conn.on("error", () => {})
    // The passive check on a channel of its own: a missing queue closes the channel it was asked on.
    const exists = yield* Effect.promise(async () => {
      const check = await conn.createChannel()
      check.on("error", () => {})
      try {
        await check.checkQueue(options.queue)
        await check.close().catch(() => undefined)
        return true
      } catch {
        return false
      }
    })
    const channel: Channel = yield* Effect.acquireRelease(
      attempt("setup", () => conn.createChannel()),
      (ch) => Effect.promise(() => ch.close().catch(() => undefined))
    )
    channel.on("error", () => {})
    if (!exists) yield* attempt("setup", () => channel.assertQueue(options.queue, { durable: true }))
    yield* attempt("setup", () => channel.prefetch(prefetch))
    return { conn, channel }
  })

  const connect_ = Effect.gen(function*() {
    const { channel, conn } = yield* open
    const settle = (operation: string, f: () => void) => Effect.try({ try: f, catch: fail(operation) })
    const toMessage = (msg: ConsumeMessage): Source.Message => ({
      id: idOf(msg),
      body: msg.content,
      redelivered: msg.fields.redelivered,
      ack: settle("ack", () => channel.ack(msg)),
      reject: () => settle("nack", () => channel.nack(msg, false, false)),
      retry: (delay) => Effect.zipRight(Effect.sleep(delay), settle("requeue", () => channel.nack(msg, false, true)))
    })
    const messages = Stream.asyncScoped<Source.Message, Source.SourceError>((emit) =>
      Effect.gen(function*() {
        const lost = (what: string) => () => void emit.fail(fail("read")(`the ${what} closed`))
        conn.on("close", lost("connection"))
        channel.on("close", lost("channel"))
        const { consumerTag } = yield* attempt("consume", () =>
          channel.consume(options.queue, (msg) => {
            if (msg === null) void emit.fail(fail("read")("the broker cancelled the consumer"))
            else void emit.single(toMessage(msg))
          }, { noAck: false }))
        // Drain: no new deliveries; the un-acked ones go back to the queue when the channel closes.
        yield* Effect.addFinalizer(() => Effect.promise(() => channel.cancel(consumerTag).catch(() => undefined)))
      }), prefetch)
    return {
      messages,
      lag: Effect.map(attempt("lag", () => channel.checkQueue(options.queue)), (q) => q.messageCount)
    } satisfies Source.Connection
  })

  return {
    name: options.name,
    kind: "amqp",
    describe: `amqp queue ${options.queue} at ${describeUrl(Redacted.value(options.url))}`,
    connect: connect_
  }
}
