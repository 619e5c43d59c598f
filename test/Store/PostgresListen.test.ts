/**
 * LISTEN that heals (issue 10, item 4): a PostgreSQL store's `LISTEN` connection is lost — its
 * backend terminated (`pg_terminate_backend`), or its socket gone silent — and the store notices,
 * re-listens, counts it (`fanout_store_listen_reconnects_total`) and wakes its workers once for a
 * catch-up poll. The worker here polls only every 60 s, so a delivery within seconds can only come
 * from a wake-up. Instants are the ones recorded (the enqueue's, the target's `receivedAt`);
 * waits poll for state, never sleep as synchronisation.
 *
 * PostgreSQL at 127.0.0.1:5432, database `test` (FANOUT_TEST_POSTGRES_URL overrides). Unreachable:
 * skipped with a warning, unless FANOUT_REQUIRE_POSTGRES=1, in which case they fail.
 */
import * as net from "node:net"
import * as Reactivity from "@effect/experimental/Reactivity"
import { HttpClientRequest } from "@effect/platform"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, Metric, Redacted } from "effect"
import { Event, Target } from "../../src/index.js"
import * as Metrics from "../../src/Metrics.js"
import * as Store from "../../src/Store.js"
import * as PostgresStore from "../../src/Store/Postgres.js"
import * as TestTarget from "../../src/testing/TestTarget.js"
import * as Worker from "../../src/Worker.js"
import { skipReason, url } from "./pgAvailable.js"

const skip = skipReason("Store/PostgresListen.test", "PostgresStore LISTEN")

const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`
let counter = 0
const newName = (label: string) => `${label}${runId}${(counter++).toString(36)}`

/** The poll interval of the worker under test: far longer than any bound asserted below. */
const slowPoll = "60 seconds"

/** An admin connection of the test's own (not the store's), for pg_stat_activity and pg_terminate_backend. */
const admin = Effect.provide(
  PgClient.make({ url: Redacted.make(url), applicationName: "fanout-listen-test-admin" }),
  Reactivity.layer
)

/** Drops every table with this prefix when the scope closes (after the stores using it have closed). */
const dropAfter = (prefix: string) =>
  Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const sql = yield* admin
      for (const table of ["attempts", "deliveries", "targets", "events", "migrations"]) {
        yield* sql.unsafe(`DROP TABLE IF EXISTS ${prefix}${table} CASCADE`)
      }
    }).pipe(Effect.scoped, Effect.orDie)
  )

const storeOn = (options: PostgresStore.Options) =>
  Effect.map(Layer.build(PostgresStore.layer(options)), (context) => Context.get(context, Store.DeliveryStore)).pipe(
    Effect.orDie
  )

/** Polls `predicate` every 20 ms (real time) until it holds; dies naming `what` after `timeoutMs`. */
const eventually = <E, R>(what: string, predicate: Effect.Effect<boolean, E, R>, timeoutMs = 15_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* predicate)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out after ${timeoutMs} ms waiting for: ${what}`)
      yield* Effect.sleep("20 millis")
    }
  })

const reconnects = (channel: string) =>
  Effect.map(Metric.value(Metrics.storeListenReconnects.pipe(Metric.tagged("channel", channel))), (s) => s.count)
const listening = (channel: string) =>
  Effect.map(Metric.value(Metrics.storeListening.pipe(Metric.tagged("channel", channel))), (s) => s.value === 1)

/** The backends of application `name` (the listener's is `<name>:listen`). */
const backends = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* admin
    return yield* sql<{ pid: number; applicationName: string }>`SELECT pid, application_name AS "applicationName"
      FROM pg_stat_activity WHERE application_name LIKE ${name + "%"} AND pid <> pg_backend_pid()`
  }).pipe(Effect.scoped, Effect.orDie)

/**
 * A producer store and a worker store (two pools, as two processes have) on a fresh prefix, a
 * TestTarget `a`, and a worker on the worker store polling every 60 s. `workerUrl`: where the
 * worker store connects (a proxy, say).
 */
