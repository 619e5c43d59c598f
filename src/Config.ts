/**
 * Configuration: a `fanout.config.ts` exporting `defineConfig({...})` (functions allowed:
 * body transforms, classifiers) or a plain JSON file, both validated by one Schema. Errors
 * name the file, the path of each bad field and what was expected. Secrets come from the
 * environment (`{ "env": "NAME" }`) as `Redacted` values and never appear in logs or errors.
 *
 * @since 0.1.0
 */
import { readFile } from "node:fs/promises"
import { extname, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { HttpClientRequest } from "@effect/platform"
import {
  Config as EffectConfig,
  ConfigProvider,
  Data,
  DateTime,
  Duration,
  Effect,
  Either,
  Option,
  ParseResult,
  Redacted,
  Schema
} from "effect"
import type * as Event from "./Event.js"
import type * as Outbox from "./Outbox.js"
import * as Pipeline from "./Pipeline.js"
import type * as Policy from "./Resilience/Policy.js"
import * as Router from "./Router.js"
import * as Schemas from "./Schemas.js"
import * as Signing from "./Signing.js"
import type * as Store from "./Store.js"
import * as Target from "./Target.js"
import * as Http from "./Targets/Http.js"
import { maskUrl } from "./internal/maskUrl.js"

/**
 * One problem in a configuration: where (`path`, like `targets.inventory.timeout`) and what.
 *
 * @since 0.1.0
 * @category errors
 */
export interface Issue {
  readonly path: string
  readonly message: string
}

/**
 * The configuration is invalid (or unreadable). `message` lists every issue as
 * `file: path: message`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly file: string
  readonly issues: ReadonlyArray<Issue>
}> {
  override get message() {
    return this.issues.map((issue) => `${this.file}: ${issue.path || "(root)"}: ${issue.message}`).join("\n")
  }
}

const DurationString = Schema.String.pipe(
  Schema.filter((s) => Option.isSome(Duration.decodeUnknown(s)), {
    message: (issue) =>
      `Expected a duration like "2 seconds" or "100 millis", got ${JSON.stringify(issue.actual)}`
  })
)

/**
 * A duration: an Effect duration string (`"2 seconds"`) or a number of milliseconds.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationInput = Schema.Union(Schema.NonNegative, DurationString).annotations({
  identifier: "Duration",
  message: (issue) => ({
    message: `Expected a duration like "2 seconds" or "100 millis" (or a number of milliseconds), got ${
      JSON.stringify(issue.actual)
    }`,
    override: true
  })
})

/**
 * A secret: a literal string, or `{ "env": "NAME" }` read from the environment.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Secret = Schema.Union(
  Schema.String,
  Schema.Struct({ env: Schema.String.pipe(Schema.pattern(/^[A-Za-z_][A-Za-z0-9_]*$/)) })
).annotations({ identifier: "Secret" })

/**
 * `Secret`, failing with `expected` and never with the value (a list of secrets, a literal secret
 * in the wrong place): only an `{ "env": … }` whose name is invalid is quoted.
 */
const secretExpecting = (expected: string) =>
  Secret.annotations({
    message: (issue) => {
      const actual = issue.actual
      const env = typeof actual === "object" && actual !== null && !Array.isArray(actual) &&
          Object.keys(actual).length === 1 && "env" in actual
        ? (actual as { readonly env: unknown }).env
        : undefined
      return {
        message: env !== undefined
          ? `Expected { "env": "NAME" } with NAME matching ^[A-Za-z_][A-Za-z0-9_]*$, got ${JSON.stringify(env)}`
          : expected,
        override: true
      }
    }
  })

/**
 * An instant: ISO 8601 with its offset, like `"2026-12-31T00:00:00Z"`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Instant = Schema.String.pipe(
  Schema.filter((s) => Signing.isInstant(s), {
    message: (issue) =>
      `Expected an ISO 8601 instant with its offset like "2026-12-31T00:00:00Z", got ${JSON.stringify(issue.actual)}`
  })
)

/**
 * A target's signing secret: a secret, or a non-empty list (newest first) whose entries are a
 * secret or `{ "secret": …, "until": "<ISO instant>" }` (not used after `until`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const SigningSecret = Schema.Union(
  secretExpecting(
    "Expected a secret (a string or { \"env\": \"NAME\" }), or a non-empty list of them, newest first"
  ),
  Schema.NonEmptyArray(
    Schema.Union(
      secretExpecting(
        "Expected a secret (a string or { \"env\": \"NAME\" }) or { \"secret\": <a secret>, \"until\": \"<ISO instant>\" }"
      ),
      Schema.Struct({ secret: secretExpecting("Expected a secret: a string or { \"env\": \"NAME\" }"), until: Instant })
        .annotations({
          message: (issue) => ({
            message: "Expected { \"secret\": <a secret>, \"until\": \"<ISO instant>\" }",
            override: typeof issue.actual !== "object" || issue.actual === null || Array.isArray(issue.actual)
          })
        })
    )
  ).annotations({
    message: (issue) =>
      Array.isArray(issue.actual) && issue.actual.length === 0
        ? { message: "Expected at least one secret, got an empty list", override: true }
        : { message: "Expected a list of secrets", override: false }
  })
).annotations({ identifier: "SigningSecret" })

const Func = Schema.declare((u: unknown): u is (...args: Array<any>) => any => typeof u === "function", {
  identifier: "function"
})

const PositiveInt = Schema.Int.pipe(Schema.positive())

/**
 * @since 0.1.0
 * @category schemas
 */
export const TargetConfig = Schema.Struct({
  url: Schema.String.pipe(
    Schema.filter((s) => URL.canParse(s) && /^https?:$/.test(new URL(s).protocol), {
      // The URL may hold a secret (userinfo, a query token): quoted masked.
      message: (issue) =>
        `Expected an http(s) URL, got ${
          JSON.stringify(typeof issue.actual === "string" ? maskUrl(issue.actual) : issue.actual)
        }`
    })
  ),
  method: Schema.optional(Schema.Literal("POST", "PUT", "PATCH", "DELETE", "GET")),
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Secret })),
  timeout: Schema.optional(DurationInput),
  deadline: Schema.optional(DurationInput),
  retry: Schema.optional(Schema.Struct({
    maxAttempts: Schema.optional(PositiveInt),
    initialDelay: Schema.optional(DurationInput),
    factor: Schema.optional(Schema.Number.pipe(Schema.greaterThanOrEqualTo(1))),
    maxDelay: Schema.optional(DurationInput),
    maxAge: Schema.optional(DurationInput),
    jitter: Schema.optional(Schema.Literal("full", "equal", "none"))
  })),
  concurrency: Schema.optional(PositiveInt),
  queue: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  rateLimit: Schema.optional(Schema.Struct({
    limit: PositiveInt,
    interval: DurationInput,
    maxWait: Schema.optional(DurationInput)
  })),
  circuitBreaker: Schema.optional(Schema.Union(
    Schema.Literal(false),
    Schema.Struct({
      failureThreshold: Schema.optional(PositiveInt),
      resetAfter: Schema.optional(DurationInput),
      halfOpenProbes: Schema.optional(PositiveInt),
      failureRatio: Schema.optional(Schema.Struct({
        threshold: Schema.Number.pipe(Schema.between(0, 1)),
        window: DurationInput,
        minimumRequests: Schema.optional(PositiveInt)
      }))
    })
  )),
  signingSecret: Schema.optional(SigningSecret),
  /**
   * Durable pipelines: the targets this one runs after. Its delivery is held until each of them is
   * delivered, and its default body is then `{ event, inputs }` (the original envelope and each
   * input's answer). Every route that sends an event here must also send it to all of these.
   */
  after: Schema.optional(Schema.Array(Schema.String)),
  /** TypeScript configs only: the JSON body for an event. */
  body: Schema.optional(Func),
  /** TypeScript configs only: a classifier override. */
  classify: Schema.optional(Func)
})

