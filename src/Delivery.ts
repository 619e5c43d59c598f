/**
 * One delivery, in one place: an attempt under the target's policy (bulkhead, rate limit,
 * breaker, timeout, the exchange on the wire, classification, the idempotency key, the attempt's
 * span and counters) and what follows it (`decide`: delivered, retry at an instant, or dead).
 * `Fanout` (direct mode), `Pipeline` and `Worker` (durable mode) all deliver through the
 * run-time built here; `Target` keeps the declaration.
 *
 * The hot path is written for its cost (DESIGN §8):
 *
 * - **One fiber per delivery.** On Fanout's own transport (`Transport.layer`) the attempt timeout
 *   is enforced by the transport's timer, and the delivery deadline in the waits this module
 *   controls (the bulkhead queue, the rate-limit wait, the retry sleep, and the attempt, whose
 *   timeout is cut to what is left of the deadline): no fiber is forked to time anything. Over
 *   any other `HttpClient` (or under `TestClock`) the attempt's timeout forks the exchange into a
 *   fiber of its own, as `timeoutFail` documents.
 * - **No span when tracing is off.** With the tracer disabled (`Effect.withTracerEnabled(false)`,
 *   `Layer.setTracerEnabled(false)`; `fanout serve` does this when no exporter is configured) the
 *   delivery creates no span at all. With it on: a `fanout.deliver` span per delivery, a
 *   `fanout.attempt` span per attempt, and the attempt's W3C `traceparent` on the request.
 * - Metric handles are bound once per target (`Metrics.labelled`); the request body is built once
 *   per delivery and reused by its retries; the clock and the metric labels are read
 *   synchronously from the fiber.
 *
 * @since 0.1.0
 */
import type { HttpClient } from "@effect/platform"
import { Headers, HttpClientRequest } from "@effect/platform"
import type { Metric, MetricLabel } from "effect"
import {
  Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  ParseResult,
  Predicate,
  Random,
  Schema,
  Tracer
} from "effect"
import type * as Event from "./Event.js"
import { isLive } from "./internal/liveClock.js"
import { parseRetryAfter } from "./internal/retryAfter.js"
import { spanTrace } from "./internal/spanTrace.js"
import * as Metrics from "./Metrics.js"
import type * as Outcome from "./Outcome.js"
import * as Bulkhead from "./Resilience/Bulkhead.js"
import * as CircuitBreaker from "./Resilience/CircuitBreaker.js"
import type * as Policy from "./Resilience/Policy.js"
import * as RateLimit from "./Resilience/RateLimit.js"
import * as Retry from "./Resilience/Retry.js"
import * as Signing from "./Signing.js"
import type * as Target from "./Target.js"
import * as TargetError from "./TargetError.js"
import * as Transport from "./Transport.js"

// ---------------------------------------------------------------------------------------------
// What follows an attempt
// ---------------------------------------------------------------------------------------------

/**
 * What follows a failed attempt: another one at an instant, or the end (dead).
 *
 * @since 0.1.0
 * @category models
 */
export type Decision =
  | { readonly _tag: "RetryAt"; readonly at: number; readonly delay: number }
  | { readonly _tag: "Dead"; readonly reason: "Permanent" | "MaxAttempts" | "MaxElapsed" }

/**
 * Decides what follows a failed attempt, under the target's retry policy (`Retry.decide`):
 * `attempts` made so far, `elapsed` since the delivery began (ms), `now` the instant of the
 * decision, `random` the jitter draw (Effect's `Random`), `budget` the age limit (ms).
 *
 * @since 0.1.0
 * @category decisions
 */
