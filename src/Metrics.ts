/**
 * The Effect `Metric`s Fanout updates. Exported (for Prometheus) by the telemetry layer.
 *
 * @since 0.1.0
 */
import { Metric, MetricBoundaries } from "effect"

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
  description: "Age of the oldest pending or in-flight delivery, in seconds (Prometheus base unit; sampled by workers and at each scrape)"
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
