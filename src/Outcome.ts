/**
 * The typed result of delivering one event to one target.
 *
 * @since 0.1.0
 */
import type { DeliveryError } from "./TargetError.js"

/**
 * The target answered with success. `response` is its decoded answer (the target's
 * response schema), or the parsed JSON / text body when it has none.
 *
 * @since 0.1.0
 * @category models
 */
export interface Delivered<A = unknown> {
  readonly _tag: "Delivered"
  readonly target: string
  readonly attempts: number
  readonly status: number
  readonly durationMs: number
  readonly response: A
}

/**
 * The delivery failed: a permanent error, retries exhausted, or the deadline passed.
 * `error` is the last attempt's error.
 *
 * @since 0.1.0
 * @category models
 */
export interface Failed {
  readonly _tag: "Failed"
  readonly target: string
  readonly attempts: number
  readonly durationMs: number
  readonly error: DeliveryError
}

/**
 * No request ever reached the target: every attempt was refused locally (open circuit,
 * full bulkhead, rate limit). `error` says which.
 *
 * @since 0.1.0
 * @category models
 */
export interface Skipped {
  readonly _tag: "Skipped"
  readonly target: string
  readonly attempts: number
  readonly durationMs: number
  readonly error: DeliveryError
}

/**
 * In `all` mode, another target failed and this one was interrupted before it finished.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cancelled {
  readonly _tag: "Cancelled"
  readonly target: string
}

/**
 * In `all` mode, this target had succeeded, another failed, and its `compensate` request
 * was delivered (`compensation` is that request's outcome).
 *
 * @since 0.1.0
 * @category models
 */
export interface Compensated<A = unknown> {
  readonly _tag: "Compensated"
  readonly target: string
  readonly delivered: Delivered<A>
  readonly compensation: Delivered<unknown> | Failed | Skipped
}

/**
 * @since 0.1.0
 * @category models
 */
export type Outcome<A = unknown> = Delivered<A> | Failed | Skipped | Cancelled | Compensated<A>

/**
 * True when the target received and accepted the event (compensated or not).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isDelivered = (outcome: Outcome<any>): outcome is Delivered<any> => outcome._tag === "Delivered"
