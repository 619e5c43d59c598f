/**
 * A scriptable fake downstream API. A `TestTarget` decides what to do with each request (see
 * {@link Fault}), records every request it receives in a ledger, and counts how many are in
 * flight at once. It is served two ways, with the same semantics:
 *
 * - {@link layer}: a simulated `HttpClient` that dispatches by URL origin
 *   (`http://<name>.test`) to TestTargets, with latency as `Effect.sleep`, so a whole fan-out
 *   runs deterministically under `TestClock`;
 * - {@link serve}: a real HTTP server on 127.0.0.1 (port 0), closed with its scope.
 *
 * @since 0.1.0
 */
import { HttpClient, HttpClientError, HttpClientResponse } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import { Chunk, Clock, Effect, Layer, Stream } from "effect"
import * as Fault from "./Fault.js"

/**
 * What became of a request: still waiting for its answer (`pending`), `answered`, `reset`
 * by the target, or `aborted` by the client before any answer (its timeout, an interruption).
 *
 * @since 0.1.0
 * @category models
 */
export type Result = "pending" | "answered" | "reset" | "aborted"

/**
 * One request as the target received it (a snapshot: read the ledger again for later news).
 *
 * @since 0.1.0
 * @category models
 */
export interface Received extends Fault.Incoming {
  readonly target: string
  /** Arrival order at this target, from 1. */
  readonly seq: number
  /** Arrival order across every TestTarget of the process: compares arrivals at different targets. */
  readonly order: number
  /** The W3C `traceparent` header, if any. */
  readonly traceparent: string | undefined
  /** The step the target chose for it. */
  readonly step: Fault.Step
  readonly result: Result
  /** The status it was answered with (when `result` is `answered`). */
  readonly status: number | undefined
  /** When it was answered, reset or aborted (target clock, milliseconds). */
  readonly completedAt: number | undefined
  /** Global order of its completion, comparable with {@link Received.order}. */
  readonly completedOrder: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly received: number
  readonly inFlight: number
  /** The most requests this target ever had in flight at once. */
  readonly maxInFlight: number
  readonly answered: number
  readonly resets: number
  readonly aborted: number
}

/**
 * The answer a target gives (status, lower-cased headers, body text).
 *
 * @since 0.1.0
 * @category models
 */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/**
 * One request being served. `step` is what to do; the transport calls exactly one of
 * `respond`, `reset` or `abort` when it is over (later calls are ignored).
 *
 * @since 0.1.0
 * @category models
 */
