/**
 * Pipelines: the durable plan and stored answers (what the outbox persists, and the events and
 * aggregate a durable worker computes from it). Re-exported by `../Pipeline.ts`, the public module.
 *
 * @internal
 */
import { Data, Effect, Either, Option, Schema } from "effect"
import type * as Event from "../Event.js"
import type * as Outcome from "../Outcome.js"
import type * as Target from "../Target.js"
import * as TargetError from "../TargetError.js"
import { type AggregateContext, type Any, targetsOf } from "./builder.js"
import { describeDefect, encodeEvent, eventFor } from "./run.js"

/**
 * A pipeline as the durable outbox stores it: one delivery per enrich stage and step, and
 * which delivery runs after which. Enrich stages run one after another, and every step runs
 * after the last of them (it needs the enriched payload) and after its own `after`.
 *
 * @since 0.1.0
 * @category models
 */
export interface DurablePlan {
  readonly targets: ReadonlyArray<string>
  readonly after: Readonly<Record<string, ReadonlyArray<string>>>
}

/**
 * Why a pipeline cannot run durably: an `enrichWith` stage is an arbitrary effect, which a
 * persisted graph cannot name; use `enrich(target, f)` instead.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotDurable extends Data.TaggedError("NotDurable")<{
  readonly step: string
}> {
  override get message(): string {
    return `pipeline: enrich stage ${this.step} is an effect, which a durable pipeline cannot persist; enrich through a target instead`
  }
}

/**
 * The durable plan of a pipeline (see {@link DurablePlan}).
 *
 * @since 0.1.0
 * @category durable
 */
export const durablePlan = (pipeline: Any): Either.Either<DurablePlan, NotDurable> => {
  const impl = pipeline
  const effect = impl.enrichers.find((e) => e._tag === "Effect")
  if (effect !== undefined) return Either.left(new NotDurable({ step: effect.name }))
  const enrich = impl.enrichers.map((e) => e.name)
  const after: Record<string, ReadonlyArray<string>> = {}
  enrich.forEach((name, i) => {
    if (i > 0) after[name] = [enrich[i - 1]!]
  })
  const last = enrich.length > 0 ? [enrich[enrich.length - 1]!] : []
  for (const step of impl.steps) {
    const inputs = [...last, ...step.after]
    if (inputs.length > 0) after[step.name] = inputs
  }
  return Either.right({ targets: [...enrich, ...impl.steps.map((s) => s.name)], after })
}

/**
 * The marker a worker stores instead of an answer larger than its bound (not valid JSON, so it
 * cannot be mistaken for an answer).
 *
 * @internal
 */
export const tooLargeMarker = (bytes: number): string => `!too_large:${bytes}`

/**
 * Parses one stored answer (the JSON text a worker stored when the input was delivered).
 *
 * @internal
 */
export const parseStored = (
  target: string,
  input: string,
  text: string | undefined
): Either.Either<unknown, TargetError.PermanentError> => {
  if (text === undefined) return Either.right(undefined)
  if (text.startsWith("!too_large:")) {
    return Either.left(
      new TargetError.PermanentError({
        target,
        reason: "InvalidRequest",
        message: `${target}: the answer of its input ${input} (${
          text.slice("!too_large:".length)
        } bytes) was larger than the worker stores (maxStoredResponseBytes)`
      })
    )
  }
  try {
    return Either.right(JSON.parse(text))
  } catch {
    return Either.left(
      new TargetError.PermanentError({ target, reason: "InvalidRequest", message: `${target}: the stored answer of ${input} is not JSON` })
    )
  }
}

/** Parses and decodes stored answers with their targets' `response` schemas. */
const decodeStored = (
  impl: Any,
  target: string,
  stored: Readonly<Record<string, string | undefined>>
): Effect.Effect<Record<string, unknown>, TargetError.PermanentError> =>
  Effect.gen(function*() {
    const decoded: Record<string, unknown> = {}
    for (const [input, text] of Object.entries(stored)) {
      const parsed = yield* parseStored(target, input, text)
      const source = targetsOf(impl).find((t) => t.name === input)
      const schema = source?.options.response as Schema.Schema<unknown, unknown> | undefined
      decoded[input] = schema === undefined ? parsed : yield* Schema.decodeUnknown(schema)(parsed).pipe(
        Effect.mapError((error) =>
          new TargetError.PermanentError({
            target,
            reason: "InvalidRequest",
            message: `${target}: the stored answer of ${input} does not match its response schema: ${error.message}`
          })
        )
      )
    }
    return decoded
  })

/** Applies the enrich stages before `target` (all of them when it is not one) to the event. */
const enrichStored = (
  impl: Any,
  target: string,
  event: Event.Any,
  decoded: Readonly<Record<string, unknown>>
): Effect.Effect<Event.Any, TargetError.PermanentError> =>
  Effect.gen(function*() {
    let enriched = event
    for (const enricher of impl.enrichers) {
      if (enricher.name === target) return enriched
      if (enricher._tag !== "Target") continue
      if (!(enricher.name in decoded)) {
        return yield* new TargetError.PermanentError({
          target,
          reason: "InvalidRequest",
          message: `${target}: the answer of enrich stage ${enricher.name} is missing`
        })
      }
      const current = enriched
      enriched = yield* Effect.try({
        try: (): Event.Any => ({ ...current, payload: enricher.f(current, decoded[enricher.name]) }),
        catch: (defect) =>
          new TargetError.PermanentError({
            target,
            reason: "Transform",
            message: `${enricher.name}: enrich failed: ${describeDefect(defect)}`
          })
      })
    }
    return enriched
  })

