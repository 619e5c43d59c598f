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
import { HttpClient, HttpClientError, HttpClientRequest } from "@effect/platform"
import type { HttpClientResponse } from "@effect/platform"
import type { MetricLabel } from "effect"
import {
  Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  Layer,
  ParseResult,
  Random,
  Redacted,
  Schema,
  Stream
} from "effect"
import type * as Event from "./Event.js"
import { parseRetryAfter } from "./internal/retryAfter.js"
import * as Metrics from "./Metrics.js"
import type * as Outcome from "./Outcome.js"
import * as Bulkhead from "./Resilience/Bulkhead.js"
import * as CircuitBreaker from "./Resilience/CircuitBreaker.js"
import * as Policy from "./Resilience/Policy.js"
import * as RateLimit from "./Resilience/RateLimit.js"
import * as Retry from "./Resilience/Retry.js"
import * as Signing from "./Signing.js"
import * as TargetError from "./TargetError.js"
import { spanTrace } from "./internal/spanTrace.js"

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
  /** Signs every request per Standard Webhooks with this secret. */
  readonly signingSecret?: Signing.Secret
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
export interface DeliverOptions<A> {
  /** Let an attempt already on the wire finish even if the delivery is interrupted (sagas need its outcome). */
  readonly finishInFlight?: boolean
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
  /** One attempt (number `attempt`, from 1), through breaker, bulkhead, rate limit and timeout; no retry. */
  readonly attempt: (event: Event.Any, attempt: number) => Effect.Effect<Answer<A>, TargetError.DeliveryError>
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
  const tag = Context.GenericTag<Id<Name>, Runtime<A>>(`fanout/Target/${name}`)
  const layer = Layer.effect(
    tag,
    Effect.flatMap(HttpClient.HttpClient, (client) => makeRuntime(name, options, policy, client))
  )
  return { name, tag, layer, options, [TypeId]: variance }
}

const decodeFailure = (name: string, reason: "Transform" | "InvalidResponse") => (error: ParseResult.ParseError) =>
  new TargetError.PermanentError({
    target: name,
    reason,
    message: `${name}: ${reason === "Transform" ? "payload rejected" : "invalid response"}: ${
      ParseResult.TreeFormatter.formatErrorSync(error)
    }`
  })

const invalidRequest = (name: string, defect: unknown) =>
  new TargetError.PermanentError({ target: name, reason: "InvalidRequest", message: `${name}: ${String(defect)}` })

// A builder that throws, or whose effect dies, gives a PermanentError; a ParseError becomes one.
const buildWith = <In>(
  name: string,
  builder: RequestBuilder<In>,
  input: In
): Effect.Effect<HttpClientRequest.HttpClientRequest, TargetError.PermanentError> =>
  Effect.suspend(() => {
    let built: ReturnType<RequestBuilder<In>>
    try {
      built = builder(input)
    } catch (defect) {
      return Effect.fail(invalidRequest(name, defect))
    }
    if (!Effect.isEffect(built)) return Effect.succeed(built)
    return built.pipe(
      Effect.catchAllDefect((defect) => Effect.fail(invalidRequest(name, defect))),
      Effect.mapError((error) => ParseResult.isParseError(error) ? decodeFailure(name, "Transform")(error) : error)
    )
  })

const textDecoder = new TextDecoder()

/** Reads a body up to `max` bytes; a larger one is drained and dropped. Always consumes it. */
const readBody = (
  response: HttpClientResponse.HttpClientResponse,
  headers: Readonly<Record<string, string>>,
  max: number
) => {
  const length = Number(headers["content-length"])
  if (Number.isFinite(length) && length <= max) {
    return Effect.map(response.arrayBuffer, (buffer) => textDecoder.decode(buffer))
  }
  return Stream.runFold(
    response.stream,
    { size: 0, chunks: [] as Array<Uint8Array> },
    (acc, chunk) => {
      acc.size += chunk.length
      if (acc.size <= max) acc.chunks.push(chunk)
      else acc.chunks.length = 0
      return acc
    }
  ).pipe(Effect.map((acc) => acc.size <= max ? Buffer.concat(acc.chunks).toString("utf8") : undefined))
}

