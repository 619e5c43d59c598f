/**
 * The server's one error shape. Every error the API answers — from a handler, the router (404,
 * 405), the protection layer (401, 413, 415, 429, 503) or Node's own parser (400, 408, 431) — has
 * this body:
 *
 * ```json
 * { "error": { "code": "invalid_request", "message": "…", "status": 400,
 *              "issues": [{ "path": "payload.qty", "message": "Expected number, actual \"2\"" }] } }
 * ```
 *
 * @since 0.1.0
 */
import { HttpServerResponse } from "@effect/platform"
import { Data, Effect, ParseResult, Schema } from "effect"
import type * as Store from "../Store.js"

/**
 * One problem with the request, and where (`payload.qty`, `events[3].type`, `wait`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Issue = Schema.Struct({
  path: Schema.String,
  message: Schema.String
}).annotations({ identifier: "ErrorIssue" })

/**
 * @since 0.1.0
 * @category models
 */
export type Issue = typeof Issue.Type

/**
 * @since 0.1.0
 * @category schemas
 */
export const ErrorDetail = Schema.Struct({
  code: Schema.String,
  message: Schema.String,
  status: Schema.Int,
  issues: Schema.optional(Schema.Array(Issue))
}).annotations({ identifier: "ErrorDetail" })

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorDetail = typeof ErrorDetail.Type

/**
 * The body of every error response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorBody = Schema.Struct({ error: ErrorDetail }).annotations({
  identifier: "Error",
  description: "Every error response has this shape"
})

/**
 * @since 0.1.0
 * @category models
 */
export type ErrorBody = typeof ErrorBody.Type

/**
 * A failure the API answers with. Structurally an {@link ErrorBody} (it has `error`), plus the
 * response headers that go with it (`Retry-After`, `Allow`, `WWW-Authenticate`) and, for the
 * few answers that carry more than the error (`502` of `?wait=all`), extra top-level fields.
 *
 * @since 0.1.0
 * @category errors
 */
