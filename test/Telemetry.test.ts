/**
 * Telemetry of the whole application (built by the composition root, in this process, on real
 * loopback HTTP): traces across the outbox, W3C `traceparent` in and out, Prometheus text that
 * `promtool` accepts, OTLP export, and the trace context carried through the store.
 */
import { spawnSync } from "node:child_process"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { SpanKind } from "@opentelemetry/api"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Effect, Schedule } from "effect"
import type { Duration } from "effect"
import * as Memory from "../src/Store/Memory.js"
import * as Event from "../src/Event.js"
import * as Telemetry from "../src/Telemetry.js"
import { reply, startServer } from "./integration/helpers.js"
import { prepare, request, start } from "./Main.helpers.js"

const hasPromtool = spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0
/** In CI (`CI` set, or FANOUT_REQUIRE_PROMTOOL=1 as .ci/run sets) a missing promtool fails the check instead of skipping it. */
const promtoolRequired =
  (process.env["CI"] !== undefined && process.env["CI"] !== "" && process.env["CI"] !== "false") ||
  process.env["FANOUT_REQUIRE_PROMTOOL"] === "1"
if (!hasPromtool && !promtoolRequired) {
  console.warn(
    "SKIPPED test/Telemetry.test.ts `promtool check metrics`: promtool is not installed (Debian: apt-get install prometheus). " +
      "Set FANOUT_REQUIRE_PROMTOOL=1 (or CI) to fail instead."
  )
}

