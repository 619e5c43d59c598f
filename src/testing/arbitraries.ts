/**
 * fast-check arbitraries for property tests: events, fault steps and scripts, random fault
 * models and resilience policies within small, sane bounds (so each simulated run is cheap).
 * They use the fast-check that `effect` re-exports (`FastCheck`), so `it.prop` /
 * `it.effect.prop` from `@effect/vitest` and `fc.assert` take them as they are.
 *
 * @since 0.1.0
 */
import { Arbitrary, DateTime, FastCheck as fc } from "effect"
import type { Schema } from "effect"
import type * as Event from "../Event.js"
import type * as Policy from "../Resilience/Policy.js"
import type * as Fault from "./Fault.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface EventOptions {
  /** The event type: a fixed string or an arbitrary of them. Default: short dotted names (`"a.bc"`). */
  readonly type?: string | fc.Arbitrary<string>
  /** The payload: an arbitrary, or a Schema to derive one from. Default: small JSON values. */
  readonly payload?: fc.Arbitrary<unknown> | Schema.Schema<any, any, never>
}

const isArbitrary = (u: unknown): u is fc.Arbitrary<unknown> =>
  typeof u === "object" && u !== null && typeof (u as { generate?: unknown }).generate === "function" &&
  typeof (u as { canShrinkWithoutContext?: unknown }).canShrinkWithoutContext === "function"

const defaultType = fc.stringMatching(/^[a-z]{1,6}(\.[a-z]{1,6}){0,2}$/)
const defaultPayload = fc.jsonValue({ maxDepth: 2 })
const id = fc.uuid()
const createdAt = fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => DateTime.unsafeMake(ms))
const optionalKey = fc.option(fc.stringMatching(/^[a-z0-9-]{1,12}$/), { nil: undefined })

const build = <T extends string, P>(
  type: fc.Arbitrary<T>,
  payload: fc.Arbitrary<P>
): fc.Arbitrary<Event.Event<T, P>> =>
  fc.record({ id, type, payload, createdAt, key: optionalKey }).map(({ createdAt, id, key, payload, type }) => ({
    id,
    type,
    payload,
    headers: {},
    createdAt,
    ...(key !== undefined ? { key } : {})
  }))

/**
 * Events: of a definition (payloads derived from its Schema), or untyped with the given type
 * and payload (defaults: random dotted types, small JSON payloads). Ids are random UUIDs.
 *
 * @example
 * ```ts
 * arbitraries.event(OrderPlaced)                      // Event<"order.placed", { orderId, qty }>
 * arbitraries.event({ type: "ping" })                 // Event<string, unknown>
 * ```
 *
 * @since 0.1.0
 * @category events
 */
export const event: {
  <T extends string, P, I>(definition: Event.Definition<T, P, I>): fc.Arbitrary<Event.Event<T, P>>
  (options?: EventOptions): fc.Arbitrary<Event.Any>
} = ((what?: Event.Definition<string, unknown, unknown> | EventOptions) => {
  if (what !== undefined && "make" in what && "decode" in what) {
    return build(fc.constant(what.type), Arbitrary.make(what.payload as Schema.Schema<unknown, unknown, never>))
  }
  const options = (what ?? {}) as EventOptions
  const type = options.type === undefined
    ? defaultType
    : typeof options.type === "string"
    ? fc.constant(options.type)
    : options.type
  const payload = options.payload === undefined
    ? defaultPayload
    : isArbitrary(options.payload)
    ? options.payload
    : Arbitrary.make(options.payload)
  return build(type, payload)
}) as never

/**
 * Several events with distinct ids (an id is an idempotency key: two events with one id are
 * the same event).
 *
 * @since 0.1.0
 * @category events
 */
export const events = <E extends Event.Any>(
  one: fc.Arbitrary<E>,
  options: { readonly minLength?: number; readonly maxLength?: number } = {}
): fc.Arbitrary<ReadonlyArray<E>> =>
  fc.uniqueArray(one, {
    selector: (e) => e.id,
    minLength: options.minLength ?? 1,
    maxLength: options.maxLength ?? 4
  })