const parseJsonLoose = (body: string | undefined, contentType: string | undefined): unknown => {
  if (body === undefined || body.length === 0) return undefined
  if (contentType !== undefined && !contentType.includes("json")) return body
  try {
    return JSON.parse(body)
  } catch {
    return body
  }
}

const transportError = (name: string, error: HttpClientError.HttpClientError): TargetError.DeliveryError => {
  if (error._tag === "RequestError" && error.reason !== "Transport") {
    return new TargetError.PermanentError({ target: name, reason: "InvalidRequest", message: `${name}: ${error.message}` })
  }
  const cause = error.cause as { code?: string; message?: string } | undefined
  const detail = cause?.code ?? cause?.message ?? error.message
  return new TargetError.TransientError({ target: name, reason: "Network", message: `${name}: ${detail}` })
}

/** Counts toward the breaker: the target itself looks unhealthy (not 4xx, not our own refusals, not a 429). */
const isBreakerFailure = (error: TargetError.DeliveryError): boolean =>
  (error._tag === "TransientError" && error.status !== 429) || (error._tag === "TimeoutError")

const isLocalRefusal = (error: TargetError.DeliveryError): boolean =>
  error._tag === "CircuitOpenError" || error._tag === "BulkheadRejectedError" || error._tag === "RateLimitedError"

/** Per-outcome counters of one target, each with its labels fixed once (see `Metrics.labelled`). */
const byOutcome = (metric: Metrics.Labelled<number>) => {
  const tagged = new Map<string, Metrics.Labelled<number>>()
  return (outcome: string, fiberLabels: ReadonlyArray<MetricLabel.MetricLabel>): void => {
    let counter = tagged.get(outcome)
    if (counter === undefined) {
      counter = metric.tagged("outcome", outcome)
      tagged.set(outcome, counter)
    }
    counter.unsafeUpdate(1, fiberLabels)
  }
}

/** The labels a metric update made by this fiber gets (`Effect.labelMetrics`). */
const metricLabels = (fiber: Fiber.RuntimeFiber<any, any>): ReadonlyArray<MetricLabel.MetricLabel> =>
  fiber.getFiberRef(FiberRef.currentMetricLabels)

const clockOf = (fiber: Fiber.RuntimeFiber<any, any>): Clock.Clock => Context.get(fiber.currentDefaultServices, Clock.Clock)

/** The class of Effect's live clock (`TestClock` is another). */
const LiveClock = Clock.make().constructor
/** The longest delay `setTimeout` takes (Effect's live clock treats longer ones as never). */
const maxTimerMillis = 2 ** 31 - 1

/**
 * Waits for `fiber`'s exit, or gives `undefined` once `duration` has passed. Under the live
 * clock: one `Effect.async` that observes the fiber and holds a timer (no other fiber). Under
 * any other clock (`TestClock`): the fiber's `await` raced with `Effect.sleep`.
 */
const awaitWithin = <A, E>(
  fiber: Fiber.RuntimeFiber<A, E>,
  duration: Duration.Duration,
  millis: number
): Effect.Effect<Exit.Exit<A, E> | undefined> =>
  Effect.clockWith((clock) =>
    clock.constructor === LiveClock && millis <= maxTimerMillis
      ? Effect.async<Exit.Exit<A, E> | undefined>((resume) => {
        const onExit = (exit: Exit.Exit<A, E>) => {
          clearTimeout(timer)
          resume(Effect.succeed(exit))
        }
        const timer = setTimeout(() => {
          fiber.removeObserver(onExit)
          resume(Effect.succeed(undefined))
        }, millis)
        fiber.addObserver(onExit)
        return Effect.sync(() => {
          clearTimeout(timer)
          fiber.removeObserver(onExit)
        })
      })
      : Effect.raceFirst(fiber.await, Effect.interruptible(Effect.as(Effect.sleep(duration), undefined)))
  )

