/**
 * The server's settings, resolved (defaults applied, durations in milliseconds, API keys read
 * from the environment), and the resolution from the `server` section of the configuration.
 *
 * @since 0.1.0
 */
import { Duration, Either, Redacted } from "effect"
import * as Config from "../Config.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  /** Producer API keys; none: the API is open (a warning is logged at start). */
  readonly apiKeys: ReadonlyArray<Redacted.Redacted<string>>
  /** Requests allowed per API key (a token bucket of `limit` refilled over `intervalMs`). */
  readonly keyRateLimit: { readonly limit: number; readonly intervalMs: number } | undefined
  /**
   * Failed authentications (401) allowed per client address within a window of `intervalMs` (opened
   * by its first failure); once it has `limit`, the address gets `429` + `Retry-After` until the window
   * ends. At most `maxAddresses` windows are tracked (the oldest forgotten first). `undefined`: off.
   */
  readonly authThrottle:
    | { readonly limit: number; readonly intervalMs: number; readonly maxAddresses: number }
    | undefined
  /** The largest request body accepted (413 beyond). */
  readonly maxBodyBytes: number
  /** After a 413, read and discard at most this many body bytes (so the client sees the answer) before closing. */
  readonly drainLimitBytes: number
  /** The most events in one `POST /v1/events:batch`. */
  readonly maxBatch: number
  /** Later delivery: how far ahead an event's `deliverAt` / `delay` may be (422 beyond). */
  readonly maxDelayMs: number
  /** Node's `maxHeaderSize`: larger request headers get a 431. */
  readonly maxHeaderBytes: number
  /** Node's `headersTimeout`: a client must send its headers within this (slow-loris). */
  readonly headersTimeoutMs: number
  /** Node's `requestTimeout`: a client must send its whole request within this (slow bodies). */
  readonly requestTimeoutMs: number
  /** Node's `keepAliveTimeout`. */
  readonly keepAliveTimeoutMs: number
  /** How often Node checks the two timeouts above (its default, 30 s, is too coarse). */
  readonly connectionsCheckingIntervalMs: number
  /** The longest `?wait=` of `POST /v1/events`. */
  readonly waitTimeoutMs: number
  /** The longest pause between two status reads while waiting. */
  readonly waitPollMs: number
  /** Refuse new events with 503 while the queue (pending + in flight) is this deep. */
  readonly maxQueueDepth: number | undefined
  /** How long a queue-depth reading is reused. */
  readonly queueCheckTtlMs: number
  /** `Retry-After` of a 503 for a full queue. */
  readonly overloadRetryAfterSeconds: number
  /** On shutdown: how long requests in progress may take before their connections are closed. */
  readonly shutdownGraceMs: number
  /**
   * Answer `POST /v1/events` (without `?wait=`) and `POST /v1/events:batch` with the lean
   * `node:http` listener in front of the Effect application (same rules, same answers, less CPU
   * per request). `false`: every request goes through the `HttpApi` router.
   */
  readonly leanIngest: boolean
  /** Serve the dashboard at `/` (its assets under `/dashboard/`). `false`: `/` is a 404. */
  readonly dashboard: boolean
}

/**
 * What {@link make} takes: every field optional, durations as `DurationInput`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input {
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly apiKeys?: ReadonlyArray<string | Redacted.Redacted<string>> | undefined
  readonly keyRateLimit?: { readonly limit: number; readonly interval: Duration.DurationInput } | undefined
  /** Default `{ limit: 20, interval: "1 minute", maxAddresses: 10000 }`; `false` turns it off. */
  readonly authThrottle?:
    | {
      readonly limit?: number | undefined
      readonly interval?: Duration.DurationInput | undefined
      readonly maxAddresses?: number | undefined
    }
    | false
    | undefined
  readonly maxBodyBytes?: number | undefined
  readonly drainLimitBytes?: number | undefined
  readonly maxBatch?: number | undefined
  /** Default 30 days. */
  readonly maxDelay?: Duration.DurationInput | undefined
  readonly maxHeaderBytes?: number | undefined
  readonly headersTimeout?: Duration.DurationInput | undefined
  readonly requestTimeout?: Duration.DurationInput | undefined
  readonly keepAliveTimeout?: Duration.DurationInput | undefined
  readonly connectionsCheckingInterval?: Duration.DurationInput | undefined
  readonly waitTimeout?: Duration.DurationInput | undefined
  readonly waitPoll?: Duration.DurationInput | undefined
  readonly maxQueueDepth?: number | undefined
  readonly queueCheckTtl?: Duration.DurationInput | undefined
  readonly overloadRetryAfterSeconds?: number | undefined
  readonly shutdownGrace?: Duration.DurationInput | undefined
  readonly leanIngest?: boolean | undefined
  /** Default `true`. */
  readonly dashboard?: boolean | undefined
}

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category defaults
 */