const RouteConfig = Schema.Union(
  Schema.Array(Schema.String),
  Schema.Struct({
    targets: Schema.Array(Schema.String),
    /**
     * Mirrored targets: a list, or shadow → the primary (one of `targets`) it mirrors, whose answers
     * are then compared (status and JSON body).
     */
    shadow: Schema.optional(Schema.Union(
      Schema.Array(Schema.String),
      Schema.Record({ key: Schema.String, value: Schema.String })
    )),
    /** The comparison of mirrored answers: JSON Pointers into the body it ignores (`*`: any one segment). */
    compare: Schema.optional(Schema.Struct({
      ignore: Schema.optional(Schema.Array(Schema.String.pipe(Schema.pattern(/^(\/[^/]*)*$/, {
        message: (issue) => `Expected a JSON Pointer like "/meta/requestId", got ${JSON.stringify(issue.actual)}`
      }))))
    }))
  })
)

/** An Effect Schema (TypeScript configs). */
const EffectSchema = Schema.declare(
  (u: unknown): u is Schema.Schema<any, any, never> => Schema.isSchema(u),
  { identifier: "Schema" }
)

/** An `Event.define(...)` declaration (TypeScript configs). */
const EventDefinition = Schema.declare(
  (u: unknown): u is Event.Definition<string, any, any> =>
    typeof u === "object" && u !== null && typeof (u as { type?: unknown }).type === "string" &&
    Schema.isSchema((u as { payload?: unknown }).payload),
  { identifier: "EventDefinition" }
)

/**
 * An event type's declaration (`events` of the configuration): `{ "schema": <JSON Schema, draft
 * 2020-12> }`; in a TypeScript configuration also `{ schema: <an Effect Schema> }` or an
 * `Event.define(...)` value. The payload of every event of that type is checked at ingest.
 *
 * @since 0.1.0
 * @category schemas
 */
