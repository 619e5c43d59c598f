/**
 * Orphans (issue 12, item 8, the rest): deliveries to a target that was removed from the
 * configuration are held (pending, not failed), shown (`GET /v1/targets` orphans, `unconfigured`
 * in the event status, and in `fanout status --config`), sent once the target is configured again,
 * and purged on request (`DELETE /v1/targets/{name}/deliveries`, `fanout purge-orphan`) — only for
 * a target the configuration does not name. Several applications in this process on one SQLite
 * file, as successive deployments would be.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { reply, startServer } from "../integration/helpers.js"
import { prepare, request, runFanout, start } from "../Main.helpers.js"

const until = <A>(get: Effect.Effect<A>, done: (a: A) => boolean) =>
  get.pipe(
    Effect.filterOrFail(done, () => "not yet" as const),
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("condition not reached in 20 s") })
  )

describe("orphans", () => {
  it.scopedLive(
    "held while unconfigured, shown, sent when the target returns, purged on request (only an orphan)",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "fanout-orphans-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
        const targets = yield* startServer((_req, res) => reply(res, 200))
        const store = { sqlite: join(dir, "fanout.db") }
        const both = {
          server: { port: 0 },
          store,
          targets: { inventory: { url: `${targets.url}/inventory` }, gone: { url: `${targets.url}/gone` } },
          routes: { "order.*": ["inventory", "gone"] }
        }
        const without = {
          server: { port: 0 },
          store,
          targets: { inventory: { url: `${targets.url}/inventory` } },
          routes: { "order.*": ["inventory"] }
        }
        const withoutFile = join(dir, "without.json")
        writeFileSync(withoutFile, JSON.stringify(without))

        // Two events for both targets, no worker yet.
        const first = yield* start(yield* prepare(both), { workers: false })
        for (const id of ["e-1", "e-2"]) {
          const sent = yield* request(`${first}/v1/events`, {
            method: "POST",
            json: { id, type: "order.placed", payload: {} }
          })
          assert.strictEqual(sent.status, 202, sent.text)
        }

        // The configuration without "gone": shown as an orphan, its deliveries held.
        const second = yield* start(yield* prepare(without, {}, withoutFile), { workers: false })
        const listed = yield* request(`${second}/v1/targets`)
        assert.deepStrictEqual(listed.body.orphans, [{
          name: "gone",
          queue: { pending: 2, inFlight: 0, delivered: 0, dead: 0, compensated: 0 }
        }])
        const status = yield* request(`${second}/v1/events/e-1`)
        assert.deepStrictEqual(
          status.body.deliveries.map((d: { target: string; status: string; unconfigured?: true }) => [
            d.target,
            d.status,
            d.unconfigured
          ]),
          [["inventory", "pending", undefined], ["gone", "pending", true]]
        )
        const cli = yield* Effect.promise(() => runFanout(["status", "e-1", "--config", withoutFile]))
        assert.strictEqual(cli.code, 0, cli.stderr)
        assert.deepStrictEqual(
          JSON.parse(cli.stdout).deliveries.map((
            d: { target: string; unconfigured?: true }
          ) => [d.target, d.unconfigured]),
          [["inventory", undefined], ["gone", true]]
        )
        const configured = yield* request(`${second}/v1/targets/inventory/deliveries`, { method: "DELETE" })
        assert.deepStrictEqual([configured.status, configured.body.error.code], [409, "target_configured"])

        // The target returns (with workers): its held deliveries go out.
        yield* Effect.scoped(Effect.gen(function*() {
          const third = yield* start(yield* prepare(both), { worker: { pollInterval: "20 millis" } })
          yield* until(request(`${third}/v1/events/e-2`), (r) =>
            r.body.deliveries.every((d: { status: string }) => d.status === "delivered"))
        }))
        assert.deepStrictEqual(
          targets.on("/gone").map((r) =>
            JSON.parse(r.body).id
          ).sort(),
          ["e-1", "e-2"]
        )

        // Another event while "gone" is away again: purged on request, the rest of the event kept.
        yield* request(`${first}/v1/events`, { method: "POST", json: { id: "e-3", type: "order.placed", payload: {} } })
        const cliPurge = yield* Effect.promise(() => runFanout(["purge-orphan", "gone", "--url", second]))
        assert.strictEqual(cliPurge.code, 0, cliPurge.stderr)
        assert.deepStrictEqual(JSON.parse(cliPurge.stdout), { target: "gone", deliveries: 1, events: 0 })
        const after = yield* request(`${second}/v1/events/e-3`)
        assert.deepStrictEqual(after.body.deliveries.map((d: { target: string }) => d.target), ["inventory"])
        assert.deepStrictEqual((yield* request(`${second}/v1/targets`)).body.orphans, [])
        const again = yield* request(`${second}/v1/targets/gone/deliveries`, { method: "DELETE" })
        assert.deepStrictEqual([again.status, again.body], [200, { target: "gone", deliveries: 0, events: 0 }])
      }),
    { timeout: 120_000 }
  )
})