/**
 * The pipeline's aggregate computed from a durable run's stored answers, once every step is
 * delivered (the outbox keeps every answer of a pipeline that has an aggregate): `None` when the
 * pipeline has no aggregate or a step is not delivered yet. The aggregate function receives what
 * direct mode gives it: the enriched event, each step's decoded answer, and its outcome.
 *
 * @since 0.1.0
 * @category durable
 */
export const durableAggregate = (
  pipeline: Any,
  status: {
    readonly event: Event.Any
    readonly deliveries: ReadonlyArray<{
      readonly target: string
      readonly status: string
      readonly response: string | undefined
      readonly totalAttempts: number
      readonly history: ReadonlyArray<{ readonly status?: number | undefined; readonly durationMs: number }>
    }>
  }
): Effect.Effect<Option.Option<unknown>, TargetError.PermanentError> =>
  Effect.gen(function*() {
    const impl = pipeline
    if (impl.aggregator === undefined) return Option.none()
    if (status.deliveries.some((d) => d.status !== "delivered")) return Option.none()
    const stored: Record<string, string | undefined> = {}
    for (const d of status.deliveries) stored[d.target] = d.response
    const decoded = yield* decodeStored(impl, "aggregate", stored)
    const event = yield* enrichStored(impl, "aggregate", status.event, decoded)
    const responses: Record<string, unknown> = {}
    const outcomes: Record<string, Outcome.Delivered<unknown>> = {}
    for (const step of impl.steps) {
      const d = status.deliveries.find((x) => x.target === step.name)
      const last = d?.history.at(-1)
      responses[step.name] = decoded[step.name]
      outcomes[step.name] = {
        _tag: "Delivered",
        target: step.name,
        attempts: d?.totalAttempts ?? 0,
        status: last?.status ?? 0,
        durationMs: last?.durationMs ?? 0,
        response: decoded[step.name]
      }
    }
    const aggregator = impl.aggregator
    return Option.some(
      yield* Effect.try({
        try: () => aggregator({ event, responses, outcomes } as AggregateContext<string, unknown, any>),
        catch: (defect) =>
          new TargetError.PermanentError({
            target: "aggregate",
            reason: "Transform",
            message: `aggregate failed: ${describeDefect(defect)}`
          })
      })
    )
  })

/**
 * The event a durable delivery of `target` sends, from the stored event and the stored answers of
 * its inputs: each answer is decoded with its target's `response` schema, the enrich stages before
 * `target` are applied in order, then the step's input is built as in direct mode
 * ({@link stepEvent}). A missing, undecodable or unmappable input is a `PermanentError` (the
 * delivery is dead-lettered, and replayable once the cause is fixed).
 *
 * @since 0.1.0
 * @category durable
 */
export const durableEvent = (
  pipeline: Any,
  target: string,
  event: Event.Any,
  stored: Readonly<Record<string, string | undefined>>
): Effect.Effect<Event.Any, TargetError.PermanentError> =>
  Effect.gen(function*() {
    const impl = pipeline
    const decoded = yield* decodeStored(impl, target, stored)
    const enriched = yield* enrichStored(impl, target, event, decoded)
    if (impl.enrichers.some((e) => e.name === target)) return enriched
    const step = impl.steps.find((s) => s.name === target)
    if (step === undefined) {
      return yield* new TargetError.PermanentError({
        target,
        reason: "InvalidRequest",
        message: `${target}: not a step of the pipeline for ${event.type}`
      })
    }
    const inputs: Record<string, unknown> = {}
    for (const name of step.after) inputs[name] = decoded[name]
    return yield* eventFor(step, enriched, inputs, () => encodeEvent(enriched))
  })

/**
 * The event a durable dependent delivery sends when no pipeline is registered for its event
 * type (a configured `after`): the payload is `{ event, inputs }`, the event envelope and each
 * input's answer as JSON.
 *
 * @since 0.1.0
 * @category durable
 */
export const defaultDependentEvent = (
  target: string,
  event: Event.Any,
  stored: Readonly<Record<string, string | undefined>>
): Either.Either<Event.Any, TargetError.PermanentError> => {
  const inputs: Record<string, unknown> = {}
  for (const [input, text] of Object.entries(stored)) {
    const parsed = parseStored(target, input, text)
    if (Either.isLeft(parsed)) return Either.left(parsed.left)
    inputs[input] = parsed.right
  }
  return Either.right({ ...event, payload: { event: encodeEvent(event), inputs } })
}

/**
 * Every target a pipeline sends to (enrich stages first), to give a durable worker.
 *
 * @since 0.1.0
 * @category durable
 */
export const targets = (pipeline: Any): ReadonlyArray<Target.Any> => targetsOf(pipeline)