const setup = (workerUrl: string, options: Partial<PostgresStore.Options> = {}) =>
  Effect.gen(function*() {
    const prefix = `fanout_l${newName("")}_`
    const channel = `${prefix}work`
    const app = newName("fanout-listen-")
    yield* dropAfter(prefix)
    const producer = yield* storeOn({ url, prefix, applicationName: "fanout-listen-producer" })
    const store = yield* storeOn({ url: workerUrl, prefix, applicationName: app, ...options })
    const target = TestTarget.make("a")
    const A = Target.make("a", {
      request: (event: Event.Event<string, unknown>) =>
        HttpClientRequest.post(`${target.url}/events`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
    })
    const targetContext = yield* Layer.build(A.layer.pipe(Layer.provide(TestTarget.layer(target))))
    yield* Worker.make({ targets: [A], pollInterval: slowPoll, workerId: app, metricsInterval: false }).pipe(
      Effect.provide(targetContext),
      Effect.provideService(Store.DeliveryStore, store)
    )
    yield* eventually("the worker store listens", listening(channel))

    /** Enqueues one event through the producer; resolves with the instant before the enqueue and the delivery's arrival at the target. */
    const enqueueAndReceive = (id: string) =>
      Effect.gen(function*() {
        const event = yield* Effect.orDie(Event.make("order.placed", { id }, { id }))
        const enqueuedAt = Date.now()
        yield* Effect.orDie(producer.enqueue(event, ["a"]))
        yield* eventually(`${id} reaches the target`, Effect.sync(() => target.keys.includes(`${id}:a`)))
        const receivedAt = target.requestsFor(`${id}:a`)[0]!.receivedAt
        return { enqueuedAt, receivedAt, latency: receivedAt - enqueuedAt }
      })
    return { prefix, channel, app, producer, store, target, enqueueAndReceive }
  })

/**
 * A TCP proxy in front of PostgreSQL that can make the `LISTEN` connections (recognised by the
 * `:listen` application name in their startup message) go silent: from `freeze()` on, every byte
 * either way is dropped and nothing is closed — a peer behind a dead network path.
 */
const silencingProxy = Effect.gen(function*() {
  const upstream = new URL(url)
  const pairs = new Set<
    { readonly listen: () => boolean; readonly frozen: { value: boolean }; readonly destroy: () => void }
  >()
  const server = net.createServer((client) => {
    const db = net.connect(Number(upstream.port || 5432), upstream.hostname)
    let listen = false
    let first = true
    const state = { value: false }
    const pair = { listen: () => listen, frozen: state, destroy: () => (client.destroy(), db.destroy()) }
    pairs.add(pair)
    client.on("data", (chunk: Buffer) => {
      if (first) {
        first = false
        listen = chunk.includes(":listen")
      }
      if (!state.value) db.write(chunk)
    })
    db.on("data", (chunk: Buffer) => {
      if (!state.value) client.write(chunk)
    })
    const close = () => {
      pairs.delete(pair)
      pair.destroy()
    }
    client.on("error", close).on("close", close)
    db.on("error", close).on("close", close)
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () =>
      Effect.async<void>((resume) => {
        for (const pair of pairs) pair.destroy()
        server.close(() => resume(Effect.void))
      })
  )
  const port = (server.address() as net.AddressInfo).port
  const proxied = new URL(url)
  proxied.hostname = "127.0.0.1"
  proxied.port = String(port)
  return {
    url: proxied.toString(),
    /** Silences every LISTEN connection open now; returns how many. */
    freeze: Effect.sync(() => {
      let n = 0
      for (const pair of pairs) {
        if (pair.listen()) {
          pair.frozen.value = true
          n++
        }
      }
      return n
    })
  }
})

/** Log lines of the test (the store's warnings and infos), to check what an operator would read. */
const captureLogs = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => void lines.push(String(Array.isArray(message) ? message.join(" ") : message)))
  )

