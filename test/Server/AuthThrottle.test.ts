/**
 * Guessing keys is throttled (issue 10, item 12): failed authentications are counted per client
 * address; past `authThrottle.limit` in a window, that address gets `429` + `Retry-After` until the
 * window ends — whatever key it sends, on either path (the lean ingest listener and the `HttpApi`
 * router answer byte for byte alike); other addresses are unaffected; the warning names the
 * address, never a key tried; metrics count failures and throttled requests; memory is bounded.
 *
 * Time is Effect's `Clock`: `TestClock` for the check itself, and for the servers a clock of the
 * test's own (the instant moves only when the test says, sleeps stay real), so every `Retry-After`
 * is exact. Other addresses are other loopback sources (127.0.0.2 → 127.0.0.1).
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Effect, Either, Layer, Logger, Metric, Option, TestClock } from "effect"
import * as Config from "../../src/Config.js"
import * as Metrics from "../../src/Metrics.js"
import * as Auth from "../../src/Server/Auth.js"
import * as ServerOptions from "../../src/Server/Options.js"
import { start } from "./harness.js"

const failures = Effect.map(Metric.value(Metrics.authFailures), (s) => s.count)
const throttledCount = Effect.map(Metric.value(Metrics.authThrottled), (s) => s.count)

describe("AuthThrottle (the window per address)", () => {
  it("the limit-th failure starts a throttle for the rest of the window; it ends with the window", () => {
    const t = Auth.makeAuthThrottle(3, 60_000, 100)
    assert.strictEqual(t.failed("a", 1_000), 0)
    assert.strictEqual(t.retryAfter("a", 1_000), 0, "under the limit: not throttled")
    assert.strictEqual(t.failed("a", 2_000), 0)
    assert.strictEqual(t.failed("a", 11_000), 50, "the 3rd: throttled for what is left of the window opened at 1 000")
    assert.strictEqual(t.retryAfter("a", 11_000), 50)
    assert.strictEqual(t.retryAfter("a", 60_500), 1, "never 0 while throttled")
    assert.strictEqual(t.retryAfter("b", 11_000), 0, "another address is unaffected")
    assert.strictEqual(t.retryAfter("a", 61_000), 0, "the window has passed")
    assert.strictEqual(t.failed("a", 61_000), 0, "a new window, counted from 1")
    assert.strictEqual(t.size(), 1)
  })

  it("memory is bounded: at most maxAddresses windows; ended ones go first, then the oldest", () => {
    const t = Auth.makeAuthThrottle(2, 60_000, 3)
    for (let i = 0; i < 10_000; i++) t.failed(`10.0.${i >> 8}.${i & 255}`, 1_000 + i)
    assert.strictEqual(t.size(), 3)
    // The newest three are kept; the first was forgotten.
    assert.strictEqual(
      t.failed("10.0.39.15", 20_000),
      51,
      "the newest address's 2nd failure throttles it (window opened at 10 999)"
    )
    assert.strictEqual(t.failed("10.0.0.0", 20_000), 0, "the oldest was evicted: its count starts again")
    // Once their windows have ended, old entries are dropped as new ones open.
    t.failed("x", 200_000)
    assert.strictEqual(t.size(), 1)
  })

  it("a clock set back ends the window (never a Retry-After longer than the interval)", () => {
    const t = Auth.makeAuthThrottle(1, 60_000, 10)
    assert.strictEqual(t.failed("a", 100_000), 60)
    assert.strictEqual(t.retryAfter("a", 50_000), 0)
  })
})

describe("Auth.makeCheck / layerCheck with the throttle", () => {
  const options = (input: ServerOptions.Input = {}) => ServerOptions.make({ apiKeys: ["k-1"], ...input })

  it.effect("20 failures in a minute (the default), then 429 + Retry-After even for the right key, until the window passes; others unaffected; counted; logged by address only", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ message }) => void lines.push(String(Array.isArray(message) ? message.join(" ") : message)))
      )
      const context = yield* Layer.build(Auth.layerCheck(options())).pipe(Effect.provide(logger))
      const { check } = Context.get(context, Auth.AuthCheck)
      const attacker = "203.0.113.7"
      const failuresBefore = yield* failures
      const throttledBefore = yield* throttledCount

      yield* TestClock.setTime(1_000_000)
      for (let i = 0; i < 20; i++) {
        const answer = yield* Effect.either(check(`Bearer guess-${i}`, attacker))
        assert.isTrue(Either.isLeft(answer) && answer.left.error.status === 401, `guess ${i}: 401`)
        yield* TestClock.adjust("1 second")
      }
      // 20 s into the window (opened at the first failure): throttled for the 40 s left.
      for (const authorization of ["Bearer guess-20", "Bearer k-1", undefined]) {
        const answer = yield* Effect.flip(check(authorization, attacker))
        assert.strictEqual(answer.error.status, 429)
        assert.strictEqual(answer.error.code, "too_many_auth_failures")
        assert.strictEqual(answer.headers["retry-after"], "40")
      }
      assert.strictEqual(yield* check("Bearer k-1", "198.51.100.1"), "key-1", "a valid key from another address")
      assert.strictEqual(
        (yield* Effect.flip(check("Bearer nope", "198.51.100.1"))).error.status,
        401,
        "another address's failure is a 401"
      )
      assert.strictEqual(yield* check("Bearer k-1", undefined), "key-1", "no address (a closed socket): not throttled")

      yield* TestClock.adjust("39 seconds")
      assert.strictEqual((yield* Effect.flip(check("Bearer k-1", attacker))).headers["retry-after"], "1")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* check("Bearer k-1", attacker), "key-1", "the window has passed")
      assert.strictEqual((yield* Effect.flip(check("Bearer guess-21", attacker))).error.status, 401, "a new window")

      assert.strictEqual((yield* failures) - failuresBefore, 22, "fanout_auth_failures_total")
      assert.strictEqual((yield* throttledCount) - throttledBefore, 4, "fanout_auth_throttled_total")

      yield* Effect.yieldNow()
      const warnings = lines.filter((l) => l.includes("failed API key attempts"))
      assert.strictEqual(warnings.length, 1, `one warning per throttle: ${JSON.stringify(lines)}`)
      assert.include(warnings[0]!, attacker)
      assert.include(warnings[0]!, "429 for 41 s", "the 20th failure, 19 s into the window")
      for (const line of lines) assert.notMatch(line, /guess-|k-1/, "never a key tried, never the key")
    }).pipe(Effect.scoped))

  it.effect("configurable; `false` turns it off; an open API has nothing to throttle", () =>
    Effect.gen(function*() {
      const small = Auth.makeCheck(options({ authThrottle: { limit: 2, interval: "10 seconds" } }))
      assert.strictEqual(small.verify("Bearer x", "a", 0)._tag, "Left")
      assert.strictEqual(small.verify("Bearer x", "a", 1)._tag, "Left")
      const throttled = small.verify("Bearer k-1", "a", 2_000)
      assert.isTrue(Either.isLeft(throttled) && throttled.left.headers["retry-after"] === "8")

      const off = Auth.makeCheck(options({ authThrottle: false }))
      for (let i = 0; i < 100; i++) off.verify("Bearer x", "a", 0)
      assert.isTrue(Either.isRight(off.verify("Bearer k-1", "a", 0)))

      const open = Auth.makeCheck(ServerOptions.make({}))
      for (let i = 0; i < 100; i++) assert.isTrue(Either.isRight(open.verify("Bearer x", "a", 0)))
    }))

  it.effect("options: the defaults, the JSON configuration, and bad values", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(ServerOptions.make({}).authThrottle, {
        limit: 20,
        intervalMs: 60_000,
        maxAddresses: 10_000
      })
      assert.deepStrictEqual(ServerOptions.make({ authThrottle: { interval: "5 minutes" } }).authThrottle, {
        limit: 20,
        intervalMs: 300_000,
        maxAddresses: 10_000
      })
      assert.isUndefined(ServerOptions.make({ authThrottle: false }).authThrottle)
      assert.throws(() => ServerOptions.make({ authThrottle: { limit: 0 } }), /authThrottle.limit must be positive/)

      const decode = (server: unknown) =>
        Effect.either(Config.decode("fanout.config.json", { server, targets: {}, routes: {} }))
      const resolved = (server: unknown) =>
        Effect.map(
          Effect.orDie(Config.decode("fanout.config.json", { server, targets: {}, routes: {} })),
          (config) => Either.getOrThrow(ServerOptions.fromConfig(config.server, {})).authThrottle
        )
      assert.deepStrictEqual(
        yield* resolved({ authThrottle: { limit: 5, interval: "30 seconds", maxAddresses: 100 } }),
        {
          limit: 5,
          intervalMs: 30_000,
          maxAddresses: 100
        }
      )
      assert.isUndefined(yield* resolved({ authThrottle: false }))
      assert.deepStrictEqual(yield* resolved({}), { limit: 20, intervalMs: 60_000, maxAddresses: 10_000 })
      assert.isTrue(Either.isLeft(yield* decode({ authThrottle: { limit: -1 } })))
      assert.isTrue(Either.isLeft(yield* decode({ authThrottle: true })))
    }))
})

/** A clock whose instant moves only when told (sleeps stay real, so the server's timers work). */
const manualClock = (start: number) => {
  let now = start
  const real = Clock.make()
  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    currentTimeMillis: Effect.sync(() => now),
    unsafeCurrentTimeNanos: () => BigInt(now) * BigInt(1_000_000),
    currentTimeNanos: Effect.sync(() => BigInt(now) * BigInt(1_000_000)),
    sleep: (duration) => real.sleep(duration)
  }
  return { clock, advance: (ms: number) => void (now += ms) }
}

