/**
 * @internal
 * Reads how long a server asks us to wait, in milliseconds, from its response headers:
 * `Retry-After` (delta-seconds or HTTP-date), `RateLimit` (IETF structured field, `t=` / `reset=`),
 * `RateLimit-Reset` / `X-RateLimit-Reset` (delta seconds, or a Unix epoch in seconds when large).
 * `RateLimit-Reset`-style headers only count when the matching `*-Remaining` is 0 or absent on a 429/503.
 */
export const parseRetryAfter = (
  headers: Readonly<Record<string, string | undefined>>,
  nowMillis: number,
  status?: number
): number | undefined => {
  const retryAfter = headers["retry-after"]
  if (retryAfter !== undefined) {
    const parsed = parseRetryAfterValue(retryAfter, nowMillis)
    if (parsed !== undefined) return parsed
  }
  const structured = headers["ratelimit"]
  if (structured !== undefined) {
    const remaining = /(?:^|[;,\s])r(?:emaining)?=(\d+)/.exec(structured)
    const reset = /(?:^|[;,\s])(?:t|reset)=(\d+)/.exec(structured)
    if (reset && (remaining === null || remaining[1] === "0")) return Number(reset[1]) * 1000
  }
  const throttled = status === 429 || status === 503
  for (const prefix of ["ratelimit-", "x-ratelimit-"]) {
    const reset = headers[`${prefix}reset`]
    if (reset === undefined) continue
    const remaining = headers[`${prefix}remaining`]
    if (remaining !== undefined ? remaining.trim() !== "0" : !throttled) continue
    const value = Number(reset.trim())
    if (!Number.isFinite(value) || value < 0) continue
    // Values above ~10^9 are Unix epochs (seconds), smaller ones are delta-seconds.
    return value > 1_000_000_000 ? Math.max(0, value * 1000 - nowMillis) : value * 1000
  }
  return undefined
}

// The three HTTP-date forms of RFC 9110 §5.6.7. `Date.parse` alone is far too lenient
// (it reads "-5" or "foo 1" as dates in the past, which would mean "retry now").
const IMF_FIXDATE = /^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/
const RFC_850 = /^[A-Za-z]{6,9}, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/

/** @internal `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`, in milliseconds from now. */
export const parseRetryAfterValue = (value: string, nowMillis: number): number | undefined => {
  const trimmed = value.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const httpDate = IMF_FIXDATE.test(trimmed) || RFC_850.test(trimmed)
    ? trimmed
    : ASCTIME.test(trimmed)
    ? `${trimmed} GMT` // asctime carries no zone but is GMT
    : undefined
  if (httpDate === undefined) return undefined
  const date = Date.parse(httpDate)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, date - nowMillis)
}
