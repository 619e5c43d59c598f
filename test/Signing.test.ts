import { randomBytes } from "node:crypto"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Layer, Logger, Redacted, TestClock } from "effect"
import { Webhook } from "standardwebhooks"
import { Event, Signing, Target } from "../src/index.js"

interface Captured {
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
}

/** A real HTTP server on 127.0.0.1:0 that records every request; it answers 503 to the first `failFirst` ones. */
const captureServer = (failFirst: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly requests: Array<Captured>; readonly close: () => void }>((resume) => {
      const requests: Array<Captured> = []
      const server = createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          requests.push({ headers: req.headers, body: Buffer.concat(chunks) })
          const fail = requests.length <= failFirst
          res.writeHead(fail ? 503 : 200, { "content-type": "application/json" })
          res.end(JSON.stringify({ ok: !fail }))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          url: `http://127.0.0.1:${port}/hook`,
          requests,
          close: () => {
            server.closeAllConnections()
            server.close()
          }
        }))
      })
    }),
    (server) => Effect.sync(server.close)
  )

const webhookHeaders = (captured: Captured): Record<string, string> => ({
  "webhook-id": String(captured.headers["webhook-id"]),
  "webhook-timestamp": String(captured.headers["webhook-timestamp"]),
  "webhook-signature": String(captured.headers["webhook-signature"])
})

// Real time on purpose: `standardwebhooks` checks the timestamp against the wall clock (±5 min).
describe("Signing (Standard Webhooks), over real HTTP on loopback", () => {
  it.scopedLive("a signed delivery verifies with the stock standardwebhooks package; webhook-id is the idempotency key, stable across a retry", () =>
    Effect.gen(function*() {
      const secret = "whsec_" + randomBytes(24).toString("base64")
      const server = yield* captureServer(1)
      const Hook = Target.make("signed", {
        request: (event) => HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyUnsafeJson(event.payload)),
        signingSecret: Redacted.make(secret),
        policy: { retry: { initialDelay: 20, jitter: "none" }, circuitBreaker: false }
      })
      const event = yield* Event.make("order.placed", { orderId: "o-1", note: "héllo ✓" })
      const delivered = yield* Effect.flatMap(Hook.tag, (runtime) => runtime.deliver(event)).pipe(
        Effect.provide(Hook.layer.pipe(Layer.provide(NodeHttpClient.layerUndici)))
      )
      assert.strictEqual(delivered.attempts, 2)
      assert.strictEqual(server.requests.length, 2)

      const key = `${event.id}:signed`
      const wh = new Webhook(secret)
      for (const captured of server.requests) {
        assert.strictEqual(captured.headers["idempotency-key"], key)
        assert.strictEqual(captured.headers["webhook-id"], key)
        const headers = webhookHeaders(captured)
        assert.match(headers["webhook-signature"]!, /^v1,[A-Za-z0-9+/]+=*$/)
        assert.isTrue(Math.abs(Number(headers["webhook-timestamp"]) - Date.now() / 1000) < 300)
        // The stock verifier accepts the raw body as sent...
        assert.deepStrictEqual(wh.verify(captured.body.toString("utf8"), headers), event.payload)
        assert.deepStrictEqual(wh.verify(captured.body, headers), event.payload)
        // ...and rejects a tampered body, a tampered id, or another secret.
        const tampered = captured.body.toString("utf8").replace("o-1", "o-2")
        assert.notStrictEqual(tampered, captured.body.toString("utf8"))
        assert.throws(() => wh.verify(tampered, headers))
        assert.throws(() => wh.verify(captured.body, { ...headers, "webhook-id": `${key}x` }))
        assert.throws(() => new Webhook("whsec_" + randomBytes(24).toString("base64")).verify(captured.body, headers))
      }
      // Same message id on the retry; identical bodies.
      assert.strictEqual(server.requests[0]!.headers["webhook-id"], server.requests[1]!.headers["webhook-id"])
      assert.isTrue(server.requests[0]!.body.equals(server.requests[1]!.body))
    }))

  it("Signing.sign matches standardwebhooks' own signer; a non-whsec secret uses its UTF-8 bytes", () => {
    const raw = randomBytes(24)
    const secret = "whsec_" + raw.toString("base64")
    assert.isTrue(Signing.keyOf(secret).equals(raw))
    assert.isTrue(Signing.keyOf(Redacted.make(secret)).equals(raw))
    assert.isTrue(Signing.keyOf("plain-secret").equals(Buffer.from("plain-secret", "utf8")))
    const body = JSON.stringify({ a: 1, b: "ü" })
    const ts = 1_700_000_000
    const headers = Signing.sign(Signing.keyOf(secret), "msg_1", ts, body)
    assert.strictEqual(headers["webhook-id"], "msg_1")
    assert.strictEqual(headers["webhook-timestamp"], String(ts))
    assert.strictEqual(headers["webhook-signature"], new Webhook(secret).sign("msg_1", new Date(ts * 1000), body))
    // Bytes or string: the same signature.
    assert.strictEqual(
      Signing.sign(Signing.keyOf(secret), "msg_1", ts, new TextEncoder().encode(body))["webhook-signature"],
      headers["webhook-signature"]
    )
  })
})

