/**
 * The `fanout` command line (`@effect/cli`).
 *
 * ```
 * fanout serve   --config <file>                 the API and the workers
 * fanout worker  --config <file>                 workers only (scale out on PostgreSQL)
 * fanout demo                                    mock APIs + a demo config (what `npm start` runs)
 * fanout send    <type> <json> [--wait]          post an event to a running server
 * fanout status  <event id>                      an event's deliveries and attempt history
 * fanout targets                                 targets: policy, circuit, in flight, latency
 * fanout events [--type --status --target …]    find events, newest first
 * fanout dlq list | replay [<id>] | purge [<id>] dead letters
 * ```
 *
 * The client commands (`send`, `status`, `targets`, `dlq`) talk to a running server's API
 * (`--url`, default `$FANOUT_URL` or `http://127.0.0.1:8080`; `--api-key`, default
 * `$FANOUT_API_KEY`). `status`, `targets` and `dlq` can instead work on the store directly with
 * `--config <file>` (no server needed: e.g. a deployment of workers only).
 *
 * Exit codes: 0 done; 1 the command failed at run time (server unreachable or refusing, store
 * error, a delivery dead with `send --wait`); 2 usage or configuration error.
 *
 * @since 0.1.0
 */
import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { HttpClientError, HttpClientResponse } from "@effect/platform"
import type { HttpClient } from "@effect/platform"
import type { Teardown } from "@effect/platform/Runtime"
import { resolve } from "node:path"
import {
  Cause,
  Config as EffectConfig,
  Console,
  Data,
  Duration,
  Effect,
  Exit,
  FiberRef,
  LogLevel,
  Option,
  Redacted
} from "effect"
import * as Client from "./Client.js"
import * as Config from "./Config.js"
import * as Demo from "./Demo.js"
import * as Main from "./Main.js"
import * as Retention from "./Retention.js"
import * as Errors from "./Server/Errors.js"
import * as Graph from "./Server/Graph.js"
import * as Store from "./Store.js"
import * as Telemetry from "./Telemetry.js"
import * as Transport from "./Transport.js"
import type * as Worker from "./Worker.js"

// ---------------------------------------------------------------------------------------------
// Errors and exit codes
// ---------------------------------------------------------------------------------------------

/**
 * The command line asks for something impossible (exit code 2).
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/**
 * The command could not be done (exit code 1).
 *
 * @since 0.1.0
 * @category errors
 */
export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

/**
 * The outcome of the program, once reported: the exit code to leave with.
 *
 * @since 0.1.0
 * @category errors
 */
export class ExitCode extends Data.TaggedError("ExitCode")<{ readonly code: number }> {}

/**
 * @since 0.1.0
 * @category exit codes
 */
export const exitCodes = { ok: 0, failure: 1, usage: 2 } as const

const isTagged = (u: unknown, tag: string): boolean =>
  typeof u === "object" && u !== null && "_tag" in u && (u as { _tag: unknown })._tag === tag

/**
 * The exit code of an error, and what to print on stderr (nothing when already printed).
 *
 * @since 0.1.0
 * @category exit codes
 */
export const describeError = (error: unknown): { readonly code: number; readonly message: string | undefined } => {
  if (ValidationError.isValidationError(error)) return { code: exitCodes.usage, message: undefined }
  if (error instanceof Config.ConfigError) {
    const n = error.issues.length
    return {
      code: exitCodes.usage,
      message: `invalid configuration (${n} issue${n === 1 ? "" : "s"}):\n${error.message}`
    }
  }
  if (error instanceof UsageError) return { code: exitCodes.usage, message: error.message }
  // A bad worker option (`--concurrency 0`) is a usage error like a bad flag.
  if (isTagged(error, "WorkerOptionsError")) {
    return { code: exitCodes.usage, message: String((error as { message: unknown }).message) }
  }
  if (error instanceof CommandFailed) return { code: exitCodes.failure, message: error.message }
  if (error instanceof Store.StoreError) return { code: exitCodes.failure, message: `store: ${error.message}` }
  if (isTagged(error, "ServeError")) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause
    return {
      code: exitCodes.failure,
      message: `cannot serve the API: ${cause?.code ?? cause?.message ?? "unknown error"}`
    }
  }
  const message = error instanceof Error || (typeof error === "object" && error !== null && "message" in error)
    ? String((error as { message: unknown }).message)
    : String(error)
  return { code: exitCodes.failure, message }
}

/**
 * Prints a failure (to stderr) and turns it into its {@link ExitCode}.
 *
 * @since 0.1.0
 * @category exit codes
 */
export const report = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, ExitCode, R> =>
  Effect.catchAllCause(effect, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const { code, message } = describeError(failure.value)
      return Effect.zipRight(
        message === undefined ? Effect.void : Console.error(`fanout: ${message}`),
        Effect.fail(new ExitCode({ code }))
      )
    }
    return Effect.zipRight(
      Console.error(`fanout: unexpected error\n${Cause.pretty(cause)}`),
      Effect.fail(new ExitCode({ code: exitCodes.failure }))
    )
  })

