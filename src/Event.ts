/**
 * The event envelope: what a producer hands to Fanout, and what every target receives
 * (transformed by the target's own request builder).
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { Clock, DateTime, Effect, ParseResult, Schema } from "effect"
import { uuidv7 } from "./internal/uuid.js"

/**
 * The most characters an id (event id, `Idempotency-Key`, event key) may have.
 *
 * @since 0.1.0
 * @category ids
 */
export const maxIdLength = 200

/**
 * The index of the first character of `value` outside the id alphabet (printable ASCII
 * `0x21`–`0x7E`: no space, no control character, nothing beyond ASCII), or `-1` when there is none.
 * Every character before it is ASCII, so the index is also the byte offset in UTF-8.
 *
 * @since 0.1.0
 * @category ids
 */
export const badCharIndex = (value: string): number => {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return i
  }
  return -1
}

/**
 * Why `value` is not an id, or `undefined` when it is one: 1–200 characters, each printable ASCII
 * `0x21`–`0x7E` (letters, digits and the punctuation `!` to `~`). The message of a bad
 * character names its position: `index 1, char code 10`. (The char code is the Unicode code point,
 * so an emoji shows as one code.)
 *
 * @since 0.1.0
 * @category ids
 */
export const idProblem = (value: string): string | undefined => {
  if (value.length === 0) return "Expected at least 1 character, got 0"
  if (value.length > maxIdLength) return `Expected at most ${maxIdLength} characters, got ${value.length}`
  const i = badCharIndex(value)
  return i < 0 ? undefined : badCharMessage(value, i)
}

const badCharMessage = (value: string, i: number): string =>
  `Invalid character at index ${i} (char code ${value.codePointAt(i)}): ` +
  "expected printable ASCII 0x21-0x7E, no spaces or control characters"

/**
 * Whether `value` is an id (see {@link idProblem}).
 *
 * @since 0.1.0
 * @category ids
 */
export const isId = (value: unknown): value is string =>
  typeof value === "string" && value.length >= 1 && value.length <= maxIdLength && badCharIndex(value) < 0

