/**
 * Configuration the Effect way (issue 13, item 3): every secret a configuration names
 * (`{ "env": NAME }`) and every override (`FANOUT_PORT`, `FANOUT_HOST`, `FANOUT_STORE`, nested
 * under `FANOUT`) is read with Effect `Config` (`Config.redacted`) from the current
 * `ConfigProvider`: the process environment by default, replaced here with
 * `Effect.withConfigProvider` — no `process.env` record passed by hand.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Redacted } from "effect"
import * as Config from "../src/Config.js"
import * as Main from "../src/Main.js"

const input = {
  server: { port: 8080, apiKeys: [{ env: "APP_KEY" }, "literal-key"] },
  store: { memory: true },
  targets: {
    a: {
      url: "http://127.0.0.1:9/a",
      headers: { authorization: { env: "A_TOKEN" } },
      signingSecret: { env: "A_SIGNING" }
    }
  },
  routes: { "order.*": ["a"] }
}

const provider = Config.environmentProvider({
  APP_KEY: "k-from-provider",
  A_TOKEN: "Bearer t-from-provider",
  A_SIGNING: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
  FANOUT_PORT: "9191",
  FANOUT_STORE: "postgres://fanout:pw@db.internal/fanout"
})

describe("Config from the ConfigProvider", () => {
  it("environmentNames: every { env } the configuration names, once, sorted", () => {
    assert.deepStrictEqual(Config.environmentNames(input), ["APP_KEY", "A_SIGNING", "A_TOKEN"])
    assert.deepStrictEqual(Config.environmentNames({ a: [{ env: "X" }, { env: "X", other: 1 }], b: "env" }), ["X"])
  })

  it.effect("Main.prepare reads secrets and FANOUT_* overrides from the current ConfigProvider, kept Redacted", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode("f.json", input)
      const app = yield* Main.prepare("f.json", config).pipe(Effect.withConfigProvider(provider))
      assert.strictEqual(app.server.port, 9191)
      assert.strictEqual(app.store._tag, "Postgres")
      assert.deepStrictEqual(app.server.apiKeys.map(Redacted.value), ["k-from-provider", "literal-key"])
      for (const key of app.server.apiKeys) {
        assert.isTrue(Redacted.isRedacted(key))
        assert.notInclude(String(key), "k-from")
        assert.notInclude(JSON.stringify(key), "k-from")
      }
      assert.deepStrictEqual([...app.built.targets.keys()], ["a"])
      // Another provider, other values: nothing is read from process.env.
      const other = yield* Main.prepare("f.json", config).pipe(
        Effect.withConfigProvider(Config.environmentProvider({ APP_KEY: "k2", A_TOKEN: "t2", A_SIGNING: "s2" }))
      )
      assert.strictEqual(other.server.port, 8080)
      assert.strictEqual(other.store._tag, "Memory")
      assert.strictEqual(Redacted.value(other.server.apiKeys[0]!), "k2")
    }))

  it.effect("a secret the provider lacks is an issue by path, naming the variable, never a value", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode("f.json", input)
      const error = yield* Effect.flip(
        Main.prepare("f.json", config).pipe(
          Effect.withConfigProvider(Config.environmentProvider({ APP_KEY: "k-secret-value", A_SIGNING: "s" }))
        )
      )
      assert.strictEqual(error.issues[0]?.path, "targets.a.headers.authorization.env")
      assert.include(error.message, "environment variable A_TOKEN is not set")
      assert.notInclude(error.message, "k-secret-value")
    }))

  it.effect("Config.build without a record reads the ConfigProvider too; an explicit record still works", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode("f.json", input)
      const built = yield* Config.build("f.json", config).pipe(Effect.withConfigProvider(provider))
      assert.deepStrictEqual([...built.targets.keys()], ["a"])
      const missing = yield* Effect.flip(
        Config.build("f.json", config).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      )
      assert.deepStrictEqual(missing.issues.map((i) => i.path), [
        "targets.a.headers.authorization.env",
        "targets.a.signingSecret.env"
      ])
      const explicit = yield* Config.build("f.json", config, { A_TOKEN: "t", A_SIGNING: "s" })
      assert.deepStrictEqual([...explicit.targets.keys()], ["a"])
    }))

  it.effect("an invalid override names the variable as the environment spells it", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode("f.json", { ...input, server: { port: 8080 } })
      const error = yield* Effect.flip(
        Main.prepare("f.json", config).pipe(
          Effect.withConfigProvider(
            Config.environmentProvider({ FANOUT_PORT: "eighty", A_TOKEN: "t", A_SIGNING: "s" })
          )
        )
      )
      assert.strictEqual(error.file, "environment")
      assert.strictEqual(error.issues[0]?.path, "FANOUT_PORT")
    }))
})
