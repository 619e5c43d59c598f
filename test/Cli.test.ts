/**
 * The `fanout` command line: help for every command, usage and configuration errors (exit code 2,
 * messages naming the file and the path), run-time failures (exit code 1), and the client commands
 * against a real server. Most cases run the command in this process (`Cli.run` with the real
 * `Cli.teardown`); a few run the real executable (`node --import tsx src/bin.ts`) end to end.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Logger, LogLevel, Schedule } from "effect"
import * as Cli from "../src/Cli.js"
import * as Event from "../src/Event.js"
import * as Store from "../src/Store.js"
import * as SqliteStore from "../src/Store/Sqlite.js"
import { reply, startServer } from "./integration/helpers.js"
import { cli, type Outcome } from "./Cli.helpers.js"
import { prepare, runFanout, start } from "./Main.helpers.js"

const dir = mkdtempSync(join(tmpdir(), "fanout-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const write = (name: string, content: unknown): string => {
  const file = join(dir, name)
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content, null, 2))
  return file
}

const badConfig = {
  targets: {
    inventory: { url: "http://127.0.0.1:9/inventory", timeout: "soon" },
    notification: { url: "ftp://example.com/" }
  },
  routes: { "order.*": ["inventory", "billing"] }
}

describe("Cli", () => {
  describe("--help", () => {
    const commands: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
      [[], /Send one event to several HTTP APIs at once, reliably/],
      [["serve"], /\$ serve .*--config.*\n[\s\S]*Serve the HTTP API and run the delivery workers/],
      [["worker"], /\$ worker .*--config[\s\S]*Run delivery workers only/],
      [["demo"], /\$ demo [\s\S]*--failure-rate[\s\S]*mock APIs/],
      [["send"], /\$ send .*--wait.*<type> <json>[\s\S]*Post an event to a running server/],
      [["status"], /\$ status .*<event id>[\s\S]*attempt history/],
      [["targets"], /\$ targets [\s\S]*circuit/],
      [["dlq"], /\$ dlq[\s\S]*Dead letters: list, replay, purge/],
      [["dlq", "list"], /\$ list .*--target[\s\S]*List dead letters/],
      [["dlq", "replay"], /\$ replay .*--all.*<delivery id>[\s\S]*Replay dead letters/],
      [["dlq", "purge"], /\$ purge .*--all.*<delivery id>[\s\S]*Delete dead letters/]
    ]
    for (const [command, expected] of commands) {
      it.effect(`fanout ${[...command, "--help"].join(" ")}`, () =>
        Effect.gen(function*() {
          const out = yield* cli([...command, "--help"])
          assert.strictEqual(out.code, 0, out.stderr)
          assert.match(out.stdout, expected)
        }))
    }

    it.effect("--version", () =>
      Effect.gen(function*() {
        const out = yield* cli(["--version"])
        assert.strictEqual(out.code, 0)
        assert.include(out.stdout, "0.1.0")
      }))
  })

  describe("usage and configuration errors exit with 2", () => {
    it.effect("a configuration with errors: every issue, by file and path", () =>
      Effect.gen(function*() {
        const file = write("bad.json", badConfig)
        const out = yield* cli(["serve", "--config", file])
        assert.strictEqual(out.code, 2)
        assert.include(out.stderr, "invalid configuration")
        assert.include(out.stderr, `${file}: targets.inventory.timeout: Expected a duration`)
        assert.include(out.stderr, `${file}: targets.notification.url: Expected an http(s) URL`)
        assert.strictEqual(out.stdout, "")

        const unknown = write("unknown-target.json", {
          ...badConfig,
          targets: { inventory: { url: "http://127.0.0.1:9/" } }
        })
        const routes = yield* cli(["worker", "--config", unknown])
        assert.strictEqual(routes.code, 2)
        assert.include(
          routes.stderr,
          `${unknown}: routes["order.*"][1]: Expected the name of a target (inventory), got "billing"`
        )
      }))

    it.effect("a missing file, invalid JSON, an unset secret", () =>
      Effect.gen(function*() {
        const missing = yield* cli(["worker", "--config", join(dir, "nope.json")])
        assert.strictEqual(missing.code, 2)
        assert.include(missing.stderr, `${join(dir, "nope.json")}: (root): cannot read`)

        const broken = write("broken.json", "{ \"targets\": ")
        const json = yield* cli(["serve", "-c", broken])
        assert.strictEqual(json.code, 2)
        assert.include(json.stderr, `${broken}: (root): invalid JSON`)

        const secret = write("secret.json", {
          server: { apiKeys: [{ env: "FANOUT_CLI_TEST_KEY" }] },
          targets: { a: { url: "http://127.0.0.1:9/" } },
          routes: { x: ["a"] }
        })
        const unset = yield* cli(["serve", "--config", secret])
        assert.strictEqual(unset.code, 2)
        assert.include(
          unset.stderr,
          `${secret}: server.apiKeys[0].env: environment variable FANOUT_CLI_TEST_KEY is not set`
        )
      }))

    it.effect("a bad environment override names the variable", () =>
      Effect.gen(function*() {
        const file = write("ok.json", { targets: { a: { url: "http://127.0.0.1:9/" } }, routes: { x: ["a"] } })
        const out = yield* cli(["serve", "--config", file], { FANOUT_PORT: "eighty" })
        assert.strictEqual(out.code, 2)
        assert.include(out.stderr, "environment: FANOUT_PORT:")
      }))

    it.effect("bad command lines", () =>
      Effect.gen(function*() {
        for (
          const args of [
            ["serve"], // no --config, no $FANOUT_CONFIG
            ["launch"],
            [],
            ["dlq"],
            ["dlq", "replay"], // neither an id nor --all
            ["dlq", "purge", "42", "--all"],
            ["send", "order.placed", "{not json"],
            ["send", "order.placed", "{}", "--url", "not a url"],
            ["dlq", "purge", "--all", "--url", "http://127.0.0.1:9"] // by filter only against the store
          ]
        ) {
          const out = yield* cli(args)
          assert.strictEqual(out.code, 2, `fanout ${args.join(" ")}: ${out.stderr}`)
          assert.notStrictEqual(out.stderr, "", `fanout ${args.join(" ")} says why`)
        }
      }))
  })

  it.effect("an unreachable server is a run-time failure (exit 1) that says so", () =>
    Effect.gen(function*() {
      const out = yield* cli(["send", "order.placed", "{}", "--url", "http://127.0.0.1:9"])
      assert.strictEqual(out.code, 1)
      assert.match(out.stderr, /cannot reach http:\/\/127\.0\.0\.1:9: ECONNREFUSED/)
    }))

  it.scopedLive("a port already taken is a run-time failure (exit 1) naming the cause", () =>
    Effect.gen(function*() {
      const taken = yield* startServer((_req, res) => reply(res, 200))
      const port = new URL(taken.url).port
      const file = write("taken.json", {
        store: { memory: true },
        targets: { a: { url: "http://127.0.0.1:9/" } },
        routes: { x: ["a"] }
      })
      const out = yield* cli(["serve", "--config", file, "--log-format", "none"], { FANOUT_PORT: port })
      assert.strictEqual(out.code, 1, out.stderr)
      assert.include(out.stderr, "cannot serve the API: EADDRINUSE")
    }), { timeout: 60_000 })

  it.scopedLive(
    "the client commands against a real server, and against its store with --config",
    () =>
      Effect.gen(function*() {
        const targets = yield* startServer((_req, res, r) => reply(res, r.path === "/billing" ? 422 : 200))
        const config = {
          server: { port: 0, apiKeys: [{ env: "FANOUT_CLI_KEY" }] },
          store: { sqlite: join(dir, "client.db") },
          targets: {
            inventory: { url: `${targets.url}/inventory` },
            billing: { url: `${targets.url}/billing` }
          },
          routes: {
            "order.*": ["inventory"],
            "invoice.*": ["billing"],
            // billing mirrors audit events as a shadow (and refuses them: a dead shadow letter)
            "audit.*": { targets: ["inventory"], shadow: ["billing"] }
          }
        }
        const file = write("client.json", config)
        const env = { FANOUT_CLI_KEY: "cli-key-123" }
        // The server runs in this process: its log lines (written as the worker finishes, at any
        // moment) would land in the output the commands' console spies capture. Silenced here.
        const url = yield* start(yield* prepare(config, env, file), { worker: { pollInterval: "50 millis" } }).pipe(
          Logger.withMinimumLogLevel(LogLevel.None)
        )
        const remote = ["--url", url]

        // Without the key: refused, exit 1, with the server's message.
        const refused = yield* cli(["send", "order.placed", "{}", ...remote])
        assert.strictEqual(refused.code, 1)
        assert.include(refused.stderr, "HTTP 401")

        const sent = yield* cli([
          "send",
          "order.placed",
          "{\"orderId\":\"o-7\"}",
          "--wait",
          "--id",
          "ev-cli-1",
          ...remote
        ], {
          FANOUT_API_KEY: env.FANOUT_CLI_KEY
        })
        assert.strictEqual(sent.code, 0, sent.stderr)
        const answer = JSON.parse(sent.stdout)
        assert.strictEqual(answer.id, "ev-cli-1")
        assert.strictEqual(answer.settled, true)
        assert.deepStrictEqual(answer.deliveries.map((d: any) => [d.target, d.status]), [["inventory", "delivered"]])
        assert.strictEqual(JSON.parse(targets.on("/inventory")[0]!.body).payload.orderId, "o-7")

        const status = yield* cli(["status", "ev-cli-1", ...remote, "--api-key", env.FANOUT_CLI_KEY])
        assert.strictEqual(status.code, 0, status.stderr)
        assert.strictEqual(JSON.parse(status.stdout).deliveries[0].history.length, 1)

        // A permanent refusal: --wait exits 1 and names the dead delivery.
        const dead = yield* cli([
          "send",
          "invoice.created",
          "{}",
          "--wait",
          "--id",
          "ev-cli-2",
          ...remote,
          "--api-key",
          env.FANOUT_CLI_KEY
        ])
        assert.strictEqual(dead.code, 1)
        assert.include(dead.stderr, "dead-lettered: billing")

        // The dead letter, through the API and straight from the store.
        const listed = yield* cli(["dlq", "list", ...remote, "--api-key", env.FANOUT_CLI_KEY])
        assert.strictEqual(listed.code, 0, listed.stderr)
        const items = JSON.parse(listed.stdout).items
        assert.deepStrictEqual(items.map((d: any) => [d.eventId, d.target, d.lastError]), [[
          "ev-cli-2",
          "billing",
          "http_422"
        ]])
        const fromStore = yield* cli(["dlq", "list", "--config", file, "--target", "billing"], env)
        assert.strictEqual(fromStore.code, 0, fromStore.stderr)
        assert.deepStrictEqual(JSON.parse(fromStore.stdout).items.map((d: any) => d.id), [items[0].id])

        const replayed = yield* cli(["dlq", "replay", items[0].id, ...remote, "--api-key", env.FANOUT_CLI_KEY])
        assert.strictEqual(replayed.code, 0, replayed.stderr)
        assert.deepStrictEqual(JSON.parse(replayed.stdout), { replayed: 1 })
        yield* targets.until(() => targets.on("/billing").length === 2, "10 seconds")

        const unknown = yield* cli(["status", "no-such-event", ...remote, "--api-key", env.FANOUT_CLI_KEY])
        assert.strictEqual(unknown.code, 1)
        assert.include(unknown.stderr, "HTTP 404")

        const configured = yield* cli(["targets", "--config", file], env)
        assert.strictEqual(configured.code, 0, configured.stderr)
        assert.deepStrictEqual(JSON.parse(configured.stdout).targets.map((t: any) => t.name), ["inventory", "billing"])
        const live = yield* cli(["targets", ...remote, "--api-key", env.FANOUT_CLI_KEY])
        assert.strictEqual(live.code, 0, live.stderr)
        assert.include(live.stdout, "\"inventory\"")

        // A shadow's dead letter does not make `send --wait` fail: exit 0, the shadow marked.
        const sendAudit = cli([
          "send",
          "audit.logged",
          "{}",
          "--wait",
          "--id",
          "ev-cli-3",
          ...remote,
          "--api-key",
          env.FANOUT_CLI_KEY
        ])
        const mirrored = yield* sendAudit
        assert.strictEqual(mirrored.code, 0, mirrored.stderr)
        const mirroredAnswer = JSON.parse(mirrored.stdout)
        assert.strictEqual(mirroredAnswer.settled, true)
        assert.strictEqual(mirroredAnswer.deliveries.find((d: any) => d.target === "inventory").status, "delivered")
        assert.strictEqual(mirroredAnswer.deliveries.find((d: any) => d.target === "billing").shadow, true)
        // Once the shadow is dead for sure, the same send again (a duplicate, waited on) still exits 0.
        yield* targets.until(() => targets.on("/billing").length === 3, "10 seconds")
        const shadowDead = (s: Outcome): boolean =>
          JSON.parse(s.stdout).deliveries.some((d: any) => d.target === "billing" && d.status === "dead")
        yield* cli(["status", "ev-cli-3", ...remote, "--api-key", env.FANOUT_CLI_KEY]).pipe(
          Effect.repeat({ schedule: Schedule.spaced("25 millis"), until: shadowDead }),
          Effect.timeoutFail({
            duration: "10 seconds",
            onTimeout: () => new Error("the shadow delivery was never dead-lettered")
          })
        )
        const again = yield* sendAudit
        assert.strictEqual(again.code, 0, again.stderr)
        const againAnswer = JSON.parse(again.stdout)
        assert.deepStrictEqual(
          againAnswer.deliveries.map((d: any) => [d.target, d.status, d.shadow]).sort(),
          [["billing", "dead", true], ["inventory", "delivered", undefined]]
        )
      }),
    { timeout: 60_000 }
  )

  it.scopedLive("a bad worker option (--concurrency 0) is a usage error: exit 2, the option named", () =>
    Effect.gen(function*() {
      const file = write("worker-options.json", {
        store: { sqlite: join(dir, "worker-options.db") },
        targets: { a: { url: "http://127.0.0.1:9/a" } },
        routes: { "order.*": ["a"] }
      })
      const out = yield* cli(["worker", "--config", file, "--concurrency", "0", "--log-format", "none"])
      assert.strictEqual(out.code, 2, out.stderr + out.stdout)
      assert.include(out.stderr, "concurrency must be an integer >= 1, got 0")
    }))

  it.scopedLive("prune: one retention pass on the store of a configuration; a bad duration is a usage error", () =>
    Effect.gen(function*() {
      const filename = join(dir, "prune.db")
      const file = write("prune.json", {
        store: { sqlite: filename, retention: { dead: false } },
        targets: { a: { url: "http://127.0.0.1:9/a" }, b: { url: "http://127.0.0.1:9/b" } },
        routes: { "order.*": ["a", "b"] }
      })
      // An event delivered to a, dead at b, written straight into the file.
      yield* Effect.gen(function*() {
        const store = yield* Store.DeliveryStore
        yield* store.enqueue(yield* Event.make("order.placed", {}, { id: "old-1" }), ["a", "b"])
        for (const c of yield* store.claim({ workerId: "t", limit: 10, leaseMs: 60_000 })) {
          yield* store.finish(
            c,
            { startedAt: 0, durationMs: 1, outcome: c.target === "a" ? "success" : "http_500" },
            c.target === "a" ? Store.Next.Delivered() : Store.Next.Dead({ reason: "max_attempts" })
          )
        }
      }).pipe(Effect.provide(SqliteStore.layer({ filename })))

      const kept = yield* cli(["prune", "--config", file])
      assert.strictEqual(kept.code, 0, kept.stderr)
      assert.deepStrictEqual(JSON.parse(kept.stdout), { deliveries: 0, dead: 0, events: 0 }, "nothing is 7 days old")
      const pruned = yield* cli(["prune", "--config", file, "--older-than", "0 millis"])
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.deepStrictEqual(
        JSON.parse(pruned.stdout),
        { deliveries: 1, dead: 0, events: 0 },
        "store.retention.dead: false"
      )
      const dead = yield* cli(["prune", "--config", file, "--dead-older-than", "0 millis"])
      assert.deepStrictEqual(JSON.parse(dead.stdout), { deliveries: 0, dead: 1, events: 0 })
      const bad = yield* cli(["prune", "--config", file, "--older-than", "a while"])
      assert.strictEqual(bad.code, 2)
      assert.include(bad.stderr + bad.stdout, "--older-than: expected a duration")
    }))

  describe("the real executable", () => {
    it.scopedLive(
      "--help, a bad configuration (exit 2), and `send` to a running server (exit 0)",
      () =>
        Effect.gen(function*() {
          const targets = yield* startServer((_req, res) => reply(res, 200))
          const config = {
            server: { port: 0 },
            store: { memory: true as const },
            targets: { inventory: { url: `${targets.url}/inventory` } },
            routes: { "order.*": ["inventory"] }
          }
          const url = yield* start(yield* prepare(config))
          const bad = write("bad-real.json", badConfig)
          const [help, invalid, sent] = yield* Effect.promise(() =>
            Promise.all([
              runFanout(["--help"]),
              runFanout(["serve", "--config", bad]),
              runFanout(["send", "order.placed", "{\"qty\":3}", "--wait", "--url", url])
            ])
          )
          assert.strictEqual(help.code, 0, help.stderr)
          assert.include(help.stdout, "fanout 0.1.0")
          assert.match(help.stdout, /serve .*--config/)

          assert.strictEqual(invalid.code, 2, invalid.stderr)
          assert.include(invalid.stderr, `${bad}: targets.inventory.timeout: Expected a duration`)

          assert.strictEqual(sent.code, 0, sent.stderr)
          assert.strictEqual(JSON.parse(sent.stdout).deliveries[0].status, "delivered")
          assert.strictEqual(JSON.parse(targets.on("/inventory")[0]!.body).payload.qty, 3)
        }),
      { timeout: 180_000 }
    )
  })

  it("maps interruption to 0 and unknown failures to 1", () => {
    let code = -1
    Cli.teardown(Exit.interrupt(0 as never), (c) => (code = c))
    assert.strictEqual(code, 0)
    Cli.teardown(Exit.fail("boom"), (c) => (code = c))
    assert.strictEqual(code, 1)
    Cli.teardown(Exit.fail(new Cli.ExitCode({ code: 2 })), (c) => (code = c))
    assert.strictEqual(code, 2)
  })
})
