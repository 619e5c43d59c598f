/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`,
 * `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
 * one `v1,…` per live secret, space-separated (secret rotation). Receivers verify them with the
 * stock `standardwebhooks` package, or with `Signing.verify`.
 *
 * @since 0.1.0
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { Clock, Data, DateTime, Duration, Effect, Redacted } from "effect"

/**
 * A signing secret: `whsec_<base64>` (the Standard Webhooks form) or any other string,
 * whose UTF-8 bytes are then the key.
 *
 * @since 0.1.0
 * @category models
 */
export type Secret = string | Redacted.Redacted<string>

/**
 * One entry of a list of secrets: a secret, or a secret with the instant after which it is no
 * longer used (`until`: a `DateTime`, a `Date`, or an ISO 8601 instant with its offset, like
 * `"2026-12-31T00:00:00Z"`).
 *
 * @since 0.1.0
 * @category models
 */
export type SecretEntry = Secret | {
  readonly secret: Secret
  readonly until: DateTime.DateTime | Date | string
}

/**
 * What a target signs with (and what `verify` accepts): one secret, or a non-empty list of
 * entries, newest first.
 *
 * @since 0.1.0
 * @category models
 */
export type Secrets = Secret | ReadonlyArray<SecretEntry>

/**
 * The HMAC key of a secret.
 *
 * @since 0.1.0
 * @category keys
 */
export const keyOf = (secret: Secret): Buffer => {
  const value = Redacted.isRedacted(secret) ? Redacted.value(secret) : secret
  return value.startsWith("whsec_") ? Buffer.from(value.slice("whsec_".length), "base64") : Buffer.from(value, "utf8")
}

/** An ISO 8601 instant with its offset (`Z` or `±hh:mm`): no local times. */
const isoInstant = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})$/i

/**
 * Whether a string is an ISO 8601 instant with its offset, like `"2026-12-31T00:00:00Z"`.
 *
 * @since 0.1.0
 * @category keys
 */
export const isInstant = (s: string): boolean => isoInstant.test(s) && !Number.isNaN(Date.parse(s))

/**
 * The keys of a list of secrets, newest first: each key, and the epoch milliseconds after which
 * it is no longer used (`undefined`: no end).
 *
 * @since 0.1.0
 * @category models
 */
export interface Keyring {
  readonly keys: ReadonlyArray<{ readonly key: Buffer; readonly until: number | undefined }>
  /** Whether some key has an `until` (else every key is always live). */
  readonly expires: boolean
}

const untilMillis = (until: DateTime.DateTime | Date | string, index: number): number => {
  if (DateTime.isDateTime(until)) return DateTime.toEpochMillis(until)
  if (until instanceof Date) {
    const ms = until.getTime()
    if (Number.isNaN(ms)) {
      throw new TypeError(`signingSecret[${index}].until: Expected a valid date, got an invalid Date`)
    }
    return ms
  }
  if (typeof until === "string" && isInstant(until)) return Date.parse(until)
  throw new TypeError(
    `signingSecret[${index}].until: Expected an ISO 8601 instant with its offset like "2026-12-31T00:00:00Z", got ${
      JSON.stringify(until)
    }`
  )
}

/**
 * The keyring of a secret or a list of secrets. Throws a `TypeError` (at declaration time) for an
 * empty list or an `until` that is not an instant; the message never holds a secret.
 *
 * @since 0.1.0
 * @category keys
 */
export const keyring = (secrets: Secrets): Keyring => {
  const list: ReadonlyArray<SecretEntry> = typeof secrets === "string" || Redacted.isRedacted(secrets)
    ? [secrets]
    : secrets
  if (list.length === 0) throw new TypeError("signingSecret: Expected at least one secret, got an empty list")
  const keys = list.map((entry, i) =>
    typeof entry === "string" || Redacted.isRedacted(entry)
      ? { key: keyOf(entry), until: undefined }
      : { key: keyOf(entry.secret), until: untilMillis(entry.until, i) }
  )
  return { keys, expires: keys.some((k) => k.until !== undefined) }
}

/**
 * The keys live at `nowMillis` (epoch ms), newest first: those without `until` or whose `until`
 * is not yet past. When every key is past its `until`, the newest alone, with `allExpired`.
 *
 * @since 0.1.0
 * @category keys
 */
export const liveKeys = (
  ring: Keyring,
  nowMillis: number
): { readonly keys: ReadonlyArray<Buffer>; readonly allExpired: boolean } => {
  if (!ring.expires) return { keys: ring.keys.map((k) => k.key), allExpired: false }
  const live = ring.keys.filter((k) => k.until === undefined || nowMillis <= k.until).map((k) => k.key)
  return live.length > 0 ? { keys: live, allExpired: false } : { keys: [ring.keys[0]!.key], allExpired: true }
}

const signature = (key: Buffer, prefix: string, body: Uint8Array | string): Buffer => {
  const hmac = createHmac("sha256", key)
  hmac.update(prefix)
  hmac.update(body)
  return hmac.digest()
}

/**
 * The three headers for one message (`id`), sent at `timestampSeconds`, with this body: one
 * `v1,<base64>` signature per key, in order, space-separated.
 *
 * @since 0.1.0
 * @category signing
 */