const d = skip !== undefined ? describe.skip : describe
d(`PostgresStore LISTEN that heals${skip !== undefined ? ` (skipped: ${skip})` : ""}`, () => {
  it.live(
    "after pg_terminate_backend on the store's connections, the next NOTIFY still wakes its worker within 2 s",
    () => {
      const lines: Array<string> = []
      return Effect.gen(function*() {
        const t = yield* setup(url)
        // Before: a NOTIFY wakes the idle worker (it polls only every 60 s).
        const before = yield* t.enqueueAndReceive("before-kill")
        assert.isBelow(before.latency, 2_000, `woken by NOTIFY before the kill (${before.latency} ms)`)

        const listenBefore = (yield* backends(t.app)).filter((b) => b.applicationName.endsWith(":listen"))
        assert.strictEqual(listenBefore.length, 1, "one LISTEN connection, named <app>:listen")
        const reconnectsBefore = yield* reconnects(t.channel)
        // Kill every connection of the worker's store: its pool's and its listener's.
        const killed = yield* Effect.gen(function*() {
          const sql = yield* admin
          return yield* sql<{ pid: number }>`SELECT pid FROM pg_stat_activity
          WHERE application_name LIKE ${t.app + "%"} AND pid <> pg_backend_pid() AND pg_terminate_backend(pid)`
        }).pipe(Effect.scoped, Effect.orDie)
        assert.includeMembers(killed.map((k) => k.pid), [listenBefore[0]!.pid], "the listen backend was terminated")

        // Healed: re-listened on a new backend, counted.
        yield* eventually(
          "a new LISTEN backend, counted as a reconnect",
          Effect.gen(function*() {
            const now = (yield* backends(t.app)).filter((b) => b.applicationName.endsWith(":listen"))
            return now.length === 1 && now[0]!.pid !== listenBefore[0]!.pid &&
              (yield* reconnects(t.channel)) > reconnectsBefore &&
              (yield* listening(t.channel))
          })
        )
        assert.strictEqual((yield* reconnects(t.channel)) - reconnectsBefore, 1, "one reconnect for one loss")

        // After: the next NOTIFY (an enqueue through the other store's pool) wakes the worker.
        const after = yield* t.enqueueAndReceive("after-kill")
        assert.isBelow(
          after.latency,
          2_000,
          `woken by NOTIFY after the kill (${after.latency} ms), not by the 60 s poll`
        )
        assert.isTrue(
          lines.some((l) => l.includes("LISTEN connection lost")),
          `the loss is logged: ${JSON.stringify(lines)}`
        )
        assert.isTrue(lines.some((l) => l.includes("LISTEN restored")), "the recovery is logged")
      }).pipe(Effect.scoped, Effect.provide(captureLogs(lines)))
    },
    { timeout: 60_000 }
  )

  it.live(
    "a LISTEN socket gone silent is found by the health check; the event whose NOTIFY was lost is delivered by the catch-up poll",
    () =>
      Effect.gen(function*() {
        const proxy = yield* silencingProxy
        const t = yield* setup(proxy.url, { listenHealthCheck: "1 second" })
        const first = yield* t.enqueueAndReceive("through-proxy")
        assert.isBelow(first.latency, 2_000, `woken by NOTIFY through the proxy (${first.latency} ms)`)
        const reconnectsBefore = yield* reconnects(t.channel)

        assert.strictEqual(yield* proxy.freeze, 1, "the one LISTEN connection is silenced")
        // Enqueued while the listener is deaf: its NOTIFY is lost in the silent socket.
        const lost = yield* t.enqueueAndReceive("notify-lost")
        const healedAt = yield* reconnects(t.channel)
        assert.isAtLeast(healedAt - reconnectsBefore, 1, "delivered after a reconnect")
        // Found within a health-check interval plus its timeout (1 s each) and the first backoff
        // (at most 0.25 s), then the catch-up poll: seconds, where the worker's own poll is 60 s.
        assert.isBelow(lost.latency, 10_000, `delivered by the catch-up poll (${lost.latency} ms), not the 60 s poll`)
        assert.isTrue(yield* listening(t.channel))

        // And the new LISTEN connection hears the next NOTIFY.
        const next = yield* t.enqueueAndReceive("after-silence")
        assert.isBelow(next.latency, 2_000, `woken by NOTIFY on the new connection (${next.latency} ms)`)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
