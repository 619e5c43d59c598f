/**
 * Pipelines: the typed builder (`make`, `fromSteps` and the types a pipeline is built with).
 * Re-exported by `../Pipeline.ts`, the public module.
 *
 * @internal
 */
import type { Effect } from "effect"
import { Either } from "effect"
import type * as Event from "../Event.js"
import type * as Outcome from "../Outcome.js"
import type * as Target from "../Target.js"
import type * as TargetError from "../TargetError.js"
import { type Graph, type PipelineError, validateGraph } from "./graph.js"
import { TypeId } from "./model.js"

/**
 * The envelope as a dependent step receives it in its default input (JSON-shaped:
 * `createdAt` is an ISO string).
 *
 * @since 0.1.0
 * @category models
 */
export interface EncodedEvent<T extends string = string, P = unknown> {
  readonly id: string
  readonly type: T
  readonly key?: string
  readonly payload: P
  readonly headers: Readonly<Record<string, string>>
  readonly createdAt: string
}

/**
 * A reference to a step already in the pipeline: its target, or its name.
 *
 * @since 0.1.0
 * @category type-level
 */
export type Ref<S> = (keyof S & string) | { readonly name: keyof S & string }

/**
 * The name a {@link Ref} stands for.
 *
 * @since 0.1.0
 * @category type-level
 */
export type NameOf<X> = X extends string ? X : X extends { readonly name: infer N extends string } ? N : never

/**
 * The decoded answers of the steps named in `After`, by name.
 *
 * @since 0.1.0
 * @category type-level
 */
export type Inputs<S, After extends ReadonlyArray<unknown>> = {
  readonly [K in NameOf<After[number]> & keyof S]: S[K]
}

/**
 * What a step's `input` mapper receives: the (enriched) event and its inputs' answers.
 *
 * @since 0.1.0
 * @category models
 */
export interface InputContext<T extends string, P, I> {
  readonly event: Event.Event<T, P>
  readonly inputs: I
}

/**
 * The default payload of a dependent step: `{ event, inputs }`.
 *
 * @since 0.1.0
 * @category models
 */
export interface DefaultInput<T extends string, P, I> {
  readonly event: EncodedEvent<T, P>
  readonly inputs: I
}

/**
 * What `aggregate` receives: the event, every step's decoded answer, and the full outcomes.
 *
 * @since 0.1.0
 * @category models
 */
export interface AggregateContext<T extends string, P, S> {
  readonly event: Event.Event<T, P>
  readonly responses: { readonly [K in keyof S]: S[K] }
  readonly outcomes: { readonly [K in keyof S]: Outcome.Delivered<S[K]> }
}

/**
 * The payload a target accepts (its `accepts` schema's type; `unknown` without one).
 *
 * @since 0.1.0
 * @category type-level
 */
export type AcceptedBy<T> = T extends Target.Target<any, infer P, any> ? P : never

/**
 * Rejects a target whose name is already a step (names are idempotency keys).
 *
 * @since 0.1.0
 * @category type-level
 */
export type Fresh<T, S> = T extends { readonly name: infer N extends string } ?
  string extends N | keyof S ? unknown // names known only at run time are checked at run time
  : N extends keyof S ? { readonly "a step of this name is already in the pipeline": N }
  : unknown
  : unknown

/**
 * The options of a dependent step.
 *
 * @since 0.1.0
 * @category models
 */
export interface StepOptions<T extends string, P, S, After extends ReadonlyArray<Ref<S>>, I> {
  /** The steps this one runs after, as targets or names; it receives their decoded answers. */
  readonly after?: After
  /** Builds this step's payload from the event and its inputs (default: `{ event, inputs }`). */
  readonly input?: (context: InputContext<T, P, Inputs<S, After>>) => I
}

type Simplify<A> = { readonly [K in keyof A]: A[K] } & {}

/**
 * The pipeline after adding the step `T`.
 *
 * @since 0.1.0
 * @category type-level
 */