export const EventTypeConfig = Schema.Union(
  Schema.Struct({
    schema: Schema.Union(
      EffectSchema,
      Schema.Boolean,
      Schema.Record({ key: Schema.String, value: Schema.Unknown })
    ).annotations({
      message: () => ({
        message: "Expected a JSON Schema (an object or a boolean), or in a TypeScript configuration an Effect Schema",
        override: true
      })
    })
  }),
  EventDefinition
).annotations({ identifier: "EventType" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const RetentionConfig = Schema.Union(
  Schema.Literal(false),
  Schema.Struct({
    /** Keep delivered (and compensated) deliveries this long after they finished; `false`: forever. Default 7 days. */
    delivered: Schema.optional(Schema.Union(DurationInput, Schema.Literal(false))),
    /** Keep dead letters this long after they died; `false`: until purged. Default 30 days. */
    dead: Schema.optional(Schema.Union(DurationInput, Schema.Literal(false))),
    /** How often `fanout serve` runs a pass (the first at start). Default 1 minute. */
    every: Schema.optional(DurationInput)
  })
).annotations({ identifier: "Retention" })

/**
 * @since 0.1.0
 * @category schemas
 */
export const StoreConfig = Schema.Union(
  Schema.Struct({
    sqlite: Schema.String,
    synchronous: Schema.optional(Schema.Literal("FULL", "NORMAL")),
    /** How long a write waits for another connection's lock before failing `Busy` (`503`); default 5 seconds. */
    busyTimeout: Schema.optional(DurationInput),
    retention: Schema.optional(RetentionConfig)
  }),
  Schema.Struct({ postgres: Schema.String, retention: Schema.optional(RetentionConfig) }),
  Schema.Struct({ memory: Schema.Literal(true), retention: Schema.optional(RetentionConfig) })
)

/**
 * @since 0.1.0
 * @category schemas
 */
export const ServerConfig = Schema.Struct({
  host: Schema.optional(Schema.String),
  port: Schema.optional(Schema.Int.pipe(Schema.between(0, 65535))),
  apiKeys: Schema.optional(Schema.Array(Secret)),
  /** Requests allowed per API key: `limit` per `interval` (a token bucket). */
  keyRateLimit: Schema.optional(Schema.Struct({ limit: PositiveInt, interval: DurationInput })),
  /**
   * Failed authentications allowed per client address: past `limit` (default 20) within `interval`
   * (default 1 minute), that address gets `429` + `Retry-After` until the window ends; at most
   * `maxAddresses` (default 10000) are tracked. `false` turns it off.
   */
  authThrottle: Schema.optional(Schema.Union(
    Schema.Literal(false),
    Schema.Struct({
      limit: Schema.optional(PositiveInt),
      interval: Schema.optional(DurationInput),
      maxAddresses: Schema.optional(PositiveInt)
    })
  )),
  maxBodyBytes: Schema.optional(PositiveInt),
  maxBatch: Schema.optional(PositiveInt),
  /**
   * Later delivery: how far ahead an event's `deliverAt` / `delay` may be (default 30 days); a
   * later one is refused with 422 `schedule_beyond_horizon`.
   */
  maxDelay: Schema.optional(DurationInput),
  headersTimeout: Schema.optional(DurationInput),
  requestTimeout: Schema.optional(DurationInput),
  waitTimeout: Schema.optional(DurationInput),
  maxQueueDepth: Schema.optional(PositiveInt),
  /** Node's keepAliveTimeout (default 5 seconds). */
  keepAliveTimeout: Schema.optional(DurationInput),
  /** Largest request headers (default 16384 bytes); larger get a 431. */
  maxHeaderBytes: Schema.optional(PositiveInt),
  /** On shutdown, how long requests in progress may finish (default 15 seconds). */
  shutdownGrace: Schema.optional(DurationInput),
  /** Serve the dashboard at `/` (default `true`); `false` turns it off. */
  dashboard: Schema.optional(Schema.Boolean)
})

/**
 * A message source (`sources` of the configuration): a name, one broker section (`nats`, `amqp`
 * or `redis`), and optionally `type` (the whole message body is the payload of an event of this
 * type; without it the body is the `POST /v1/events` envelope) and `concurrency` (messages stored
 * at once). Credentials (`amqp.url`, `redis.url`, `nats.password`, `nats.token`) are secrets:
 * a string or `{ "env": "NAME" }`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SourceConfig = (() => {
  const common = {
    name: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/)),
    type: Schema.optional(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200))),
    concurrency: Schema.optional(Schema.Int.pipe(Schema.positive()))
  }
  const name = Schema.String.pipe(Schema.minLength(1))
  return Schema.Union(
    Schema.Struct({
      ...common,
      nats: Schema.Struct({
        servers: Schema.Union(name, Schema.NonEmptyArray(name)),
        stream: name,
        subject: name,
        durable: name,
        batch: Schema.optional(Schema.Int.pipe(Schema.positive())),
        ackWait: Schema.optional(DurationInput),
        user: Schema.optional(Schema.String),
        password: Schema.optional(Secret),
        token: Schema.optional(Secret)
      })
    }),
    Schema.Struct({
      ...common,
      amqp: Schema.Struct({
        url: Secret,
        queue: name,
        prefetch: Schema.optional(Schema.Int.pipe(Schema.positive(), Schema.lessThanOrEqualTo(65535)))
      })
    }),
    Schema.Struct({
      ...common,
      redis: Schema.Struct({
        url: Secret,
        stream: name,
        group: name,
        consumer: Schema.optional(name),
        field: Schema.optional(name),
        start: Schema.optional(Schema.Literal("0", "$")),
        count: Schema.optional(Schema.Int.pipe(Schema.positive())),
        minIdle: Schema.optional(DurationInput),
        deadLetter: Schema.optional(name)
      })
    })
  ).annotations({ identifier: "Source" })
})()

/**
 * The whole configuration.
 *
 * @since 0.1.0
 * @category schemas
 */
export const FanoutConfig = Schema.Struct({
  server: Schema.optional(ServerConfig),
  store: Schema.optional(StoreConfig),
  /**
   * Tracing (when `OTEL_EXPORTER_OTLP_ENDPOINT` names an exporter): `sampleRatio` is the share of
   * new traces recorded (0–1, default 1), parent-based (a request whose `traceparent` is sampled
   * is always recorded).
   */
  telemetry: Schema.optional(Schema.Struct({ sampleRatio: Schema.optional(Schema.Number.pipe(Schema.between(0, 1))) })),
  targets: Schema.Record({ key: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/)), value: TargetConfig }),
  routes: Schema.Record({ key: Schema.String.pipe(Schema.minLength(1)), value: RouteConfig }),
  /**
   * Operator events (`fanout.target.circuit_opened`, `fanout.delivery.dead`, …; see
   * docs/operator-events.md), sent where a route for their types says. Off unless set.
   */
  operatorEvents: Schema.optional(Schema.Struct({
    minInterval: Schema.optional(DurationInput),
    every: Schema.optional(DurationInput),
    dlqThreshold: Schema.optional(PositiveInt),
    sourceLagThreshold: Schema.optional(PositiveInt)
  })),
  /** Message brokers whose messages become events (`fanout serve`, `fanout consume --source NAME`). */
  sources: Schema.optional(Schema.Array(SourceConfig)),
  /**
   * Event type (exact, no `*`) → its payload schema, checked at ingest: a payload that does not
   * match is refused with `422 schema_mismatch` and nothing is stored.
   */
  events: Schema.optional(Schema.Record({ key: Schema.String.pipe(Schema.minLength(1)), value: EventTypeConfig })),
  /**
   * TypeScript configs only: event type → `({ event, responses }) => answer`, the one answer
   * `POST /v1/events?wait=all` returns once every delivery of such an event is delivered
   * (`responses`: each target's answer, parsed JSON or text, by name).
   */
  aggregates: Schema.optional(Schema.Record({ key: Schema.String.pipe(Schema.minLength(1)), value: Func }))
}).annotations({ identifier: "FanoutConfig" })

