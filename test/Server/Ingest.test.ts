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
import { Effect } from "effect"
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
      if (end < 0) return closed ? finish(new Error(`closed without a response: ${buffer.toString("latin1")}`)) : undefined
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
    Object.entries({ "content-length": String(bytes.length), ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n"
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

/** Which path each enqueue came through: the `HttpApi` app (an `HttpServerRequest` in context) or the lean listener. */
const recordPaths = (paths: Array<"lean" | "app">) => (store: Store.DeliveryStore): Store.DeliveryStore => ({
  ...store,
  enqueue: (event, targets, options) =>
    Effect.flatMap(Effect.serviceOption(HttpServerRequest.HttpServerRequest), (request) => {
      paths.push(request._tag === "Some" ? "app" : "lean")
      return store.enqueue(event, targets, options)
    })
})

/** Two servers alike but for `leanIngest`; every case to both, in order; their answers compared. */
const compare = (setup: Setup, cases: ReadonlyArray<Case>, wrap?: (store: Store.DeliveryStore) => Store.DeliveryStore) =>
  Effect.gen(function*() {
    const servers: Record<"lean" | "app", { readonly h: Harness; readonly paths: Array<"lean" | "app"> }> = {
      lean: { h: undefined as never, paths: [] },
      app: { h: undefined as never, paths: [] }
    }
    for (const side of ["lean", "app"] as const) {
      const paths = servers[side].paths
      const h = yield* start({
        ...setup,
        server: { ...setup.server, leanIngest: side === "lean" },
        wrapStore: (s) => recordPaths(paths)(wrap === undefined ? s : wrap(s))
      })
      servers[side] = { h, paths }
    }
    for (const c of cases) {
      const before = { lean: servers.lean.paths.length, app: servers.app.paths.length }
      const lean = normalise(yield* Effect.promise(() => exchange(servers.lean.h.port, c.bytes)), c.mask === true)
      const app = normalise(yield* Effect.promise(() => exchange(servers.app.h.port, c.bytes)), c.mask === true)
      assert.strictEqual(lean, app, c.name)
      if (c.path !== undefined) {
        assert.deepStrictEqual(servers.lean.paths.slice(before.lean), [c.path], `${c.name}: lean server's path`)
        assert.deepStrictEqual(servers.app.paths.slice(before.app), ["app"], `${c.name}: app server's path`)
      }
      assert.strictEqual(Number(lean.split(" ", 2)[1]), c.status, `${c.name}: status`)
    }
  })

const key = { authorization: "Bearer k-1", "content-type": "application/json" }

describe("lean ingest listener", () => {
  it.scopedLive("answers every case of POST /v1/events and /v1/events:batch as the HttpApi handlers do", () =>
    Effect.gen(function*() {
      const big = Buffer.from(json(order({ payload: "x".repeat(3000) })))
      yield* compare({ server: { apiKeys: ["k-1"], maxBodyBytes: 1024, drainLimitBytes: 8192, maxBatch: 3 } }, [
        { name: "good", status: 202, bytes: post("/v1/events", json(order({ id: "e-1" })), key), path: "lean" },
        { name: "good, a key and headers", status: 202, bytes: post("/v1/events", json(order({ id: "e-2", key: "c-9", headers: { "x-a": "1" } })), key), path: "lean" },
        { name: "good, the server's id", status: 202, bytes: post("/v1/events", json(order()), key), mask: true, path: "lean" },
        { name: "good, Idempotency-Key", status: 202, bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k/é 1" }), path: "lean" },
        { name: "good, a query string", status: 202, bytes: post("/v1/events?source=test", json(order({ id: "e-3" })), key), path: "lean" },
        { name: "good, application/cloudevents+json; charset=utf-8", status: 202, bytes: post("/v1/events", json(order({ id: "e-4" })), { ...key, "content-type": "application/cloudevents+json; charset=utf-8" }), path: "lean" },
        { name: "duplicate, same payload", status: 200, bytes: post("/v1/events", json(order({ id: "e-1" })), key), path: "lean" },
        { name: "duplicate by Idempotency-Key", status: 200, bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k/é 1" }), path: "lean" },
        { name: "bad JSON", status: 400, bytes: post("/v1/events", "{\"type\": \"order.placed\", ", key) },
        { name: "not UTF-8", status: 400, bytes: post("/v1/events", Buffer.from([0x7b, 0xff, 0x7d]), key) },
        { name: "empty body", status: 400, bytes: post("/v1/events", "", key) },
        { name: "whitespace body", status: 400, bytes: post("/v1/events", "  \n", key) },
        { name: "too deep", status: 400, bytes: post("/v1/events", "[".repeat(70) + "]".repeat(70), key) },
        { name: "schema error", status: 400, bytes: post("/v1/events", json({ type: 42, payload: 1, extra: true, headers: { a: 1 } }), key) },
        { name: "schema error, not an object", status: 400, bytes: post("/v1/events", "[1,2]", key) },
        { name: "id differs from Idempotency-Key", status: 400, bytes: post("/v1/events", json(order({ id: "a" })), { ...key, "idempotency-key": "b" }) },
        { name: "Idempotency-Key too long", status: 400, bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "k".repeat(201) }) },
        { name: "Idempotency-Key empty", status: 400, bytes: post("/v1/events", json(order()), { ...key, "idempotency-key": "" }) },
        { name: "Idempotency-Key bad and bad JSON: the header first", status: 400, bytes: post("/v1/events", "{", { ...key, "idempotency-key": "" }) },
        { name: "unknown type", status: 422, bytes: post("/v1/events", json({ type: "invoice.paid", payload: {} }), key) },
        { name: "oversized (drained)", status: 413, bytes: post("/v1/events", big, key) },
        { name: "oversized, chunked (drained)", status: 413, bytes: chunked("/v1/events", big, 500) },
        { name: "oversized past the drain limit (closed)", status: 413, bytes: post("/v1/events", Buffer.alloc(9000, 0x20), key) },
        { name: "wrong media type", status: 415, bytes: post("/v1/events", json(order()), { ...key, "content-type": "text/plain" }) },
        { name: "wrong charset", status: 415, bytes: post("/v1/events", json(order()), { ...key, "content-type": "application/json; charset=latin1" }) },
        { name: "no media type", status: 415, bytes: post("/v1/events", json(order()), { authorization: "Bearer k-1" }) },
        { name: "unauthorised, no key", status: 401, bytes: post("/v1/events", json(order())) },
        { name: "unauthorised, wrong key", status: 401, bytes: post("/v1/events", json(order()), { ...key, authorization: "Bearer k-2" }) },
        { name: "unauthorised and wrong media type: 401 first", status: 401, bytes: post("/v1/events", "x", { "content-type": "text/plain" }) },
        { name: "batch good", status: 202, bytes: post("/v1/events:batch", json({ events: [order({ id: "b-1" }), order({ id: "b-2", key: "k" })] }), key) },
        { name: "batch, a duplicate", status: 202, bytes: post("/v1/events:batch", json({ events: [order({ id: "b-1" }), order({ id: "b-3" })] }), key) },
        { name: "batch, the server's ids", status: 202, bytes: post("/v1/events:batch", json({ events: [order(), order()] }), key), mask: true },
        { name: "batch schema error", status: 400, bytes: post("/v1/events:batch", json({ events: [order(), { type: "" }] }), key) },
        { name: "batch empty", status: 400, bytes: post("/v1/events:batch", json({ events: [] }), key) },
        { name: "batch over maxBatch", status: 400, bytes: post("/v1/events:batch", json({ events: [order(), order(), order(), order()] }), key) },
        { name: "batch unknown type", status: 422, bytes: post("/v1/events:batch", json({ events: [order(), { type: "x.y", payload: 1 }] }), key) },
        { name: "batch bad JSON", status: 400, bytes: post("/v1/events:batch", "{", key) },
        { name: "batch oversized", status: 413, bytes: post("/v1/events:batch", json({ events: [order({ payload: "x".repeat(2000) })] }), key) },
        { name: "batch unauthorised", status: 401, bytes: post("/v1/events:batch", json({ events: [order()] })) },
        { name: "batch wrong media type", status: 415, bytes: post("/v1/events:batch", "{}", { ...key, "content-type": "text/csv" }) },
        // Handed to the HttpApi app by the lean server (?wait=): alike by construction, checked all the same.
        { name: "?wait=settled, Prefer: wait=0 (delegated)", status: 202, bytes: post("/v1/events?wait=settled", json(order({ id: "w-1" })), { ...key, prefer: "wait=0" }), path: "app" },
        { name: "?wait=bogus (delegated)", status: 400, bytes: post("/v1/events?wait=bogus", json(order()), key) },
        { name: "?%77ait=bogus (delegated)", status: 400, bytes: post("/v1/events?%77ait=bogus", json(order()), key) },
        { name: "trailing slash (not taken)", status: 202, bytes: post("/v1/events/", json(order()), key), mask: true, path: "app" },
        { name: "GET /v1/events (not taken)", status: 405, bytes: "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-1\r\n\r\n" }
      ])
    }))

  it.scopedLive("rate limit: 429 with the same Retry-After; one bucket per key across both routes", () =>
    Effect.gen(function*() {
      yield* compare({ server: { apiKeys: ["k-1"], keyRateLimit: { limit: 3, interval: "1 minute" } } }, [
        { name: "1st", status: 202, bytes: post("/v1/events", json(order({ id: "r-1" })), key), path: "lean" },
        { name: "2nd, batch", status: 202, bytes: post("/v1/events:batch", json({ events: [order({ id: "r-2" })] }), key) },
        { name: "3rd, another route", status: 404, bytes: post("/v1/dead-letters/none/replay", "", { authorization: "Bearer k-1" }) },
        { name: "4th: rate-limited", status: 429, bytes: post("/v1/events", json(order({ id: "r-3" })), key) },
        { name: "5th, batch: rate-limited", status: 429, bytes: post("/v1/events:batch", json({ events: [order()] }), key) },
        { name: "a bad key is 401, not 429", status: 401, bytes: post("/v1/events", json(order()), { ...key, authorization: "Bearer no" }) }
      ])
    }))

  it.scopedLive("store saturated: 503 + Retry-After at maxQueueDepth, the same for a batch", () =>
    Effect.gen(function*() {
      yield* compare({ server: { maxQueueDepth: 2, queueCheckTtl: "0 millis" } }, [
        { name: "accepted", status: 202, bytes: post("/v1/events", json(order({ id: "q-1" }))), path: "lean" },
        { name: "queue full", status: 503, bytes: post("/v1/events", json(order({ id: "q-2" }))) },
        { name: "queue full, batch", status: 503, bytes: post("/v1/events:batch", json({ events: [order({ id: "q-3" })] })) },
        { name: "bad input still 400 first", status: 400, bytes: post("/v1/events", json({ type: 1 })) }
      ])
    }))

  it.scopedLive("store failures: busy 503, corrupt 500, invalid input 400, a batch stored in part 503", () =>
    Effect.gen(function*() {
      const failing = (store: Store.DeliveryStore): Store.DeliveryStore => ({
        ...store,
        enqueue: (event, targets, options) => {
          const reason = event.id.startsWith("busy") ? "Busy" : event.id.startsWith("corrupt") ? "Corrupt" : event.id.startsWith("bad") ? "InvalidInput" : undefined
          return reason === undefined
            ? store.enqueue(event, targets, options)
            : Effect.fail(new Store.StoreError({ operation: "enqueue", reason, message: `enqueue: ${reason}` }))
        }
      })
      yield* compare({}, [
        { name: "busy", status: 503, bytes: post("/v1/events", json(order({ id: "busy-1" }))), path: "lean" },
        { name: "corrupt", status: 500, bytes: post("/v1/events", json(order({ id: "corrupt-1" }))), path: "lean" },
        { name: "invalid input", status: 400, bytes: post("/v1/events", json(order({ id: "bad-1" }))), path: "lean" },
        { name: "batch, one busy", status: 503, bytes: post("/v1/events:batch", json({ events: [order({ id: "ok-1" }), order({ id: "busy-2" })] })) },
        { name: "batch, one corrupt", status: 500, bytes: post("/v1/events:batch", json({ events: [order({ id: "corrupt-2" }), order({ id: "ok-2" })] })) }
      ], failing)
    }))
})