export type Next<E extends Event.Any, P, S, Agg, R, T extends Target.Any> = Pipeline<
  E,
  P,
  Simplify<S & { readonly [K in T["name"]]: Target.ResponseOf<T> }>,
  Agg,
  R | Target.Requirements<T>
>

/**
 * A pipeline over events `E`, whose steps see the payload `P` (after enrichment), with steps
 * `S` (name → decoded answer), an aggregate of type `Agg`, needing the target services `R`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Pipeline<E extends Event.Any, P, S, Agg, R> {
  readonly [TypeId]: {
    readonly _E: E
    readonly _P: P
    readonly _S: S
    readonly _Agg: Agg
    readonly _R: R
  }
  /** The graph by name: persistable, and valid by construction. */
  readonly graph: Graph
  /** @internal */
  readonly enrichers: ReadonlyArray<Enricher>
  /** @internal */
  readonly steps: ReadonlyArray<StepDef>
  /** @internal */
  readonly aggregator: ((context: AggregateContext<string, unknown, any>) => unknown) | undefined

  /**
   * Adds a step. Without options it receives the (enriched) event. With `after`, it runs once
   * those steps succeeded and receives `{ event, inputs }` (`inputs`: their decoded answers by
   * name), or what `input` builds from that. The target must accept that payload.
   * Throws a {@link PipelineError} for a duplicate name or an unknown reference.
   */
  step<T extends Target.Any>(target: T & Fresh<T, S> & Target.Accepting<P>): Next<E, P, S, Agg, R, T>
  step<T extends Target.Any, const After extends ReadonlyArray<Ref<S>> = readonly []>(
    target: T & Fresh<T, S>,
    options: {
      readonly after?: After
      readonly input: (context: InputContext<E["type"], P, Inputs<S, After>>) => AcceptedBy<T>
    }
  ): Next<E, P, S, Agg, R, T>
  step<T extends Target.Any, const After extends ReadonlyArray<Ref<S>>>(
    target: T & Fresh<T, S> & Target.Accepting<NoInfer<DefaultInput<E["type"], P, Inputs<S, After>>>>,
    options: { readonly after: After }
  ): Next<E, P, S, Agg, R, T>

  /** Combines every step's answer into one result (computed when every step was delivered). */
  aggregate<B>(f: (context: AggregateContext<E["type"], P, S>) => B): Pipeline<E, P, S, B, R>
}

/**
 * A pipeline with no step yet: it can still be enriched.
 *
 * @since 0.1.0
 * @category models
 */
export interface Start<E extends Event.Any, P, R> extends Pipeline<E, P, {}, undefined, R> {
  /**
   * Sends the event to `target` first (under its policy, key `<event id>:<target>`); its
   * decoded answer and the event give the payload every later step receives. A failure of the
   * target fails the run with {@link EnrichFailed}; so does a throw of `f` (a `PermanentError`).
   */
  enrich<T extends Target.Any & Target.Accepting<P> & { readonly name: string }, P2>(
    target: T,
    f: (event: Event.Event<E["type"], P>, response: Target.ResponseOf<T>) => P2
  ): Start<E, P2, R | Target.Requirements<T>>

  /**
   * Enriches with any effect (named `name` in the graph and the timeline). Its failure fails
   * the run with {@link EnrichFailed}, classified by the error's own type; it is not retried
   * here (put a retry inside, or use a target).
   */
  enrichWith<P2, R2 = never>(
    name: string,
    f: (event: Event.Event<E["type"], P>) => Effect.Effect<P2, TargetError.TransientError | TargetError.PermanentError, R2>
  ): Start<E, P2, R | R2>
}

/**
 * Any pipeline.
 *
 * @since 0.1.0
 * @category models
 */
export type Any = Pipeline<any, any, any, any, any>

/**
 * @since 0.1.0
 * @category type-level
 */
export type EventOf<Pl> = Pl extends { readonly [TypeId]: { readonly _E: infer E } } ? E : never
/**
 * The payload every step sees (after enrichment).
 *
 * @since 0.1.0
 * @category type-level
 */