export interface Exchange {
  readonly received: Received
  readonly step: Fault.Step
  /** Marks the request answered now and gives the answer to write. */
  readonly respond: (now: number) => Answer
  readonly reset: (now: number) => void
  readonly abort: (now: number) => void
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Faults to inject; default: always 200. */
  readonly faults?: Fault.Faults
  /** The body of a 2xx answer whose step has none (JSON-encoded unless a string). Default `{ ok, target, key, attempt, seq }`. */
  readonly body?: (request: Fault.Incoming & { readonly seq: number }) => unknown
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TestTarget {
  readonly name: string
  /** Its address on the simulated client: `http://<name>.test` (see {@link urlOf}). */
  readonly url: string
  /** Every request received so far, in arrival order. */
  readonly ledger: ReadonlyArray<Received>
  readonly stats: Stats
  /** The requests that carried this idempotency key, in order. */
  readonly requestsFor: (key: string) => ReadonlyArray<Received>
  /** The distinct idempotency keys received, in first-arrival order. */
  readonly keys: ReadonlyArray<string>
  /**
   * Takes in a request and chooses its step: what a transport calls (the simulated client and
   * {@link serve} do; call it to serve a TestTarget over any other transport).
   */
  readonly receive: (request: {
    readonly method: string
    readonly url: string
    readonly headers: Readonly<Record<string, string>>
    readonly body: string
    readonly receivedAt: number
  }) => Exchange
}

let globalOrder = 0

/**
 * The simulated base URL of a target name: `http://<name>.test` (lower-cased, as URLs are).
 * Target declarations can use it before any TestTarget exists.
 *
 * @since 0.1.0
 * @category constructors
 */
export const urlOf = (name: string): string => `http://${name.toLowerCase()}.test`

const nameRule = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/

type MutableReceived = {
  -readonly [K in keyof Received]: Received[K]
}

/**
 * A new TestTarget with an empty ledger.
 *
 * @example
 * ```ts
 * const inventory = TestTarget.make("inventory", {
 *   faults: Fault.script([Fault.unavailable(), Fault.rateLimited(2, { format: "http-date" }), Fault.ok()])
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (name: string, options: Options = {}): TestTarget => {
  if (!nameRule.test(name)) {
    throw new TypeError(
      `TestTarget name must be a host label ([A-Za-z0-9_-], 1-63 characters), got ${JSON.stringify(name)}`
    )
  }
  const choose = Fault.chooser(options.faults)
  const entries: Array<MutableReceived> = []
  const byKey = new Map<string, Array<MutableReceived>>()
  let inFlight = 0
  let maxInFlight = 0
  let answered = 0
  let resets = 0
  let aborted = 0

  const defaultBody = (request: Fault.Incoming & { readonly seq: number }): unknown => ({
    ok: true,
    target: name,
    key: request.key ?? null,
    attempt: request.attempt,
    seq: request.seq
  })
  const bodyOf = options.body ?? defaultBody

  const receive: TestTarget["receive"] = (request) => {
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = v
    const key = headers["idempotency-key"]
    const parsed = new URL(request.url)
    const method = request.method.toUpperCase()
    const bucket = key ?? `${method} ${parsed.pathname}`
    let previous = byKey.get(bucket)
    if (previous === undefined) {
      previous = []
      byKey.set(bucket, previous)
    }
    const incoming: Fault.Incoming = {
      method,
      url: request.url,
      path: parsed.pathname + parsed.search,
      headers,
      body: request.body,
      key,
      attempt: previous.length + 1,
      receivedAt: request.receivedAt
    }
    const step = choose(incoming)
    const entry: MutableReceived = {
      ...incoming,
      target: name,
      seq: entries.length + 1,
      order: ++globalOrder,
      traceparent: headers["traceparent"],
      step,
      result: "pending",
      status: undefined,
      completedAt: undefined,
      completedOrder: undefined
    }
    entries.push(entry)
    previous.push(entry)
    inFlight++
    if (inFlight > maxInFlight) maxInFlight = inFlight

    const finish = (result: Exclude<Result, "pending">, now: number): boolean => {
      if (entry.result !== "pending") return false
      entry.result = result
      entry.completedAt = now
      entry.completedOrder = ++globalOrder
      inFlight--
      if (result === "answered") answered++
      else if (result === "reset") resets++
      else aborted++
      return true
    }

    return {
      received: { ...entry },
      step,
      respond: (now) => {
        const answer = render(step, entry, now, bodyOf)
        if (finish("answered", now)) entry.status = answer.status
        return answer
      },
      reset: (now) => {
        finish("reset", now)
      },
      abort: (now) => {
        finish("aborted", now)
      }
    }
  }

  return {
    name,
    url: urlOf(name),
    get ledger() {
      return entries.map((entry) => ({ ...entry }))
    },
    get stats() {
      return { received: entries.length, inFlight, maxInFlight, answered, resets, aborted }
    },
    requestsFor: (key) => (byKey.get(key) ?? []).map((entry) => ({ ...entry })),
    get keys() {
      return entries.flatMap((entry) => entry.key !== undefined && entry.attempt === 1 ? [entry.key] : [])
    },
    receive
  }
}

const noBodyStatus = (status: number) => status === 204 || status === 205 || status === 304

const render = (
  step: Fault.Step,
  entry: Fault.Incoming & { readonly seq: number },
  now: number,
  bodyOf: (request: Fault.Incoming & { readonly seq: number }) => unknown
): Answer => {
  const respond: Fault.Respond = step._tag === "Respond" ? step : { _tag: "Respond", status: 200, latency: 0 }
  const headers: Record<string, string> = {}
  let body = ""
  if (!noBodyStatus(respond.status)) {
    const value = respond.body !== undefined
      ? respond.body
      : respond.status >= 200 && respond.status < 300
      ? bodyOf(entry)
      : { error: `injected ${respond.status}`, attempt: entry.attempt }
    if (typeof value === "string") {
      body = value
      headers["content-type"] = "text/plain; charset=utf-8"
    } else {
      body = JSON.stringify(value) ?? ""
      headers["content-type"] = "application/json"
    }
  }
  if (respond.retryAfter !== undefined) {
    headers["retry-after"] = respond.retryAfter.format === "seconds"
      ? String(respond.retryAfter.seconds)
      : new Date(Math.ceil((now + respond.retryAfter.seconds * 1000) / 1000) * 1000).toUTCString()
  }
  for (const [k, v] of Object.entries(respond.headers ?? {})) headers[k.toLowerCase()] = v
  headers["content-length"] = String(Buffer.byteLength(body))
  return { status: respond.status, headers, body }
}

const decoder = new TextDecoder()

const requestBody = (request: HttpClientRequest.HttpClientRequest): Effect.Effect<string> => {
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return Effect.succeed("")
    case "Uint8Array":
      return Effect.succeed(decoder.decode(body.body))
    case "Raw":
      return Effect.succeed(
        typeof body.body === "string"
          ? body.body
          : body.body instanceof Uint8Array
          ? decoder.decode(body.body)
          : String(body.body)
      )
    case "FormData":
      return Effect.succeed("[form-data]")
    case "Stream":
      return Stream.runCollect(body.stream).pipe(
        Effect.map((chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)).toString("utf8")),
        Effect.orElseSucceed(() => "[unreadable stream]")
      )
  }
}

const transportFailure = (request: HttpClientRequest.HttpClientRequest, code: string, message: string) =>
  new HttpClientError.RequestError({
    request,
    reason: "Transport",
    cause: Object.assign(new Error(message), { code }),
    description: message
  })

/**
 * A simulated `HttpClient` over TestTargets: a request to `http://<name>.test/...` is served
 * by the TestTarget named `name` (in this process, without sockets); any other origin fails
 * like a refused connection. Latency is `Effect.sleep` (exact under `TestClock`); a reset is
 * a transport `RequestError` (reason `"Transport"`, code `ECONNRESET`); a hang never answers
 * (until interrupted, for example by the policy's timeout).
 *
 * @since 0.1.0
 * @category constructors
 */
export const client = (targets: Iterable<TestTarget>): HttpClient.HttpClient => {
  const byOrigin = new Map<string, TestTarget>()
  for (const target of targets) {
    const origin = new URL(target.url).origin
    if (byOrigin.has(origin)) throw new TypeError(`TestTarget.client: two targets at ${origin}`)
    byOrigin.set(origin, target)
  }
  return HttpClient.make((request, url) =>
    Effect.gen(function*() {
      const target = byOrigin.get(url.origin)
      if (target === undefined) {
        return yield* transportFailure(request, "ECONNREFUSED", `connect ECONNREFUSED ${url.host}`)
      }
      const body = yield* requestBody(request)
      const exchange = target.receive({
        method: request.method,
        url: url.toString(),
        headers: request.headers,
        body,
        receivedAt: yield* Clock.currentTimeMillis
      })
      const step = exchange.step
      const serve = Effect.gen(function*() {
        if (step._tag === "Hang") return yield* Effect.never
        if (step.latency > 0) yield* Effect.sleep(step.latency)
        const now = yield* Clock.currentTimeMillis
        if (step._tag === "Reset") {
          exchange.reset(now)
          return yield* transportFailure(request, "ECONNRESET", "socket hang up")
        }
        const answer = exchange.respond(now)
        return HttpClientResponse.fromWeb(
          request,
          new Response(noBodyStatus(answer.status) ? null : answer.body, {
            status: answer.status,
            headers: answer.headers
          })
        )
      })
      return yield* serve.pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => exchange.abort(now)))
        )
      )
    })
  )
}

/**
 * The simulated client as the `HttpClient` layer that target layers need.
 *
 * @example
 * ```ts
 * const Live = Layer.mergeAll(Inventory.layer, Notify.layer).pipe(Layer.provide(TestTarget.layer(inventory, notify)))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (...targets: ReadonlyArray<TestTarget>): Layer.Layer<HttpClient.HttpClient> =>
  Layer.sync(HttpClient.HttpClient, () => client(targets))

export {
  /**
   * Serves a TestTarget on a real loopback HTTP server (127.0.0.1, port 0) for the scope's
   * life: same fault semantics as the simulated client, with real sockets (a reset destroys
   * the socket, a hang never answers, latency is a timer).
   *
   * @since 0.1.0
   * @category constructors
   */
  serve
} from "./Loopback.js"
export type {
  /**
   * @since 0.1.0
   * @category models
   */
  Loopback
} from "./Loopback.js"