/**
 * The kinds of {@link step}: `ok` (2xx), `serverError` (500/502/503/504), `clientError`
 * (400/404/409/422/501, permanent), `rateLimited` (429 with `Retry-After`, seconds or
 * HTTP-date), `reset`, `hang` (never answers) and `slow` (a 200 after `slowLatency`, past a
 * short timeout).
 *
 * @since 0.1.0
 * @category faults
 */
export type StepKind = "ok" | "serverError" | "clientError" | "rateLimited" | "reset" | "hang" | "slow"

/**
 * @since 0.1.0
 * @category faults
 */
export interface StepOptions {
  /** Which kinds to draw (default: all). */
  readonly kinds?: ReadonlyArray<StepKind>
  /** Latency of an ordinary step, in ms: drawn in [0, maxLatency]. Default 200. */
  readonly maxLatency?: number
  /** Latency range of a `slow` step, in ms. Default [2000, 5000]. */
  readonly slowLatency?: readonly [min: number, max: number]
  /** Largest `Retry-After`, in seconds. Default 2. */
  readonly maxRetryAfter?: number
}

const allKinds: ReadonlyArray<StepKind> = ["ok", "serverError", "clientError", "rateLimited", "reset", "hang", "slow"]

/**
 * One fault step.
 *
 * @since 0.1.0
 * @category faults
 */
export const step = (options: StepOptions = {}): fc.Arbitrary<Fault.Step> => {
  const latency = fc.integer({ min: 0, max: options.maxLatency ?? 200 })
  const [slowMin, slowMax] = options.slowLatency ?? [2000, 5000]
  const retryAfter = fc.record({
    seconds: fc.integer({ min: 0, max: options.maxRetryAfter ?? 2 }),
    format: fc.constantFrom("seconds" as const, "http-date" as const)
  })
  const respond = (statuses: fc.Arbitrary<number>, lat: fc.Arbitrary<number> = latency) =>
    fc.record({ status: statuses, latency: lat }).map(({ latency, status }): Fault.Step => ({
      _tag: "Respond",
      status,
      latency
    }))
  const byKind: Record<StepKind, fc.Arbitrary<Fault.Step>> = {
    ok: respond(fc.constantFrom(200, 200, 201, 202, 204)),
    serverError: respond(fc.constantFrom(500, 502, 503, 504)),
    clientError: respond(fc.constantFrom(400, 404, 409, 422, 501)),
    rateLimited: fc.record({ latency, retryAfter, status: fc.constantFrom(429, 429, 503) }).map((r): Fault.Step => ({
      _tag: "Respond",
      ...r
    })),
    reset: latency.map((latency): Fault.Step => ({ _tag: "Reset", latency })),
    hang: fc.constant<Fault.Step>({ _tag: "Hang" }),
    slow: respond(fc.constant(200), fc.integer({ min: slowMin, max: slowMax }))
  }
  const kinds = options.kinds ?? allKinds
  if (kinds.length === 0) throw new RangeError("arbitraries.step: no kinds")
  return fc.oneof(...kinds.map((kind) => byKind[kind]))
}

/**
 * A fault script of up to `maxLength` steps (default 5), then `"ok"` or `"repeat"`.
 *
 * @since 0.1.0
 * @category faults
 */
export const faultScript = (
  options: StepOptions & { readonly maxLength?: number; readonly then?: "ok" | "repeat" } = {}
): fc.Arbitrary<Fault.FaultScript> =>
  fc.record({
    steps: fc.array(step(options), { maxLength: options.maxLength ?? 5 }),
    then: options.then !== undefined ? fc.constant(options.then) : fc.constantFrom("ok" as const, "repeat" as const)
  }).map(({ steps, then }) => ({ _tag: "FaultScript", steps, then }))

/**
 * A seeded random fault model with small failure probabilities (each at most 0.3, at most
 * 0.8 in all) and latencies within [0, maxLatency] (default 200 ms).
 *
 * @since 0.1.0
 * @category faults
 */