/** Polls (real time) until `predicate` holds; dies with `what` after `timeout`. */
const eventually = (what: string, predicate: () => boolean, timeout: Duration.DurationInput = "20 seconds") =>
  Effect.suspend(() => (predicate() ? Effect.void : Effect.fail("not yet"))).pipe(
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting for ${what}`) }),
    Effect.orDie
  )

const ancestors = (span: ReadableSpan, byId: ReadonlyMap<string, ReadableSpan>): Array<ReadableSpan> => {
  const chain: Array<ReadableSpan> = []
  let parent = span.parentSpanContext?.spanId
  while (parent !== undefined) {
    const next = byId.get(parent)
    if (next === undefined) break
    chain.push(next)
    parent = next.parentSpanContext?.spanId
  }
  return chain
}

describe("Telemetry", () => {
  it.scopedLive(
    "one POST is one trace: the request, the enqueue and every attempt; targets receive its traceparent",
    () =>
      Effect.gen(function*() {
        const exporter = new InMemorySpanExporter()
        // b fails its first attempt (503): the trace must hold both of its attempts.
        const targets = yield* startServer((_req, res, r) => reply(res, r.path === "/b" && r.nth === 1 ? 503 : 200))
        const app = yield* prepare({
          server: { port: 0 },
          store: { memory: true },
          targets: {
            a: { url: `${targets.url}/a` },
            b: { url: `${targets.url}/b`, retry: { initialDelay: "20 millis", maxDelay: "50 millis" } }
          },
          routes: { "order.*": ["a", "b"] }
        })
        const url = yield* start(app, {
          telemetry: { spanProcessors: [new SimpleSpanProcessor(exporter)] },
          worker: { pollInterval: "50 millis" }
        })
        // The producer's own trace context: the server must continue it.
        const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
        const producerSpan = "00f067aa0ba902b7"
        const posted = yield* request(`${url}/v1/events`, {
          method: "POST",
          json: { type: "order.placed", payload: { orderId: "o-1" } },
          headers: { traceparent: `00-${traceId}-${producerSpan}-01` }
        })
        assert.strictEqual(posted.status, 202, posted.text)
        const eventId: string = posted.body.id

        yield* targets.until(() => targets.on("/a").length >= 1 && targets.on("/b").length >= 2, "20 seconds")
        const attemptsOf = (target: string) =>
          exporter.getFinishedSpans().filter((s) =>
            s.name === "fanout.attempt" && s.attributes["fanout.target"] === target
          )
        yield* eventually("the attempt spans", () => attemptsOf("a").length >= 1 && attemptsOf("b").length >= 2)

        const spans = exporter.getFinishedSpans()
        const byId = new Map(spans.map((s) => [s.spanContext().spanId, s] as const))
        const inTrace = spans.filter((s) => s.spanContext().traceId === traceId)

        // The request: a server span whose parent is the producer's span.
        const server = inTrace.filter((s) => s.kind === SpanKind.SERVER && s.attributes["url.path"] === "/v1/events")
        assert.strictEqual(server.length, 1, "one server span for the POST")
        assert.strictEqual(server[0]!.parentSpanContext?.spanId, producerSpan)

        // The enqueue, under the request.
        const enqueue = inTrace.filter((s) =>
          s.name === "fanout.enqueue" && s.attributes["fanout.event.id"] === eventId
        )
        assert.strictEqual(enqueue.length, 1)
        assert.isTrue(ancestors(enqueue[0]!, byId).includes(server[0]!), "enqueue is under the request span")

        // Every attempt of every target, under the enqueue (across the store and the worker).
        const attempts = spans.filter((s) => s.name === "fanout.attempt")
        assert.strictEqual(attempts.filter((s) => s.attributes["fanout.target"] === "a").length, 1)
        assert.strictEqual(attempts.filter((s) => s.attributes["fanout.target"] === "b").length, 2)
        for (const attempt of attempts) {
          assert.strictEqual(
            attempt.spanContext().traceId,
            traceId,
            `attempt of ${attempt.attributes["fanout.target"]} in the trace`
          )
          assert.isTrue(ancestors(attempt, byId).includes(enqueue[0]!), "attempt is under the enqueue span")
        }

        // Each request a target received carries a traceparent of this trace, whose parent is an
        // exported client span under one of the attempts.
        assert.strictEqual(targets.received.length, 3)
        for (const received of targets.received) {
          const header = received.headers["traceparent"]
          assert.isString(header, `${received.path} received a traceparent`)
          const [, tid, parent] = (header as string).split("-")
          assert.strictEqual(tid, traceId)
          const client = byId.get(parent!)
          assert.isDefined(client, "the traceparent names an exported span")
          assert.strictEqual(client!.kind, SpanKind.CLIENT)
          assert.isTrue(ancestors(client!, byId).some((s) => s.name === "fanout.attempt"))
        }
      }),
    { timeout: 60_000 }
  )

  it.scopedLive.skipIf(!hasPromtool && !promtoolRequired)(
    "/metrics is Prometheus text that `promtool check metrics` accepts",
    () =>
      Effect.gen(function*() {
        assert.isTrue(hasPromtool, "promtool is required here (CI / FANOUT_REQUIRE_PROMTOOL=1) but is not installed")
        const targets = yield* startServer((_req, res, r) => reply(res, r.path === "/bad" ? 400 : 200))
        const app = yield* prepare({
          server: { port: 0 },
          store: { memory: true },
          targets: {
            good: { url: `${targets.url}/good` },
            bad: { url: `${targets.url}/bad` },
            mirror: { url: `${targets.url}/mirror` }
          },
          routes: { "order.*": { targets: ["good", "bad"], shadow: ["mirror"] } }
        })
        const url = yield* start(app, { worker: { pollInterval: "50 millis" } })
        const posted = yield* request(`${url}/v1/events?wait=settled`, {
          method: "POST",
          json: { type: "order.placed", payload: { orderId: "o-2" } }
        })
        assert.strictEqual(posted.status, 200, posted.text)
        // ?wait ignores the shadow: wait until its attempt is counted too.
        const shadowCounted =
          /^fanout_attempts_total\{[^}]*target="mirror"[^}]*role="shadow"[^}]*outcome="success"[^}]*\} 1$/m
        yield* request(`${url}/metrics`).pipe(
          Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (m) => shadowCounted.test(m.text) }),
          Effect.timeoutFail({
            duration: "10 seconds",
            onTimeout: () => new Error("the shadow's attempt was never counted")
          })
        )
        const metrics = yield* request(`${url}/metrics`)
        assert.strictEqual(metrics.status, 200)
        // A shadow's attempts and deliveries are counted apart from the primaries'.
        assert.match(metrics.text, /^fanout_attempts_total\{[^}]*target="good"[^}]*role="primary"[^}]*\} 1$/m)
        assert.match(
          metrics.text,
          /^fanout_deliveries_total\{[^}]*target="mirror"[^}]*role="shadow"[^}]*outcome="delivered"[^}]*\} 1$/m
        )
        assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/)
        const text = metrics.text
        // What operators alert on is there, by target and outcome.
        assert.match(text, /^fanout_attempts_total\{[^}]*target="good"[^}]*outcome="success"[^}]*\} 1$/m)
        assert.match(text, /^fanout_attempts_total\{[^}]*target="bad"[^}]*outcome="http_400"[^}]*\} 1$/m)
        assert.match(text, /^fanout_attempt_duration_seconds_bucket\{[^}]*target="good"/m)
        assert.match(text, /^fanout_dead_letters\{[^}]*target="bad"[^}]*\} 1$/m)
        assert.match(text, /^fanout_queue_depth\{otel_scope_name="[^"]*"\} 0$/m)
        assert.match(text, /^fanout_oldest_pending_age_seconds/m)
        assert.match(text, /^fanout_circuit_state\{[^}]*target="good"[^}]*\} 0$/m)
        assert.match(text, /^fanout_bulkhead_in_use\{[^}]*target="good"/m)
        const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" })
        assert.strictEqual(check.status, 0, `promtool: ${check.stdout}${check.stderr}`)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "spans go to the OTLP endpoint (POST /v1/traces) when one is set, flushed on close",
    () =>
      Effect.gen(function*() {
        const bodies: Array<{ readonly path: string; readonly body: string }> = []
        const collector = yield* Effect.acquireRelease(
          Effect.async<ReturnType<typeof createServer>>((resume) => {
            const server = createServer((req, res) => {
              let body = ""
              req.on("data", (c: Buffer) => (body += c.toString("utf8")))
              req.on("end", () => {
                bodies.push({ path: req.url ?? "", body })
                res.writeHead(200, { "content-type": "application/json" })
                res.end("{}")
              })
            })
            server.listen(0, "127.0.0.1", () => {
              resume(Effect.succeed(server))
            })
          }),
          (server) =>
            Effect.async<void>((resume) => {
              server.close(() => resume(Effect.void))
            })
        )
        const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/`
        // The layer is closed (flushing its batch processor) before the assertions.
        yield* Effect.withSpan(Effect.void, "fanout.test-span").pipe(
          Effect.provide(Telemetry.layer({ otlpEndpoint: endpoint }))
        )
        const traces = bodies.filter((b) => b.path === "/v1/traces")
        assert.strictEqual(traces.length, 1)
        assert.include(traces[0]!.body, "fanout.test-span")
      }),
    { timeout: 30_000 }
  )

  it.effect("the store keeps the enqueue span's traceparent with the event, unless the event has one", () =>
    Effect.gen(function*() {
      const store = Telemetry.propagateTrace(yield* Memory.make)
      const event = (id: string, headers: Record<string, string>) => Event.make("t", {}, { id, headers })
      const inSpan = yield* Effect.gen(function*() {
        const span = yield* Effect.currentSpan
        yield* store.enqueue(yield* event("e1", { "x-a": "1" }), ["a"])
        return span
      }).pipe(Effect.withSpan("parent"))
      yield* store.enqueue(
        yield* event("e2", { traceparent: "00-11111111111111111111111111111111-2222222222222222-01" }),
        ["a"]
      )
      yield* store.enqueue(yield* event("e3", {}), ["a"])
      const headersOf = (id: string) =>
        Effect.map(store.status(id), (s) => s._tag === "Some" ? s.value.event.headers : undefined)
      assert.deepStrictEqual(yield* headersOf("e1"), {
        "x-a": "1",
        traceparent: `00-${inSpan.traceId}-${inSpan.spanId}-01`
      })
      assert.deepStrictEqual(yield* headersOf("e2"), {
        traceparent: "00-11111111111111111111111111111111-2222222222222222-01"
      })
      // No span, nothing added.
      assert.deepStrictEqual(yield* headersOf("e3"), {})
      // Tracing off (no exporter): the span Effect gives is its no-op one; nothing is added either.
      yield* store.enqueue(yield* event("e4", {}), ["a"]).pipe(
        Effect.withSpan("parent"),
        Effect.withTracerEnabled(false)
      )
      assert.deepStrictEqual(yield* headersOf("e4"), {})
    }))
})
