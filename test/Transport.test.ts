/**
 * The transport contract, run against Fanout's lean transport (`Transport.make`) and the
 * adapter over the platform's undici client (`fromHttpClient(NodeHttpClient.layerUndici)`):
 * real `node:http` servers on 127.0.0.1 (port 0). Waits are on latches fired by the server,
 * never on sleeps or wall-clock bounds.
 */
import { createServer } from "node:http"
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Stream } from "effect"
import type { Scope } from "effect"
import * as Transport from "../src/Transport.js"

// ---------------------------------------------------------------------------------------
// loopback server
// ---------------------------------------------------------------------------------------

interface Latch {
  readonly promise: Promise<void>
  readonly fire: () => void
}

const latch = (): Latch => {
  let fire!: () => void
  const promise = new Promise<void>((resolve) => (fire = resolve))
  return { promise, fire }
}

const wait = (l: Latch): Effect.Effect<void> => Effect.promise(() => l.promise)

interface Seen {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  /** Fires when the response closed before it was finished (the client went away). */
  readonly abandoned: Latch
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void

interface Loopback {
  readonly url: string
  readonly seen: Array<Seen>
  /** Fires when the first request has arrived (body read). */
  readonly arrived: Latch
  /** Distinct TCP connections accepted so far. */
  readonly sockets: () => number
}

const serve = (handler: Handler): Effect.Effect<Loopback, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: ReturnType<typeof createServer>; loopback: Loopback }>((resume) => {
      const seen: Array<Seen> = []
      const arrived = latch()
      let sockets = 0
      const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const abandoned = latch()
          res.on("close", () => {
            if (!res.writableFinished) abandoned.fire()
          })
          const entry: Seen = {
            method: req.method ?? "",
            path: req.url ?? "",
            headers: req.headers,
            body: Buffer.concat(chunks),
            abandoned
          }
          seen.push(entry)
          arrived.fire()
          handler(req, res, entry)
        })
      })
      server.on("connection", () => sockets++)
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          server,
          loopback: { url: `http://127.0.0.1:${port}`, seen, arrived, sockets: () => sockets }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ loopback }) => loopback))

/** A port nothing listens on (bound, then closed). */
const closedPort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const text = (
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string | Array<string>> = {}
) => {
  res.writeHead(status, { "content-type": "text/plain", "content-length": Buffer.byteLength(body), ...headers })
  res.end(body)
}

/** `size` bytes of a recognisable pattern. */
const pattern = (size: number): Buffer => {
  const out = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) out[i] = i % 251
  return out
}

const utf8 = (body: Uint8Array | undefined): string | undefined =>
  body === undefined ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")

const bytesEqual = (actual: Uint8Array | undefined, expected: Uint8Array): boolean =>
  actual !== undefined && Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)

/** Resumes after the event loop's check phase: after undici's own `setImmediate`s queued before it. */
const nextTurn = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

const roomy: Transport.SendOptions = { timeoutMs: 10_000, maxResponseBytes: 16 * 1024 * 1024 }

// ---------------------------------------------------------------------------------------
// the two sides
// ---------------------------------------------------------------------------------------

const lean: Effect.Effect<Transport.Transport, never, Scope.Scope> = Effect.map(Transport.make(), (_) => _.transport)

const undiciAdapter: Effect.Effect<Transport.Transport, never, Scope.Scope> = Effect.map(
  Layer.build(NodeHttpClient.layerUndici),
  (context) => Transport.fromHttpClient(Context.get(context, HttpClient.HttpClient))
)

const sides: ReadonlyArray<readonly [string, Effect.Effect<Transport.Transport, never, Scope.Scope>]> = [
  ["lean (Transport.make)", lean],
  ["fromHttpClient(NodeHttpClient.layerUndici)", undiciAdapter]
]

