import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Duration, Effect, Either, Layer, Logger, Redacted } from "effect"
import * as Config from "../src/Config.js"
import * as Event from "../src/Event.js"
import * as Policy from "../src/Resilience/Policy.js"
import * as TestTarget from "../src/testing/TestTarget.js"

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
      Config.build("fanout.config.json", config, {
        INVENTORY_KEY: "k",
        INVENTORY_SIGNING_SECRET: "s",
        FANOUT_API_KEY: "a"
      })
    )
    assert.deepStrictEqual([...built.targets.keys()], ["inventory", "notification"])
    const resolution = built.router.resolve({
      id: "1",
      type: "order.placed",
      payload: {},
      headers: {},
      createdAt: null as any
    })
    assert.deepStrictEqual(resolution.targets.map((t) => t.name), ["inventory", "notification"])
    assert.deepStrictEqual(
      built.router.resolve({ id: "2", type: "user.created", payload: {}, headers: {}, createdAt: null as any }).targets
        .map((t) => t.name),
      ["notification"]
    )
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
    assert.deepStrictEqual(paths, [
      "targets.inventory.concurrency",
      "targets.inventory.retries",
      "targets.inventory.url"
    ])
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
    const result = Effect.runSync(
      Effect.either(Config.build("fanout.config.json", config, { INVENTORY_KEY: "top-secret" }))
    )
    assert.isTrue(Either.isLeft(result))
    const message = Either.isLeft(result) ? result.left.message : ""
    assert.include(
      message,
      "targets.inventory.signingSecret.env: environment variable INVENTORY_SIGNING_SECRET is not set"
    )
    assert.notInclude(message, "top-secret")
  })

  it("keeps secrets redacted", () => {
    const secret = Config.resolveSecret({ env: "X" }, "p", { X: "hunter2" })
    assert.isTrue(Redacted.isRedacted(secret))
    assert.notInclude(String(secret), "hunter2")
    assert.notInclude(JSON.stringify(secret), "hunter2")
  })

  it("signingSecret as a list (newest first): literal, { env } and { secret, until } entries decode and build, redacted", () => {
    const config = Effect.runSync(Config.decode(
      "fanout.config.json",
      withTarget({
        signingSecret: [
          { env: "INVENTORY_SIGNING_NEXT" },
          { secret: { env: "INVENTORY_SIGNING_SECRET" }, until: "2026-12-31T00:00:00Z" },
          { secret: "whsec_bGl0ZXJhbC1vbGQ=", until: "2026-06-30T12:00:00+02:00" }
        ]
      })
    ))
    const env = {
      INVENTORY_KEY: "k",
      INVENTORY_SIGNING_SECRET: "current-hunter2",
      INVENTORY_SIGNING_NEXT: "next-hunter3"
    }
    const built = Effect.runSync(Config.build("fanout.config.json", config, env))
    const secrets = built.targets.get("inventory")!.options.signingSecret as ReadonlyArray<any>
    assert.strictEqual(secrets.length, 3)
    assert.isTrue(Redacted.isRedacted(secrets[0]))
    assert.strictEqual(Redacted.value(secrets[0]), "next-hunter3")
    assert.isTrue(Redacted.isRedacted(secrets[1].secret))
    assert.strictEqual(Redacted.value(secrets[1].secret), "current-hunter2")
    assert.strictEqual(secrets[1].until, "2026-12-31T00:00:00Z")
    assert.isTrue(Redacted.isRedacted(secrets[2].secret))
    // What a log line of them shows (logfmt and JSON loggers).
    const logged: Array<string> = []
    for (const logger of [Logger.logfmtLogger, Logger.jsonLogger]) {
      Effect.runSync(
        Effect.logInfo("secrets", secrets).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, Logger.map(logger, (line) => void logged.push(line))))
        )
      )
    }
    assert.strictEqual(logged.length, 2)
    for (const line of logged) assert.include(line, "redacted")
    for (const shown of [String(secrets), JSON.stringify(secrets), String(secrets[1].secret), ...logged]) {
      for (const value of ["next-hunter3", "current-hunter2", "whsec_bGl0ZXJhbC1vbGQ="]) assert.notInclude(shown, value)
    }
    // The single form still decodes and builds as before.
    const single = Effect.runSync(
      Config.build("fanout.config.json", Effect.runSync(Config.decode("fanout.config.json", valid)), env)
    )
    assert.isTrue(Redacted.isRedacted(single.targets.get("inventory")!.options.signingSecret))
  })

  it("signingSecret lists: every unset variable by path, a bad until or an empty list by path, never a secret's value", () => {
    const config = Effect.runSync(Config.decode(
      "fanout.config.json",
      withTarget({
        signingSecret: ["whsec_TElURVJBTA==", { env: "UNSET_NEXT" }, {
          secret: { env: "UNSET_OLD" },
          until: "2026-12-31T00:00:00Z"
        }]
      })
    ))
    const result = Effect.runSync(Effect.either(Config.build("fanout.config.json", config, { INVENTORY_KEY: "k" })))
    assert.isTrue(Either.isLeft(result))
    const error = Either.isLeft(result) ? result.left : assert.fail("expected a ConfigError")
    assert.deepStrictEqual(error.issues.map((i) => i.path), [
      "targets.inventory.signingSecret[1].env",
      "targets.inventory.signingSecret[2].secret.env"
    ])
    assert.include(error.message, "environment variable UNSET_OLD is not set")
    assert.notInclude(error.message, "whsec_TElURVJBTA==")

    const badUntil = issuesOf(
      withTarget({ signingSecret: ["whsec_TElURVJBTA==", { secret: "whsec_T0xE", until: "2026-12-31" }] })
    )
    assert.include(badUntil.message, "targets.inventory.signingSecret[1].until: Expected an ISO 8601 instant")
    const wrongShape = issuesOf(
      withTarget({ signingSecret: ["whsec_TElURVJBTA==", { secret: "whsec_T0xE" }, ["whsec_TkVTVA=="], 7] })
    )
    assert.include(wrongShape.message, "targets.inventory.signingSecret[1].until: is missing")
    assert.include(wrongShape.message, "targets.inventory.signingSecret[2]: Expected")
    assert.include(wrongShape.message, "targets.inventory.signingSecret[3]: Expected")
    for (const error of [badUntil, wrongShape]) {
      for (const value of ["whsec_TElURVJBTA==", "whsec_T0xE", "whsec_TkVTVA=="]) {
        assert.notInclude(error.message, value)
      }
    }
    assert.include(
      issuesOf(withTarget({ signingSecret: [] })).message,
      "Expected at least one secret, got an empty list"
    )
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

  describe("after (durable pipelines)", () => {
    const pipeline = (
      targets: Record<string, ReadonlyArray<string> | undefined>,
      routes: Record<string, unknown>
    ) => ({
      targets: Object.fromEntries(
        Object.entries(targets).map(([name, after]) => [
          name,
          { url: TestTarget.urlOf(name) + "/in", ...(after !== undefined ? { after } : {}) }
        ])
      ),
      routes
    })
    const three = { inventory: undefined, payment: undefined, shipping: ["inventory", "payment"] }

    it("accepts a valid after, exposes the dependency map, and routes resolve every input", () => {
      const config = Effect.runSync(Config.decode(
        "fanout.config.json",
        pipeline(three, {
          "order.placed": ["inventory", "payment", "shipping"],
          "order.*": { targets: ["inventory"], shadow: [] }
        })
      ))
      const built = Effect.runSync(Config.build("fanout.config.json", config, {}))
      assert.deepStrictEqual(built.after, { shipping: ["inventory", "payment"] })
      assert.deepStrictEqual(Config.dependenciesOf(config), { shipping: ["inventory", "payment"] })
      // No after anywhere: an empty map.
      const plain = Effect.runSync(Config.build("f.json", Effect.runSync(Config.decode("f.json", valid)), {
        INVENTORY_KEY: "k",
        INVENTORY_SIGNING_SECRET: "s"
      }))
      assert.deepStrictEqual(plain.after, {})
    })

    it("accepts inputs routed by a wildcard that covers the dependent's route, and shadow inputs", () => {
      // "*" sends every event to inventory and payment: order.placed gets them too.
      Effect.runSync(Config.decode(
        "f.json",
        pipeline(three, {
          "*": ["inventory", "payment"],
          "order.placed": ["shipping"]
        })
      ))
      // order.* covers order.paid.*.
      Effect.runSync(Config.decode(
        "f.json",
        pipeline(three, {
          "order.*": ["inventory"],
          "order.paid.*": { targets: ["shipping"], shadow: ["payment"] }
        })
      ))
    })

    it("reports an unknown target in after, with its path and the known names", () => {
      const error = issuesOf(
        pipeline({ ...three, shipping: ["inventory", "paymnt"] }, { "order.placed": ["inventory", "shipping"] })
      )
      assert.deepStrictEqual(error.issues.map((i) => i.path), ["targets.shipping.after[1]"])
      assert.include(error.message, "fanout.config.json: targets.shipping.after[1]: Expected the name of a target")
      assert.include(error.message, "inventory, payment, shipping")
      assert.include(error.message, "\"paymnt\"")
    })

    it("reports a target that runs after itself", () => {
      const error = issuesOf(
        pipeline({ ...three, payment: ["payment"] }, { "order.placed": ["inventory", "payment", "shipping"] })
      )
      assert.deepStrictEqual(error.issues.map((i) => i.path), ["targets.payment.after[0]"])
      assert.include(error.message, "\"payment\" cannot run after itself")
    })

    it("reports a cycle, naming it", () => {
      const error = issuesOf(pipeline(
        { inventory: ["shipping"], payment: undefined, shipping: ["inventory", "payment"] },
        { "order.placed": ["inventory", "payment", "shipping"] }
      ))
      assert.strictEqual(error.issues.length, 1)
      assert.match(error.issues[0]!.path, /^targets\.(inventory|shipping)\.after$/)
      assert.include(error.message, "Expected no cycle in \"after\"")
      const cycle = /got (.*) \(each/.exec(error.issues[0]!.message)![1]
      assert.oneOf(cycle, ["inventory → shipping → inventory", "shipping → inventory → shipping"])
      // A longer loop.
      const long = issuesOf(pipeline(
        { a: ["c"], b: ["a"], c: ["b"] },
        { "x": ["a", "b", "c"] }
      ))
      assert.match(long.message, /Expected no cycle in "after", got (a → c → b → a|b → a → c → b|c → b → a → c)/)
    })

    it("reports an exact route that sends to a dependent but not to all of its inputs", () => {
      const error = issuesOf(pipeline(three, { "order.placed": ["inventory", "shipping"] }))
      assert.deepStrictEqual(error.issues.map((i) => i.path), ["routes[\"order.placed\"][1]"])
      assert.include(error.issues[0]!.message, "Expected payment too")
      assert.include(error.issues[0]!.message, "route \"order.placed\" sends its events to shipping")
      assert.include(error.issues[0]!.message, "runs after inventory, payment, but not to payment")
      // Object form, dependent as a shadow.
      const shadow = issuesOf(pipeline(three, { "order.placed": { targets: ["inventory"], shadow: ["shipping"] } }))
      assert.deepStrictEqual(shadow.issues.map((i) => i.path), ["routes[\"order.placed\"].shadow[0]"])
    })

    it("reports a wildcard route whose inputs are routed only for some of its types", () => {
      // order.placed gets inventory and payment, but order.cancelled (also order.*) would not.
      const error = issuesOf(pipeline(three, {
        "order.placed": ["inventory", "payment"],
        "order.*": ["shipping"]
      }))
      assert.deepStrictEqual(error.issues.map((i) => i.path), ["routes[\"order.*\"][0]"])
      assert.include(error.issues[0]!.message, "Expected inventory, payment too")
      assert.include(error.issues[0]!.message, "route \"order.*\" sends the events it matches to shipping")
      assert.include(error.issues[0]!.message, "but not all of them to inventory, payment")
      // "*" sends shipping everywhere; only order.* carries inventory and payment.
      const star = issuesOf(pipeline(three, { "order.*": ["inventory", "payment"], "*": ["shipping"] }))
      assert.deepStrictEqual(star.issues.map((i) => i.path), ["routes[\"*\"][0]"])
      // A route with a narrower wildcard does not cover a broader one.
      const narrow = issuesOf(pipeline(three, { "order.*.v1": ["inventory", "payment"], "order.*": ["shipping"] }))
      assert.deepStrictEqual(narrow.issues.map((i) => i.path), ["routes[\"order.*\"][0]"])
    })

    it("is accepted by defineConfig (TypeScript)", () => {
      const config = Config.defineConfig({
        targets: { a: { url: "http://127.0.0.1:1/a" }, b: { url: "http://127.0.0.1:1/b", after: ["a"] } },
        routes: { "*": ["a", "b"] }
      })
      assert.deepStrictEqual(Effect.runSync(Config.decode("fanout.config.ts", config)).targets.b?.after, ["a"])
    })

    it.effect("a dependent's default body is its payload as is; a plain target's is the envelope", () =>
      Effect.gen(function*() {
        const config = yield* Config.decode(
          "f.json",
          pipeline(three, { "order.placed": ["inventory", "payment", "shipping"] })
        )
        const built = yield* Config.build("f.json", config, {})
        const createdAt = DateTime.unsafeMake(0)
        const event: Event.Any = { id: "e-1", type: "order.placed", payload: { sku: "s" }, headers: {}, createdAt }
        const derived: Event.Any = {
          ...event,
          payload: { event: Event.encode(event), inputs: { inventory: { ok: 1 }, payment: "paid" } }
        }
        const send = (name: string, e: Event.Any) =>
          Effect.gen(function*() {
            const test = TestTarget.make(name)
            const target = built.targets.get(name)!
            const runtime = yield* Effect.provide(
              target.tag,
              (target.layer as Layer.Layer<any, never, any>).pipe(Layer.provide(TestTarget.layer(test)))
            )
            yield* runtime.attempt(e, 1)
            return JSON.parse(test.ledger[0]!.body) as unknown
          })
        assert.deepStrictEqual(yield* send("shipping", derived), derived.payload)
        assert.deepStrictEqual(yield* send("inventory", event), Event.encode(event))
      }))
  })
})

describe("aggregates (TypeScript configs)", () => {
  const noWildcard = { ...valid, routes: { "order.placed": ["inventory", "notification"] } }

  it("an aggregate for a routed type is built; one for a type no route matches names its path", () => {
    const config = Effect.runSync(Config.decode("fanout.config.ts", {
      ...noWildcard,
      aggregates: { "order.placed": () => 1 }
    }))
    const env = { INVENTORY_KEY: "k", INVENTORY_SIGNING_SECRET: "s", FANOUT_API_KEY: "a" }
    const built = Effect.runSync(Config.build("fanout.config.ts", config, env))
    assert.deepStrictEqual(Object.keys(built.aggregates), ["order.placed"])
    const bad = Effect.runSync(
      Config.decode("fanout.config.ts", { ...noWildcard, aggregates: { "user.created": () => 1 } })
    )
    const error = Effect.runSync(Effect.flip(Config.build("fanout.config.ts", bad, env)))
    assert.match(error.message, /fanout\.config\.ts/)
    assert.match(error.message, /aggregates\["user\.created"\]/)
    assert.match(error.message, /route/)
  })

  it("in a JSON file an aggregate is not a function: the error names the path", () => {
    const error = issuesOf({ ...noWildcard, aggregates: { "order.placed": "sum" } })
    assert.match(error.message, /aggregates/)
    assert.match(error.message, /order\.placed/)
  })
})
