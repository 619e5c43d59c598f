/**
 * Pipelines: the in-memory runner (`runner`, `run`, `stepEvent`).
 * Re-exported by `../Pipeline.ts`, the public module.
 *
 * @internal
 */
import { Clock, DateTime, Deferred, Effect, Either, Fiber } from "effect"
import type * as Event from "../Event.js"
import type * as Outcome from "../Outcome.js"
import type * as Target from "../Target.js"
import * as TargetError from "../TargetError.js"
import {
  type AggregateOf,
  type Any,
  type EncodedEvent,
  type EnrichedEventOf,
  type Enricher,
  type EventOf,
  PipelineImpl,
  type RequirementsOf,
  type StepDef,
  type StepsOf,
  targetsOf
} from "./builder.js"
import {
  type AllDelivered,
  EnrichFailed,
  PipelineFailed,
  type Settled,
  type StepOutcome,
  type Timing
} from "./model.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Mode = "all" | "settled"

/**
 * A pipeline bound to its targets' run-times.
 *
 * @since 0.1.0
 * @category models
 */
export interface Runner<Pl extends Any> {
  readonly pipeline: Pl
  readonly run: {
    (event: EventOf<Pl>, options: { readonly mode: "all" }): Effect.Effect<
      AllDelivered<StepsOf<Pl>, AggregateOf<Pl>, EnrichedEventOf<Pl>>,
      PipelineFailed | EnrichFailed
    >
    (event: EventOf<Pl>, options?: { readonly mode?: "settled" }): Effect.Effect<
      Settled<StepsOf<Pl>, AggregateOf<Pl>, EnrichedEventOf<Pl>>,
      EnrichFailed
    >
  }
}

type Runtimes = ReadonlyMap<string, Target.Runtime<unknown>>

/**
 * The envelope of an event as JSON-friendly data (`createdAt` as an ISO string).
 *
 * @internal
 */
export const encodeEvent = (event: Event.Any): EncodedEvent => ({
  id: event.id,
  type: event.type,
  ...(event.key !== undefined ? { key: event.key } : {}),
  payload: event.payload,
  headers: event.headers,
  createdAt: DateTime.formatIso(event.createdAt)
})

/** @internal */
export const describeDefect = (defect: unknown): string => defect instanceof Error ? defect.message : String(defect)

const enrichOnce = (
  enricher: Enricher,
  event: Event.Any,
  runtimes: Runtimes
): Effect.Effect<Event.Any, EnrichFailed> => {
  const failed = (error: TargetError.DeliveryError, outcome?: Outcome.Failed | Outcome.Skipped) =>
    new EnrichFailed({ eventId: event.id, step: enricher.name, error, outcome })
  const transformFailed = (defect: unknown) =>
    failed(
      new TargetError.PermanentError({
        target: enricher.name,
        reason: "Transform",
        message: `${enricher.name}: enrich failed: ${describeDefect(defect)}`
      })
    )
  if (enricher._tag === "Effect") {
    return (Effect.suspend(() => enricher.f(event)) as Effect.Effect<unknown, TargetError.DeliveryError>).pipe(
      Effect.mapError((error) => failed(error)),
      Effect.catchAllDefect((defect) => Effect.fail(transformFailed(defect))),
      Effect.map((payload): Event.Any => ({ ...event, payload }))
    )
  }
  return runtimes.get(enricher.name)!.deliver(event).pipe(
    Effect.mapError((outcome) => failed(outcome.error, outcome)),
    Effect.flatMap((delivered) =>
      Effect.try({
        try: (): Event.Any => ({ ...event, payload: enricher.f(event, delivered.response) }),
        catch: transformFailed
      })
    )
  )
}

/** @internal */
export const eventFor = (
  step: StepDef,
  enriched: Event.Any,
  inputs: Readonly<Record<string, unknown>>,
  encoded: () => EncodedEvent
): Either.Either<Event.Any, TargetError.PermanentError> => {
  if (step.input === undefined && step.after.length === 0) return Either.right(enriched)
  try {
    const payload = step.input !== undefined
      ? step.input({ event: enriched, inputs: inputs as Record<string, unknown> })
      : { event: encoded(), inputs }
    return Either.right({ ...enriched, payload })
  } catch (defect) {
    return Either.left(
      new TargetError.PermanentError({
        target: step.name,
        reason: "Transform",
        message: `${step.name}: input mapping failed: ${describeDefect(defect)}`
      })
    )
  }
}

