/**
 * Property: every attempt of an (event, target) carries the same idempotency key,
 * `<event id>:<target>` (compensations `<event id>:<target>:compensate`), and a W3C
 * `traceparent`. The request path names the event, so the check does not rely on the key.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { Router } from "../../src/index.js"
import { arbitraries, simulate, webhook } from "../../src/testing.js"

const SEED = Number(process.env.FANOUT_PROP_SEED ?? 20261122)
const RUNS = Number(process.env.FANOUT_PROP_RUNS ?? 200)
const names = ["a", "b"] as const
const traceparent = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-9a-f]$/

const world = fc.record({
  events: arbitraries.events(arbitraries.event({ type: "order.placed" }), { maxLength: 3 }),
  mode: fc.constantFrom("settled" as const, "all" as const, "background" as const),
  targets: fc.tuple(
    ...names.map(() =>
      fc.record({
        compensate: fc.boolean(),
        policy: arbitraries.policy({ maxAttempts: [2, 5] }),
        script: arbitraries.faultScript()
      })
    )
  )
})

describe("property: idempotency key", () => {
  it.effect.prop(
    `the idempotency key is identical on every attempt of an (event, target) (seed ${SEED})`,
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
          mode: w.mode
        })
        const ids = new Set(w.events.map((e) => e.id))
        for (const name of names) {
          const byEvent = new Map<string, Set<string | undefined>>()
          for (const r of sim.testTargets[name]!.ledger) {
            const id = decodeURIComponent(r.path.replace(/^\/events\//, ""))
            assert.isTrue(ids.has(id), `unknown path ${r.path}`)
            const expected = r.method === "DELETE" ? `${id}:${name}:compensate` : `${id}:${name}`
            assert.strictEqual(r.key, expected, `${name} attempt ${r.attempt}`)
            assert.match(r.traceparent ?? "", traceparent)
            const slot = `${r.method} ${id}`
            byEvent.set(slot, (byEvent.get(slot) ?? new Set()).add(r.key))
          }
          for (const [slot, keys] of byEvent) {
            assert.strictEqual(keys.size, 1, `${name} ${slot}: ${[...keys].join(", ")}`)
          }
        }
      }),
    { timeout: 180_000, fastCheck: { numRuns: RUNS, seed: SEED } }
  )
})
