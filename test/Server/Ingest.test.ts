/**
 * The lean ingest listener (`Server/Ingest.ts`) answers `POST /v1/events` and
 * `POST /v1/events:batch` byte for byte as the `HttpApi` handlers do: every case below is sent as
 * the same raw HTTP/1.1 bytes to a server with the lean listener (the default) and to one without
 * (`leanIngest: false`), each on its own fresh store, in the same order; the two raw responses
 * (status line, every header in order, body) must be equal once the `Date` header (and, where the
 * server makes an id, that id) is masked.
 */
import * as net from "node:net"
import { HttpServerRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, type Exit, FastCheck as fc, Option, Schema, Tracer } from "effect"
import * as Api from "../../src/Server/Api.js"
import * as Errors from "../../src/Server/Errors.js"
import * as Ingest from "../../src/Server/Ingest.js"
import * as Store from "../../src/Store.js"
import { type Harness, type Setup, start } from "./harness.js"

/** One request, as raw bytes; `mask`: the server makes an id (masked in both answers). */
interface Case {
  readonly name: string
  readonly bytes: string | Buffer
  /** The status both must answer. */
  readonly status: number
  readonly mask?: boolean
  /** Which path must have enqueued (checked where the request reaches the store). */
  readonly path?: "lean" | "app"
}

/** Sends `bytes` on a fresh connection; resolves with the whole raw response (by Content-Length, or until close). */
const exchange = (port: number, bytes: string | Buffer): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    let buffer = Buffer.alloc(0)
    let done = false
    const timer = setTimeout(() => finish(new Error("no complete response within 10 s")), 10_000)
    const finish = (result: string | Error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      if (typeof result === "string") resolve(result)
      else reject(result)
    }
    const check = (closed: boolean) => {
      const end = buffer.indexOf("\r\n\r\n")
      if (end < 0) {
        return closed
          ? finish(new Error(`closed without a response: ${buffer.toString("latin1")}`))
          : undefined
      }
      const head = buffer.subarray(0, end).toString("latin1")
      const length = /\r\ncontent-length: *(\d+)/i.exec(head)
      if (length !== null && buffer.length >= end + 4 + Number(length[1])) {
        return finish(buffer.subarray(0, end + 4 + Number(length[1])).toString("utf8") + (closed ? "\n<closed>" : ""))
      }
      if (closed) finish(buffer.toString("utf8") + "\n<closed>")
    }
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      check(false)
    })
    socket.on("close", () => check(true))
    socket.on("error", () => check(true))
    socket.on("connect", () => socket.write(bytes))
  })

const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/g

const normalise = (response: string, mask: boolean): string => {
  const text = response.replace(/\r\nDate: [^\r]+/i, "\r\nDate: <date>")
  return mask ? text.replace(uuid, "<uuid>") : text
}