/**
 * The event a step receives, given the (enriched) event and its inputs' decoded answers by name:
 * the same id, type, key, headers and creation time, with the step's input as payload (the
 * event itself for a step with no `after` and no mapper). A mapper that throws gives a
 * `PermanentError` ("Transform"). The direct mode uses this; the durable mode can too, so both
 * send the same requests.
 *
 * @since 0.1.0
 * @category execution
 */
export const stepEvent = (
  pipeline: Any,
  step: string,
  event: Event.Any,
  inputs: Readonly<Record<string, unknown>>
): Either.Either<Event.Any, TargetError.PermanentError> => {
  const def = pipeline.steps.find((s) => s.name === step)
  if (def === undefined) {
    return Either.left(
      new TargetError.PermanentError({ target: step, reason: "InvalidRequest", message: `${step}: not a step of this pipeline` })
    )
  }
  return eventFor(def, event, inputs, () => encodeEvent(event))
}

interface Failure {
  readonly target: string
  readonly error: TargetError.DeliveryError
}

const execute = (
  pipeline: PipelineImpl,
  runtimes: Runtimes,
  original: Event.Any,
  mode: Mode
): Effect.Effect<Settled<any, any> | AllDelivered<any, any>, PipelineFailed | EnrichFailed> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const timeline: Array<Timing> = []

    // 1. Enrich stages, one after the other.
    let event = original
    for (const enricher of pipeline.enrichers) {
      const start = yield* Clock.currentTimeMillis
      event = yield* enrichOnce(enricher, event, runtimes).pipe(
        Effect.withSpan("fanout.pipeline.enrich", { attributes: { "fanout.step": enricher.name } })
      )
      timeline.push({
        step: enricher.name,
        phase: "enrich",
        startedAt: start,
        endedAt: yield* Clock.currentTimeMillis,
        outcome: "Delivered"
      })
    }
    const enriched = event
    let encoded: EncodedEvent | undefined
    const encodedEvent = () => (encoded ??= encodeEvent(enriched))

    // 2. Every step at once; each waits for its inputs' Deferreds.
    const steps = pipeline.steps
    const done = new Map<string, Deferred.Deferred<Outcome.Delivered<unknown>, void>>()
    for (const step of steps) done.set(step.name, yield* Deferred.make<Outcome.Delivered<unknown>, void>())
    const outcomes: Record<string, StepOutcome> = {}
    const sentEvents = new Map<string, Event.Any>()
    const times = new Map<string, { startedAt: number; endedAt: number | undefined }>()
    let firstFailure: Failure | undefined
    const all = mode === "all"

    const runStep = (step: StepDef): Effect.Effect<void, Failure> => {
      const runtime = runtimes.get(step.name)!
      const own = done.get(step.name)!
      const finish = (now: number) => {
        const t = times.get(step.name)
        if (t !== undefined && t.endedAt === undefined) t.endedAt = now
      }
      const failWith = (outcome: Outcome.Failed | Outcome.Skipped) =>
        Effect.gen(function*() {
          outcomes[step.name] = outcome
          finish(yield* Clock.currentTimeMillis)
          yield* Deferred.fail(own, undefined)
          if (all) {
            firstFailure ??= { target: step.name, error: outcome.error }
            return yield* Effect.fail<Failure>({ target: step.name, error: outcome.error })
          }
        })
      return Effect.gen(function*() {
        const awaited = yield* Effect.forEach(
          step.after,
          (name) => Effect.mapError(Deferred.await(done.get(name)!), () => name),
          { concurrency: "unbounded" }
        ).pipe(Effect.either)
        if (awaited._tag === "Left") {
          const by = awaited.left
          const upstream = outcomes[by]
          outcomes[step.name] = {
            _tag: "Blocked",
            target: step.name,
            by,
            root: upstream?._tag === "Blocked" ? upstream.root : by
          }
          return yield* Deferred.fail(own, undefined)
        }
        const inputs: Record<string, unknown> = {}
        step.after.forEach((name, i) => (inputs[name] = awaited.right[i]!.response))
        const prepared = eventFor(step, enriched, inputs, encodedEvent)
        const start = yield* Clock.currentTimeMillis
        times.set(step.name, { startedAt: start, endedAt: undefined })
        if (Either.isLeft(prepared)) {
          return yield* failWith({ _tag: "Failed", target: step.name, attempts: 0, durationMs: 0, error: prepared.left })
        }
        const sent = prepared.right
        sentEvents.set(step.name, sent)
        const result = yield* runtime.deliver(
          sent,
          all
            ? {
              // In a saga, an attempt already on the wire must end: its success must be undone.
              finishInFlight: runtime.hasCompensation,
              onDelivered: (delivered) =>
                Effect.flatMap(Clock.currentTimeMillis, (now) =>
                  Effect.sync(() => {
                    outcomes[step.name] = delivered
                    finish(now)
                  }))
            }
            : {}
        ).pipe(Effect.either)
        if (result._tag === "Left") return yield* failWith(result.left)
        outcomes[step.name] = result.right
        finish(yield* Clock.currentTimeMillis)
        yield* Deferred.succeed(own, result.right)
      }).pipe(
        Effect.onInterrupt(() =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.sync(() => {
              outcomes[step.name] ??= { _tag: "Cancelled", target: step.name }
              finish(now)
            }))
        )
      )
    }

    const ran = yield* Effect.forEach(steps, runStep, { concurrency: "unbounded", discard: true }).pipe(Effect.either)

    const timelineNow = () => {
      const entries: Array<Timing> = [...timeline]
      for (const step of steps) {
        const t = times.get(step.name)
        if (t === undefined) continue
        const outcome = outcomes[step.name]!
        entries.push({
          step: step.name,
          phase: "deliver",
          startedAt: t.startedAt,
          endedAt: t.endedAt ?? t.startedAt,
          outcome: outcome._tag === "Compensated" ? "Delivered" : outcome._tag === "Blocked" ? "Cancelled" : outcome._tag
        })
      }
      return entries.sort((a, b) => a.startedAt - b.startedAt || a.endedAt - b.endedAt)
    }

    const aggregateOf = (): unknown => {
      if (pipeline.aggregator === undefined) return undefined
      const responses: Record<string, unknown> = {}
      for (const step of steps) {
        const outcome = outcomes[step.name]
        if (outcome?._tag !== "Delivered") return undefined
        responses[step.name] = outcome.response
      }
      return pipeline.aggregator({ event: enriched, responses, outcomes: outcomes as Record<string, any> })
    }

    const finishedAt = yield* Clock.currentTimeMillis
    if (ran._tag === "Right") {
      return {
        eventId: enriched.id,
        type: enriched.type,
        event: enriched,
        outcomes: outcomes as Record<string, any>,
        aggregate: aggregateOf(),
        timeline: timelineNow(),
        startedAt,
        durationMs: finishedAt - startedAt
      }
    }

    // 3. `all` mode, after a failure. Steps cut short before they sent anything, behind an input
    // that did not succeed, were blocked by it (topological order, so chains resolve).
    for (const name of pipeline.graph.order) {
      const outcome = outcomes[name]
      if (outcome?._tag !== "Cancelled" || times.has(name)) continue
      const step = steps.find((s) => s.name === name)!
      const by = step.after.find((a) => {
        const tag = outcomes[a]?._tag
        return tag === "Failed" || tag === "Skipped" || tag === "Blocked"
      })
      if (by === undefined) continue
      const upstream = outcomes[by]!
      outcomes[name] = { _tag: "Blocked", target: name, by, root: upstream._tag === "Blocked" ? upstream.root : by }
    }

    // Compensation: every delivered step that can be undone, each once, after every delivered
    // step that ran after it (dependents before their inputs); independent ones concurrently.
    const delivered = steps.filter((s) => outcomes[s.name]?._tag === "Delivered").map((s) => s.name)
    const undone = new Map<string, Deferred.Deferred<void>>()
    for (const name of delivered) undone.set(name, yield* Deferred.make<void>())
    const dependents = new Map<string, Array<string>>()
    for (const step of steps) {
      for (const input of step.after) {
        if (undone.has(step.name)) dependents.set(input, [...(dependents.get(input) ?? []), step.name])
      }
    }
    const undoOne = (name: string) =>
      Effect.gen(function*() {
        yield* Effect.forEach(dependents.get(name) ?? [], (d) => Deferred.await(undone.get(d)!), { discard: true })
        const runtime = runtimes.get(name)!
        if (runtime.hasCompensation) {
          const success = outcomes[name] as Outcome.Delivered<unknown>
          const start = yield* Clock.currentTimeMillis
          const compensation = yield* Effect.merge(runtime.compensate(sentEvents.get(name)!, success.response))
          outcomes[name] = { _tag: "Compensated", target: name, delivered: success, compensation }
          timeline.push({
            step: name,
            phase: "compensate",
            startedAt: start,
            endedAt: yield* Clock.currentTimeMillis,
            outcome: compensation._tag
          })
        }
      }).pipe(Effect.ensuring(Deferred.succeed(undone.get(name)!, undefined)))
    // The saga's undo runs to its end even if the caller is interrupted meanwhile (as in Fanout).
    const undo = yield* Effect.forkDaemon(
      Effect.interruptible(Effect.forEach(delivered, undoOne, { concurrency: "unbounded", discard: true }))
    )
    yield* Effect.onInterrupt(Fiber.join(undo), () => Fiber.await(undo))
    const failure = firstFailure ?? ran.left
    return yield* new PipelineFailed({
      eventId: enriched.id,
      step: failure.target,
      error: failure.error,
      outcomes: { ...outcomes },
      timeline: timelineNow()
    })
  }).pipe(
    Effect.withSpan("fanout.pipeline", {
      attributes: {
        "fanout.event.id": original.id,
        "fanout.event.type": original.type,
        "fanout.mode": mode,
        "fanout.pipeline.steps": pipeline.steps.map((s) => s.name).join(",")
      }
    }),
    Effect.annotateLogs({ eventId: original.id })
  )

