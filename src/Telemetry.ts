/**
 * Observability for the server and the workers, in one layer:
 *
 * - **Traces.** Every request, fan-out, enqueue and target attempt is a span (the core and the
 *   server make them). This layer installs the OpenTelemetry tracer when spans have somewhere to
 *   go: OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or the span processors a test passes.
 *   Otherwise Effect's own tracer stays in place: spans still exist (and still carry the W3C
 *   `traceparent` the platform `HttpClient` sends to targets and the `HttpServer` reads from
 *   producers), they are just not exported.
 * - **Metrics.** The Effect `Metric`s of `Metrics.ts` are read by an OpenTelemetry
 *   `PrometheusExporter` (no server of its own) and rendered as Prometheus text by
 *   {@link layerMetricsRenderer}, which samples the gauges that come from state (queue depth,
 *   oldest pending age, dead letters, circuit state) at each scrape.
 * - **Logs.** {@link logger}: JSON lines (`Logger.json`) with the annotations the core and the
 *   workers add (event id, delivery id, target, attempt), or a human format.
 *
 * Closing the layer flushes pending spans (bounded by `shutdownTimeout`).
 *
 * @since 0.1.0
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type * as Resource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base"
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Clock, Context, Effect, FiberRef, FiberRefs, Inspectable, Layer, Logger, Metric, Tracer } from "effect"
import type { LogLevel } from "effect"
import type { Duration } from "effect"
import * as Metrics from "./Metrics.js"
import * as Registry from "./Registry.js"
import { MetricsRenderer } from "./Server/Metrics.js"
import * as Store from "./Store.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `service.name` of the resource. Default `"fanout"`. */
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
  /**
   * The OTLP/HTTP endpoint (the value of `OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. `http://collector:4318`):
   * spans are batched to `<endpoint>/v1/traces`. Unset: no exporter.
   */
  readonly otlpEndpoint?: string | undefined
  /** More span processors (tests: `new SimpleSpanProcessor(new InMemorySpanExporter())`). */
  readonly spanProcessors?: ReadonlyArray<SpanProcessor> | undefined
  /** The share of new traces recorded, 0–1 (parent-based: a sampled parent is always followed). Default 1. */
  readonly sampleRatio?: number | undefined
  /** How long closing may spend flushing spans. Default 5 seconds. */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/**
 * The Prometheus reader the metrics are collected through.
 *
 * @since 0.1.0
 * @category tags
 */
export class Prometheus extends Context.Tag("fanout/Telemetry/Prometheus")<Prometheus, {
  /** The current metrics as Prometheus text (exposition format 0.0.4). */
  readonly collect: Effect.Effect<string>
}>() {}

/**
 * The OTLP span endpoint of a base endpoint (`http://host:4318` → `http://host:4318/v1/traces`).
 *
 * @since 0.1.0
 * @category tracing
 */
export const tracesUrl = (endpoint: string): string => `${endpoint.replace(/\/+$/, "")}/v1/traces`

/**
 * Tracing, metrics and the Prometheus reader. Provide it *under* everything else (it is built first
 * and closed last, so spans of the shutdown itself are flushed).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Prometheus | Resource.Resource> =>
  Layer.unwrapScoped(Effect.sync(() => {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    // The exporter's own settings: no prefix, no timestamps, with target_info and scope labels.
    const serializer = new PrometheusSerializer("", false, undefined, false, false)
    const processors: Array<SpanProcessor> = [...(options.spanProcessors ?? [])]
    if (options.otlpEndpoint !== undefined && options.otlpEndpoint.length > 0) {
      processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(options.otlpEndpoint) })))
    }
    const ratio = options.sampleRatio ?? 1
    const sdk = NodeSdk.layer(() => ({
      ...(ratio < 1
        ? { tracerConfig: { sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }) } }
        : {}),
      resource: {
        serviceName: options.serviceName ?? "fanout",
        ...(options.serviceVersion !== undefined ? { serviceVersion: options.serviceVersion } : {})
      },
      metricReader: exporter,
      ...(processors.length > 0 ? { spanProcessor: processors } : {}),
      shutdownTimeout: options.shutdownTimeout ?? "5 seconds"
    }))
    const collect = Effect.promise(() => exporter.collect()).pipe(
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )
    const prometheus = Layer.merge(sdk, Layer.succeed(Prometheus, { collect }))
    // Spans with nowhere to go are not made at all: the delivery hot path checks Effect's tracer
    // switch and then opens no span (see Delivery).
    return processors.length > 0 ? prometheus : Layer.merge(prometheus, Layer.setTracerEnabled(false))
  }))

/** 0 closed, 1 half-open, 2 open (an open breaker whose wait is over counts as half-open). */
const circuitValue = (state: { readonly _tag: string; readonly until?: number }, now: number): number =>
  state._tag === "Closed" ? 0 : state._tag === "HalfOpen" || (state.until !== undefined && now >= state.until) ? 1 : 2

/**
 * Sets the gauges that mirror state: queue depth, oldest pending age and dead letters (overall and
 * per target) from the store's stats, and each target's circuit state and bulkhead use. A store that
 * does not answer leaves the last values in place.
 *
 * @since 0.1.0
 * @category metrics
 */
