/**
 * Producer authentication and per-key rate limiting.
 *
 * - Keys are kept only as SHA-256 digests; a presented key is hashed and compared with every
 *   configured digest by `crypto.timingSafeEqual` (equal lengths, no early exit), so neither the
 *   key nor its length leaks through timing.
 * - With no key configured the API is open (a warning is logged when the server starts).
 * - Each key (or, when open, everyone together) has a token bucket of `limit` requests refilled
 *   over `interval`; an empty bucket answers `429` with `Retry-After`.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { HttpServerRequest } from "@effect/platform"
import { Clock, Context, Effect, Either, Layer, Redacted } from "effect"
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
 * A token bucket per key: `limit` tokens, refilled continuously over `intervalMs`.
 * Buckets that are full again are forgotten (memory stays bounded by the active keys).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRateLimiter = (limit: number, intervalMs: number): RateLimiter => {
  const perMs = limit / intervalMs
  const buckets = new Map<string, { tokens: number; at: number }>()
  let sweptAt = 0
  return {
    take: (key, now) => {
      if (now - sweptAt > intervalMs) {
        sweptAt = now
        for (const [k, b] of buckets) if (b.tokens + (now - b.at) * perMs >= limit) buckets.delete(k)
      }
      const bucket = buckets.get(key) ?? { tokens: limit, at: now }
      const tokens = Math.min(limit, bucket.tokens + Math.max(0, now - bucket.at) * perMs)
      if (tokens >= 1) {
        buckets.set(key, { tokens: tokens - 1, at: now })
        return 0
      }
      buckets.set(key, { tokens, at: now })
      return Math.ceil((1 - tokens) / perMs)
    }
  }
}

/**
 * The check one request goes through: its key, then its bucket.
 *
 * @since 0.1.0
 * @category models
 */
export interface Check {
  readonly keyring: Keyring
  /** The caller's id (`key-<n>`, or `anonymous` when the API is open) at `now` (epoch ms), or its 401 / 429. */
  readonly verify: (authorization: string | undefined, now: number) => Either.Either<string, Errors.ApiFailure>
  /** {@link Check.verify} at the `Clock`'s time. */
  readonly check: (authorization: string | undefined) => Effect.Effect<string, Errors.ApiFailure>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeCheck = (options: Pick<Options, "apiKeys" | "keyRateLimit">): Check => {
  const keyring = makeKeyring(options.apiKeys)
  const limiter = options.keyRateLimit === undefined
    ? undefined
    : makeRateLimiter(options.keyRateLimit.limit, options.keyRateLimit.intervalMs)
  const verify = (authorization: string | undefined, now: number): Either.Either<string, Errors.ApiFailure> => {
    let id = "anonymous"
    if (!keyring.open) {
      const token = bearerToken(authorization)
      const found = token === undefined ? undefined : keyring.identify(token)
      if (found === undefined) return Either.left(Errors.unauthorized())
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
    check: (authorization) => Effect.flatMap(Clock.currentTimeMillis, (now) => verify(authorization, now))
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
 * The {@link AuthCheck} of these options; warns once when no key is configured.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerCheck = (options: Pick<Options, "apiKeys" | "keyRateLimit">): Layer.Layer<AuthCheck> =>
  Layer.effect(
    AuthCheck,
    Effect.gen(function*() {
      const check = makeCheck(options)
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
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => Effect.asVoid(check(request.headers["authorization"])))
    }))
)

/**
 * The {@link Authorization} middleware of the API with a check of its own.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Pick<Options, "apiKeys" | "keyRateLimit">): Layer.Layer<Authorization> =>
  layerAuthorization.pipe(Layer.provide(layerCheck(options)))