const newSecret = () => "whsec_" + randomBytes(24).toString("base64")

describe("Signing: the Standard Webhooks reference vector", () => {
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
  const id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
  const timestamp = 1614265330
  const body = "{\"test\": 2432232314}"
  const expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

  it("Signing.sign gives the reference signature", () => {
    assert.deepStrictEqual(Signing.sign(Signing.keyOf(secret), id, timestamp, body), {
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": expected
    })
    assert.strictEqual(Signing.sign([Signing.keyOf(secret)], id, timestamp, body)["webhook-signature"], expected)
  })

  it.effect("Signing.verify accepts it at its timestamp (TestClock), and names what it carried", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(timestamp * 1000 + 10_000)
      const headers = { "webhook-id": id, "webhook-timestamp": String(timestamp), "webhook-signature": expected }
      assert.deepStrictEqual(yield* Signing.verify({ headers, body, secret }), { id, timestamp })
      // Header names in any case; a signature list with other versions and other secrets' signatures.
      const mixed = {
        "Webhook-Id": id,
        "WEBHOOK-TIMESTAMP": String(timestamp),
        "Webhook-Signature": `v2,AAAA v1,${randomBytes(32).toString("base64")} ${expected}`
      }
      assert.deepStrictEqual(yield* Signing.verify({ headers: mixed, body, secret }), { id, timestamp })
    }))
})

/** An HttpClient that answers 200 `{}` to every request and records what it was sent. */
const recordingClient = () => {
  const sent: Array<{ readonly headers: Readonly<Record<string, string>>; readonly body: Uint8Array }> = []
  const client = HttpClient.make((request) => {
    sent.push({
      headers: request.headers,
      body: request.body._tag === "Uint8Array" ? request.body.body : new Uint8Array()
    })
    return Effect.succeed(HttpClientResponse.fromWeb(
      request,
      new Response("{}", { status: 200, headers: { "content-type": "application/json" } })
    ))
  })
  return { sent, layer: Layer.succeed(HttpClient.HttpClient, client) }
}

const signatures = (header: string | undefined): Array<string> => (header ?? "").split(" ")

