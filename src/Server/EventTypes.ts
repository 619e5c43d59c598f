/**
 * The event types as the server shows them: `GET /v1/event-types` (every type a route names or the
 * configuration declares, with its payload schema) and the OpenAPI document at `/openapi.json`,
 * which carries each declared payload schema as a component (`EventPayload.<type>`) that the
 * `EventInput` schema refers to for that type (`if type is T then payload is
 * #/components/schemas/EventPayload.T`).
 *
 * The checking itself is `Schemas.check` (src/Schemas.ts), which ingest calls.
 *
 * @since 0.1.0
 */
import { HttpApiBuilder, HttpServerResponse, OpenApi } from "@effect/platform"
import { Effect, Layer, Option } from "effect"
import type * as Event from "../Event.js"
import type * as Router from "../Router.js"
import * as Schemas from "../Schemas.js"
import type * as Target from "../Target.js"
import * as Api from "./Api.js"

/**
 * The OpenAPI component name of each declared type's payload schema, in declaration order:
 * `EventPayload.<type>`, characters outside `[A-Za-z0-9._-]` as `_` (and a `_2`, `_3`, … suffix when
 * two types would share a name).
 *
 * @since 0.1.0
 * @category openapi
 */
export const componentNames = (types: ReadonlyArray<Schemas.EventType>): ReadonlyMap<string, string> => {
  const names = new Map<string, string>()
  const taken = new Set<string>()
  for (const t of types) {
    if (t.schema === undefined) continue
    const base = `EventPayload.${t.type.replace(/[^A-Za-z0-9._-]/g, "_")}`
    let name = base
    for (let n = 2; taken.has(name); n++) name = `${base}_${n}`
    taken.add(name)
    names.set(t.type, name)
  }
  return names
}

/**
 * A declared schema as an OpenAPI 3.1 component: booleans as `{}` / `{ "not": {} }`, no
 * `$schema`, and its own references (`#/$defs/…`) pointed at where it now lives.
 */
const asComponent = (schema: Schemas.JsonSchema, name: string): Record<string, unknown> => {
  if (schema === true) return {}
  if (schema === false) return { not: {} }
  const prefix = `#/components/schemas/${name.replaceAll("~", "~0").replaceAll("/", "~1")}`
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite)
    if (typeof value !== "object" || value === null) return value
    const out: Record<string, unknown> = {}
    for (const [key, v] of Object.entries(value)) {
      out[key] = key === "$ref" && typeof v === "string" && v.startsWith("#") ? `${prefix}${v.slice(1)}` : rewrite(v)
    }
    return out
  }
  const { $schema: _, ...rest } = schema
  return rewrite(rest) as Record<string, unknown>
}

/**
 * The OpenAPI document with the declared payload schemas: one component per type with a schema,
 * and `EventInput` saying, for each, that an event of that type has that payload.
 *
 * @since 0.1.0
 * @category openapi
 */
export const withEventTypes = (
  spec: OpenApi.OpenAPISpec,
  types: ReadonlyArray<Schemas.EventType>
): OpenApi.OpenAPISpec => {
  const names = componentNames(types)
  if (names.size === 0) return spec
  // Copies: the document the platform made is not changed.
  const schemas: Record<string, Record<string, unknown>> = JSON.parse(JSON.stringify(spec.components.schemas))
  const conditions: Array<unknown> = []
  for (const t of types) {
    const name = names.get(t.type)
    if (name === undefined || t.schema === undefined) continue
    schemas[name] = {
      ...asComponent(t.schema, name),
      description: `The payload of an event of type ${JSON.stringify(t.type)}`
    }
    conditions.push({
      if: { properties: { type: { const: t.type } }, required: ["type"] },
      then: { properties: { payload: { $ref: `#/components/schemas/${name}` } } }
    })
  }
  const input = schemas.EventInput
  if (input !== undefined) {
    const allOf = Array.isArray(input.allOf) ? input.allOf : []
    input.allOf = [...allOf, ...conditions]
  }
  const out: OpenApi.OpenAPISpec = JSON.parse(JSON.stringify({ ...spec, components: { ...spec.components, schemas } }))
  return out
}

/**
 * The answer of `GET /v1/event-types`: every declared type (with its schema and the OpenAPI
 * component that holds it), every exact type a route names (any payload), and the wildcard route
 * patterns (any payload, unless the type is declared).
 *
 * @since 0.1.0
 * @category handlers
 */
export const view = (
  router: Router.Router<Event.Any, Target.Any>,
  eventTypes: Schemas.Service
): typeof Api.EventTypesView.Type => {
  const names = componentNames(eventTypes.types)
  const declared = new Set(eventTypes.types.map((t) => t.type))
  const types: Array<typeof Api.EventTypeView.Type> = eventTypes.types.map((t) => {
    const ref = names.get(t.type)
    return {
      type: t.type,
      validated: true,
      kind: t.kind,
      ...(t.schema !== undefined ? { schema: t.schema } : {}),
      ...(ref !== undefined ? { ref: `#/components/schemas/${ref}` } : {})
    }
  })
  const patterns: Array<string> = []
  for (const route of router.routes) {
    if (route.pattern.includes("*")) {
      if (!patterns.includes(route.pattern)) patterns.push(route.pattern)
    } else if (!declared.has(route.pattern)) {
      declared.add(route.pattern)
      types.push({ type: route.pattern, validated: false })
    }
  }
  return { types, patterns }
}

/**
 * The event types of the context (`Schemas.EventTypes`), or none.
 *
 * @since 0.1.0
 * @category accessors
 */
export const current: Effect.Effect<Schemas.Service> = Effect.map(
  Effect.serviceOption(Schemas.EventTypes),
  Option.getOrElse(() => Schemas.empty)
)

/**
 * `GET /openapi.json`: the document of {@link Api.Api} with the declared payload schemas of the
 * context's `Schemas.EventTypes` ({@link withEventTypes}); in place of
 * `HttpApiBuilder.middlewareOpenApi`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerOpenApi = (options: { readonly path?: `/${string}` } = {}): Layer.Layer<never> =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function*() {
      const eventTypes = yield* current
      const spec = withEventTypes(OpenApi.fromApi(Api.Api), eventTypes.types)
      const response = yield* Effect.orDie(HttpServerResponse.json(spec))
      yield* router.get(options.path ?? "/openapi.json", Effect.succeed(response))
    })
  )