/**
 * @since 0.1.0
 * @category models
 */
export type FanoutConfig = typeof FanoutConfig.Type

/**
 * The TypeScript form: identity, for type inference and editor help in `fanout.config.ts`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defineConfig = (config: typeof FanoutConfig.Encoded): typeof FanoutConfig.Encoded => config

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) =>
    typeof key === "number"
      ? `[${key}]`
      : /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(String(key))
      ? `${i === 0 ? "" : "."}${String(key)}`
      : `[${JSON.stringify(String(key))}]`
  ).join("")

/**
 * Validates an already-parsed configuration value (from JSON or a TS module).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (file: string, input: unknown): Effect.Effect<FanoutConfig, ConfigError> =>
  Schema.decodeUnknown(FanoutConfig, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((error) =>
      new ConfigError({
        file,
        issues: tidy(ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
          path: formatPath(issue.path),
          message: issue.message
        })))
      })
    ),
    Effect.flatMap((config) => {
      const issues = checkReferences(config)
      return issues.length === 0 ? Effect.succeed(config) : Effect.fail(new ConfigError({ file, issues }))
    })
  )

/** Optional fields also report "Expected undefined": noise when the path has a real issue. */
const tidy = (issues: ReadonlyArray<Issue>): Array<Issue> =>
  issues.filter((issue, i) =>
    !(issue.message.startsWith("Expected undefined") &&
      issues.some((other) =>
        other !== issue &&
        (other.path === issue.path || other.path.startsWith(issue.path + ".") || other.path.startsWith(issue.path + "["))
      )) &&
    issues.findIndex((other) => other.path === issue.path && other.message === issue.message) === i
  )

/**
 * A route's shadows: their names, which primary each mirrors (the object form), and what the
 * comparison of mirrored answers ignores.
 */
const shadowOf = (route: typeof RouteConfig.Type): {
  readonly names: ReadonlyArray<string>
  readonly mirrors: Readonly<Record<string, string>>
  readonly ignore: ReadonlyArray<string>
} => {
  if (Array.isArray(route)) return { names: [], mirrors: {}, ignore: [] }
  const spec = route as {
    readonly shadow?: ReadonlyArray<string> | Readonly<Record<string, string>>
    readonly compare?: { readonly ignore?: ReadonlyArray<string> }
  }
  const ignore = spec.compare?.ignore ?? []
  const shadow = spec.shadow ?? []
  return Array.isArray(shadow)
    ? { names: shadow as ReadonlyArray<string>, mirrors: {}, ignore }
    : { names: Object.keys(shadow), mirrors: shadow as Readonly<Record<string, string>>, ignore }
}

const checkReferences = (config: FanoutConfig): Array<Issue> => {
  const known = Object.keys(config.targets)
  const issues: Array<Issue> = []
  for (const [pattern, route] of Object.entries(config.routes)) {
    const shadow = shadowOf(route)
    if (!Array.isArray(route)) {
      const primaries = (route as { targets: ReadonlyArray<string> }).targets
      for (const [name, primary] of Object.entries(shadow.mirrors)) {
        const path = `routes[${JSON.stringify(pattern)}].shadow[${JSON.stringify(name)}]`
        if (!known.includes(name)) {
          issues.push({
            path,
            message: `Expected the name of a target (${known.join(", ") || "none defined"}), got ${JSON.stringify(name)}`
          })
        } else if (!primaries.includes(primary)) {
          issues.push({
            path,
            message: `Expected the primary ${name} mirrors, one of this route's targets (${
              primaries.join(", ") || "none"
            }), got ${JSON.stringify(primary)}`
          })
        }
      }
    }
    const lists: Array<readonly [string, ReadonlyArray<string>]> = Array.isArray(route)
      ? [["", route as ReadonlyArray<string>]]
      : Object.keys(shadow.mirrors).length > 0
      ? [[".targets", (route as { targets: ReadonlyArray<string> }).targets]]
      : [[".targets", (route as { targets: ReadonlyArray<string> }).targets], [".shadow", shadow.names]]
    for (const [suffix, names] of lists) {
      names.forEach((name, i) => {
        if (!known.includes(name)) {
          issues.push({
            path: `routes[${JSON.stringify(pattern)}]${suffix}[${i}]`,
            message: `Expected the name of a target (${known.join(", ") || "none defined"}), got ${JSON.stringify(name)}`
          })
        }
      })
    }
  }
  return issues.length > 0 ? issues : checkDependencies(config)
}

const targetPath = (name: string): string => formatPath(["targets", name])

/**
 * The `after` lists: known names, no target after itself, no cycle; then every route that sends
 * an event to a dependent also sends it to all of that dependent's inputs.
 */