export const decide = (
  policy: Policy.Policy,
  input: {
    readonly attempts: number
    readonly elapsed: number
    readonly now: number
    readonly error: TargetError.DeliveryError
    readonly random: number
    readonly budget?: number | undefined
  }
): Decision => {
  const decision = Retry.decide(policy.retry, input)
  return decision._tag === "GiveUp"
    ? { _tag: "Dead", reason: decision.reason }
    : { _tag: "RetryAt", at: input.now + decision.delay, delay: decision.delay }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

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

/** What a failed request build is, whatever the builder failed with. */
const buildFailure = (name: string, error: unknown): TargetError.PermanentError =>
  ParseResult.isParseError(error)
    ? decodeFailure(name, "Transform")(error)
    : error instanceof TargetError.PermanentError
    ? error
    // Outside the builder's declared errors (e.g. `HttpClientRequest.bodyJson`'s `HttpBodyError`
    // for a body that cannot be encoded): the request cannot be built, whatever the target says.
    : new TargetError.PermanentError({
      target: name,
      reason: "InvalidRequest",
      message: `${name}: the request could not be built: ${describe(error)}`
    })

/** A short text for an unexpected failure: its message, or its tag and reason (`HttpBodyError: JsonError: …`). */
const describe = (error: unknown): string => {
  if (Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== "") {
    return error.message
  }
  if (!Predicate.hasProperty(error, "_tag")) return String(error)
  const reason = Predicate.hasProperty(error, "reason") ? error.reason : undefined
  if (!Predicate.hasProperty(reason, "_tag")) return String(error._tag)
  const cause = Predicate.hasProperty(reason, "error") ? reason.error : undefined
  return `${String(error._tag)}: ${String(reason._tag)}${cause instanceof Error ? `: ${cause.message}` : ""}`
}

// A builder that throws, or whose effect dies, gives a PermanentError; a ParseError becomes one,
// and so does any other failure (the request cannot be built: ours, never the target's).
const buildWith = <In>(
  name: string,
  builder: Target.RequestBuilder<In>,
  input: In
): Effect.Effect<HttpClientRequest.HttpClientRequest, TargetError.PermanentError> =>
  Effect.suspend(() => {
    let built: ReturnType<Target.RequestBuilder<In>>
    try {
      built = builder(input)
    } catch (defect) {
      return Effect.fail(invalidRequest(name, defect))
    }
    if (!Effect.isEffect(built)) return Effect.succeed(built)
    return built.pipe(
      Effect.catchAllDefect((defect) => Effect.fail(invalidRequest(name, defect))),
      Effect.mapError((error: unknown) => buildFailure(name, error))
    )
  })

const textDecoder = new TextDecoder()

const parseJsonLoose = (body: string | undefined, contentType: string | undefined): unknown => {
  if (body === undefined || body.length === 0) return undefined
  if (contentType !== undefined && !contentType.includes("json")) return body
  try {
    return JSON.parse(body)
  } catch {
    return body
  }
}

/**
 * A transport failure as a delivery error. A request that cannot be sent (an invalid header
 * value, an unencodable body) is ours, not the target's: permanent, and it never counts toward
 * the breaker (`isBreakerFailure` ignores permanent errors). So is a defect while sending (an
 * `HttpClient` that throws on the request, e.g. in a `mapRequest`): no answer could fix it, and
 * left a defect it would end the attempt without a record (a durable delivery then waits for its
 * lease to run out, again and again).
 */
const transportError = (
  name: string,
  error: Transport.TransportError,
  onTimeout: () => TargetError.TimeoutError
): TargetError.DeliveryError => {
  switch (error.reason) {
    case "Timeout":
      return onTimeout()
    case "InvalidRequest":
      return new TargetError.PermanentError({
        target: name,
        reason: "InvalidRequest",
        message: `${name}: ${error.message}`
      })
    case "Network":
      return new TargetError.TransientError({
        target: name,
        reason: "Network",
        message: `${name}: ${error.code ?? error.message}`
      })
  }
}

const sendDefect = (name: string, defect: unknown) =>
  new TargetError.PermanentError({
    target: name,
    reason: "InvalidRequest",
    message: `${name}: the request could not be sent: ${defect instanceof Error ? defect.message : String(defect)}`
  })

/** Counts toward the breaker: the target itself looks unhealthy (not 4xx, not our own refusals, not a 429, not our deadline). */
const isBreakerFailure = (error: TargetError.DeliveryError): boolean =>
  (error._tag === "TransientError" && error.status !== 429) ||
  (error._tag === "TimeoutError" && error.scope === "attempt")

const isLocalRefusal = (error: TargetError.DeliveryError): boolean =>
  error._tag === "CircuitOpenError" || error._tag === "BulkheadRejectedError" || error._tag === "RateLimitedError"

/** The delivery's deadline ended it: like an interruption, not an attempt's result. */
const isDeadline = (error: TargetError.DeliveryError): boolean =>
  error._tag === "TimeoutError" && error.scope === "deadline"

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

const clockOf = (fiber: Fiber.RuntimeFiber<any, any>): Clock.Clock =>
  Context.get(fiber.currentDefaultServices, Clock.Clock)

/** Whether this fiber records spans (Effect's tracer switch). */
const tracingOn = (fiber: Fiber.RuntimeFiber<any, any>): boolean => fiber.getFiberRef(FiberRef.currentTracerEnabled)

/** The W3C `traceparent` of the fiber's current span, if any. */
const traceparentOf = (fiber: Fiber.RuntimeFiber<any, any>): string | undefined => {
  const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
  if (span._tag === "None") return undefined
  return `00-${span.value.traceId}-${span.value.spanId}-${span.value.sampled ? "01" : "00"}`
}

/** The URL for a span, without userinfo and query (which may hold secrets); undefined when it does not parse. */
const safeUrl = (raw: string): URL | undefined => {
  try {
    const url = new URL(raw)
    url.username = ""
    url.password = ""
    url.search = ""
    return url
  } catch {
    return undefined
  }
}

/** The longest delay `setTimeout` takes (Effect's live clock treats longer ones as never). */
const maxTimerMillis = 2 ** 31 - 1

/**
 * Waits for `fiber`'s exit, or gives `undefined` once `millis` have passed. Under the live
 * clock: one `Effect.async` that observes the fiber and holds a timer (no other fiber). Under
 * any other clock (`TestClock`): the fiber's `await` raced with `Effect.sleep`.
 */
const awaitWithin = <A, E>(
  fiber: Fiber.RuntimeFiber<A, E>,
  millis: number
): Effect.Effect<Exit.Exit<A, E> | undefined> =>
  Effect.clockWith((clock) =>
    isLive(clock) && millis <= maxTimerMillis
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
      : Effect.raceFirst(fiber.await, Effect.interruptible(Effect.as(Effect.sleep(Duration.millis(millis)), undefined)))
  )

/**
 * `Effect.timeoutFail`, but interruptible from outside. In effect 3.22 `Effect.timeout*` holds
 * off the caller's interruption until the effect or its timer ends (it waits for a race inside
 * an uninterruptible mask), which kept `all` mode from cancelling targets and scope close from
 * interrupting deliveries until their deadline. Here `self` runs in a fiber of its own: the
 * caller waits for it or for the timer, interruptibly; on timeout or on the caller's
 * interruption, `self` is interrupted and awaited (so `finishOnInterrupt` still holds).
 *
 * Used where no cheaper timer exists: an exchange over a generic `HttpClient`, a wait in the
 * bulkhead's queue. An infinite `millis` is no timeout.
 */
const timeoutFail = <A, E, E2>(
  self: Effect.Effect<A, E>,
  millis: number,
  onTimeout: () => E2
): Effect.Effect<A, E | E2> =>
  millis === Infinity ?
    self :
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.fork(restore(self)), (fiber) =>
        restore(awaitWithin(fiber, Math.max(0, millis))).pipe(
          Effect.onInterrupt(() => Fiber.interrupt(fiber)),
          Effect.flatMap((exit): Effect.Effect<A, E | E2> =>
            exit === undefined ? Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(onTimeout())) : exit
          )
        ))
    )

