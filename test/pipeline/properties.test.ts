/**
 * Properties of direct-mode pipelines over random acyclic graphs (up to 7 steps and an optional
 * enrich stage), random latencies, fault scripts and retry policies, in both modes, on the test
 * kit's simulated APIs in virtual time. What each step's API actually received (the TestTarget
 * ledgers, with arrival and completion order) is the ground truth:
 *
 * 1. no step sends anything before every one of its inputs succeeded;
 * 2. every step ends Delivered, Failed, Skipped, or Blocked by a named input that indeed did
 *    not succeed (and, in `all` mode, Cancelled or Compensated) — none is missing; in `settled`
 *    mode, a step is Blocked exactly when one of its inputs did not succeed;
 * 3. in `all` mode, every step whose API accepted the event and that has a compensation is
 *    compensated exactly once, after every compensated step that ran after it;
 * 4. when every call succeeds at once, the run takes exactly the critical path of the latencies
 *    (under TestClock), and each step starts exactly when its last input answered;
 * 5. graph validation: a cycle is reported iff there is one, and the reported cycle is real.
 *
 * Seed and run count: FANOUT_PROP_SEED, FANOUT_PROP_RUNS (defaults 20261122, 200).
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Either, FastCheck as fc } from "effect"
import { Event, Pipeline } from "../../src/index.js"
import { arbitraries, Fault, webhook } from "../../src/testing.js"
import { outcomesOf, requestsOf, simulatePipeline } from "./harness.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 200)
const MAX_STEPS = 7

interface StepWorld {
  readonly after: ReadonlyArray<number>
  readonly latency: number
  readonly script: Fault.FaultScript
  readonly compensate: boolean
  readonly maxAttempts: number
}

/** A random DAG: step i may run after any subset (up to 3) of steps 0..i-1. */
const dag = <A>(node: fc.Arbitrary<A>) =>
  fc.integer({ min: 1, max: MAX_STEPS }).chain((n) =>
    fc.tuple(
      ...Array.from({ length: n }, (_, i) =>
        fc.record({
          after: i === 0 ? fc.constant([] as Array<number>) : fc.subarray(Array.from({ length: i }, (_, j) => j), {
            maxLength: Math.min(3, i)
          }),
          node
        }))
    )
  )

const faultKinds = ["ok", "ok", "serverError", "clientError", "reset", "hang", "rateLimited"] as const

const faultyWorld = fc.record({
  steps: dag(fc.record({
    latency: fc.integer({ min: 0, max: 200 }),
    script: arbitraries.faultScript({ kinds: faultKinds, maxLength: 2, maxLatency: 100, maxRetryAfter: 1 }),
    compensate: fc.boolean(),
    maxAttempts: fc.integer({ min: 1, max: 3 })
  })).map((nodes) => nodes.map(({ after, node }): StepWorld => ({ after, ...node }))),
  enrich: fc.option(
    fc.record({
      latency: fc.integer({ min: 0, max: 100 }),
      script: arbitraries.faultScript({ kinds: ["ok", "serverError", "clientError"], maxLength: 1, maxLatency: 50 })
    }),
    { freq: 3, nil: undefined }
  ),
  mode: fc.constantFrom("settled" as const, "all" as const)
})

const nameOf = (i: number) => `s${i}`

/** Step n of a script; past its end, "ok" answers 200 after the step's own latency. */
const faultsOf = (script: Fault.FaultScript, latency: number): Fault.Faults => (request) => {
  if (request.method === "DELETE") return Fault.ok() // compensations always succeed
  if (request.attempt <= script.steps.length || script.then === "repeat") {
    return Fault.scriptStep(script, request.attempt)
  }
  return Fault.ok({ latency })
}

const policyOf = (maxAttempts: number) => ({
  timeout: 300,
  retry: { maxAttempts, initialDelay: 20, jitter: "none" as const },
  circuitBreaker: false as const
})