describe("Signing: rotation, several secrets", () => {
  it.scopedLive("two secrets → two signatures on a real request; standardwebhooks accepts it with either secret, not a third", () =>
    Effect.gen(function*() {
      const next = newSecret()
      const current = newSecret()
      const server = yield* captureServer(0)
      const Hook = Target.make("rotating", {
        request: (event) => HttpClientRequest.post(server.url).pipe(HttpClientRequest.bodyUnsafeJson(event.payload)),
        signingSecret: [Redacted.make(next), { secret: Redacted.make(current), until: "2999-01-01T00:00:00Z" }],
        policy: { retry: { maxAttempts: 1 }, circuitBreaker: false }
      })
      const event = yield* Event.make("order.placed", { orderId: "o-7" })
      yield* Effect.flatMap(Hook.tag, (runtime) => runtime.deliver(event)).pipe(
        Effect.provide(Hook.layer.pipe(Layer.provide(NodeHttpClient.layerUndici)))
      )
      assert.strictEqual(server.requests.length, 1)
      const captured = server.requests[0]!
      const headers = webhookHeaders(captured)
      const sigs = signatures(headers["webhook-signature"])
      assert.strictEqual(sigs.length, 2)
      for (const sig of sigs) assert.match(sig, /^v1,[A-Za-z0-9+/]+=*$/)
      // Newest first: each is the signature of its own secret.
      const id = headers["webhook-id"]!
      const ts = Number(headers["webhook-timestamp"])
      assert.strictEqual(sigs[0], Signing.sign(Signing.keyOf(next), id, ts, captured.body)["webhook-signature"])
      assert.strictEqual(sigs[1], Signing.sign(Signing.keyOf(current), id, ts, captured.body)["webhook-signature"])
      assert.deepStrictEqual(new Webhook(next).verify(captured.body.toString("utf8"), headers), event.payload)
      assert.deepStrictEqual(new Webhook(current).verify(captured.body.toString("utf8"), headers), event.payload)
      assert.throws(() => new Webhook(newSecret()).verify(captured.body.toString("utf8"), headers))
      // Signing.verify, on the wall clock like the request: with either secret, or with the list.
      // (Node's IncomingHttpHeaders as received, too.)
      for (const secret of [next, current, [next, current]]) {
        assert.strictEqual((yield* Signing.verify({ headers, body: captured.body, secret })).id, id)
        assert.strictEqual((yield* Signing.verify({ headers: captured.headers, body: captured.body, secret })).id, id)
      }
    }))

  it.effect("an entry whose until is past (TestClock) is dropped; when all are past, the newest signs and a warning is logged once", () =>
    Effect.gen(function*() {
      const a = newSecret()
      const b = newSecret()
      const c = newSecret()
      const recorder = recordingClient()
      const lines: Array<string> = []
      const logger = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) =>
          void lines.push(`${logLevel.label} ${String(Array.isArray(message) ? message.join(" ") : message)}`)
        )
      )
      const Hook = Target.make("rotating", {
        request: () =>
          HttpClientRequest.post("http://rotating.test/hook").pipe(HttpClientRequest.bodyUnsafeJson({ n: 1 })),
        signingSecret: [
          { secret: a, until: DateTime.unsafeMake("2026-06-01T00:00:00Z") },
          { secret: b, until: "2026-05-01T00:00:00Z" },
          { secret: c, until: new Date("2026-04-01T00:00:00Z") }
        ],
        policy: { retry: { maxAttempts: 1 }, circuitBreaker: false }
      })
      const deliverAt = (iso: string) =>
        Effect.gen(function*() {
          yield* TestClock.setTime(Date.parse(iso))
          const event = yield* Event.make("order.placed", { n: 1 })
          yield* Effect.flatMap(Hook.tag, (runtime) => runtime.deliver(event))
          const last = recorder.sent[recorder.sent.length - 1]!
          const id = last.headers["webhook-id"]!
          const ts = Number(last.headers["webhook-timestamp"])
          assert.strictEqual(ts, Math.floor(Date.parse(iso) / 1000))
          const expected = (secrets: ReadonlyArray<string>) =>
            secrets.map((s) => Signing.sign(Signing.keyOf(s), id, ts, last.body)["webhook-signature"])
          return { got: signatures(last.headers["webhook-signature"]), expected }
        })
      yield* Effect.gen(function*() {
        const before = yield* deliverAt("2026-03-01T00:00:00Z")
        assert.deepStrictEqual(before.got, before.expected([a, b, c]))
        // `until` itself still signs; one millisecond later it does not.
        const atUntil = yield* deliverAt("2026-04-01T00:00:00.000Z")
        assert.deepStrictEqual(atUntil.got, atUntil.expected([a, b, c]))
        const after = yield* deliverAt("2026-04-01T00:00:00.001Z")
        assert.deepStrictEqual(after.got, after.expected([a, b]))
        const later = yield* deliverAt("2026-05-15T00:00:00Z")
        assert.deepStrictEqual(later.got, later.expected([a]))
        assert.isFalse(lines.some((line) => line.startsWith("WARN")))
        const expired = yield* deliverAt("2026-07-01T00:00:00Z")
        assert.deepStrictEqual(expired.got, expired.expected([a]))
        yield* deliverAt("2026-08-01T00:00:00Z")
        const warnings = lines.filter((line) => line.startsWith("WARN"))
        assert.strictEqual(warnings.length, 1)
        assert.include(warnings[0], "every signing secret is past its \"until\"")
        for (const secret of [a, b, c]) assert.isFalse(lines.some((line) => line.includes(secret.slice(6, 20))))
      }).pipe(Effect.provide(Layer.merge(Hook.layer.pipe(Layer.provide(recorder.layer)), logger)))
      assert.strictEqual(recorder.sent.length, 6)
    }))

  it("an empty list, or an until that is not an instant, throws at declaration without the secret", () => {
    const request = () => HttpClientRequest.post("http://x.test/")
    assert.throws(() => Target.make("t", { request, signingSecret: [] }), /at least one secret/)
    for (const until of ["2026-01-01", "2026-01-01T00:00:00", "tomorrow"]) {
      assert.throws(
        () => Target.make("t", { request, signingSecret: ["whsec_AAAA", { secret: "whsec_SECRETVALUE", until }] }),
        /signingSecret\[1\]\.until: Expected an ISO 8601 instant/
      )
    }
    assert.throws(
      () => Target.make("t", { request, signingSecret: [{ secret: "s", until: new Date(Number.NaN) }] }),
      /invalid Date/
    )
  })
})