/**
 * `Effect.timeoutFail`, but interruptible from outside. In effect 3.22 `Effect.timeout*` holds
 * off the caller's interruption until the effect or its timer ends (it waits for a race inside
 * an uninterruptible mask), which kept `all` mode from cancelling targets and scope close from
 * interrupting deliveries until their deadline. Here `self` runs in a fiber of its own: the
 * caller waits for it or for the timer, interruptibly; on timeout or on the caller's
 * interruption, `self` is interrupted and awaited (so `finishOnInterrupt` still holds).
 *
 * It forks one fiber (`self`'s); the wait is {@link awaitWithin}.
 */
const timeoutFail = <E2>(duration: Duration.Duration, onTimeout: () => E2) => {
  const millis = Duration.toMillis(duration)
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | E2, R> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.fork(restore(self)), (fiber) =>
        restore(awaitWithin(fiber, duration, millis)).pipe(
          Effect.onInterrupt(() => Fiber.interrupt(fiber)),
          Effect.flatMap((exit): Effect.Effect<A, E | E2> =>
            exit === undefined ? Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(onTimeout())) : exit
          )
        ))
    )
}

/** Forks `effect` so that interrupting the caller waits for it to finish instead of cutting it short. */
const finishOnInterrupt = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.flatMap(Effect.forkDaemon(effect), (fiber) =>
    Effect.onInterrupt(Effect.flatten(fiber.await), () => fiber.await))

/** What `runAttempts` gives on success. */
interface Attempted<X> {
  readonly attempts: number
  readonly durationMs: number
  readonly value: X
}