/**
 * The teardown for `NodeRuntime.runMain`: the {@link ExitCode}, 0 on success or interruption
 * (SIGINT/SIGTERM: a graceful stop), 1 otherwise.
 *
 * @since 0.1.0
 * @category exit codes
 */
export const teardown: Teardown = (exit, onExit) => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(exitCodes.ok)
  const failure = Cause.failureOption(exit.cause)
  onExit(Option.isSome(failure) && failure.value instanceof ExitCode ? failure.value.code : exitCodes.failure)
}

// ---------------------------------------------------------------------------------------------
// Shared options
// ---------------------------------------------------------------------------------------------

const configFile = Options.file("config").pipe(
  Options.withAlias("c"),
  Options.withFallbackConfig(EffectConfig.string("FANOUT_CONFIG")),
  Options.withDescription(
    "The configuration: a .json file, or a .ts/.js module exporting defineConfig({...}) (default $FANOUT_CONFIG)"
  )
)

const storeConfigFile = Options.file("config").pipe(
  Options.withAlias("c"),
  Options.optional,
  Options.withDescription("Work on the store of this configuration directly instead of a server's API")
)

const logFormat = (fallback: Telemetry.LogFormat) =>
  Options.choice("log-format", ["json", "pretty", "logfmt", "none"]).pipe(
    Options.withFallbackConfig(EffectConfig.literal("json", "pretty", "logfmt", "none")("FANOUT_LOG_FORMAT")),
    Options.withDefault(fallback),
    Options.withDescription(`Log lines as json, pretty, logfmt, or none (default $FANOUT_LOG_FORMAT or ${fallback})`)
  )

const concurrency = Options.integer("concurrency").pipe(
  Options.optional,
  Options.withDescription("Deliveries a worker holds at once, across targets (default 100)")
)

const targetGroup = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(description))

/**
 * The worker tuning of `serve` / `worker`: `--concurrency`, and the comma-separated target names of
 * `--targets` / `--worker-targets`, each checked against the configuration.
 */
const tuning = (
  app: Main.App,
  flag: string,
  concurrency: Option.Option<number>,
  names: Option.Option<string>
): Effect.Effect<Worker.Tuning, UsageError> =>
  Effect.gen(function*() {
    const base: Worker.Tuning = Option.match(concurrency, { onNone: () => ({}), onSome: (n) => ({ concurrency: n }) })
    if (Option.isNone(names)) return base
    const only = [...new Set(names.value.split(",").map((name) => name.trim()).filter((name) => name.length > 0))]
    const known = [...app.built.targets.keys()]
    const unknown = only.filter((name) => !app.built.targets.has(name))
    if (only.length === 0 || unknown.length > 0) {
      return yield* new UsageError({
        message: `--${flag}: ${
          only.length === 0 ? "no target named" : `unknown target ${unknown.join(", ")}`
        } (configured: ${known.join(", ")})`
      })
    }
    return { ...base, only }
  })

const serverUrl = Options.text("url").pipe(
  Options.withFallbackConfig(EffectConfig.string("FANOUT_URL")),
  Options.withDefault("http://127.0.0.1:8080"),
  Options.withDescription("The server's base URL (default $FANOUT_URL or http://127.0.0.1:8080)")
)

const apiKey = Options.redacted("api-key").pipe(
  Options.withFallbackConfig(EffectConfig.redacted("FANOUT_API_KEY")),
  Options.optional,
  Options.withDescription("A producer API key, sent as `Authorization: Bearer` (default $FANOUT_API_KEY)")
)

const filterTarget = Options.text("target").pipe(
  Options.optional,
  Options.withDescription("Only this target's dead letters")
)
const filterError = Options.text("error").pipe(
  Options.optional,
  Options.withDescription("Only dead letters whose last attempt ended so: http_400, http_503, timeout, network, …")
)

// ---------------------------------------------------------------------------------------------
// Talking to a server
// ---------------------------------------------------------------------------------------------

interface Remote {
  readonly url: string
  readonly apiKey: Option.Option<Redacted.Redacted<string>>
}

const ClientLive = Transport.layer()

/**
 * Runs `f` with the typed client ({@link Client.make}) of the server at `remote`: a refusal the
 * server answered (its declared error body), a transport failure, or an answer that does not
 * decode becomes a {@link CommandFailed} saying which; `label` names the request in messages.
 */
const callApi = <A, E>(
  remote: Remote,
  label: string,
  f: (client: Client.Client) => Effect.Effect<A, E>
): Effect.Effect<A, CommandFailed | UsageError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    if (!URL.canParse(remote.url) || !/^https?:$/.test(new URL(remote.url).protocol)) {
      return yield* new UsageError({ message: `--url: expected an http(s) URL, got ${JSON.stringify(remote.url)}` })
    }
    const client = yield* Client.make({ baseUrl: remote.url, apiKey: Option.getOrUndefined(remote.apiKey) })
    return yield* f(client).pipe(
      Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () => new CommandFailed({ message: `${remote.url}: no answer within 60 seconds` })
      }),
      Effect.catchAll((error) => Effect.flatMap(failureOf(remote, label, error), Effect.fail))
    )
  })