/** Forks `effect` so that interrupting the caller waits for it to finish instead of cutting it short. */
const finishOnInterrupt = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.flatMap(
    Effect.forkDaemon(effect),
    (fiber) => Effect.onInterrupt(Effect.flatten(fiber.await), () => fiber.await)
  )

/** What `runAttempts` gives on success. */
interface Attempted<X> {
  readonly attempts: number
  readonly durationMs: number
  readonly value: X
}

/** No deadline (a worker's single attempt: the store's age budget bounds the delivery). */
const never = Infinity

// ---------------------------------------------------------------------------------------------
// The run-time of a target
// ---------------------------------------------------------------------------------------------

/**
 * Builds the run-time of a target over a given `HttpClient` (what `Target.make`'s layer does).
 * On Fanout's own transport (`Transport.layer`), the exchange is `Transport.send` with the
 * attempt timeout given to the transport; over any other client, the same exchange through
 * `Transport.fromHttpClient` with the timeout forked (`timeoutFail`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRuntime = <P, A, PI>(
  name: string,
  options: Target.Options<P, A, PI>,
  policy: Policy.Policy,
  client: HttpClient.HttpClient
): Effect.Effect<Target.Runtime<A>> =>
  Effect.gen(function*() {
    const breaker = yield* CircuitBreaker.make(name, policy.circuitBreaker)
    const bulkhead = yield* Bulkhead.make(name, policy.bulkhead)
    const limiter = yield* RateLimit.make(name, policy.rateLimit)
    const transport = Transport.of(client)
    const lean = Transport.isLean(client)
    const decodePayload = options.accepts ? Schema.decodeUnknown(options.accepts) : undefined
    const decodeResponse = options.response ? Schema.decodeUnknown(options.response) : undefined
    const signingKeys = options.signingSecret !== undefined ? Signing.keyring(options.signingSecret) : undefined
    // Every secret past its `until`: signing goes on with the newest, and this is logged once.
    let warnedExpired = false
    const timeoutMs = Duration.toMillis(policy.timeout)
    const deadlineMs = Duration.toMillis(policy.deadline)
    const maxDelayMs = Duration.toMillis(policy.retry.maxDelay)
    const maxResponseBytes = policy.maxResponseBytes
    const latencyMetric = Metrics.labelled(Metrics.attemptLatency, "target", name)
    const retriesMetric = Metrics.labelled(Metrics.retries, "target", name)
    const inFlightMetric = Metrics.labelled(Metrics.inFlight, "target", name)
    // By role: a shadow's attempts and deliveries are counted apart (`role="shadow"`), so they never
    // weigh in a primary's alerts.
    const byRole = (metric: Metric.Metric.Counter<number>) => {
      const labelled = Metrics.labelled(metric, "target", name)
      const primary = byOutcome(labelled.tagged("role", "primary"))
      const shadow = byOutcome(labelled.tagged("role", "shadow"))
      return (outcome: string, labels: ReadonlyArray<MetricLabel.MetricLabel>, role: Target.Role = "primary") =>
        role === "shadow" ? shadow(outcome, labels) : primary(outcome, labels)
    }
    const countAttempt = byRole(Metrics.attempts)
    const countDelivery = byRole(Metrics.deliveries)
    const idempotencyKey = (event: Event.Any) => `${event.id}:${name}`
    const runTrace = spanTrace()
    const attemptTrace = spanTrace()

    const attemptTimedOut = () =>
      new TargetError.TimeoutError({
        target: name,
        scope: "attempt",
        timeout: timeoutMs,
        message: `${name}: no answer within ${timeoutMs} ms`
      })
    const deadlinePassed = () =>
      new TargetError.TimeoutError({
        target: name,
        scope: "deadline",
        timeout: deadlineMs,
        message: `${name}: delivery deadline of ${deadlineMs} ms passed`
      })

    /** Sleeps `millis`, unless the deadline comes first: then sleeps until it and fails. */
    const sleepBefore = (
      millis: number,
      deadlineAt: number,
      now: number
    ): Effect.Effect<void, TargetError.TimeoutError> => {
      const left = deadlineAt - now
      if (millis < left) return millis > 0 ? Effect.sleep(Duration.millis(millis)) : Effect.void
      return Effect.zipRight(Effect.sleep(Duration.millis(Math.max(0, left))), Effect.fail(deadlinePassed()))
    }

    const toEvent = (event: Event.Any): Effect.Effect<Event.Event<string, P>, TargetError.PermanentError> =>
      decodePayload === undefined
        ? Effect.succeed(event as Event.Event<string, P>)
        : decodePayload(event.payload).pipe(
          Effect.map((payload) => ({ ...event, payload })),
          Effect.mapError(decodeFailure(name, "Transform"))
        )

    const classify = (info: Target.ResponseInfo): Target.Classification =>
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

    // One exchange on the wire: send, read (or drop) the body, classify, decode. Its timeout is the
    // attempt's, cut to what is left of the deadline (then it fails as the deadline).
    const exchange = (
      request: HttpClientRequest.HttpClientRequest,
      key: string,
      decode: boolean,
      deadlineAt: number
    ): Effect.Effect<Target.Answer<any>, TargetError.DeliveryError> =>
      Effect.withFiberRuntime<Target.Answer<any>, TargetError.DeliveryError>((fiber) => {
        const clock = clockOf(fiber)
        const started = clock.unsafeCurrentTimeMillis()
        const left = deadlineAt - started
        const onTimeout = left < timeoutMs ? deadlinePassed : attemptTimedOut
        const limit = Math.min(left, timeoutMs)
        let req = HttpClientRequest.setHeader(request, "idempotency-key", key)
        let warn: Effect.Effect<void> | undefined
        if (signingKeys !== undefined) {
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
          const live = Signing.liveKeys(signingKeys, started)
          if (live.allExpired && !warnedExpired) {
            warnedExpired = true
            warn = Effect.logWarning(
              `${name}: every signing secret is past its "until"; signing with the newest until the configuration has a live one`
            ).pipe(Effect.annotateLogs({ target: name }))
          }
          req = HttpClientRequest.setHeaders(req, Signing.sign(live.keys, key, Math.floor(started / 1000), bytes))
        }
        const options = { timeoutMs: lean ? limit : Infinity, maxResponseBytes }
        // The generic client opens its own client span and propagates it; on the lean transport
        // (with tracing on) Delivery opens the same client span and sends its traceparent.
        const sent = Effect.catchAllDefect(
          Effect.mapError(
            lean && tracingOn(fiber) ? clientSpan(req, options) : transport.send(req, options),
            (error) => transportError(name, error, onTimeout)
          ),
          (defect) => Effect.fail(sendDefect(name, defect))
        )
        const answered = Effect.flatMap(
          sent,
          (response): Effect.Effect<Target.Answer<any>, TargetError.DeliveryError> => {
            const { headers, status } = response
            const body = response.body === undefined ? undefined : textDecoder.decode(response.body)
            const verdict = classify({ status, headers, body })
            if (verdict !== "success") return refused(clock, status, headers, body, verdict)
            const loose = parseJsonLoose(body, headers["content-type"])
            const answer = (decoded: unknown): Target.Answer<any> => {
              latencyMetric.unsafeUpdate((clock.unsafeCurrentTimeMillis() - started) / 1000, metricLabels(fiber))
              return { status, response: decoded, body: loose }
            }
            return decode && decodeResponse !== undefined
              ? Effect.map(Effect.mapError(decodeResponse(loose), decodeFailure(name, "InvalidResponse")), answer)
              : Effect.succeed(answer(loose))
          }
        )
        const run = limit <= 0 ? Effect.fail(onTimeout()) : lean ? answered : timeoutFail(answered, limit, onTimeout)
        return warn === undefined ? run : Effect.zipRight(warn, run)
      })

    // The request as a client span (only with tracing on): the attributes the platform's client
    // records (method, URL, request headers redacted by `Headers.currentRedactedNames`, status),
    // and the span's W3C `traceparent` on the request.
    const clientSpan = (request: HttpClientRequest.HttpClientRequest, sendOptions: Transport.SendOptions) =>
      Effect.withFiberRuntime<Transport.Response, Transport.TransportError>((outer) => {
        const attributes: Record<string, unknown> = { "http.request.method": request.method }
        const url = safeUrl(request.url)
        if (url !== undefined) {
          attributes["server.address"] = url.origin
          attributes["url.full"] = url.toString()
          attributes["url.path"] = url.pathname
          attributes["url.scheme"] = url.protocol.slice(0, -1)
        }
        const headers = Headers.redact(request.headers, outer.getFiberRef(Headers.currentRedactedNames))
        for (const key in headers) attributes[`http.request.header.${key}`] = String(headers[key])
        return Effect.withSpan(
          Effect.withFiberRuntime<Transport.Response, Transport.TransportError>((fiber) => {
            const traceparent = traceparentOf(fiber)
            const traced = traceparent === undefined
              ? request
              : HttpClientRequest.setHeader(request, "traceparent", traceparent)
            return Effect.tap(
              transport.send(traced, sendOptions),
              (response) => Effect.annotateCurrentSpan("http.response.status_code", response.status)
            )
          }),
          `http.client ${request.method}`,
          { kind: "client", attributes }
        )
      })

    // Counts the attempt in flight (the gauge), from its start to its end.
    const inFlight = <X>(effect: Effect.Effect<X, TargetError.DeliveryError>) =>
      Effect.withFiberRuntime<X, TargetError.DeliveryError>((fiber) => {
        const labels = metricLabels(fiber)
        inFlightMetric.unsafeModify(1, labels)
        return Effect.ensuring(effect, Effect.sync(() => inFlightMetric.unsafeModify(-1, labels)))
      })

    // A rate-limit token, waited for no longer than the deadline allows.
    const token = (deadlineAt: number): Effect.Effect<void, TargetError.DeliveryError> =>
      deadlineAt === never ?
        limiter.take :
        Effect.flatMap(limiter.reserve, (wait) =>
          wait === 0
            ? Effect.void
            : Effect.clockWith((clock) => sleepBefore(wait, deadlineAt, clock.unsafeCurrentTimeMillis())))

    // A wait in the bulkhead's queue, no longer than the deadline allows.
    const queueUntil =
      (deadlineAt: number) => <X, E>(wait: Effect.Effect<X, E>): Effect.Effect<X, E | TargetError.TimeoutError> =>
        deadlineAt === never
          ? wait
          : Effect.clockWith((clock) => timeoutFail(wait, deadlineAt - clock.unsafeCurrentTimeMillis(), deadlinePassed))

    // A bulkhead permit, then a rate-limit token, then breaker admission right before the
    // exchange: admitted first, a request that waited in the queue or for a token could go
    // through a breaker that opened meanwhile.
    const guardedSlow = <X>(
      effect: Effect.Effect<X, TargetError.DeliveryError>,
      protect: boolean,
      deadlineAt: number
    ) =>
      bulkhead.run(
        Effect.zipRight(
          token(deadlineAt),
          breaker.run(inFlight(protect ? finishOnInterrupt(effect) : effect), isBreakerFailure)
        ),
        queueUntil(deadlineAt)
      )

    // The same three gates as plain calls when each lets the call through at once (a free permit
    // with nobody waiting, a free token, a closed breaker: the usual case), with one finalizer for
    // all of them; any gate that would wait, refuse or probe sends the call the `guardedSlow` way.
    const guarded = <X>(effect: Effect.Effect<X, TargetError.DeliveryError>, protect: boolean, deadlineAt: number) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.withFiberRuntime<X, TargetError.DeliveryError>((fiber) => {
          if (!bulkhead.tryAcquireNow()) return restore(guardedSlow(effect, protect, deadlineAt))
          const clock = clockOf(fiber)
          if (!breaker.closedNow() || !limiter.tryTakeNow(clock.unsafeCurrentTimeMillis())) {
            bulkhead.releaseNow()
            return restore(guardedSlow(effect, protect, deadlineAt))
          }
          const labels = metricLabels(fiber)
          inFlightMetric.unsafeModify(1, labels)
          return Effect.matchCauseEffect(restore(protect ? finishOnInterrupt(effect) : effect), {
            onFailure: (cause) => {
              inFlightMetric.unsafeModify(-1, labels)
              bulkhead.releaseNow()
              const outcome = cause._tag === "Fail"
                ? isBreakerFailure(cause.error) ? "failure" : "ignored"
                : "ignored"
              const recorded = breaker.recordClosed(outcome, clock.unsafeCurrentTimeMillis())
              return recorded === undefined
                ? Effect.failCause(cause)
                : Effect.zipRight(recorded, Effect.failCause(cause))
            },
            onSuccess: (value) => {
              inFlightMetric.unsafeModify(-1, labels)
              bulkhead.releaseNow()
              const recorded = breaker.recordClosed("success", clock.unsafeCurrentTimeMillis())
              return recorded === undefined ? Effect.succeed(value) : Effect.as(recorded, value)
            }
          })
        })
      )

    // The attempts of one delivery: the first, then retries as `decide` says, all under the
    // deadline (enforced in each wait, see the module's documentation).
    const runAttempts = <X>(
      attemptOnce: (n: number, deadlineAt: number) => Effect.Effect<X, TargetError.DeliveryError>,
      span: string,
      key: string,
      role: Target.Role = "primary"
    ): Effect.Effect<Attempted<X>, Outcome.Failed | Outcome.Skipped> =>
      Effect.withFiberRuntime<Attempted<X>, Outcome.Failed | Outcome.Skipped>((fiber) => {
        const traced = tracingOn(fiber)
        const clock = clockOf(fiber)
        const labels = metricLabels(fiber)
        const start = clock.unsafeCurrentTimeMillis()
        const deadlineAt = start + deadlineMs
        let attempts = 0
        let sent = 0
        const one = Effect.suspend(() => {
          attempts++
          const n = attempts
          const attempt = Effect.matchCauseEffect(attemptOnce(n, deadlineAt), {
            onFailure: (cause) => {
              const failure = Cause.failureOption(cause)
              if (failure._tag === "Some" && !isDeadline(failure.value)) {
                if (!isLocalRefusal(failure.value)) sent++
                countAttempt(TargetError.label(failure.value), labels, role)
              }
              return Effect.failCause(cause)
            },
            onSuccess: (value) => {
              sent++
              countAttempt("success", labels, role)
              return Effect.succeed(value)
            }
          })
          return traced
            ? Effect.withSpan(attempt, "fanout.attempt", {
              attributes: { "fanout.target": name, "fanout.attempt": n },
              captureStackTrace: attemptTrace
            })
            : attempt
        })
        const retry = (error: TargetError.DeliveryError): Effect.Effect<X, TargetError.DeliveryError> => {
          if (isDeadline(error)) return Effect.fail(error)
          const now = clock.unsafeCurrentTimeMillis()
          return Effect.flatMap(Random.next, (random) => {
            const decision = decide(policy, { attempts, elapsed: now - start, now, error, random })
            if (decision._tag === "Dead") return Effect.fail(error)
            return Effect.zipRight(sleepBefore(decision.delay, deadlineAt, now), loop)
          })
        }
        const loop: Effect.Effect<X, TargetError.DeliveryError> = Effect.catchAll(one, retry)
        const run = Effect.matchEffect(loop, {
          onSuccess: (value) => {
            const durationMs = clock.unsafeCurrentTimeMillis() - start
            if (attempts > 1) retriesMetric.unsafeUpdate(attempts - 1, labels)
            countDelivery("delivered", labels, role)
            return Effect.succeed({ attempts, durationMs, value })
          },
          onFailure: (error) => {
            const durationMs = clock.unsafeCurrentTimeMillis() - start
            if (attempts > 1) retriesMetric.unsafeUpdate(attempts - 1, labels)
            const outcome = sent === 0 && isLocalRefusal(error) ? "Skipped" as const : "Failed" as const
            countDelivery(outcome === "Skipped" ? "skipped" : "failed", labels, role)
            return Effect.fail({ _tag: outcome, target: name, attempts, durationMs, error })
          }
        })
        return traced
          ? Effect.withSpan(run, span, {
            attributes: { "fanout.target": name, "fanout.idempotency_key": key },
            captureStackTrace: runTrace
          })
          : run
      })

    const prepare = (event: Event.Any) =>
      Effect.flatMap(toEvent(event), (typed) => buildWith(name, options.request, typed))

    const attempt = (event: Event.Any, _n: number, key?: string) =>
      Effect.flatMap(
        prepare(event),
        (request) => guarded(exchange(request, key ?? idempotencyKey(event), true, never), false, never)
      )

    const deliver = (
      event: Event.Any,
      hooks: Target.DeliverOptions<A> = {}
    ): Effect.Effect<Outcome.Delivered<A>, Outcome.Failed | Outcome.Skipped> => {
      const key = idempotencyKey(event)
      const protect = hooks.finishInFlight === true
      const onDelivered = hooks.onDelivered
      const role = hooks.role ?? "primary"
      const delivered = (result: Attempted<Target.Answer<any>>): Outcome.Delivered<A> => ({
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
            countAttempt(TargetError.label(error), metricLabels(fiber), role)
            return Effect.fail({ _tag: "Failed", target: name, attempts: 0, durationMs: 0, error })
          }),
        onSuccess: (request) =>
          onDelivered === undefined
            ? Effect.map(
              runAttempts(
                (_, deadlineAt) => guarded(exchange(request, key, true, deadlineAt), protect, deadlineAt),
                "fanout.deliver",
                key,
                role
              ),
              delivered
            )
            : Effect.flatMap(Clock.currentTimeMillis, (started) =>
              Effect.map(
                runAttempts(
                  (n, deadlineAt) =>
                    guarded(
                      // A protected attempt runs to its own timeout (its outcome decides the saga).
                      Effect.tap(exchange(request, key, true, protect ? never : deadlineAt), (answer) =>
                        Effect.flatMap(Clock.currentTimeMillis, (now) =>
                          onDelivered({
                            _tag: "Delivered",
                            target: name,
                            attempts: n,
                            status: answer.status,
                            durationMs: now - started,
                            response: answer.response as A
                          }))),
                      protect,
                      deadlineAt
                    ),
                  "fanout.deliver",
                  key,
                  role
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
          (_, deadlineAt) =>
            bulkhead.run(
              Effect.zipRight(token(deadlineAt), exchange(request, key, false, deadlineAt)),
              queueUntil(deadlineAt)
            ),
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
    } satisfies Target.Runtime<A>
  })
