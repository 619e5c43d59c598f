/**
 * Fanout's own HTTP transport: `send` a request and get the whole answer back (status,
 * lower-cased headers, body bytes), bounded by a whole-exchange timeout and a response-size
 * limit.
 *
 * `@effect/platform`'s generic `HttpClient` spends about ten times raw undici's CPU per
 * request (a span with an attribute per header, traceparent, URL parsing, an
 * AbortController, a FinalizationRegistry entry, a context merge, headers rebuilt on each
 * read). The lean transport of {@link make} calls undici's `dispatch` directly: one
 * `Effect.async` per request, one `setTimeout` for the timeout, no fiber, span or
 * AbortController. {@link fromHttpClient} gives the same `send` over any `HttpClient`, and
 * {@link of} picks the lean one when the client came from {@link make} or {@link layer}.
 *
 * @since 0.1.0
 */
import { HttpClient, HttpClientError, HttpClientResponse, UrlParams } from "@effect/platform"
import type { HttpClientRequest } from "@effect/platform"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Undici from "@effect/platform-node/Undici"
import { Data, Duration, Effect, Either, Layer, Predicate, Stream } from "effect"
import type { Scope } from "effect"
import { Readable } from "node:stream"
import { maskUrl } from "./internal/maskUrl.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("fanout/Transport")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A response, fully read.
 *
 * @since 0.1.0
 * @category models
 */