const effectStages = (pipeline: PipelineImpl) => pipeline.enrichers.filter((e) => e._tag === "Effect")

/**
 * Binds a pipeline to its targets' run-times (and the services its `enrichWith` stages need):
 * requires every one of them, so a pipeline whose targets the application does not provide
 * fails type-checking.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runner = <Pl extends Any>(pipeline: Pl): Effect.Effect<Runner<Pl>, never, RequirementsOf<Pl>> =>
  Effect.gen(function*() {
    // Every Pipeline is a PipelineImpl (only `make`/`fromSteps` build them); the public interface
    // leaves out the event type and the builder internals the runner reads.
    const impl = pipeline as unknown as PipelineImpl
    const runtimes = new Map<string, Target.Runtime<unknown>>()
    for (const target of targetsOf(impl)) {
      runtimes.set(target.name, (yield* target.tag) as Target.Runtime<unknown>)
    }
    // `enrichWith` effects may need services: capture the context they run in.
    const context = yield* Effect.context<never>()
    const bound = effectStages(impl).length === 0 ? impl : new PipelineImpl(
      impl.eventType,
      impl.enrichers.map((e): Enricher =>
        e._tag === "Effect" ? { ...e, f: (event: Event.Any) => Effect.provide(e.f(event), context) } : e
      ),
      impl.steps,
      impl.aggregator,
      impl.graph
    )
    const run = (event: Event.Any, options?: { readonly mode?: Mode }) =>
      execute(bound, runtimes, event, options?.mode ?? "settled")
    return { pipeline, run: run as Runner<Pl>["run"] }
  }) as Effect.Effect<Runner<Pl>, never, RequirementsOf<Pl>>

/**
 * Runs a pipeline on one event, directly (in process):
 *
 * - every step starts at once; a step with inputs waits for exactly those, and starts the
 *   moment the last one succeeded (the run takes the critical path, not the sum of levels);
 * - a step whose input did not succeed never sends anything: its outcome is {@link Blocked}
 *   by that input;
 * - `settled` (default): every step is tried; the result holds each step's outcome, and the
 *   aggregate when every step was delivered;
 * - `all`: on the first failure the running steps are interrupted (an attempt already on the
 *   wire to a step with a compensation is let finish) and every delivered step with a
 *   `compensate` is compensated exactly once, dependents before their inputs; the run then
 *   fails with {@link PipelineFailed}.
 *
 * An enrich failure fails the run with {@link EnrichFailed} in both modes.
 *
 * @since 0.1.0
 * @category execution
 */
export const run: {
  <Pl extends Any>(pipeline: Pl, event: EventOf<Pl>, options: { readonly mode: "all" }): Effect.Effect<
    AllDelivered<StepsOf<Pl>, AggregateOf<Pl>, EnrichedEventOf<Pl>>,
    PipelineFailed | EnrichFailed,
    RequirementsOf<Pl>
  >
  <Pl extends Any>(pipeline: Pl, event: EventOf<Pl>, options?: { readonly mode?: "settled" }): Effect.Effect<
    Settled<StepsOf<Pl>, AggregateOf<Pl>, EnrichedEventOf<Pl>>,
    EnrichFailed,
    RequirementsOf<Pl>
  >
} = // One implementation behind both overloads, whose result types differ by mode.
  ((pipeline: Any, event: Event.Any, options?: { readonly mode?: Mode }) =>
  Effect.flatMap(runner(pipeline), (r) => r.run(event, options as { readonly mode: "all" }))) as any