const post = (
  path: string,
  body: string | Buffer,
  headers: Readonly<Record<string, string>> = { "content-type": "application/json" }
): Buffer => {
  const bytes = typeof body === "string" ? Buffer.from(body) : body
  const head = `POST ${path} HTTP/1.1\r\nHost: fanout.test\r\n` +
    Object.entries({ "content-length": String(bytes.length), ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
    "\r\n"
  return Buffer.concat([Buffer.from(head, "latin1"), bytes])
}

const chunked = (path: string, body: Buffer, chunk: number): Buffer => {
  const parts: Array<Buffer> = [
    Buffer.from(
      `POST ${path} HTTP/1.1\r\nHost: fanout.test\r\nAuthorization: Bearer k-1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`
    )
  ]
  for (let i = 0; i < body.length; i += chunk) {
    const piece = body.subarray(i, i + chunk)
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"))
  }
  parts.push(Buffer.from("0\r\n\r\n"))
  return Buffer.concat(parts)
}

const json = (value: unknown) => JSON.stringify(value)
const order = (extra: Record<string, unknown> = {}) => ({ type: "order.placed", payload: { qty: 1 }, ...extra })

/**
 * Which path each enqueue came through: the `HttpApi` app (an `HttpServerRequest` in context) or
 * the lean listener; and whether it ran under a real span (tracing on) or a no-op one.
 */
const recordPaths =
  (paths: Array<"lean" | "app">, spans: Array<boolean>) => (store: Store.DeliveryStore): Store.DeliveryStore => ({
    ...store,
    enqueue: (event, targets, options) =>
      Effect.flatMap(Effect.serviceOption(HttpServerRequest.HttpServerRequest), (request) => {
        paths.push(request._tag === "Some" ? "app" : "lean")
        return Effect.flatMap(Effect.option(Effect.currentSpan), (span) => {
          spans.push(span._tag === "Some" && span.value.traceId !== "noop")
          return store.enqueue(event, targets, options)
        })
      })
  })

/** Two servers alike but for `leanIngest`; every case to both, in order; their answers compared. */
const compare = (
  setup: Setup,
  cases: ReadonlyArray<Case>,
  wrap?: (store: Store.DeliveryStore) => Store.DeliveryStore
) =>
  Effect.gen(function*() {
    type Server = { readonly h: Harness; readonly paths: Array<"lean" | "app">; readonly spans: Array<boolean> }
    const make = (side: "lean" | "app") =>
      Effect.gen(function*() {
        const paths: Array<"lean" | "app"> = []
        const spans: Array<boolean> = []
        const h = yield* start({
          ...setup,
          server: { ...setup.server, leanIngest: side === "lean" },
          wrapStore: (s) => recordPaths(paths, spans)(wrap === undefined ? s : wrap(s))
        })
        return { h, paths, spans } satisfies Server
      })
    const servers = { lean: yield* make("lean"), app: yield* make("app") }
    for (const c of cases) {
      const before = { lean: servers.lean.paths.length, app: servers.app.paths.length }
      const lean = normalise(yield* Effect.promise(() => exchange(servers.lean.h.port, c.bytes)), c.mask === true)
      const app = normalise(yield* Effect.promise(() => exchange(servers.app.h.port, c.bytes)), c.mask === true)
      assert.strictEqual(lean, app, c.name)
      if (c.path !== undefined) {
        assert.deepStrictEqual(servers.lean.paths.slice(before.lean), [c.path], `${c.name}: lean server's path`)
        assert.deepStrictEqual(servers.app.paths.slice(before.app), ["app"], `${c.name}: app server's path`)
        // Under a span exactly when tracing is on, on both paths.
        assert.deepStrictEqual(servers.lean.spans.slice(before.lean), [setup.tracing !== false], `${c.name}: lean span`)
        assert.deepStrictEqual(servers.app.spans.slice(before.app), [setup.tracing !== false], `${c.name}: app span`)
      }
      assert.strictEqual(Number(lean.split(" ", 2)[1]), c.status, `${c.name}: status`)
    }
  })

const key = { authorization: "Bearer k-1", "content-type": "application/json" }

for (const tracing of [true, false]) {
  describe(`lean ingest listener (tracing ${tracing ? "on" : "off"})`, () => {
    it.scopedLive("answers every case of POST /v1/events and /v1/events:batch as the HttpApi handlers do", () =>
      Effect.gen(function*() {
        const big = Buffer.from(json(order({ payload: "x".repeat(3000) })))
        yield* compare({
          tracing,
          server: { apiKeys: ["k-1"], maxBodyBytes: 1024, drainLimitBytes: 8192, maxBatch: 3 }
        }, [
          { name: "good", status: 202, bytes: post("/v1/events", json(order({ id: "e-1" })), key), path: "lean" },
          {
            name: "good, a key and headers",
            status: 202,
            bytes: post("/v1/events", json(order({ id: "e-2", key: "c-9", headers: { "x-a": "1" } })), key),
            path: "lean"
          },
          {
            name: "good, the server's id",
            status: 202,
            bytes: post("/v1/events", json(order()), key),
            mask: true,
            path: "lean"
          },
          {
            name: "good, Idempotency-Key",
            status: 202,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k/1:~!" }),
            path: "lean"
          },
          {
            name: "good, a query string",
            status: 202,
            bytes: post("/v1/events?source=test", json(order({ id: "e-3" })), key),
            path: "lean"
          },
          {
            name: "good, application/cloudevents+json; charset=utf-8",
            status: 202,
            bytes: post("/v1/events", json(order({ id: "e-4" })), {
              ...key,
              "content-type": "application/cloudevents+json; charset=utf-8"
            }),
            path: "lean"
          },
          {
            name: "duplicate, same payload",
            status: 200,
            bytes: post("/v1/events", json(order({ id: "e-1" })), key),
            path: "lean"
          },
          {
            name: "duplicate by Idempotency-Key",
            status: 200,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k/1:~!" }),
            path: "lean"
          },
          {
            name: "duplicate, other headers (not part of the content)",
            status: 200,
            bytes: post("/v1/events", json(order({ id: "e-1", headers: { "x-b": "2" } })), key),
            path: "lean"
          },
          {
            name: "conflict, another payload",
            status: 409,
            bytes: post("/v1/events", json(order({ id: "e-1", payload: { qty: 2 } })), key),
            path: "lean"
          },
          {
            name: "conflict, another type",
            status: 409,
            bytes: post("/v1/events", json(order({ id: "e-1", type: "order.paid" })), key),
            path: "lean"
          },
          {
            name: "conflict, a key added",
            status: 409,
            bytes: post("/v1/events", json(order({ id: "e-1", key: "c-1" })), key),
            path: "lean"
          },
          {
            name: "conflict, a key changed",
            status: 409,
            bytes: post("/v1/events", json(order({ id: "e-2", key: "c-8", headers: { "x-a": "1" } })), key),
            path: "lean"
          },
          {
            name: "conflict by Idempotency-Key",
            status: 409,
            bytes: post("/v1/events", json(order({ payload: "other" })), { ...key, "idempotency-key": "k/1:~!" }),
            path: "lean"
          },
          {
            name: "conflict, an id with reserved characters (Location encoded)",
            status: 202,
            bytes: post("/v1/events", json(order({ id: "a/b?c#d" })), key),
            path: "lean"
          },
          {
            name: "conflict, an id with reserved characters (the 409)",
            status: 409,
            bytes: post("/v1/events", json(order({ id: "a/b?c#d", payload: 0 })), key),
            path: "lean"
          },
          { name: "bad JSON", status: 400, bytes: post("/v1/events", "{\"type\": \"order.placed\", ", key) },
          { name: "not UTF-8", status: 400, bytes: post("/v1/events", Buffer.from([0x7b, 0xff, 0x7d]), key) },
          { name: "empty body", status: 400, bytes: post("/v1/events", "", key) },
          { name: "whitespace body", status: 400, bytes: post("/v1/events", "  \n", key) },
          { name: "too deep", status: 400, bytes: post("/v1/events", "[".repeat(70) + "]".repeat(70), key) },
          {
            name: "schema error",
            status: 400,
            bytes: post("/v1/events", json({ type: 42, payload: 1, extra: true, headers: { a: 1 } }), key)
          },
          { name: "schema error, not an object", status: 400, bytes: post("/v1/events", "[1,2]", key) },
          {
            name: "id differs from Idempotency-Key",
            status: 400,
            bytes: post("/v1/events", json(order({ id: "a" })), { ...key, "idempotency-key": "b" })
          },
          {
            name: "Idempotency-Key too long",
            status: 400,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k".repeat(201) })
          },
          {
            name: "Idempotency-Key empty",
            status: 400,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "" })
          },
          {
            name: "Idempotency-Key bad and bad JSON: the header first",
            status: 400,
            bytes: post("/v1/events", "{", { ...key, "idempotency-key": "" })
          },
          // The id alphabet: printable ASCII 0x21-0x7E; the answer names the index and char code.
          { name: "id with a newline", status: 400, bytes: post("/v1/events", json(order({ id: "a\nb" })), key) },
          { name: "id with a space", status: 400, bytes: post("/v1/events", json(order({ id: "a b" })), key) },
          {
            name: "id with a tab, a DEL and an escape",
            status: 400,
            bytes: post("/v1/events", json(order({ id: "\t\u007f\u001b" })), key)
          },
          { name: "id with non-ASCII", status: 400, bytes: post("/v1/events", json(order({ id: "caf\u00e9" })), key) },
          { name: "id with an emoji", status: 400, bytes: post("/v1/events", json(order({ id: "x-\u{1F600}" })), key) },
          {
            name: "id too long and bad",
            status: 400,
            bytes: post("/v1/events", json(order({ id: " ".repeat(201) })), key)
          },
          {
            name: "key with a newline",
            status: 400,
            bytes: post("/v1/events", json(order({ id: "e-k", key: "c\r\n1" })), key)
          },
          { name: "key empty", status: 400, bytes: post("/v1/events", json(order({ id: "e-k", key: "" })), key) },
          {
            name: "id and key bad: both named",
            status: 400,
            bytes: post("/v1/events", json(order({ id: "a b", key: "c d" })), key)
          },
          {
            name: "Idempotency-Key with a space",
            status: 400,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k 1" })
          },
          {
            name: "Idempotency-Key with non-ASCII (latin1 on the wire)",
            status: 400,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k/\u00e91" })
          },
          {
            name: "Idempotency-Key with a tab inside",
            status: 400,
            bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k\t1" })
          },
          {
            name: "unknown type",
            status: 422,
            bytes: post("/v1/events", json({ type: "invoice.paid", payload: {} }), key)
          },
          { name: "oversized (drained)", status: 413, bytes: post("/v1/events", big, key) },
          { name: "oversized, chunked (drained)", status: 413, bytes: chunked("/v1/events", big, 500) },
          {
            name: "oversized past the drain limit (closed)",
            status: 413,
            bytes: post("/v1/events", Buffer.alloc(9000, 0x20), key)
          },
          {
            name: "wrong media type",
            status: 415,
            bytes: post("/v1/events", json(order()), { ...key, "content-type": "text/plain" })
          },
          {
            name: "wrong charset",
            status: 415,
            bytes: post("/v1/events", json(order()), { ...key, "content-type": "application/json; charset=latin1" })
          },
          {
            name: "no media type",
            status: 415,
            bytes: post("/v1/events", json(order()), { authorization: "Bearer k-1" })
          },
          { name: "unauthorised, no key", status: 401, bytes: post("/v1/events", json(order())) },
          {
            name: "unauthorised, wrong key",
            status: 401,
            bytes: post("/v1/events", json(order()), { ...key, authorization: "Bearer k-2" })
          },
          {
            name: "unauthorised and wrong media type: 401 first",
            status: 401,
            bytes: post("/v1/events", "x", { "content-type": "text/plain" })
          },
          {
            name: "batch good",
            status: 202,
            bytes: post(
              "/v1/events:batch",
              json({ events: [order({ id: "b-1" }), order({ id: "b-2", key: "k" })] }),
              key
            )
          },
          {
            name: "batch, a duplicate",
            status: 202,
            bytes: post("/v1/events:batch", json({ events: [order({ id: "b-1" }), order({ id: "b-3" })] }), key)
          },
          {
            name: "batch, a conflict (the others stored)",
            status: 202,
            bytes: post(
              "/v1/events:batch",
              json({
                events: [
                  order({ id: "b-4" }),
                  order({ id: "b-1", payload: { qty: 9 } }),
                  order({ id: "b-2", key: "k" })
                ]
              }),
              key
            )
          },
          {
            name: "batch, a conflict within the batch",
            status: 202,
            bytes: post(
              "/v1/events:batch",
              json({ events: [order({ id: "b-5" }), order({ id: "b-5", payload: 2 })] }),
              key
            )
          },
          {
            name: "batch, the server's ids",
            status: 202,
            bytes: post("/v1/events:batch", json({ events: [order(), order()] }), key),
            mask: true
          },
          {
            name: "batch schema error",
            status: 400,
            bytes: post("/v1/events:batch", json({ events: [order(), { type: "" }] }), key)
          },
          {
            name: "batch, a bad id and a bad key",
            status: 400,
            bytes: post(
              "/v1/events:batch",
              json({ events: [order({ id: "ok" }), order({ id: "b\n2" }), order({ key: "k\u00a01" })] }),
              key
            )
          },
          { name: "batch empty", status: 400, bytes: post("/v1/events:batch", json({ events: [] }), key) },
          {
            name: "batch over maxBatch",
            status: 400,
            bytes: post("/v1/events:batch", json({ events: [order(), order(), order(), order()] }), key)
          },
          {
            name: "batch unknown type",
            status: 422,
            bytes: post("/v1/events:batch", json({ events: [order(), { type: "x.y", payload: 1 }] }), key)
          },
          { name: "batch bad JSON", status: 400, bytes: post("/v1/events:batch", "{", key) },
          {
            name: "batch oversized",
            status: 413,
            bytes: post("/v1/events:batch", json({ events: [order({ payload: "x".repeat(2000) })] }), key)
          },
          { name: "batch unauthorised", status: 401, bytes: post("/v1/events:batch", json({ events: [order()] })) },
          {
            name: "batch wrong media type",
            status: 415,
            bytes: post("/v1/events:batch", "{}", { ...key, "content-type": "text/csv" })
          },
          // Handed to the HttpApi app by the lean server (?wait=): alike by construction, checked all the same.
          {
            name: "?wait=settled, Prefer: wait=0 (delegated)",
            status: 202,
            bytes: post("/v1/events?wait=settled", json(order({ id: "w-1" })), { ...key, prefer: "wait=0" }),
            path: "app"
          },
          { name: "?wait=bogus (delegated)", status: 400, bytes: post("/v1/events?wait=bogus", json(order()), key) },
          {
            name: "?%77ait=bogus (delegated)",
            status: 400,
            bytes: post("/v1/events?%77ait=bogus", json(order()), key)
          },
          {
            name: "trailing slash (not taken)",
            status: 202,
            bytes: post("/v1/events/", json(order()), key),
            mask: true,
            path: "app"
          },
          {
            // (GET /v1/events is the event search now: also the app's, but its answer names each store's own events.)
            name: "PUT /v1/events (not taken)",
            status: 405,
            bytes: "PUT /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-1\r\nContent-Length: 0\r\n\r\n"
          }
        ])
      }))

    it.scopedLive("rate limit: 429 with the same Retry-After; one bucket per key across both routes", () =>
      Effect.gen(function*() {
        yield* compare({ tracing, server: { apiKeys: ["k-1"], keyRateLimit: { limit: 3, interval: "1 minute" } } }, [
          { name: "1st", status: 202, bytes: post("/v1/events", json(order({ id: "r-1" })), key), path: "lean" },
          {
            name: "2nd, batch",
            status: 202,
            bytes: post("/v1/events:batch", json({ events: [order({ id: "r-2" })] }), key)
          },
          {
            name: "3rd, another route",
            status: 404,
            bytes: post("/v1/dead-letters/none/replay", "", { authorization: "Bearer k-1" })
          },
          { name: "4th: rate-limited", status: 429, bytes: post("/v1/events", json(order({ id: "r-3" })), key) },
          {
            name: "5th, batch: rate-limited",
            status: 429,
            bytes: post("/v1/events:batch", json({ events: [order()] }), key)
          },
          {
            name: "a bad key is 401, not 429",
            status: 401,
            bytes: post("/v1/events", json(order()), { ...key, authorization: "Bearer no" })
          }
        ])
      }))

    it.scopedLive("store saturated: 503 + Retry-After at maxQueueDepth, the same for a batch", () =>
      Effect.gen(function*() {
        yield* compare({ tracing, server: { maxQueueDepth: 2, queueCheckTtl: "0 millis" } }, [
          { name: "accepted", status: 202, bytes: post("/v1/events", json(order({ id: "q-1" }))), path: "lean" },
          { name: "queue full", status: 503, bytes: post("/v1/events", json(order({ id: "q-2" }))) },
          {
            name: "queue full, batch",
            status: 503,
            bytes: post("/v1/events:batch", json({ events: [order({ id: "q-3" })] }))
          },
          { name: "bad input still 400 first", status: 400, bytes: post("/v1/events", json({ type: 1 })) }
        ])
      }))

    it.scopedLive("store failures: busy 503, corrupt 500, invalid input 400, a batch stored in part 503", () =>
      Effect.gen(function*() {
        const failing = (store: Store.DeliveryStore): Store.DeliveryStore => ({
          ...store,
          enqueue: (event, targets, options) => {
            const reason = event.id.startsWith("busy")
              ? "Busy"
              : event.id.startsWith("corrupt")
              ? "Corrupt"
              : event.id.startsWith("bad")
              ? "InvalidInput"
              : undefined
            return reason === undefined
              ? store.enqueue(event, targets, options)
              : Effect.fail(new Store.StoreError({ operation: "enqueue", reason, message: `enqueue: ${reason}` }))
          }
        })
        yield* compare({ tracing }, [
          { name: "busy", status: 503, bytes: post("/v1/events", json(order({ id: "busy-1" }))), path: "lean" },
          { name: "corrupt", status: 500, bytes: post("/v1/events", json(order({ id: "corrupt-1" }))), path: "lean" },
          { name: "invalid input", status: 400, bytes: post("/v1/events", json(order({ id: "bad-1" }))), path: "lean" },
          {
            name: "batch, one busy",
            status: 503,
            bytes: post("/v1/events:batch", json({ events: [order({ id: "ok-1" }), order({ id: "busy-2" })] }))
          },
          {
            name: "batch, one corrupt",
            status: 500,
            bytes: post("/v1/events:batch", json({ events: [order({ id: "corrupt-2" }), order({ id: "ok-2" })] }))
          }
        ], failing)
      }))
  })
}

