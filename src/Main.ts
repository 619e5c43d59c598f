/**
 * The composition root: the only module that sees the whole layer graph. From a validated
 * configuration (plus the environment's overrides) it wires the HTTP client, the targets and their
 * registry, the store, the outbox, the workers, the HTTP API and telemetry, and runs them until
 * interrupted — then shuts down in order: the API stops accepting and answers what it holds, the
 * workers finish or release their deliveries, the store closes, telemetry flushes.
 *
 * ```
 *  Telemetry (tracer, metric reader)            built first, closed last
 *   └─ HttpClient ─ targets + Registry ─┐
 *      Store ─ Outbox ──────────────────┼─ Http API (+ MetricsRenderer)
 *                                       └─ Worker
 * ```
 *
 * @since 0.1.0
 */
import { mkdirSync } from "node:fs"
import { dirname, isAbsolute, resolve } from "node:path"
import { Headers, type HttpServer, type HttpServerError } from "@effect/platform"
import { Config as EffectConfig, ConfigError as EffectConfigError, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import * as Config from "./Config.js"
import * as Outbox from "./Outbox.js"
import * as Registry from "./Registry.js"
import * as OperatorEvents from "./OperatorEvents.js"
import * as Retention from "./Retention.js"
import * as Schemas from "./Schemas.js"
import * as Http from "./Server/Http.js"
import * as Ingest from "./Server/Ingest.js"
import * as ServerOptions from "./Server/Options.js"
import * as Source from "./Source.js"
import * as AmqpSource from "./Sources/Amqp.js"
import * as NatsSource from "./Sources/Nats.js"
import * as RedisSource from "./Sources/RedisStream.js"
import * as Store from "./Store.js"
import * as Memory from "./Store/Memory.js"
import * as Postgres from "./Store/Postgres.js"
import * as Sqlite from "./Store/Sqlite.js"
import * as Telemetry from "./Telemetry.js"
import * as Transport from "./Transport.js"
import * as Worker from "./Worker.js"
import * as masking from "./internal/maskUrl.js"
import { onIoScheduler } from "./internal/scheduler.js"

/**
 * The package version (also `fanout --version`).
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

// ---------------------------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------------------------

/**
 * What the environment overrides, read with Effect `Config` here and nowhere else:
 *
 * - `FANOUT_PORT`, `FANOUT_HOST`: where the API listens (over `server.port` / `server.host`);
 * - `FANOUT_STORE`: the store (over `store`): a `postgres://` / `postgresql://` URL, `memory`, or a
 *   SQLite file path (relative to the working directory). Redacted: a URL may hold a password;
 * - `OTEL_EXPORTER_OTLP_ENDPOINT`: export spans by OTLP/HTTP to `<endpoint>/v1/traces`.
 *
 * @since 0.1.0
 * @category environment
 */
export interface Overrides {
  readonly port: Option.Option<number>
  readonly host: Option.Option<string>
  readonly store: Option.Option<Redacted.Redacted<string>>
  readonly otlpEndpoint: Option.Option<string>
}

/**
 * @since 0.1.0
 * @category environment
 */
export const overridesConfig: EffectConfig.Config<Overrides> = EffectConfig.all({
  // `FANOUT_PORT`, `FANOUT_HOST`, `FANOUT_STORE`: nested under `FANOUT` (joined with `_` by the
  // environment's provider, `ConfigProvider.fromEnv`, and by `Config.environmentProvider`).
  fanout: EffectConfig.all({
    port: EffectConfig.option(EffectConfig.port("PORT")),
    host: EffectConfig.option(EffectConfig.nonEmptyString("HOST")),
    store: EffectConfig.option(EffectConfig.redacted(EffectConfig.nonEmptyString("STORE")))
  }).pipe(EffectConfig.nested("FANOUT")),
  otlpEndpoint: EffectConfig.option(EffectConfig.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT"))
}).pipe(EffectConfig.map(({ fanout, otlpEndpoint }) => ({ ...fanout, otlpEndpoint })))

const configErrorIssues = (error: EffectConfigError.ConfigError): Array<Config.Issue> => {
  switch (error._op) {
    case "And":
    case "Or":
      return [...configErrorIssues(error.left), ...configErrorIssues(error.right)]
    case "InvalidData":
    case "MissingData":
    case "SourceUnavailable":
    case "Unsupported":
      // The variable's name, as the environment spells it (`FANOUT_PORT`).
      return [{ path: error.path.join("_"), message: error.message }]
  }
}

/**
 * The overrides of the current `ConfigProvider` (the process environment by default). An invalid
 * value (`FANOUT_PORT=abc`) fails with a `ConfigError` for the file `environment`.
 *
 * @since 0.1.0
 * @category environment
 */
export const overrides: Effect.Effect<Overrides, Config.ConfigError> = Effect.mapError(
  overridesConfig,
  (error) => new Config.ConfigError({ file: "environment", issues: configErrorIssues(error) })
)

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/**
 * Which store to open.
 *
 * @since 0.1.0
 * @category store
 */
export type StoreSpec =
  | {
    readonly _tag: "Sqlite"
    readonly filename: string
    readonly synchronous?: "FULL" | "NORMAL" | undefined
    readonly busyTimeoutMs?: number | undefined
  }
  | { readonly _tag: "Postgres"; readonly url: Redacted.Redacted<string> }
  | { readonly _tag: "Memory" }

/**
 * The store named by a `FANOUT_STORE`-style string: a PostgreSQL URL, `memory`, or a SQLite file
 * (resolved against `base`).
 *
 * @since 0.1.0
 * @category store
 */
export const parseStore = (value: string, base: string = process.cwd()): StoreSpec =>
  /^postgres(ql)?:\/\//i.test(value)
    ? { _tag: "Postgres", url: Redacted.make(value) }
    : value === "memory" || value === ":memory:"
    ? { _tag: "Memory" }
    : { _tag: "Sqlite", filename: resolve(base, value.replace(/^sqlite:(\/\/)?/i, "")) }

/**
 * The store of a configuration: `FANOUT_STORE` if set, else the `store` section (SQLite paths are
 * relative to the configuration file's folder), else `fanout.db` next to the configuration file.
 *
 * @since 0.1.0
 * @category store
 */
export const storeOf = (
  file: string,
  config: Config.FanoutConfig,
  fromEnv: Option.Option<Redacted.Redacted<string>>
): StoreSpec => {
  if (Option.isSome(fromEnv)) return parseStore(Redacted.value(fromEnv.value))
  const base = file === "" ? process.cwd() : dirname(resolve(file))
  const store = config.store
  if (store === undefined) return { _tag: "Sqlite", filename: resolve(base, "fanout.db") }
  if ("sqlite" in store) {
    return {
      _tag: "Sqlite",
      filename: isAbsolute(store.sqlite) ? store.sqlite : resolve(base, store.sqlite),
      synchronous: store.synchronous,
      ...(store.busyTimeout !== undefined ? { busyTimeoutMs: Duration.toMillis(Duration.decode(store.busyTimeout as Duration.DurationInput)) } : {})
    }
  }
  if ("postgres" in store) return { _tag: "Postgres", url: Redacted.make(store.postgres) }
  return { _tag: "Memory" }
}

/**
 * A URL (a PostgreSQL URL, a target's URL) with its secrets masked: the password, a user standing
 * alone (a token), and the values of secret-looking query parameters (`password=`, `token=`,
 * `api_key=`, `sig=`, …).
 *
 * @since 0.1.0
 * @category store
 */
export const maskUrl = (url: string): string => masking.maskUrl(url)

/**
 * How a store is described in logs and banners: never with a password.
 *
 * @since 0.1.0
 * @category store
 */
export const describeStore = (spec: StoreSpec): string =>
  spec._tag === "Sqlite"
    ? `sqlite:${spec.filename}`
    : spec._tag === "Postgres"
    ? maskUrl(Redacted.value(spec.url))
    : "memory"

/**
 * The store layer of a spec. A SQLite file's folder is created if missing.
 *
 * @since 0.1.0
 * @category store
 */
export const storeLayer = (spec: StoreSpec): Layer.Layer<Store.DeliveryStore, Store.StoreError> => {
  switch (spec._tag) {
    case "Memory":
      return Memory.layer
    case "Postgres":
      return Postgres.layer({ url: spec.url })
    case "Sqlite":
      return Layer.unwrapEffect(
        Effect.try({
          try: () => {
            mkdirSync(dirname(spec.filename), { recursive: true })
            return Sqlite.layer({ filename: spec.filename, synchronous: spec.synchronous, busyTimeoutMs: spec.busyTimeoutMs })
          },
          catch: (cause) =>
            new Store.StoreError({
              operation: "open",
              reason: "Unavailable",
              message: `open: cannot create the folder of ${spec.filename}: ${(cause as Error).message}`
            })
        })
      )
  }
}

// ---------------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------------

/**
 * A configuration resolved against the environment: everything the layers are built from.
 *
 * @since 0.1.0
 * @category models
 */
export interface App {
  /** The configuration file (as given), for messages. */
  readonly file: string
  readonly config: Config.FanoutConfig
  readonly built: Config.Built
  readonly server: ServerOptions.Options
  readonly store: StoreSpec
  /** `store.retention` (defaults filled in by `Retention`), or `false`: keep everything. */
  readonly retention: Retention.Options | false
  readonly otlpEndpoint: string | undefined
  /** Header names whose values come from the configuration (redacted from spans). */
  readonly secretHeaders: ReadonlyArray<string>
  /** The configured sources (`sources`), secrets resolved. */
  readonly sources?: ReadonlyArray<Config.SourceSpec> | undefined
}

/**
 * Resolves a validated configuration: the environment's overrides (`FANOUT_*`), secrets, targets
 * and routes, server options. Everything from the environment is read with Effect `Config` from
 * the current `ConfigProvider` (the process environment unless replaced with
 * `Effect.withConfigProvider`); `env`, when given, is that environment instead
 * (`Config.environmentProvider(env)`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = (
  file: string,
  config: Config.FanoutConfig,
  env?: Readonly<Record<string, string | undefined>>
): Effect.Effect<App, Config.ConfigError> =>
  env === undefined ? prepareFromProvider(file, config) : Effect.withConfigProvider(
    prepareFromProvider(file, config),
    Config.environmentProvider(env)
  )

const prepareFromProvider = (file: string, config: Config.FanoutConfig): Effect.Effect<App, Config.ConfigError> =>
  Effect.gen(function*() {
    const over = yield* overrides
    // Every secret the configuration names, read with `Config.redacted` from the ConfigProvider.
    const env = yield* Config.environment(Config.environmentNames(config))
    const built = yield* Config.build(file, config, env)
    const server = ServerOptions.fromConfig(config.server, env, {
      ...(Option.isSome(over.port) ? { port: over.port.value } : {}),
      ...(Option.isSome(over.host) ? { host: over.host.value } : {})
    })
    if (Either.isLeft(server)) return yield* new Config.ConfigError({ file, issues: server.left })
    const sources = Config.sourcesOf(config, env)
    if (Either.isLeft(sources)) return yield* new Config.ConfigError({ file, issues: sources.left })
    const secretHeaders = new Set<string>()
    for (const target of Object.values(config.targets)) {
      for (const name of Object.keys(target.headers ?? {})) secretHeaders.add(name.toLowerCase())
    }
    return {
      file,
      config,
      built,
      server: server.right,
      store: storeOf(file, config, over.store),
      retention: retentionOf(config),
      otlpEndpoint: Option.getOrUndefined(over.otlpEndpoint),
      secretHeaders: [...secretHeaders],
      sources: sources.right
    }
  })

/**
 * The retention of a configuration (`store.retention`): its durations, or `false`.
 *
 * @since 0.1.0
 * @category store
 */
export const retentionOf = (config: Config.FanoutConfig): Retention.Options | false => {
  const input = config.store?.retention
  if (input === false) return false
  const duration = (value: Duration.DurationInput | string | number | false | undefined) =>
    value === undefined || value === false ? value : Duration.decode(value as Duration.DurationInput)
  return {
    delivered: duration(input?.delivered),
    dead: duration(input?.dead),
    every: input?.every === undefined ? undefined : Duration.decode(input.every as Duration.DurationInput)
  }
}

/**
 * Loads, validates and resolves a configuration file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = (file: string): Effect.Effect<App, Config.ConfigError> =>
  Effect.flatMap(Config.load(file), (config) => prepare(file, config))

/**
 * The store of a configuration file (with `FANOUT_STORE` applied), without resolving targets or
 * secrets: what the CLI's store commands (`dlq --config`, `status --config`) need.
 *
 * @since 0.1.0
 * @category constructors
 */
export const loadStore = (file: string): Effect.Effect<StoreSpec, Config.ConfigError> =>
  Effect.flatMap(Config.load(file), (config) => Effect.map(overrides, (over) => storeOf(file, config, over.store)))

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** Serve the HTTP API (default true for `serve`). */
  readonly api?: boolean | undefined
  /** Run delivery workers in this process (default true). */
  readonly workers?: boolean | undefined
  readonly worker?: Worker.Tuning | undefined
  /** Telemetry settings over the app's (tests add span processors here). */
  readonly telemetry?: Telemetry.Options | undefined
  /**
   * Which configured sources this process consumes: `true` every one, `false` none, or these names.
   * Default: every one where the API runs (`serve`), none otherwise (`worker`).
   */
  readonly sources?: boolean | ReadonlyArray<string> | undefined
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/**
 * The adapter of a configured source.
 *
 * @since 0.1.0
 * @category sources
 */
export const sourceOf = (spec: Config.SourceSpec): Source.Source => {
  // The configuration's schema (`DurationInput`) admitted only strings `Duration.decode` reads.
  const duration = (value: string | number | undefined) =>
    value === undefined ? undefined : Duration.decode(value as Duration.DurationInput)
  switch (spec._tag) {
    case "nats":
      return NatsSource.make({ name: spec.name, ...spec.nats, ackWait: duration(spec.nats.ackWait) })
    case "amqp":
      return AmqpSource.make({ name: spec.name, ...spec.amqp })
    case "redis":
      return RedisSource.make({ name: spec.name, ...spec.redis, minIdle: duration(spec.redis.minIdle) })
  }
}

/**
 * The server's intake for sources: the rules of `POST /v1/events` (`Ingest.prepare`: the envelope
 * schema, the id rules, a route, the type's payload schema; then `Ingest.store`). A `5xx` answer
 * (the store, the queue bound) is transient; every other refusal rejects the message.
 *
 * @since 0.1.0
 * @category sources
 */
export const ingestIntake = (ingest: Ingest.Service, outbox: Outbox.Service): Source.Intake => {
  const rejected = (failure: { readonly error: { readonly code: string; readonly message: string } }) =>
    new Source.Rejected({ code: failure.error.code, message: failure.error.message })
  return {
    prepare: (body, id, now) => Either.mapLeft(ingest.prepare(Source.withDefaultId(body, id), undefined, now), rejected),
    store: (event) =>
      Effect.mapError(
        ingest.store(event),
        (failure) => failure.error.status >= 500 ? new Source.Unavailable({ message: failure.error.message }) : rejected(failure)
      ),
    depth: Effect.mapBoth(outbox.gauges, {
      onFailure: (error) => new Source.Unavailable({ message: `the store's depth is unreadable (${error.reason})` }),
      onSuccess: (gauges) => gauges.depth
    })
  }
}

/**
 * The sources a run consumes (see {@link RunOptions.sources}), as a layer over the outbox.
 *
 * @since 0.1.0
 * @category sources
 */
export const layerSources = (
  app: App,
  options: RunOptions
): Layer.Layer<never, never, Outbox.Outbox | Source.Stats> => {
  const wanted = options.sources ?? options.api !== false
  const specs = (app.sources ?? []).filter((s) => wanted === true || (Array.isArray(wanted) && wanted.includes(s.name)))
  if (specs.length === 0) return Layer.empty
  return Layer.unwrapEffect(Effect.gen(function*() {
    const ingest = yield* Ingest.Ingest
    const outbox = yield* Outbox.Outbox
    const intake = ingestIntake(ingest, outbox)
    return Source.layerRun(specs.map((spec) => ({
      source: sourceOf(spec),
      options: {
        intake,
        mapping: { type: spec.type },
        concurrency: spec.concurrency,
        maxQueueDepth: app.server.maxQueueDepth
      }
    })))
  })).pipe(Layer.provide(Ingest.layer(app.server)))
}

/**
 * Why the application could not start.
 *
 * @since 0.1.0
 * @category errors
 */
export type StartError = Store.StoreError | HttpServerError.ServeError | Worker.WorkerOptionsError

/**
 * The whole application as one layer: API (optional), workers (optional), over one store, one
 * HTTP client and one set of target runtimes, with telemetry under everything.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  app: App,
  options: RunOptions = {}
): Layer.Layer<HttpServer.HttpServer | Worker.Worker | Store.DeliveryStore | Registry.Registry, StartError> => {
  const targets = [...app.built.targets.values()]
  const TargetsLive = Registry.layerTargets(targets).pipe(Layer.provide(Transport.layer()))
  const StoreLive = Telemetry.layerPropagateTrace(storeLayer(app.store))
  const Core = Layer.merge(TargetsLive, StoreLive)
  const TelemetryLive = Telemetry.layer({
    otlpEndpoint: app.otlpEndpoint,
    serviceVersion: version,
    ...options.telemetry
  })
  const WorkerLive = options.workers === false
    ? Layer.empty
    : Worker.layer({ router: app.built.router, ...options.worker })
  // Retention runs where the API runs (`fanout serve`, with or without `--api-only`), not in `fanout worker`.
  const RetentionLive = options.api === false || app.retention === false ? Layer.empty : Retention.layer(app.retention)
  // Operator events, where the API runs too, when the configuration asks for them.
  const operator = app.config.operatorEvents
  const OperatorEventsLive = options.api === false || operator === undefined
    ? Layer.empty
    : OperatorEvents.layer({
      // The configuration's durations are validated duration strings or milliseconds.
      minInterval: operator.minInterval as Duration.DurationInput | undefined,
      every: operator.every as Duration.DurationInput | undefined,
      dlqThreshold: operator.dlqThreshold,
      sourceLagThreshold: operator.sourceLagThreshold
    }).pipe(Layer.provide(Outbox.layer(app.built.router, { after: app.built.after, aggregates: app.built.aggregates })))
  const ApiLive = options.api === false
    ? Layer.empty
    : Http.layer(app.server).pipe(
      Layer.provide(Layer.mergeAll(
        // Durable pipelines: each event's deliveries carry the configured `after` links.
        Outbox.layer(app.built.router, { after: app.built.after, aggregates: app.built.aggregates }),
        // The declared event types: ingest checks payloads against their schemas.
        Schemas.layer(app.built.eventTypes),
        Telemetry.layerMetricsRenderer
      ))
    )
  const SourcesLive = layerSources(app, options).pipe(
    Layer.provide(Layer.merge(
      Outbox.layer(app.built.router, { after: app.built.after, aggregates: app.built.aggregates }),
      // Sources check payloads against the declared event types, as ingest does.
      Schemas.layer(app.built.eventTypes)
    ))
  )
  // Narrowed: with `api: false` / `workers: false` the layer lacks `HttpServer` / `Worker` (a type
  // cannot follow these run-time options); `run` and `provide`'s callers only use what they enabled.
  return Layer.mergeAll(ApiLive, WorkerLive, RetentionLive, SourcesLive, OperatorEventsLive).pipe(
    Layer.provideMerge(Layer.merge(Core, Source.layerStats)),
    Layer.provide(TelemetryLive)
  ) as Layer.Layer<HttpServer.HttpServer | Worker.Worker | Store.DeliveryStore | Registry.Registry, StartError>
}

/**
 * Runs `effect` with the application's layer (built before, closed after it), with configured
 * header names redacted from HTTP spans.
 *
 * @since 0.1.0
 * @category running
 */
export const provide = <A, E, R>(
  app: App,
  options: RunOptions,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<
  A,
  E | StartError,
  Exclude<R, HttpServer.HttpServer | Worker.Worker | Store.DeliveryStore | Registry.Registry>
> =>
  Effect.locallyWith(
    Effect.provide(effect, layer(app, options)),
    Headers.currentRedactedNames,
    (names) => [...names, ...app.secretHeaders, "webhook-signature"]
  )

/**
 * What `serve` / `worker` announce once everything is up.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ready {
  /** `http://host:port` of the API (none for workers only). */
  readonly url: string | undefined
  readonly store: string
  readonly targets: ReadonlyArray<string>
}

/**
 * Runs the application until interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`), then
 * shuts it down gracefully. `onReady` runs once everything is up.
 *
 * @since 0.1.0
 * @category running
 */
export const run = <E = never, R = never>(
  app: App,
  options: RunOptions = {},
  onReady: (ready: Ready) => Effect.Effect<void, E, R> = () => Effect.void
): Effect.Effect<never, StartError | E, Exclude<R, HttpServer.HttpServer | Worker.Worker | Store.DeliveryStore | Registry.Registry>> =>
  // Every fiber of the application (server, store, workers) on the I/O-friendly scheduler.
  onIoScheduler(provide(
    app,
    options,
    Effect.gen(function*() {
      const url = options.api === false ? undefined : yield* Http.url
      const ready: Ready = { url, store: describeStore(app.store), targets: [...app.built.targets.keys()] }
      const running = options.workers === false ? "fanout: sources running" : "fanout: workers running"
      yield* Effect.logInfo(url === undefined ? running : `fanout: listening on ${url}`).pipe(
        Effect.annotateLogs({
          ...(url !== undefined ? { url } : {}),
          store: ready.store,
          targets: ready.targets.join(","),
          workers: options.workers === false ? false : options.worker?.only?.join(",") ?? true,
          tracing: app.otlpEndpoint !== undefined ? "otlp" : "off"
        })
      )
      yield* onReady(ready)
      return yield* Effect.never
    }).pipe(
      Effect.onInterrupt(() => Effect.logInfo("fanout: shutting down"))
    )
  ))
