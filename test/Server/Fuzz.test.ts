/**
 * Fuzzing the server with fast-check over raw sockets: methods, paths, query strings, headers
 * (media types, API keys, idempotency keys, junk), and bodies (random text, random JSON, near-
 * events with wrong field types, deep nesting, duplicate keys, huge strings, invalid UTF-8,
 * chunked framing). Whatever is sent:
 *
 * - the answer is never a 5xx (and the server stays up);
 * - every 4xx carries the one error shape, with its own status;
 * - nothing is enqueued for a rejected request (the store's totals do not move);
 * - a 202 enqueued exactly one event's deliveries; a 200/204 enqueued nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import { isErrorShape, raw, start, totalDeliveries } from "./harness.js"

const KEY = "fuzz-key-0123456789"
/** Fixed so CI is reproducible; set FANOUT_FUZZ_SEED to explore other inputs. */
const SEED = Number(process.env["FANOUT_FUZZ_SEED"] ?? 20261130)

const printable = (max: number) => fc.string({ maxLength: max }).map((s) => s.replace(/[^\x20-\x7e]/g, "x"))

const token = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/)

const method = fc.constantFrom("POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS")

const path = fc.oneof(
  fc.constant("/v1/events"),
  fc.constant("/v1/events"),
  fc.constant("/v1/events:batch"),
  fc.constant("/v1/dead-letters:replay"),
  printable(30).map((s) => `/v1/events?wait=${encodeURIComponent(s)}`),
  fc.constantFrom("/v1/events?wait=all", "/v1/events?wait=settled"),
  printable(40).map((s) => `/v1/events/${encodeURIComponent(s)}`),
  printable(40).map((s) => `/v1/dead-letters/${encodeURIComponent(s)}/replay`),
  printable(20).map((s) => `/v1/dead-letters?limit=${encodeURIComponent(s)}&from=${encodeURIComponent(s)}`),
  fc.array(token, { maxLength: 4 }).map((segments) => `/${segments.join("/")}`),
  fc.constantFrom("/v1/targets", "/healthz", "/metrics", "/v1/dead-letters", "//v1//events", "/v1/events/")
)

const contentType = fc.option(
  fc.oneof(
    fc.constantFrom(
      "application/json",
      "application/json; charset=utf-8",
      "application/json; charset=latin1",
      "text/plain",
      "application/x-www-form-urlencoded",
      "application/problem+json",
      "multipart/form-data"
    ),
    printable(40)
  ),
  { nil: undefined }
)

const authorization = fc.option(
  fc.oneof(
    { arbitrary: fc.constant(`Bearer ${KEY}`), weight: 6 },
    { arbitrary: fc.constant(`bearer ${KEY}`), weight: 1 },
    { arbitrary: printable(60).map((s) => `Bearer ${s}`), weight: 1 },
    { arbitrary: printable(60), weight: 1 }
  ),
  { nil: undefined, freq: 5 }
)

const idempotencyKey = fc.option(
  fc.oneof(fc.constantFrom("k-1", "k-2", "k-3"), printable(260)),
  { nil: undefined, freq: 2 }
)

const extraHeaders = fc.array(fc.tuple(token.map((t) => `x-${t}`), printable(80)), { maxLength: 4 })

const eventType = fc.oneof(
  fc.constantFrom("order.placed", "order.cancelled", "user.created", ""),
  fc.string({ maxLength: 30 }),
  fc.integer(),
  fc.constant(null)
)

const nearEvent = fc.record(
  {
    id: fc.oneof(fc.constantFrom("e-1", "e-2", "e-3"), fc.string({ maxLength: 220 }), fc.integer(), fc.constant(null)),
    type: eventType,
    key: fc.oneof(fc.string({ maxLength: 210 }), fc.integer()),
    payload: fc.jsonValue({ maxDepth: 4 }),
    headers: fc.oneof(
      fc.dictionary(fc.string({ maxLength: 10 }), fc.oneof(fc.string({ maxLength: 10 }), fc.integer())),
      fc.string()
    ),
    createdAt: fc.string(),
    extra: fc.anything({ maxDepth: 2 })
  },
  { requiredKeys: [] }
)

const body: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)), weight: 2 },
  { arbitrary: fc.fullUnicodeString({ maxLength: 100 }).map((s) => Buffer.from(s)), weight: 1 },
  { arbitrary: fc.json({ maxDepth: 5 }).map((s) => Buffer.from(s)), weight: 2 },
  { arbitrary: nearEvent.map((e) => Buffer.from(JSON.stringify(e))), weight: 5 },
  {
    arbitrary: fc.array(nearEvent, { maxLength: 4 }).map((events) => Buffer.from(JSON.stringify({ events }))),
    weight: 2
  },
  { arbitrary: fc.integer({ min: 1, max: 3000 }).map((n) => Buffer.from("[".repeat(n) + "]".repeat(n))), weight: 1 },
  {
    arbitrary: fc.integer({ min: 50, max: 200 }).map((n) =>
      Buffer.from(`{"type":"order.placed","payload":${"{\"a\":".repeat(n)}1${"}".repeat(n)}}`)
    ),
    weight: 1
  },
  {
    arbitrary: fc.constant(Buffer.from("{\"type\":\"x\",\"type\":\"order.placed\",\"payload\":1,\"payload\":2}")),
    weight: 1
  },
  {
    arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) =>
      Buffer.from(JSON.stringify({ type: "order.placed", payload: "x".repeat(n) }))
    ),
    weight: 1
  },
  { arbitrary: fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)), weight: 1 },
  { arbitrary: fc.constant(Buffer.alloc(0)), weight: 1 }
)

