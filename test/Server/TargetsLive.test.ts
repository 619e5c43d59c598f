/**
 * `GET /v1/targets:live`, what the dashboard polls: every configured target's circuit, bulkhead
 * and recent rate, with the queue as gauges (pending, in flight, dead) read from the store's
 * partial indexes; behind the API key; in the OpenAPI document as `/v1/targets:live`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Fault from "../../src/testing/Fault.js"
import { isErrorShape, start } from "./harness.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)
const tempFile = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-live-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "fanout.db")))

const KEY = "live-key"
const auth = { authorization: `Bearer ${KEY}` }

describe("GET /v1/targets:live", () => {
  it.scopedLive(
    "each target's circuit, bulkhead, queue gauges and recent rate; behind the key; documented",
    () =>
      Effect.gen(function*() {
        const h = yield* start({
          store: SqliteStore.layer({ filename: yield* tempFile }),
          worker: true,
          server: { apiKeys: [KEY] },
          targets: { a: undefined, b: () => Fault.status(422) }
        })
        for (let i = 0; i < 3; i++) {
          const r = yield* promise(() =>
            h.request("/v1/events?wait=settled", {
              json: { id: `lv-${i}`, type: "order.placed", payload: {} },
              headers: auth
            })
          )
          assert.strictEqual(r.status, 200, r.text)
        }
        const live = yield* promise(() => h.request("/v1/targets:live", { headers: auth }))
        assert.strictEqual(live.status, 200, live.text)
        assert.isFalse(Number.isNaN(Date.parse(live.body.at)))
        const byName = Object.fromEntries(live.body.targets.map((t: any) => [t.name, t]))
        assert.deepStrictEqual(Object.keys(byName).sort(), ["a", "b"])
        assert.deepStrictEqual(byName.a.queue, { pending: 0, inFlight: 0, dead: 0 })
        assert.deepStrictEqual(byName.b.queue, { pending: 0, inFlight: 0, dead: 3 })
        assert.strictEqual(byName.a.circuit.state, "closed")
        assert.strictEqual(byName.a.inFlight, 0)
        assert.strictEqual(byName.a.recent.successes, 3)
        assert.strictEqual(byName.b.recent.attempts, 3)
        assert.strictEqual(byName.b.recent.successes, 0)
        assert.isUndefined(byName.a.policy)
        assert.deepStrictEqual(live.body.orphans, [])
        // The same circuit and bulkhead figures as GET /v1/targets.
        const full = yield* promise(() => h.request("/v1/targets", { headers: auth }))
        for (const t of full.body.targets) {
          assert.deepStrictEqual(byName[t.name].circuit, t.circuit)
          assert.strictEqual(byName[t.name].queue.dead, t.queue.dead)
        }

        const anonymous = yield* promise(() => h.request("/v1/targets:live"))
        assert.strictEqual(anonymous.status, 401)
        assert.isTrue(isErrorShape(anonymous.body, 401))
        const doc = yield* promise(() => h.request("/openapi.json"))
        assert.property(doc.body.paths, "/v1/targets:live")
        assert.notProperty(doc.body.paths, "/v1/targets:{live}")
      }),
    60_000
  )
})