const checkDependencies = (config: FanoutConfig): Array<Issue> => {
  const known = Object.keys(config.targets)
  const issues: Array<Issue> = []
  for (const [name, t] of Object.entries(config.targets)) {
    const after = t.after ?? []
    after.forEach((input, i) => {
      const path = `${targetPath(name)}.after[${i}]`
      if (input === name) {
        issues.push({ path, message: `Expected another target: ${JSON.stringify(name)} cannot run after itself` })
      } else if (!known.includes(input)) {
        issues.push({
          path,
          message: `Expected the name of a target (${known.join(", ")}), got ${JSON.stringify(input)}`
        })
      } else if (after.indexOf(input) !== i) {
        issues.push({ path, message: `Expected each input once, got ${JSON.stringify(input)} again` })
      }
    })
  }
  if (issues.length > 0) return issues
  const graph = Pipeline.validateGraph({
    steps: Object.entries(config.targets).map(([name, t]) => ({ name, after: t.after ?? [] }))
  })
  if (Either.isLeft(graph)) {
    const error = graph.left
    return [{
      path: error._tag === "Cycle" ? `${targetPath(error.cycle[0]!)}.after` : "targets",
      message: error._tag === "Cycle"
        ? `Expected no cycle in "after", got ${error.cycle.join(" → ")} (each target runs after the next one)`
        : error.message
    }]
  }
  return checkRoutedInputs(config)
}

/**
 * A stand-in event type for `pattern`: each `*` becomes a character no pattern holds, so a route
 * matches it exactly when that route matches every type `pattern` matches (the targets resolved
 * for it are those every event of the route gets).
 */
const witnessOf = (pattern: string, patterns: ReadonlyArray<string>): string => {
  let code = 1
  while (patterns.some((p) => p.includes(String.fromCharCode(code)))) code++
  return pattern.replaceAll("*", String.fromCharCode(code))
}

/**
 * For each route and each dependent it names: the targets the router resolves for any event the
 * route matches (every route matching all of its types) must include the dependent's inputs.
 */
const checkRoutedInputs = (config: FanoutConfig): Array<Issue> => {
  const dependencies = dependenciesOf(config)
  if (Object.keys(dependencies).length === 0) return []
  const routes = Object.entries(config.routes).map(([pattern, route]) => ({ pattern, ...routeSpec(route) }))
  // The router itself, over stand-in targets (only names matter for resolution).
  let router: Router.Router<Event.Any, Target.Any> = Router.make()
  for (const route of routes) {
    try {
      router = router.route(route.pattern, route.targets.map(standIn), { shadow: route.shadow.map(standIn) })
    } catch {
      // A target named twice: reported by `build`.
    }
  }
  const patterns = routes.map((r) => r.pattern)
  const issues: Array<Issue> = []
  for (const route of routes) {
    const type = witnessOf(route.pattern, patterns)
    const resolved = router.resolve({ id: "", type, payload: null, headers: {}, createdAt: witnessCreatedAt })
    const sent = new Set([...resolved.targets, ...resolved.shadow].map((t) => t.name))
    const lists: Array<readonly [string, ReadonlyArray<string>]> = route.object
      ? [[".targets", route.targets], [".shadow", route.shadow]]
      : [["", route.targets]]
    for (const [suffix, names] of lists) {
      names.forEach((name, i) => {
        const missing = (dependencies[name] ?? []).filter((input) => !sent.has(input))
        if (missing.length === 0) return
        const list = missing.join(", ")
        const wildcard = route.pattern.includes("*")
        issues.push({
          path: `routes[${JSON.stringify(route.pattern)}]${suffix}[${i}]`,
          message: `Expected ${list} too: route ${JSON.stringify(route.pattern)} sends ${
            wildcard ? "the events it matches" : "its events"
          } to ${name}, which runs after ${(dependencies[name] ?? []).join(", ")}, but ${
            wildcard ? "not all of them" : "not"
          } to ${list} (add ${list} to this route, or to a route matching every type it matches)`
        })
      })
    }
  }
  return issues
}

const routeSpec = (route: typeof RouteConfig.Type): {
  readonly targets: ReadonlyArray<string>
  readonly shadow: ReadonlyArray<string>
  readonly object: boolean
} =>
  Array.isArray(route)
    ? { targets: route as ReadonlyArray<string>, shadow: [], object: false }
    : {
      targets: (route as { targets: ReadonlyArray<string> }).targets,
      shadow: shadowOf(route).names,
      object: true
    }

/** A target that is never run: only its name matters to the router's resolution. */
const standIn = (name: string): Target.Any => Target.make(name, { request: () => HttpClientRequest.get("http://stand-in.invalid/") })

/** The creation time of the witness events (resolution ignores it). */
const witnessCreatedAt = DateTime.unsafeMake(0)

/**
 * The dependencies of a configuration (durable pipelines): target name → the targets it runs after,
 * for every target with a non-empty `after`. What the outbox takes (`Outbox.layer(router, { after })`).
 *
 * @since 0.1.0
 * @category building
 */
export const dependenciesOf = (config: FanoutConfig): Store.Dependencies => {
  const out: Record<string, ReadonlyArray<string>> = {}
  for (const [name, t] of Object.entries(config.targets)) {
    if (t.after !== undefined && t.after.length > 0) out[name] = t.after
  }
  return out
}

/**
 * Reads and validates a configuration file: `.json`, or a `.ts` / `.mts` / `.js` / `.mjs`
 * module whose default export is the configuration.
 *
 * @since 0.1.0
 * @category loading
 */
