/**
 * Property: for any events, fault scripts and policies, every routed target ends Delivered,
 * Failed (permanent, or transient after exhausting its attempts / deadline / max elapsed) or
 * Skipped — never missing from the outcomes — and no delivery makes more than maxAttempts
 * attempts. Checked against what the fake APIs actually received.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, FastCheck as fc } from "effect"
import { Router, TargetError } from "../../src/index.js"
import { arbitraries, keyOf, simulate, webhook } from "../../src/testing.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 200)
const names = ["a", "b", "c"] as const

const world = fc.record({
  events: arbitraries.events(arbitraries.event({ type: "order.placed" }), { maxLength: 3 }),
  targets: fc.tuple(
    ...names.map(() =>
      fc.record({ policy: arbitraries.policy({ rateLimit: "maybe" }), script: arbitraries.faultScript() })
    )
  ),
  mode: fc.constantFrom("settled" as const, "background" as const),
  concurrency: fc.constantFrom(1, "unbounded" as const)
})

describe("property: every routed target has an outcome", () => {
  it.effect.prop(
    `Delivered | Failed | Skipped for each routed target, consistent with the ledger; attempts <= maxAttempts (seed ${SEED})`,
    [world],
    ([w]) =>
      Effect.gen(function*() {
        const targets = names.map((name, i) => webhook(name, { policy: w.targets[i]!.policy }))
        const router = Router.make().route("order.*", targets)
        const sim = yield* simulate({
          router,
          testTargets: Object.fromEntries(names.map((name, i) => [name, w.targets[i]!.script])),
          events: w.events,
          mode: w.mode,
          concurrency: w.concurrency,
          tracing: false
        })
        assert.strictEqual(sim.sends.length, w.events.length)
        for (const sent of sim.sends) {
          assert.isUndefined(sent.error)
          const routed = router.resolve(sent.event).targets.map((t) => t.name).sort()
          assert.deepStrictEqual(Object.keys(sent.outcomes).sort(), routed, "one outcome per routed target")
          for (const name of routed) {
            const outcome = sent.outcomes[name]!
            const policy = sim.policies[name]!
            const maxAttempts = policy.retry.maxAttempts
            const received = sim.testTargets[name]!.requestsFor(keyOf(sent.event, name))
            const context = `${name}: ${JSON.stringify(outcome)} / ${
              JSON.stringify(received.map((r) => [r.step, r.result]))
            }`
            assert.include(["Delivered", "Failed", "Skipped"], outcome._tag, context)
            if (outcome._tag === "Cancelled" || outcome._tag === "Compensated") continue
            assert.isAtMost(outcome.attempts, maxAttempts, context)
            assert.isAtMost(received.length, outcome.attempts, context)
            if (outcome._tag === "Delivered") {
              // It really was accepted: the last request with its key was answered with that 2xx.
              const last = received[received.length - 1]
              assert.strictEqual(last?.result, "answered", context)
              assert.strictEqual(last?.status, outcome.status, context)
              assert.isTrue(outcome.status >= 200 && outcome.status < 300, context)
            } else if (outcome._tag === "Skipped") {
              // Nothing reached the target; every attempt was refused locally.
              assert.strictEqual(received.length, 0, context)
              assert.include(
                ["CircuitOpenError", "BulkheadRejectedError", "RateLimitedError"],
                outcome.error._tag,
                context
              )
            } else {
              const error = outcome.error
              if (TargetError.isTransient(error)) {
                // A transient failure is final only when the policy says so.
                const exhausted = outcome.attempts === maxAttempts
                const maxElapsedReached = outcome.durationMs + Duration.toMillis(policy.retry.maxDelay) >=
                  Duration.toMillis(policy.retry.maxElapsed)
                assert.isTrue(exhausted || maxElapsedReached, `gave up early: ${context}`)
              } else if (error._tag === "TimeoutError") {
                assert.strictEqual(error.scope, "deadline", context)
                assert.strictEqual(outcome.durationMs, Duration.toMillis(policy.deadline), context)
              } else {
                assert.strictEqual(error._tag, "PermanentError", context)
                if (error._tag === "PermanentError" && error.status !== undefined) {
                  assert.strictEqual(received[received.length - 1]?.status, error.status, context)
                }
              }
            }
          }
        }
      }),
    { timeout: 180_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )
})