export type PayloadOf<Pl> = Pl extends { readonly [TypeId]: { readonly _P: infer P } } ? P : never
/**
 * The steps: name → decoded answer.
 *
 * @since 0.1.0
 * @category type-level
 */
export type StepsOf<Pl> = Pl extends { readonly [TypeId]: { readonly _S: infer S } } ? S : never
/**
 * @since 0.1.0
 * @category type-level
 */
export type AggregateOf<Pl> = Pl extends { readonly [TypeId]: { readonly _Agg: infer A } } ? A : never
/**
 * The target services a pipeline needs.
 *
 * @since 0.1.0
 * @category type-level
 */
export type RequirementsOf<Pl> = Pl extends { readonly [TypeId]: { readonly _R: infer R } } ? R : never

/**
 * The event as the steps see it: the pipeline's event type, with the enriched payload.
 *
 * @since 0.1.0
 * @category type-level
 */
export type EnrichedEventOf<Pl> = Event.Event<Extract<EventOf<Pl>, Event.Any>["type"], PayloadOf<Pl>>

/** @internal */
export type Enricher =
  | {
    readonly _tag: "Target"
    readonly name: string
    readonly target: Target.Any
    readonly f: (event: Event.Any, response: unknown) => unknown
  }
  | {
    readonly _tag: "Effect"
    readonly name: string
    readonly f: (event: Event.Any) => Effect.Effect<unknown, TargetError.TransientError | TargetError.PermanentError, any>
  }

/** @internal */
export interface StepDef {
  readonly name: string
  readonly target: Target.Any
  readonly after: ReadonlyArray<string>
  readonly input: ((context: InputContext<string, unknown, Record<string, unknown>>) => unknown) | undefined
}

const nameOf = (ref: string | { readonly name: string }): string => typeof ref === "string" ? ref : ref.name

const graphOf = (
  eventType: string | undefined,
  enrichers: ReadonlyArray<Enricher>,
  steps: ReadonlyArray<StepDef>,
  hasAggregate: boolean
): Either.Either<Graph, PipelineError> =>
  Either.map(
    validateGraph({ enrich: enrichers.map((e) => e.name), steps }),
    (valid): Graph => ({
      ...(eventType !== undefined ? { event: eventType } : {}),
      enrich: valid.enrich,
      steps: valid.steps.map((s, i) => ({
        name: s.name,
        after: s.after,
        input: steps[i]!.input !== undefined ? "mapped" : s.after.length === 0 ? "event" : "inputs"
      })),
      order: valid.order,
      aggregate: hasAggregate
    })
  )

/** @internal */
export class PipelineImpl {
  // A phantom marker: the variance struct exists only in the types, so it has no value to hold.
  readonly [TypeId] = undefined as any
  constructor(
    readonly eventType: string | undefined,
    readonly enrichers: ReadonlyArray<Enricher>,
    readonly steps: ReadonlyArray<StepDef>,
    readonly aggregator: ((context: AggregateContext<string, unknown, any>) => unknown) | undefined,
    readonly graph: Graph
  ) {}

  static build(
    eventType: string | undefined,
    enrichers: ReadonlyArray<Enricher>,
    steps: ReadonlyArray<StepDef>,
    aggregator: ((context: AggregateContext<string, unknown, any>) => unknown) | undefined
  ): Either.Either<PipelineImpl, PipelineError> {
    return Either.map(
      graphOf(eventType, enrichers, steps, aggregator !== undefined),
      (graph) => new PipelineImpl(eventType, enrichers, steps, aggregator, graph)
    )
  }

  private rebuild(
    enrichers: ReadonlyArray<Enricher>,
    steps: ReadonlyArray<StepDef>,
    aggregator: ((context: AggregateContext<string, unknown, any>) => unknown) | undefined
  ): PipelineImpl {
    return Either.getOrThrowWith(PipelineImpl.build(this.eventType, enrichers, steps, aggregator), (e) => e)
  }

  step(target: Target.Any, options: StepOptions<string, unknown, any, any, unknown> = {}): PipelineImpl {
    const after = (options.after ?? []).map(nameOf)
    return this.rebuild(this.enrichers, [...this.steps, {
      name: target.name,
      target,
      after,
      input: options.input as StepDef["input"]
    }], this.aggregator)
  }