/** What a failed call says. */
const failureOf = (remote: Remote, label: string, error: unknown): Effect.Effect<CommandFailed> => {
  if (error instanceof CommandFailed) return Effect.succeed(error)
  if (Client.isRefusal(error)) return Effect.succeed(new CommandFailed({ message: describeRefusal(label, error) }))
  if (HttpClientError.isHttpClientError(error)) {
    if (error._tag === "RequestError") {
      const cause = error.cause as { code?: string; cause?: { code?: string }; message?: string } | undefined
      const reason = cause?.code ?? cause?.cause?.code ?? cause?.message ?? error.message
      return Effect.succeed(new CommandFailed({ message: `cannot reach ${remote.url}: ${reason}` }))
    }
    // A status the API does not declare for this endpoint: its body, if it has the one error shape.
    const response = error.response
    return HttpClientResponse.schemaBodyJson(Errors.ErrorBody)(response).pipe(
      Effect.map((body) => new CommandFailed({ message: describeRefusal(label, body) })),
      Effect.orElseSucceed(() =>
        new CommandFailed({ message: `${label}: HTTP ${response.status}: unexpected answer (${error.reason})` })
      )
    )
  }
  const message = typeof error === "object" && error !== null && "message" in error
    ? String(error.message)
    : String(error)
  return Effect.succeed(new CommandFailed({ message: `${remote.url}: cannot read the answer of ${label}: ${message}` }))
}

const describeRefusal = (label: string, body: Client.Refusal): string => {
  const error = body.error
  const lines = [`${label}: HTTP ${error.status}: ${error.message}`]
  for (const issue of error.issues ?? []) lines.push(`  ${issue.path || "(body)"}: ${issue.message}`)
  return lines.join("\n")
}

const printJson = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

/** What the client commands can fail with. */
type Failure = UsageError | CommandFailed | Config.ConfigError | Store.StoreError

const withClient = <A, E>(effect: Effect.Effect<A, E, HttpClient.HttpClient>) => Effect.provide(effect, ClientLive)

/** Runs `f` against the store of a configuration (opened here, closed after). */
const withStore = <A, E>(
  file: string,
  f: (store: Store.DeliveryStore) => Effect.Effect<A, E>
): Effect.Effect<A, E | Config.ConfigError | Store.StoreError> =>
  Effect.flatMap(
    Main.loadStore(file),
    (spec) => Effect.provide(Effect.flatMap(Store.DeliveryStore, f), Main.storeLayer(spec))
  )

const dropUndefined = (record: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined))

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString())

// ---------------------------------------------------------------------------------------------
// serve, worker, demo
// ---------------------------------------------------------------------------------------------

const logLevels = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  warn: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
} as const

/**
 * Runs `effect` with the log format given. The level: the built-in `--log-level` if given, else
 * `$FANOUT_LOG_LEVEL`, else info.
 */
const runLogged = <A, E, R>(format: Telemetry.LogFormat, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const current = yield* FiberRef.get(FiberRef.currentMinimumLogLevel)
    const fromEnv = yield* EffectConfig.option(
      EffectConfig.literal("all", "trace", "debug", "info", "warning", "warn", "error", "fatal", "none")(
        "FANOUT_LOG_LEVEL"
      ).pipe(
        EffectConfig.map((name) => logLevels[name])
      )
    ).pipe(
      Effect.mapError((error) => new UsageError({ message: `FANOUT_LOG_LEVEL: ${error.message}` }))
    )
    const level = current === LogLevel.Info ? Option.getOrUndefined(fromEnv) : undefined
    return yield* Effect.provide(effect, Telemetry.logger(format, level))
  })

const stopped = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.onInterrupt(effect, () => Effect.logInfo("fanout: stopped"))

/**
 * `serve` / `worker`: loads the configuration, checks the worker's target group (`flag`), and runs
 * the application with the options `run` builds from the worker tuning, logging as asked.
 */
const runApp = (
  options: {
    readonly config: string
    readonly logFormat: Telemetry.LogFormat
    readonly concurrency: Option.Option<number>
  },
  flag: string,
  names: Option.Option<string>,
  run: (worker: Worker.Tuning) => Main.RunOptions
) =>
  runLogged(
    options.logFormat,
    Effect.flatMap(Main.load(options.config), (app) =>
      Effect.flatMap(tuning(app, flag, options.concurrency, names), (worker) =>
        stopped(Main.run(app, run(worker)))))
  )