/**
 * An id: an event id, an `Idempotency-Key` header, an event `key`. 1–200 characters of printable
 * ASCII `0x21`–`0x7E` (no spaces, no control characters, no non-ASCII): such an id is safe in an
 * HTTP header (`Idempotency-Key: <id>:<target>`), a URL path segment (percent-encoded) and a log
 * line. A bad character fails with a message naming its index and char code.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Id = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(maxIdLength),
  Schema.filter((value) => {
    const i = badCharIndex(value)
    return i < 0 ? true : badCharMessage(value, i)
  }, {
    description: "Printable ASCII 0x21-0x7E (no spaces or control characters), 1-200 characters",
    jsonSchema: { pattern: "^[!-~]+$" }
  })
)

/**
 * An event that cannot be built: its `id` or `key` is not an id (see {@link Id}).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidEventError extends Schema.TaggedError<InvalidEventError>()("InvalidEventError", {
  field: Schema.Literal("id", "key"),
  message: Schema.String
}) {}

/**
 * The envelope as it travels and is stored. `payload` is any JSON value; typed events
 * (see {@link define}) narrow it with their own schema. `id` and `key` are {@link Id}s.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Envelope = Schema.Struct({
  id: Id,
  type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)),
  key: Schema.optional(Id),
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
  /**
   * Builds an event of this type (id: the caller's, or a new UUIDv7); a given `id` or `key` that is
   * not an {@link Id} fails with {@link InvalidEventError}.
   */
  readonly make: (payload: P, options?: MakeOptions) => Effect.Effect<Event<T, P>, InvalidEventError>
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
 * Builds an untyped event. A given `id` or `key` that is not an {@link Id} fails with
 * {@link InvalidEventError} (naming the bad character's index and char code).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends string, P>(
  type: T,
  payload: P,
  options: MakeOptions = {}
): Effect.Effect<Event<T, P>, InvalidEventError> =>
  Effect.gen(function*() {
    for (const field of ["id", "key"] as const) {
      const value = options[field]
      if (value === undefined) continue
      const problem = typeof value === "string" ? idProblem(value) : `Expected a string, got ${typeof value}`
      if (problem !== undefined) return yield* new InvalidEventError({ field, message: `${field}: ${problem}` })
    }
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
    decode: (event) => Effect.map(decodePayload(event.payload), (decoded) => ({ ...event, type, payload: decoded }))
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
  encodeLean(event) ?? encodeEnvelope(event as Schema.Schema.Type<typeof Envelope>)

const encodeEnvelope = Schema.encodeSync(Envelope)
const hasOwn = Object.prototype.hasOwnProperty

/**
 * `Schema.encodeSync(Envelope)` for the events it accepts, without the schema machinery (it ran for
 * every request of every target whose body is the envelope): the same checks, the same members in
 * the same order, a copy of the headers. `undefined` for anything it is not sure of (an invalid id,
 * a headers object with a prototype or symbols, a missing payload…), which then goes through the
 * schema, so the result and the errors are the schema's. Tested against the schema by property
 * (test/Event.test.ts).
 */
const encodeLean = (event: Any): Schema.Schema.Encoded<typeof Envelope> | undefined => {
  if (typeof event !== "object" || event === null) return undefined
  const { createdAt, headers, id, type } = event
  if (!isId(id) || typeof type !== "string" || type.length < 1 || type.length > 200) return undefined
  const keyed = hasOwn.call(event, "key")
  const key = event.key
  if (keyed && key !== undefined && !isId(key)) return undefined
  if (!hasOwn.call(event, "payload") || !DateTime.isDateTime(createdAt) || !DateTime.isUtc(createdAt)) return undefined
  if (typeof headers !== "object" || headers === null || Object.getPrototypeOf(headers) !== Object.prototype) {
    return undefined
  }
  const copied: Record<string, string> = {}
  for (const name in headers) {
    if (!hasOwn.call(headers, name)) return undefined
    const value = headers[name]
    if (typeof value !== "string" || name === "__proto__") return undefined
    copied[name] = value
  }
  if (Object.getOwnPropertySymbols(headers).length > 0) return undefined
  const at = DateTime.formatIso(createdAt)
  return keyed
    ? { id, type, key, payload: event.payload, headers: copied, createdAt: at }
    : { id, type, payload: event.payload, headers: copied, createdAt: at }
}

/**
 * The JSON text of what makes an event *this* event: `{"type":…,"key":…,"payload":…}` (`key`
 * only when set), as `JSON.stringify` writes it. Two events with one id are the same event when
 * these texts are equal. `createdAt` (the server stamps it per request) and `headers` (transport
 * metadata such as the W3C `traceparent`, which differs on every retry) are not part of it.
 * Throws where `JSON.stringify` throws (a `BigInt` payload).
 *
 * Since a producer's body is parsed and written again, whitespace and number spelling (`1.0`,
 * `1e0`) do not matter; the order of an object's members does (`{"a":1,"b":2}` and
 * `{"b":2,"a":1}` are different content): send a retry with the same body.
 *
 * @since 0.1.0
 * @category fingerprints
 */
export const contentJson = (event: Pick<Any, "type" | "key" | "payload">): string => {
  const { key, payload, type } = event
  const json = JSON.stringify(key === undefined ? { type, payload } : { type, key, payload })
  if (typeof json !== "string") throw new Error("the event does not serialise to JSON")
  return json
}

/**
 * The fingerprint of a {@link contentJson} text: its SHA-256, as 64 lower-case hex digits.
 *
 * @since 0.1.0
 * @category fingerprints
 */
export const fingerprintOf = (content: string): string => createHash("sha256").update(content).digest("hex")

/**
 * The fingerprint of an event's content (type, key, payload; see {@link contentJson}): what the
 * stores keep with each event, so that a second enqueue of its id can tell a duplicate (same
 * fingerprint) from a conflict (another event under the same id).
 *
 * @since 0.1.0
 * @category fingerprints
 */
export const fingerprint = (event: Pick<Any, "type" | "key" | "payload">): string => fingerprintOf(contentJson(event))