/** Sends `bytes` on a fresh connection from `localAddress`; resolves with the raw response (by Content-Length). */
const exchange = (port: number, bytes: string, localAddress = "127.0.0.1"): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress })
    let buffer = Buffer.alloc(0)
    const timer = setTimeout(() => (socket.destroy(), reject(new Error("no complete response within 10 s"))), 10_000)
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      const end = buffer.indexOf("\r\n\r\n")
      const length = end < 0 ? null : /\r\ncontent-length: *(\d+)/i.exec(buffer.subarray(0, end).toString("latin1"))
      if (end >= 0 && length !== null && buffer.length >= end + 4 + Number(length[1])) {
        clearTimeout(timer)
        socket.destroy()
        resolve(buffer.subarray(0, end + 4 + Number(length[1])).toString("utf8"))
      }
    })
    socket.on("error", (error) => (clearTimeout(timer), reject(error)))
    socket.on("connect", () => socket.write(bytes))
  })

const post = (path: string, body: string, authorization: string | undefined) =>
  `POST ${path} HTTP/1.1\r\nHost: fanout.test\r\ncontent-type: application/json\r\ncontent-length: ${
    Buffer.byteLength(body)
  }\r\n` +
  (authorization === undefined ? "" : `authorization: ${authorization}\r\n`) + "\r\n" + body