export const randomFaults = (options: { readonly maxLatency?: number } = {}): fc.Arbitrary<Fault.RandomFaults> => {
  const p = fc.double({ min: 0, max: 0.3, noNaN: true })
  const max = options.maxLatency ?? 200
  return fc.record({
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    serverError: p,
    rateLimited: p,
    clientError: fc.double({ min: 0, max: 0.1, noNaN: true }),
    reset: p,
    hang: fc.double({ min: 0, max: 0.1, noNaN: true }),
    latency: fc.tuple(fc.integer({ min: 0, max }), fc.integer({ min: 0, max })).map(([a, b]) =>
      [Math.min(a, b), Math.max(a, b)] as const
    ),
    retryAfterSeconds: fc.integer({ min: 0, max: 2 })
  }).map((model): Fault.RandomFaults => {
    const sum = model.serverError + model.rateLimited + model.clientError + model.reset + model.hang
    const scale = sum > 0.8 ? 0.8 / sum : 1
    return {
      _tag: "RandomFaults",
      ...model,
      serverError: model.serverError * scale,
      rateLimited: model.rateLimited * scale,
      clientError: model.clientError * scale,
      reset: model.reset * scale,
      hang: model.hang * scale
    }
  })
}

/**
 * @since 0.1.0
 * @category policies
 */
export interface PolicyOptions {
  /** Range of `retry.maxAttempts`. Default [1, 5]. */
  readonly maxAttempts?: readonly [min: number, max: number]
  /** Range of `bulkhead.permits`. Default [1, 4]. */
  readonly permits?: readonly [min: number, max: number]
  /** Range of `bulkhead.queue`. Default [0, 32]. */
  readonly queue?: readonly [min: number, max: number]
  /** Draw a circuit breaker: always, never, or either (default). */
  readonly circuitBreaker?: boolean | "maybe"
  /** Draw a rate limit: always, never (default), or either. */
  readonly rateLimit?: boolean | "maybe"
}

const int = (range: readonly [number, number]) => fc.integer({ min: range[0], max: range[1] })

/**
 * A `Policy.Input` within small bounds, durations in milliseconds: timeout 50 ms–2 s,
 * deadline 1–60 s, 1–5 attempts, delays 1 ms–5 s, breaker threshold 1–5 with a reset of
 * 100 ms–10 s, bulkhead 1–4 permits.
 *
 * @since 0.1.0
 * @category policies
 */
export const policy = (options: PolicyOptions = {}): fc.Arbitrary<Policy.Input> => {
  const breaker = fc.record({
    failureThreshold: fc.integer({ min: 1, max: 5 }),
    resetAfter: fc.integer({ min: 100, max: 10_000 }),
    halfOpenProbes: fc.integer({ min: 1, max: 2 })
  })
  const limit = fc.record({
    limit: fc.integer({ min: 1, max: 20 }),
    interval: fc.integer({ min: 100, max: 2000 }),
    maxWait: fc.integer({ min: 0, max: 5000 })
  })
  const cb = options.circuitBreaker ?? "maybe"
  const rl = options.rateLimit ?? false
  return fc.record({
    timeout: fc.integer({ min: 50, max: 2000 }),
    deadline: fc.integer({ min: 1000, max: 60_000 }),
    retry: fc.record({
      maxAttempts: int(options.maxAttempts ?? [1, 5]),
      initialDelay: fc.integer({ min: 1, max: 500 }),
      factor: fc.constantFrom(1, 1.5, 2, 3),
      maxDelay: fc.integer({ min: 100, max: 5000 }),
      maxElapsed: fc.integer({ min: 1000, max: 120_000 }),
      jitter: fc.constantFrom("full" as const, "equal" as const, "none" as const),
      honorRetryAfter: fc.boolean()
    }),
    bulkhead: fc.record({ permits: int(options.permits ?? [1, 4]), queue: int(options.queue ?? [0, 32]) }),
    circuitBreaker: cb === true
      ? breaker
      : cb === false
      ? fc.constant(false as const)
      : fc.oneof(fc.constant(false as const), breaker),
    rateLimit: rl === true ? limit : rl === false ? fc.constant(undefined) : fc.option(limit, { nil: undefined })
  }).map(({ rateLimit, ...rest }): Policy.Input => rateLimit === undefined ? rest : { ...rest, rateLimit })
}