describe.each(sides)("Transport contract: %s", (_name, makeTransport) => {
  it.scopedLive("status codes 200, 204, 404 and 503 are answers, with their bodies", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res, seen) => {
        const status = Number(seen.path.slice(1))
        if (status === 204) {
          res.writeHead(204)
          res.end()
        } else {
          text(res, status, `status ${status}`)
        }
      })
      const transport = yield* makeTransport
      for (const status of [200, 404, 503]) {
        const response = yield* transport.send(HttpClientRequest.get(`${server.url}/${status}`), roomy)
        assert.strictEqual(response.status, status)
        assert.strictEqual(utf8(response.body), `status ${status}`)
      }
      const empty = yield* transport.send(HttpClientRequest.get(`${server.url}/204`), roomy)
      assert.strictEqual(empty.status, 204)
      assert.strictEqual(empty.body?.length, 0)
    }))

  it.scopedLive("response headers: lower-cased names, repeated ones joined with \", \"", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) =>
        text(res, 200, "ok", { "X-Single": "One", "X-Many": ["a", "b"], "Set-Cookie": ["a=1", "b=2"] })
      )
      const transport = yield* makeTransport
      const response = yield* transport.send(HttpClientRequest.get(server.url), roomy)
      assert.strictEqual(response.headers["x-single"], "One")
      assert.strictEqual(response.headers["x-many"], "a, b")
      assert.strictEqual(response.headers["set-cookie"], "a=1, b=2")
      assert.strictEqual(response.headers["content-type"], "text/plain")
      assert.strictEqual(response.headers["content-length"], "2")
      for (const name of Object.keys(response.headers)) assert.strictEqual(name, name.toLowerCase())
    }))

  it.scopedLive("request method, path, query and headers arrive", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const transport = yield* makeTransport
      const request = HttpClientRequest.put(`${server.url}/items/7?x=1`).pipe(
        HttpClientRequest.setUrlParam("y", "two words"),
        HttpClientRequest.setHeader("X-Custom", "value"),
        HttpClientRequest.setHeader("idempotency-key", "evt-1:a"),
        HttpClientRequest.bearerToken("secret")
      )
      yield* transport.send(request, roomy)
      const seen = server.seen[0]!
      assert.strictEqual(seen.method, "PUT")
      assert.strictEqual(seen.path, "/items/7?x=1&y=two+words")
      assert.strictEqual(seen.headers["x-custom"], "value")
      assert.strictEqual(seen.headers["idempotency-key"], "evt-1:a")
      assert.strictEqual(seen.headers["authorization"], "Bearer secret")
    }))

  it.scopedLive("request bodies (JSON, empty, raw bytes, a stream) arrive byte for byte with their type and length", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const transport = yield* makeTransport
      const payload = { id: "é-1", n: 42, nested: { list: [1, 2, 3] } }
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)

      yield* transport.send(HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyUnsafeJson(payload)), roomy)
      yield* transport.send(HttpClientRequest.post(server.url), roomy)
      yield* transport.send(
        HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyUint8Array(bytes, "application/octet-stream")),
        roomy
      )
      // one effect, run twice (as a retry does): the stream is sent whole both times
      const streamSend = transport.send(
        HttpClientRequest.post(server.url).pipe(
          HttpClientRequest.bodyStream(Stream.make(bytes.subarray(0, 100), bytes.subarray(100)), {
            contentType: "application/x-parts"
          })
        ),
        roomy
      )
      yield* streamSend
      yield* streamSend

      const [json, empty, raw, streamed, again] = server.seen
      const jsonText = JSON.stringify(payload)
      assert.strictEqual(json!.body.toString("utf8"), jsonText)
      assert.strictEqual(json!.headers["content-type"], "application/json")
      assert.strictEqual(json!.headers["content-length"], String(Buffer.byteLength(jsonText)))

      assert.strictEqual(empty!.body.length, 0)
      assert.strictEqual(empty!.headers["content-type"], undefined)
      assert.strictEqual(empty!.headers["content-length"], "0")

      assert.isTrue(raw!.body.equals(bytes))
      assert.strictEqual(raw!.headers["content-type"], "application/octet-stream")
      assert.strictEqual(raw!.headers["content-length"], "256")

      assert.isTrue(streamed!.body.equals(bytes))
      assert.strictEqual(streamed!.headers["content-type"], "application/x-parts")
      assert.isTrue(again!.body.equals(bytes))
    }))

  it.scopedLive("a 5 MB response is read whole when maxResponseBytes allows it", () =>
    Effect.gen(function*() {
      const big = pattern(5 * 1024 * 1024)
      const server = yield* serve((_req, res) => {
        res.writeHead(200, { "content-type": "application/octet-stream" }) // chunked: no length
        res.end(big)
      })
      const transport = yield* makeTransport
      const response = yield* transport.send(HttpClientRequest.get(server.url), roomy)
      assert.strictEqual(response.body?.length, big.length)
      assert.isTrue(bytesEqual(response.body, big))
    }))

  it.scopedLive("a body over maxResponseBytes is undefined (with or without a length) and the transport still works", () =>
    Effect.gen(function*() {
      const big = pattern(1024 * 1024)
      const server = yield* serve((_req, res, seen) => {
        if (seen.path === "/sized") {
          res.writeHead(503, { "content-length": big.length })
          res.end(big)
        } else if (seen.path === "/chunked") {
          res.writeHead(200)
          res.end(big)
        } else {
          text(res, 200, "small")
        }
      })
      const transport = yield* makeTransport
      const limited = { timeoutMs: 10_000, maxResponseBytes: 64 * 1024 }
      for (let i = 0; i < 3; i++) {
        const sized = yield* transport.send(HttpClientRequest.get(`${server.url}/sized`), limited)
        assert.strictEqual(sized.status, 503)
        assert.isUndefined(sized.body)
        const chunked = yield* transport.send(HttpClientRequest.get(`${server.url}/chunked`), limited)
        assert.strictEqual(chunked.status, 200)
        assert.isUndefined(chunked.body)
        const small = yield* transport.send(HttpClientRequest.get(`${server.url}/small`), limited)
        assert.strictEqual(small.status, 200)
        assert.strictEqual(utf8(small.body), "small")
      }
      // a body exactly at the limit is kept
      const exact = yield* transport.send(HttpClientRequest.get(`${server.url}/sized`), {
        timeoutMs: 10_000,
        maxResponseBytes: big.length
      })
      assert.isTrue(bytesEqual(exact.body, big))
    }))

  it.scopedLive("a HEAD answer announcing a length over maxResponseBytes has an empty body, not an oversized one", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => {
        res.writeHead(200, { "content-length": 1024 * 1024 })
        res.end()
      })
      const transport = yield* makeTransport
      const head = yield* transport.send(HttpClientRequest.head(server.url), {
        timeoutMs: 10_000,
        maxResponseBytes: 1024
      })
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.headers["content-length"], String(1024 * 1024))
      assert.strictEqual(head.body?.length, 0)
    }))

  it.scopedLive("a slow body (headers at once, the body trickling) arrives within the timeout", () =>
    Effect.gen(function*() {
      const parts = ["one,", "two,", "three,", "four"]
      const server = yield* serve((_req, res) => {
        res.writeHead(200, { "content-type": "text/plain" })
        res.flushHeaders()
        let i = 0
        const next = () => {
          const part = parts[i++]
          if (part === undefined) return res.end()
          res.write(part)
          setTimeout(next, 20)
        }
        next()
      })
      const transport = yield* makeTransport
      const response = yield* transport.send(HttpClientRequest.get(server.url), roomy)
      assert.strictEqual(utf8(response.body), parts.join(""))
    }))

  it.scopedLive("a server that never answers gives a Timeout, and the request is abandoned", () =>
    Effect.gen(function*() {
      const server = yield* serve(() => {})
      const transport = yield* makeTransport
      const error = yield* Effect.flip(
        transport.send(HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyUnsafeJson({ a: 1 })), {
          timeoutMs: 100,
          maxResponseBytes: 1024
        })
      )
      assert.strictEqual(error._tag, "TransportError")
      assert.strictEqual(error.reason, "Timeout")
      yield* wait(server.seen[0]!.abandoned)
    }))

  it.scopedLive("a body that stops mid-way gives a Timeout", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => {
        res.writeHead(200, { "content-length": 100 })
        res.write("only part of it")
      })
      const transport = yield* makeTransport
      const error = yield* Effect.flip(
        transport.send(HttpClientRequest.get(server.url), { timeoutMs: 100, maxResponseBytes: 1024 })
      )
      assert.strictEqual(error.reason, "Timeout")
      yield* wait(server.seen[0]!.abandoned)
    }))

  it.scopedLive("a connection reset by the server gives Network", () =>
    Effect.gen(function*() {
      const server = yield* serve((req) => req.socket.destroy())
      const transport = yield* makeTransport
      const error = yield* Effect.flip(transport.send(HttpClientRequest.get(server.url), roomy))
      assert.strictEqual(error._tag, "TransportError")
      assert.strictEqual(error.reason, "Network")
      assert.isString(error.code)
    }))

  it.scopedLive("a refused connection gives Network with code ECONNREFUSED", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const transport = yield* makeTransport
      const error = yield* Effect.flip(transport.send(HttpClientRequest.get(`http://127.0.0.1:${port}/`), roomy))
      assert.strictEqual(error.reason, "Network")
      assert.strictEqual(error.code, "ECONNREFUSED")
    }))

  it.scopedLive("a request that cannot be sent (header value, header name, URL, body kind) is InvalidRequest and never reaches the server", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const transport = yield* makeTransport
      const invalid = [
        HttpClientRequest.get(server.url).pipe(HttpClientRequest.setHeader("x-bad", "a\nb")),
        HttpClientRequest.get(server.url).pipe(HttpClientRequest.setHeader("bad name", "v")),
        HttpClientRequest.get("not a url"),
        HttpClientRequest.post(server.url).pipe(
          HttpClientRequest.setBody({ _tag: "Raw", body: { an: "object" } } as never)
        )
      ]
      for (const request of invalid) {
        const error = yield* Effect.flip(transport.send(request, roomy))
        assert.strictEqual(error.reason, "InvalidRequest", error.message)
      }
      // and the transport still works
      const ok = yield* transport.send(HttpClientRequest.get(server.url), roomy)
      assert.strictEqual(ok.status, 200)
      assert.strictEqual(server.seen.length, 1)
    }))

  it.scopedLive("an InvalidRequest's message never shows a secret of the URL (userinfo, token parameters)", () =>
    Effect.gen(function*() {
      const transport = yield* makeTransport
      const requests = [
        HttpClientRequest.get("ftp://user:hunter2@example.com/x?token=s3cret&page=2"),
        HttpClientRequest.get("http://[hunter2"),
        HttpClientRequest.get("ftp://example.com/x").pipe(HttpClientRequest.setUrlParam("api_key", "s3cret"))
      ]
      for (const request of requests) {
        const error = yield* Effect.flip(transport.send(request, roomy))
        assert.strictEqual(error.reason, "InvalidRequest", error.message)
        assert.notInclude(error.message, "hunter2")
        assert.notInclude(error.message, "s3cret")
      }
    }))

  it.scopedLive("interruption aborts the request: the server sees the connection close", () =>
    Effect.gen(function*() {
      const server = yield* serve(() => {})
      const transport = yield* makeTransport
      const fiber = yield* Effect.fork(
        transport.send(HttpClientRequest.get(server.url), { timeoutMs: Infinity, maxResponseBytes: 1024 })
      )
      yield* wait(server.arrived)
      yield* Fiber.interrupt(fiber)
      yield* wait(server.seen[0]!.abandoned)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(exit._tag === "Failure")
    }))

  // undici (pipelining 1) puts a socket back in its pool one event-loop turn after a response
  // ends (client-h1 onMessageComplete: `setImmediate(client[kResume])`, "to make sure that
  // non-spec compliant servers are not closing the connection"); a request sent before that
  // turn gets a second connection. So: with a turn between requests, one socket; back to back,
  // two sockets taking turns, never one per request.
  it.scopedLive("keep-alive: sequential requests share one connection (two when sent back to back)", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const transport = yield* makeTransport
      const post = (i: number) =>
        transport.send(HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyUnsafeJson({ i })), roomy)
      for (let i = 0; i < 10; i++) {
        assert.strictEqual((yield* post(i)).status, 200)
        yield* nextTurn
      }
      assert.strictEqual(server.seen.length, 10)
      assert.strictEqual(server.sockets(), 1)
      for (let i = 0; i < 10; i++) assert.strictEqual((yield* post(i)).status, 200)
      assert.strictEqual(server.seen.length, 20)
      assert.isAtMost(server.sockets(), 2)
    }))
})