export interface Response {
  readonly status: number
  /** Lower-cased names; repeated headers joined with ", " (set-cookie included). */
  readonly headers: Readonly<Record<string, string>>
  /**
   * The body bytes; undefined when it was larger than `maxResponseBytes`. Such a body is
   * not kept: the lean transport drains it (bytes dropped, the connection reused; the timeout
   * still bounds it), the adapter stops reading it (which aborts the request).
   */
  readonly body: Uint8Array | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface SendOptions {
  /** The whole exchange (connect, headers and body) in ms; Infinity or <= 0 (or over 2^31 − 1) means no timeout. */
  readonly timeoutMs: number
  readonly maxResponseBytes: number
}

/**
 * A request that got no complete answer. `reason`:
 * - `Network`: connection refused, reset or closed, socket errors;
 * - `Timeout`: `timeoutMs` passed;
 * - `InvalidRequest`: the request itself cannot be sent (invalid header name or value, bad
 *   URL, unsupported body kind, a failing body stream): no answer from the target could fix it.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransportError extends Data.TaggedError("TransportError")<{
  readonly reason: "Network" | "Timeout" | "InvalidRequest"
  /** The underlying error's code, e.g. ECONNREFUSED, UND_ERR_SOCKET, UND_ERR_INVALID_ARG. */
  readonly code?: string
  readonly message: string
}> {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Transport {
  readonly [TypeId]: TypeId
  readonly send: (
    request: HttpClientRequest.HttpClientRequest,
    options: SendOptions
  ) => Effect.Effect<Response, TransportError>
}

/**
 * An `HttpClient` that carries the lean transport it was built over (see {@link of}).
 *
 * @since 0.1.0
 * @category models
 */
export interface Client extends HttpClient.HttpClient {
  readonly [TypeId]: Transport
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Send through this dispatcher (not closed by {@link make}) instead of an `Agent` of its own. */
  readonly dispatcher?: Undici.Dispatcher
  /** Connections per origin (undici `connections`); unbounded by default. */
  readonly connections?: number
  /** How long an idle keep-alive connection stays open (undici `keepAliveTimeout`, default 4 s). */
  readonly keepAliveTimeoutMs?: number
  /** TCP (and TLS) connect timeout (undici `connect.timeout`, default 10 s); a `Network` error with code UND_ERR_CONNECT_TIMEOUT. */
  readonly connectTimeoutMs?: number
}

// ---------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------

const transportError = (reason: TransportError["reason"], message: string, code: string | undefined): TransportError =>
  code === undefined ? new TransportError({ reason, message }) : new TransportError({ reason, message, code })

/** Codes of errors about the request itself (undici's and node's argument checks). */
const invalidRequestCodes: ReadonlySet<string> = new Set([
  "UND_ERR_INVALID_ARG",
  "UND_ERR_NOT_SUPPORTED",
  "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
  "ERR_INVALID_URL",
  "ERR_INVALID_CHAR",
  "ERR_INVALID_HTTP_TOKEN",
  "ERR_HTTP_INVALID_HEADER_VALUE",
  "ERR_INVALID_ARG_TYPE",
  "ERR_INVALID_ARG_VALUE",
  "ERR_UNESCAPED_CHARACTERS"
])

const codeOf = (u: unknown): string | undefined => {
  if (Predicate.hasProperty(u, "code") && typeof u.code === "string") return u.code
  // fetch wraps the socket error: TypeError("fetch failed", { cause })
  if (Predicate.hasProperty(u, "cause")) {
    const cause = u.cause
    if (Predicate.hasProperty(cause, "code") && typeof cause.code === "string") return cause.code
  }
  return undefined
}

const messageOf = (u: unknown): string => {
  const message = u instanceof Error ? u.message : String(u)
  if (u instanceof Error && u.cause instanceof Error && u.cause.message !== "") return `${message}: ${u.cause.message}`
  return message
}

/** An error raised by undici (or node) while sending: InvalidRequest when it is about the request itself. */
const fromCause = (cause: unknown): TransportError => {
  const code = codeOf(cause)
  const invalid = code !== undefined && invalidRequestCodes.has(code)
  return transportError(invalid ? "InvalidRequest" : "Network", messageOf(cause), code)
}

const timeoutError = (timeoutMs: number): TransportError =>
  new TransportError({ reason: "Timeout", message: `no complete answer within ${timeoutMs} ms` })

/**
 * Whether `timeoutMs` asks for a timer: > 0 and at most setTimeout's limit (2^31 − 1 ms,
 * ~24.8 days; node fires a longer one after 1 ms), beyond which it counts as none.
 */
const hasTimeout = (timeoutMs: number): boolean => timeoutMs > 0 && timeoutMs <= 2_147_483_647

// ---------------------------------------------------------------------------------------
// the lean transport
// ---------------------------------------------------------------------------------------

/** Where a request goes, as undici's `dispatch` wants it. */
interface Destination {
  readonly origin: string
  readonly path: string
}

/**
 * Parsed destinations per URL string: `new URL` + origin + path costs ~0.6 µs and a URL
 * object per request, a Map hit ~20 ns (measured on Node 20), and the targets' URLs repeat.
 * A small gain (about 1 % of a request's CPU) for a few lines. Cleared when full, so a caller
 * that puts ids in URLs cannot grow it without bound.
 */
const destinations = new Map<string, Destination>()
const DESTINATIONS_MAX = 512

const destinationOf = (url: URL): Destination | TransportError =>
  url.protocol === "http:" || url.protocol === "https:" ?
    { origin: url.origin, path: url.pathname + url.search } :
    new TransportError({
      reason: "InvalidRequest",
      message: `unsupported protocol ${url.protocol} in ${maskUrl(url.href)}`
    })

const resolve = (request: HttpClientRequest.HttpClientRequest): Destination | TransportError => {
  // The fragment is never sent; only the plain URL case (the hot one) is cached.
  if (request.urlParams.length === 0) {
    const cached = destinations.get(request.url)
    if (cached !== undefined) return cached
    let url: URL
    try {
      url = new URL(request.url)
    } catch (cause) {
      return transportError(
        "InvalidRequest",
        // An unparsable URL is not shown (it could hold a secret); Node's message does not repeat it.
        `invalid URL: ${messageOf(cause)}`,
        codeOf(cause)
      )
    }
    const destination = destinationOf(url)
    if (destination instanceof TransportError) return destination
    if (destinations.size >= DESTINATIONS_MAX) destinations.clear()
    destinations.set(request.url, destination)
    return destination
  }
  const url = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
  if (Either.isLeft(url)) {
    return transportError(
      "InvalidRequest",
      `invalid URL ${JSON.stringify(maskUrl(request.url))}: ${url.left.message}`,
      codeOf(url.left)
    )
  }
  return destinationOf(url.right)
}

type DispatchBody = Exclude<Undici.Dispatcher.DispatchOptions["body"], undefined>

interface Outgoing {
  readonly headers: Readonly<Record<string, string>>
  readonly body: DispatchBody
}

/** Adds the body's content type (and length) when the request's headers do not have them already. */
const withBodyHeaders = (
  headers: Readonly<Record<string, string>>,
  contentType: string | undefined,
  contentLength: number | undefined
): Readonly<Record<string, string>> => {
  const needsType = contentType !== undefined && contentType !== "" && headers["content-type"] === undefined
  const needsLength = contentLength !== undefined && headers["content-length"] === undefined
  if (!needsType && !needsLength) return headers
  const out: Record<string, string> = { ...headers }
  if (needsType) out["content-type"] = contentType
  if (needsLength) out["content-length"] = String(contentLength)
  return out
}

/**
 * What undici sends. A body that can be read only once (a stream, an encoded FormData) comes
 * as a function, called once per run of the effect: a retried send sends it again.
 */
const outgoing = (request: HttpClientRequest.HttpClientRequest): Outgoing | (() => Outgoing) | TransportError => {
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return { headers: request.headers, body: null }
    case "Uint8Array":
      return { headers: withBodyHeaders(request.headers, body.contentType, body.contentLength), body: body.body }
    case "Raw": {
      const raw = body.body
      const headers = withBodyHeaders(request.headers, body.contentType, body.contentLength)
      if (raw instanceof Uint8Array || typeof raw === "string" || raw instanceof Readable) return { headers, body: raw }
      if (raw instanceof ArrayBuffer) return { headers, body: new Uint8Array(raw) }
      return new TransportError({
        reason: "InvalidRequest",
        message: `unsupported Raw body (${
          raw === null ? "null" : typeof raw
        }): the transport sends a Uint8Array, Buffer, ArrayBuffer, string or node Readable`
      })
    }
    case "FormData": {
      const form = body.formData
      // undici encodes its own FormData class (multipart, with the boundary in content-type).
      if (form instanceof Undici.FormData) return { headers: request.headers, body: form }
      // Node's global FormData comes from Node's bundled undici, whose class the npm undici's
      // encoder rejects (it brand-checks: "action is not a function"); the global Response
      // encodes it instead, as a stream with its multipart content type.
      return () => {
        const encoded = new globalThis.Response(form)
        const stream = encoded.body
        return {
          // with this encoding's own boundary
          headers: withBodyHeaders(request.headers, encoded.headers.get("content-type") ?? undefined, undefined),
          body: stream === null ? null : Readable.fromWeb(stream)
        }
      }
    }
    case "Stream":
      return () => ({
        headers: withBodyHeaders(request.headers, body.contentType, body.contentLength),
        body: NodeStream.toReadableNever(body.stream)
      })
  }
}

