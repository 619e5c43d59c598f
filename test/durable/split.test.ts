/**
 * Targets split between processes over one SQLite file: `fanout serve --worker-targets inventory`
 * (here: the same application run in this process with `worker.only`) and a real
 * `fanout worker --targets notification` process. Each process delivers only its own targets'
 * deliveries (the attempt history names the worker), and together they deliver everything.
 * `--targets` naming an unknown target is a usage error (exit 2) that lists the configured ones.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { reply, startServer } from "../integration/helpers.js"
import { killGroup, prepare, request, runFanout, spawnFanout, start } from "../Main.helpers.js"

describe("targets split between processes (SQLite)", () => {
  it.scopedLive(
    "serve delivers to its worker targets, `fanout worker --targets` to the others",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "fanout-split-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
        const targets = yield* startServer((_req, res) => reply(res, 200))
        const config = {
          server: { port: 0 },
          store: { sqlite: join(dir, "fanout.db") },
          targets: {
            inventory: { url: `${targets.url}/inventory` },
            notification: { url: `${targets.url}/notification` }
          },
          routes: { "order.*": ["inventory", "notification"] }
        }
        const file = join(dir, "fanout.json")
        writeFileSync(file, JSON.stringify(config))

        const unknown = yield* Effect.promise(() =>
          runFanout(["worker", "--config", file, "--targets", "inventory,shipping"])
        )
        assert.strictEqual(unknown.code, 2, unknown.stderr)
        assert.include(unknown.stderr, "--targets: unknown target shipping (configured: inventory, notification)")

        const url = yield* start(yield* prepare(config), {
          worker: { only: ["inventory"], pollInterval: "100 millis" }
        })
        const child = spawnFanout(["worker", "--config", file, "--targets", "notification", "--log-format", "none"])
        yield* Effect.addFinalizer(() => Effect.sync(() => killGroup(child, "SIGKILL")))
        let stderr = ""
        child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))

        const ids: Array<string> = []
        for (let i = 0; i < 20; i++) {
          const sent = yield* request(`${url}/v1/events`, {
            method: "POST",
            json: { type: "order.placed", payload: { i } }
          })
          assert.strictEqual(sent.status, 202, sent.text)
          ids.push(sent.body.id)
        }
        const deadline = Date.now() + 60_000
        const workers = { inventory: new Set<string>(), notification: new Set<string>() }
        for (const id of ids) {
          // Received is not yet recorded: wait for each event's deliveries to be recorded as delivered.
          let deliveries: Array<any> = []
          while (true) {
            deliveries = (yield* request(`${url}/v1/events/${id}`)).body.deliveries
            if (deliveries.every((d) => d.status === "delivered")) break
            if (Date.now() > deadline) {
              assert.fail(`${id} not delivered: ${JSON.stringify(deliveries)}\n${stderr.slice(-2000)}`)
            }
            yield* Effect.sleep("50 millis")
          }
          for (const delivery of deliveries) {
            for (const attempt of delivery.history as Array<any>) {
              workers[delivery.target as "inventory" | "notification"].add(attempt.workerId)
            }
          }
        }
        assert.strictEqual(targets.on("/inventory").length, 20)
        assert.strictEqual(targets.on("/notification").length, 20)
        // One worker per target group, and not the same one.
        assert.strictEqual(workers.inventory.size, 1, [...workers.inventory].join())
        assert.strictEqual(workers.notification.size, 1, [...workers.notification].join())
        const [serving] = workers.inventory
        const [other] = workers.notification
        assert.notStrictEqual(serving, other)
        assert.include(other!, `:${child.pid}:`)
      }),
    { timeout: 120_000 }
  )
})
