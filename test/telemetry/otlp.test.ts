/**
 * Traces checked by a real OTLP receiver (issue 13, item 4): `@elastic/mockotlpserver` (a
 * standalone OTLP/HTTP receiver from npm, decoding the requests with the OTLP protobuf/JSON
 * definitions) listens on 127.0.0.1; the whole application (`Main.provide`, as `fanout serve`
 * runs it) exports to it with `OTEL_EXPORTER_OTLP_ENDPOINT` semantics; one POST with a
 * producer's `traceparent` is delivered to two loopback targets (one answers 503 once). The spans
 * the receiver got must form one trace: producer → `http.server POST` → `fanout.enqueue` →
 * `fanout.attempt` (per attempt) → `http.client POST`, with the attributes docs/operations.md
 * lists, and no secret of a target URL (its query token) in any attribute.
 */
import { MockOtlpServer, normalizeTrace } from "@elastic/mockotlpserver"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schedule, Scope } from "effect"
import { reply, startServer } from "../integration/helpers.js"
import { prepare, request, start } from "../Main.helpers.js"

interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: string
  readonly attributes: Readonly<Record<string, unknown>>
  readonly service: unknown
}

const receiver = Effect.acquireRelease(
  Effect.promise(async () => {
    const spans: Array<Span> = []
    const server = new MockOtlpServer({
      logLevel: "warn",
      services: ["http"],
      httpHostname: "127.0.0.1",
      httpPort: 0,
      onTrace: (raw) => {
        for (const resource of normalizeTrace(raw).resourceSpans) {
          const service = resource.resource?.attributes?.["service.name"]
          for (const scope of resource.scopeSpans) {
            for (const s of scope.spans) {
              spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                ...(s.parentSpanId !== undefined && s.parentSpanId !== "" ? { parentSpanId: s.parentSpanId } : {}),
                name: s.name,
                kind: s.kind,
                attributes: s.attributes ?? {},
                service
              })
            }
          }
        }
      }
    })
    await server.start()
    return { server, spans, url: String(server.httpUrl).replace(/\/$/, "") }
  }),
  ({ server }) => Effect.promise(() => server.close())
)

