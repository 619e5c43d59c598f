/**
 * A target is one downstream API, declared once: its name, how an event becomes an
 * `HttpClientRequest` (the per-target payload transformation, validated by Schema), how its
 * answers are classified and decoded, its resilience policy and an optional compensation.
 * It is an Effect service: `Target.make` gives a `Context.Tag` and a `Layer` that builds
 * the target's runtime (circuit breaker, bulkhead, rate limiter) over the one shared
 * `HttpClient`.
 *
 * @since 0.1.0
 */
import { HttpClient } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, type ParseResult, Redacted, type Schema } from "effect"
import * as Delivery from "./Delivery.js"
import type * as Event from "./Event.js"
import type * as Outcome from "./Outcome.js"
import type * as Bulkhead from "./Resilience/Bulkhead.js"
import type * as CircuitBreaker from "./Resilience/CircuitBreaker.js"
import * as Policy from "./Resilience/Policy.js"
import type * as RateLimit from "./Resilience/RateLimit.js"
import * as Signing from "./Signing.js"
import type * as TargetError from "./TargetError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("fanout/Target")

/**
 * The service identifier of the target named `Name`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Id<Name extends string> {
  readonly [TypeId]: Name
}

/**
 * What a response looks like to a classifier: status, lower-cased headers and the body
 * text (undefined when it was larger than `maxResponseBytes`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponseInfo {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type Classification = "success" | "transient" | "permanent"

/**
 * How to build a request: a request, or an effect of one. A failure here is permanent
 * (a payload this target cannot take will not become acceptable by retrying).
 *
 * @since 0.1.0
 * @category models
 */
export type RequestBuilder<In> = (
  input: In
) =>
  | HttpClientRequest.HttpClientRequest
  | Effect.Effect<HttpClientRequest.HttpClientRequest, TargetError.PermanentError | ParseResult.ParseError>

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<P, A, PI = P> {
  /** The payload this target accepts. Events are decoded with it before `request` runs; a mismatch is a `PermanentError` ("Transform"). */
  readonly accepts?: Schema.Schema<P, PI>
  /** Builds the request for one event: URL, method, headers and the body this API expects. */
  readonly request: RequestBuilder<Event.Event<string, P>>
  /** Decodes a successful answer's JSON body. A body that does not match is a `PermanentError` ("InvalidResponse"). */
  readonly response?: Schema.Schema<A, any>
  /** Overrides the default classification (DESIGN §2) for a response; return undefined to keep it. */
  readonly classify?: (response: ResponseInfo) => Classification | undefined
  readonly policy?: Policy.Input
  /** Undoes a delivered event in a saga (`all` mode), given the event and this target's answer. */
  readonly compensate?: RequestBuilder<{ readonly event: Event.Event<string, P>; readonly response: A }>
  /**
   * Signs every request per Standard Webhooks with this secret, or with each secret of a list
   * (newest first; `{ secret, until }` is no longer used after `until`): one `v1,…` signature per
   * live secret in `webhook-signature`. An empty list or an `until` that is not an instant throws
   * a `TypeError` here, at declaration.
   */
  readonly signingSecret?: Signing.Secrets
}

/**
 * One attempt's successful answer.
 *
 * @since 0.1.0
 * @category models
 */
export interface Answer<A> {
  readonly status: number
  readonly response: A
  /** The body as received, parsed as JSON when it is JSON (else its text); what durable pipelines store for dependents. */
  readonly body?: unknown
}

/**
 * Hooks of one delivery, for the fan-out.
 *
 * @since 0.1.0
 * @category models
 */
/**
 * What a delivery is to its event: one of the targets it is routed to, or a shadow that only
 * mirrors it (counted apart in the metrics: `role="shadow"`).
 *
 * @since 0.1.0
 * @category models
 */
export type Role = "primary" | "shadow"

export interface DeliverOptions<A> {
  /** Let an attempt already on the wire finish even if the delivery is interrupted (sagas need its outcome). */
  readonly finishInFlight?: boolean
  /** The `role` label of this delivery's attempt and delivery counters. Default `"primary"`. */
  readonly role?: Role
  /** Runs as part of the successful attempt, before any interruption can intervene. */
  readonly onDelivered?: (delivered: Outcome.Delivered<A>) => Effect.Effect<void>
}

/**
 * A target at run time: what its `Layer` provides.
 *
 * @since 0.1.0
 * @category models
 */