/**
 * Builds the run-time of a target over a given `HttpClient` (what its `layer` does).
 *
 * The hot path (`deliver`, one attempt that succeeds) is written with plain combinators, reads
 * the clock and the metric labels synchronously from the fiber, and updates metrics whose
 * registry keys are resolved once; the policy is the one `Policy` documents.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRuntime = <P, A, PI>(
  name: string,
  options: Options<P, A, PI>,
  policy: Policy.Policy,
  client: HttpClient.HttpClient
): Effect.Effect<Runtime<A>> =>
  Effect.gen(function*() {
    const breaker = yield* CircuitBreaker.make(name, policy.circuitBreaker)
    const bulkhead = yield* Bulkhead.make(name, policy.bulkhead)
    const limiter = yield* RateLimit.make(name, policy.rateLimit)
    const decodePayload = options.accepts ? Schema.decodeUnknown(options.accepts) : undefined
    const decodeResponse = options.response ? Schema.decodeUnknown(options.response) : undefined
    const signingKey = options.signingSecret !== undefined ? Signing.keyOf(options.signingSecret) : undefined
    const timeoutMs = Duration.toMillis(policy.timeout)
    const deadlineMs = Duration.toMillis(policy.deadline)
    const maxDelayMs = Duration.toMillis(policy.retry.maxDelay)
    const latencyMetric = Metrics.labelled(Metrics.attemptLatency, "target", name)
    const retriesMetric = Metrics.labelled(Metrics.retries, "target", name)
    const inFlightMetric = Metrics.labelled(Metrics.inFlight, "target", name)
    const countAttempt = byOutcome(Metrics.labelled(Metrics.attempts, "target", name))
    const countDelivery = byOutcome(Metrics.labelled(Metrics.deliveries, "target", name))
    const idempotencyKey = (event: Event.Any) => `${event.id}:${name}`
    const runTrace = spanTrace()
    const attemptTrace = spanTrace()

    const attemptTimeout = timeoutFail(policy.timeout, () =>
      new TargetError.TimeoutError({
        target: name,
        scope: "attempt",
        timeout: timeoutMs,
        message: `${name}: no answer within ${timeoutMs} ms`
      }))
    const deadlineTimeout = timeoutFail(policy.deadline, () =>
      new TargetError.TimeoutError({
        target: name,
        scope: "deadline",
        timeout: deadlineMs,
        message: `${name}: delivery deadline of ${deadlineMs} ms passed`
      }))

    const toEvent = (event: Event.Any): Effect.Effect<Event.Event<string, P>, TargetError.PermanentError> =>
      decodePayload === undefined
        ? Effect.succeed(event as Event.Event<string, P>)
        : decodePayload(event.payload).pipe(
          Effect.map((payload) => ({ ...event, payload })),
          Effect.mapError(decodeFailure(name, "Transform"))
        )

    const classify = (info: ResponseInfo): Classification =>
      options.classify?.(info) ?? TargetError.classifyStatus(info.status)

    // A non-success answer: honour its Retry-After (429/503) in the rate limiter, then fail.
    const refused = (
      clock: Clock.Clock,
      status: number,
      headers: Readonly<Record<string, string>>,
      body: string | undefined,
      verdict: "transient" | "permanent"
    ): Effect.Effect<never, TargetError.DeliveryError> => {
      const wait = parseRetryAfter(headers, clock.unsafeCurrentTimeMillis(), status)
      const detail = body !== undefined && body.length > 0 ? body.slice(0, 200) : undefined
      const message = `${name} answered HTTP ${status}${detail ? `: ${detail}` : ""}`
      const fail = Effect.failSync((): TargetError.DeliveryError =>
        verdict === "transient"
          ? new TargetError.TransientError({
            target: name,
            reason: "Status",
            status,
            message,
            ...(wait !== undefined ? { retryAfter: wait } : {})
          })
          : new TargetError.PermanentError({ target: name, reason: "Status", status, message })
      )
      return wait !== undefined && wait > 0 && (status === 429 || status === 503)
        ? Effect.zipRight(limiter.pauseFor(Math.min(wait, maxDelayMs)), fail)
        : fail
    }

    // One exchange on the wire: send, read (or drain) the body, classify, decode.
    const exchange = (
      request: HttpClientRequest.HttpClientRequest,
      key: string,
      decode: boolean
    ): Effect.Effect<Answer<any>, TargetError.DeliveryError> =>
      attemptTimeout(Effect.withFiberRuntime<Answer<any>, TargetError.DeliveryError>((fiber) => {
        const clock = clockOf(fiber)
        let req = HttpClientRequest.setHeader(request, "idempotency-key", key)
        if (signingKey !== undefined) {
          const body = request.body
          const bytes = body._tag === "Uint8Array" ? body.body : body._tag === "Empty" ? "" : undefined
          if (bytes === undefined) {
            return Effect.fail(
              new TargetError.PermanentError({
                target: name,
                reason: "InvalidRequest",
                message: `${name}: only in-memory bodies can be signed (got ${body._tag})`
              })
            )
          }
          const now = clock.unsafeCurrentTimeMillis()
          req = HttpClientRequest.setHeaders(req, Signing.sign(signingKey, key, Math.floor(now / 1000), bytes))
        }
        const started = clock.unsafeCurrentTimeMillis()
        return Effect.flatMap(
          Effect.mapError(client.execute(req), (e) => transportError(name, e)),
          (response) => {
            // Read once: each read of `headers` builds them anew.
            const headers = response.headers
            return Effect.flatMap(
              Effect.mapError(readBody(response, headers, policy.maxResponseBytes), (e) => transportError(name, e)),
              (body): Effect.Effect<Answer<any>, TargetError.DeliveryError> => {
                const status = response.status
                const verdict = classify({ status, headers, body })
                if (verdict !== "success") return refused(clock, status, headers, body, verdict)
                const loose = parseJsonLoose(body, headers["content-type"])
                const answer = (decoded: unknown): Answer<any> => {
                  latencyMetric.unsafeUpdate((clock.unsafeCurrentTimeMillis() - started) / 1000, metricLabels(fiber))
                  return { status, response: decoded, body: loose }
                }
                return decode && decodeResponse !== undefined
                  ? Effect.map(Effect.mapError(decodeResponse(loose), decodeFailure(name, "InvalidResponse")), answer)
                  : Effect.sync(() => answer(loose))
              }
            )
          }
        )
      }))

    // Counts the attempt in flight (the gauge), from its start to its end.
    const inFlight = <X>(effect: Effect.Effect<X, TargetError.DeliveryError>) =>
      Effect.suspend(() => {
        let labels: ReadonlyArray<MetricLabel.MetricLabel> | undefined
        return Effect.onExit(
          Effect.withFiberRuntime<X, TargetError.DeliveryError>((fiber) => {
            labels = metricLabels(fiber)
            inFlightMetric.unsafeModify(1, labels)
            return effect
          }),
          () => {
            if (labels !== undefined) inFlightMetric.unsafeModify(-1, labels)
            return Effect.void
          }
        )
      })

    // A bulkhead permit, then a rate-limit token, then breaker admission right before the
    // exchange: admitted first, a request that waited in the queue or for a token could go
    // through a breaker that opened meanwhile.
    const guarded = <X>(effect: Effect.Effect<X, TargetError.DeliveryError>, protect: boolean) =>
      bulkhead.run(
        Effect.zipRight(
          limiter.take,
          breaker.run(inFlight(protect ? finishOnInterrupt(effect) : effect), isBreakerFailure)
        )
      )

    // The attempts of one delivery: the first, then retries as `Retry.decide` says (what the
    // `Retry.schedule` driver of `Effect.retry` does, without building a schedule driver per
    // delivery), all under the deadline.
    const runAttempts = <X>(
      attemptOnce: (n: number) => Effect.Effect<X, TargetError.DeliveryError>,
      span: string,
      key: string
    ): Effect.Effect<Attempted<X>, Outcome.Failed | Outcome.Skipped> =>
      Effect.withFiberRuntime<Attempted<X>, Outcome.Failed | Outcome.Skipped>((fiber) => {
        const clock = clockOf(fiber)
        const labels = metricLabels(fiber)
        const start = clock.unsafeCurrentTimeMillis()
        let attempts = 0
        let sent = 0
        const one = Effect.suspend(() => {
          attempts++
          const n = attempts
          return Effect.matchCauseEffect(attemptOnce(n), {
            onFailure: (cause) => {
              const failure = Cause.failureOption(cause)
              if (failure._tag === "Some") {
                if (!isLocalRefusal(failure.value)) sent++
                countAttempt(TargetError.label(failure.value), labels)
              }
              return Effect.failCause(cause)
            },
            onSuccess: (value) => {
              sent++
              countAttempt("success", labels)
              return Effect.succeed(value)
            }
          }).pipe(
            Effect.withSpan("fanout.attempt", {
              attributes: { "fanout.target": name, "fanout.attempt": n },
              captureStackTrace: attemptTrace
            })
          )
        })
        const retry = (error: TargetError.DeliveryError): Effect.Effect<X, TargetError.DeliveryError> => {
          const now = clock.unsafeCurrentTimeMillis()
          return Effect.flatMap(Random.next, (random) => {
            const decision = Retry.decide(policy.retry, { attempts, elapsed: now - start, error, random })
            if (decision._tag === "GiveUp") return Effect.fail(error)
            return decision.delay > 0 ? Effect.zipRight(Effect.sleep(Duration.millis(decision.delay)), loop) : loop
          })
        }
        const loop: Effect.Effect<X, TargetError.DeliveryError> = Effect.catchAll(one, retry)
        return Effect.matchEffect(deadlineTimeout(loop), {
          onSuccess: (value) => {
            const durationMs = clock.unsafeCurrentTimeMillis() - start
            if (attempts > 1) retriesMetric.unsafeUpdate(attempts - 1, labels)
            countDelivery("delivered", labels)
            return Effect.succeed({ attempts, durationMs, value })
          },
          onFailure: (error) => {
            const durationMs = clock.unsafeCurrentTimeMillis() - start
            if (attempts > 1) retriesMetric.unsafeUpdate(attempts - 1, labels)
            const outcome = sent === 0 && isLocalRefusal(error) ? "Skipped" as const : "Failed" as const
            countDelivery(outcome === "Skipped" ? "skipped" : "failed", labels)
            return Effect.fail({ _tag: outcome, target: name, attempts, durationMs, error })
          }
        })
      }).pipe(
        Effect.withSpan(span, {
          attributes: { "fanout.target": name, "fanout.idempotency_key": key },
          captureStackTrace: runTrace
        })
      )

    const prepare = (event: Event.Any) => Effect.flatMap(toEvent(event), (typed) => buildWith(name, options.request, typed))

    const attempt = (event: Event.Any, _n: number) =>
      Effect.flatMap(prepare(event), (request) => guarded(exchange(request, idempotencyKey(event), true), false))

    const deliver = (
      event: Event.Any,
      hooks: DeliverOptions<A> = {}
    ): Effect.Effect<Outcome.Delivered<A>, Outcome.Failed | Outcome.Skipped> => {
      const key = idempotencyKey(event)
      const protect = hooks.finishInFlight === true
      const onDelivered = hooks.onDelivered
      const delivered = (result: Attempted<Answer<any>>): Outcome.Delivered<A> => ({
        _tag: "Delivered",
        target: name,
        attempts: result.attempts,
        status: result.value.status,
        durationMs: result.durationMs,
        response: result.value.response as A
      })
      return Effect.matchEffect(prepare(event), {
        onFailure: (error) =>
          Effect.withFiberRuntime<never, Outcome.Failed>((fiber) => {
            countAttempt(TargetError.label(error), metricLabels(fiber))
            return Effect.fail({ _tag: "Failed", target: name, attempts: 0, durationMs: 0, error })
          }),
        onSuccess: (request) =>
          onDelivered === undefined
            ? Effect.map(runAttempts(() => guarded(exchange(request, key, true), protect), "fanout.deliver", key), delivered)
            : Effect.flatMap(Clock.currentTimeMillis, (started) =>
              Effect.map(
                runAttempts(
                  (n) =>
                    guarded(
                      Effect.tap(exchange(request, key, true), (answer) =>
                        Effect.flatMap(Clock.currentTimeMillis, (now) =>
                          onDelivered({
                            _tag: "Delivered",
                            target: name,
                            attempts: n,
                            status: answer.status,
                            durationMs: now - started,
                            response: answer.response as A
                          }))),
                      protect
                    ),
                  "fanout.deliver",
                  key
                ),
                delivered
              ))
      })
    }

    const compensate = (event: Event.Any, response: A) =>
      Effect.gen(function*() {
        const builder = options.compensate
        const key = `${idempotencyKey(event)}:compensate`
        if (builder === undefined) {
          return yield* Effect.fail<Outcome.Failed>({
            _tag: "Failed",
            target: name,
            attempts: 0,
            durationMs: 0,
            error: new TargetError.PermanentError({
              target: name,
              reason: "InvalidRequest",
              message: `${name}: no compensation defined`
            })
          })
        }
        const request = yield* toEvent(event).pipe(
          Effect.flatMap((typed) => buildWith(name, builder, { event: typed, response })),
          Effect.mapError((error): Outcome.Failed => ({
            _tag: "Failed",
            target: name,
            attempts: 0,
            durationMs: 0,
            error
          }))
        )
        const result = yield* runAttempts(
          () => bulkhead.run(Effect.zipRight(limiter.take, exchange(request, key, false))),
          "fanout.compensate",
          key
        )
        const delivered: Outcome.Delivered<unknown> = {
          _tag: "Delivered",
          target: name,
          attempts: result.attempts,
          status: result.value.status,
          durationMs: result.durationMs,
          response: result.value.response
        }
        return delivered
      })

    return {
      name,
      policy,
      breaker,
      bulkhead,
      limiter,
      hasCompensation: options.compensate !== undefined,
      idempotencyKey,
      attempt,
      deliver,
      compensate
    } satisfies Runtime<A>
  })

/**
 * A `Redacted` secret from a plain string (for tests and examples).
 *
 * @since 0.1.0
 * @category constructors
 */
export const secret = (value: string): Redacted.Redacted<string> => Redacted.make(value)
