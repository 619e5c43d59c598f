/**
 * Property: a target never has more requests in flight than its bulkhead's permits, whatever
 * the events, their concurrency and the target's latencies and faults.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { Event, Router } from "../../src/index.js"
import { arbitraries, Fault, simulate, webhook } from "../../src/testing.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 200)
const names = ["a", "b"] as const

const world = fc.record({
  events: arbitraries.events(arbitraries.event({ type: "order.placed" }), { minLength: 2, maxLength: 6 }),
  targets: fc.tuple(
    ...names.map(() =>
      fc.record({
        policy: arbitraries.policy({ permits: [1, 3], queue: [0, 8], rateLimit: "maybe" }),
        // Mostly slow answers, so requests overlap.
        script: arbitraries.faultScript({ kinds: ["ok", "serverError", "slow", "hang", "reset"], maxLatency: 500 })
      })
    )
  )
})

describe("property: bulkhead", () => {
  it.effect.prop(
    `at most bulkhead.permits requests in flight at once at a target (seed ${SEED})`,
    [world],
    ([w]) =>
      Effect.gen(function*() {
        const targets = names.map((name, i) => webhook(name, { policy: w.targets[i]!.policy }))
        const sim = yield* simulate({
          router: Router.make().route("order.*", targets),
          testTargets: Object.fromEntries(names.map((name, i) => [name, w.targets[i]!.script])),
          events: w.events,
          tracing: false
        })
        for (const name of names) {
          const permits = sim.policies[name]!.bulkhead.permits
          const stats = sim.testTargets[name]!.stats
          assert.isAtMost(stats.maxInFlight, permits, `${name}: ${JSON.stringify(stats)}`)
          // Recomputed from the ledger's own intervals, as a cross-check of the counter.
          const ledger = sim.testTargets[name]!.ledger
          const points = ledger.flatMap((r) => [
            [r.order, 1] as const,
            [r.completedOrder ?? Number.POSITIVE_INFINITY, -1] as const
          ]).sort((x, y) => x[0] - y[0])
          let inFlight = 0
          let max = 0
          for (const [, delta] of points) max = Math.max(max, inFlight += delta)
          assert.strictEqual(max, stats.maxInFlight, name)
        }
      }),
    { timeout: 180_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )

  it.effect("a bulkhead of 1 with three concurrent 100 ms events serves them one after another", () =>
    Effect.gen(function*() {
      const A = webhook("a", { policy: { bulkhead: { permits: 1 } } })
      const sim = yield* simulate({
        router: Router.make().route("*", [A]),
        testTargets: { a: [Fault.ok({ latency: 100 })] },
        events: yield* Effect.all([1, 2, 3].map((i) => Event.make("x", {}, { id: `e${i}` })))
      })
      assert.strictEqual(sim.testTargets.a!.stats.maxInFlight, 1)
      assert.deepStrictEqual(sim.testTargets.a!.ledger.map((r) => r.receivedAt - sim.startedAt), [0, 100, 200])
    }))
})