export const sign = (
  key: Buffer | ReadonlyArray<Buffer>,
  id: string,
  timestampSeconds: number,
  body: Uint8Array | string
): { readonly "webhook-id": string; readonly "webhook-timestamp": string; readonly "webhook-signature": string } => {
  const prefix = `${id}.${timestampSeconds}.`
  const keys: ReadonlyArray<Buffer> = Buffer.isBuffer(key) ? [key] : key as ReadonlyArray<Buffer>
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": keys.map((k) => `v1,${signature(k, prefix, body).toString("base64")}`).join(" ")
  }
}

/**
 * Why `verify` refused a request:
 * - `MissingHeader`: `webhook-id`, `webhook-timestamp` or `webhook-signature` is absent or empty;
 * - `InvalidTimestamp`: `webhook-timestamp` is not a whole number of seconds;
 * - `TimestampTooOld` / `TimestampTooNew`: it is further than the tolerance from the Clock's time;
 * - `NoMatch`: no `v1` signature matches any live secret (wrong secret, tampered id, timestamp or body).
 *
 * @since 0.1.0
 * @category errors
 */
export class SignatureError extends Data.TaggedError("SignatureError")<{
  readonly reason: "MissingHeader" | "InvalidTimestamp" | "TimestampTooOld" | "TimestampTooNew" | "NoMatch"
  readonly message: string
}> {}

/**
 * Request headers, as Node (`IncomingHttpHeaders`), Effect (`Headers`) or a plain record gives
 * them; names are matched case-insensitively.
 *
 * @since 0.1.0
 * @category models
 */
export type HeadersInput = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/**
 * @since 0.1.0
 * @category models
 */
export interface VerifyOptions {
  readonly headers: HeadersInput
  /** The raw body, exactly as received. */
  readonly body: Uint8Array | string
  /** The secret, or the list (newest first; entries past their `until` are not accepted, as when signing). */
  readonly secret: Secrets
  /** How far `webhook-timestamp` may be from the Clock's time, either way. Default 5 minutes. */
  readonly tolerance?: Duration.DurationInput
}

/**
 * What a valid request carried.
 *
 * @since 0.1.0
 * @category models
 */
export interface Verified {
  readonly id: string
  readonly timestamp: number
}

const header = (headers: HeadersInput, name: string): string | undefined => {
  let value = headers[name]
  if (value === undefined) {
    for (const key of Object.keys(headers)) {
      if (key.toLowerCase() === name) {
        value = headers[key]
        break
      }
    }
  }
  const text = typeof value === "string" ? value : value?.[0]
  return text === undefined || text.length === 0 ? undefined : text
}

const defaultTolerance = Duration.minutes(5)

/**
 * Verifies a signed request, for receivers: the three headers are present, `webhook-timestamp` is
 * within `tolerance` (default 5 minutes) of the Effect Clock's time, and some `v1` signature in
 * `webhook-signature` is the HMAC of `id.timestamp.body` under one of the secrets live now
 * (compared in constant time). Throws a `TypeError` for a list of secrets `keyring` refuses.
 *
 * @since 0.1.0
 * @category verifying
 */
export const verify = (options: VerifyOptions): Effect.Effect<Verified, SignatureError> => {
  const ring = keyring(options.secret)
  const toleranceMs = Duration.toMillis(options.tolerance ?? defaultTolerance)
  return Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const id = header(options.headers, "webhook-id")
    const timestampText = header(options.headers, "webhook-timestamp")
    const signatures = header(options.headers, "webhook-signature")
    if (id === undefined || timestampText === undefined || signatures === undefined) {
      const missing = [
        id === undefined ? "webhook-id" : undefined,
        timestampText === undefined ? "webhook-timestamp" : undefined,
        signatures === undefined ? "webhook-signature" : undefined
      ].filter((name) => name !== undefined)
      return Effect.fail(
        new SignatureError({ reason: "MissingHeader", message: `missing header(s): ${missing.join(", ")}` })
      )
    }
    if (!/^\d{1,15}$/.test(timestampText)) {
      return Effect.fail(
        new SignatureError({
          reason: "InvalidTimestamp",
          message: `webhook-timestamp: Expected whole seconds since the epoch, got ${
            JSON.stringify(timestampText.slice(0, 40))
          }`
        })
      )
    }
    const timestamp = Number(timestampText)
    const skew = now - timestamp * 1000
    if (skew > toleranceMs || skew < -toleranceMs) {
      return Effect.fail(
        new SignatureError({
          reason: skew > 0 ? "TimestampTooOld" : "TimestampTooNew",
          message: `webhook-timestamp is ${Math.round(Math.abs(skew) / 1000)} s ${
            skew > 0 ? "in the past" : "in the future"
          } (tolerance ${Math.round(toleranceMs / 1000)} s)`
        })
      )
    }
    const prefix = `${id}.${timestampText}.`
    const expected = liveKeys(ring, now).keys.map((key) => signature(key, prefix, options.body))
    let matched = false
    for (const candidate of signatures.split(" ")) {
      const comma = candidate.indexOf(",")
      if (comma < 0 || candidate.slice(0, comma) !== "v1") continue
      const given = Buffer.from(candidate.slice(comma + 1), "base64")
      for (const digest of expected) {
        // Every pair is compared (no early exit), each in constant time.
        if (given.length === digest.length && timingSafeEqual(given, digest)) matched = true
      }
    }
    return matched
      ? Effect.succeed({ id, timestamp })
      : Effect.fail(
        new SignatureError({ reason: "NoMatch", message: "no signature in webhook-signature matches a secret" })
      )
  })
}
