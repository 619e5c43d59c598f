/**
 * Runs a pipeline against TestTargets on the test kit's simulated client, in virtual time:
 * the pipeline counterpart of the kit's `simulate` (which runs routers). Time jumps from one
 * timer to the next as soon as every simulated fiber waits, so a run costs milliseconds of
 * real time; at the end the `TestClock` (under `it.effect`) is moved forward by the virtual
 * time that passed, so "time under TestClock" is exactly the simulated duration.
 *
 * (The kit's `VirtualTime` is what `simulate` itself uses; `TestClock.adjust` would give the
 * same semantics but pauses ~5 ms of real time per wake-up, too slow for 200-run properties.)
 */
import { Clock, Context, Effect, Either, Fiber, Layer, Random } from "effect"
import type { TestClock } from "effect"
import type { Event } from "../../src/index.js"
import { Pipeline } from "../../src/index.js"
import type { Fault } from "../../src/testing.js"
import { TestTarget } from "../../src/testing.js"
import * as VirtualTime from "../../src/testing/VirtualTime.js"

export interface PipelineRun<A> {
  /** The run's result, or its typed failure (`PipelineFailed`, `EnrichFailed`). */
  readonly result: Either.Either<A, Pipeline.PipelineFailed | Pipeline.EnrichFailed>
  readonly testTargets: Readonly<Record<string, TestTarget.TestTarget>>
  /** Every request every TestTarget received, in global arrival order. */
  readonly ledger: ReadonlyArray<TestTarget.Received>
  readonly startedAt: number
  readonly finishedAt: number
}

const isTestClock = (clock: Clock.Clock): clock is TestClock.TestClock =>
  typeof (clock as Partial<TestClock.TestClock>).adjust === "function"

/**
 * Runs `pipeline` on `event` in `mode`. Every target of the pipeline is built from its own
 * layer over the simulated client; `testTargets` gives each TestTarget's faults by name.
 */
export const simulatePipeline = <Pl extends Pipeline.Any>(options: {
  readonly pipeline: Pl
  readonly event: Pipeline.EventOf<Pl>
  readonly mode?: Pipeline.Mode
  readonly testTargets: Readonly<Record<string, Fault.Faults | undefined>> | ReadonlyArray<TestTarget.TestTarget>
  readonly seed?: number
  readonly horizon?: number
  /** Services the pipeline needs besides its targets (for `enrichWith`). */
  readonly context?: Context.Context<never>
}): Effect.Effect<
  PipelineRun<
    | Pipeline.Settled<Pipeline.StepsOf<Pl>, Pipeline.AggregateOf<Pl>, Pipeline.EnrichedEventOf<Pl>>
    | Pipeline.AllDelivered<Pipeline.StepsOf<Pl>, Pipeline.AggregateOf<Pl>, Pipeline.EnrichedEventOf<Pl>>
  >
> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const fakes: ReadonlyArray<TestTarget.TestTarget> = Array.isArray(options.testTargets)
      ? options.testTargets
      : Object.entries(options.testTargets as Record<string, Fault.Faults | undefined>).map(([name, faults]) =>
        TestTarget.make(name, faults === undefined ? {} : { faults })
      )
    const impl = options.pipeline as unknown as {
      readonly steps: ReadonlyArray<{ readonly target: { readonly layer: Layer.Layer<any, never, any> } }>
      readonly enrichers: ReadonlyArray<
        { readonly _tag: string; readonly target?: { readonly layer: Layer.Layer<any, never, any> } }
      >
    }
    const layers: Array<Layer.Layer<any, never, any>> = [
      ...impl.enrichers.flatMap((e) => (e.target !== undefined ? [e.target.layer] : [])),
      ...impl.steps.map((s) => s.target.layer)
    ]
    const targets = (layers.length === 0 ? Layer.empty : Layer.mergeAll(...(layers as [Layer.Layer<any>]))).pipe(
      Layer.provide(TestTarget.layer(...fakes))
    ) as Layer.Layer<any>
    const mode = options.mode ?? "settled"
    const program = Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const result =
        yield* (Pipeline.run(options.pipeline as Pipeline.Any, options.event, { mode: mode as "all" }) as Effect.Effect<
          any,
          Pipeline.PipelineFailed | Pipeline.EnrichFailed,
          any
        >).pipe(Effect.either)
      const finishedAt = yield* Clock.currentTimeMillis
      return { result, startedAt, finishedAt }
    }).pipe(
      Effect.provide(targets),
      Effect.provide(options.context ?? Context.empty())
    ) as Effect.Effect<{ result: Either.Either<any, any>; startedAt: number; finishedAt: number }>

    const start = clock.unsafeCurrentTimeMillis()
    const time = VirtualTime.make(start)
    const fiber = yield* Effect.fork(
      program.pipe(
        Effect.withRandom(Random.make(options.seed ?? 0)),
        Effect.withClock(time.clock),
        Effect.withScheduler(time.scheduler)
      )
    )
    const exit = yield* time.drive(fiber, options.horizon ?? 3_600_000)
    if (!VirtualTime.isExit(exit)) {
      yield* Fiber.interruptFork(fiber)
      return yield* Effect.dieMessage(`pipeline simulation: ${exit} after ${time.now() - start} ms of virtual time`)
    }
    if (isTestClock(clock)) yield* clock.adjust(time.now() - start)
    const done = yield* exit
    const byName: Record<string, TestTarget.TestTarget> = {}
    for (const fake of fakes) byName[fake.name] = fake
    return {
      ...done,
      testTargets: byName,
      ledger: fakes.flatMap((fake) => fake.ledger).sort((a, b) => a.order - b.order)
    }
  })

/** The requests a TestTarget received for one event's step (its idempotency key). */
export const requestsOf = (
  run: PipelineRun<unknown>,
  event: Event.Any,
  step: string,
  suffix = ""
): ReadonlyArray<TestTarget.Received> => run.testTargets[step]?.requestsFor(`${event.id}:${step}${suffix}`) ?? []

/** The outcomes of a run, whichever way it ended. */
export const outcomesOf = (run: PipelineRun<any>): Readonly<Record<string, Pipeline.StepOutcome>> =>
  Either.isRight(run.result)
    ? run.result.right.outcomes
    : run.result.left._tag === "PipelineFailed"
    ? run.result.left.outcomes
    : {}
