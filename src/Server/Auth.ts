/**
 * Producer authentication, per-key rate limiting, and throttling of key guessing.
 *
 * - Keys are kept only as SHA-256 digests; a presented key is hashed and compared with every
 *   configured digest by `crypto.timingSafeEqual` (equal lengths, no early exit), so neither the
 *   key nor its length leaks through timing.
 * - With no key configured the API is open (a warning is logged when the server starts).
 * - Failed authentications (no key, a malformed or a wrong one: `401`) are counted per client
 *   address (the socket's peer); once an address has `authThrottle.limit` of them within one
 *   window of `interval` (from its first failure), every request from it is answered `429` with
 *   `Retry-After` (the seconds left in the window) before its key is even looked at, until the window
 *   ends. A warning names the address (never the key tried); `fanout_auth_failures_total` and
 *   `fanout_auth_throttled_total` count them. Other addresses are unaffected. At most
 *   `maxAddresses` windows are kept; beyond that the oldest is forgotten.
 * - Each key (or, when open, everyone together) has a token bucket of `limit` requests refilled
 *   over `interval`; an empty bucket answers `429` with `Retry-After`.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { HttpServerRequest } from "@effect/platform"
import { Clock, Context, Duration, Effect, Either, Layer, Option, Redacted, Runtime } from "effect"
import * as Metrics from "../Metrics.js"
import { Gcra } from "../Resilience/RateLimit.js"
import { Authorization } from "./Api.js"
import * as Errors from "./Errors.js"
import type { Options } from "./Options.js"

const sha256 = (value: string): Buffer => createHash("sha256").update(value, "utf8").digest()

/**
 * @since 0.1.0
 * @category models
 */
export interface Keyring {
  /** No keys: every request is let in. */
  readonly open: boolean
  /** The id (`key-<n>`, 1-based, never the key itself) of the configured key equal to `presented`. */
  readonly identify: (presented: string) => string | undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeKeyring = (keys: ReadonlyArray<Redacted.Redacted<string>>): Keyring => {
  const digests = keys.map((key) => sha256(Redacted.value(key)))
  return {
    open: digests.length === 0,
    identify: (presented) => {
      const digest = sha256(presented)
      let found = -1
      for (let i = 0; i < digests.length; i++) {
        // Every digest is compared, whatever matched before.
        if (timingSafeEqual(digest, digests[i]!) && found < 0) found = i
      }
      return found < 0 ? undefined : `key-${found + 1}`
    }
  }
}

/**
 * The bearer token of an `Authorization` header (`Bearer <token>`, scheme case-insensitive).
 *
 * @since 0.1.0
 * @category parsing
 */
export const bearerToken = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header)
  return match?.[1]
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter {
  /** Takes one token from `key`'s bucket at `now`: 0 when allowed, else the milliseconds until one is free. */
  readonly take: (key: string, now: number) => number
}

/**
 * A rate limit per key: `limit` requests per `intervalMs`, bursts of up to `limit` — the same
 * GCRA as a target's rate limit (`RateLimit.Gcra`), one per active key. A key whose burst is full
 * again is forgotten (memory stays bounded by the active keys).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRateLimiter = (limit: number, intervalMs: number): RateLimiter => {
  const cells = new Map<string, Gcra>()
  let sweptAt = 0
  return {
    take: (key, now) => {
      if (now - sweptAt > intervalMs) {
        sweptAt = now
        for (const [k, cell] of cells) if (cell.idleAt(now)) cells.delete(k)
      }
      let cell = cells.get(key)
      if (cell === undefined) {
        cell = new Gcra(limit, intervalMs)
        cells.set(key, cell)
      }
      const wait = cell.waitAt(now)
      if (wait > 0) return Math.ceil(wait)
      cell.take(now)
      return 0
    }
  }
}

/**
 * Failed authentications per client address, in fixed windows.
 *
 * @since 0.1.0
 * @category models
 */