interface Sent {
  readonly method: string
  readonly path: string
  readonly contentType: string | undefined
  readonly authorization: string | undefined
  readonly idempotencyKey: string | undefined
  readonly extra: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  readonly chunked: boolean
}

/** Well-formed events (random ids, keys, headers, payloads): most are accepted, some collide or are too big. */
const validEvent = fc.record(
  {
    id: fc.oneof(fc.constantFrom("v-1", "v-2"), fc.string({ minLength: 1, maxLength: 200 })),
    type: fc.constantFrom("order.placed", "order.shipped", "user.created"),
    key: fc.string({ maxLength: 200 }),
    payload: fc.jsonValue({ maxDepth: 6 }),
    headers: fc.dictionary(fc.string({ maxLength: 20 }), fc.string({ maxLength: 50 }), { maxKeys: 5 })
  },
  { requiredKeys: ["type", "payload"] }
)

const anything: fc.Arbitrary<Sent> = fc.record({
  method,
  path,
  contentType,
  authorization,
  idempotencyKey,
  extra: extraHeaders,
  body,
  chunked: fc.boolean()
})

const mostlyValid: fc.Arbitrary<Sent> = fc.record({
  method: fc.constant("POST"),
  path: fc.constantFrom("/v1/events", "/v1/events", "/v1/events?wait=settled"),
  contentType: fc.constantFrom("application/json", "application/json; charset=utf-8", "text/plain"),
  authorization: fc.constantFrom(`Bearer ${KEY}`, `Bearer ${KEY}`, `Bearer ${KEY}`, "Bearer nope"),
  idempotencyKey: fc.option(
    fc.string({ minLength: 1, maxLength: 220 }).map((s) => s.replace(/[^\x20-\x7e]/g, "k").trim() || "k"),
    { nil: undefined, freq: 3 }
  ),
  extra: extraHeaders,
  body: fc.oneof(
    { arbitrary: validEvent.map((e) => Buffer.from(JSON.stringify(e))), weight: 5 },
    {
      arbitrary: fc.integer({ min: 2_000, max: 20_000 }).map((n) =>
        Buffer.from(JSON.stringify({ type: "order.placed", payload: "y".repeat(n) }))
      ),
      weight: 1
    }
  ),
  chunked: fc.boolean()
})

const request: fc.Arbitrary<Sent> = fc.oneof({ arbitrary: anything, weight: 3 }, { arbitrary: mostlyValid, weight: 2 })

const encode = (r: Sent): Buffer => {
  const lines = [`${r.method} ${r.path} HTTP/1.1`, "Host: fuzz", "Connection: close"]
  if (r.contentType !== undefined) lines.push(`Content-Type: ${r.contentType}`)
  if (r.authorization !== undefined) lines.push(`Authorization: ${r.authorization}`)
  if (r.idempotencyKey !== undefined) lines.push(`Idempotency-Key: ${r.idempotencyKey}`)
  for (const [name, value] of r.extra) lines.push(`${name}: ${value}`)
  if (r.chunked) lines.push("Transfer-Encoding: chunked")
  else lines.push(`Content-Length: ${r.body.length}`)
  const head = Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1")
  if (!r.chunked) return Buffer.concat([head, r.body])
  const parts: Array<Buffer> = [head]
  for (let i = 0; i < r.body.length; i += 37) {
    const piece = r.body.subarray(i, i + 37)
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"))
  }
  parts.push(Buffer.from("0\r\n\r\n"))
  return Buffer.concat(parts)
}

describe("fuzzing", () => {
  it.scopedLive(
    "whatever is sent: never a 5xx, every error in the one shape, nothing enqueued for rejected input",
    () =>
      Effect.gen(function*() {
        const h = yield* start({
          server: { apiKeys: [KEY], maxBodyBytes: 4 * 1024, waitTimeout: "30 millis", maxBatch: 3 }
        })
        const seen = new Map<number, number>()
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(request, async (r) => {
              // The router ignores repeated and trailing slashes: "//v1//events" is "/v1/events".
              const route = r.path.replace(/\/{2,}/g, "/").replace(/(.)\/(\?|$)/, "$1$2")
              const before = await totalDeliveries(h.store)
              const reply = await raw(h.port, encode(r), { timeoutMs: 10_000 })
              const after = await totalDeliveries(h.store)
              seen.set(reply.status, (seen.get(reply.status) ?? 0) + 1)
              const context = `${reply.status} ${reply.body.slice(0, 300)}`
              assert.isBelow(reply.status, 500, context)
              if (reply.status >= 400) {
                let parsed: unknown
                try {
                  parsed = JSON.parse(reply.body)
                } catch {
                  assert.fail(`not JSON: ${context}`)
                }
                assert.isTrue(isErrorShape(parsed, reply.status), context)
                assert.strictEqual(after, before, `rejected but enqueued: ${context}`)
              } else if (r.method === "POST" && /^\/v1\/events(\?|$)/.test(route)) {
                // Accepted now (2 targets each), or a repeat of a stored id (nothing new).
                const answer = JSON.parse(reply.body)
                assert.strictEqual(after, answer.duplicate ? before : before + 2, context)
              } else if (reply.status < 300 && !route.startsWith("/v1/events:batch")) {
                assert.strictEqual(after, before, context)
              }
            }),
            { numRuns: 300, seed: SEED }
          )
        )
        // Still up, and the fuzz reached the interesting answers (not only one kind of rejection).
        const health = yield* Effect.promise(() => h.request("/healthz"))
        assert.strictEqual(health.status, 200)
        for (const status of [202, 400, 401, 404, 405, 413, 415, 422]) {
          assert.isAbove(seen.get(status) ?? 0, 0, `no ${status} in ${JSON.stringify([...seen])}`)
        }
      }),
    { timeout: 120_000 }
  )
})