describe("Signing.verify", () => {
  const secret = newSecret()
  const body = JSON.stringify({ orderId: "o-1", total: 12.5 })
  const at = 1_800_000_000
  const signed = Signing.sign(Signing.keyOf(secret), "msg_1", at, body)
  const reasonOf = (options: Signing.VerifyOptions) =>
    Effect.flip(Signing.verify(options)).pipe(Effect.map((error) => error.reason))

  it.effect("round trip: what sign produced verifies, within the tolerance either way", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(at * 1000)
      assert.deepStrictEqual(yield* Signing.verify({ headers: signed, body, secret }), { id: "msg_1", timestamp: at })
      assert.deepStrictEqual(
        yield* Signing.verify({ headers: signed, body: new TextEncoder().encode(body), secret: Redacted.make(secret) }),
        { id: "msg_1", timestamp: at }
      )
      yield* TestClock.setTime((at + 300) * 1000)
      assert.strictEqual((yield* Signing.verify({ headers: signed, body, secret })).id, "msg_1")
      yield* TestClock.setTime((at - 300) * 1000)
      assert.strictEqual((yield* Signing.verify({ headers: signed, body, secret })).id, "msg_1")
      // A plain (non-whsec) secret: its UTF-8 bytes are the key, both ways.
      const plain = Signing.sign(Signing.keyOf("plain-secret"), "msg_2", at, body)
      assert.strictEqual((yield* Signing.verify({ headers: plain, body, secret: "plain-secret" })).id, "msg_2")
    }))

  it.effect("wrong secret, tampered body, id or timestamp: NoMatch", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(at * 1000)
      assert.strictEqual(yield* reasonOf({ headers: signed, body, secret: newSecret() }), "NoMatch")
      assert.strictEqual(yield* reasonOf({ headers: signed, body: body.replace("12.5", "125"), secret }), "NoMatch")
      assert.strictEqual(yield* reasonOf({ headers: { ...signed, "webhook-id": "msg_2" }, body, secret }), "NoMatch")
      assert.strictEqual(
        yield* reasonOf({ headers: { ...signed, "webhook-timestamp": String(at + 1) }, body, secret }),
        "NoMatch"
      )
      // A truncated signature, or only another version's.
      const sig = signed["webhook-signature"]
      assert.strictEqual(
        yield* reasonOf({ headers: { ...signed, "webhook-signature": sig.slice(0, -4) }, body, secret }),
        "NoMatch"
      )
      assert.strictEqual(
        yield* reasonOf({ headers: { ...signed, "webhook-signature": sig.replace("v1,", "v2,") }, body, secret }),
        "NoMatch"
      )
    }))

  it.effect("stale or future timestamp (TestClock, default tolerance 5 minutes, or the one given); missing headers; a bad timestamp", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime((at + 301) * 1000)
      assert.strictEqual(yield* reasonOf({ headers: signed, body, secret }), "TimestampTooOld")
      assert.strictEqual(
        (yield* Signing.verify({ headers: signed, body, secret, tolerance: "10 minutes" })).id,
        "msg_1"
      )
      yield* TestClock.setTime((at - 301) * 1000)
      assert.strictEqual(yield* reasonOf({ headers: signed, body, secret }), "TimestampTooNew")
      yield* TestClock.setTime(at * 1000 + 1500)
      assert.strictEqual(yield* reasonOf({ headers: signed, body, secret, tolerance: "1 second" }), "TimestampTooOld")
      yield* TestClock.setTime(at * 1000)
      const { "webhook-signature": _s, ...unsigned } = signed
      const missing = yield* Effect.flip(Signing.verify({ headers: unsigned, body, secret }))
      assert.strictEqual(missing._tag, "SignatureError")
      assert.strictEqual(missing.reason, "MissingHeader")
      assert.include(missing.message, "webhook-signature")
      assert.strictEqual(
        yield* reasonOf({ headers: { ...signed, "webhook-timestamp": "12.5" }, body, secret }),
        "InvalidTimestamp"
      )
    }))

  it.effect("with a list, any live secret is accepted; one past its until is not", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(at * 1000)
      const old = newSecret()
      const byOld = Signing.sign(Signing.keyOf(old), "msg_3", at, body)
      const live = [secret, { secret: old, until: DateTime.unsafeMake((at + 60) * 1000) }] as const
      assert.strictEqual((yield* Signing.verify({ headers: byOld, body, secret: live })).id, "msg_3")
      assert.strictEqual((yield* Signing.verify({ headers: signed, body, secret: live })).id, "msg_1")
      const retired = [secret, { secret: old, until: DateTime.unsafeMake((at - 60) * 1000) }] as const
      assert.strictEqual(yield* reasonOf({ headers: byOld, body, secret: retired }), "NoMatch")
      assert.strictEqual((yield* Signing.verify({ headers: signed, body, secret: retired })).id, "msg_1")
    }))
})