export const defaults: Options = {
  host: "127.0.0.1",
  port: 8080,
  apiKeys: [],
  keyRateLimit: undefined,
  authThrottle: { limit: 20, intervalMs: 60_000, maxAddresses: 10_000 },
  maxBodyBytes: 1024 * 1024,
  drainLimitBytes: 8 * 1024 * 1024,
  maxBatch: 100,
  maxDelayMs: 30 * 24 * 60 * 60 * 1000,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  connectionsCheckingIntervalMs: 1_000,
  waitTimeoutMs: 10_000,
  waitPollMs: 100,
  maxQueueDepth: undefined,
  queueCheckTtlMs: 1_000,
  overloadRetryAfterSeconds: 2,
  shutdownGraceMs: 15_000,
  leanIngest: true,
  dashboard: true
}

const ms = (input: Duration.DurationInput | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(Duration.decode(input))

const authThrottle = (input: Input["authThrottle"]): Options["authThrottle"] => {
  if (input === false) return undefined
  const d = defaults.authThrottle!
  return {
    limit: input?.limit ?? d.limit,
    intervalMs: ms(input?.interval, d.intervalMs),
    maxAddresses: input?.maxAddresses ?? d.maxAddresses
  }
}

/**
 * Applies the defaults. Throws a `RangeError` for settings Node would refuse
 * (`headersTimeout` longer than `requestTimeout`, non-positive limits).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (input: Input = {}): Options => {
  const maxBodyBytes = input.maxBodyBytes ?? defaults.maxBodyBytes
  const options: Options = {
    host: input.host ?? defaults.host,
    port: input.port ?? defaults.port,
    apiKeys: (input.apiKeys ?? []).map((key) => typeof key === "string" ? Redacted.make(key) : key),
    keyRateLimit: input.keyRateLimit === undefined
      ? undefined
      : { limit: input.keyRateLimit.limit, intervalMs: ms(input.keyRateLimit.interval, 1000) },
    authThrottle: authThrottle(input.authThrottle),
    maxBodyBytes,
    drainLimitBytes: input.drainLimitBytes ?? Math.max(defaults.drainLimitBytes, 4 * maxBodyBytes),
    maxBatch: input.maxBatch ?? defaults.maxBatch,
    maxDelayMs: ms(input.maxDelay, defaults.maxDelayMs),
    maxHeaderBytes: input.maxHeaderBytes ?? defaults.maxHeaderBytes,
    headersTimeoutMs: ms(input.headersTimeout, defaults.headersTimeoutMs),
    requestTimeoutMs: ms(input.requestTimeout, defaults.requestTimeoutMs),
    keepAliveTimeoutMs: ms(input.keepAliveTimeout, defaults.keepAliveTimeoutMs),
    connectionsCheckingIntervalMs: ms(input.connectionsCheckingInterval, defaults.connectionsCheckingIntervalMs),
    waitTimeoutMs: ms(input.waitTimeout, defaults.waitTimeoutMs),
    waitPollMs: ms(input.waitPoll, defaults.waitPollMs),
    maxQueueDepth: input.maxQueueDepth,
    queueCheckTtlMs: ms(input.queueCheckTtl, defaults.queueCheckTtlMs),
    overloadRetryAfterSeconds: input.overloadRetryAfterSeconds ?? defaults.overloadRetryAfterSeconds,
    shutdownGraceMs: ms(input.shutdownGrace, Math.max(defaults.shutdownGraceMs, ms(input.waitTimeout, 0) + 5_000)),
    leanIngest: input.leanIngest ?? defaults.leanIngest,
    dashboard: input.dashboard ?? defaults.dashboard
  }
  const problems = check(options)
  if (problems.length > 0) throw new RangeError(`server options: ${problems.join("; ")}`)
  return options
}

const check = (o: Options): Array<string> => {
  const problems: Array<string> = []
  const positive = (name: string, value: number) => {
    if (!(Number.isFinite(value) && value > 0)) problems.push(`${name} must be positive, got ${value}`)
  }
  positive("maxBodyBytes", o.maxBodyBytes)
  positive("maxBatch", o.maxBatch)
  positive("maxDelay", o.maxDelayMs)
  positive("maxHeaderBytes", o.maxHeaderBytes)
  positive("headersTimeout", o.headersTimeoutMs)
  positive("requestTimeout", o.requestTimeoutMs)
  positive("connectionsCheckingInterval", o.connectionsCheckingIntervalMs)
  positive("waitPoll", o.waitPollMs)
  if (o.drainLimitBytes < o.maxBodyBytes) problems.push("drainLimitBytes must be at least maxBodyBytes")
  if (o.headersTimeoutMs > o.requestTimeoutMs) {
    problems.push(`headersTimeout (${o.headersTimeoutMs} ms) must not exceed requestTimeout (${o.requestTimeoutMs} ms)`)
  }
  if (o.keyRateLimit !== undefined) {
    positive("keyRateLimit.limit", o.keyRateLimit.limit)
    positive("keyRateLimit.interval", o.keyRateLimit.intervalMs)
  }
  if (o.authThrottle !== undefined) {
    positive("authThrottle.limit", o.authThrottle.limit)
    positive("authThrottle.interval", o.authThrottle.intervalMs)
    positive("authThrottle.maxAddresses", o.authThrottle.maxAddresses)
  }
  return problems
}

/**
 * Resolves the `server` section of a validated configuration: secrets from `env` (what
 * `Config.environment` read from the `ConfigProvider`, or a plain record), then
 * {@link make}. `overrides` (e.g. the CLI's `--port`) win over the file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromConfig = (
  server: typeof Config.ServerConfig.Type | undefined,
  env: Config.Environment,
  overrides: Input = {}
): Either.Either<Options, ReadonlyArray<Config.Issue>> => {
  const s = server ?? {}
  const issues: Array<Config.Issue> = []
  const keys: Array<Redacted.Redacted<string>> = []
  ;(s.apiKeys ?? []).forEach((secret, i) => {
    const resolved = Config.resolveSecret(secret, `server.apiKeys[${i}]`, env)
    if (Redacted.isRedacted(resolved)) keys.push(resolved as Redacted.Redacted<string>)
    else issues.push(resolved)
  })
  if (issues.length > 0) return Either.left(issues)
  const input: Input = {
    host: s.host,
    port: s.port,
    apiKeys: keys,
    keyRateLimit: s.keyRateLimit && {
      limit: s.keyRateLimit.limit,
      interval: s.keyRateLimit.interval as Duration.DurationInput
    },
    authThrottle: s.authThrottle === false || s.authThrottle === undefined ? s.authThrottle : {
      limit: s.authThrottle.limit,
      interval: s.authThrottle.interval as Duration.DurationInput | undefined,
      maxAddresses: s.authThrottle.maxAddresses
    },
    maxBodyBytes: s.maxBodyBytes,
    maxBatch: s.maxBatch,
    maxDelay: s.maxDelay as Duration.DurationInput | undefined,
    headersTimeout: s.headersTimeout as Duration.DurationInput | undefined,
    requestTimeout: s.requestTimeout as Duration.DurationInput | undefined,
    waitTimeout: s.waitTimeout as Duration.DurationInput | undefined,
    maxQueueDepth: s.maxQueueDepth,
    keepAliveTimeout: s.keepAliveTimeout as Duration.DurationInput | undefined,
    maxHeaderBytes: s.maxHeaderBytes,
    shutdownGrace: s.shutdownGrace as Duration.DurationInput | undefined,
    dashboard: s.dashboard
  }
  const merged = { ...input, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) }
  try {
    return Either.right(make(merged))
  } catch (e) {
    return Either.left([{ path: "server", message: (e as Error).message }])
  }
}