// ---------------------------------------------------------------------------------------
// the lean HttpClient face, and `of`
// ---------------------------------------------------------------------------------------

describe("Transport: the lean HttpClient and of", () => {
  it.scopedLive("layer() provides a working HttpClient (execute, json, text, stream, headers, cookies)", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res, seen) => {
        if (seen.path === "/json") {
          res.writeHead(201, { "content-type": "application/json", "set-cookie": ["a=1; Path=/", "b=2; Path=/"] })
          res.end(JSON.stringify({ echo: JSON.parse(seen.body.toString("utf8")) }))
        } else if (seen.path === "/empty") {
          res.writeHead(204)
          res.end()
        } else {
          text(res, 200, "plain")
        }
      })
      const context = yield* Layer.build(Transport.layer())
      const client = Context.get(context, HttpClient.HttpClient)

      const response = yield* client.execute(
        HttpClientRequest.post(`${server.url}/json`).pipe(HttpClientRequest.bodyUnsafeJson({ n: 1 }))
      )
      assert.strictEqual(response.status, 201)
      assert.strictEqual(response.headers["content-type"], "application/json")
      assert.deepStrictEqual(yield* response.json, { echo: { n: 1 } })
      assert.deepStrictEqual(Object.keys(response.cookies.cookies).sort(), ["a", "b"])

      const plain = yield* client.get(`${server.url}/plain`)
      assert.strictEqual(yield* plain.text, "plain")
      const streamed = yield* client.get(`${server.url}/plain`).pipe(
        Effect.flatMap((r) => Stream.runCollect(r.stream)),
        Effect.map((chunks) => Buffer.concat(Array.from(chunks)).toString("utf8"))
      )
      assert.strictEqual(streamed, "plain")
      const empty = yield* client.get(`${server.url}/empty`)
      assert.strictEqual(empty.status, 204)
      assert.strictEqual((yield* empty.arrayBuffer).byteLength, 0)
      assert.isAtMost(server.sockets(), 2) // see the keep-alive case above

      // errors are HttpClientErrors: Transport for the network, Encode for a request that cannot be sent
      const port = yield* closedPort
      const refused = yield* Effect.flip(client.get(`http://127.0.0.1:${port}/`))
      assert.isTrue(refused._tag === "RequestError" && refused.reason === "Transport")
      const bad = yield* Effect.flip(
        client.execute(HttpClientRequest.get(server.url).pipe(HttpClientRequest.setHeader("x", "a\nb")))
      )
      assert.isTrue(bad._tag === "RequestError" && bad.reason === "Encode")
    }))

  it.scopedLive("of(lean client) is the lean transport; of(any other client) is an adapter, cached per client", () =>
    Effect.gen(function*() {
      const { client, transport } = yield* Transport.make()
      assert.strictEqual(Transport.of(client), transport)
      assert.isTrue(Transport.isLean(client))

      const leanFromLayer = Context.get(yield* Layer.build(Transport.layer()), HttpClient.HttpClient)
      assert.isTrue(Transport.isLean(leanFromLayer))
      if (Transport.isLean(leanFromLayer)) {
        assert.strictEqual(Transport.of(leanFromLayer), leanFromLayer[Transport.TypeId])
      }

      const other = Context.get(yield* Layer.build(NodeHttpClient.layerUndici), HttpClient.HttpClient)
      assert.isFalse(Transport.isLean(other))
      const adapter = Transport.of(other)
      assert.notStrictEqual(adapter, transport)
      assert.strictEqual(Transport.of(other), adapter)
      assert.strictEqual(adapter[Transport.TypeId], Transport.TypeId)

      // a derived client is another client: it gets an adapter (which goes through the lean one)
      const derived = client.pipe(HttpClient.mapRequest(HttpClientRequest.setHeader("x-derived", "1")))
      assert.isFalse(Transport.isLean(derived))
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const response = yield* Transport.of(derived).send(HttpClientRequest.get(server.url), roomy)
      assert.strictEqual(utf8(response.body), "ok")
      assert.strictEqual(server.seen[0]!.headers["x-derived"], "1")
    }))

  // Lean only: the platform's undici client passes Node's global FormData to the npm undici,
  // whose encoder brand-checks its own class and fails ("action is not a function").
  it.scopedLive("a FormData body (Node's global one and undici's) arrives as multipart", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const { transport } = yield* Transport.make()
      const Undici = yield* Effect.promise(() => import("@effect/platform-node/Undici"))
      for (const form of [new FormData(), new Undici.FormData()]) {
        form.append("field", "value")
        // Cast: undici's FormData class is typed apart from the global one; both are spec FormData.
        const request = HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyFormData(form as FormData))
        const send = transport.send(request, roomy)
        assert.strictEqual((yield* send).status, 200)
        assert.strictEqual((yield* send).status, 200) // run again: encoded again, with its own boundary
      }
      for (const seen of server.seen) {
        const boundary = /^multipart\/form-data; boundary=(.+)$/.exec(seen.headers["content-type"] ?? "")?.[1]
        assert.isString(boundary)
        const body = seen.body.toString("utf8")
        assert.include(body, `--${boundary}\r\n`)
        assert.include(body, "name=\"field\"\r\n\r\nvalue\r\n")
      }
      assert.strictEqual(server.seen.length, 4)
    }))

  it.scopedLive("make({ connections: 1 }): back-to-back requests queue on one connection", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const { transport } = yield* Transport.make({ connections: 1 })
      const get = transport.send(HttpClientRequest.get(server.url), roomy)
      for (let i = 0; i < 10; i++) assert.strictEqual((yield* get).status, 200)
      const all = yield* Effect.all(Array.from({ length: 10 }, () => get), { concurrency: "unbounded" })
      for (const response of all) assert.strictEqual(response.status, 200)
      assert.strictEqual(server.seen.length, 20)
      assert.strictEqual(server.sockets(), 1)
    }))

  it.scopedLive("make({ dispatcher }) sends through it and leaves it open", () =>
    Effect.gen(function*() {
      const server = yield* serve((_req, res) => text(res, 200, "ok"))
      const Undici = yield* Effect.promise(() => import("@effect/platform-node/Undici"))
      const agent = new Undici.Agent()
      yield* Effect.addFinalizer(() => Effect.promise(() => agent.destroy()))
      yield* Effect.scoped(
        Effect.flatMap(Transport.make({ dispatcher: agent }), ({ transport }) =>
          transport.send(HttpClientRequest.get(server.url), roomy))
      )
      assert.isFalse(agent.destroyed)
      assert.isFalse(agent.closed)
      const again = yield* Effect.promise(() =>
        agent.request({ origin: server.url, path: "/", method: "GET" })
      )
      assert.strictEqual(again.statusCode, 200)
      yield* Effect.promise(() => again.body.text())
    }))
})