/**
 * undici's header-name decoder: a lookup tree of the well-known names, already lower-cased,
 * else `toString("latin1").toLowerCase()`. It halves the cost of decoding a typical answer's
 * headers (~0.8 µs instead of ~1.3 µs for five, measured on Node 20).
 */
const headerName = Undici.util.headerNameToString

const decodeHeaders = (raw: ReadonlyArray<Buffer | string>): Record<string, string> => {
  // No prototype: a header named "__proto__" or "constructor" is just a header.
  const out: Record<string, string> = Object.create(null)
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = headerName(raw[i]!)
    const value = raw[i + 1]!
    const text = typeof value === "string" ? value : value.toString("latin1")
    const previous = out[key]
    out[key] = previous === undefined ? text : `${previous}, ${text}`
  }
  return out
}

/** What the lean transport answers internally: a {@link Response}, plus the raw set-cookie lines for the HttpClient face. */
interface RawResponse extends Response {
  readonly setCookie?: ReadonlyArray<string>
}

const EMPTY_BODY = new Uint8Array(0)

/** Why the transport aborted an exchange itself; undici hands it back to onError, which ignores it then. */
class Aborted extends Error {}
const abortedTimeout = new Aborted("timeout")
const abortedInterrupted = new Aborted("interrupted")

/**
 * One exchange: undici's raw (legacy) dispatch handler. undici 7's core (`Client`, `Pool`,
 * `Agent`) speaks this API natively; a handler with the new controller API
 * (`onRequestStart`/`onResponseStart`/...) is wrapped in an `UnwrapHandler`, with a
 * controller object per request and `parseHeaders` into an object of strings/arrays that we
 * would then re-join, so the legacy API is the cheaper one. `dispatch` with this handler
 * rather than `dispatcher.request`: `request` builds a `RequestHandler`, a `BodyReadable`
 * stream and an async resource per request, the body has to be read through that stream,
 * and interrupting it needs an AbortController. Measured (bench/transport.ts, 20,000 POSTs,
 * 64 in flight, loopback): `request` + `body.bytes()` in one `Effect.async` costs ~1.5× the
 * CPU per request of this handler, which is ~1.3× raw undici's own `request` (1.0–1.6×).
 */
