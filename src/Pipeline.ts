/**
 * Pipelines: a typed graph of steps around the fan-out.
 *
 * - `enrich`: before anything else, the event is sent to a target (or through any effect) and
 *   its answer turns the payload into a new one, which every step then receives;
 * - steps: targets that take the (enriched) event, concurrently, as a plain fan-out does;
 * - dependent steps: targets that run `after` named steps, the moment those succeeded, and
 *   receive their decoded answers as typed input;
 * - `aggregate`: combines every step's answer into one result for the caller.
 *
 * Every step is delivered by its target's own run-time (`yield* target.tag`): the same
 * policy code as `Fanout` (breaker, bulkhead, rate limit, retry, timeouts), the same
 * idempotency key `<event id>:<target>`, the same spans and metrics. A dependent step gets a
 * derived event: the same id, type, key, headers and creation time, with its input as payload.
 *
 * ```ts
 * const pipeline = Pipeline.make(OrderPlaced)
 *   .enrich(Customer, (event, customer) => ({ ...event.payload, customer }))
 *   .step(Inventory)
 *   .step(Payment)
 *   .step(Shipping, {
 *     after: [Inventory, Payment],
 *     input: ({ event, inputs }) => ({
 *       orderId: event.payload.orderId,
 *       reservationId: inputs.inventory.reservationId,
 *       chargeId: inputs.payment.chargeId
 *     })
 *   })
 *   .aggregate(({ responses }) => ({ trackingId: responses.shipping.trackingId }))
 *
 * const result = yield* Pipeline.run(pipeline, event, { mode: "all" })
 * ```
 *
 * @since 0.1.0
 */
// The public surface is defined in `./Pipeline/`, one file per concept; this module re-exports
// it, name for name (the cross-file helpers there are `@internal` and not re-exported).

export { TypeId } from "./Pipeline/model.js"

// Graph validation
export { Cycle, DuplicateStep, GraphSchema, UnknownStep, validateGraph } from "./Pipeline/graph.js"
export type { Graph, GraphInput, InputKind, PipelineError, ValidGraph } from "./Pipeline/graph.js"

// Outcomes and results
export { EnrichFailed, isBlocked, PipelineFailed } from "./Pipeline/model.js"
export type { AllDelivered, Blocked, Settled, StepOutcome, Timing } from "./Pipeline/model.js"

// The typed builder
export { fromSteps, make } from "./Pipeline/builder.js"
export type {
  AcceptedBy,
  AggregateContext,
  AggregateOf,
  Any,
  DefaultInput,
  EncodedEvent,
  EnrichedEventOf,
  Enricher,
  EnrichSpec,
  EventOf,
  Fresh,
  InputContext,
  Inputs,
  NameOf,
  Next,
  PayloadOf,
  Pipeline,
  Ref,
  RequirementsOf,
  Start,
  StepDef,
  StepOptions,
  StepsOf,
  StepSpec
} from "./Pipeline/builder.js"

// Direct execution
export { encodeEvent, run, runner, stepEvent } from "./Pipeline/run.js"
export type { Mode, Runner } from "./Pipeline/run.js"

// Durable mode
export {
  defaultDependentEvent,
  durableAggregate,
  durableEvent,
  durablePlan,
  NotDurable,
  parseStored,
  targets,
  tooLargeMarker
} from "./Pipeline/durable.js"
export type { DurablePlan } from "./Pipeline/durable.js"
