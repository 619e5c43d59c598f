/**
 * Property: no request reaches a target while its circuit breaker is open. The breaker's open
 * periods ([openedAt, until), exact times from its state) are checked against the times the
 * fake API received each request.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { Event, Router } from "../../src/index.js"
import { arbitraries, Fault, openWindows, simulate, webhook } from "../../src/testing.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 200)
const names = ["a", "b"] as const

const world = fc.record({
  events: arbitraries.events(arbitraries.event({ type: "order.placed" }), { minLength: 1, maxLength: 5 }),
  concurrency: fc.constantFrom(1, 2, "unbounded" as const),
  targets: fc.tuple(
    ...names.map(() =>
      fc.record({
        policy: arbitraries.policy({ circuitBreaker: true, rateLimit: "maybe", permits: [1, 3] }),
        // Failure-heavy: the breakers open often.
        script: arbitraries.faultScript({
          kinds: ["serverError", "serverError", "reset", "hang", "slow", "ok", "rateLimited"],
          then: "repeat",
          maxLength: 4
        })
      })
    )
  )
})

/** Requests received strictly inside an open period. */
const violations = (sim: Effect.Effect.Success<ReturnType<typeof simulate>>, name: string) => {
  const windows = openWindows(sim.breakers[name] ?? [])
  return sim.testTargets[name]!.ledger.filter((r) =>
    windows.some((w) => r.receivedAt > w.openedAt && r.receivedAt < w.until)
  )
}

describe("property: circuit breaker", () => {
  it.effect.prop(
    `no request reaches a target while its breaker is open (seed ${SEED})`,
    [world],
    ([w]) =>
      Effect.gen(function*() {
        const targets = names.map((name, i) => webhook(name, { policy: w.targets[i]!.policy }))
        const sim = yield* simulate({
          router: Router.make().route("order.*", targets),
          testTargets: Object.fromEntries(names.map((name, i) => [name, w.targets[i]!.script])),
          events: w.events,
          concurrency: w.concurrency,
          tracing: false
        })
        for (const name of names) {
          const bad = violations(sim, name)
          assert.deepStrictEqual(
            bad.map((r) => ({ at: r.receivedAt, key: r.key })),
            [],
            `${name}: windows ${JSON.stringify(openWindows(sim.breakers[name]!))}`
          )
        }
      }),
    { timeout: 180_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )

  it.effect("a script that opens the breaker: requests stop for resetAfter, then one probe goes through", () =>
    Effect.gen(function*() {
      const A = webhook("a", {
        policy: {
          circuitBreaker: { failureThreshold: 2, resetAfter: "1 second" },
          retry: { maxAttempts: 1 }
        }
      })
      const events = yield* Effect.all([1, 2, 3, 4, 5].map((i) => Event.make("x", {}, { id: `e${i}` })))
      const sim = yield* simulate({
        router: Router.make().route("*", [A]),
        testTargets: { a: () => Fault.unavailable({ latency: 10 }) },
        events,
        concurrency: 1
      })
      const windows = openWindows(sim.breakers.a!)
      assert.strictEqual(windows.length, 1)
      // e1, e2 fail and open it; e3..e5 are skipped locally (no request), within the window.
      assert.deepStrictEqual(sim.testTargets.a!.ledger.map((r) => r.key), ["e1:a", "e2:a"])
      assert.deepStrictEqual(sim.sends.map((s) => s.outcomes.a?._tag), [
        "Failed",
        "Failed",
        "Skipped",
        "Skipped",
        "Skipped"
      ])
      assert.deepStrictEqual(violations(sim, "a"), [])
    }))
})