export interface AuthThrottle {
  /** While `address` is throttled at `now` (epoch ms): the seconds until its window ends (at least 1); else 0. */
  readonly retryAfter: (address: string, now: number) => number
  /**
   * Counts one failed authentication of `address` at `now`. When it is the one that reaches the
   * limit: the seconds the throttle it starts lasts (at least 1); else 0.
   */
  readonly failed: (address: string, now: number) => number
  /** The addresses with a window open (at most `maxAddresses`). */
  readonly size: () => number
}

/**
 * At most `limit` failed authentications per address in a window of `intervalMs` that opens at the
 * address's first failure; once it has `limit`, the address is throttled until the window ends.
 * At most `maxAddresses` windows are kept: ended ones are dropped as new ones open, and beyond the
 * cap the oldest is forgotten (memory stays bounded whatever the number of addresses).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeAuthThrottle = (limit: number, intervalMs: number, maxAddresses: number): AuthThrottle => {
  // Insertion order is opening order: the oldest windows come first.
  const windows = new Map<string, { readonly start: number; failures: number }>()
  const ended = (w: { readonly start: number }, now: number) => now < w.start || now - w.start >= intervalMs
  const left = (w: { readonly start: number }, now: number) =>
    Math.max(1, Math.ceil((w.start + intervalMs - now) / 1000))
  const current = (address: string, now: number) => {
    const w = windows.get(address)
    if (w === undefined || !ended(w, now)) return w
    windows.delete(address)
    return undefined
  }
  return {
    retryAfter: (address, now) => {
      const w = current(address, now)
      return w !== undefined && w.failures >= limit ? left(w, now) : 0
    },
    failed: (address, now) => {
      let w = current(address, now)
      if (w === undefined) {
        for (const [oldest, o] of windows) {
          if (!ended(o, now) && windows.size < maxAddresses) break
          windows.delete(oldest)
        }
        w = { start: now, failures: 0 }
        windows.set(address, w)
      }
      w.failures++
      return w.failures === limit ? left(w, now) : 0
    },
    size: () => windows.size
  }
}

/**
 * An address was throttled: it reached the limit of failed authentications in a window.
 *
 * @since 0.1.0
 * @category models
 */
export interface Throttled {
  readonly address: string
  readonly failures: number
  readonly intervalMs: number
  readonly retryAfterSeconds: number
}

/**
 * The `429` of a throttled address.
 *
 * @since 0.1.0
 * @category constructors
 */
export const throttled = (retryAfterSeconds: number): Errors.ApiFailure =>
  Errors.make(
    429,
    "too_many_auth_failures",
    `Too many failed API key attempts from this address; retry in ${retryAfterSeconds} s`,
    { headers: { "retry-after": String(retryAfterSeconds) } }
  )

/**
 * The check one request goes through: its address's throttle, its key, then its key's bucket.
 *
 * @since 0.1.0
 * @category models
 */
