/**
 * The fallback Prometheus renderer (Effect `Metric.snapshot` → text format 0.0.4).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, MetricBoundaries } from "effect"
import * as Metrics from "../../src/Server/Metrics.js"

describe("Prometheus rendering of Effect metrics", () => {
  it.effect("counters, gauges, histograms, summaries and frequencies, with escaped labels", () =>
    Effect.gen(function*() {
      const counter = Metric.counter("srvtest_requests_total", { description: "Requests\nseen" })
      yield* Metric.incrementBy(Metric.tagged(counter, "path", "a\"b\\c\nd"), 3)
      yield* Metric.increment(Metric.tagged(counter, "path", "/x"))
      yield* Metric.set(Metric.gauge("srvtest_depth"), 7.5)
      const histogram = Metric.histogram("srvtest_latency_seconds", MetricBoundaries.fromIterable([0.1, 1]))
      yield* Metric.update(histogram, 0.05)
      yield* Metric.update(histogram, 0.5)
      yield* Metric.update(histogram, 5)
      const summary = Metric.summary({
        name: "srvtest_sizes",
        maxAge: "1 minute",
        maxSize: 10,
        error: 0.01,
        quantiles: [0.5]
      })
      yield* Metric.update(summary, 10)
      yield* Metric.update(Metric.frequency("srvtest_kinds"), "red")
      yield* Metric.update(Metric.frequency("srvtest_kinds"), "red")
      const text = yield* Metrics.renderSnapshot
      const lines = text.split("\n")
      assert.include(lines, "# HELP srvtest_requests_total Requests\\nseen")
      assert.include(lines, "# TYPE srvtest_requests_total counter")
      assert.include(lines, "srvtest_requests_total{path=\"a\\\"b\\\\c\\nd\"} 3")
      assert.include(lines, "srvtest_requests_total{path=\"/x\"} 1")
      assert.strictEqual(lines.filter((l) => l === "# TYPE srvtest_requests_total counter").length, 1)
      assert.include(lines, "# TYPE srvtest_depth gauge")
      assert.include(lines, "srvtest_depth 7.5")
      assert.include(lines, "# TYPE srvtest_latency_seconds histogram")
      assert.include(lines, "srvtest_latency_seconds_bucket{le=\"0.1\"} 1")
      assert.include(lines, "srvtest_latency_seconds_bucket{le=\"1\"} 2")
      assert.include(lines, "srvtest_latency_seconds_bucket{le=\"+Inf\"} 3")
      assert.include(lines, "srvtest_latency_seconds_sum 5.55")
      assert.include(lines, "srvtest_latency_seconds_count 3")
      assert.include(lines, "# TYPE srvtest_sizes summary")
      assert.include(lines, "srvtest_sizes{quantile=\"0.5\"} 10")
      assert.include(lines, "srvtest_sizes_count 1")
      assert.include(lines, "# TYPE srvtest_kinds_total counter")
      assert.include(lines, "srvtest_kinds_total{key=\"red\"} 2")
      // Every sample line is `name{labels} value`, every value a number.
      for (const line of lines.filter((l) => l !== "" && !l.startsWith("#"))) {
        assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/, line)
      }
    }))
})