/** Builds the pipeline of a world with the typed builder (in topological order). */
const build = (
  steps: ReadonlyArray<StepWorld>,
  enrich: { readonly latency: number } | undefined
): Pipeline.Any => {
  let pipeline: any = Pipeline.make()
  if (enrich !== undefined) {
    pipeline = pipeline.enrich(
      webhook("enrich", { policy: policyOf(2) }),
      (event: Event.Any, response: unknown) => ({ original: event.payload, enrichment: response })
    )
  }
  steps.forEach((step, i) => {
    const target = webhook(nameOf(i), { policy: policyOf(step.maxAttempts), compensate: step.compensate })
    pipeline = pipeline.step(target, step.after.length > 0 ? { after: step.after.map(nameOf) } : undefined)
  })
  return pipeline
}

let eventCounter = 0
const newEvent = Event.make("order.placed", { orderId: "o-1" }).pipe(
  Effect.map((e) => ({ ...e, id: `evt-${++eventCounter}` }))
)

const descendants = (steps: ReadonlyArray<StepWorld>, i: number): Set<number> => {
  const found = new Set<number>()
  const visit = (j: number) =>
    steps.forEach((s, k) => {
      if (s.after.includes(j) && !found.has(k)) {
        found.add(k)
        visit(k)
      }
    })
  visit(i)
  return found
}

const isSuccess = (status: number | undefined) => status !== undefined && status >= 200 && status < 300

