/**
 * Operator events through the whole application (`Main.layer`, as `fanout serve` runs it): a route
 * sends `fanout.*` to a pager target; a target whose breaker opens makes exactly one
 * `fanout.target.circuit_opened` arrive there, and its many dead letters one `fanout.delivery.dead`
 * (rate-limited per kind and target), never an event storm; a dead operator event tells nothing.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Schedule } from "effect"
import * as OperatorEvents from "../src/OperatorEvents.js"
import { reply, startServer } from "./integration/helpers.js"
import { prepare, start } from "./Main.helpers.js"

const dir = mkdtempSync(join(tmpdir(), "fanout-operator-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("operator events", () => {
  it("the rate limit lets one event per kind and target through per interval, counting the others", () => {
    const allow = OperatorEvents.limiter(1000)
    assert.strictEqual(allow("a", "t1", 0), 0)
    assert.strictEqual(allow("a", "t1", 10), undefined)
    assert.strictEqual(allow("a", "t1", 999), undefined)
    assert.strictEqual(allow("a", "t2", 20), 0)
    assert.strictEqual(allow("b", "t1", 30), 0)
    assert.strictEqual(allow("a", "t1", 1000), 2)
    assert.strictEqual(allow("a", "t1", 1500), undefined)
  })

  it.scopedLive(
    "a breaker opening reaches the pager once; dead letters once per interval; no storm",
    () =>
      Effect.gen(function*() {
        let failing = true
        const targets = yield* startServer((_req, res, r) =>
          reply(res, r.path === "/flaky" && failing ? 503 : r.path === "/pager-broken" ? 500 : 200)
        )
        const config = {
          server: { port: 0 },
          store: { sqlite: join(dir, "ops.db") },
          targets: {
            flaky: {
              url: `${targets.url}/flaky`,
              retry: { maxAttempts: 1 },
              circuitBreaker: { failureThreshold: 3, resetAfter: "500 millis" }
            },
            pager: { url: `${targets.url}/pager` },
            brokenPager: { url: `${targets.url}/pager-broken`, retry: { maxAttempts: 1 } }
          },
          routes: {
            "order.*": ["flaky"],
            "fanout.target.*": ["pager"],
            // A dead operator event must not tell of itself: this route's target always fails.
            "fanout.delivery.dead": ["pager", "brokenPager"]
          },
          operatorEvents: { minInterval: "1 hour", every: "50 millis" }
        }
        const app = yield* prepare(config, {}, join(dir, "ops.json"))
        const url = yield* start(app, { worker: { pollInterval: "50 millis" } }).pipe(
          Logger.withMinimumLogLevel(LogLevel.None)
        )
        const pagerEvents = () => targets.on("/pager").map((r) => JSON.parse(r.body) as { type: string; payload: any })
        const ofType = (type: string) => pagerEvents().filter((e) => e.type === type)

        for (let i = 0; i < 12; i++) {
          const r = yield* Effect.promise(() =>
            fetch(`${url}/v1/events?wait=settled`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ id: `op-${i}`, type: "order.placed", payload: { i } })
            })
          )
          assert.strictEqual(r.status, 200, yield* Effect.promise(() => r.text()))
        }
        yield* targets.until(() => ofType(OperatorEvents.types.circuitOpened).length >= 1, "20 seconds")
        yield* targets.until(() => ofType(OperatorEvents.types.deliveryDead).length >= 1, "20 seconds")
        const opened = ofType(OperatorEvents.types.circuitOpened)
        assert.strictEqual(opened[0]!.payload.target, "flaky")
        assert.isFalse(Number.isNaN(Date.parse(opened[0]!.payload.openUntil)))
        const dead = ofType(OperatorEvents.types.deliveryDead)[0]!
        assert.strictEqual(dead.payload.target, "flaky")
        assert.strictEqual(dead.payload.eventType, "order.placed")

        // The target recovers: its breaker closes after a probe succeeds, and the pager hears it.
        failing = false
        // Events until one is let through as the half-open probe (one sent while the breaker is still
        // open is dead at once, CircuitOpen), bounded.
        let n = 0
        yield* Effect.promise(() =>
          fetch(`${url}/v1/events?wait=settled`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ id: `op-probe-${n++}`, type: "order.placed", payload: {} })
          })
        ).pipe(
          Effect.repeat({
            schedule: Schedule.spaced("100 millis"),
            until: () => ofType(OperatorEvents.types.circuitClosed).length >= 1
          }),
          Effect.timeout("20 seconds"),
          Effect.orDie
        )
        yield* targets.until(() => ofType(OperatorEvents.types.circuitClosed).length >= 1, "20 seconds")

        // Twelve dead letters and a breaker that opened (and maybe reopened) while failing: one
        // event of each kind within the hour, whatever else happened. The broken pager's dead
        // delivery of `fanout.delivery.dead` is itself told of by nobody.
        yield* targets.until(() => targets.on("/pager-broken").length >= 1, "20 seconds")
        const allTypes = pagerEvents().map((e) => e.type).sort()
        assert.deepStrictEqual(
          allTypes,
          [
            OperatorEvents.types.deliveryDead,
            OperatorEvents.types.circuitClosed,
            OperatorEvents.types.circuitOpened
          ].sort()
        )
        assert.strictEqual(targets.on("/pager-broken").length, 1)
      }),
    60_000
  )
})
