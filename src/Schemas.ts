/**
 * Payload schemas of event types, checked at ingest: an event whose payload does not match its
 * type's schema is refused before anything is stored (the server answers `422 schema_mismatch`,
 * listing each failing JSON pointer).
 *
 * - In a JSON configuration: `"events": { "order.placed": { "schema": { …JSON Schema… } } }`, validated
 *   with Ajv (JSON Schema draft 2020-12, plus the `ajv-formats` formats), each schema compiled once,
 *   when the configuration is built ({@link make}): a schema Ajv refuses is a configuration error.
 * - In a TypeScript configuration: the same, or an `Event.define(...)` declaration
 *   (`events: { "order.placed": OrderPlaced }`), or `{ schema: <an Effect Schema> }`: the payload is
 *   then decoded with that Effect Schema (every issue), and listed as its JSON Schema.
 *
 * A type without a declared schema accepts any JSON payload. {@link check} is the one function every
 * ingest path calls (`POST /v1/events`, its batch form, broker sources): it takes the
 * {@link Service} and an event, and answers the event or a {@link PayloadMismatch}.
 *
 * @since 0.1.0
 */
import { Ajv2020 } from "ajv/dist/2020.js"
import type { ErrorObject, ValidateFunction } from "ajv/dist/2020.js"
import addFormatsModule from "ajv-formats"
import { Context, Data, Effect, Either, JSONSchema, Layer, Option, ParseResult, Schema } from "effect"
import type * as Event from "./Event.js"

/**
 * One way a payload does not match its schema: where (`pointer`, a JSON Pointer into the payload,
 * RFC 6901: `""` is the payload itself, `/items/0/qty` a field within it) and what.
 *
 * @since 0.1.0
 * @category models
 */
export interface Issue {
  readonly pointer: string
  readonly message: string
}

/**
 * An event whose payload does not match the schema of its type. Nothing was stored.
 *
 * @since 0.1.0
 * @category errors
 */
export class PayloadMismatch extends Data.TaggedError("PayloadMismatch")<{
  readonly eventId: string
  readonly type: string
  readonly issues: ReadonlyArray<Issue>
}> {
  override get message() {
    return `The payload of ${JSON.stringify(this.eventId)} does not match the schema of ${JSON.stringify(this.type)}: ${
      this.issues.map((i) => `${i.pointer === "" ? "(payload)" : i.pointer} ${i.message}`).join("; ")
    }`
  }
}

/**
 * A JSON Schema (an object, or `true` / `false`).
 *
 * @since 0.1.0
 * @category models
 */
export type JsonSchema = boolean | { readonly [key: string]: unknown }

/**
 * How a type's schema is declared.
 *
 * @since 0.1.0
 * @category models
 */
export type Declaration =
  /** A JSON Schema (draft 2020-12), checked with Ajv. */
  | { readonly _tag: "JsonSchema"; readonly schema: JsonSchema }
  /** An Effect Schema (`Event.define`'s payload): the payload must decode. */
  | { readonly _tag: "Effect"; readonly schema: Schema.Schema<any, any, never> }

/**
 * A declared event type, as `GET /v1/event-types` lists it.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventType {
  readonly type: string
  /** `json-schema` (Ajv) or `effect-schema` (decoded with an Effect Schema). */
  readonly kind: "json-schema" | "effect-schema"
  /**
   * The JSON Schema of the payload: as declared, or made from the Effect Schema (absent when the
   * Effect Schema has no JSON Schema form; the payload is checked all the same).
   */
  readonly schema: JsonSchema | undefined
}

/**
 * The declared event types and their compiled validators.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Every declared type, in declaration order. */
  readonly types: ReadonlyArray<EventType>
  /** Whether `type` has a schema. */
  readonly has: (type: string) => boolean
  /** The issues of `payload` against the schema of `type`: none when it matches or `type` has no schema. */
  readonly issues: (type: string, payload: unknown) => ReadonlyArray<Issue>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class EventTypes extends Context.Tag("fanout/EventTypes")<EventTypes, Service>() {}

/** No issue: one shared empty list (the check runs for every ingested event). */
const none: ReadonlyArray<Issue> = Object.freeze([])

/**
 * No declared types: every payload is accepted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: Service = { types: [], has: () => false, issues: () => none }

/**
 * A schema that cannot be used (Ajv refused to compile it), with its type.
 *
 * @since 0.1.0
 * @category errors
 */
export interface CompileIssue {
  readonly type: string
  readonly message: string
}

/** The most issues reported for one payload. */
const maxIssues = 100

/** A JSON Pointer segment (RFC 6901): `~` as `~0`, `/` as `~1`. */
const escapeSegment = (segment: PropertyKey): string => String(segment).replaceAll("~", "~0").replaceAll("/", "~1")

/**
 * A path (as Effect's `ParseResult.ArrayFormatter` gives it) as a JSON Pointer.
 *
 * @since 0.1.0
 * @category formatting
 */
export const pointerOf = (path: ReadonlyArray<PropertyKey>): string => path.map((s) => `/${escapeSegment(s)}`).join("")

