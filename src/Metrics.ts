/**
 * The Effect `Metric`s Fanout updates. Exported (for Prometheus) by the telemetry layer.
 *
 * @since 0.1.0
 */
import { Array as Arr, Metric, MetricBoundaries, MetricLabel } from "effect"

/**
 * A metric with labels fixed once, updated without re-deriving its key on every update.
 *
 * `Metric.tagged` merges its label arrays on every update, so effect's per-array cache of
 * registry hooks never hits: each update then builds a `MetricKey`, hashes it and looks it
 * up. Here the merged array is built once per fiber label set (usually the empty one) and
 * reused, so the lookup hits the cache. The registry keys, and the order of their labels,
 * are those of `metric.pipe(Metric.tagged(k1, v1), Metric.tagged(k2, v2), …)`.
 *
 * The `unsafe*` functions take the fiber's `FiberRef.currentMetricLabels`, which the
 * tagged-metric effects would also have added.
 *
 * @since 0.1.0
 * @category constructors
 */
export interface Labelled<In> {
  readonly unsafeUpdate: (input: In, fiberLabels: ReadonlyArray<MetricLabel.MetricLabel>) => void
  readonly unsafeModify: (input: In, fiberLabels: ReadonlyArray<MetricLabel.MetricLabel>) => void
  /** The same metric with one more label (applied after the ones already fixed). */
  readonly tagged: (key: string, value: string) => Labelled<In>
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const labelled = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  key: string,
  value: string
): Labelled<In> => withLabels(metric, [[MetricLabel.make(key, value)]])

const withLabels = <Type, In, Out>(
  metric: Metric.Metric<Type, In, Out>,
  groups: ReadonlyArray<ReadonlyArray<MetricLabel.MetricLabel>>
): Labelled<In> => {
  // Tagging `tagged(tagged(m, a), b)` updates `m` with `union(a, union(b, fiberLabels))`.
  const merge = (fiberLabels: ReadonlyArray<MetricLabel.MetricLabel>) =>
    groups.reduceRight<ReadonlyArray<MetricLabel.MetricLabel>>((acc, group) => Arr.union(group, acc), fiberLabels)
  const none = merge([])
  const cache = new WeakMap<ReadonlyArray<MetricLabel.MetricLabel>, ReadonlyArray<MetricLabel.MetricLabel>>()
  const labelsFor = (fiberLabels: ReadonlyArray<MetricLabel.MetricLabel>) => {
    if (fiberLabels.length === 0) return none
    let merged = cache.get(fiberLabels)
    if (merged === undefined) {
      merged = merge(fiberLabels)
      cache.set(fiberLabels, merged)
    }
    return merged
  }
  return {
    unsafeUpdate: (input, fiberLabels) => metric.unsafeUpdate(input, labelsFor(fiberLabels)),
    unsafeModify: (input, fiberLabels) => metric.unsafeModify(input, labelsFor(fiberLabels)),
    tagged: (key, value) => withLabels(metric, [...groups, [MetricLabel.make(key, value)]])
  }
}

/** @since 0.1.0 */
export const attempts = Metric.counter("fanout_attempts_total", {
  description: "Attempts sent to targets, by target and outcome",
  incremental: true
})

/** @since 0.1.0 */
export const attemptLatency = Metric.histogram(
  "fanout_attempt_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "Attempt latency in seconds (Prometheus base unit), by target"
)

/** @since 0.1.0 */
export const deliveries = Metric.counter("fanout_deliveries_total", {
  description: "Finished deliveries, by target and outcome",
  incremental: true
})

/** @since 0.1.0 */
export const retries = Metric.counter("fanout_retries_total", {
  description: "Retries scheduled, by target",
  incremental: true
})

/** @since 0.1.0 */
export const shadowComparisons = Metric.counter("fanout_shadow_comparisons_total", {
  description: "Answers of a shadow compared with those of the primary it mirrors, by result (match, differ)",
  incremental: true
})

/** @since 0.1.0 */
export const inFlight = Metric.gauge("fanout_in_flight", {
  description: "Attempts in flight, by target"
})

/** @since 0.1.0 */
export const circuitState = Metric.gauge("fanout_circuit_state", {
  description: "Circuit breaker state by target: 0 closed, 1 half-open, 2 open"
})

/** @since 0.1.0 */
export const queueDepth = Metric.gauge("fanout_queue_depth", {
  description: "Deliveries pending or in flight in the store, overall and by target (sampled by workers)"
})

/** @since 0.1.0 */
export const oldestPendingAge = Metric.gauge("fanout_oldest_pending_age_seconds", {
  description:
    "Age of the oldest pending or in-flight delivery, in seconds (Prometheus base unit; sampled by workers and at each scrape)"
})

/** @since 0.1.0 */
export const deadLetters = Metric.gauge("fanout_dead_letters", {
  description: "Dead-lettered deliveries in the store, overall and by target (sampled by workers)"
})

/** @since 0.1.0 */
export const workerClaimed = Metric.gauge("fanout_worker_claimed", {
  description: "Deliveries this process's worker holds under a lease, by target"
})

/** @since 0.1.0 */
export const bulkheadInUse = Metric.gauge("fanout_bulkhead_in_use", {
  description: "Bulkhead permits in use, by target (sampled at each scrape)"
})

/** @since 0.1.0 */
export const storeListenReconnects = Metric.counter("fanout_store_listen_reconnects_total", {
  description:
    "Times a PostgreSQL store's LISTEN connection was re-established after it was lost or failed (each followed by a catch-up poll), by channel",
  incremental: true
})

/** @since 0.1.0 */
export const storeListening = Metric.gauge("fanout_store_listening", {
  description:
    "1 while a PostgreSQL store's LISTEN connection is up, 0 while it reconnects (wake-ups then come from polling only), by channel"
})

/** @since 0.1.0 */
export const authFailures = Metric.counter("fanout_auth_failures_total", {
  description: "Requests answered 401: no API key, a malformed or a wrong one",
  incremental: true
})

/** @since 0.1.0 */
export const authThrottled = Metric.counter("fanout_auth_throttled_total", {
  description:
    "Requests answered 429 because their client address failed authentication too often (server.authThrottle)",
  incremental: true
})

/** @since 0.1.0 */
export const ingestRefused = Metric.counter("fanout_ingest_refused_total", {
  description:
    "Events POSTed to /v1/events or /v1/events:batch that were not stored because of the store or the queue bound (answered 503 or 500), by reason: busy, unavailable, closed, corrupt, … or queue_full",
  incremental: true
})

/** @since 0.1.0 */
export const retentionRemoved = Metric.counter("fanout_retention_removed_total", {
  description:
    "Rows removed by retention passes (store.retention), by kind: deliveries (delivered or compensated, past retention.delivered), dead (dead letters past retention.dead), events (left without deliveries)",
  incremental: true
})

/** @since 0.1.0 */
export const sourceMessages = Metric.counter("fanout_source_messages_total", {
  description:
    "Broker messages a source handled, by source and outcome: received, stored (its event is in the store, a duplicate included), acked, rejected (to the broker's dead-letter path), redelivered (received again), retried (handed back after a transient store failure)",
  incremental: true
})

/** @since 0.1.0 */
export const sourceLag = Metric.gauge("fanout_source_lag", {
  description:
    "Messages waiting at the broker for a source: JetStream num_pending, the RabbitMQ queue's ready messages, the Redis consumer group's lag"
})
