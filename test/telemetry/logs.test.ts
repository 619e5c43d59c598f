/**
 * JSON log lines carry `trace_id` and `span_id` (issue 13, item 4): the lines `fanout serve`
 * writes (`Telemetry.jsonLogger`, what `--log-format json` installs) are parsed back, and their ids
 * are those of the span current where they were logged — in a plain span, and in the whole
 * application, where a worker's delivery line belongs to the trace of the POST that caused it.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Logger, Schedule } from "effect"
import * as Telemetry from "../../src/Telemetry.js"
import { reply, startServer } from "../integration/helpers.js"
import { prepare, request, start } from "../Main.helpers.js"

interface Line {
  readonly message: unknown
  readonly logLevel: string
  readonly annotations: Record<string, unknown>
  readonly trace_id?: string
  readonly span_id?: string
}

/** The JSON logger, writing into `lines` instead of the console. */
const capture = (lines: Array<Line>) =>
  Logger.replace(Logger.defaultLogger, Logger.map(Telemetry.jsonLogger, (text) => void lines.push(JSON.parse(text))))

describe("telemetry: JSON logs with trace_id and span_id", () => {
  it.effect("a line logged in a span carries that span's ids; a line outside any span carries none", () =>
    Effect.gen(function*() {
      const lines: Array<Line> = []
      const span = yield* Effect.gen(function*() {
        yield* Effect.logInfo("inside").pipe(Effect.annotateLogs({ eventId: "e-1" }))
        return yield* Effect.currentSpan
      }).pipe(Effect.withSpan("outer"), Effect.provide(capture(lines)))
      yield* Effect.logInfo("outside").pipe(Effect.provide(capture(lines)))
      assert.strictEqual(lines.length, 2)
      const [inside, outside] = lines
      assert.strictEqual(inside!.message, "inside")
      assert.strictEqual(inside!.logLevel, "INFO")
      assert.deepStrictEqual(inside!.annotations, { eventId: "e-1" })
      assert.match(inside!.trace_id ?? "", /^[0-9a-f]{32}$/)
      assert.match(inside!.span_id ?? "", /^[0-9a-f]{16}$/)
      assert.strictEqual(inside!.trace_id, span.traceId)
      assert.strictEqual(inside!.span_id, span.spanId)
      assert.notProperty(outside, "trace_id")
      assert.notProperty(outside, "span_id")
    }))

  it.scopedLive(
    "in the application: a line logged during an attempt is in the trace of the POST, under its attempt span",
    () =>
      Effect.gen(function*() {
        const lines: Array<Line> = []
        const exporter = new InMemorySpanExporter()
        const targets = yield* startServer((_req, res) => reply(res, 200))
        const app = yield* prepare({
          server: { port: 0 },
          store: { memory: true },
          targets: {
            // Every signing secret is past its `until`: the attempt logs a warning (and signs with the newest).
            billing: {
              url: `${targets.url}/billing`,
              signingSecret: [{ secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", until: "2020-01-01T00:00:00Z" }]
            }
          },
          routes: { "invoice.*": ["billing"] }
        })
        const url = yield* start(app, {
          telemetry: { spanProcessors: [new SimpleSpanProcessor(exporter)] },
          worker: { pollInterval: "50 millis" }
        }).pipe(Effect.provide(capture(lines)))
        const traceId = "0af7651916cd43dd8448eb211c80319c"
        const posted = yield* request(`${url}/v1/events`, {
          method: "POST",
          json: { id: "log-1", type: "invoice.created", payload: {} },
          headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01` }
        })
        assert.strictEqual(posted.status, 202, posted.text)
        const warning = () => lines.find((l) => String(l.message).includes("every signing secret is past"))
        const attempt = () =>
          exporter.getFinishedSpans().find((s) =>
            s.name === "fanout.attempt" && s.attributes["fanout.event.id"] === "log-1"
          )
        yield* Effect.suspend(() =>
          warning() !== undefined && attempt() !== undefined ? Effect.void : Effect.fail("not yet")
        )
          .pipe(
            Effect.retry(Schedule.spaced("20 millis")),
            Effect.timeoutFail({
              duration: "20 seconds",
              onTimeout: () => new Error("no warning line, or no attempt span")
            })
          )
        const line = warning()!
        assert.strictEqual(line.logLevel, "WARN")
        assert.strictEqual(line.annotations["target"], "billing")
        assert.strictEqual(line.trace_id, traceId, JSON.stringify(line))
        assert.strictEqual(line.span_id, attempt()!.spanContext().spanId, "the line's span is the attempt's")
      }),
    { timeout: 60_000 }
  )
})
