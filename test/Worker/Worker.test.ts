/**
 * The worker over the in-memory store and real loopback HTTP targets: delivery with the attempt
 * history, retries decided by `Retry.decide`, dead letters, lease extension of long attempts,
 * graceful shutdown, wake-ups, isolation of a hung target, and store failures retried (a finish
 * that fails after the HTTP attempt is retried, not dropped).
 *
 * Real time on 127.0.0.1: margins are generous (a loaded 2-core CI machine), never tight.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import * as Memory from "../../src/Store/Memory.js"
import * as Store from "../../src/Store.js"
import { Event, Target } from "../../src/index.js"
import { reply, startServer } from "../integration/helpers.js"
import { eventually, makeEnv } from "./helpers.js"

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))

const post = (url: string) => (event: Event.Event<string, unknown>) =>
  HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))

const enqueueN = (store: Store.DeliveryStore, n: number, targets: ReadonlyArray<string>) =>
  Effect.forEach(
    Array.from({ length: n }, (_, i) => i),
    (i) => Effect.flatMap(Ping.make({ n: i }), (event) => Effect.as(store.enqueue(event, targets), event.id))
  )

const statusOf = (store: Store.DeliveryStore, id: string) => Effect.map(store.status(id), Option.getOrThrow)

describe("Worker (memory store, loopback HTTP)", () => {
  it.scopedLive("delivers every (event, target) once, with the idempotency key and the attempt history", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => reply(res, 200))
      const A = Target.make("a", { request: post(`${server.url}/a`) })
      const B = Target.make("b", { request: post(`${server.url}/b`) })
      const env = yield* makeEnv([A, B])
      const { worker } = yield* env.start({ workerId: "w1", pollInterval: "50 millis" })
      const ids = yield* enqueueN(env.store, 40, ["a", "b"])
      yield* eventually("all delivered", Effect.map(env.store.stats, (s) => s.delivered === 80))
      const keys = server.received.map((r) => r.key)
      for (const id of ids) {
        assert.strictEqual(keys.filter((k) => k === `${id}:a`).length, 1)
        assert.strictEqual(keys.filter((k) => k === `${id}:b`).length, 1)
      }
      const status = yield* statusOf(env.store, ids[0]!)
      for (const d of status.deliveries) {
        assert.strictEqual(d.status, "delivered")
        assert.strictEqual(d.history.length, 1)
        assert.strictEqual(d.history[0]!.outcome, "success")
        assert.strictEqual(d.history[0]!.status, 200)
        assert.strictEqual(d.history[0]!.workerId, "w1")
      }
      const state = yield* worker.state
      assert.strictEqual(state.delivered, 80)
      assert.strictEqual(state.claimed, 0)
      assert.strictEqual(state.lostLeases, 0)
    }))

  it.scopedLive("transient failures are retried on the policy's backoff; a permanent one is dead-lettered at once", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res, r) => {
        if (r.path === "/flaky") return reply(res, r.nth <= 2 ? 503 : 200)
        reply(res, 400, { error: "bad" })
      })
      const Flaky = Target.make("flaky", {
        request: post(`${server.url}/flaky`),
        policy: { retry: { initialDelay: "200 millis", jitter: "none" }, circuitBreaker: false }
      })
      const Broken = Target.make("broken", { request: post(`${server.url}/broken`) })
      const env = yield* makeEnv([Flaky, Broken])
      yield* env.start({ pollInterval: "1 hour" })
      const [id] = yield* enqueueN(env.store, 1, ["flaky", "broken"])
      yield* eventually("flaky delivered", Effect.map(env.store.stats, (s) => s.delivered === 1 && s.dead === 1))
      const status = yield* statusOf(env.store, id!)
      const flaky = status.deliveries.find((d) => d.target === "flaky")!
      assert.deepStrictEqual(flaky.history.map((h) => h.outcome), ["http_503", "http_503", "success"])
      // jitter "none": at least 200 ms, then 400 ms between the recorded attempt starts; the retries
      // were woken by the worker's own retry timer (the poll interval is an hour).
      const [h1, h2, h3] = flaky.history
      assert.isAtLeast(h2!.startedAt - h1!.startedAt, 200)
      assert.isAtLeast(h3!.startedAt - h2!.startedAt, 400)
      const broken = status.deliveries.find((d) => d.target === "broken")!
      assert.strictEqual(broken.status, "dead")
      assert.strictEqual(broken.deadReason, "permanent")
      assert.strictEqual(broken.history.length, 1)
      assert.strictEqual(broken.history[0]!.outcome, "http_400")
      const page = yield* env.store.deadLetters({ limit: 10 })
      assert.strictEqual(page.items.length, 1)
      assert.strictEqual(page.items[0]!.idempotencyKey, `${id}:broken`)
    }))

  it.scopedLive("gives up after maxAttempts with reason max_attempts", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => reply(res, 503))
      const T = Target.make("t", {
        request: post(`${server.url}/t`),
        policy: { retry: { maxAttempts: 3, initialDelay: "10 millis" }, circuitBreaker: false }
      })
      const env = yield* makeEnv([T])
      yield* env.start({})
      const [id] = yield* enqueueN(env.store, 1, ["t"])
      yield* eventually("dead", Effect.map(env.store.stats, (s) => s.dead === 1))
      const d = (yield* statusOf(env.store, id!)).deliveries[0]!
      assert.strictEqual(d.deadReason, "max_attempts")
      assert.strictEqual(d.history.length, 3)
      assert.strictEqual(server.received.length, 3)
    }))

  it.scopedLive("a long attempt keeps its lease: a second worker never takes it over", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => setTimeout(() => reply(res, 200), 1_500))
      // The answer takes 1.5 s, well past the 600 ms lease: only extension keeps the second worker off.
      const Slow = Target.make("slow", { request: post(`${server.url}/slow`), policy: { timeout: "3 seconds" } })
      const env = yield* makeEnv([Slow])
      const one = yield* env.start({ workerId: "one", leaseMs: 600, pollInterval: "20 millis" })
      const [id] = yield* enqueueN(env.store, 1, ["slow"])
      yield* eventually("claimed by one", Effect.map(one.worker.state, (s) => s.inFlight === 1))
      const two = yield* env.start({ workerId: "two", leaseMs: 600, pollInterval: "20 millis" })
      yield* eventually("delivered", Effect.map(env.store.stats, (s) => s.delivered === 1))
      assert.strictEqual(server.received.length, 1)
      const d = (yield* statusOf(env.store, id!)).deliveries[0]!
      assert.strictEqual(d.history.length, 1)
      assert.strictEqual(d.history[0]!.workerId, "one")
      assert.strictEqual((yield* two.worker.state).claimedTotal, 0)
      assert.isAtLeast((yield* one.worker.state).extended, 2)
    }))

  it.scopedLive("graceful stop: a fast attempt finishes within the grace, a hung one is interrupted and its lease released", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res, r) => {
        if (r.path === "/quick") setTimeout(() => reply(res, 200), 300)
        // /hang never answers
      })
      const Quick = Target.make("quick", { request: post(`${server.url}/quick`) })
      const Hang = Target.make("hang", { request: post(`${server.url}/hang`), policy: { timeout: "20 seconds" } })
      const env = yield* makeEnv([Quick, Hang])
      const { stop, worker } = yield* env.start({ shutdownGrace: "1 second", pollInterval: "20 millis" })
      const [id] = yield* enqueueN(env.store, 1, ["quick", "hang"])
      yield* eventually("both in flight", Effect.map(worker.state, (s) => s.inFlight === 2))
      const started = Date.now()
      yield* stop
      assert.isAtLeast(
        Date.now() - started,
        900,
        "waited for the 1 s grace period (less 100 ms of timer and clock rounding)"
      )
      const status = yield* statusOf(env.store, id!)
      const quick = status.deliveries.find((d) => d.target === "quick")!
      const hang = status.deliveries.find((d) => d.target === "hang")!
      assert.strictEqual(quick.status, "delivered")
      // Released: pending and due now, no attempt counted, no lease left behind.
      assert.strictEqual(hang.status, "pending")
      assert.strictEqual(hang.history.length, 0)
      assert.strictEqual(hang.leaseExpiresAt, undefined)
      const state = yield* worker.state
      assert.strictEqual(state.running, false)
      assert.strictEqual(state.released, 1)
      // Nothing is claimed after the stop: the stopped worker's fibers are gone (stop joined them),
      // so a new delivery stays pending and the worker's counts do not move.
      const [later] = yield* enqueueN(env.store, 1, ["quick"])
      assert.strictEqual((yield* statusOf(env.store, later!)).deliveries[0]!.status, "pending")
      assert.strictEqual((yield* worker.state).claimedTotal, state.claimedTotal)
      assert.strictEqual(server.on("/quick").length, 1)
    }))

  it.scopedLive("an idle worker wakes on new work without waiting for its poll interval", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => reply(res, 200))
      const T = Target.make("t", { request: post(`${server.url}/t`) })
      const env = yield* makeEnv([T])
      const { worker } = yield* env.start({ pollInterval: "1 hour" })
      yield* eventually("idle", Effect.map(worker.state, (s) => s.targets.t!.idle))
      const before = yield* worker.state
      yield* enqueueN(env.store, 1, ["t"])
      // Delivered at all means woken by the enqueue: the next poll is an hour away.
      yield* eventually("delivered", Effect.map(env.store.stats, (s) => s.delivered === 1), 30_000)
      assert.strictEqual((yield* worker.state).claimedTotal, before.claimedTotal + 1)
    }))

  it.scopedLive("a hung target holds only its share: the other target's deliveries flow", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res, r) => {
        if (r.path === "/ok") reply(res, 200)
      })
      const Hung = Target.make("hung", {
        request: post(`${server.url}/hung`),
        policy: { timeout: "30 seconds", circuitBreaker: false }
      })
      const Ok = Target.make("ok", { request: post(`${server.url}/ok`) })
      const env = yield* makeEnv([Hung, Ok])
      const { worker } = yield* env.start({ concurrency: 20, batchSize: 10, pollInterval: "20 millis" })
      yield* enqueueN(env.store, 200, ["hung", "ok"])
      yield* eventually("ok all delivered", Effect.map(env.store.stats, (s) => s.targets.ok?.delivered === 200), 15_000)
      const state = yield* worker.state
      assert.strictEqual(state.targets.hung!.claimed, 10, "the hung target holds exactly its share (20 / 2)")
      assert.strictEqual(state.targets.hung!.limit, 10)
      assert.strictEqual(server.on("/hung").length, 10)
    }))

  it.scopedLive("`only`: a worker serves just the targets named; unknown names are refused", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => reply(res, 200))
      const A = Target.make("a", { request: post(`${server.url}/a`) })
      const B = Target.make("b", { request: post(`${server.url}/b`) })
      const env = yield* makeEnv([A, B])
      const { worker } = yield* env.start({ only: ["b"], pollInterval: "20 millis" })
      yield* enqueueN(env.store, 10, ["a", "b"])
      yield* eventually("b delivered", Effect.map(env.store.stats, (s) => s.targets.b?.delivered === 10))
      // A fence: one more event, for a and b, enqueued after a's ten; once its b delivery is done the
      // worker has claimed again with a's deliveries due, and left them.
      yield* enqueueN(env.store, 1, ["a", "b"])
      yield* eventually("the fence delivered to b", Effect.map(env.store.stats, (s) => s.targets.b?.delivered === 11))
      const stats = yield* env.store.stats
      assert.strictEqual(stats.targets.a?.pending, 11, "a's deliveries wait for a worker that serves a")
      assert.strictEqual(server.on("/a").length, 0)
      assert.deepStrictEqual(Object.keys((yield* worker.state).targets), ["b"])
      for (const only of [["c"], []]) {
        const exit = yield* Effect.exit(env.start({ only }))
        assert.isTrue(exit._tag === "Failure", `only: ${JSON.stringify(only)}`)
      }
    }))

  it.scopedLive("store failures are logged and retried: a finish that fails after the HTTP attempt is not dropped", () =>
    Effect.gen(function*() {
      const server = yield* startServer((_req, res) => reply(res, 200))
      const T = Target.make("t", { request: post(`${server.url}/t`) })
      const memory = yield* Memory.make
      let claimFailures = 0
      let finishFailures = 0
      const unavailable = (operation: string) =>
        new Store.StoreError({ operation, reason: "Unavailable", message: `${operation}: connection terminated` })
      const flaky: Store.DeliveryStore = {
        ...memory,
        claim: (options) => claimFailures++ < 3 ? Effect.fail(unavailable("claim")) : memory.claim(options),
        finish: (claim, attempt, next) =>
          // every delivery's first two finishes fail (after its HTTP attempt succeeded)
          finishFailures++ % 3 < 2 ? Effect.fail(unavailable("finish")) : memory.finish(claim, attempt, next)
      }
      const env = yield* makeEnv([T], Layer.succeed(Store.DeliveryStore, flaky))
      const { worker } = yield* env.start({ pollInterval: "20 millis", concurrency: 1, batchSize: 1 })
      const ids = yield* enqueueN(memory, 5, ["t"])
      yield* eventually("delivered", Effect.map(memory.stats, (s) => s.delivered === 5), 20_000)
      // One request per delivery: the failed finishes were retried, not turned into redeliveries.
      assert.strictEqual(server.received.length, 5)
      for (const id of ids) {
        const d = (yield* statusOf(memory, id)).deliveries[0]!
        assert.strictEqual(d.history.length, 1)
      }
      const state = yield* worker.state
      assert.isAtLeast(state.storeErrors, 3 + 10)
      assert.strictEqual(state.lastError?.operation, "finish")
    }))

  it.scopedLive("every retry this worker schedules wakes it on time, not at the next poll", () =>
    Effect.gen(function*() {
      // Each key fails once (503), then succeeds; retries fall due at different times (full jitter).
      const seen = new Set<string>()
      const server = yield* startServer((_req, res, r) => {
        const first = !seen.has(r.key!)
        seen.add(r.key!)
        reply(res, first ? 503 : 200)
      })
      const T = Target.make("t", {
        request: post(`${server.url}/t`),
        policy: { retry: { initialDelay: "400 millis", jitter: "full" }, circuitBreaker: false }
      })
      const env = yield* makeEnv([T])
      const { worker } = yield* env.start({ pollInterval: "1 hour" })
      yield* enqueueN(env.store, 20, ["t"])
      yield* eventually("all delivered without a poll", Effect.map(env.store.stats, (s) => s.delivered === 20), 5_000)
      const state = yield* worker.state
      assert.strictEqual(state.retried, 20)
      assert.strictEqual(server.received.length, 40)
    }))
})