const serve = Command.make(
  "serve",
  {
    config: configFile,
    apiOnly: Options.boolean("api-only").pipe(
      Options.withDescription(
        "Serve the API only: run the workers elsewhere (`fanout worker`, shared PostgreSQL store)"
      )
    ),
    concurrency,
    workerTargets: targetGroup(
      "worker-targets",
      "Deliver to these targets only (comma-separated) in this process; `fanout worker --targets` processes serve the others"
    ),
    logFormat: logFormat("json")
  },
  (options) =>
    runApp(options, "worker-targets", options.workerTargets, (worker) => ({ workers: !options.apiOnly, worker }))
).pipe(
  Command.withDescription("Serve the HTTP API and run the delivery workers until SIGINT/SIGTERM (then stop gracefully)")
)

const worker = Command.make(
  "worker",
  {
    config: configFile,
    concurrency,
    targets: targetGroup(
      "targets",
      "Deliver to these targets only (comma-separated): a process of their own isolates them (a hung target's timeouts then cost the others nothing)"
    ),
    logFormat: logFormat("json")
  },
  (options) => runApp(options, "targets", options.targets, (worker) => ({ api: false, worker }))
).pipe(
  Command.withDescription(
    "Run delivery workers only (no API) until SIGINT/SIGTERM; several may share a PostgreSQL store"
  )
)

/**
 * The demo's welcome text: where to post, and a `curl` line to paste.
 *
 * @since 0.1.0
 * @category demo
 */
export const banner = (
  ready: Main.Ready,
  apis: { readonly inventoryUrl: string; readonly notificationUrl: string },
  options: { readonly apiKeyEnv?: string | undefined; readonly failureRate: number }
): string => {
  const url = ready.url ?? "http://127.0.0.1:8080"
  const auth = options.apiKeyEnv !== undefined ? ` \\\n    -H "authorization: Bearer $${options.apiKeyEnv}"` : ""
  const percent = Math.round(options.failureRate * 100)
  return [
    "",
    "  Fanout demo: one event in, two APIs out.",
    "",
    `  API       ${url}   (docs ${url}/docs, metrics ${url}/metrics)`,
    `  dashboard ${url}/`,
    `  store     ${ready.store}`,
    `  targets   inventory    -> ${apis.inventoryUrl}`,
    `            notification -> ${apis.notificationUrl}${
      percent > 0 ? `   (answers 503 ${percent}% of the time: watch the retries)` : ""
    }`,
    "",
    "  Post an order (and wait until both APIs have it):",
    "",
    `  curl -sS -X POST '${url}/v1/events?wait=settled' \\`,
    `    -H 'content-type: application/json'${auth} \\`,
    `    -d '${JSON.stringify(Demo.sampleEvent)}'`,
    "",
    `  Then: curl -sS ${url}/v1/events/<id>${
      options.apiKeyEnv !== undefined ? ` -H "authorization: Bearer $${options.apiKeyEnv}"` : ""
    }   (every attempt)`,
    `        curl -sS ${url}/v1/targets${
      options.apiKeyEnv !== undefined ? ` -H "authorization: Bearer $${options.apiKeyEnv}"` : ""
    }         (circuit, in flight, latency)`,
    "  Ctrl-C stops the server cleanly.",
    ""
  ].join("\n")
}

const demo = Command.make(
  "demo",
  {
    database: Options.text("database").pipe(
      Options.withDefault(Demo.defaultDatabase),
      Options.withDescription(`The SQLite file of the demo (default ${Demo.defaultDatabase}; $FANOUT_STORE wins)`)
    ),
    failureRate: Options.float("failure-rate").pipe(
      Options.withDefault(0.2),
      Options.withDescription("Share of notification requests the mock answers 503 (default 0.2)")
    ),
    logFormat: logFormat("pretty")
  },
  (options) =>
    runLogged(
      options.logFormat,
      Effect.scoped(Effect.gen(function*() {
        if (!(options.failureRate >= 0 && options.failureRate <= 1)) {
          return yield* new UsageError({
            message: `--failure-rate: expected a number from 0 to 1, got ${options.failureRate}`
          })
        }
        const apis = yield* Demo.mockApis({ failureRate: options.failureRate })
        const key = yield* EffectConfig.option(EffectConfig.redacted(EffectConfig.nonEmptyString("FANOUT_API_KEY")))
        const apiKeyEnv = Option.isSome(key) ? "FANOUT_API_KEY" : undefined
        const over = yield* Main.overrides
        const config = yield* Config.decode(
          "(demo)",
          Demo.config(apis, {
            database: resolve(options.database),
            port: Option.getOrElse(over.port, () => 8080),
            apiKeyEnv
          })
        )
        const app = yield* Main.prepare("(demo)", config)
        return yield* stopped(
          Main.run(
            app,
            {},
            (ready) => Console.log(banner(ready, apis, { apiKeyEnv, failureRate: options.failureRate }))
          )
        )
      }))
    )
).pipe(Command.withDescription(
  "Start the server with two mock APIs (inventory, and a flaky notification service) on loopback ports, on a SQLite file"
))

// ---------------------------------------------------------------------------------------------
// send, status, targets
// ---------------------------------------------------------------------------------------------

