/**
 * Pipelines: graph validation (the errors, the persistable graph description and
 * `validateGraph`). Re-exported by `../Pipeline.ts`, the public module.
 *
 * @internal
 */
import { Data, Either, Schema } from "effect"
import { check } from "../internal/pipelineGraph.js"

/**
 * A step runs `after` a name that is not a step of the pipeline.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownStep extends Data.TaggedError("UnknownStep")<{
  readonly step: string
  readonly reference: string
}> {
  override get message() {
    return `pipeline: step ${JSON.stringify(this.step)} runs after ${
      JSON.stringify(this.reference)
    }, which is not a step of the pipeline`
  }
}

/**
 * Two steps (or an enrich stage and a step) have the same name. Names are idempotency keys
 * (`<event id>:<name>`), so they must be unique.
 *
 * @since 0.1.0
 * @category errors
 */
export class DuplicateStep extends Data.TaggedError("DuplicateStep")<{
  readonly step: string
}> {
  override get message() {
    return `pipeline: ${JSON.stringify(this.step)} appears twice (a target can be one step or one enrich stage of a pipeline)`
  }
}

/**
 * The `after` links close a loop: `cycle` is the path, `["a", "b", "a"]` meaning a runs
 * after b, which runs after a.
 *
 * @since 0.1.0
 * @category errors
 */
export class Cycle extends Data.TaggedError("Cycle")<{
  readonly cycle: ReadonlyArray<string>
}> {
  override get message() {
    return `pipeline: cycle ${this.cycle.join(" → ")} (each step runs after the next one)`
  }
}

/**
 * Why a pipeline's graph is not valid.
 *
 * @since 0.1.0
 * @category errors
 */
export type PipelineError = UnknownStep | DuplicateStep | Cycle

// ---------------------------------------------------------------------------------------
// Graph description (what the config and the durable mode persist)
// ---------------------------------------------------------------------------------------

/**
 * How a step's payload is made: `"event"` (no `after`, no mapper: the enriched event's payload),
 * `"inputs"` (the default for dependent steps: `{ event, inputs }`), `"mapped"` (a function of
 * `{ event, inputs }`, which lives in code: a persisted graph names it, it cannot hold it).
 *
 * @since 0.1.0
 * @category models
 */
export type InputKind = "event" | "inputs" | "mapped"

/**
 * The shape of a pipeline, by name only: JSON-friendly, for persistence and configuration.
 *
 * @since 0.1.0
 * @category schemas
 */
export const GraphSchema = Schema.Struct({
  /** The event type of a typed pipeline. */
  event: Schema.optional(Schema.String),
  /** Enrich stages, in the order they run (before every step). */
  enrich: Schema.Array(Schema.String),
  /** The steps, in declaration order, each with the steps it runs after. */
  steps: Schema.Array(Schema.Struct({
    name: Schema.String,
    after: Schema.Array(Schema.String),
    input: Schema.Literal("event", "inputs", "mapped")
  })),
  /** Every step once, each after all of its inputs. */
  order: Schema.Array(Schema.String),
  aggregate: Schema.Boolean
}).annotations({ identifier: "PipelineGraph" })

/**
 * @since 0.1.0
 * @category models
 */
export type Graph = typeof GraphSchema.Type

/**
 * An untyped graph to validate: what a JSON configuration holds.
 *
 * @since 0.1.0
 * @category models
 */
export interface GraphInput {
  readonly enrich?: ReadonlyArray<string> | undefined
  readonly steps: ReadonlyArray<{ readonly name: string; readonly after?: ReadonlyArray<string> | undefined }>
}

/**
 * A valid graph: steps by name with their `after` lists (duplicates removed), and a
 * topological order.
 *
 * @since 0.1.0
 * @category models
 */
export interface ValidGraph {
  readonly enrich: ReadonlyArray<string>
  readonly steps: ReadonlyArray<{ readonly name: string; readonly after: ReadonlyArray<string> }>
  readonly order: ReadonlyArray<string>
}

const toError = (problem: { readonly _tag: string } & Record<string, any>): PipelineError =>
  problem._tag === "DuplicateStep"
    ? new DuplicateStep({ step: problem["step"] })
    : problem._tag === "UnknownStep"
    ? new UnknownStep({ step: problem["step"], reference: problem["reference"] })
    : new Cycle({ cycle: problem["cycle"] })

/**
 * Validates an untyped graph (the same check the typed builder runs): names are unique across
 * enrich stages and steps, every `after` names a step, and there is no cycle.
 *
 * @example
 * ```ts
 * Pipeline.validateGraph({ steps: [{ name: "a", after: ["b"] }, { name: "b", after: ["a"] }] })
 * // Either.left(Cycle { cycle: ["a", "b", "a"] }): "pipeline: cycle a → b → a …"
 * ```
 *
 * @since 0.1.0
 * @category validation
 */
export const validateGraph = (graph: GraphInput): Either.Either<ValidGraph, PipelineError> => {
  const enrich = graph.enrich ?? []
  const result = check(enrich, graph.steps)
  return result._tag === "Left"
    ? Either.left(toError(result.left))
    : Either.right({ enrich: [...enrich], steps: result.right.steps, order: result.right.order })
}