export class ApiFailure extends Data.TaggedError("ApiFailure")<{
  readonly error: ErrorDetail
  readonly headers: Readonly<Record<string, string>>
  readonly extra?: Readonly<Record<string, unknown>> | undefined
}> {
  override get message() {
    return `${this.error.status} ${this.error.code}: ${this.error.message}`
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  status: number,
  code: string,
  message: string,
  options: {
    readonly issues?: ReadonlyArray<Issue> | undefined
    readonly headers?: Readonly<Record<string, string>> | undefined
    readonly extra?: Readonly<Record<string, unknown>> | undefined
  } = {}
): ApiFailure =>
  new ApiFailure({
    error: { code, message, status, ...(options.issues !== undefined ? { issues: options.issues } : {}) },
    headers: options.headers ?? {},
    extra: options.extra
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const invalidRequest = (
  issues: ReadonlyArray<Issue>,
  message = "The request did not match the expected schema"
) => make(400, "invalid_request", message, { issues })

/**
 * @since 0.1.0
 * @category constructors
 */
export const invalidJson = (message: string) => make(400, "invalid_json", message)

/**
 * @since 0.1.0
 * @category constructors
 */
export const unauthorized = (message = "A valid API key is required: Authorization: Bearer <key>") =>
  make(401, "unauthorized", message, { headers: { "www-authenticate": "Bearer" } })

/**
 * @since 0.1.0
 * @category constructors
 */
export const notFound = (message = "Not found") => make(404, "not_found", message)

/**
 * @since 0.1.0
 * @category constructors
 */
export const methodNotAllowed = (method: string, allow: ReadonlyArray<string>) =>
  make(405, "method_not_allowed", `${method} is not allowed here (allowed: ${allow.join(", ")})`, {
    headers: { allow: allow.join(", ") }
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const payloadTooLarge = (limit: number) =>
  make(413, "payload_too_large", `The request body is larger than ${limit} bytes`)

/**
 * @since 0.1.0
 * @category constructors
 */
export const unsupportedMediaType = (got: string | undefined) =>
  make(
    415,
    "unsupported_media_type",
    `Expected Content-Type: application/json${got === undefined ? "" : `, got ${JSON.stringify(got.slice(0, 100))}`}`
  )

/**
 * `409`: an event with this id is already stored with other content (type, key or payload);
 * nothing was stored. The body names the stored event (`id`), `Location` points at it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const conflict = (eventId: string) =>
  make(
    409,
    "conflict",
    `An event with id ${JSON.stringify(eventId)} is already stored with other content (type, key or payload); ` +
      "nothing was stored. Send it again with the same content, or under another id",
    { headers: { location: `/v1/events/${encodeURIComponent(eventId)}` }, extra: { id: eventId } }
  )

/**
 * @since 0.1.0
 * @category constructors
 */
export const noRoute = (issues: ReadonlyArray<Issue>) =>
  make(422, "no_route", "No route matches the event type", { issues })

/**
 * @since 0.1.0
 * @category constructors
 */
export const rateLimited = (retryAfterSeconds: number) =>
  make(429, "rate_limited", `Too many requests for this API key; retry in ${retryAfterSeconds} s`, {
    headers: { "retry-after": String(retryAfterSeconds) }
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const unavailable = (code: string, message: string, retryAfterSeconds: number) =>
  make(503, code, message, { headers: { "retry-after": String(retryAfterSeconds) } })

/**
 * @since 0.1.0
 * @category constructors
 */
export const internal = (message = "Internal server error") => make(500, "internal", message)

/**
 * The answer to a store failure: `503` + `Retry-After` when retrying may help (busy, unreachable,
 * closed), `400` for input the store refused, else `500`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromStoreError = (error: Store.StoreError): ApiFailure => {
  switch (error.reason) {
    case "Busy":
    case "Unavailable":
    case "Closed":
      return unavailable(
        "store_unavailable",
        `The store is ${error.reason === "Busy" ? "busy" : "unavailable"}; retry later`,
        1
      )
    case "InvalidInput":
      return make(400, "invalid_request", error.message)
    default:
      return make(500, "store_error", `The store failed (${error.reason})`)
  }
}

/**
 * A schema path as the API shows it: `payload.qty`, `events[3].type`, `headers["x-a"]`,
 * `idempotency-key` (a first segment is shown as is).
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) =>
    typeof key === "number"
      ? `[${key}]`
      : i === 0 || /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(String(key))
      ? `${i === 0 ? "" : "."}${String(key)}`
      : `[${JSON.stringify(String(key))}]`
  ).join("")

/**
 * The issues of a parse error, every one with its path (prefixed by `prefix`).
 *
 * @since 0.1.0
 * @category formatting
 */
export const issuesOf = (error: ParseResult.ParseError, prefix: ReadonlyArray<PropertyKey> = []): Array<Issue> =>
  tidy(
    ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => ({
      path: formatPath([...prefix, ...issue.path]),
      message: issue.message
    }))
  )

const within = (path: string, parent: string): boolean =>
  path === parent || parent === "" || path.startsWith(`${parent}.`) || path.startsWith(`${parent}[`)

/**
 * Drops duplicates, and the "Expected undefined" an optional field reports next to its real
 * issue (at its path or below); keeps at most 100.
 *
 * @since 0.1.0
 * @category formatting
 */
export const tidy = (issues: ReadonlyArray<Issue>): Array<Issue> =>
  issues.filter((issue, i) =>
    !(issue.message.startsWith("Expected undefined") &&
      issues.some((o) => o !== issue && within(o.path, issue.path))) &&
    issues.findIndex((o) => o.path === issue.path && o.message === issue.message) === i
  ).slice(0, 100)

/**
 * Decodes a request's JSON with `schema` (every issue, no excess property); a mismatch is a `400`
 * naming each bad field (paths prefixed by `prefix`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = <A, I>(
  schema: Schema.Schema<A, I>,
  input: unknown,
  prefix: ReadonlyArray<PropertyKey> = []
): Effect.Effect<A, ApiFailure> =>
  Effect.mapError(
    Schema.decodeUnknown(schema, { errors: "all", onExcessProperty: "error", exact: true })(input),
    (error) => invalidRequest(issuesOf(error, prefix))
  )

/**
 * The JSON body of a failure.
 *
 * @since 0.1.0
 * @category encoding
 */
export const bodyOf = (failure: ApiFailure): Record<string, unknown> => ({ error: failure.error, ...failure.extra })

/**
 * The response of a failure.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toResponse = (failure: ApiFailure): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(bodyOf(failure), {
    status: failure.error.status,
    headers: { "cache-control": "no-store", ...failure.headers }
  })

const reasons: Record<number, string> = {
  400: "Bad Request",
  408: "Request Timeout",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error"
}

/**
 * A whole raw HTTP/1.1 error response (for answers written straight to the socket, below the
 * router: Node's parser errors and header timeouts). Always closes the connection.
 *
 * @since 0.1.0
 * @category encoding
 */
export const rawResponse = (status: number, code: string, message: string): string => {
  const body = JSON.stringify({ error: { code, message, status } })
  return `HTTP/1.1 ${status} ${reasons[status] ?? "Error"}\r\n` +
    "content-type: application/json\r\n" +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    "cache-control: no-store\r\n" +
    "connection: close\r\n\r\n" + body
}
