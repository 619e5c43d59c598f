/**
 * End to end on the embedded default: the server on a SQLite file, a real worker, real loopback
 * targets. Events posted over HTTP are delivered, visible with their history, dead-lettered and
 * replayed; concurrent posts of one Idempotency-Key make one event (SQLite's group commit is
 * really concurrent); acknowledged events survive a restart of the server on the same file.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Fault from "../../src/testing/Fault.js"
import { isErrorShape, start, totalDeliveries } from "./harness.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)
const order = (extra: Record<string, unknown> = {}) => ({ type: "order.placed", payload: { qty: 1 }, ...extra })

const tempFile = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-server-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "fanout.db")))

describe("server on SQLite", () => {
  it.scopedLive(
    "post, deliver, inspect, dead-letter, replay, concurrent idempotency, restart",
    () =>
      Effect.gen(function*() {
        const filename = yield* tempFile
        let bFails = true
        const receivedBefore = yield* Effect.scoped(Effect.gen(function*() {
          const h = yield* start({
            store: SqliteStore.layer({ filename }),
            worker: true,
            targets: { a: undefined, b: () => (bFails ? Fault.status(422) : Fault.ok()) }
          })
          const settled = yield* promise(() => h.request("/v1/events?wait=settled", { json: order({ id: "sq-1" }) }))
          assert.strictEqual(settled.status, 200, settled.text)
          assert.deepStrictEqual(settled.body.deliveries.map((d: any) => [d.target, d.status]).sort(), [[
            "a",
            "delivered"
          ], ["b", "dead"]])
          const all = yield* promise(() => h.request("/v1/events?wait=all", { json: order({ id: "sq-2" }) }))
          assert.strictEqual(all.status, 502)
          assert.isTrue(isErrorShape(all.body, 502))

          const batch = yield* promise(() =>
            h.request("/v1/events:batch", {
              json: { events: Array.from({ length: 10 }, (_, i) => order({ id: `sq-b-${i}` })) }
            })
          )
          assert.strictEqual(batch.status, 202)
          assert.isTrue(batch.body.results.every((r: any) => r.status === "accepted"))

          const same = yield* promise(() =>
            Promise.all(
              Array.from(
                { length: 25 },
                () => h.request("/v1/events", { json: order(), headers: { "idempotency-key": "sq-same" } })
              )
            )
          )
          assert.strictEqual(same.filter((r) => r.status === 202).length, 1)
          assert.strictEqual(same.filter((r) => r.status === 200).length, 24)

          const status = yield* promise(() => h.request("/v1/events/sq-1"))
          assert.strictEqual(status.status, 200)
          const b = status.body.deliveries.find((d: any) => d.target === "b")
          assert.deepStrictEqual(b.history.map((a: any) => [a.number, a.outcome]), [[1, "http_422"]])

          const dead = yield* promise(() => h.request("/v1/dead-letters?target=b&limit=1"))
          assert.strictEqual(dead.body.items.length, 1)
          assert.isString(dead.body.next)
          bFails = false
          const replay = yield* promise(() =>
            h.request("/v1/dead-letters:replay", { json: { target: "b", error: "http_422" } })
          )
          assert.strictEqual(replay.status, 202)
          assert.isAtLeast(replay.body.replayed, 2)
          // Wait for the replays (and the batch) to be delivered.
          const deadline = Date.now() + 20_000
          let stats = yield* h.store.stats
          while ((stats.pending + stats.inFlight > 0 || stats.dead > 0) && Date.now() < deadline) {
            yield* Effect.sleep("50 millis")
            stats = yield* h.store.stats
          }
          assert.strictEqual(stats.dead, 0)
          assert.strictEqual(stats.delivered, 2 * (2 + 10 + 1))
          const targets = yield* promise(() => h.request("/v1/targets"))
          assert.strictEqual(targets.body.targets.find((t: any) => t.name === "b").queue.delivered, 13)
          return h.targets.b!.target.keys.length
        }))
        assert.strictEqual(receivedBefore, 13)

        // A new server on the same file: everything acknowledged is still there.
        const h2 = yield* start({ store: SqliteStore.layer({ filename }) })
        const again = yield* promise(() => h2.request("/v1/events/sq-b-9"))
        assert.strictEqual(again.status, 200)
        assert.isTrue(again.body.deliveries.every((d: any) => d.status === "delivered"))
        const repeat = yield* promise(() =>
          h2.request("/v1/events", { json: order(), headers: { "idempotency-key": "sq-same" } })
        )
        assert.strictEqual(repeat.status, 200)
        assert.strictEqual(yield* promise(() => totalDeliveries(h2.store)), 26)
        const ready = yield* promise(() => h2.request("/readyz"))
        assert.strictEqual(ready.status, 200)
      }),
    { timeout: 60_000 }
  )
})
