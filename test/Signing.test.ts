import { randomBytes } from "node:crypto"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
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
