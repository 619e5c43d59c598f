/**
 * Faults a {@link TestTarget} can inject, and how they are chosen for each request: a
 * {@link FaultScript} (the 1st, 2nd, … request carrying the same idempotency key gets the
 * 1st, 2nd, … step), a seeded {@link RandomFaults} model, or any function of the request.
 *
 * Steps are plain, JSON-printable data, so a fast-check counterexample reads as the exact
 * script that broke a property.
 *
 * @since 0.1.0
 */

/**
 * How a `Retry-After` header is written: `"seconds"` (`Retry-After: 2`) or `"http-date"`
 * (`Retry-After: Wed, 21 Oct 2015 07:28:02 GMT`). HTTP-dates have a one-second precision: the
 * date is rounded up to the next whole second of the target's clock, so the wait it asks for is
 * between `seconds` and `seconds + 1`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryAfter {
  readonly seconds: number
  readonly format: "seconds" | "http-date"
}

/**
 * Answer with an HTTP status after `latency` milliseconds (a 2xx, a 5xx, a 429, a 4xx…).
 * `body` (JSON-encoded unless it is a string) replaces the target's default body.
 *
 * @since 0.1.0
 * @category models
 */
export interface Respond {
  readonly _tag: "Respond"
  readonly status: number
  readonly latency: number
  readonly retryAfter?: RetryAfter | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly body?: unknown
}

/**
 * Drop the connection after `latency` milliseconds without answering (a connection reset).
 *
 * @since 0.1.0
 * @category models
 */
export interface Reset {
  readonly _tag: "Reset"
  readonly latency: number
}

/**
 * Never answer: the request stays in flight until the client gives up (its timeout).
 *
 * @since 0.1.0
 * @category models
 */
export interface Hang {
  readonly _tag: "Hang"
}

/**
 * What a target does with one request.
 *
 * @since 0.1.0
 * @category models
 */
export type Step = Respond | Reset | Hang

/**
 * Steps applied per idempotency key: the n-th request with a key gets `steps[n-1]`. After the
 * script, `then: "ok"` answers 200 and `then: "repeat"` repeats the last step (an empty script
 * always answers 200).
 *
 * @since 0.1.0
 * @category models
 */
export interface FaultScript {
  readonly _tag: "FaultScript"
  readonly steps: ReadonlyArray<Step>
  readonly then: "ok" | "repeat"
}

/**
 * A seeded probability model: each request independently fails with the given probabilities
 * (their sum must be at most 1; the rest answers 200), after a latency drawn uniformly in
 * `latency` (milliseconds). The same seed and the same request order give the same faults.
 *
 * @since 0.1.0
 * @category models
 */
export interface RandomFaults {
  readonly _tag: "RandomFaults"
  readonly seed: number
  /** 503 (transient). */
  readonly serverError: number
  /** 429 with `Retry-After: retryAfterSeconds`, as seconds or an HTTP-date (50/50). */
  readonly rateLimited: number
  /** 400 (permanent). */
  readonly clientError: number
  /** Connection reset. */
  readonly reset: number
  /** Never answers. */
  readonly hang: number
  readonly latency: readonly [min: number, max: number]
  readonly retryAfterSeconds: number
}

/**
 * What a request looks like when a target chooses its step.
 *
 * @since 0.1.0
 * @category models
 */
export interface Incoming {
  readonly method: string
  readonly url: string
  readonly path: string
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  /** The idempotency key (`idempotency-key` header), if any. */
  readonly key: string | undefined
  /** 1 for the first request with this key (or, without a key, with this method and path). */
  readonly attempt: number
  /** The target's clock when the request arrived, in milliseconds. */
  readonly receivedAt: number
}

/**
 * Everything a {@link TestTarget} accepts as fault behaviour: a script, a plain array of
 * steps (a script that answers 200 after it), a random model, or a function of the request.
 *
 * @since 0.1.0
 * @category models
 */
export type Faults = FaultScript | RandomFaults | ReadonlyArray<Step> | ((request: Incoming) => Step)

const checkLatency = (latency: number | undefined): number => {
  const value = latency ?? 0
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`fault: latency must be >= 0 ms, got ${value}`)
  return value
}

const checkStatus = (status: number): number => {
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new RangeError(`fault: status must be an integer in 200..599, got ${status}`)
  }
  return status
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RespondOptions {
  readonly latency?: number
  readonly retryAfter?: RetryAfter
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: unknown
}

/**
 * Answers with `status` (200 by default).
 *
 * @since 0.1.0
 * @category constructors
 */
export const ok = (options: RespondOptions & { readonly status?: number } = {}): Respond =>
  respond(options.status ?? 200, options)

/**
 * Answers with any status: `status(503)`, `status(400)`, `status(503, { retryAfter: { seconds: 1, format: "seconds" } })`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const status = (code: number, options: RespondOptions = {}): Respond => respond(code, options)

const respond = (code: number, options: RespondOptions): Respond => ({
  _tag: "Respond",
  status: checkStatus(code),
  latency: checkLatency(options.latency),
  ...(options.retryAfter !== undefined ? { retryAfter: options.retryAfter } : {}),
  ...(options.headers !== undefined ? { headers: options.headers } : {}),
  ...(options.body !== undefined ? { body: options.body } : {})
})

/**
 * A 503 (transient) answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unavailable = (options: RespondOptions = {}): Respond => respond(503, options)

/**
 * A 429 asking the client to wait `seconds`, as delta-seconds (default) or as an HTTP-date.
 *
 * @since 0.1.0
 * @category constructors
 */