describe("pipeline properties", () => {
  it.effect.prop(
    `inputs before dependents; every step accounted for; blocked only by a failed input; sagas undo each success once, dependents first (seed ${SEED})`,
    [faultyWorld],
    ([w]) =>
      Effect.gen(function*() {
        const event = yield* newEvent
        const pipeline = build(w.steps, w.enrich)
        const testTargets: Record<string, Fault.Faults> = {}
        w.steps.forEach((s, i) => (testTargets[nameOf(i)] = faultsOf(s.script, s.latency)))
        if (w.enrich !== undefined) testTargets["enrich"] = faultsOf(w.enrich.script, w.enrich.latency)
        const run = yield* simulatePipeline({ pipeline, event, mode: w.mode, testTargets })
        const context = (extra: string) =>
          `${extra}\nworld: ${JSON.stringify(w)}\nresult: ${JSON.stringify(run.result)}`

        if (Either.isLeft(run.result) && run.result.left._tag === "EnrichFailed") {
          // The enrich stage failed: nothing else was sent.
          assert.isDefined(w.enrich, context("EnrichFailed without an enrich stage"))
          for (let i = 0; i < w.steps.length; i++) {
            assert.strictEqual(
              run.testTargets[nameOf(i)]!.ledger.length,
              0,
              context(`${nameOf(i)} sent after enrich failed`)
            )
          }
          return
        }
        const outcomes = outcomesOf(run)
        const allowed = w.mode === "settled"
          ? ["Delivered", "Failed", "Skipped", "Blocked"]
          : ["Delivered", "Failed", "Skipped", "Blocked", "Cancelled", "Compensated"]
        assert.deepStrictEqual(
          Object.keys(outcomes).sort(),
          w.steps.map((_, i) => nameOf(i)).sort(),
          context("one outcome per step")
        )

        w.steps.forEach((step, i) => {
          const name = nameOf(i)
          const outcome = outcomes[name]!
          const sent = requestsOf(run, event, name)
          const ctx = context(`${name}: ${JSON.stringify(outcome)}`)
          assert.include(allowed, outcome._tag, ctx)

          // (1) Nothing sent before every input had succeeded (its API answered 2xx first).
          if (sent.length > 0) {
            const first = sent[0]!
            for (const a of step.after) {
              const input = requestsOf(run, event, nameOf(a))
              const success = input.find((r) => r.result === "answered" && isSuccess(r.status))
              assert.isDefined(success, `${ctx}\ninput ${nameOf(a)} never succeeded`)
              assert.isBelow(success!.completedOrder!, first.order, `${ctx}\nstarted before ${nameOf(a)} answered`)
              assert.isAtMost(success!.completedAt!, first.receivedAt, ctx)
              assert.include(["Delivered", "Compensated"], outcomes[nameOf(a)]!._tag, ctx)
            }
          }

          // (2) Blocked: by one of its inputs, which did not succeed; nothing was sent.
          if (outcome._tag === "Blocked") {
            assert.include(step.after.map(nameOf), outcome.by, ctx)
            assert.include(["Failed", "Skipped", "Blocked"], outcomes[outcome.by]!._tag, ctx)
            assert.include(["Failed", "Skipped"], outcomes[outcome.root]!._tag, ctx)
            assert.strictEqual(sent.length, 0, ctx)
          }
          if (w.mode === "settled") {
            const inputsOk = step.after.every((a) => outcomes[nameOf(a)]!._tag === "Delivered")
            assert.strictEqual(outcome._tag === "Blocked", !inputsOk, ctx)
          }

          // A delivered step's API did accept it: its last request was answered with that status.
          const delivered = outcome._tag === "Delivered"
            ? outcome
            : outcome._tag === "Compensated"
            ? outcome.delivered
            : undefined
          if (delivered !== undefined) {
            const last = sent[sent.length - 1]
            assert.strictEqual(last?.result, "answered", ctx)
            assert.strictEqual(last?.status, delivered.status, ctx)
          }
        })

        // (3) Sagas.
        const undo = (i: number) => requestsOf(run, event, nameOf(i), ":compensate")
        if (w.mode === "settled" || Either.isRight(run.result)) {
          w.steps.forEach((_, i) => assert.strictEqual(undo(i).length, 0, context(`${nameOf(i)} compensated`)))
          if (w.mode === "all") {
            w.steps.forEach((_, i) =>
              assert.strictEqual(outcomes[nameOf(i)]!._tag, "Delivered", context("all: success"))
            )
          }
          return
        }
        const failure = run.result.left
        assert.strictEqual(failure._tag, "PipelineFailed", context("failure"))
        if (failure._tag !== "PipelineFailed") return
        assert.include(["Failed", "Skipped"], outcomes[failure.step]!._tag, context("the named failure"))
        w.steps.forEach((step, i) => {
          const name = nameOf(i)
          const outcome = outcomes[name]!
          const accepted = requestsOf(run, event, name).some((r) => r.result === "answered" && isSuccess(r.status))
          const ctx = context(`${name}: ${JSON.stringify(outcome)}`)
          if (step.compensate && accepted) {
            assert.strictEqual(outcome._tag, "Compensated", `${ctx}\na success left undone`)
            assert.strictEqual(undo(i).length, 1, `${ctx}\ncompensated ${undo(i).length} times`)
          } else {
            assert.strictEqual(undo(i).length, 0, `${ctx}\ncompensated without a success to undo`)
            assert.notStrictEqual(outcome._tag, "Compensated", ctx)
          }
          // Dependents first: every compensated step that ran after this one was undone before it.
          if (outcome._tag === "Compensated") {
            for (const d of descendants(w.steps, i)) {
              if (outcomes[nameOf(d)]!._tag !== "Compensated") continue
              assert.isBelow(undo(d)[0]!.completedOrder!, undo(i)[0]!.order, `${ctx}\n${nameOf(d)} undone after it`)
            }
          }
        })
      }),
    { timeout: 300_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )

  const healthyWorld = fc.record({
    steps: dag(fc.integer({ min: 0, max: 200 })),
    enrich: fc.option(fc.integer({ min: 0, max: 100 }), { freq: 3, nil: undefined }),
    mode: fc.constantFrom("settled" as const, "all" as const)
  })

  it.effect.prop(
    `when every call succeeds at once, the run takes the critical path, each step starting when its last input answered (seed ${SEED})`,
    [healthyWorld],
    ([w]) =>
      Effect.gen(function*() {
        const event = yield* newEvent
        const steps = w.steps.map(({ after, node }): StepWorld => ({
          after,
          latency: node,
          script: Fault.script([]),
          compensate: false,
          maxAttempts: 1
        }))
        const testTargets: Record<string, Fault.Faults> = {}
        steps.forEach((s, i) => (testTargets[nameOf(i)] = [Fault.ok({ latency: s.latency })]))
        if (w.enrich !== undefined) testTargets["enrich"] = [Fault.ok({ latency: w.enrich })]
        const before = yield* Clock.currentTimeMillis
        const run = yield* simulatePipeline({
          pipeline: build(steps, w.enrich === undefined ? undefined : { latency: w.enrich }),
          event,
          mode: w.mode,
          testTargets
        })
        const elapsed = (yield* Clock.currentTimeMillis) - before
        const context = `world: ${JSON.stringify(w)}\nresult: ${JSON.stringify(run.result)}`
        assert.isTrue(Either.isRight(run.result), context)
        const result = Either.getOrThrow(run.result)

        // The critical path, computed here: earliest finish of each step in index (topological) order.
        const offset = w.enrich ?? 0
        const finish: Array<number> = []
        steps.forEach((s, i) => {
          const start = Math.max(offset, ...s.after.map((a) => finish[a]!))
          finish[i] = start + s.latency
          // Each step's request arrived exactly when its last input answered (or enrichment ended).
          const first = requestsOf(run, event, nameOf(i))[0]
          assert.strictEqual(first?.receivedAt, result.startedAt + start, `${nameOf(i)}\n${context}`)
        })
        const critical = Math.max(offset, ...finish)
        assert.strictEqual(result.durationMs, critical, context)
        assert.strictEqual(elapsed, critical, `TestClock moved ${elapsed} ms\n${context}`)
      }),
    { timeout: 300_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )

  // Arbitrary graphs over 1..8 names, with or without cycles.
  const anyGraph = fc.integer({ min: 1, max: 8 }).chain((n) =>
    fc.tuple(
      ...Array.from({ length: n }, () =>
        fc.subarray(
          Array.from({ length: n }, (_, j) => j),
          { maxLength: Math.min(3, n) }
        ))
    )
  )

  it.prop(
    `validateGraph: a cycle iff there is one, and the named cycle is real; otherwise a topological order (seed ${SEED})`,
    [anyGraph],
    ([graph]) => {
      const steps = graph.map((after, i) => ({ name: nameOf(i), after: after.map(nameOf) }))
      // Independent check: repeatedly remove steps whose inputs are all removed.
      const removed = new Set<string>()
      let progress = true
      while (progress) {
        progress = false
        for (const s of steps) {
          if (!removed.has(s.name) && s.after.every((a) => removed.has(a))) {
            removed.add(s.name)
            progress = true
          }
        }
      }
      const cyclic = removed.size < steps.length
      const result = Pipeline.validateGraph({ steps })
      if (cyclic) {
        assert.isTrue(Either.isLeft(result))
        const error = Either.getLeft(result).pipe((o) => (o._tag === "Some" ? o.value : undefined))!
        assert.strictEqual(error._tag, "Cycle")
        const cycle = (error as Pipeline.Cycle).cycle
        assert.isAtLeast(cycle.length, 2)
        assert.strictEqual(cycle[0], cycle[cycle.length - 1])
        for (let k = 0; k + 1 < cycle.length; k++) {
          const from = steps.find((s) => s.name === cycle[k])!
          assert.include(from.after, cycle[k + 1], `${cycle.join(" → ")} is not a path of after links`)
        }
        assert.include(error.message, cycle.join(" → "))
      } else {
        assert.isTrue(Either.isRight(result))
        const order = Either.getOrThrow(result).order
        assert.deepStrictEqual([...order].sort(), steps.map((s) => s.name).sort())
        for (const s of steps) {
          for (const a of s.after) assert.isBelow(order.indexOf(a), order.indexOf(s.name))
        }
      }
    },
    { fastCheck: { numRuns: RUNS * 2, seed: SEED } }
  )
})
