/**
 * The composition root: environment overrides, store selection, and secrets kept out of logs,
 * errors, spans and the API, with the whole application running on loopback.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { ConfigProvider, Duration, Effect, Logger, Redacted, Schedule } from "effect"
import * as Config from "../src/Config.js"
import * as Main from "../src/Main.js"
import { reply, startServer } from "./integration/helpers.js"
import { prepare, request, start } from "./Main.helpers.js"

const base = {
  server: { host: "127.0.0.1", port: 8080 },
  store: { sqlite: "data/fanout.db" },
  targets: { a: { url: "http://127.0.0.1:9/a" } },
  routes: { "order.*": ["a"] }
}

describe("Main", () => {
  describe("environment overrides", () => {
    it.effect("without FANOUT_*: the configuration's server and store (SQLite paths relative to the file)", () =>
      Effect.gen(function*() {
        const app = yield* prepare(base, {}, "/etc/fanout/fanout.json")
        assert.strictEqual(app.server.port, 8080)
        assert.strictEqual(app.server.host, "127.0.0.1")
        assert.deepStrictEqual(app.store, {
          _tag: "Sqlite",
          filename: "/etc/fanout/data/fanout.db",
          synchronous: undefined
        })
        const busy = yield* prepare(
          { ...base, store: { sqlite: "x.db", busyTimeout: "250 millis" } },
          {},
          "/etc/fanout/fanout.json"
        )
        assert.deepStrictEqual(busy.store, {
          _tag: "Sqlite",
          filename: "/etc/fanout/x.db",
          synchronous: undefined,
          busyTimeoutMs: 250
        })
        assert.deepStrictEqual(
          busy.retention,
          { delivered: undefined, dead: undefined, every: undefined },
          "retention: the defaults"
        )
        const kept = yield* prepare(
          { ...base, store: { sqlite: "x.db", retention: false } },
          {},
          "/etc/fanout/fanout.json"
        )
        assert.strictEqual(kept.retention, false)
        const custom = yield* prepare(
          { ...base, store: { memory: true, retention: { delivered: "1 day", dead: false, every: 5000 } } },
          {},
          "/etc/fanout/fanout.json"
        )
        assert.deepStrictEqual(custom.retention, {
          delivered: Duration.days(1),
          dead: false,
          every: Duration.seconds(5)
        })
        const noStore = yield* prepare({ ...base, store: undefined }, {}, "/srv/app/fanout.json")
        assert.deepStrictEqual(noStore.store, { _tag: "Sqlite", filename: "/srv/app/fanout.db" })
      }))

    it.effect("FANOUT_PORT, FANOUT_HOST and FANOUT_STORE win over the file; a store URL stays redacted", () =>
      Effect.gen(function*() {
        const url = "postgres://fanout:s3cret-pw@db.internal:5432/fanout"
        const app = yield* prepare(base, { FANOUT_PORT: "9091", FANOUT_HOST: "0.0.0.0", FANOUT_STORE: url })
        assert.strictEqual(app.server.port, 9091)
        assert.strictEqual(app.server.host, "0.0.0.0")
        assert.strictEqual(app.store._tag, "Postgres")
        if (app.store._tag !== "Postgres") return
        assert.strictEqual(Redacted.value(app.store.url), url)
        // Whatever prints the app or its store never shows the password.
        assert.notInclude(Main.describeStore(app.store), "s3cret-pw")
        assert.strictEqual(Main.describeStore(app.store), "postgres://fanout:***@db.internal:5432/fanout")
        assert.notInclude(JSON.stringify(app.store), "s3cret-pw")
        assert.notInclude(String(app.store.url), "s3cret-pw")

        const file = yield* prepare(base, { FANOUT_STORE: "local/other.db" })
        assert.deepStrictEqual(file.store, { _tag: "Sqlite", filename: resolve("local/other.db") })
        const memory = yield* prepare(base, { FANOUT_STORE: "memory" })
        assert.deepStrictEqual(memory.store, { _tag: "Memory" })
      }))

    it.effect("an invalid override is a configuration error naming the variable", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(prepare(base, { FANOUT_PORT: "eighty" }))
        assert.instanceOf(error, Config.ConfigError)
        assert.strictEqual(error.file, "environment")
        assert.strictEqual(error.issues[0]?.path, "FANOUT_PORT")
        assert.match(error.message, /^environment: FANOUT_PORT: /)
        const range = yield* Effect.flip(prepare(base, { FANOUT_PORT: "70000" }))
        assert.strictEqual(range.issues[0]?.path, "FANOUT_PORT")
      }))

    it.effect("a secret whose variable is missing names the variable and the path, never a value", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(prepare({
          ...base,
          server: { apiKeys: [{ env: "FANOUT_TEST_KEY" }] }
        }))
        assert.strictEqual(error.issues[0]?.path, "server.apiKeys[0].env")
        assert.include(error.message, "FANOUT_TEST_KEY is not set")
      }))
  })

  it.effect("the example configurations are valid (JSON and TypeScript)", () =>
    Effect.gen(function*() {
      const env = {
        FANOUT_API_KEY: "k",
        INVENTORY_TOKEN: "t",
        NOTIFY_SIGNING_SECRET: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
      }
      for (const file of ["examples/fanout.config.json", "examples/fanout.config.ts"]) {
        const config = yield* Config.load(file)
        const app = yield* Main.prepare(file, config, env).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
        )
        assert.deepStrictEqual([...app.built.targets.keys()].slice(0, 2), ["inventory", "notification"], file)
        assert.strictEqual(app.server.apiKeys.length, 1)
        assert.strictEqual(app.store._tag, "Sqlite")
        assert.include(app.secretHeaders, "authorization")
      }
    }))

  it.scopedLive("creates the SQLite file's folder and serves from it", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "fanout-main-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const targets = yield* startServer((_req, res) => reply(res, 200))
      const app = yield* prepare({
        server: { port: 0 },
        store: { sqlite: join(dir, "nested", "deeper", "fanout.db") },
        targets: { a: { url: `${targets.url}/a` } },
        routes: { "order.*": ["a"] }
      })
      const url = yield* start(app)
      const posted = yield* request(`${url}/v1/events?wait=settled`, {
        method: "POST",
        json: { type: "order.placed", payload: 1 }
      })
      assert.strictEqual(posted.status, 200, posted.text)
      assert.strictEqual(posted.body.deliveries[0].status, "delivered")
      assert.isTrue(existsSync(join(dir, "nested", "deeper", "fanout.db")))
    }), { timeout: 60_000 })

  it.scopedLive(
    "a configured pipeline (after): the dependent waits for its inputs and gets { event, inputs } as its body",
    () =>
      Effect.gen(function*() {
        const targets = yield* startServer((_req, res, r) =>
          r.path === "/inventory"
            ? setTimeout(() => reply(res, 200, { reservationId: "r-7" }), 50)
            : reply(res, 200, r.path === "/payment" ? { chargeId: "c-7" } : { ok: true })
        )
        const app = yield* prepare({
          server: { port: 0 },
          store: { memory: true },
          targets: {
            inventory: { url: `${targets.url}/inventory` },
            payment: { url: `${targets.url}/payment` },
            shipping: { url: `${targets.url}/shipping`, after: ["inventory", "payment"] }
          },
          routes: { "order.*": ["inventory", "payment", "shipping"] }
        })
        assert.deepStrictEqual(app.built.after, { shipping: ["inventory", "payment"] })
        const url = yield* start(app)
        const posted = yield* request(`${url}/v1/events?wait=settled`, {
          method: "POST",
          json: { id: "o-7", type: "order.placed", payload: { orderId: "o-7" } }
        })
        assert.strictEqual(posted.status, 200, posted.text)
        assert.isTrue(posted.body.deliveries.every((d: any) => d.status === "delivered"), posted.text)
        // Plain targets get the envelope; the dependent its payload as is.
        const inventory = JSON.parse(targets.on("/inventory")[0]!.body)
        assert.strictEqual(inventory.id, "o-7")
        assert.deepStrictEqual(inventory.payload, { orderId: "o-7" })
        const shipping = targets.on("/shipping")
        assert.strictEqual(shipping.length, 1)
        assert.deepStrictEqual(JSON.parse(shipping[0]!.body), {
          event: inventory,
          inputs: { inventory: { reservationId: "r-7" }, payment: { chargeId: "c-7" } }
        })
        const status = yield* request(`${url}/v1/events/o-7`)
        const view = status.body.deliveries.find((d: any) => d.target === "shipping")
        assert.deepStrictEqual([view.after, view.waiting], [["inventory", "payment"], 0])
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "secrets never appear in logs, error answers, spans, /v1/targets, /v1/events or /metrics",
    () =>
      Effect.gen(function*() {
        const secrets = {
          FANOUT_T_TOKEN: "tok-9f8e7d6c5b4a",
          FANOUT_T_SIGNING: "whsec_c2lnbmluZy1zZWNyZXQtMTIzNDU2Nzg5MA==",
          FANOUT_T_API_KEY: "key-0a1b2c3d4e5f"
        }
        // "flaky" fails once (a retried attempt with an error message), "broken" always (a dead letter).
        const targets = yield* startServer((_req, res, r) =>
          reply(res, r.path === "/broken" ? 400 : r.path === "/flaky" && r.nth === 1 ? 500 : 200, { echo: "ok" })
        )
        const target = {
          headers: { "x-token": { env: "FANOUT_T_TOKEN" } },
          signingSecret: { env: "FANOUT_T_SIGNING" },
          retry: { initialDelay: "20 millis", maxDelay: "50 millis" }
        }
        const app = yield* prepare({
          server: { port: 0, apiKeys: [{ env: "FANOUT_T_API_KEY" }] },
          store: { memory: true },
          targets: {
            flaky: { url: `${targets.url}/flaky`, ...target },
            broken: { url: `${targets.url}/broken`, ...target }
          },
          routes: { "order.*": ["flaky", "broken"] }
        }, secrets)
        const lines: Array<string> = []
        const capture = Logger.map(Logger.jsonLogger, (line) => {
          lines.push(line)
        })
        const exporter = new InMemorySpanExporter()
        const url = yield* start(app, {
          telemetry: { spanProcessors: [new SimpleSpanProcessor(exporter)] },
          worker: { pollInterval: "50 millis" }
        }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
        const auth = { authorization: `Bearer ${secrets.FANOUT_T_API_KEY}` }

        const posted = yield* request(`${url}/v1/events?wait=settled`, {
          method: "POST",
          headers: auth,
          json: { type: "order.placed", payload: { orderId: "o-9" } }
        })
        assert.strictEqual(posted.status, 200, posted.text)
        const statuses = Object.fromEntries(posted.body.deliveries.map((d: any) => [d.target, d.status]))
        assert.deepStrictEqual(statuses, { flaky: "delivered", broken: "dead" })
        // The secrets were used: the targets got the token and a signature.
        assert.strictEqual(targets.on("/flaky")[0]!.headers["x-token"], secrets.FANOUT_T_TOKEN)
        assert.isString(targets.on("/flaky")[0]!.headers["webhook-signature"])

        const outputs: Array<string> = [posted.text]
        for (const path of ["/v1/targets", `/v1/events/${posted.body.id}`, "/v1/dead-letters", "/metrics"]) {
          const r = yield* request(`${url}${path}`, { headers: auth })
          assert.strictEqual(r.status, 200, `${path}: ${r.text}`)
          outputs.push(r.text)
        }
        const refused = yield* request(`${url}/v1/targets`, { headers: { authorization: "Bearer wrong" } })
        assert.strictEqual(refused.status, 401)
        outputs.push(refused.text)

        // Spans are exported once they end; the failed attempts' spans are among them.
        yield* Effect.suspend(() =>
          exporter.getFinishedSpans().filter((s) => s.name === "fanout.attempt").length >= 3
            ? Effect.void
            : Effect.fail("not yet")
        ).pipe(Effect.retry(Schedule.spaced("20 millis")), Effect.timeout("10 seconds"), Effect.orDie)
        const spans = exporter.getFinishedSpans()
        const clientSpans = spans.filter((s) => s.attributes["http.request.header.x-token"] !== undefined)
        assert.isAbove(clientSpans.length, 0, "outgoing requests record their headers, x-token redacted")
        outputs.push(
          JSON.stringify(
            spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status }))
          )
        )

        assert.isAbove(lines.length, 0)
        assert.isTrue(
          lines.some((line) =>
            line.includes("dead-lettered") && line.includes("\"target\":\"broken\"") && line.includes("\"eventId\"")
          ),
          "the dead letter is logged as JSON with its target and event id"
        )
        outputs.push(...lines)
        for (const [name, secret] of Object.entries(secrets)) {
          for (const output of outputs) assert.notInclude(output, secret, `${name} leaked`)
        }
      }),
    { timeout: 60_000 }
  )
})