export const sampleGauges: Effect.Effect<void, never, Registry.Registry | Store.DeliveryStore> = Effect.gen(
  function*() {
    const registry = yield* Registry.Registry
    const store = yield* Store.DeliveryStore
    const now = yield* Clock.currentTimeMillis
    for (const [name, runtime] of registry) {
      const state = yield* runtime.breaker.state
      yield* Metric.set(Metrics.circuitState.pipe(Metric.tagged("target", name)), circuitValue(state, now))
      yield* Metric.set(Metrics.bulkheadInUse.pipe(Metric.tagged("target", name)), yield* runtime.bulkhead.inFlight)
    }
    const stats = yield* store.gauges.pipe(Effect.timeoutOption("2 seconds"), Effect.option)
    if (stats._tag === "None" || stats.value._tag === "None") return
    const s = stats.value.value
    yield* Metric.set(Metrics.queueDepth, s.depth)
    yield* Metric.set(Metrics.oldestPendingAge, s.oldestPendingAgeMs / 1000)
    yield* Metric.set(Metrics.deadLetters, s.dead)
    for (const [name, counts] of Object.entries(s.targets)) {
      yield* Metric.set(Metrics.queueDepth.pipe(Metric.tagged("target", name)), counts.pending + counts.inFlight)
      yield* Metric.set(Metrics.deadLetters.pipe(Metric.tagged("target", name)), counts.dead)
    }
  }
)

/**
 * The server's `MetricsRenderer` (`GET /metrics`): samples the state gauges, then renders every
 * metric as Prometheus text.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMetricsRenderer: Layer.Layer<
  MetricsRenderer,
  never,
  Prometheus | Registry.Registry | Store.DeliveryStore
> = Layer.effect(
  MetricsRenderer,
  Effect.gen(function*() {
    const prometheus = yield* Prometheus
    const context = yield* Effect.context<Registry.Registry | Store.DeliveryStore>()
    return {
      render: Effect.zipRight(Effect.provide(sampleGauges, context), prometheus.collect)
    }
  })
)

/**
 * The header that carries an event's trace context through the store: the W3C `traceparent` of the
 * span the event was enqueued under.
 *
 * @since 0.1.0
 * @category tracing
 */
export const traceHeader = "traceparent"

/**
 * A store whose `enqueue` records the W3C `traceparent` of the current span (the `fanout.enqueue`
 * span, inside the producer's request) in the stored event's headers, unless the event carries one
 * already. Workers parent their attempts on it, so one trace covers the request, the enqueue and
 * every attempt of every target — even when the worker runs in another process.
 *
 * @since 0.1.0
 * @category tracing
 */
export const propagateTrace = (store: Store.DeliveryStore): Store.DeliveryStore => ({
  ...store,
  enqueue: (event, targets, options) =>
    event.headers[traceHeader] !== undefined
      ? store.enqueue(event, targets, options)
      : Effect.flatMap(Effect.option(Effect.currentSpan), (span) =>
        store.enqueue(
          // No span, or tracing off (Effect then gives its no-op span, whose ids are "noop").
          span._tag === "None" || span.value.traceId === "noop"
            ? event
            : {
              ...event,
              headers: {
                ...event.headers,
                [traceHeader]: `00-${span.value.traceId}-${span.value.spanId}-${span.value.sampled ? "01" : "00"}`
              }
            },
          targets,
          options
        ))
})

/**
 * {@link propagateTrace} over the store of a layer.
 *
 * @since 0.1.0
 * @category tracing
 */
export const layerPropagateTrace = <E, R>(
  store: Layer.Layer<Store.DeliveryStore, E, R>
): Layer.Layer<Store.DeliveryStore, E, R> =>
  Layer.map(
    store,
    (context) => Context.make(Store.DeliveryStore, propagateTrace(Context.get(context, Store.DeliveryStore)))
  )

/**
 * The log formats of the CLI: `json` (one JSON object a line, the default for servers), `pretty`
 * (for people), `logfmt`, or `none`.
 *
 * @since 0.1.0
 * @category logging
 */
export type LogFormat = "json" | "pretty" | "logfmt" | "none"

/**
 * The JSON logger: one object a line, as `Logger.jsonLogger` writes it (`message`, `logLevel`,
 * `timestamp`, `cause`, `annotations`, `spans`, `fiberId`), plus `trace_id` and `span_id` of the
 * span current where the line was logged (hex, as W3C `traceparent` and OTLP spell them) — so a log
 * line and its span find each other. Without a span (or with tracing off) the two are absent.
 *
 * @since 0.1.0
 * @category logging
 */
export const jsonLogger: Logger.Logger<unknown, string> = Logger.make((options) => {
  const line = Logger.structuredLogger.log(options)
  const span = Context.getOption(FiberRefs.getOrDefault(options.context, FiberRef.currentContext), Tracer.ParentSpan)
  const ids = span._tag === "Some" && span.value.traceId !== "noop"
    ? { trace_id: span.value.traceId, span_id: span.value.spanId }
    : {}
  return Inspectable.stringifyCircular({ ...line, ...ids })
})

/**
 * The logger layer: replaces the default logger with the given format and, if given, sets the
 * minimum level. `json` is {@link jsonLogger}.
 *
 * @since 0.1.0
 * @category logging
 */
export const logger = (format: LogFormat, level?: LogLevel.LogLevel | undefined): Layer.Layer<never> =>
  Layer.merge(
    format === "json"
      ? Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(jsonLogger))
      : format === "logfmt"
      ? Logger.logFmt
      : format === "pretty"
      ? Logger.pretty
      : Logger.replace(Logger.defaultLogger, Logger.none),
    level === undefined ? Layer.empty : Logger.minimumLogLevel(level)
  )
