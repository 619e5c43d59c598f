/**
 * The event envelope: what a producer hands to Fanout, and what every target receives
 * (transformed by the target's own request builder).
 *
 * @since 0.1.0
 */
import { Clock, DateTime, Effect, ParseResult, Schema } from "effect"
import { uuidv7 } from "./internal/uuid.js"

/**
 * The envelope as it travels and is stored. `payload` is any JSON value; typed events
 * (see {@link define}) narrow it with their own schema.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Envelope = Schema.Struct({
  id: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  key: Schema.optional(Schema.String.pipe(Schema.maxLength(200))),
  payload: Schema.Unknown,
  headers: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), {
    default: () => ({})
  }),
  createdAt: Schema.DateTimeUtc
}).annotations({ identifier: "Event" })

/**
 * An event whose `type` is `T` and whose payload is `P`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Event<T extends string = string, P = unknown> {
  readonly id: string
  readonly type: T
  readonly key?: string | undefined
  readonly payload: P
  readonly headers: Readonly<Record<string, string>>
  readonly createdAt: DateTime.Utc
}

/**
 * An event of any type with an unknown payload: what the server and the store handle.
 *
 * @since 0.1.0
 * @category models
 */
export type Any = Event<string, unknown>

/**
 * The declaration of one kind of event: its type name and the schema of its payload.
 * Routes are typed against these declarations.
 *
 * @since 0.1.0
 * @category models
 */
export interface Definition<T extends string, P, I = P> {
  readonly type: T
  readonly payload: Schema.Schema<P, I>
  /** Builds an event of this type (id: the caller's, or a new UUIDv7). */
  readonly make: (payload: P, options?: MakeOptions) => Effect.Effect<Event<T, P>>
  /** Decodes an untyped event of this type; fails with a `ParseError` naming the bad field. */
  readonly decode: (event: Any) => Effect.Effect<Event<T, P>, ParseResult.ParseError>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions {
  readonly id?: string
  readonly key?: string
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * The event type of a definition.
 *
 * @since 0.1.0
 * @category type-level
 */
export type TypeOf<D> = D extends Definition<infer T, infer P, any> ? Event<T, P> : never

/**
 * A new UUIDv7, timed by the Effect `Clock` (so it is deterministic in order under `TestClock`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const newId: Effect.Effect<string> = Effect.map(Clock.currentTimeMillis, uuidv7)

/**
 * Builds an untyped event.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends string, P>(type: T, payload: P, options: MakeOptions = {}): Effect.Effect<Event<T, P>> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const event: Event<T, P> = {
      id: options.id ?? uuidv7(now),
      type,
      payload,
      headers: options.headers ?? {},
      createdAt: DateTime.unsafeMake(now),
      ...(options.key !== undefined ? { key: options.key } : {})
    }
    return event
  })

/**
 * Declares a kind of event.
 *
 * @example
 * ```ts
 * const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, sku: Schema.String, qty: Schema.Int }))
 * const event = yield* OrderPlaced.make({ orderId: "o-1", sku: "sku-1", qty: 2 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const define = <const T extends string, P, I>(type: T, payload: Schema.Schema<P, I>): Definition<T, P, I> => {
  const decodePayload = Schema.decodeUnknown(payload)
  return {
    type,
    payload,
    make: (value, options) => make(type, value, options),
    decode: (event) =>
      Effect.map(decodePayload(event.payload), (decoded) => ({ ...event, type, payload: decoded }))
  }
}

/**
 * Decodes an envelope from JSON-shaped input (for example a request body).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decodeUnknown: (input: unknown) => Effect.Effect<Any, ParseResult.ParseError> = Schema.decodeUnknown(
  Envelope
)

/**
 * Encodes an event to its JSON-shaped form (createdAt as an ISO string).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (event: Any): Schema.Schema.Encoded<typeof Envelope> =>
  Schema.encodeSync(Envelope)(event as Schema.Schema.Type<typeof Envelope>)