  aggregate(f: (context: AggregateContext<string, unknown, any>) => unknown): PipelineImpl {
    return this.rebuild(this.enrichers, this.steps, f)
  }

  enrich(target: Target.Any, f: (event: Event.Any, response: unknown) => unknown): PipelineImpl {
    if (this.steps.length > 0) throw new TypeError("pipeline: enrich stages come before the first step")
    return this.rebuild([...this.enrichers, { _tag: "Target", name: target.name, target, f }], this.steps, this.aggregator)
  }

  enrichWith(
    name: string,
    f: (event: Event.Any) => Effect.Effect<unknown, TargetError.TransientError | TargetError.PermanentError, any>
  ): PipelineImpl {
    if (this.steps.length > 0) throw new TypeError("pipeline: enrich stages come before the first step")
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/.test(name)) {
      throw new TypeError(`pipeline: an enrich stage name must be 1-100 characters of [A-Za-z0-9_.-], got ${JSON.stringify(name)}`)
    }
    return this.rebuild([...this.enrichers, { _tag: "Effect", name, f }], this.steps, this.aggregator)
  }
}

/**
 * Starts a pipeline over the events of a definition (or, with none, untyped events).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: {
  <T extends string, P, I>(definition: Event.Definition<T, P, I>): Start<Event.Event<T, P>, P, never>
  (): Start<Event.Any, unknown, never>
} = // One untyped implementation behind the overloads: each overload's return type carries what it
  // infers from `definition`, which TypeScript cannot relate to a single function body.
  ((definition?: Event.Definition<string, unknown, unknown>) =>
  new PipelineImpl(definition?.type, [], [], undefined, {
    ...(definition !== undefined ? { event: definition.type } : {}),
    enrich: [],
    steps: [],
    order: [],
    aggregate: false
  })) as any

/**
 * @since 0.1.0
 * @category models
 */
export interface StepSpec<T extends Target.Any = Target.Any> {
  readonly target: T
  readonly after?: ReadonlyArray<string> | undefined
  readonly input?: ((context: InputContext<string, unknown, Record<string, unknown>>) => unknown) | undefined
}

/**
 * An enrich stage of an untyped pipeline: the target's answer and the event give the new payload.
 *
 * @since 0.1.0
 * @category models
 */
export interface EnrichSpec<T extends Target.Any = Target.Any> {
  readonly target: T
  readonly f: (event: Event.Any, response: unknown) => unknown
}

/**
 * Builds an untyped pipeline from steps given in any order (as a configuration lists them),
 * checking the graph: a duplicate name, an unknown reference or a cycle is a
 * {@link PipelineError}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromSteps = <const Specs extends ReadonlyArray<StepSpec>, const En extends ReadonlyArray<EnrichSpec> = []>(
  steps: Specs,
  options: {
    readonly enrich?: En
    readonly aggregate?: (context: AggregateContext<string, unknown, Record<string, unknown>>) => unknown
  } = {}
): Either.Either<
  Pipeline<
    Event.Any,
    unknown,
    Record<string, unknown>,
    unknown,
    Target.Requirements<Specs[number]["target"] | En[number]["target"]>
  >,
  PipelineError
> =>
  PipelineImpl.build(
    undefined,
    (options.enrich ?? []).map(({ f, target }) => ({ _tag: "Target", name: target.name, target, f })),
    steps.map((s) => ({ name: s.target.name, target: s.target, after: s.after ?? [], input: s.input })),
    options.aggregate as PipelineImpl["aggregator"]
    // The step and aggregate types are inferred from `steps`/`options` at the call; the built value is untyped.
  ) as any

/** @internal */
export const targetsOf = (pipeline: Pick<PipelineImpl, "enrichers" | "steps">): ReadonlyArray<Target.Any> => [
  ...pipeline.enrichers.flatMap((e) => (e._tag === "Target" ? [e.target] : [])),
  ...pipeline.steps.map((s) => s.target)
]