const send = Command.make(
  "send",
  {
    type: Args.text({ name: "type" }).pipe(Args.withDescription("The event type, e.g. order.placed")),
    payload: Args.text({ name: "json" }).pipe(Args.withDescription("The payload, as JSON: '{\"orderId\":\"o-1\"}'")),
    wait: Options.boolean("wait").pipe(
      Options.withDescription(
        "Wait until every delivery is delivered, dead, or held by a dead input (the server's waitTimeout bounds it); exit 1 if one is dead"
      )
    ),
    id: Options.text("id").pipe(
      Options.optional,
      Options.withDescription("The event id (its idempotency key); default a new UUIDv7")
    ),
    key: Options.text("key").pipe(Options.optional, Options.withDescription("The ordering/partition key")),
    deliverAt: Options.text("deliver-at").pipe(
      Options.optional,
      Options.withDescription("Later delivery: no attempt before this RFC 3339 instant (2026-01-02T03:04:05Z)")
    ),
    delay: Options.text("delay").pipe(
      Options.optional,
      Options.withDescription("Later delivery: no attempt before this long from now (\"30 seconds\", \"5 minutes\")")
    ),
    url: serverUrl,
    apiKey
  },
  (options) =>
    withClient(Effect.gen(function*() {
      const payload = yield* Effect.try({
        try: () => JSON.parse(options.payload) as unknown,
        catch: (e) => new UsageError({ message: `<json>: not valid JSON: ${(e as Error).message}` })
      })
      const answer = yield* callApi(options, "POST /v1/events", (client) =>
        client.events.send({
          payload: {
            type: options.type,
            payload,
            ...(Option.isSome(options.id) ? { id: options.id.value } : {}),
            ...(Option.isSome(options.key) ? { key: options.key.value } : {}),
            ...(Option.isSome(options.deliverAt) ? { deliverAt: options.deliverAt.value } : {}),
            ...(Option.isSome(options.delay) ? { delay: options.delay.value } : {})
          },
          urlParams: options.wait ? { wait: "settled" } : {},
          headers: {}
        }))
      yield* printJson(answer)
      const deliveries = answer.deliveries
      // Shadow deliveries are observers: their failures never make `send --wait` fail.
      const primary = deliveries.filter((d) => d.shadow !== true)
      const dead = primary.filter((d) => d.status === "dead")
      const held = primary.filter((d) => d.heldBy !== undefined)
      if (options.wait && dead.length > 0) {
        return yield* new CommandFailed({
          message: `dead-lettered: ${dead.map((d) => d.target).join(", ")}${
            held.length > 0 ? `; held until replayed: ${held.map((d) => d.target).join(", ")}` : ""
          }`
        })
      }
    }))
).pipe(Command.withDescription("Post an event to a running server (POST /v1/events) and print the answer"))

const status = Command.make(
  "status",
  {
    id: Args.text({ name: "event id" }),
    config: storeConfigFile,
    url: serverUrl,
    apiKey
  },
  (options) =>
    Option.match(options.config, {
      onNone: (): Effect.Effect<void, Failure> =>
        withClient(Effect.flatMap(
          callApi(options, `GET /v1/events/${options.id}`, (c) => c.events.status({ path: { id: options.id } })),
          printJson
        )),
      onSome: (file): Effect.Effect<void, Failure> =>
        // The configuration too: a delivery to a target it no longer names is marked `unconfigured` (held, not failed).
        Effect.zip(withStore(file, (store) => store.status(options.id)), Config.load(file)).pipe(
          Effect.flatMap(([found, config]) =>
            Option.match(found, {
              onNone: () =>
                Effect.fail(new CommandFailed({ message: `no event with id ${JSON.stringify(options.id)}` })),
              onSome: (s) => {
                const held = Graph.heldBy(s.deliveries)
                return printJson({
                  ...s,
                  enqueuedAt: iso(s.enqueuedAt),
                  deliveries: s.deliveries.map((d) =>
                    dropUndefined({
                      ...d,
                      nextAttemptAt: iso(d.nextAttemptAt),
                      leaseExpiresAt: iso(d.leaseExpiresAt),
                      finishedAt: iso(d.finishedAt),
                      heldBy: held.get(d.target),
                      unconfigured: Object.hasOwn(config.targets, d.target) ? undefined : true,
                      history: d.history.map((a) => ({ ...a, startedAt: iso(a.startedAt) }))
                    })
                  )
                })
              }
            })
          )
        )
    })
).pipe(
  Command.withDescription(
    "Show an event's deliveries and attempt history (GET /v1/events/:id, or the store with --config)"
  )
)

const resend = Command.make(
  "resend",
  {
    id: Args.text({ name: "event id" }),
    target: Options.text("target").pipe(Options.withDescription("The target to send the event to again")),
    url: serverUrl,
    apiKey
  },
  (options) =>
    withClient(Effect.flatMap(
      callApi(
        options,
        `POST /v1/events/${options.id}/targets/${options.target}/resend`,
        (c) => c.events.resend({ path: { id: options.id, name: options.target } })
      ),
      printJson
    ))
).pipe(
  Command.withDescription(
    "Send a delivered event to one target again, under a new idempotency key (POST /v1/events/:id/targets/:name/resend)"
  )
)

