/**
 * Pipelines: the shared model (the type id, step outcomes, run results and run errors).
 * Re-exported by `../Pipeline.ts`, the public module.
 *
 * @internal
 */
import { Data } from "effect"
import type * as Event from "../Event.js"
import type * as Outcome from "../Outcome.js"
import * as TargetError from "../TargetError.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("fanout/Pipeline")

/**
 * The step never ran: its input `by` did not succeed (failed, was skipped, blocked or
 * cancelled). `root` is the step whose own failure started the chain.
 *
 * @since 0.1.0
 * @category models
 */
export interface Blocked {
  readonly _tag: "Blocked"
  readonly target: string
  readonly by: string
  readonly root: string
}

/**
 * What became of one step.
 *
 * @since 0.1.0
 * @category models
 */
export type StepOutcome<A = unknown> =
  | Outcome.Delivered<A>
  | Outcome.Failed
  | Outcome.Skipped
  | Blocked
  | Outcome.Cancelled
  | Outcome.Compensated<A>

/**
 * @since 0.1.0
 * @category predicates
 */
export const isBlocked = (outcome: StepOutcome<any>): outcome is Blocked => outcome._tag === "Blocked"

/**
 * One span of the timeline: an enrich call, a step's delivery (from its first request to its
 * outcome, retries included) or a compensation. Times are `Clock` milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Timing {
  readonly step: string
  readonly phase: "enrich" | "deliver" | "compensate"
  readonly startedAt: number
  readonly endedAt: number
  readonly outcome: "Delivered" | "Failed" | "Skipped" | "Cancelled"
}

/**
 * The result of a `settled` run: every step's outcome, delivered or not.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settled<S, Agg, Ev extends Event.Any = Event.Any> {
  readonly eventId: string
  readonly type: string
  /** The event as the steps saw it (after the enrich stages). */
  readonly event: Ev
  readonly outcomes: { readonly [K in keyof S]: Outcome.Delivered<S[K]> | Outcome.Failed | Outcome.Skipped | Blocked }
  /** The aggregate, when the pipeline has one and every step was delivered. */
  readonly aggregate: Agg | undefined
  readonly timeline: ReadonlyArray<Timing>
  readonly startedAt: number
  readonly durationMs: number
}

/**
 * The result of an `all` run that succeeded: every step delivered.
 *
 * @since 0.1.0
 * @category models
 */
export interface AllDelivered<S, Agg, Ev extends Event.Any = Event.Any> {
  readonly eventId: string
  readonly type: string
  readonly event: Ev
  readonly outcomes: { readonly [K in keyof S]: Outcome.Delivered<S[K]> }
  /** The aggregate (`undefined` when the pipeline has none). */
  readonly aggregate: Agg
  readonly timeline: ReadonlyArray<Timing>
  readonly startedAt: number
  readonly durationMs: number
}

/**
 * An enrich stage failed: no step ran. `error` is classified like any target's
 * (`transient` tells whether a later try may succeed).
 *
 * @since 0.1.0
 * @category errors
 */
export class EnrichFailed extends Data.TaggedError("EnrichFailed")<{
  readonly eventId: string
  readonly step: string
  readonly error: TargetError.DeliveryError
  /** The target's outcome (for a target stage). */
  readonly outcome: Outcome.Failed | Outcome.Skipped | undefined
}> {
  /** Whether retrying later may succeed. */
  get transient(): boolean {
    return TargetError.isTransient(this.error)
  }
  override get message() {
    return `event ${this.eventId}: enrich ${this.step} failed: ${this.error.message}`
  }
}

/**
 * In `all` mode: a step failed. `step` and `error` name the first failure; `outcomes` holds
 * every step's end state (delivered, compensated, failed, skipped, blocked or cancelled).
 *
 * @since 0.1.0
 * @category errors
 */
export class PipelineFailed extends Data.TaggedError("PipelineFailed")<{
  readonly eventId: string
  readonly step: string
  readonly error: TargetError.DeliveryError
  readonly outcomes: Readonly<Record<string, StepOutcome>>
  readonly timeline: ReadonlyArray<Timing>
}> {
  override get message() {
    return `event ${this.eventId}: step ${this.step} failed: ${this.error.message}`
  }
}