export const load = (path: string): Effect.Effect<FanoutConfig, ConfigError> =>
  Effect.gen(function*() {
    const file = resolve(path)
    const ext = extname(file)
    if (ext === ".json") {
      const text = yield* Effect.tryPromise({
        try: () => readFile(file, "utf8"),
        catch: (e) => new ConfigError({ file: path, issues: [{ path: "", message: `cannot read: ${(e as Error).message}` }] })
      })
      const json = yield* Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: (e) => new ConfigError({ file: path, issues: [{ path: "", message: `invalid JSON: ${(e as Error).message}` }] })
      })
      return yield* decode(path, json)
    }
    if ([".ts", ".mts", ".js", ".mjs"].includes(ext)) {
      const mod = yield* Effect.tryPromise({
        try: () => import(pathToFileURL(file).href) as Promise<{ default?: unknown }>,
        catch: (e) => new ConfigError({ file: path, issues: [{ path: "", message: `cannot load: ${(e as Error).message}` }] })
      })
      if (mod.default === undefined) {
        return yield* new ConfigError({ file: path, issues: [{ path: "", message: "Expected a default export (export default defineConfig({...}))" }] })
      }
      return yield* decode(path, mod.default)
    }
    return yield* new ConfigError({
      file: path,
      issues: [{ path: "", message: `Expected a .json, .ts or .js configuration file, got ${JSON.stringify(ext)}` }]
    })
  })

/**
 * Resolves a secret from the environment.
 *
 * @since 0.1.0
 * @category secrets
 */
export const resolveSecret = (
  secret: typeof Secret.Type,
  path: string,
  env: Environment
): Redacted.Redacted<string> | Issue => {
  if (typeof secret === "string") return Redacted.make(secret)
  const value = env[secret.env]
  const text = value === undefined ? undefined : Redacted.isRedacted(value) ? Redacted.value(value) : value
  return text === undefined || text.length === 0
    ? { path: `${path}.env`, message: `environment variable ${secret.env} is not set` }
    : Redacted.isRedacted(value)
    ? value
    : Redacted.make(text)
}

/**
 * The values of the environment variables a configuration names (`{ "env": "NAME" }`), by name:
 * what the secret resolvers ({@link resolveSecret}, {@link build}, {@link sourcesOf},
 * `ServerOptions.fromConfig`) read. {@link environment} reads one from Effect's `ConfigProvider`
 * (values `Redacted`); a plain record (tests) works too.
 *
 * @since 0.1.0
 * @category secrets
 */
export type Environment = Readonly<Record<string, string | Redacted.Redacted<string> | undefined>>

/**
 * Every environment variable a configuration names as a secret (`{ "env": "NAME" }` anywhere in
 * it: API keys, target headers, signing secrets, source credentials), sorted, each once.
 *
 * @since 0.1.0
 * @category secrets
 */
export const environmentNames = (config: unknown): Array<string> => {
  const names = new Set<string>()
  const seen = new Set<unknown>()
  const visit = (value: unknown): void => {
    if (typeof value !== "object" || value === null || seen.has(value)) return
    seen.add(value)
    if (Array.isArray(value)) return value.forEach(visit)
    const keys = Object.keys(value)
    const env = (value as { readonly env?: unknown }).env
    if (keys.length === 1 && typeof env === "string") names.add(env)
    else for (const key of keys) visit((value as Record<string, unknown>)[key])
  }
  visit(config)
  return [...names].sort()
}

/**
 * Reads the variables `names` with Effect `Config` (`Config.redacted`) from the current
 * `ConfigProvider` — the process environment unless replaced (`Effect.withConfigProvider`, e.g.
 * {@link environmentProvider} in tests). An unset variable is left out: the resolver that needs it
 * reports it by the configuration's path.
 *
 * @since 0.1.0
 * @category secrets
 */
export const environment = (names: ReadonlyArray<string>): Effect.Effect<Environment> =>
  Effect.map(
    Effect.forEach(names, (name) =>
      Effect.map(
        EffectConfig.option(EffectConfig.redacted(name)).pipe(Effect.orElseSucceed(() => Option.none())),
        (value) => [name, Option.getOrUndefined(value)] as const
      )),
    (entries): Environment => Object.fromEntries(entries.filter(([, value]) => value !== undefined))
  )

/**
 * A `ConfigProvider` over a record shaped like the process environment (`FANOUT_PORT`, secrets by
 * name; nested configs joined with `_`, as `ConfigProvider.fromEnv` does): for tests, and for
 * anything that holds its environment in a record.
 *
 * @since 0.1.0
 * @category secrets
 */
export const environmentProvider = (env: Readonly<Record<string, string | undefined>>): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromMap(
    new Map(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined)),
    { pathDelim: "_" }
  )

/**
 * Resolves a target's signing secret (one, or each of a list) from the environment: the
 * `Redacted` secrets (right), or every issue (left).
 *
 * @since 0.1.0
 * @category secrets
 */
export const resolveSigningSecret = (
  secret: typeof SigningSecret.Type,
  path: string,
  env: Environment
): Either.Either<Signing.Secrets, ReadonlyArray<Issue>> => {
  if (!Array.isArray(secret)) {
    const resolved = resolveSecret(secret as typeof Secret.Type, path, env)
    return isIssue(resolved) ? Either.left([resolved]) : Either.right(resolved)
  }
  const issues: Array<Issue> = []
  const entries: Array<Signing.SecretEntry> = []
  ;(secret as ReadonlyArray<typeof Secret.Type | { readonly secret: typeof Secret.Type; readonly until: string }>)
    .forEach((entry, i) => {
      const dated = typeof entry === "object" && "secret" in entry
      const resolved = dated
        ? resolveSecret(entry.secret, `${path}[${i}].secret`, env)
        : resolveSecret(entry, `${path}[${i}]`, env)
      if (isIssue(resolved)) issues.push(resolved)
      else entries.push(dated ? { secret: resolved, until: entry.until } : resolved)
    })
  return issues.length > 0 ? Either.left(issues) : Either.right(entries)
}

const isIssue = (u: unknown): u is Issue => typeof u === "object" && u !== null && "path" in u && "message" in u