class Exchange implements Undici.Dispatcher.DispatchHandler {
  /** undici's abort for this request, once it is on a connection. */
  private abortRequest: ((err?: Error) => void) | undefined = undefined
  /** Set when the transport aborted before undici gave it the abort function. */
  private pendingAbort: Error | undefined = undefined
  /** The effect has been resumed (or interrupted): later callbacks only clean up. */
  private done = false
  timer: ReturnType<typeof setTimeout> | undefined = undefined
  private status = 0
  private headers: Record<string, string> | undefined = undefined
  private setCookie: Array<string> | undefined = undefined
  private chunks: Array<Buffer> = []
  private size = 0

  constructor(
    private readonly resume: (effect: Effect.Effect<RawResponse, TransportError>) => void,
    private readonly maxResponseBytes: number,
    private readonly keepSetCookie: boolean,
    private readonly timeoutMs: number
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    if (this.pendingAbort !== undefined) abort(this.pendingAbort)
    else this.abortRequest = abort
  }

  onHeaders(statusCode: number, rawHeaders: Array<Buffer>, _resume: () => void, _statusText: string): boolean {
    if (this.done || statusCode < 200) return true // 1xx: the final answer follows
    this.status = statusCode
    const headers = decodeHeaders(rawHeaders)
    this.headers = headers
    if (this.keepSetCookie && headers["set-cookie"] !== undefined) this.setCookie = rawSetCookie(rawHeaders)
    return true
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return true
    this.size += chunk.length
    if (this.size > this.maxResponseBytes) {
      this.tooLarge()
      return true
    }
    // undici hands over the socket's own read buffer (a new one per read): no copy needed.
    this.chunks.push(chunk)
    return true
  }

  onComplete(_trailers: Array<string> | null): void {
    if (this.done) return
    if (this.size > this.maxResponseBytes) return this.succeed(undefined)
    const chunks = this.chunks
    const body = chunks.length === 0 ? EMPTY_BODY : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.size)
    this.chunks = []
    this.succeed(body)
  }

  onError(err: Error): void {
    if (this.done) return
    this.finish()
    this.resume(Effect.fail(fromCause(err)))
  }

  /** The timer fired (see {@link fireTimeout}). */
  onTimeout(): void {
    if (this.done) return
    this.finish()
    this.abort(abortedTimeout)
    this.resume(Effect.fail(timeoutError(this.timeoutMs)))
  }

  /** The `Effect.async` canceller: interruption aborts the request. */
  readonly cancel: Effect.Effect<void> = Effect.sync(() => {
    if (this.done) return
    this.finish()
    this.abort(abortedInterrupted)
  })

  private tooLarge(): void {
    // Stop keeping bytes, and drain the rest (dropped): a body read to its end leaves the
    // connection reusable, where aborting would destroy it (one new connection per oversized
    // answer: measured by test/integration/bodies.test.ts, 132 sockets for 200 such answers
    // against at most 80). The exchange's timer bounds an endless body.
    this.chunks = []
  }

  private succeed(body: Uint8Array | undefined): void {
    this.finish()
    const headers = this.headers ?? Object.create(null)
    const response: RawResponse = this.setCookie === undefined ?
      { status: this.status, headers, body } :
      { status: this.status, headers, body, setCookie: this.setCookie }
    this.resume(Effect.succeed(response))
  }

  private finish(): void {
    this.done = true
    if (this.timer !== undefined) clearTimeout(this.timer)
  }

  private abort(reason: Error): void {
    if (this.abortRequest !== undefined) this.abortRequest(reason)
    else this.pendingAbort = reason
  }
}