/** Mostly valid (weight 8), sometimes one of the invalid forms. */
const mostly = (valid: fc.Arbitrary<unknown>, ...invalid: ReadonlyArray<fc.Arbitrary<unknown>>) =>
  fc.oneof({ arbitrary: valid, weight: 8 }, ...invalid.map((arbitrary) => ({ arbitrary, weight: 1 })))

const name = mostly(
  fc.string({ minLength: 1, maxLength: 200 }),
  fc.constant(""),
  fc.string({ minLength: 201, maxLength: 202 }),
  fc.integer(),
  // Outside the id alphabet (printable ASCII 0x21-0x7E): controls, non-ASCII, astral characters.
  fc.fullUnicodeString({ minLength: 1, maxLength: 8 })
)
const eventFields = {
  id: name,
  type: name,
  key: mostly(fc.string({ maxLength: 200 }), fc.string({ minLength: 201, maxLength: 202 }), fc.constant(null)),
  payload: fc.jsonValue(),
  headers: mostly(
    fc.dictionary(fc.oneof(fc.string(), fc.constantFrom("constructor", "1")), fc.string()),
    fc.constant(JSON.parse("{\"__proto__\":\"x\"}") as unknown),
    fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.constant(null)), { minKeys: 1 }),
    fc.constant([]),
    fc.constant(null)
  )
}
/** Bodies as JSON gives them: mostly well-formed events, some with a field missing or one too many, some any JSON. */
const eventInput = fc.oneof(
  { weight: 6, arbitrary: fc.record(eventFields, { requiredKeys: ["type", "payload"] }) },
  { weight: 2, arbitrary: fc.record(eventFields, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.record({ ...eventFields, extra: fc.jsonValue() }, { requiredKeys: ["extra"] }) },
  { weight: 1, arbitrary: fc.jsonValue() }
).map((o) => JSON.parse(JSON.stringify(o)) as unknown)

/** What the schema alone answers (the HttpApi handlers' rule before the shortcut). */
const bySchema = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Either.mapLeft(
    Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error", exact: true })(input),
    (error) => Errors.invalidRequest(Errors.issuesOf(error))
  )

const same = (a: Either.Either<unknown, Errors.ApiFailure>, b: Either.Either<unknown, Errors.ApiFailure>) => {
  assert.strictEqual(a._tag, b._tag)
  if (Either.isRight(a) && Either.isRight(b)) assert.deepStrictEqual(a.right, b.right)
  if (Either.isLeft(a) && Either.isLeft(b)) assert.deepStrictEqual(Errors.bodyOf(a.left), Errors.bodyOf(b.left))
}

describe("ingest decoding shortcuts", () => {
  it("decodeEventInput answers what the schema answers, for any JSON body", () => {
    let accepted = 0
    fc.assert(
      fc.property(eventInput, (body) => {
        const fast = Ingest.decodeEventInput(body)
        same(fast, bySchema(Api.EventInput, body))
        if (Either.isRight(fast)) accepted++
      }),
      { numRuns: 3000 }
    )
    // About a fifth of the bodies are events the schema accepts (binomial, n = 3000: a spread of
    // about 22); 500 is far below any draw of a generator that works, and far above one that broke.
    assert.isAbove(accepted, 500)
  })

  it("decodeBatchInput answers what the schema answers, for any JSON body", () => {
    const batch = fc.oneof(
      { weight: 9, arbitrary: fc.array(eventInput, { maxLength: 4 }).map((events) => ({ events })) },
      { weight: 1, arbitrary: fc.jsonValue() },
      { weight: 1, arbitrary: fc.record({ events: fc.array(eventInput), more: fc.jsonValue() }) }
    )
    fc.assert(fc.property(batch, (body) => same(Ingest.decodeBatchInput(body), bySchema(Api.BatchInput, body))), {
      numRuns: 1000
    })
  })

  it("the accepted body is the schema's encoding, byte for byte", () => {
    const status = fc.constantFrom<Store.Status>("pending", "in_flight", "delivered", "dead", "compensated")
    fc.assert(
      fc.property(
        fc.record({
          eventId: fc.string(),
          created: fc.boolean(),
          deliveries: fc.array(fc.record({ id: fc.string(), target: fc.string(), status }))
        }),
        (enqueued) => {
          const expected = Schema.encodeSync(Api.EventAccepted)({
            id: enqueued.eventId,
            duplicate: !enqueued.created,
            deliveries: enqueued.deliveries.map((d) => ({ id: d.id, target: d.target, status: d.status }))
          })
          assert.strictEqual(JSON.stringify(Ingest.acceptedBody(enqueued)), JSON.stringify(expected))
        }
      ),
      { numRuns: 300 }
    )
  })
})

/** A tracer that keeps every ended span: name, kind, attributes, and the name of its parent. */
const recordingTracer = () => {
  const ended: Array<
    { name: string; kind: Tracer.SpanKind; parent: string | undefined; attributes: Record<string, unknown> }
  > = []
  let n = 0
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const id = String(++n)
      const attributes = new Map<string, unknown>()
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId: `span-${id}`,
        traceId: Option.match(parent, { onNone: () => `trace-${id}`, onSome: (p) => p.traceId }),
        parent,
        context,
        status: { _tag: "Started", startTime },
        attributes,
        links,
        sampled: true,
        kind,
        end: (_endTime: bigint, _exit: Exit.Exit<unknown, unknown>) => {
          ended.push({
            name,
            kind,
            parent: Option.match(parent, {
              onNone: () => undefined,
              onSome: (p) => p._tag === "Span" ? p.name : `external ${p.spanId}`
            }),
            attributes: Object.fromEntries(attributes)
          })
        },
        attribute: (key, value) => void attributes.set(key, value),
        event: () => {},
        addLinks: () => {}
      }
      return span
    },
    context: (f) => f()
  })
  return { tracer, ended }
}

