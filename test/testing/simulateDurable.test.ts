/**
 * `simulateDurable`: the durable mode (memory store, outbox, workers) in virtual time, with
 * crashes that keep their leases. A property over random fault scripts, policies and crash
 * points (no loss, no request after a dead letter, one idempotency key per delivery through
 * crashes, determinism), and concrete crash-and-lease-expiry cases asserting the recorded
 * virtual instants.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, FastCheck as fc } from "effect"
import { Event, Router } from "../../src/index.js"
import { arbitraries, Fault, simulateDurable, webhook } from "../../src/testing.js"
import type { DurableSimulation } from "../../src/testing.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 60)
const names = ["a", "b"] as const

/** The report without the TestTarget objects (their ledgers carry process-wide counters and span ids). */
const comparable = (sim: DurableSimulation.DurableSimulation<Event.Any>) => ({ ...sim, testTargets: undefined })

const world = fc.record({
  events: arbitraries.events(arbitraries.event({ type: "order.placed" }), { maxLength: 4 }),
  workers: fc.integer({ min: 1, max: 3 }),
  leaseMs: fc.integer({ min: 2_500, max: 10_000 }),
  seed: fc.integer({ min: 0, max: 1_000 }),
  targets: fc.tuple(
    ...names.map(() =>
      fc.record({
        policy: arbitraries.policy({ maxAttempts: [1, 5] }),
        script: arbitraries.faultScript()
      })
    )
  ),
  crashes: fc.array(
    fc.record({
      worker: fc.integer({ min: 0, max: 2 }),
      at: fc.integer({ min: 0, max: 10_000 }),
      restartAfter: fc.integer({ min: 0, max: 30_000 })
    }),
    { maxLength: 4 }
  )
})

