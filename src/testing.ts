/**
 * `fanout/testing`: the public test kit.
 *
 * - {@link TestTarget}: a scriptable fake downstream API (5xx, 429 with `Retry-After`, resets,
 *   hangs, latency), with a ledger of every request and concurrency stats; served by a
 *   simulated `HttpClient` (deterministic under `TestClock`) or a real loopback server.
 * - {@link Fault}: fault steps, scripts and seeded random models.
 * - {@link arbitraries}: fast-check arbitraries of events, fault scripts and policies.
 * - {@link simulate}: runs a router against TestTargets in virtual time (deterministic; it moves
 *   the `TestClock` forward by the simulated time) and returns every outcome, ledger and breaker
 *   change, so properties of a pipeline take a few lines.
 * - {@link simulateDurable}: the durable mode in virtual time: the in-memory store, the outbox and
 *   workers that can be crashed (leases not released) and restarted; returns every delivery's end
 *   state and history, every request, the requests after a dead letter and the crashes.
 *
 * @since 0.1.0
 */

/**
 * Scriptable fake downstream APIs: `TestTarget.make`, the simulated client
 * (`TestTarget.layer`, `TestTarget.client`) and the loopback server (`TestTarget.serve`).
 *
 * @since 0.1.0
 */
export * as TestTarget from "./testing/TestTarget.js"

/**
 * Fault steps (`ok`, `status`, `unavailable`, `rateLimited`, `reset`, `hang`, `delayed`),
 * scripts (`script`) and seeded random models (`random`).
 *
 * @since 0.1.0
 */
export * as Fault from "./testing/Fault.js"

/**
 * fast-check arbitraries: `event`, `events`, `step`, `faultScript`, `randomFaults`, `policy`.
 *
 * @since 0.1.0
 */
export * as arbitraries from "./testing/arbitraries.js"

/**
 * The simulation's types and helpers (`Simulation.Options`, `Simulation.Sent`,
 * `Simulation.openWindows`, …).
 *
 * @since 0.1.0
 */
export * as Simulation from "./testing/simulate.js"

export {
  /**
   * The idempotency key of an event at a target: `<event id>:<target>`.
   *
   * @since 0.1.0
   */
  keyOf,
  /**
   * The periods a breaker was open, from a simulation's breaker changes.
   *
   * @since 0.1.0
   */
  openWindows,
  /**
   * Runs a router's fan-out against TestTargets in virtual time; returns every send's
   * outcomes, every TestTarget's ledger and every breaker change.
   *
   * @since 0.1.0
   */
  simulate,
  /**
   * Why a simulation did not finish (`Horizon`, `Stalled`).
   *
   * @since 0.1.0
   */
  SimulationError,
  /**
   * A ready-made target that POSTs events to the TestTarget of the same name.
   *
   * @since 0.1.0
   */
  webhook
} from "./testing/simulate.js"

/**
 * The durable simulation's types (`DurableSimulation.Options`, `DurableSimulation.CrashPoint`,
 * `DurableSimulation.DeliveryReport`, …).
 *
 * @since 0.1.0
 */
export * as DurableSimulation from "./testing/simulateDurable.js"

export {
  /**
   * Runs the durable mode (in-memory store, outbox, workers with crash-and-restart points) against
   * TestTargets in virtual time; returns every delivery's end state, attempts and requests, the
   * requests received after a dead letter, and the crashes performed.
   *
   * @since 0.1.0
   */
  simulateDurable
} from "./testing/simulateDurable.js"