const get = (path: string, authorization: string) =>
  `GET ${path} HTTP/1.1\r\nHost: fanout.test\r\nauthorization: ${authorization}\r\n\r\n`

const statusOf = (response: string) => Number(response.split(" ", 2)[1])
const normalise = (response: string) =>
  response.replace(/\r\nDate: [^\r]+/i, "\r\nDate: <date>").replace(/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f-]{27}/g, "<uuid>")

describe("throttled on both paths (lean ingest listener and HttpApi router), alike", () => {
  it.scopedLive(
    "3 failures from 127.0.0.1: then 429 + Retry-After for it on every route, whatever the key; 127.0.0.2 unaffected; the window passes",
    () =>
      Effect.gen(function*() {
        const time = manualClock(1_700_000_000_000)
        const server = (leanIngest: boolean) =>
          start({ server: { apiKeys: ["k-1"], authThrottle: { limit: 3, interval: "1 minute" }, leanIngest } }).pipe(
            Effect.withClock(time.clock)
          )
        const lean = yield* server(true)
        const app = yield* server(false)
        const event = (id: string) => JSON.stringify({ id, type: "order.placed", payload: { qty: 1 } })

        /** The same request to both servers: the same answer, byte for byte (Date masked); its status. */
        const both = (name: string, bytes: string, from?: string) =>
          Effect.gen(function*() {
            const a = normalise(yield* Effect.promise(() => exchange(lean.port, bytes, from)))
            const b = normalise(yield* Effect.promise(() => exchange(app.port, bytes, from)))
            assert.strictEqual(a, b, name)
            return a
          })

        for (let i = 0; i < 3; i++) {
          const r = yield* both(`guess ${i}`, post("/v1/events", event(`g-${i}`), `Bearer guess-${i}`))
          assert.strictEqual(statusOf(r), 401, `guess ${i}`)
          time.advance(5_000)
        }
        // 15 s after the window opened: 45 s left.
        const cases = [
          ["the right key, lean route", post("/v1/events", event("t-1"), "Bearer k-1")],
          ["no key", post("/v1/events", event("t-2"), undefined)],
          ["a batch", post("/v1/events:batch", JSON.stringify({ events: [JSON.parse(event("t-3"))] }), "Bearer k-1")],
          ["another route (HttpApi on both)", get("/v1/dead-letters", "Bearer k-1")]
        ] as const
        for (const [name, bytes] of cases) {
          const r = yield* both(name, bytes)
          assert.strictEqual(statusOf(r), 429, name)
          assert.match(r, /\r\nretry-after: 45\r\n/i, name)
          assert.include(r, "\"code\":\"too_many_auth_failures\"", name)
        }
        assert.strictEqual(
          statusOf(
            yield* both("another address, the right key", post("/v1/events", event("o-1"), "Bearer k-1"), "127.0.0.2")
          ),
          202
        )
        assert.strictEqual(
          statusOf(
            yield* both("another address, a wrong key", post("/v1/events", event("o-2"), "Bearer nope"), "127.0.0.2")
          ),
          401
        )
        assert.strictEqual(
          (yield* lean.store.status("t-1")).pipe(Option.isNone),
          true,
          "nothing stored for a throttled request"
        )

        time.advance(44_000)
        assert.match(yield* both("1 s left", post("/v1/events", event("t-4"), "Bearer k-1")), /\r\nretry-after: 1\r\n/i)
        time.advance(1_000)
        assert.strictEqual(
          statusOf(yield* both("the window has passed", post("/v1/events", event("p-1"), "Bearer k-1"))),
          202
        )
        assert.strictEqual(
          statusOf(yield* both("a new window: 401 again", post("/v1/events", event("p-2"), "Bearer nope"))),
          401
        )
      }),
    { timeout: 30_000 }
  )
})