describe("lean ingest listener: spans", () => {
  it.scopedLive("the same http.server span (name, kind, parent, attributes) and fanout.enqueue under it", () =>
    Effect.gen(function*() {
      const spansOf = (leanIngest: boolean) =>
        Effect.gen(function*() {
          const { ended, tracer } = recordingTracer()
          const h = yield* start({ tracer, server: { leanIngest, apiKeys: ["k-1"] } })
          const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
          for (
            const bytes of [
              post("/v1/events?x=1", json(order({ id: "s-1" })), { ...key, traceparent, "user-agent": "t/1" }),
              post("/v1/events", json({ type: 1 }), key),
              post("/v1/events:batch", json({ events: [order({ id: "s-2" })] }), {
                ...key,
                authorization: "Bearer nope"
              })
            ]
          ) yield* Effect.promise(() => exchange(h.port, bytes))
          // A server span ends just after its response is written: wait for the three (polled).
          const serverSpans = () => ended.filter((s) => s.name.startsWith("http.server")).length
          for (let i = 0; i < 1_000 && serverSpans() < 3; i++) yield* Effect.sleep("10 millis")
          assert.strictEqual(serverSpans(), 3, "one server span per request")
          return ended
            .filter((s) => s.name.startsWith("http.server") || s.name === "fanout.enqueue")
            // The peer's address is the client's socket (both 127.0.0.1, but say so rather than rely on it).
            .map((s) =>
              s.attributes["client.address"] === undefined
                ? s
                : { ...s, attributes: { ...s.attributes, "client.address": "<peer>" } }
            )
        })
      const lean = yield* spansOf(true)
      const app = yield* spansOf(false)
      assert.deepStrictEqual(lean, app)
      assert.deepStrictEqual(lean.map((s) => [s.name, s.parent]), [
        ["fanout.enqueue", "http.server POST"],
        ["http.server POST", "external b7ad6b7169203331"],
        ["http.server POST", undefined],
        ["http.server POST", undefined]
      ])
      assert.strictEqual(lean[1]!.attributes["http.response.status_code"], 202)
      assert.strictEqual(lean[1]!.attributes["http.request.header.authorization"], "<redacted>")
    }))
})

