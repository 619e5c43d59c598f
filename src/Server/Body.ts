/**
 * Request bodies, read with their limits enforced while streaming:
 *
 * - the media type is checked first (`415`);
 * - bytes are kept only up to `maxBodyBytes`; past it the rest is read and discarded (so the
 *   client, still sending, gets to read the `413` rather than a reset) up to `drainLimitBytes`,
 *   beyond which the connection is closed after the `413`;
 * - a `Content-Length` above the drain limit is answered at once (and the connection closed);
 * - the bytes must be UTF-8 and JSON, no deeper than {@link maxDepth} (`400` otherwise: a
 *   pathological nesting must not reach the store's serializer).
 *
 * @since 0.1.0
 */
import type { IncomingMessage } from "node:http"
import type { HttpServerRequest } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Either } from "effect"
import * as Errors from "./Errors.js"

/**
 * The deepest nesting of arrays and objects a body may have.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxDepth = 64

/**
 * @since 0.1.0
 * @category models
 */
export interface Limits {
  readonly maxBodyBytes: number
  readonly drainLimitBytes: number
}

/**
 * Is this `Content-Type` JSON in UTF-8 (`application/json`, `application/*+json`, no charset or utf-8)?
 *
 * @since 0.1.0
 * @category parsing
 */
export const isJsonMediaType = (contentType: string): boolean => {
  const [essence = "", ...params] = contentType.split(";").map((p) => p.trim().toLowerCase())
  if (!(essence === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(essence))) return false
  for (const param of params) {
    if (param === "") continue
    const [name, value = ""] = param.split("=", 2).map((s) => s.trim())
    if (name === "charset" && value.replace(/^"|"$/g, "") !== "utf-8" && value.replace(/^"|"$/g, "") !== "utf8") {
      return false
    }
  }
  return true
}

const hasBody = (req: IncomingMessage): boolean => {
  const length = req.headers["content-length"]
  if (req.headers["transfer-encoding"] !== undefined) return true
  return length !== undefined && length !== "0"
}

/**
 * Reads the body bytes, then calls `done` once with them or why they were refused (a `413` past the
 * drain limit carries `Connection: close`). Returns a function that stops listening (for an
 * interruption).
 */
const readBytes = (
  req: IncomingMessage,
  limits: Limits,
  done: (result: Either.Either<Buffer, Errors.ApiFailure>) => void
): () => void => {
  const chunks: Array<Buffer> = []
  let total = 0
  let finished = false
  const finish = (result: Either.Either<Buffer, Errors.ApiFailure>) => {
    if (finished) return
    finished = true
    cleanup()
    done(result)
  }
  const onData = (chunk: Buffer) => {
    total += chunk.length
    if (total <= limits.maxBodyBytes) {
      chunks.push(chunk)
      return
    }
    chunks.length = 0
    if (total > limits.drainLimitBytes) {
      // Stop reading: the answer goes out with `Connection: close`.
      req.pause()
      finish(Either.left(tooLarge(limits.maxBodyBytes, true)))
    }
  }
  const onEnd = () =>
    finish(
      total > limits.maxBodyBytes
        ? Either.left(tooLarge(limits.maxBodyBytes, false))
        : Either.right(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total))
    )
  const onAbort = () => finish(Either.left(Errors.make(400, "aborted", "The request body was cut short")))
  const cleanup = () => {
    req.off("data", onData)
    req.off("end", onEnd)
    req.off("error", onAbort)
    req.off("aborted", onAbort)
    req.off("close", onClose)
  }
  const onClose = () => {
    if (!req.complete) onAbort()
  }
  req.on("data", onData)
  req.on("end", onEnd)
  req.on("error", onAbort)
  req.on("aborted", onAbort)
  req.on("close", onClose)
  if (req.readableEnded) onEnd()
  return cleanup
}

const tooLarge = (limit: number, close: boolean) => {
  const failure = Errors.payloadTooLarge(limit)
  return close ? new Errors.ApiFailure({ ...failure, headers: { ...failure.headers, connection: "close" } }) : failure
}

const noop = (): void => {}

