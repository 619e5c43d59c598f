/**
 * Every way a delivery can fail, as tagged errors, and the one place where HTTP outcomes
 * are classified into transient (retried) and permanent (not retried).
 *
 * @since 0.1.0
 */
import { Predicate, Schema } from "effect"

/**
 * A failure worth retrying: a network error, an attempt timeout, 408, 425, 429 or a 5xx
 * other than 501/505. `retryAfter` (milliseconds) is what the server asked us to wait.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransientError extends Schema.TaggedError<TransientError>()("TransientError", {
  target: Schema.String,
  reason: Schema.Literal("Network", "Status", "Custom"),
  message: Schema.String,
  status: Schema.optional(Schema.Number),
  retryAfter: Schema.optional(Schema.Number)
}) {}

/**
 * A failure that retrying cannot fix: other 4xx, 501, 505, a payload the target's
 * transform rejects, a response that cannot be decoded, a request that cannot be built.
 *
 * @since 0.1.0
 * @category errors
 */
export class PermanentError extends Schema.TaggedError<PermanentError>()("PermanentError", {
  target: Schema.String,
  reason: Schema.Literal("Status", "Transform", "InvalidResponse", "InvalidRequest", "Custom"),
  message: Schema.String,
  status: Schema.optional(Schema.Number)
}) {}

/**
 * The target's circuit breaker is open: no request was sent. `retryAfter` is the time left
 * before the breaker lets a probe through.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpenError extends Schema.TaggedError<CircuitOpenError>()("CircuitOpenError", {
  target: Schema.String,
  message: Schema.String,
  retryAfter: Schema.optional(Schema.Number)
}) {}

/**
 * The target's rate limiter would make this request wait longer than allowed.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimitedError extends Schema.TaggedError<RateLimitedError>()("RateLimitedError", {
  target: Schema.String,
  message: Schema.String,
  retryAfter: Schema.optional(Schema.Number)
}) {}

/**
 * The target's bulkhead is full and its wait queue too: the request was refused at once.
 *
 * @since 0.1.0
 * @category errors
 */
export class BulkheadRejectedError extends Schema.TaggedError<BulkheadRejectedError>()("BulkheadRejectedError", {
  target: Schema.String,
  message: Schema.String
}) {}

/**
 * An attempt took longer than the per-attempt timeout (`scope: "attempt"`, retried), or
 * the delivery as a whole passed its deadline (`scope: "deadline"`, final).
 *
 * @since 0.1.0
 * @category errors
 */
export class TimeoutError extends Schema.TaggedError<TimeoutError>()("TimeoutError", {
  target: Schema.String,
  message: Schema.String,
  scope: Schema.Literal("attempt", "deadline"),
  timeout: Schema.Number
}) {}

/**
 * Any failure of a delivery to one target.
 *
 * @since 0.1.0
 * @category errors
 */
export const DeliveryError = Schema.Union(
  TransientError,
  PermanentError,
  CircuitOpenError,
  RateLimitedError,
  BulkheadRejectedError,
  TimeoutError
)

/**
 * @since 0.1.0
 * @category errors
 */
export type DeliveryError = typeof DeliveryError.Type

/**
 * Only these are retried. A deadline timeout is final: the delivery has no time left.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isTransient = (error: DeliveryError): boolean =>
  error._tag === "PermanentError" ? false : error._tag === "TimeoutError" ? error.scope === "attempt" : true

/**
 * @since 0.1.0
 * @category predicates
 */
export const isDeliveryError = (u: unknown): u is DeliveryError =>
  Predicate.isTagged(u, "TransientError") || Predicate.isTagged(u, "PermanentError") ||
  Predicate.isTagged(u, "CircuitOpenError") || Predicate.isTagged(u, "RateLimitedError") ||
  Predicate.isTagged(u, "BulkheadRejectedError") || Predicate.isTagged(u, "TimeoutError")

/**
 * How long the error asks the next attempt to wait, if it says.
 *
 * @since 0.1.0
 * @category getters
 */
export const retryAfter = (error: DeliveryError): number | undefined =>
  "retryAfter" in error ? error.retryAfter : undefined

/**
 * The classification table of DESIGN.md §2 for an HTTP status: `"success"` for 2xx,
 * `"transient"` for 408, 425, 429 and 5xx except 501/505, `"permanent"` for the rest.
 *
 * @since 0.1.0
 * @category classification
 */
export const classifyStatus = (status: number): "success" | "transient" | "permanent" => {
  if (status >= 200 && status < 300) return "success"
  if (status === 408 || status === 425 || status === 429) return "transient"
  if (status >= 500 && status !== 501 && status !== 505) return "transient"
  return "permanent"
}

/**
 * The typed error for a non-2xx status, per {@link classifyStatus}.
 *
 * @since 0.1.0
 * @category classification
 */
export const fromStatus = (
  target: string,
  status: number,
  retryAfterMillis: number | undefined,
  detail?: string
): TransientError | PermanentError => {
  const message = `${target} answered HTTP ${status}${detail ? `: ${detail}` : ""}`
  return classifyStatus(status) === "transient"
    ? new TransientError({
      target,
      reason: "Status",
      status,
      message,
      ...(retryAfterMillis !== undefined ? { retryAfter: retryAfterMillis } : {})
    })
    : new PermanentError({ target, reason: "Status", status, message })
}

/**
 * A short, stable label of an error for metrics, logs and the store (`"http_503"`, `"timeout"`, …).
 *
 * @since 0.1.0
 * @category getters
 */
export const label = (error: DeliveryError): string => {
  switch (error._tag) {
    case "TransientError":
    case "PermanentError":
      return error.status !== undefined ? `http_${error.status}` : error.reason.toLowerCase()
    case "TimeoutError":
      return error.scope === "attempt" ? "timeout" : "deadline"
    case "CircuitOpenError":
      return "circuit_open"
    case "RateLimitedError":
      return "rate_limited"
    case "BulkheadRejectedError":
      return "bulkhead_rejected"
  }
}
