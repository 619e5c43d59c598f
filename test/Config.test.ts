import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Either, Redacted } from "effect"
import * as Config from "../src/Config.js"
import * as Policy from "../src/Resilience/Policy.js"

const valid = {
  server: { host: "127.0.0.1", port: 8080, apiKeys: [{ env: "FANOUT_API_KEY" }] },
  store: { sqlite: "./fanout.db" },
  targets: {
    inventory: {
      url: "http://127.0.0.1:9001/inventory",
      method: "POST",
      headers: { "X-Api-Key": { env: "INVENTORY_KEY" } },
      timeout: "2 seconds",
      retry: { maxAttempts: 8, initialDelay: "100 millis", maxDelay: "30 seconds", maxAge: "1 day" },
      concurrency: 16,
      rateLimit: { limit: 100, interval: "1 second" },
      circuitBreaker: { failureThreshold: 5, resetAfter: "30 seconds" },
      signingSecret: { env: "INVENTORY_SIGNING_SECRET" }
    },
    notification: { url: "http://127.0.0.1:9002/notify" }
  },
  routes: { "order.placed": ["inventory", "notification"], "*": ["notification"] }
}

const issuesOf = (input: unknown) =>
  Effect.runSync(Effect.either(Config.decode("fanout.config.json", input))).pipe(
    Either.match({ onLeft: (e) => e, onRight: () => assert.fail("expected a ConfigError") })
  )

const withTarget = (patch: Record<string, unknown>) => ({
  ...valid,
  targets: { ...valid.targets, inventory: { ...valid.targets.inventory, ...patch } }
})

describe("Config", () => {
  it("accepts the documented JSON shape and builds targets and routes", () => {
    const config = Effect.runSync(Config.decode("fanout.config.json", valid))
    const built = Effect.runSync(
      Config.build("fanout.config.json", config, { INVENTORY_KEY: "k", INVENTORY_SIGNING_SECRET: "s", FANOUT_API_KEY: "a" })
    )
    assert.deepStrictEqual([...built.targets.keys()], ["inventory", "notification"])
    const resolution = built.router.resolve({ id: "1", type: "order.placed", payload: {}, headers: {}, createdAt: null as any })
    assert.deepStrictEqual(resolution.targets.map((t) => t.name), ["inventory", "notification"])
    assert.deepStrictEqual(built.router.resolve({ id: "2", type: "user.created", payload: {}, headers: {}, createdAt: null as any }).targets.map((t) => t.name), ["notification"])
    const policy = Policy.make(Config.policyOf(config.targets.inventory!))
    assert.strictEqual(Duration.toMillis(policy.timeout), 2000)
    assert.strictEqual(policy.retry.maxAttempts, 8)
    assert.strictEqual(Duration.toMillis(policy.retry.maxAge), 86_400_000)
    assert.strictEqual(policy.bulkhead.permits, 16)
    assert.strictEqual(policy.rateLimit?.limit, 100)
    assert.strictEqual(policy.circuitBreaker?.failureThreshold, 5)
  })

  it("names the file, the path and the expectation of a bad duration", () => {
    const error = issuesOf(withTarget({ timeout: "2 secs" }))
    assert.strictEqual(error.issues[0]?.path, "targets.inventory.timeout")
    assert.include(error.message, "fanout.config.json: targets.inventory.timeout:")
    assert.include(error.message, "Expected a duration like \"2 seconds\"")
  })

  it("reports a bad URL, a wrong type and an unknown field, all at once", () => {
    const error = issuesOf(withTarget({ url: "ftp://x", concurrency: "many", retries: 3 }))
    const paths = error.issues.map((i) => i.path).sort()
    assert.deepStrictEqual(paths, ["targets.inventory.concurrency", "targets.inventory.retries", "targets.inventory.url"])
    assert.include(error.message, "Expected an http(s) URL")
  })

  it("reports a route naming an unknown target with the known ones", () => {
    const error = issuesOf({ ...valid, routes: { "order.placed": ["inventry"] } })
    assert.strictEqual(error.issues[0]?.path, "routes[\"order.placed\"][0]")
    assert.include(error.issues[0]!.message, "inventory, notification")
    assert.include(error.issues[0]!.message, "\"inventry\"")
  })

  it("reports a missing required field and a bad store", () => {
    const { targets: _t, ...noTargets } = valid
    const error = issuesOf({ ...noTargets, store: { mysql: "x" } })
    const paths = error.issues.map((i) => i.path)
    assert.include(paths, "targets")
    assert.isTrue(paths.some((p) => p.startsWith("store")))
  })

  it("reports an unset secret's environment variable by path, never a value", () => {
    const config = Effect.runSync(Config.decode("fanout.config.json", valid))
    const result = Effect.runSync(Effect.either(Config.build("fanout.config.json", config, { INVENTORY_KEY: "top-secret" })))
    assert.isTrue(Either.isLeft(result))
    const message = Either.isLeft(result) ? result.left.message : ""
    assert.include(message, "targets.inventory.signingSecret.env: environment variable INVENTORY_SIGNING_SECRET is not set")
    assert.notInclude(message, "top-secret")
  })

  it("keeps secrets redacted", () => {
    const secret = Config.resolveSecret({ env: "X" }, "p", { X: "hunter2" })
    assert.isTrue(Redacted.isRedacted(secret))
    assert.notInclude(String(secret), "hunter2")
    assert.notInclude(JSON.stringify(secret), "hunter2")
  })

  it.effect("loads JSON and TypeScript files, and names the file on errors", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "fanout-config-"))
      try {
        const json = join(dir, "fanout.config.json")
        writeFileSync(json, JSON.stringify(valid))
        const loaded = yield* Config.load(json)
        assert.strictEqual(loaded.targets.notification?.url, "http://127.0.0.1:9002/notify")

        const broken = join(dir, "broken.json")
        writeFileSync(broken, "{ \"targets\": ")
        const parseError = yield* Effect.flip(Config.load(broken))
        assert.include(parseError.message, `${broken}: (root): invalid JSON`)

        const ts = join(dir, "fanout.config.mjs")
        writeFileSync(
          ts,
          `export default { targets: { a: { url: "http://127.0.0.1:1/a", body: (e) => ({ id: e.id }) } }, routes: { "*": ["a"] } }`
        )
        const module = yield* Config.load(ts)
        assert.strictEqual(typeof module.targets.a?.body, "function")

        const wrongExt = yield* Effect.flip(Config.load(join(dir, "fanout.yaml")))
        assert.include(wrongExt.message, "Expected a .json, .ts or .js configuration file")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})