const purgeOrphan = Command.make(
  "purge-orphan",
  { target: Args.text({ name: "target" }), url: serverUrl, apiKey },
  (options) =>
    withClient(Effect.flatMap(
      callApi(
        options,
        `DELETE /v1/targets/${options.target}/deliveries`,
        (c) => c.targets.purgeOrphan({ path: { name: options.target } })
      ),
      printJson
    ))
).pipe(
  Command.withDescription(
    "Delete the pending and dead deliveries of a target the server's configuration no longer names (DELETE /v1/targets/:name/deliveries)"
  )
)

const targets = Command.make(
  "targets",
  { config: storeConfigFile, url: serverUrl, apiKey },
  (options) =>
    Option.match(options.config, {
      onNone: (): Effect.Effect<void, Failure> =>
        withClient(Effect.flatMap(callApi(options, "GET /v1/targets", (client) => client.targets.list()), printJson)),
      onSome: (file): Effect.Effect<void, Failure> =>
        Effect.flatMap(Config.load(file), (config) =>
          printJson({
            targets: Object.entries(config.targets).map(([name, t]) =>
              dropUndefined({
                name,
                method: t.method ?? "POST",
                url: Main.maskUrl(t.url),
                headers: t.headers === undefined ? undefined : Object.keys(t.headers),
                timeout: t.timeout,
                deadline: t.deadline,
                retry: t.retry,
                concurrency: t.concurrency,
                rateLimit: t.rateLimit,
                circuitBreaker: t.circuitBreaker,
                signed: t.signingSecret !== undefined ? true : undefined,
                after: t.after !== undefined && t.after.length > 0 ? t.after : undefined
              })
            ),
            routes: config.routes
          }))
    })
).pipe(
  Command.withDescription(
    "List the targets: policy, circuit, in flight, latency (GET /v1/targets; with --config, as configured)"
  )
)

// ---------------------------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------------------------

/** `--since` / `--until`: ISO-8601 or epoch milliseconds (as the API takes them). */
const instantOption = (name: string, description: string) =>
  Options.text(name).pipe(Options.optional, Options.withDescription(`${description} (ISO-8601 or epoch milliseconds)`))

const parseInstant = (name: string, value: Option.Option<string>): Effect.Effect<number | undefined, UsageError> => {
  if (Option.isNone(value)) return Effect.succeed(undefined)
  const n = /^\d{1,16}$/.test(value.value) ? Number(value.value) : Date.parse(value.value)
  return Number.isFinite(n)
    ? Effect.succeed(n)
    : Effect.fail(
      new UsageError({
        message: `--${name}: expected an ISO-8601 instant or epoch milliseconds, got ${JSON.stringify(value.value)}`
      })
    )
}

const events = Command.make(
  "events",
  {
    type: Options.text("type").pipe(Options.optional, Options.withDescription("Only events of this type")),
    status: Options.choice("status", ["pending", "in_flight", "delivered", "dead", "compensated"] as const).pipe(
      Options.optional,
      Options.withDescription("Only events with a delivery in this state (to --target, when given too)")
    ),
    target: filterTarget,
    since: instantOption("since", "Enqueued at or after"),
    until: instantOption("until", "Enqueued at or before"),
    limit: Options.integer("limit").pipe(
      Options.withDefault(50),
      Options.withDescription("At most this many (1-1000)")
    ),
    cursor: Options.text("cursor").pipe(Options.optional, Options.withDescription("The `next` of the previous page")),
    config: storeConfigFile,
    url: serverUrl,
    apiKey
  },
  (options) =>
    Effect.gen(function*() {
      if (options.limit < 1 || options.limit > 1000) {
        return yield* new UsageError({ message: `--limit: expected 1 to 1000, got ${options.limit}` })
      }
      const since = yield* parseInstant("since", options.since)
      const until = yield* parseInstant("until", options.until)
      const query = {
        type: Option.getOrUndefined(options.type),
        status: Option.getOrUndefined(options.status),
        target: Option.getOrUndefined(options.target),
        since,
        until,
        cursor: Option.getOrUndefined(options.cursor)
      }
      if (Option.isNone(options.config)) {
        return yield* withClient(Effect.flatMap(
          callApi(options, "GET /v1/events", (client) =>
            client.events.search({
              urlParams: { limit: options.limit, ...(dropUndefined(query) as Partial<typeof query>) }
            })),
          printJson
        ))
      }
      return yield* withStore(options.config.value, (store) => store.events({ limit: options.limit, ...query })).pipe(
        Effect.flatMap((page) =>
          printJson(dropUndefined({
            items: page.items.map((e) => ({ ...e, enqueuedAt: iso(e.enqueuedAt) })),
            next: page.next
          }))
        )
      )
    })
).pipe(
  Command.withDescription(
    "Find events, newest first, by type, delivery status, target and enqueue time (GET /v1/events, or the store with --config)"
  )
)

