/**
 * Pipelines over real loopback HTTP (TestTargets served on 127.0.0.1, the real undici client):
 * the critical path as an order of requests and answers (no timing), and the spans a run leaves.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer } from "effect"
import { Event, Pipeline, Target } from "../../src/index.js"
import * as Telemetry from "../../src/Telemetry.js"
import { Fault, TestTarget } from "../../src/testing.js"

/** A TestTarget on loopback answering 200 after `latency` ms, and a target that POSTs to it. */
const api = <const N extends string>(name: N, latency: number) =>
  Effect.map(TestTarget.serve(TestTarget.make(name, { faults: () => Fault.ok({ latency }) })), (loopback) => ({
    loopback,
    target: Target.make(name, {
      request: (e) =>
        HttpClientRequest.post(`${loopback.url}/${name}`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload)),
      policy: { retry: { maxAttempts: 1 }, circuitBreaker: false }
    })
  }))

describe("pipeline timing on loopback HTTP", () => {
  it.live("A and B in parallel, C after A: C starts once A answered, without waiting for B", () =>
    Effect.gen(function*() {
      // One loopback server for the three APIs, recording arrivals and answers in one sequence.
      // A answers at once; B is held until C's request for the same event has arrived. A
      // level-by-level scheduler (A and B, then C) would leave B parked: it is answered only by
      // the fallback timer (a liveness guard, never reached when C does not wait for B), and the
      // ordering assertions below fail. Nothing is timed. (The wall-clock critical path, about
      // max(A + C, B) rather than A + B + C, is measured by `npm run bench -- pipeline`.)
      let seq = 0
      const log: Array<{ readonly step: string; readonly key: string; readonly arrived: number; answered?: number }> =
        []
      const heldB = new Map<string, () => void>()
      const arrivedC = new Set<string>()
      let fallbacks = 0
      const server = createServer((req, res) => {
        req.resume()
        req.on("end", () => {
          const step = (req.url ?? "/").slice(1)
          const key = String(req.headers["idempotency-key"] ?? "")
          const event = key.slice(0, key.lastIndexOf(":"))
          const entry: { step: string; key: string; arrived: number; answered?: number } = { step, key, arrived: ++seq }
          log.push(entry)
          const answer = () => {
            entry.answered = ++seq
            res.writeHead(200, { "content-type": "application/json" }).end("{}")
          }
          if (step !== "b") {
            answer()
            if (step === "c") {
              arrivedC.add(event)
              heldB.get(event)?.()
            }
            return
          }
          if (arrivedC.has(event)) return answer()
          const timer = setTimeout(() => (fallbacks++, heldB.delete(event), answer()), 10_000)
          heldB.set(event, () => (clearTimeout(timer), heldB.delete(event), answer()))
        })
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () =>
          Effect.async<void>((resume) => (server.closeAllConnections(), void server.close(() => resume(Effect.void))))
      )
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const step = <const N extends string>(name: N) =>
        Target.make(name, {
          request: (e) => HttpClientRequest.post(`${url}/${name}`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload)),
          policy: { timeout: "20 seconds", retry: { maxAttempts: 1 }, circuitBreaker: false }
        })
      const a = step("a")
      const b = step("b")
      const c = step("c")
      const pipeline = Pipeline.make().step(a).step(b).step(c, { after: [a] })
      const targets = Layer.mergeAll(a.layer, b.layer, c.layer).pipe(Layer.provide(NodeHttpClient.layerUndici))
      const runs = yield* Effect.gen(function*() {
        const runner = yield* Pipeline.runner(pipeline)
        const out = []
        for (const id of ["run-1", "run-2", "run-3"]) {
          const event = yield* Event.make("ping", {}, { id })
          out.push({ event, result: yield* runner.run(event, { mode: "all" }) })
        }
        return out
      }).pipe(Effect.provide(targets))

      for (const { event, result } of runs) {
        const of = (name: string) => {
          const found = log.filter((r) => r.key === `${event.id}:${name}`)
          assert.strictEqual(found.length, 1, `${event.id}: one request to ${name}`)
          return found[0]!
        }
        const [aReq, bReq, cReq] = [of("a"), of("b"), of("c")]
        assert.isBelow(aReq.answered!, cReq.arrived, `${event.id}: C started after A answered`)
        assert.isBelow(cReq.arrived, bReq.answered!, `${event.id}: C started before B answered (it never waited for B)`)
        const c0 = result.timeline.find((t) => t.step === "c")!
        const a0 = result.timeline.find((t) => t.step === "a")!
        const b0 = result.timeline.find((t) => t.step === "b")!
        assert.isAtLeast(c0.startedAt, a0.endedAt)
        assert.isBelow(c0.startedAt, b0.endedAt, "the run's own timeline: C started before B ended")
      }
      assert.strictEqual(fallbacks, 0, "B was never left waiting for the fallback timer")
    }).pipe(Effect.scoped))

  it.live("a run is one `fanout.pipeline` span; each step's delivery and the enrich stage are under it", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const en = yield* api("en", 0)
      const a = yield* api("a", 0)
      const b = yield* api("b", 0)
      const pipeline = Pipeline.make()
        .enrich(en.target, (event) => ({ enriched: event.payload }))
        .step(a.target)
        .step(b.target, { after: [a.target] })
      const targets = Layer.mergeAll(en.target.layer, a.target.layer, b.target.layer).pipe(
        Layer.provide(NodeHttpClient.layerUndici)
      )
      const event = yield* Event.make("ping", { n: 1 })
      // Read the spans before the telemetry layer closes (its shutdown clears the exporter).
      const spans = yield* Pipeline.run(pipeline, event, { mode: "all" }).pipe(
        Effect.provide(targets),
        Effect.map(() => [...exporter.getFinishedSpans()]),
        Effect.provide(Telemetry.layer({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
      )
      const byId = new Map(spans.map((s) => [s.spanContext().spanId, s] as const))
      const ancestors = (span: ReadableSpan) => {
        const found: Array<ReadableSpan> = []
        let parent = span.parentSpanContext?.spanId
        while (parent !== undefined && byId.has(parent)) {
          const next = byId.get(parent)!
          found.push(next)
          parent = next.parentSpanContext?.spanId
        }
        return found
      }
      const root = spans.filter((s) => s.name === "fanout.pipeline")
      assert.strictEqual(root.length, 1)
      assert.strictEqual(root[0]!.attributes["fanout.event.id"], event.id)
      assert.strictEqual(root[0]!.attributes["fanout.mode"], "all")
      const deliveries = spans.filter((s) => s.name === "fanout.deliver")
      assert.deepStrictEqual(deliveries.map((s) => s.attributes["fanout.target"]).sort(), ["a", "b", "en"])
      for (const span of deliveries) {
        assert.include(ancestors(span), root[0]!, `${span.attributes["fanout.target"]} under the pipeline span`)
        assert.strictEqual(span.attributes["fanout.idempotency_key"], `${event.id}:${span.attributes["fanout.target"]}`)
      }
      const enrich = spans.find((s) => s.name === "fanout.pipeline.enrich")!
      assert.include(ancestors(deliveries.find((s) => s.attributes["fanout.target"] === "en")!), enrich)
      // The trace reached the APIs: each request's traceparent carries the pipeline's trace id.
      const traceId = root[0]!.spanContext().traceId
      for (const t of [en, a, b]) {
        assert.include(t.loopback.target.ledger[0]!.traceparent ?? "", traceId, t.target.name)
      }
    }).pipe(Effect.scoped))
})