/**
 * The policy input of a target's configuration.
 *
 * @since 0.1.0
 * @category building
 */
export const policyOf = (t: typeof TargetConfig.Type): Policy.Input => {
  const retry = t.retry
  const breaker = t.circuitBreaker
  return defined({
    timeout: duration(t.timeout),
    deadline: duration(t.deadline),
    retry: retry && defined({
      maxAttempts: retry.maxAttempts,
      initialDelay: duration(retry.initialDelay),
      factor: retry.factor,
      maxDelay: duration(retry.maxDelay),
      maxAge: duration(retry.maxAge),
      jitter: retry.jitter
    }),
    bulkhead: t.concurrency !== undefined || t.queue !== undefined
      ? defined({ permits: t.concurrency, queue: t.queue })
      : undefined,
    rateLimit: t.rateLimit && defined({
      limit: t.rateLimit.limit,
      interval: duration(t.rateLimit.interval)!,
      maxWait: duration(t.rateLimit.maxWait)
    }),
    circuitBreaker: breaker === false ? false : breaker && defined({
      failureThreshold: breaker.failureThreshold,
      resetAfter: duration(breaker.resetAfter),
      halfOpenProbes: breaker.halfOpenProbes,
      failureRatio: breaker.failureRatio && defined({
        threshold: breaker.failureRatio.threshold,
        window: duration(breaker.failureRatio.window)!,
        minimumRequests: breaker.failureRatio.minimumRequests
      })
    })
  }) as Policy.Input
}

const duration = (input: string | number | undefined): Duration.Duration | undefined =>
  input === undefined ? undefined : Duration.decode(input as Duration.DurationInput)

/** Drops the keys whose value is undefined (exactOptionalPropertyTypes). */
const defined = <T extends Record<string, unknown>>(record: T): { [K in keyof T]?: Exclude<T[K], undefined> } => {
  const out: { [K in keyof T]?: Exclude<T[K], undefined> } = {}
  for (const key in record) {
    const value = record[key]
    if (Object.hasOwn(record, key) && isDefined(value)) out[key] = value
  }
  return out
}

const isDefined = <A>(value: A): value is Exclude<A, undefined> => value !== undefined

/**
 * What a configuration builds: the targets (by name) and the untyped router.
 *
 * @since 0.1.0
 * @category models
 */
export interface Built {
  readonly targets: ReadonlyMap<string, Target.Any>
  readonly router: Router.Router<Event.Any, Target.Any>
  /**
   * Which targets run after which (durable pipelines), from each target's `after`: what
   * `Outbox.layer(router, { after })` takes. Empty when no target has `after`.
   */
  readonly after: Store.Dependencies
  /** Event type → its aggregate (TypeScript configs): what `Outbox.layer(router, { aggregates })` takes. */
  readonly aggregates: Readonly<Record<string, Outbox.AggregateFunction>>
  /** The declared event types (`events`), their schemas compiled: what ingest checks payloads with. */
  readonly eventTypes: Schemas.Service
}

/**
 * Builds targets and routes from a validated configuration, resolving secrets from `env` (by
 * default: read with Effect `Config` from the current `ConfigProvider`, see {@link environment}).
 *
 * @since 0.1.0
 * @category building
 */
export const build = (
  file: string,
  config: FanoutConfig,
  env?: Environment
): Effect.Effect<Built, ConfigError> =>
  env === undefined
    ? Effect.flatMap(environment(environmentNames(config)), (read) => buildWith(file, config, read))
    : buildWith(file, config, env)

const buildWith = (
  file: string,
  config: FanoutConfig,
  env: Environment
): Effect.Effect<Built, ConfigError> =>
  Effect.suspend(() => {
    const issues: Array<Issue> = []
    const targets = new Map<string, Target.Any>()
    for (const [name, t] of Object.entries(config.targets)) {
      const path = `targets.${name}`
      const headers: Record<string, string | Redacted.Redacted<string>> = {}
      for (const [header, value] of Object.entries(t.headers ?? {})) {
        const resolved = typeof value === "string" ? value : resolveSecret(value, `${path}.headers.${header}`, env)
        if (isIssue(resolved)) issues.push(resolved)
        else headers[header] = resolved
      }
      const signing = t.signingSecret === undefined
        ? undefined
        : resolveSigningSecret(t.signingSecret, `${path}.signingSecret`, env)
      if (signing !== undefined && Either.isLeft(signing)) issues.push(...signing.left)
      try {
        targets.set(name, Http.make(name, {
          url: t.url,
          ...(t.method !== undefined ? { method: t.method } : {}),
          headers,
          policy: policyOf(t),
          ...(signing !== undefined && Either.isRight(signing) ? { signingSecret: signing.right } : {}),
          ...(t.body !== undefined
            ? { body: t.body as (event: Event.Any) => unknown }
            : t.after !== undefined && t.after.length > 0
            // A dependent's payload is already `{ event, inputs }`: send it as is, not in an envelope.
            ? { body: dependentBody }
            : {}),
          ...(t.classify !== undefined ? { classify: t.classify as Target.Options<unknown, unknown>["classify"] & {} } : {})
        }))
      } catch (e) {
        issues.push({ path, message: (e as Error).message })
      }
    }
    if (issues.length > 0) return Effect.fail(new ConfigError({ file, issues }))
    let router: Router.Router<Event.Any, Target.Any> = Router.make()
    for (const [pattern, route] of Object.entries(config.routes)) {
      const spec = Array.isArray(route)
        ? { targets: route as ReadonlyArray<string> }
        : route as { targets: ReadonlyArray<string> }
      const shadow = shadowOf(route)
      try {
        router = router.route(pattern, spec.targets.map((n) => targets.get(n)!), {
          shadow: shadow.names.map((n) => targets.get(n)!),
          ...(Object.keys(shadow.mirrors).length > 0 ? { mirrors: shadow.mirrors, compare: { ignore: shadow.ignore } } : {})
        })
      } catch (e) {
        issues.push({ path: `routes[${JSON.stringify(pattern)}]`, message: (e as Error).message })
      }
    }
    for (const type of Object.keys(config.aggregates ?? {})) {
      if (!router.hasRoute(type)) {
        issues.push({
          path: `aggregates[${JSON.stringify(type)}]`,
          message: `Expected an event type that a route matches, got ${JSON.stringify(type)}`
        })
      }
    }
    const eventTypes = eventTypesOf(config, router, issues)
    if (issues.length > 0) return Effect.fail(new ConfigError({ file, issues }))
    return Effect.succeed({
      targets,
      router,
      after: dependenciesOf(config),
      aggregates: (config.aggregates ?? {}) as Readonly<Record<string, Outbox.AggregateFunction>>,
      eventTypes
    })
  })