// ---------------------------------------------------------------------------------------------
// dlq
// ---------------------------------------------------------------------------------------------

const usageHint = (command: string) =>
  Effect.fail(new UsageError({ message: `missing command; try: fanout ${command}--help` }))

const dlqList = Command.make(
  "list",
  {
    target: filterTarget,
    error: filterError,
    limit: Options.integer("limit").pipe(
      Options.withDefault(100),
      Options.withDescription("At most this many (1-1000)")
    ),
    cursor: Options.text("cursor").pipe(Options.optional, Options.withDescription("The `next` of the previous page")),
    config: storeConfigFile,
    url: serverUrl,
    apiKey
  },
  (options) => {
    const target = Option.getOrUndefined(options.target)
    const error = Option.getOrUndefined(options.error)
    const cursor = Option.getOrUndefined(options.cursor)
    if (options.limit < 1 || options.limit > 1000) {
      return Effect.fail(new UsageError({ message: `--limit: expected 1 to 1000, got ${options.limit}` }))
    }
    return Option.match(options.config, {
      onNone: (): Effect.Effect<void, Failure> =>
        withClient(Effect.flatMap(
          callApi(options, "GET /v1/dead-letters", (client) =>
            client.deadLetters.list({
              urlParams: {
                limit: options.limit,
                ...(target !== undefined ? { target } : {}),
                ...(error !== undefined ? { error } : {}),
                ...(cursor !== undefined ? { cursor } : {})
              }
            })),
          printJson
        )),
      onSome: (file): Effect.Effect<void, Failure> =>
        withStore(file, (store) => store.deadLetters({ limit: options.limit, target, errorLabel: error, cursor })).pipe(
          Effect.flatMap((page) =>
            printJson(dropUndefined({
              items: page.items.map((d) =>
                dropUndefined({ ...d, deadAt: iso(d.deadAt), enqueuedAt: iso(d.enqueuedAt) })
              ),
              next: page.next
            }))
          )
        )
    })
  }
).pipe(Command.withDescription("List dead letters, oldest first"))

const selection = {
  id: Args.text({ name: "delivery id" }).pipe(Args.optional),
  all: Options.boolean("all").pipe(Options.withDescription("Every dead letter (narrowed by --target / --error)")),
  target: filterTarget,
  error: filterError,
  config: storeConfigFile,
  url: serverUrl,
  apiKey
}

type Selection = {
  readonly id: Option.Option<string>
  readonly all: boolean
  readonly target: Option.Option<string>
  readonly error: Option.Option<string>
}

const filterOf = (
  options: Selection,
  verb: string
): Effect.Effect<Option.Option<Store.DeadLetterFilter>, UsageError> => {
  const target = Option.getOrUndefined(options.target)
  const errorLabel = Option.getOrUndefined(options.error)
  if (Option.isSome(options.id)) {
    return options.all || target !== undefined || errorLabel !== undefined
      ? Effect.fail(new UsageError({ message: `${verb}: give a delivery id, or --all / --target / --error, not both` }))
      : Effect.succeed(Option.none())
  }
  if (!options.all && target === undefined && errorLabel === undefined) {
    return Effect.fail(
      new UsageError({ message: `${verb}: give a delivery id, or --all (optionally with --target / --error)` })
    )
  }
  return Effect.succeed(Option.some(dropUndefined({ target, errorLabel }) as Store.DeadLetterFilter))
}

const dlqReplay = Command.make("replay", selection, (options) =>
  Effect.gen(function*() {
    const filter = yield* filterOf(options, "replay")
    if (Option.isSome(options.config)) {
      const replayed = yield* withStore(options.config.value, (store) =>
        Option.match(filter, {
          onNone: () =>
            Effect.flatMap(store.replay(Option.getOrThrow(options.id)), (ok) =>
              ok
                ? Effect.succeed(1)
                : Effect.fail(
                  new CommandFailed({
                    message: `no dead letter with id ${JSON.stringify(Option.getOrThrow(options.id))}`
                  })
                )),
          onSome: (f) => store.replayMany(f)
        }))
      return yield* printJson({ replayed })
    }
    const answer = yield* withClient(Option.match(filter, {
      onNone: () => {
        const id = Option.getOrThrow(options.id)
        return callApi(
          options,
          `POST /v1/dead-letters/${id}/replay`,
          (client) => client.deadLetters.replay({ path: { id } })
        )
      },
      onSome: (f) =>
        callApi(options, "POST /v1/dead-letters:replay", (client) =>
          client.deadLetters.replayMany({
            payload: {
              ...(f.target !== undefined ? { target: f.target } : {}),
              ...(f.errorLabel !== undefined ? { error: f.errorLabel } : {})
            }
          }))
    }))
    yield* printJson(answer)
  })).pipe(
    Command.withDescription(
      "Replay dead letters: one by delivery id, or many (--all, --target, --error); same idempotency key"
    )
  )