export const rateLimited = (
  seconds: number,
  options: { readonly format?: "seconds" | "http-date"; readonly latency?: number } = {}
): Respond => {
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new RangeError(`fault: Retry-After must be >= 0 s, got ${seconds}`)
  }
  return respond(429, {
    retryAfter: { seconds, format: options.format ?? "seconds" },
    ...(options.latency !== undefined ? { latency: options.latency } : {})
  })
}

/**
 * A connection reset after `latency` milliseconds (0 by default).
 *
 * @since 0.1.0
 * @category constructors
 */
export const reset = (options: { readonly latency?: number } = {}): Reset => ({
  _tag: "Reset",
  latency: checkLatency(options.latency)
})

/**
 * A request that is never answered.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hang: Hang = { _tag: "Hang" }

/**
 * The same step, `latency` milliseconds later: `delayed(5_000, ok())` is a slow success, one
 * that answers after a policy timeout of 2 seconds has already given up.
 *
 * @since 0.1.0
 * @category combinators
 */
export const delayed = (latency: number, step: Respond | Reset): Respond | Reset => ({
  ...step,
  latency: checkLatency(latency)
})

/**
 * A fault script: `script([unavailable(), reset(), ok()])`, `script([status(500)], { then: "repeat" })`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const script = (
  steps: ReadonlyArray<Step>,
  options: { readonly then?: "ok" | "repeat" } = {}
): FaultScript => ({ _tag: "FaultScript", steps, then: options.then ?? "ok" })

/**
 * A seeded random fault model. Unset probabilities are 0; latency defaults to 0.
 *
 * @since 0.1.0
 * @category constructors
 */
export const random = (options: {
  readonly seed: number
  readonly serverError?: number
  readonly rateLimited?: number
  readonly clientError?: number
  readonly reset?: number
  readonly hang?: number
  readonly latency?: readonly [min: number, max: number]
  readonly retryAfterSeconds?: number
}): RandomFaults => {
  const model: RandomFaults = {
    _tag: "RandomFaults",
    seed: options.seed,
    serverError: options.serverError ?? 0,
    rateLimited: options.rateLimited ?? 0,
    clientError: options.clientError ?? 0,
    reset: options.reset ?? 0,
    hang: options.hang ?? 0,
    latency: options.latency ?? [0, 0],
    retryAfterSeconds: options.retryAfterSeconds ?? 1
  }
  const probabilities = [model.serverError, model.rateLimited, model.clientError, model.reset, model.hang]
  if (probabilities.some((p) => !(p >= 0 && p <= 1)) || probabilities.reduce((a, b) => a + b, 0) > 1 + 1e-9) {
    throw new RangeError("fault: probabilities must each be in [0, 1] and sum to at most 1")
  }
  checkLatency(model.latency[0])
  if (!(model.latency[1] >= model.latency[0])) {
    throw new RangeError("fault: latency range must be [min, max] with min <= max")
  }
  return model
}

/**
 * A short human description of a step (`"503 after 20 ms"`, `"reset"`, `"hang"`).
 *
 * @since 0.1.0
 * @category getters
 */
export const describe = (step: Step): string => {
  switch (step._tag) {
    case "Hang":
      return "hang"
    case "Reset":
      return step.latency > 0 ? `reset after ${step.latency} ms` : "reset"
    case "Respond": {
      const wait = step.retryAfter ? ` (Retry-After ${step.retryAfter.seconds} s as ${step.retryAfter.format})` : ""
      return `${step.status}${wait}${step.latency > 0 ? ` after ${step.latency} ms` : ""}`
    }
  }
}

/**
 * The step a script gives to the `attempt`-th request with a key (from 1).
 *
 * @since 0.1.0
 * @category getters
 */
export const scriptStep = (faults: FaultScript, attempt: number): Step => {
  const { steps } = faults
  if (attempt <= steps.length) return steps[attempt - 1]!
  if (faults.then === "repeat" && steps.length > 0) return steps[steps.length - 1]!
  return okStep
}

const okStep: Respond = { _tag: "Respond", status: 200, latency: 0 }

/**
 * A deterministic pseudo-random generator (mulberry32): a function giving numbers in [0, 1).
 *
 * @since 0.1.0
 * @category constructors
 */
export const prng = (seed: number): () => number => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Turns any {@link Faults} into the function that picks each request's step. A random model
 * gets its own generator, seeded once: call this once per target.
 *
 * @since 0.1.0
 * @category constructors
 */
export const chooser = (faults: Faults | undefined): (request: Incoming) => Step => {
  if (faults === undefined) return () => okStep
  if (typeof faults === "function") return faults
  if (Array.isArray(faults)) {
    const asScript = script(faults as ReadonlyArray<Step>)
    return (request) => scriptStep(asScript, request.attempt)
  }
  const model = faults as FaultScript | RandomFaults
  if (model._tag === "FaultScript") return (request) => scriptStep(model, request.attempt)
  const next = prng(model.seed)
  return () => {
    const u = next()
    const [min, max] = model.latency
    const latency = Math.round(min + (max - min) * next())
    let edge = model.serverError
    if (u < edge) return { _tag: "Respond", status: 503, latency }
    edge += model.rateLimited
    if (u < edge) {
      return {
        _tag: "Respond",
        status: 429,
        latency,
        retryAfter: { seconds: model.retryAfterSeconds, format: next() < 0.5 ? "seconds" : "http-date" }
      }
    }
    edge += model.clientError
    if (u < edge) return { _tag: "Respond", status: 400, latency }
    edge += model.reset
    if (u < edge) return { _tag: "Reset", latency }
    edge += model.hang
    if (u < edge) return hang
    return { _tag: "Respond", status: 200, latency }
  }
}
