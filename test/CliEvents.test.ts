/**
 * `fanout events`: the event search from the command line, against a real server (GET /v1/events)
 * and straight from its store with --config; bad options are usage errors (exit 2).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel } from "effect"
import { reply, startServer } from "./integration/helpers.js"
import { cli } from "./Cli.helpers.js"
import { prepare, start } from "./Main.helpers.js"

const dir = mkdtempSync(join(tmpdir(), "fanout-cli-events-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("fanout events", () => {
  it.scopedLive("finds events through the API and in the store; bad options exit 2", () =>
    Effect.gen(function*() {
      const targets = yield* startServer((_req, res, r) => reply(res, r.path === "/billing" ? 422 : 200))
      const config = {
        server: { port: 0, apiKeys: [{ env: "FANOUT_CLI_KEY" }] },
        store: { sqlite: join(dir, "events.db") },
        targets: { inventory: { url: `${targets.url}/inventory` }, billing: { url: `${targets.url}/billing` } },
        routes: { "order.*": ["inventory"], "invoice.*": ["billing"] }
      }
      const file = join(dir, "events.json")
      writeFileSync(file, JSON.stringify(config))
      const env = { FANOUT_CLI_KEY: "cli-key-ev" }
      const url = yield* start(yield* prepare(config, env, file), { worker: { pollInterval: "50 millis" } }).pipe(
        Logger.withMinimumLogLevel(LogLevel.None)
      )
      const remote = ["--url", url, "--api-key", env.FANOUT_CLI_KEY]
      for (
        const [type, id] of [["order.placed", "ev-o-1"], ["invoice.created", "ev-i-1"], ["order.placed", "ev-o-2"]]
      ) {
        const sent = yield* cli(["send", type!, "{}", "--wait", "--id", id!, ...remote])
        assert.include([0, 1], sent.code, sent.stderr)
      }
      const ids = (stdout: string) => JSON.parse(stdout).items.map((e: any) => e.id)

      const all = yield* cli(["events", ...remote])
      assert.strictEqual(all.code, 0, all.stderr)
      assert.deepStrictEqual(ids(all.stdout), ["ev-o-2", "ev-i-1", "ev-o-1"])
      const dead = yield* cli(["events", "--status", "dead", ...remote])
      assert.deepStrictEqual(ids(dead.stdout), ["ev-i-1"])
      const orders = yield* cli([
        "events",
        "--type",
        "order.placed",
        "--target",
        "inventory",
        "--limit",
        "1",
        ...remote
      ])
      assert.strictEqual(orders.code, 0, orders.stderr)
      const page = JSON.parse(orders.stdout)
      assert.deepStrictEqual(ids(orders.stdout), ["ev-o-2"])
      assert.isString(page.next)
      const next = yield* cli(["events", "--type", "order.placed", "--cursor", page.next, ...remote])
      assert.deepStrictEqual(ids(next.stdout), ["ev-o-1"])
      const future = yield* cli(["events", "--since", new Date(Date.now() + 3_600_000).toISOString(), ...remote])
      assert.deepStrictEqual(ids(future.stdout), [])

      // The same search on the store itself.
      const fromStore = yield* cli(["events", "--config", file, "--status", "delivered"], env)
      assert.strictEqual(fromStore.code, 0, fromStore.stderr)
      assert.deepStrictEqual(ids(fromStore.stdout), ["ev-o-2", "ev-o-1"])
      assert.deepStrictEqual(JSON.parse(fromStore.stdout).items[0].deliveries.map((d: any) => d.status), ["delivered"])

      for (const bad of [["--limit", "0"], ["--since", "yesterday"], ["--status", "lost"]]) {
        const refused = yield* cli(["events", ...bad, ...remote])
        assert.strictEqual(refused.code, 2, `${bad.join(" ")}: ${refused.stderr}`)
      }
      const badCursor = yield* cli(["events", "--cursor", "zzz", ...remote])
      assert.strictEqual(badCursor.code, 1)
      assert.include(badCursor.stderr, "HTTP 400")
    }), 60_000)
})