/** One function for every timer (no closure per request). */
const fireTimeout = (handler: Exchange): void => handler.onTimeout()

const rawSetCookie = (raw: ReadonlyArray<Buffer | string>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (headerName(raw[i]!) !== "set-cookie") continue
    const value = raw[i + 1]!
    out.push(typeof value === "string" ? value : value.toString("latin1"))
  }
  return out
}

const exchange = (
  dispatcher: Undici.Dispatcher,
  request: HttpClientRequest.HttpClientRequest,
  options: SendOptions,
  keepSetCookie: boolean
): Effect.Effect<RawResponse, TransportError> => {
  const destination = resolve(request)
  if (destination instanceof TransportError) return Effect.fail(destination)
  const prepared = outgoing(request)
  if (prepared instanceof TransportError) return Effect.fail(prepared)
  const timeoutMs = options.timeoutMs
  // One parameter only: `Effect.async` creates an AbortController for a register that takes two.
  return Effect.async<RawResponse, TransportError>((resume) => {
    const handler = new Exchange(resume, options.maxResponseBytes, keepSetCookie, timeoutMs)
    if (hasTimeout(timeoutMs)) handler.timer = setTimeout(fireTimeout, timeoutMs, handler)
    try {
      const out = typeof prepared === "function" ? prepared() : prepared
      dispatcher.dispatch({
        origin: destination.origin,
        path: destination.path,
        method: request.method,
        headers: out.headers,
        body: out.body,
        // Our timer bounds the whole exchange; undici's own per-phase timers are off.
        headersTimeout: 0,
        bodyTimeout: 0
      }, handler)
    } catch (cause) {
      // undici reports its argument checks through onError; another dispatcher may throw.
      handler.onError(cause instanceof Error ? cause : new Error(String(cause)))
    }
    return handler.cancel
  })
}

const unlimited: SendOptions = { timeoutMs: Infinity, maxResponseBytes: Infinity }

/** Statuses whose web Response must not have a body. */
const nullBodyStatus = (status: number): boolean => status === 101 || status === 204 || status === 205 || status === 304

const toClientResponse = (
  request: HttpClientRequest.HttpClientRequest,
  response: RawResponse
): HttpClientResponse.HttpClientResponse => {
  const headers = new globalThis.Headers()
  for (const name in response.headers) {
    if (name === "set-cookie" && response.setCookie !== undefined) {
      for (const line of response.setCookie) headers.append(name, line)
    } else {
      headers.set(name, response.headers[name]!)
    }
  }
  const status = response.status
  const body = response.body
  const webStatus = status >= 200 && status <= 599 ? status : 200
  const web = new globalThis.Response(
    nullBodyStatus(status) || body === undefined || body.length === 0 ? null : body,
    { status: webStatus, headers }
  )
  // A web Response only takes 200–599; report the status the server really sent.
  if (webStatus !== status) Object.defineProperty(web, "status", { value: status })
  return HttpClientResponse.fromWeb(request, web)
}