const decoder = new TextDecoder("utf-8", { fatal: true })

/**
 * The nesting depth of a JSON value, without recursion; stops counting past `limit`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const depthOf = (value: unknown, limit: number = maxDepth): number => {
  let deepest = 0
  const stack: Array<readonly [unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (typeof v !== "object" || v === null) continue
    const depth = d + 1
    if (depth > deepest) deepest = depth
    if (deepest > limit) return deepest
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth])
    }
  }
  return deepest
}

/**
 * Parses bytes as a JSON document (UTF-8, at most {@link maxDepth} deep), synchronously.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseJsonEither = (bytes: Uint8Array): Either.Either<unknown, Errors.ApiFailure> => {
  let text: string
  try {
    text = decoder.decode(bytes)
  } catch {
    return Either.left(Errors.invalidJson("The body is not valid UTF-8"))
  }
  if (text.trim() === "") return Either.left(Errors.invalidJson("A JSON body is required"))
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    return Either.left(Errors.invalidJson(`The body is not valid JSON: ${(e as Error).message.slice(0, 200)}`))
  }
  if (depthOf(value) > maxDepth) {
    return Either.left(Errors.invalidJson(`The body is nested deeper than ${maxDepth} levels`))
  }
  return Either.right(value)
}

/**
 * Parses bytes as a JSON document (UTF-8, at most {@link maxDepth} deep).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseJson = (bytes: Uint8Array): Effect.Effect<unknown, Errors.ApiFailure> =>
  Effect.suspend(() => parseJsonEither(bytes))

/**
 * Reads and parses a JSON request body within the limits. `empty`: the value of a request that
 * has no body at all (when the endpoint allows one), else a body is required.
 *
 * @since 0.1.0
 * @category reading
 */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limits: Limits,
  options: { readonly empty?: unknown } = {}
): Effect.Effect<unknown, Errors.ApiFailure> =>
  Effect.suspend(() => readJsonFrom(NodeHttpServerRequest.toIncomingMessage(request), limits, options))

/**
 * {@link readJson} on Node's own request.
 *
 * @since 0.1.0
 * @category reading
 */
export const readJsonFrom = (
  req: IncomingMessage,
  limits: Limits,
  options: { readonly empty?: unknown } = {}
): Effect.Effect<unknown, Errors.ApiFailure> =>
  Effect.async<unknown, Errors.ApiFailure>((resume) => Effect.sync(readJsonWith(req, limits, options, resume)))

/**
 * {@link readJson} with a callback, no Effect (the lean ingest listener): checks the media type
 * (`415`) and the declared length, reads within the limits (`413`), parses (`400`), then calls
 * `done` once — at once when the request is refused before its body is read. Returns a function
 * that stops listening.
 *
 * @since 0.1.0
 * @category reading
 */
export const readJsonWith = (
  req: IncomingMessage,
  limits: Limits,
  options: { readonly empty?: unknown },
  done: (result: Either.Either<unknown, Errors.ApiFailure>) => void
): () => void => {
  const contentType = req.headers["content-type"]
  if (!hasBody(req)) {
    if (contentType !== undefined && !isJsonMediaType(contentType)) {
      done(Either.left(Errors.unsupportedMediaType(contentType)))
    } else {
      done(
        "empty" in options ? Either.right(options.empty) : Either.left(Errors.invalidJson("A JSON body is required"))
      )
    }
    return noop
  }
  if (contentType === undefined || !isJsonMediaType(contentType)) {
    done(Either.left(Errors.unsupportedMediaType(contentType)))
    return noop
  }
  const declared = Number(req.headers["content-length"])
  if (
    req.headers["transfer-encoding"] === undefined && Number.isFinite(declared) && declared > limits.drainLimitBytes
  ) {
    req.pause()
    done(Either.left(tooLarge(limits.maxBodyBytes, true)))
    return noop
  }
  return readBytes(req, limits, (bytes) =>
    done(
      Either.isLeft(bytes)
        ? bytes
        : bytes.right.length === 0 && "empty" in options
        ? Either.right(options.empty)
        : parseJsonEither(bytes.right)
    ))
}