describe("same id, other content", () => {
  it.scopedLive("409 naming the stored event (id, Location), nothing stored; a batch reports the item as conflict", () =>
    Effect.gen(function*() {
      for (const leanIngest of [true, false]) {
        const h = yield* start({ server: { leanIngest } })
        const send = (body: unknown, path = "/v1/events") =>
          Effect.promise(() => h.request(path, { method: "POST", json: body }))
        assert.strictEqual((yield* send(order({ id: "o/1", payload: { qty: 1 } }))).status, 202)
        const same = yield* send(
          order({
            id: "o/1",
            payload: { qty: 1 },
            headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
          })
        )
        assert.deepStrictEqual([same.status, same.body.duplicate], [200, true])
        const other = yield* send(order({ id: "o/1", payload: { qty: 2 } }))
        assert.strictEqual(other.status, 409, other.text)
        assert.strictEqual(other.headers.get("location"), "/v1/events/o%2F1")
        assert.strictEqual(other.headers.get("cache-control"), "no-store")
        assert.deepStrictEqual(other.body, {
          error: {
            code: "conflict",
            status: 409,
            message:
              "An event with id \"o/1\" is already stored with other content (type, key or payload); nothing was stored. " +
              "Send it again with the same content, or under another id"
          },
          id: "o/1"
        })
        const stored = Option.getOrThrow(yield* h.store.status("o/1"))
        assert.deepStrictEqual(stored.event.payload, { qty: 1 })
        assert.strictEqual(stored.deliveries.length, 2)
        const batch = yield* send(
          { events: [order({ id: "o/2" }), order({ id: "o/1", type: "order.paid" })] },
          "/v1/events:batch"
        )
        assert.strictEqual(batch.status, 202, batch.text)
        assert.deepStrictEqual(batch.body.results.map((r: any) => [r.id, r.status, r.error?.code, r.error?.status]), [
          ["o/2", "accepted", undefined, undefined],
          ["o/1", "conflict", "conflict", 409]
        ])
        assert.isUndefined(batch.body.results[1].deliveries)
        assert.strictEqual(Option.getOrThrow(yield* h.store.status("o/1")).event.type, "order.placed")
      }
    }))
})