const toRequestError = (
  request: HttpClientRequest.HttpClientRequest,
  error: TransportError
): HttpClientError.RequestError =>
  new HttpClientError.RequestError({
    request,
    // "Encode" for requests that cannot be sent: retryTransient retries only "Transport".
    reason: error.reason === "InvalidRequest" ? "Encode" : "Transport",
    cause: error,
    description: error.message
  })

const makeTransport = (dispatcher: Undici.Dispatcher): Transport => ({
  [TypeId]: TypeId,
  send: (request, options) => exchange(dispatcher, request, options, false)
})

const makeClient = (dispatcher: Undici.Dispatcher, transport: Transport): Client => {
  const client = HttpClient.make((request) =>
    Effect.mapBoth(exchange(dispatcher, request, unlimited, true), {
      onFailure: (error) => toRequestError(request, error),
      onSuccess: (response) => toClientResponse(request, response)
    })
  )
  const carrying: Client = Object.assign(client, { [TypeId]: transport })
  return carrying
}

/**
 * The lean transport, and an `HttpClient` over it for ordinary use (status, headers, `json`,
 * `text`, `arrayBuffer`, `stream`: the body is read whole first). Sends through one undici
 * `Agent` (a keep-alive pool per origin), closed with the scope, or through
 * `options.dispatcher` (left open).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<{ readonly transport: Transport; readonly client: Client }, never, Scope.Scope> => {
  const given = options.dispatcher
  const dispatcher: Effect.Effect<Undici.Dispatcher, never, Scope.Scope> = given !== undefined ?
    Effect.succeed(given) :
    Effect.acquireRelease(
      Effect.sync(() => new Undici.Agent(agentOptions(options))),
      (agent) => Effect.promise(() => agent.destroy())
    )
  return Effect.map(dispatcher, (dispatcher) => {
    const transport = makeTransport(dispatcher)
    return { transport, client: makeClient(dispatcher, transport) }
  })
}

const agentOptions = (options: Options): Undici.Agent.Options => {
  const out: { -readonly [K in keyof Undici.Agent.Options]: Undici.Agent.Options[K] } = {}
  if (options.connections !== undefined) out.connections = options.connections
  if (options.keepAliveTimeoutMs !== undefined) out.keepAliveTimeout = options.keepAliveTimeoutMs
  if (options.connectTimeoutMs !== undefined) out.connect = { timeout: options.connectTimeoutMs }
  return out
}

/**
 * Provides `HttpClient.HttpClient`: the lean client of {@link make}, carrying its transport
 * (so {@link of} finds it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<HttpClient.HttpClient> =>
  Layer.scoped(HttpClient.HttpClient, Effect.map(make(options), ({ client }) => client))

// ---------------------------------------------------------------------------------------
// the adapter over any HttpClient
// ---------------------------------------------------------------------------------------

const fromClientError = (error: HttpClientError.HttpClientError): TransportError => {
  if (error._tag === "ResponseError") {
    return transportError("Network", `reading the response body failed: ${messageOf(error.cause)}`, codeOf(error.cause))
  }
  const cause = error.cause
  if (cause instanceof TransportError) return cause
  if (error.reason !== "Transport") {
    return transportError("InvalidRequest", `${error.reason}: ${error.description ?? messageOf(cause)}`, codeOf(cause))
  }
  // A transport failure about the request itself (undici's header checks; fetch's TypeError
  // for an invalid header, which has no code, unlike its "fetch failed" with a cause).
  const code = codeOf(cause)
  const invalid = code !== undefined ?
    invalidRequestCodes.has(code) :
    cause instanceof TypeError && cause.message !== "fetch failed" && cause.cause === undefined
  return transportError(invalid ? "InvalidRequest" : "Network", messageOf(cause), code)
}

interface Accumulated {
  readonly chunks: Array<Uint8Array>
  size: number
  over: boolean
}

const emptyAccumulated = (): Accumulated => ({ chunks: [], size: 0, over: false })

const concat = (chunks: ReadonlyArray<Uint8Array>, size: number): Uint8Array => {
  if (chunks.length === 1) return chunks[0]!
  const out = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

const readBody = (
  response: HttpClientResponse.HttpClientResponse,
  maxResponseBytes: number
): Effect.Effect<Uint8Array | undefined, HttpClientError.ResponseError> => {
  // A response without a body (204, 304, HEAD) is an empty body, not an error ("EmptyBody").
  return Effect.catchIf(
    readBodyOf(response, maxResponseBytes),
    (error) => error.reason === "EmptyBody",
    () => Effect.succeed(new Uint8Array(0))
  )
}

const readBodyOf = (
  response: HttpClientResponse.HttpClientResponse,
  maxResponseBytes: number
): Effect.Effect<Uint8Array | undefined, HttpClientError.ResponseError> => {
  if (maxResponseBytes === Infinity) return Effect.map(response.arrayBuffer, (buffer) => new Uint8Array(buffer))
  // Keep up to the limit, and drain the rest (dropped): a body read to its end leaves the
  // connection reusable (ending the stream early would abort the request and close its socket,
  // one new connection per oversized answer). The attempt's timeout bounds an endless body.
  return Effect.suspend(() =>
    Effect.map(
      Stream.runFold(
        response.stream,
        // mutable, so one per run (suspend): a retried send must not inherit the last run's bytes
        emptyAccumulated(),
        (state, chunk) => {
          state.size += chunk.length
          if (state.size > maxResponseBytes) {
            state.over = true
            state.chunks.length = 0
          } else {
            state.chunks.push(chunk)
          }
          return state
        }
      ),
      (state) => (state.over ? undefined : concat(state.chunks, state.size))
    )
  )
}

/**
 * `send` over any `HttpClient`: the timeout by Effect (the work is interrupted when it
 * passes), the body read up to `maxResponseBytes` and then dropped. Errors: a `RequestError`
 * with reason "Transport" is `Network` (or `InvalidRequest` when its cause is an
 * argument check, e.g. undici's UND_ERR_INVALID_ARG for a header value), other
 * `RequestError`s (Encode, InvalidUrl) are `InvalidRequest`, a `ResponseError` while the body
 * is read is `Network`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromHttpClient = (client: HttpClient.HttpClient): Transport => ({
  [TypeId]: TypeId,
  send: (request, options) => {
    const { maxResponseBytes, timeoutMs } = options
    const read = Effect.mapError(
      Effect.flatMap(
        client.execute(request),
        (response) =>
          Effect.map(readBody(response, maxResponseBytes), (body): Response => ({
            status: response.status,
            headers: response.headers,
            body
          }))
      ),
      fromClientError
    )
    return hasTimeout(timeoutMs) ?
      Effect.timeoutFail(read, { duration: Duration.millis(timeoutMs), onTimeout: () => timeoutError(timeoutMs) }) :
      read
  }
})

const isTransport = (u: unknown): u is Transport => Predicate.hasProperty(u, TypeId) && u[TypeId] === TypeId

const carriesTransport = (client: HttpClient.HttpClient): client is Client =>
  Predicate.hasProperty(client, TypeId) && isTransport(client[TypeId])

/**
 * Whether `client` is the lean client of {@link make} or {@link layer} (so that `of(client)`
 * is the lean transport, whose `send` enforces the timeout itself, without a fiber).
 *
 * @since 0.1.0
 * @category guards
 */
export const isLean = (client: HttpClient.HttpClient): client is Client => carriesTransport(client)

const transports = new WeakMap<HttpClient.HttpClient, Transport>()

/**
 * The transport behind a client: the lean one when `client` came from {@link make} or
 * {@link layer} (a client derived from it, e.g. with `HttpClient.mapRequest`, is another
 * client and gets the adapter), else {@link fromHttpClient}. Cached per client.
 *
 * @since 0.1.0
 * @category constructors
 */
export const of = (client: HttpClient.HttpClient): Transport => {
  if (carriesTransport(client)) return client[TypeId]
  let transport = transports.get(client)
  if (transport === undefined) {
    transport = fromHttpClient(client)
    transports.set(client, transport)
  }
  return transport
}
