/**
 * `simulate` and the arbitraries: determinism, virtual time, failure modes, and that the
 * arbitraries only produce values the library accepts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, FastCheck as fc, Schema } from "effect"
import { Event, Policy, Router } from "../../src/index.js"
import { arbitraries, Fault, keyOf, openWindows, simulate, webhook } from "../../src/testing.js"
import type { Simulation } from "../../src/testing.js"

const A = webhook("a", { policy: { timeout: 300, retry: { maxAttempts: 4, initialDelay: 50 } } })
const B = webhook("b", { policy: { timeout: 300, retry: { maxAttempts: 4, initialDelay: 50 } }, compensate: true })
const Shadow = webhook("shadow")
const router = Router.make().route("order.*", [A, B], { shadow: [Shadow] })

const events = Effect.all([1, 2, 3].map((i) => Event.make("order.placed", { i }, { id: `evt-${i}` })))

/** The parts of a run that must repeat exactly (global arrival counters and span ids aside). */
const fingerprint = (sim: Simulation.Simulation<Event.Any>) => ({
  outcomes: sim.sends.map((s) => s.outcomes),
  ledger: sim.ledger.map((
    r
  ) => [
    r.target,
    r.key,
    r.attempt,
    r.receivedAt - sim.startedAt,
    r.result,
    r.status,
    (r.completedAt ?? 0) - sim.startedAt
  ]),
  breakers: Object.fromEntries(Object.entries(sim.breakers).map(([k, v]) => [k, v.map((c) => c.state)])),
  elapsed: sim.finishedAt - sim.startedAt
})

describe("simulate", () => {
  it.effect("is deterministic: the same inputs give the same outcomes, ledgers and breaker states", () =>
    Effect.gen(function*() {
      const run = Effect.gen(function*() {
        return yield* simulate({
          router,
          testTargets: {
            a: Fault.random({ seed: 3, serverError: 0.3, reset: 0.2, hang: 0.1, latency: [0, 80] }),
            b: Fault.script([Fault.unavailable({ latency: 20 }), Fault.rateLimited(1, { format: "http-date" })]),
            shadow: Fault.random({ seed: 4, serverError: 0.5, latency: [0, 500] })
          },
          events: yield* events,
          mode: "all",
          seed: 11
        })
      })
      const first = yield* run
      const second = yield* run
      assert.isAbove(first.ledger.length, 6)
      assert.deepStrictEqual(fingerprint(second), fingerprint(first))
    }))

  it.effect("time is virtual and exact, and the TestClock is moved forward by it", () =>
    Effect.gen(function*() {
      const before = yield* Clock.currentTimeMillis
      const sim = yield* simulate({
        router: Router.make().route("*", [A]),
        testTargets: { a: [Fault.unavailable({ latency: 100 }), Fault.ok({ latency: 250 })] },
        events: [yield* Event.make("x", {}, { id: "e" })],
        seed: 1
      })
      const [sent] = sim.sends
      const outcome = sent!.outcomes.a
      assert.strictEqual(outcome?._tag, "Delivered")
      // 100 ms (503) + the jittered backoff (<= 50 ms) + 250 ms.
      const retryAt = sim.testTargets.a!.ledger[1]!.receivedAt - sim.startedAt
      assert.isTrue(retryAt >= 100 && retryAt <= 150, `retry at ${retryAt}`)
      assert.strictEqual(sent!.finishedAt - sent!.startedAt, retryAt + 250)
      assert.strictEqual(sim.startedAt, before)
      assert.strictEqual(yield* Clock.currentTimeMillis, sim.finishedAt)
    }))

  it.live("runs under the live clock too, without waiting in real time", () =>
    Effect.gen(function*() {
      const sim = yield* simulate({
        router: Router.make().route("*", [webhook("a", { policy: { timeout: "20 minutes", deadline: "1 hour" } })]),
        testTargets: { a: [Fault.ok({ latency: 10 * 60_000 })] },
        events: [yield* Event.make("x", {})]
      })
      // Ten simulated minutes: waiting for them in real time would run far past the test's 30 s timeout.
      assert.strictEqual(sim.finishedAt - sim.startedAt, 10 * 60_000)
    }))

  it.effect("background and shadow deliveries are awaited and recorded", () =>
    Effect.gen(function*() {
      const sim = yield* simulate({
        router,
        testTargets: { a: undefined, b: [Fault.ok({ latency: 40 })], shadow: [Fault.ok({ latency: 900 })] },
        events: yield* events,
        mode: "background"
      })
      for (const sent of sim.sends) {
        assert.deepStrictEqual(Object.keys(sent.outcomes).sort(), ["a", "b"])
        assert.deepStrictEqual(sent.shadow, ["shadow"])
        assert.strictEqual(sim.testTargets.shadow!.requestsFor(keyOf(sent.event, "shadow"))[0]?.result, "answered")
      }
      assert.strictEqual(sim.finishedAt - sim.startedAt, 900)
    }))

  it.effect("fails with SimulationError (Horizon) when the run outlasts its horizon", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        simulate({
          router: Router.make().route("*", [webhook("a", { policy: { timeout: "1 minute", deadline: "10 minutes" } })]),
          testTargets: { a: Fault.script([Fault.hang], { then: "repeat" }) },
          events: [yield* Event.make("x", {})],
          horizon: "30 seconds"
        })
      )
      assert.strictEqual(error._tag, "SimulationError")
      assert.strictEqual(error.reason, "Horizon")
    }))

  it.effect("records breaker transitions; openWindows gives each open period", () =>
    Effect.gen(function*() {
      const C = webhook("c", {
        policy: { circuitBreaker: { failureThreshold: 1, resetAfter: "1 second" }, retry: { maxAttempts: 3 } }
      })
      const sim = yield* simulate({
        router: Router.make().route("*", [C]),
        testTargets: { c: Fault.script([Fault.unavailable()], { then: "repeat" }) },
        events: [yield* Event.make("x", {}, { id: "e" })]
      })
      const windows = openWindows(sim.breakers.c!)
      assert.isAtLeast(windows.length, 1)
      assert.strictEqual(windows[0]!.until - windows[0]!.openedAt, 1000)
      assert.strictEqual(sim.breakers.c![0]!.state._tag, "Closed")
      // Attempt 1 fails and opens it; attempt 2 is refused locally (circuit open, asks to wait
      // 1 s); attempt 3 is the half-open probe at 1000 ms, fails, and opens it again.
      assert.deepStrictEqual(sim.testTargets.c!.ledger.map((r) => r.receivedAt - sim.startedAt), [0, 1000])
      assert.deepStrictEqual(windows.map((w) => w.openedAt - sim.startedAt), [0, 1000])
      assert.strictEqual(sim.sends[0]!.outcomes.c?._tag === "Failed" ? sim.sends[0]!.outcomes.c.attempts : 0, 3)
    }))
})