describe("event ids", () => {
  it.scopedLive("an id, key or Idempotency-Key outside printable ASCII is a 400 naming the index and char code; nothing stored", () =>
    Effect.gen(function*() {
      for (const leanIngest of [true, false]) {
        const h = yield* start({ server: { leanIngest, apiKeys: ["k-1"] } })
        const issues = (bytes: Buffer) =>
          Effect.promise(async () => {
            const raw = await exchange(h.port, bytes)
            const [head, body] = raw.split("\r\n\r\n", 2)
            return {
              status: Number(head!.split(" ", 2)[1]),
              issues: JSON.parse(body!).error.issues as Array<Errors.Issue>
            }
          })
        const expected = (path: string, index: number, code: number) => ({
          path,
          message:
            `Invalid character at index ${index} (char code ${code}): expected printable ASCII 0x21-0x7E, no spaces or control characters`
        })
        assert.deepStrictEqual(yield* issues(post("/v1/events", json(order({ id: "a\nb" })), key)), {
          status: 400,
          issues: [expected("id", 1, 10)]
        })
        assert.deepStrictEqual(yield* issues(post("/v1/events", json(order({ id: "ok", key: "x-\u{1F600}" })), key)), {
          status: 400,
          issues: [expected("key", 2, 0x1f600)]
        })
        assert.deepStrictEqual(
          yield* issues(post("/v1/events", json(order()), { ...key, "idempotency-key": "abc def" })),
          { status: 400, issues: [expected("idempotency-key", 3, 32)] }
        )
        assert.deepStrictEqual(
          yield* issues(
            post("/v1/events:batch", json({ events: [order({ id: "fine" }), order({ id: "\u007f" })] }), key)
          ),
          { status: 400, issues: [expected("events[1].id", 0, 127)] }
        )
        // Every printable ASCII character is fine.
        const all = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join("")
        const ok = yield* Effect.promise(() =>
          h.request("/v1/events", {
            method: "POST",
            headers: { authorization: "Bearer k-1" },
            json: order({ id: all })
          })
        )
        assert.strictEqual(ok.status, 202, ok.text)
        assert.strictEqual(ok.body.id, all)
        const stats = yield* h.store.stats
        assert.strictEqual(
          stats.pending + stats.inFlight + stats.delivered,
          2,
          "only the good event was stored (2 targets)"
        )
      }
    }))

  it("newEventId: UUIDv7 with the time in its first 48 bits, unique across pool refills", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 2000; i++) {
      const ms = 1_700_000_000_000 + i
      const id = Ingest.newEventId(ms)
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      assert.strictEqual(parseInt(id.replace(/-/g, "").slice(0, 12), 16), ms)
      seen.add(id)
    }
    assert.strictEqual(seen.size, 2000)
  })
})