describe("simulateDurable", () => {
  it.effect.prop(
    `no loss, no request after dead, one idempotency key through crashes, deterministic (seed ${SEED})`,
    [world],
    ([w]) =>
      Effect.gen(function*() {
        const router = Router.make().route(
          "order.*",
          names.map((name, i) => webhook(name, { policy: w.targets[i]!.policy }))
        )
        const run = simulateDurable({
          router,
          testTargets: Object.fromEntries(names.map((name, i) => [name, w.targets[i]!.script])),
          events: w.events,
          workers: w.workers,
          leaseMs: w.leaseMs,
          // Every crash restarts: with no worker left, nothing could settle.
          crashes: w.crashes.map((c) => ({ ...c, worker: c.worker % w.workers })),
          seed: w.seed,
          tracing: false
        })
        const sim = yield* run
        const ids = new Set(w.events.map((e) => e.id))

        // No loss: every event reached delivered or dead on each target.
        assert.isTrue(sim.settled)
        assert.strictEqual(sim.deliveries.length, ids.size * names.length)
        for (const d of sim.deliveries) {
          assert.include(["delivered", "dead"], d.status, `${d.idempotencyKey}: ${d.status}`)
          assert.strictEqual(d.attempts, d.history.length)
        }

        // No request after a delivery's dead letter, by the simulation's count and by the clock.
        assert.deepStrictEqual(sim.afterDead, [])
        for (const d of sim.deliveries) {
          if (d.status !== "dead") continue
          for (const r of d.requests) assert.isAtMost(r.receivedAt, d.finishedAt!, `${d.idempotencyKey} seq ${r.seq}`)
        }

        // One idempotency key per delivery, in every request, whichever worker (or restart) sent it.
        // Requests are grouped by their path (it names the event), not by the key itself.
        for (const r of sim.requests) {
          const id = decodeURIComponent(r.path.replace(/^\/events\//, ""))
          assert.isTrue(ids.has(id), `unknown path ${r.path}`)
          assert.strictEqual(r.key, `${id}:${r.target}`)
        }
        for (const d of sim.deliveries) {
          const sent = sim.requests.filter((r) =>
            r.target === d.target && r.path === `/events/${encodeURIComponent(d.event.id)}`
          )
          assert.deepStrictEqual(sent, d.requests)
          assert.isTrue(d.requests.every((r) => r.key === d.idempotencyKey))
        }

        // Crashes: a retaken lease was claimed again only once it had expired.
        for (const crash of sim.crashes) {
          for (const lease of crash.leases) {
            const d = sim.deliveries.find((x) => x.deliveryId === lease.deliveryId)!
            const later = d.claims.find((c) => c.at > crash.at)
            if (later !== undefined) assert.isAtLeast(later.at, lease.leaseExpiresAt)
          }
        }

        // Determinism: the same inputs and seed give the same report.
        const again = yield* run
        assert.deepStrictEqual(comparable(again), comparable(sim))
      }),
    { timeout: 180_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )

  it.effect("a crashed worker keeps its lease: its restart retakes the delivery once the lease expired, same key", () =>
    Effect.gen(function*() {
      const A = webhook("a", { policy: { timeout: 5_000, retry: { maxAttempts: 3, initialDelay: 100 } } })
      const sim = yield* simulateDurable({
        router: Router.make().route("*", [A]),
        // The first request takes 2 s: the worker crashes while it waits for the answer.
        testTargets: { a: Fault.script([Fault.ok({ latency: 2_000 })]) },
        events: [yield* Event.make("order.placed", { n: 1 }, { id: "e1" })],
        leaseMs: 12_000,
        pollInterval: "1 second",
        crashes: [{ worker: 0, at: "500 millis", restartAfter: "1 second" }],
        seed: 7
      })
      assert.isTrue(sim.settled)
      const [crash] = sim.crashes
      const [d] = sim.deliveries
      assert.strictEqual(crash!.workerId, "worker-0")
      assert.strictEqual(crash!.at, 500)
      assert.strictEqual(crash!.aborted, 1)
      assert.strictEqual(crash!.restartedAs, "worker-0#1")
      assert.strictEqual(crash!.restartedAt, 1_500)
      // The lease taken at 0 for 12 s was not released by the crash.
      assert.deepStrictEqual(crash!.leases, [{
        deliveryId: d!.deliveryId,
        eventId: "e1",
        target: "a",
        leaseExpiresAt: 12_000
      }])

      // Two claims: the crashed worker's at 0, the restart's once the lease had expired (its poll
      // runs every second from its start at 1.5 s, so the first one at or after 12 s: 12.5 s).
      assert.deepStrictEqual(d!.claims.map((c) => [c.worker, c.at, c.attempts]), [["worker-0", 0, 0], [
        "worker-0#1",
        12_500,
        0
      ]])
      assert.isAtLeast(d!.claims[1]!.at, crash!.leases[0]!.leaseExpiresAt)

      // The target saw the first request aborted at the crash, then the retaken one, with one key.
      assert.deepStrictEqual(
        d!.requests.map((r) => [r.worker, r.attempt, r.receivedAt, r.result, r.completedAt]),
        [["worker-0", 1, 0, "aborted", 500], ["worker-0#1", 2, 12_500, "answered", 12_500]]
      )
      assert.deepStrictEqual(d!.requests.map((r) => r.key), ["e1:a", "e1:a"])
      assert.strictEqual(sim.testTargets.a!.ledger[1]!.headers["idempotency-key"], "e1:a")

      // The crashed attempt was never recorded: one attempt in the history, by the restart, after the expiry.
      assert.strictEqual(d!.status, "delivered")
      assert.deepStrictEqual(d!.history.map((a) => [a.number, a.worker, a.startedAt, a.outcome]), [[
        1,
        "worker-0#1",
        12_500,
        "success"
      ]])
      assert.strictEqual(d!.finishedAt, 12_500)
      assert.strictEqual(sim.finishedAt, 12_500)
      assert.deepStrictEqual(
        sim.workers.map((r) => [r.workerId, r.startedAt, r.endedAt, r.end]),
        [["worker-0", 0, 500, "crashed"], ["worker-0#1", 1_500, 12_500, "stopped"]]
      )
    }))

  it.effect("another worker takes over a crashed worker's delivery after its lease, extended before the crash", () =>
    Effect.gen(function*() {
      const A = webhook("a", { policy: { timeout: 10_000, retry: { maxAttempts: 3, initialDelay: 100 } } })
      const sim = yield* simulateDurable({
        router: Router.make().route("*", [A]),
        // 5 s to answer the first request: the worker extends its 3 s lease before it crashes at 4 s.
        testTargets: { a: Fault.script([Fault.ok({ latency: 5_000 })]) },
        events: [yield* Event.make("order.placed", { n: 1 }, { id: "e1" })],
        workers: 2,
        leaseMs: 3_000,
        pollInterval: "250 millis",
        crashes: [{ worker: 0, at: "4 seconds" }],
        seed: 1
      })
      assert.isTrue(sim.settled)
      const [crash] = sim.crashes
      const [d] = sim.deliveries
      assert.strictEqual(crash!.restartedAs, undefined)
      const lease = crash!.leases[0]!
      // Extended past the first expiry (3 s) while the attempt ran.
      assert.isAbove(lease.leaseExpiresAt, 3_000)
      assert.isAbove(lease.leaseExpiresAt, crash!.at)
      const [first, second] = d!.claims
      assert.strictEqual(first!.worker, "worker-0")
      assert.strictEqual(first!.leaseExpiresAt, lease.leaseExpiresAt)
      assert.strictEqual(second!.worker, "worker-1")
      assert.isAtLeast(second!.at, lease.leaseExpiresAt)
      assert.isAtMost(second!.at, lease.leaseExpiresAt + 250)
      const retaken = d!.requests[1]!
      assert.strictEqual(retaken.worker, "worker-1")
      assert.strictEqual(retaken.receivedAt, second!.at)
      assert.deepStrictEqual(d!.requests.map((r) => r.key), ["e1:a", "e1:a"])
      assert.strictEqual(d!.requests[0]!.result, "aborted")
      assert.strictEqual(d!.requests[0]!.completedAt, 4_000)
    }))

  it.effect("with every worker crashed for good nothing settles: the report says so at the horizon", () =>
    Effect.gen(function*() {
      const before = yield* Clock.currentTimeMillis
      const A = webhook("a", { policy: { timeout: 1_000, retry: { maxAttempts: 2 } } })
      const sim = yield* simulateDurable({
        router: Router.make().route("*", [A]),
        testTargets: { a: Fault.script([Fault.hang]) },
        events: [yield* Event.make("order.placed", {}, { id: "e1" })],
        leaseMs: 5_000,
        crashes: [{ worker: 0, at: 100 }, { worker: 0, at: 200, restartAfter: 0 }],
        horizon: "1 minute"
      })
      assert.isFalse(sim.settled)
      assert.strictEqual(sim.finishedAt, 60_000)
      // The second crash point found no worker running: skipped.
      assert.strictEqual(sim.crashes.length, 1)
      assert.strictEqual(sim.deliveries[0]!.status, "in_flight")
      assert.strictEqual(sim.deliveries[0]!.attempts, 0)
      // The TestClock moved forward by the simulated time.
      assert.strictEqual((yield* Clock.currentTimeMillis) - before, 60_000)
    }))
})