export interface Runtime<A = unknown> {
  readonly name: string
  readonly policy: Policy.Policy
  readonly breaker: CircuitBreaker.CircuitBreaker
  readonly bulkhead: Bulkhead.Bulkhead
  readonly limiter: RateLimit.RateLimiter
  readonly hasCompensation: boolean
  /** The idempotency key of an event at this target: `<event id>:<target>`. */
  readonly idempotencyKey: (event: Event.Any) => string
  /**
   * One attempt (number `attempt`, from 1), through breaker, bulkhead, rate limit and timeout; no retry.
   * `idempotencyKey` is the one sent (default {@link Runtime.idempotencyKey}; a worker passes the stored
   * delivery's, which a resend changes).
   */
  readonly attempt: (
    event: Event.Any,
    attempt: number,
    idempotencyKey?: string
  ) => Effect.Effect<Answer<A>, TargetError.DeliveryError>
  /** The whole delivery under the policy: attempts, retries by the schedule, deadline. */
  readonly deliver: (
    event: Event.Any,
    options?: DeliverOptions<A>
  ) => Effect.Effect<Outcome.Delivered<A>, Outcome.Failed | Outcome.Skipped>
  /** Delivers the compensation of a delivered event (idempotency key `<event id>:<target>:compensate`). */
  readonly compensate: (
    event: Event.Any,
    response: A
  ) => Effect.Effect<Outcome.Delivered<unknown>, Outcome.Failed | Outcome.Skipped>
}

/**
 * The declaration of a target. `P` is the payload it accepts (contravariant: a target that
 * accepts a wider payload can take any narrower event), `A` its decoded answer.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target<Name extends string, P, A> extends Accepting<P> {
  readonly name: Name
  readonly tag: Context.Tag<Id<Name>, Runtime<A>>
  readonly layer: Layer.Layer<Id<Name>, never, HttpClient.HttpClient>
  readonly options: Options<P, A, any>
}

/**
 * What routes check targets against: anything that accepts payloads of type `P`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Accepting<in P> {
  readonly name: string
  readonly [TypeId]: { readonly _P: (_: P) => void }
}

/**
 * Any target. (Not `Target<string, any, any>`: a target's `tag` is invariant in its name, so
 * `Target<"inventory", …>` would not be assignable to that.)
 *
 * @since 0.1.0
 * @category models
 */
export interface Any extends Accepting<any> {
  readonly name: string
  readonly tag: Context.Tag<any, Runtime<any>>
  readonly layer: Layer.Layer<any, never, HttpClient.HttpClient>
  readonly options: Options<any, any, any>
}

/**
 * The services a set of targets needs provided.
 *
 * @since 0.1.0
 * @category type-level
 */
export type Requirements<T> = T extends Target<infer Name, any, any> ? Id<Name> : never

/**
 * @since 0.1.0
 * @category type-level
 */
export type ResponseOf<T> = T extends Target<any, any, infer A> ? A : never

const variance = { _P: (_: unknown) => {} }

/**
 * Declares a target.
 *
 * @example
 * ```ts
 * const Inventory = Target.make("inventory", {
 *   accepts: Schema.Struct({ sku: Schema.String, qty: Schema.Int }),
 *   request: (event) => HttpClientRequest.post("http://127.0.0.1:9001/reserve").pipe(
 *     HttpClientRequest.bodyUnsafeJson({ sku: event.payload.sku, quantity: event.payload.qty })),
 *   response: Schema.Struct({ reservationId: Schema.String }),
 *   policy: { timeout: "2 seconds", retry: { maxAttempts: 8 } },
 *   compensate: ({ response }) => HttpClientRequest.del(`http://127.0.0.1:9001/reserve/${response.reservationId}`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Name extends string, P = unknown, A = unknown, PI = P>(
  name: Name,
  options: Options<P, A, PI>
): Target<Name, P, A> => {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/.test(name)) {
    throw new TypeError(`target name must be 1-100 characters of [A-Za-z0-9_.-], got ${JSON.stringify(name)}`)
  }
  const policy = Policy.make(options.policy)
  if (options.signingSecret !== undefined) Signing.keyring(options.signingSecret)
  const tag = Context.GenericTag<Id<Name>, Runtime<A>>(`fanout/Target/${name}`)
  const layer = Layer.effect(
    tag,
    Effect.flatMap(HttpClient.HttpClient, (client) => Delivery.makeRuntime(name, options, policy, client))
  )
  return { name, tag, layer, options, [TypeId]: variance }
}

/**
 * Builds the run-time of a target over a given `HttpClient` (what its `layer` does); see
 * `Delivery.makeRuntime`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRuntime: <P, A, PI>(
  name: string,
  options: Options<P, A, PI>,
  policy: Policy.Policy,
  client: HttpClient.HttpClient
) => Effect.Effect<Runtime<A>> = Delivery.makeRuntime

/**
 * A `Redacted` secret from a plain string (for tests and examples).
 *
 * @since 0.1.0
 * @category constructors
 */
export const secret = (value: string): Redacted.Redacted<string> => Redacted.make(value)