const ajvIssue = (error: ErrorObject): Issue => {
  const message = error.message ?? `fails ${error.keyword}`
  const params = error.params as Record<string, unknown>
  // Ajv names the parent object for these; say which property.
  if (error.keyword === "additionalProperties" && typeof params.additionalProperty === "string") {
    return { pointer: error.instancePath, message: `${message}: ${JSON.stringify(params.additionalProperty)}` }
  }
  if (error.keyword === "unevaluatedProperties" && typeof params.unevaluatedProperty === "string") {
    return { pointer: error.instancePath, message: `${message}: ${JSON.stringify(params.unevaluatedProperty)}` }
  }
  return { pointer: error.instancePath, message }
}

// `ajv-formats` is CommonJS whose `module.exports` is the plugin (with `default` pointing at itself);
// NodeNext types a default import of it as the module record, so its `default` is the plugin.
const addFormats = addFormatsModule.default

/** One Ajv instance per set of declarations: draft 2020-12, every error, strict about the schemas. */
const newAjv = (): Ajv2020 => {
  const ajv = new Ajv2020({
    allErrors: true,
    // Unknown keywords and formats are refused (a typo is a configuration error), but the
    // type/tuple/required lints of strict mode are not errors in a user's schema.
    strict: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    validateFormats: true
  })
  addFormats(ajv)
  // A common annotation (OpenAPI's): accepted, never checked.
  ajv.addKeyword("example")
  return ajv
}

const effectIssues = (schema: Schema.Schema<any, any, never>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })
  return (payload: unknown): ReadonlyArray<Issue> => {
    const result = decode(payload)
    if (Either.isRight(result)) return none
    return ParseResult.ArrayFormatter.formatErrorSync(result.left)
      .slice(0, maxIssues)
      .map((issue) => ({ pointer: pointerOf(issue.path), message: issue.message }))
  }
}

/** The JSON Schema of an Effect Schema (draft 2020-12), or `undefined` when it has none. */
const jsonSchemaOf = (schema: Schema.Schema<any, any, never>): JsonSchema | undefined => {
  try {
    // A plain JSON copy (an interface without an index signature is no `JsonSchema` to the checker).
    const json: JsonSchema = JSON.parse(JSON.stringify(JSONSchema.make(schema, { target: "jsonSchema2020-12" })))
    return json
  } catch {
    return undefined
  }
}

/**
 * Compiles the declarations (each JSON Schema once): the service, or every schema that cannot be
 * used with Ajv's message.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  declarations: Readonly<Record<string, Declaration>>
): Either.Either<Service, ReadonlyArray<CompileIssue>> => {
  const entries = Object.entries(declarations)
  if (entries.length === 0) return Either.right(empty)
  const ajv = newAjv()
  const problems: Array<CompileIssue> = []
  const checks = new Map<string, (payload: unknown) => ReadonlyArray<Issue>>()
  const types: Array<EventType> = []
  for (const [type, declaration] of entries) {
    if (declaration._tag === "Effect") {
      checks.set(type, effectIssues(declaration.schema))
      types.push({ type, kind: "effect-schema", schema: jsonSchemaOf(declaration.schema) })
      continue
    }
    let validate: ValidateFunction
    try {
      validate = ajv.compile(declaration.schema)
    } catch (e) {
      problems.push({ type, message: `${(e as Error).message} (a JSON Schema draft 2020-12 is expected)` })
      continue
    }
    checks.set(type, (payload) => validate(payload) ? none : (validate.errors ?? []).slice(0, maxIssues).map(ajvIssue))
    types.push({ type, kind: "json-schema", schema: declaration.schema })
  }
  if (problems.length > 0) return Either.left(problems)
  return Either.right({
    types,
    has: (type) => checks.has(type),
    issues: (type, payload) => checks.get(type)?.(payload) ?? none
  })
}

/**
 * Checks an event against the schema of its type: the event, or a {@link PayloadMismatch} listing
 * every issue. Every ingest path calls it before it stores an event (the server's `POST /v1/events`
 * and `POST /v1/events:batch`, and broker sources).
 *
 * @since 0.1.0
 * @category checking
 */
export const check = <E extends Event.Any>(service: Service, event: E): Either.Either<E, PayloadMismatch> => {
  const issues = service.issues(event.type, event.payload)
  return issues.length === 0
    ? Either.right(event)
    : Either.left(new PayloadMismatch({ eventId: event.id, type: event.type, issues }))
}

/**
 * {@link check} with the {@link EventTypes} of the context, if any (without it, every event passes).
 *
 * @since 0.1.0
 * @category checking
 */
export const checkEvent = <E extends Event.Any>(event: E): Effect.Effect<E, PayloadMismatch> =>
  Effect.flatMap(
    Effect.serviceOption(EventTypes),
    (service) => Option.isNone(service) ? Effect.succeed(event) : check(service.value, event)
  )

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (service: Service): Layer.Layer<EventTypes> => Layer.succeed(EventTypes, service)