describe("telemetry: OTLP/HTTP to a real receiver", () => {
  it.scopedLive(
    "one POST is one trace in the receiver: request → enqueue → attempts → client requests",
    () =>
      Effect.gen(function*() {
        const otlp = yield* receiver
        const targets = yield* startServer((_req, res, r) => reply(res, r.path === "/b" && r.nth === 1 ? 503 : 200))
        const app = yield* prepare({
          server: { port: 0 },
          store: { memory: true },
          targets: {
            a: { url: `${targets.url}/a?token=s3cret-token` },
            b: { url: `${targets.url}/b`, retry: { initialDelay: "20 millis", maxDelay: "50 millis" } }
          },
          routes: { "order.*": ["a", "b"] }
        })
        // The application in a scope of its own: closing it flushes the batch span processor.
        const scope = yield* Scope.make()
        const url = yield* start({ ...app, otlpEndpoint: otlp.url }, { worker: { pollInterval: "50 millis" } }).pipe(
          Scope.extend(scope)
        )
        const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
        const producer = "00f067aa0ba902b7"
        const posted = yield* request(`${url}/v1/events`, {
          method: "POST",
          json: { id: "otlp-1", type: "order.placed", payload: { orderId: "o-1" } },
          headers: { traceparent: `00-${traceId}-${producer}-01` }
        })
        assert.strictEqual(posted.status, 202, posted.text)
        yield* targets.until(
          () => targets.on("/a?token=s3cret-token").length >= 1 && targets.on("/b").length >= 2,
          "20 seconds"
        )
        yield* Scope.close(scope, Exit.void)
        // The receiver answered the exporter before the flush returned; wait for its callback all the same.
        yield* Effect.suspend(() =>
          otlp.spans.filter((s) => s.name === "fanout.attempt").length >= 3 ? Effect.void : Effect.fail("not yet")
        ).pipe(
          Effect.retry(Schedule.spaced("20 millis")),
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("the attempt spans never arrived") })
        )

        const spans = otlp.spans.filter((s) => s.traceId === traceId)
        const byId = new Map(spans.map((s) => [s.spanId, s] as const))
        const parentOf = (s: Span) => (s.parentSpanId === undefined ? undefined : byId.get(s.parentSpanId))
        const ancestors = (s: Span): Array<Span> => {
          const chain: Array<Span> = []
          for (let p = parentOf(s); p !== undefined; p = parentOf(p)) chain.push(p)
          return chain
        }
        assert.isTrue(spans.every((s) => s.service === "fanout"), "service.name is fanout")

        // The request: a server span, child of the producer's span.
        const server = spans.filter((s) => s.kind === "SPAN_KIND_SERVER" && s.attributes["url.path"] === "/v1/events")
        assert.strictEqual(server.length, 1, JSON.stringify(spans.map((s) => s.name)))
        assert.strictEqual(server[0]!.name, "http.server POST")
        assert.strictEqual(server[0]!.parentSpanId, producer)
        assert.strictEqual(server[0]!.attributes["http.request.method"], "POST")
        assert.strictEqual(server[0]!.attributes["http.response.status_code"], 202)

        // The enqueue: a direct child of the request, with the event's id and type.
        const enqueue = spans.filter((s) => s.name === "fanout.enqueue")
        assert.strictEqual(enqueue.length, 1)
        assert.strictEqual(enqueue[0]!.parentSpanId, server[0]!.spanId)
        assert.strictEqual(enqueue[0]!.attributes["fanout.event.id"], "otlp-1")
        assert.strictEqual(enqueue[0]!.attributes["fanout.event.type"], "order.placed")

        // Every attempt (a: 1, b: 2), under the enqueue, across the store and the worker.
        const attempts = spans.filter((s) => s.name === "fanout.attempt")
        assert.deepStrictEqual(
          attempts.map((s) => `${s.attributes["fanout.target"]}#${s.attributes["fanout.attempt"]}`).sort(),
          ["a#1", "b#1", "b#2"]
        )
        for (const attempt of attempts) {
          assert.isTrue(ancestors(attempt).includes(enqueue[0]!), "an attempt is under the enqueue")
          assert.strictEqual(attempt.attributes["fanout.event.id"], "otlp-1")
          assert.isString(attempt.attributes["fanout.delivery.id"])
          assert.strictEqual(
            attempt.attributes["fanout.idempotency_key"],
            `otlp-1:${attempt.attributes["fanout.target"]}`
          )
          assert.isString(attempt.attributes["fanout.worker.id"])
        }

        // One client span per request a target received, child of its attempt; its traceparent is
        // what the target got; the URL without the query (the token) and without userinfo.
        const clients = spans.filter((s) => s.kind === "SPAN_KIND_CLIENT")
        assert.strictEqual(clients.length, 3)
        for (const client of clients) {
          assert.strictEqual(client.name, "http.client POST")
          assert.strictEqual(parentOf(client)?.name, "fanout.attempt")
          assert.strictEqual(client.attributes["http.request.method"], "POST")
          assert.match(String(client.attributes["url.full"]), /^http:\/\/127\.0\.0\.1:\d+\/[ab]$/)
          assert.include([200, 503], client.attributes["http.response.status_code"])
        }
        for (const received of targets.received) {
          const [, tid, parent] = String(received.headers["traceparent"]).split("-")
          assert.strictEqual(tid, traceId)
          assert.include(clients.map((c) => c.spanId), parent, `${received.path}: its traceparent is a client span`)
        }
        assert.notInclude(JSON.stringify(otlp.spans), "s3cret-token", "no span carries the target URL's token")
      }),
    { timeout: 90_000 }
  )
})