const dlqPurge = Command.make("purge", selection, (options) =>
  Effect.gen(function*() {
    const filter = yield* filterOf(options, "purge")
    if (Option.isSome(options.config)) {
      const purged = yield* withStore(options.config.value, (store) =>
        store.purge(Option.match(filter, { onNone: () => Option.getOrThrow(options.id), onSome: (f) => f })))
      if (Option.isNone(filter) && purged === 0) {
        return yield* new CommandFailed({
          message: `no dead letter with id ${JSON.stringify(Option.getOrThrow(options.id))}`
        })
      }
      return yield* printJson({ purged })
    }
    if (Option.isSome(filter)) {
      return yield* new UsageError({
        message:
          "purge: the API deletes one dead letter at a time (give its id); purge by filter needs --config (the store directly)"
      })
    }
    const id = Option.getOrThrow(options.id)
    yield* withClient(
      callApi(options, `DELETE /v1/dead-letters/${id}`, (client) =>
        client.deadLetters.purge({ path: { id } }))
    )
    yield* printJson({ purged: 1 })
  })).pipe(
    Command.withDescription(
      "Delete dead letters and their history: one by delivery id, or many with --config (--all, --target, --error)"
    )
  )

const pruneAge = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.mapEffect((text) =>
      Option.match(Duration.decodeUnknown(text), {
        onNone: () =>
          Effect.fail(ValidationError.invalidValue(HelpDoc.p(
            `--${name}: expected a duration like "7 days" or "12 hours", got ${JSON.stringify(text)}`
          ))),
        onSome: Effect.succeed
      })
    ),
    Options.optional,
    Options.withDescription(description)
  )

const prune = Command.make("prune", {
  config: configFile,
  olderThan: pruneAge(
    "older-than",
    "Delete delivered deliveries that finished longer ago (default: store.retention.delivered, 7 days)"
  ),
  deadOlderThan: pruneAge(
    "dead-older-than",
    "Purge dead letters that died longer ago (default: store.retention.dead, 30 days)"
  )
}, (options) =>
  Effect.gen(function*() {
    const config = yield* Config.load(options.config)
    const configured = Main.retentionOf(config)
    const base = configured === false ? { delivered: false as const, dead: false as const } : configured
    const pass = yield* withStore(options.config, (store) =>
      Retention.runOnce({
        delivered: Option.getOrElse(options.olderThan, () => base.delivered),
        dead: Option.getOrElse(options.deadOlderThan, () => base.dead)
      }).pipe(Effect.provideService(Store.DeliveryStore, store)))
    yield* printJson(pass)
  })).pipe(
    Command.withDescription(
      "One retention pass on the store of a configuration: delete old delivered deliveries and dead letters (fanout serve runs this every minute)"
    )
  )

const dlq = Command.make("dlq", {}, () => usageHint("dlq ")).pipe(
  Command.withDescription("Dead letters: list, replay, purge (through the API, or the store with --config)"),
  Command.withSubcommands([dlqList, dlqReplay, dlqPurge])
)

// ---------------------------------------------------------------------------------------------
// sources, consume
// ---------------------------------------------------------------------------------------------

const sources = Command.make(
  "sources",
  { url: serverUrl, apiKey },
  (options) =>
    withClient(Effect.flatMap(callApi(options, "GET /v1/sources", (client) => client.sources.list()), printJson))
).pipe(
  Command.withDescription(
    "The message sources a server consumes: state, received, stored, acked, rejected, redelivered, lag (GET /v1/sources)"
  )
)

const consume = Command.make(
  "consume",
  {
    config: configFile,
    source: Options.text("source").pipe(Options.withDescription("The configured source (its name) to consume")),
    logFormat: logFormat("json")
  },
  (options) =>
    runLogged(
      options.logFormat,
      Effect.flatMap(Main.load(options.config), (app): Effect.Effect<never, Main.StartError | UsageError> => {
        const names = (app.sources ?? []).map((s) => s.name)
        return names.includes(options.source)
          ? stopped(Main.run(app, { api: false, workers: false, sources: [options.source] }))
          : Effect.fail(
            new UsageError({
              message: `--source: no source named ${JSON.stringify(options.source)} (configured: ${
                names.length === 0 ? "none" : names.join(", ")
              })`
            })
          )
      })
    )
).pipe(
  Command.withDescription(
    "Consume one configured source alone (no API, no workers: run `fanout worker` or `fanout serve` on the same store to deliver) until SIGINT/SIGTERM"
  )
)

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

/**
 * The `fanout` command and its subcommands.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("fanout").pipe(
  Command.withHandler(() => usageHint("")),
  Command.withDescription("Send one event to several HTTP APIs at once, reliably"),
  Command.withSubcommands([
    serve,
    worker,
    demo,
    send,
    status,
    resend,
    purgeOrphan,
    targets,
    sources,
    consume,
    events,
    dlq,
    prune
  ])
)

/**
 * Runs the command line (`argv` as in `process.argv`). Errors are printed here; the failure left is
 * the {@link ExitCode}.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (argv: ReadonlyArray<string>) =>
  Command.run(command, { name: "fanout", version: Main.version })(argv).pipe(report)
