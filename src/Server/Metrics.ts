/**
 * What `GET /metrics` answers: Prometheus text from a {@link MetricsRenderer}. The telemetry
 * layer provides one (OpenTelemetry's Prometheus exporter); without it the server falls back to
 * {@link renderSnapshot}, which renders the Effect metrics of this process itself.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Metric, MetricState, Option } from "effect"
import type { MetricPair } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export interface Renderer {
  /** The metrics in the Prometheus text exposition format (0.0.4). */
  readonly render: Effect.Effect<string>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class MetricsRenderer extends Context.Tag("fanout/MetricsRenderer")<MetricsRenderer, Renderer>() {}

/**
 * The content type of the Prometheus text format.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const sanitizeName = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[a-zA-Z_:]/.test(s) ? s : `_${s}`
}

const sanitizeLabel = (name: string): string => {
  const s = name.replace(/[^a-zA-Z0-9_]/g, "_")
  return /^[a-zA-Z_]/.test(s) && !s.startsWith("__") ? s : `_${s.replace(/^_+/, "")}`
}

const escapeValue = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")

const escapeHelp = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatNumber = (n: number): string =>
  Number.isNaN(n) ? "NaN" : n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n)

const labels = (pairs: ReadonlyArray<readonly [string, string]>): string =>
  pairs.length === 0 ? "" : `{${pairs.map(([k, v]) => `${sanitizeLabel(k)}="${escapeValue(v)}"`).join(",")}}`

interface Family {
  type: "counter" | "gauge" | "histogram" | "summary"
  help: string | undefined
  lines: Array<string>
}

/**
 * Renders metric pairs (from `Metric.snapshot`) as Prometheus text: counters, gauges,
 * histograms (cumulative `_bucket{le=…}`, `_sum`, `_count`), summaries, and frequencies (as a
 * counter per observed value, label `key`). One `# HELP`/`# TYPE` per family.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  const family = (name: string, type: Family["type"], help: string | undefined): Family => {
    let f = families.get(name)
    if (f === undefined) {
      f = { type, help, lines: [] }
      families.set(name, f)
    }
    return f
  }
  for (const pair of pairs) {
    const key = pair.metricKey
    const state = pair.metricState
    const tags = key.tags.map((t) => [t.key, t.value] as const)
    const help = Option.getOrUndefined(key.description)
    if (MetricState.isCounterState(state)) {
      const name = sanitizeName(key.name)
      family(name, "counter", help).lines.push(`${name}${labels(tags)} ${formatNumber(Number(state.count))}`)
    } else if (MetricState.isGaugeState(state)) {
      const name = sanitizeName(key.name)
      family(name, "gauge", help).lines.push(`${name}${labels(tags)} ${formatNumber(Number(state.value))}`)
    } else if (MetricState.isHistogramState(state)) {
      const name = sanitizeName(key.name)
      const f = family(name, "histogram", help)
      let sawInf = false
      for (const [le, count] of state.buckets) {
        if (le === Infinity) sawInf = true
        f.lines.push(`${name}_bucket${labels([...tags, ["le", formatNumber(le)]])} ${count}`)
      }
      if (!sawInf) f.lines.push(`${name}_bucket${labels([...tags, ["le", "+Inf"]])} ${state.count}`)
      f.lines.push(`${name}_sum${labels(tags)} ${formatNumber(state.sum)}`)
      f.lines.push(`${name}_count${labels(tags)} ${state.count}`)
    } else if (MetricState.isSummaryState(state)) {
      const name = sanitizeName(key.name)
      const f = family(name, "summary", help)
      for (const [q, value] of state.quantiles) {
        if (Option.isSome(value)) {
          f.lines.push(`${name}${labels([...tags, ["quantile", String(q)]])} ${formatNumber(value.value)}`)
        }
      }
      f.lines.push(`${name}_sum${labels(tags)} ${formatNumber(state.sum)}`)
      f.lines.push(`${name}_count${labels(tags)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      const name = sanitizeName(key.name.endsWith("_total") ? key.name : `${key.name}_total`)
      const f = family(name, "counter", help)
      for (const [value, count] of state.occurrences) {
        f.lines.push(`${name}${labels([...tags, ["key", value]])} ${count}`)
      }
    }
  }
  let out = ""
  for (const [name, f] of families) {
    if (f.help !== undefined) out += `# HELP ${name} ${escapeHelp(f.help)}\n`
    out += `# TYPE ${name} ${f.type}\n`
    for (const line of f.lines) out += line + "\n"
  }
  return out
}

/**
 * Renders this process's Effect metrics (`Metric.snapshot`).
 *
 * @since 0.1.0
 * @category rendering
 */
export const renderSnapshot: Effect.Effect<string> = Effect.map(Metric.snapshot, render)

/**
 * A renderer of this process's Effect metrics, with no OpenTelemetry involved.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSnapshot: Layer.Layer<MetricsRenderer> = Layer.succeed(MetricsRenderer, { render: renderSnapshot })