describe("arbitraries", () => {
  it.prop("events are valid envelopes with distinct ids; typed ones follow their schema", [
    arbitraries.events(arbitraries.event(), { maxLength: 5 }),
    arbitraries.event(Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Int })))
  ], ([many, typed]) => {
    assert.strictEqual(new Set(many.map((e) => e.id)).size, many.length)
    for (const e of [...many, typed]) {
      assert.doesNotThrow(() => Schema.decodeUnknownSync(Event.Envelope)(Event.encode(e)))
    }
    assert.strictEqual(typed.type, "order.placed")
    assert.isTrue(Number.isInteger(typed.payload.qty))
  })

  it.prop("policies are accepted by Policy.make and stay within their bounds", [
    arbitraries.policy({ rateLimit: "maybe" })
  ], ([input]) => {
    const policy = Policy.make(input)
    assert.isTrue(policy.retry.maxAttempts >= 1 && policy.retry.maxAttempts <= 5)
    assert.isTrue(policy.bulkhead.permits >= 1 && policy.bulkhead.permits <= 4)
  })

  it.prop(
    "fault scripts only hold steps a server can send",
    [arbitraries.faultScript(), arbitraries.randomFaults()],
    ([script, random]) => {
      for (const step of script.steps) {
        if (step._tag === "Respond") {
          assert.doesNotThrow(() => Fault.status(step.status, { latency: step.latency }))
        } else if (step._tag === "Reset") {
          assert.isAtLeast(step.latency, 0)
        }
      }
      assert.doesNotThrow(() => Fault.random(random))
    }
  )

  it("step kinds can be restricted", () => {
    const steps = fc.sample(arbitraries.step({ kinds: ["reset", "hang"] }), { numRuns: 50, seed: 1 })
    assert.isTrue(steps.every((s) => s._tag === "Reset" || s._tag === "Hang"))
  })
})