export interface Check {
  readonly keyring: Keyring
  /**
   * The caller's id (`key-<n>`, or `anonymous` when the API is open) at `now` (epoch ms), or its
   * 401 / 429. `address`: the client's (the socket's remote address); none, not throttled.
   */
  readonly verify: (
    authorization: string | undefined,
    address: string | undefined,
    now: number
  ) => Either.Either<string, Errors.ApiFailure>
  /** {@link Check.verify} at the `Clock`'s time. */
  readonly check: (
    authorization: string | undefined,
    address: string | undefined
  ) => Effect.Effect<string, Errors.ApiFailure>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeCheck = (
  options: Pick<Options, "apiKeys" | "keyRateLimit" | "authThrottle">,
  /** Called (synchronously) when an address starts being throttled: log it. */
  onThrottled: (event: Throttled) => void = () => {}
): Check => {
  const keyring = makeKeyring(options.apiKeys)
  const limiter = options.keyRateLimit === undefined
    ? undefined
    : makeRateLimiter(options.keyRateLimit.limit, options.keyRateLimit.intervalMs)
  const settings = options.authThrottle
  const throttle = settings === undefined || keyring.open
    ? undefined
    : makeAuthThrottle(settings.limit, settings.intervalMs, settings.maxAddresses)
  const verify = (
    authorization: string | undefined,
    address: string | undefined,
    now: number
  ): Either.Either<string, Errors.ApiFailure> => {
    let id = "anonymous"
    if (!keyring.open) {
      // Before the key is looked at: a throttled address learns nothing, not even from a right key.
      if (throttle !== undefined && address !== undefined) {
        const wait = throttle.retryAfter(address, now)
        if (wait > 0) {
          Metrics.authThrottled.unsafeUpdate(1, [])
          return Either.left(throttled(wait))
        }
      }
      const token = bearerToken(authorization)
      const found = token === undefined ? undefined : keyring.identify(token)
      if (found === undefined) {
        Metrics.authFailures.unsafeUpdate(1, [])
        if (throttle !== undefined && address !== undefined) {
          const wait = throttle.failed(address, now)
          if (wait > 0) {
            onThrottled({
              address,
              failures: settings!.limit,
              intervalMs: settings!.intervalMs,
              retryAfterSeconds: wait
            })
          }
        }
        return Either.left(Errors.unauthorized())
      }
      id = found
    }
    if (limiter !== undefined) {
      const wait = limiter.take(id, now)
      if (wait > 0) return Either.left(Errors.rateLimited(Math.max(1, Math.ceil(wait / 1000))))
    }
    return Either.right(id)
  }
  return {
    keyring,
    verify,
    check: (authorization, address) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => verify(authorization, address, now))
  }
}

/**
 * The one {@link Check} of a server (one rate-limit bucket per key, whichever path a request takes:
 * the `HttpApi` handlers or the lean ingest listener).
 *
 * @since 0.1.0
 * @category tags
 */
export class AuthCheck extends Context.Tag("fanout/server/AuthCheck")<AuthCheck, Check>() {}

/**
 * The warning logged when an address starts being throttled: it names the address, never a key.
 *
 * @since 0.1.0
 * @category logging
 */
export const logThrottled = (event: Throttled): Effect.Effect<void> =>
  Effect.logWarning(
    `fanout server: ${event.failures} failed API key attempts from ${event.address} within ${
      Duration.format(Duration.millis(event.intervalMs))
    }; answering its requests 429 for ${event.retryAfterSeconds} s`
  ).pipe(Effect.annotateLogs({ clientAddress: event.address, retryAfterSeconds: event.retryAfterSeconds }))

/**
 * The {@link AuthCheck} of these options; warns once when no key is configured, and whenever an
 * address starts being throttled ({@link logThrottled}, on the layer's runtime).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerCheck = (
  options: Pick<Options, "apiKeys" | "keyRateLimit" | "authThrottle">
): Layer.Layer<AuthCheck> =>
  Layer.effect(
    AuthCheck,
    Effect.gen(function*() {
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      const check = makeCheck(options, (event) => void runFork(logThrottled(event)))
      if (check.keyring.open) {
        yield* Effect.logWarning(
          "fanout server: no API key configured (server.apiKeys): the API is open to anyone who can reach it"
        )
      }
      return check
    })
  )

/**
 * The {@link Authorization} middleware of the API, over the server's {@link AuthCheck}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAuthorization: Layer.Layer<Authorization, never, AuthCheck> = Layer.effect(
  Authorization,
  Effect.map(AuthCheck, ({ check }) =>
    Authorization.of({
      // The platform hands over `Authorization` minus its first 7 characters; read the header itself.
      bearer: () =>
        Effect.flatMap(
          HttpServerRequest.HttpServerRequest,
          (request) =>
            Effect.asVoid(check(request.headers["authorization"], Option.getOrUndefined(request.remoteAddress)))
        )
    }))
)

/**
 * The {@link Authorization} middleware of the API with a check of its own.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Pick<Options, "apiKeys" | "keyRateLimit" | "authThrottle">
): Layer.Layer<Authorization> => layerAuthorization.pipe(Layer.provide(layerCheck(options)))
