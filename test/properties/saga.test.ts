/**
 * Property (all mode, saga): when a send fails, every target that had succeeded and defines
 * `compensate` is compensated exactly once, in reverse order of success; no other target is.
 * When it succeeds, nothing is compensated.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { Router } from "../../src/index.js"
import { arbitraries, keyOf, simulate, webhook } from "../../src/testing.js"
import type { TestTarget } from "../../src/testing.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 200)
const names = ["a", "b", "c", "d"] as const

const world = fc.record({
  events: arbitraries.events(arbitraries.event({ type: "order.placed" }), { maxLength: 2 }),
  targets: fc.tuple(
    ...names.map(() =>
      fc.record({
        compensate: fc.boolean(),
        policy: arbitraries.policy({ maxAttempts: [1, 3] }),
        // One script for both the delivery and (under its own key) the compensation.
        script: arbitraries.faultScript({ maxLength: 3 })
      })
    )
  )
})

const is2xx = (r: TestTarget.Received) => r.result === "answered" && r.status !== undefined && r.status < 300

describe("property: saga compensation in all mode", () => {
  it.effect.prop(
    `succeeded targets with compensate are compensated exactly once, in reverse order (seed ${SEED})`,
    [world],
    ([w]) =>
      Effect.gen(function*() {
        const targets = names.map((name, i) =>
          webhook(name, { policy: w.targets[i]!.policy, compensate: w.targets[i]!.compensate })
        )
        const sim = yield* simulate({
          router: Router.make().route("order.*", targets),
          testTargets: Object.fromEntries(names.map((name, i) => [name, w.targets[i]!.script])),
          events: w.events,
          mode: "all",
          concurrency: 1,
          tracing: false
        })
        for (const sent of sim.sends) {
          const failed = sent.error !== undefined
          if (failed) assert.strictEqual(sent.error!._tag, "FanoutFailed")
          const succeeded: Array<{ readonly name: string; readonly at: number }> = []
          for (const [i, name] of names.entries()) {
            const fake = sim.testTargets[name]!
            const key = keyOf(sent.event, name)
            const accepted = fake.requestsFor(key).filter(is2xx)
            const undo = fake.requestsFor(`${key}:compensate`)
            const outcome = sent.outcomes[name]
            const context = `${name}: ${JSON.stringify(outcome)} undo=${
              JSON.stringify(undo.map((r) => [r.step, r.result]))
            }`
            assert.isDefined(outcome, context)
            assert.isAtMost(accepted.length, 1, `a delivery stops at its first success: ${context}`)
            if (!failed || !w.targets[i]!.compensate || accepted.length === 0) {
              // Nothing to undo: no compensation request at all.
              assert.strictEqual(undo.length, 0, context)
              assert.notStrictEqual(outcome!._tag, "Compensated", context)
              continue
            }
            // Succeeded, has compensate, send failed: compensated, exactly once.
            assert.strictEqual(outcome!._tag, "Compensated", context)
            if (outcome!._tag !== "Compensated") continue
            assert.isAtMost(undo.filter(is2xx).length, 1, context)
            assert.strictEqual(undo.filter(is2xx).length, outcome.compensation._tag === "Delivered" ? 1 : 0, context)
            assert.isTrue(undo.every((r) => r.method === "DELETE"), context)
            assert.isTrue(undo[0]!.order > accepted[0]!.completedOrder!, "undo comes after the success")
            succeeded.push({ name, at: accepted[0]!.completedAt! })
          }
          // Reverse order of success (where the successes happened at different times).
          const firstUndo = (name: string) =>
            sim.testTargets[name]!.requestsFor(`${keyOf(sent.event, name)}:compensate`)[0]!.order
          for (const x of succeeded) {
            for (const y of succeeded) {
              if (x.at < y.at) assert.isTrue(firstUndo(y.name) < firstUndo(x.name), `${y.name} undone before ${x.name}`)
            }
          }
        }
      }),
    { timeout: 180_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )
})