/** The default body of a target with `after`: its (derived) event's payload, `{ event, inputs }`. */
const dependentBody = (event: Event.Any): unknown => event.payload

/**
 * The event types of a configuration (`events`), each schema compiled once; what is wrong is added
 * to `issues` (a type with `*`, one no route matches, an `Event.define` under another type, a JSON
 * Schema Ajv refuses).
 */
const eventTypesOf = (
  config: FanoutConfig,
  router: Router.Router<Event.Any, Target.Any>,
  issues: Array<Issue>
): Schemas.Service => {
  const declarations: Record<string, Schemas.Declaration> = {}
  const pathOf = (type: string) => `events[${JSON.stringify(type)}]`
  for (const [type, entry] of Object.entries(config.events ?? {})) {
    if (type.includes("*")) {
      issues.push({ path: pathOf(type), message: `Expected an exact event type (no *), got ${JSON.stringify(type)}` })
      continue
    }
    if (!router.hasRoute(type)) {
      issues.push({ path: pathOf(type), message: `Expected an event type that a route matches, got ${JSON.stringify(type)}` })
      continue
    }
    if ("schema" in entry) {
      const schema = entry.schema
      declarations[type] = Schema.isSchema(schema)
        ? { _tag: "Effect", schema }
        : { _tag: "JsonSchema", schema }
    } else if (entry.type !== type) {
      issues.push({
        path: pathOf(type),
        message: `Expected the declaration of ${JSON.stringify(type)}, got Event.define(${JSON.stringify(entry.type)}, …)`
      })
    } else {
      declarations[type] = { _tag: "Effect", schema: entry.payload }
    }
  }
  const compiled = Schemas.make(declarations)
  if (Either.isLeft(compiled)) {
    for (const problem of compiled.left) issues.push({ path: `${pathOf(problem.type)}.schema`, message: problem.message })
    return Schemas.empty
  }
  return compiled.right
}

/**
 * A configured source with its secrets resolved.
 *
 * @since 0.1.0
 * @category models
 */
export type SourceSpec =
  & { readonly name: string; readonly type: string | undefined; readonly concurrency: number | undefined }
  & (
    | {
      readonly _tag: "nats"
      readonly nats: Omit<Extract<typeof SourceConfig.Type, { nats: unknown }>["nats"], "password" | "token"> & {
        readonly password: Redacted.Redacted<string> | undefined
        readonly token: Redacted.Redacted<string> | undefined
      }
    }
    | {
      readonly _tag: "amqp"
      readonly amqp: Omit<Extract<typeof SourceConfig.Type, { amqp: unknown }>["amqp"], "url"> & {
        readonly url: Redacted.Redacted<string>
      }
    }
    | {
      readonly _tag: "redis"
      readonly redis: Omit<Extract<typeof SourceConfig.Type, { redis: unknown }>["redis"], "url"> & {
        readonly url: Redacted.Redacted<string>
      }
    }
  )

/**
 * The configured sources with their secrets resolved from `env` (right), or every issue (left):
 * an unset variable, two sources with one name. Issues never hold a secret's value.
 *
 * @since 0.1.0
 * @category secrets
 */
export const sourcesOf = (
  config: FanoutConfig,
  env: Environment
): Either.Either<ReadonlyArray<SourceSpec>, ReadonlyArray<Issue>> => {
  const issues: Array<Issue> = []
  const out: Array<SourceSpec> = []
  const seen = new Set<string>()
  ;(config.sources ?? []).forEach((source, i) => {
    const path = `sources[${i}]`
    if (seen.has(source.name)) issues.push({ path: `${path}.name`, message: `two sources are named ${source.name}` })
    seen.add(source.name)
    const common = { name: source.name, type: source.type, concurrency: source.concurrency }
    const secret = (value: typeof Secret.Type | undefined, at: string): Redacted.Redacted<string> | undefined => {
      if (value === undefined) return undefined
      const resolved = resolveSecret(value, `${path}.${at}`, env)
      if (isIssue(resolved)) {
        issues.push(resolved)
        return undefined
      }
      return resolved
    }
    if ("nats" in source) {
      const password = secret(source.nats.password, "nats.password")
      const token = secret(source.nats.token, "nats.token")
      out.push({ ...common, _tag: "nats", nats: { ...source.nats, password, token } })
    } else if ("amqp" in source) {
      const url = secret(source.amqp.url, "amqp.url")
      if (url !== undefined) out.push({ ...common, _tag: "amqp", amqp: { ...source.amqp, url } })
    } else {
      const url = secret(source.redis.url, "redis.url")
      if (url !== undefined) out.push({ ...common, _tag: "redis", redis: { ...source.redis, url } })
    }
  })
  return issues.length > 0 ? Either.left(issues) : Either.right(out)
}
