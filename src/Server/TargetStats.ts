/**
 * Recent attempt rate and latency per target, for `GET /v1/targets`: a sliding window over this
 * process's Effect metrics (`fanout_attempts_total{target,outcome}` and
 * `fanout_attempt_duration_ms{target}`), sampled every second. Attempts made by workers in other
 * processes are not seen here (their own `/metrics` has them).
 *
 * @since 0.1.0
 */
import { Clock, Effect, Metric, MetricState, Schedule } from "effect"
import type { MetricPair, Scope } from "effect"

interface TargetSample {
  attempts: number
  successes: number
  /** Cumulative bucket counts of the latency histogram, by upper bound. */
  buckets: ReadonlyArray<readonly [number, number]>
}

interface Sample {
  readonly at: number
  readonly targets: ReadonlyMap<string, TargetSample>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Recent {
  readonly windowSeconds: number
  readonly attempts: number
  readonly successes: number
  readonly perSecond: number
  /** Upper bounds of the histogram buckets the quantiles fall in; absent when nothing was measured. */
  readonly latencyMs?: { readonly p50: number; readonly p90: number; readonly p99: number }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TargetStats {
  readonly recent: (target: string) => Effect.Effect<Recent>
}

const tagOf = (pair: MetricPair.MetricPair.Untyped, key: string): string | undefined =>
  pair.metricKey.tags.find((t) => t.key === key)?.value

/** The names of `Metrics.attempts` and `Metrics.attemptLatency` (src/Metrics.ts), and the latter's unit in ms. */
const attemptsName = "fanout_attempts_total"
const latencyNames: Readonly<Record<string, number>> = {
  fanout_attempt_duration_seconds: 1000,
  fanout_attempt_duration_ms: 1
}

const read = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, at: number): Sample => {
  const targets = new Map<string, TargetSample>()
  const of = (name: string) => {
    let t = targets.get(name)
    if (t === undefined) {
      t = { attempts: 0, successes: 0, buckets: [] }
      targets.set(name, t)
    }
    return t
  }
  for (const pair of pairs) {
    const name = pair.metricKey.name
    const unit = latencyNames[name]
    if (name !== attemptsName && unit === undefined) continue
    const target = tagOf(pair, "target")
    if (target === undefined) continue
    const state = pair.metricState
    if (name === attemptsName && MetricState.isCounterState(state)) {
      const t = of(target)
      t.attempts += Number(state.count)
      if (tagOf(pair, "outcome") === "success") t.successes += Number(state.count)
    } else if (unit !== undefined && MetricState.isHistogramState(state)) {
      of(target).buckets = state.buckets.map(([le, count]) => [le * unit, count] as const)
    }
  }
  return { at, targets }
}

const quantile = (
  now: ReadonlyArray<readonly [number, number]>,
  before: ReadonlyArray<readonly [number, number]>,
  q: number
): number | undefined => {
  const deltas = now.map(([le, count], i) => [le, count - (before[i]?.[1] ?? 0)] as const)
  const total = deltas.at(-1)?.[1] ?? 0
  if (total <= 0) return undefined
  const rank = q * total
  for (const [le, count] of deltas) if (count >= rank) return le
  return deltas.at(-1)?.[0]
}

/**
 * Starts sampling (until the scope closes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: { readonly windowMs?: number; readonly sampleEveryMs?: number } = {}
): Effect.Effect<TargetStats, never, Scope.Scope> =>
  Effect.gen(function*() {
    const windowMs = options.windowMs ?? 60_000
    const every = options.sampleEveryMs ?? 1_000
    const samples: Array<Sample> = []
    const take = Effect.gen(function*() {
      const sample = read(yield* Metric.snapshot, yield* Clock.currentTimeMillis)
      samples.push(sample)
      while (samples.length > 1 && sample.at - samples[0]!.at > windowMs) samples.shift()
      return sample
    })
    yield* take
    yield* Effect.forkScoped(Effect.repeat(take, Schedule.spaced(every)))
    return {
      recent: (target) =>
        Effect.gen(function*() {
          const now = read(yield* Metric.snapshot, yield* Clock.currentTimeMillis)
          const base = samples.find((s) => now.at - s.at <= windowMs) ?? samples[0]
          const cur = now.targets.get(target)
          const old = base?.targets.get(target)
          const seconds = Math.max(0.001, (now.at - (base?.at ?? now.at)) / 1000)
          const attempts = (cur?.attempts ?? 0) - (old?.attempts ?? 0)
          const successes = (cur?.successes ?? 0) - (old?.successes ?? 0)
          const p50 = cur && quantile(cur.buckets, old?.buckets ?? [], 0.5)
          const p90 = cur && quantile(cur.buckets, old?.buckets ?? [], 0.9)
          const p99 = cur && quantile(cur.buckets, old?.buckets ?? [], 0.99)
          return {
            windowSeconds: Math.round(seconds * 1000) / 1000,
            attempts,
            successes,
            perSecond: Math.round((attempts / seconds) * 1000) / 1000,
            ...(p50 !== undefined && p90 !== undefined && p99 !== undefined ? { latencyMs: { p50, p90, p99 } } : {})
          }
        })
    }
  })
