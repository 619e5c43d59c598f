/**
 * The server as a library (issue 13, item 2): Fanout's handlers (`Http.layerHandlers`) mounted in
 * an application's own `HttpApiBuilder.api(FanoutApi.add(MyGroup))`, served by the application's
 * own `HttpApiBuilder.serve(middleware)` on a real `NodeHttpServer` (127.0.0.1, port 0) — no lean
 * listener in front, so `POST /v1/events` and its batch form are answered by the HttpApi handlers —
 * and called with the typed client (`FanoutClient`): sends, batch, status, dead letters, replay,
 * purge, targets, and refusals as typed failures carrying the server's error body.
 */
import { createServer } from "node:http"
import {
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpClient,
  HttpClientRequest,
  HttpMiddleware,
  HttpServer,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, Schedule, Schema } from "effect"
import { FanoutClient, isRefusal } from "../src/Client.js"
import * as Outbox from "../src/Outbox.js"
import * as Registry from "../src/Registry.js"
import * as Router from "../src/Router.js"
import { Api as FanoutApi } from "../src/Server/Api.js"
import * as Http from "../src/Server/Http.js"
import * as MemoryStore from "../src/Store/Memory.js"
import * as HttpTarget from "../src/Targets/Http.js"
import { Fault, TestTarget } from "../src/testing.js"
import * as Transport from "../src/Transport.js"
import * as Worker from "../src/Worker.js"

class Hello extends HttpApiGroup.make("hello").add(
  HttpApiEndpoint.get("hello", "/hello").addSuccess(Schema.Struct({ hello: Schema.String }))
) {}

const AppApi = FanoutApi.add(Hello)

const HelloLive = HttpApiBuilder.group(
  AppApi,
  "hello",
  (handlers) => handlers.handle("hello", () => Effect.succeed({ hello: "world" }))
)

const stamp = HttpMiddleware.make((app) =>
  Effect.map(app, (response) => HttpServerResponse.setHeader(response, "x-app", "mine"))
)

/** An application serving its own group and Fanout's API; targets `ok` (200) and `refuses` (422). */
const embedded = Effect.gen(function*() {
  const ok = yield* TestTarget.serve(TestTarget.make("ok"))
  const refuses = yield* TestTarget.serve(TestTarget.make("refuses", { faults: (() => Fault.status(422)) }))
  const okTarget = HttpTarget.make("ok", { url: `${ok.url}/in` })
  const refusesTarget = HttpTarget.make("refuses", { url: `${refuses.url}/in`, policy: { retry: { maxAttempts: 1 } } })
  const router = Router.make().route("order.*", [okTarget]).route("invoice.*", [refusesTarget])
  const Core = Layer.mergeAll(Registry.layerTargets([okTarget, refusesTarget]), MemoryStore.layer).pipe(
    Layer.provide(Transport.layer())
  )
  const ApiLive = HttpApiBuilder.api(AppApi).pipe(
    Layer.provide([HelloLive, Http.layerHandlers({ apiKeys: ["k-1"] })]),
    Layer.provide(Outbox.layer(router))
  )
  const app = HttpApiBuilder.serve().pipe(
    Layer.provide([Http.layerErrors, HttpApiBuilder.middleware(stamp)]),
    Layer.provide(ApiLive),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(Worker.layer({ router, pollInterval: "20 millis" })),
    Layer.provideMerge(Core)
  )
  const context = yield* Layer.build(app).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
  const baseUrl = yield* Http.url.pipe(Effect.provide(context))
  return { baseUrl, ok, refuses, server: yield* Effect.provide(HttpServer.HttpServer, context) }
})

const failureOf = <A, E>(effect: Effect.Effect<A, E>) => Effect.flip(effect)

class NotYet {
  readonly _tag = "NotYet"
}

/** Runs `effect` every 20 ms until `done` holds for its value (bounded by 10 s), and returns that value. */
const until = <A, E>(effect: Effect.Effect<A, E>, done: (a: A) => boolean, what: string) =>
  effect.pipe(
    Effect.filterOrFail(done, () => new NotYet()),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), while: (e) => e instanceof NotYet }),
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error(`${what}: not within 10 s`) })
  )

describe("Client (FanoutClient) against Fanout's handlers mounted in an application's own HttpApi", () => {
  it.scopedLive("the application's own route and Fanout's routes answer from one server, under its middleware", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* embedded
      const http = yield* HttpClient.HttpClient
      const hello = yield* http.get(`${baseUrl}/hello`)
      assert.strictEqual(hello.status, 200)
      assert.deepStrictEqual(yield* hello.json, { hello: "world" })
      assert.strictEqual(hello.headers["x-app"], "mine")
      const healthz = yield* http.get(`${baseUrl}/healthz`)
      assert.strictEqual(healthz.status, 200)
      assert.strictEqual(healthz.headers["x-app"], "mine")
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("POST /v1/events through the handler path: 202, delivered, ?wait=settled, status; a repeat is a duplicate", () =>
    Effect.gen(function*() {
      const { baseUrl, ok } = yield* embedded
      const client = yield* FanoutClient.make({ baseUrl, apiKey: "k-1" })
      const accepted = yield* client.events.send({
        payload: { id: "ev-1", type: "order.placed", payload: { orderId: "o-1" } },
        urlParams: {},
        headers: {}
      })
      assert.strictEqual(accepted.id, "ev-1")
      assert.strictEqual(accepted.duplicate, false)
      assert.deepStrictEqual(accepted.deliveries.map((d) => [d.target, d.status]), [["ok", "pending"]])
      // the worker delivers it: wait on the store's recorded state, read through the client
      const delivered = yield* until(
        client.events.status({ path: { id: "ev-1" } }),
        (s) => s.deliveries.every((d) => d.status === "delivered"),
        "ev-1 delivered"
      )
      assert.strictEqual(delivered.deliveries[0]!.history.length, 1)
      assert.strictEqual(ok.target.ledger.length, 1)
      assert.strictEqual(JSON.parse(ok.target.ledger[0]!.body).id, "ev-1")

      const waited = yield* client.events.send({
        payload: { type: "order.placed", payload: { orderId: "o-2" } },
        urlParams: { wait: "settled" },
        headers: { "idempotency-key": "ev-2" }
      })
      assert.strictEqual(waited.id, "ev-2")
      assert.strictEqual(waited.settled, true)
      assert.deepStrictEqual(waited.deliveries.map((d) => d.status), ["delivered"])

      const again = yield* client.events.send({
        payload: { id: "ev-1", type: "order.placed", payload: { orderId: "o-1" } },
        urlParams: {},
        headers: {}
      })
      assert.strictEqual(again.duplicate, true)
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("POST /v1/events:batch through the handler path", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* embedded
      const client = yield* FanoutClient.make({ baseUrl, apiKey: "k-1" })
      const batch = yield* client.events.sendBatch({
        payload: {
          events: [
            { id: "b-1", type: "order.placed", payload: 1 },
            { id: "b-2", type: "order.placed", payload: 2 }
          ]
        }
      })
      assert.deepStrictEqual(batch.results.map((r) => [r.id, r.status]), [["b-1", "accepted"], ["b-2", "accepted"]])
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("refusals are typed failures with the server's error body: 401, 422, 404, 400", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* embedded
      const anonymous = yield* FanoutClient.make({ baseUrl })
      const unauthorized = yield* failureOf(anonymous.targets.list())
      assert.isTrue(isRefusal(unauthorized))
      if (isRefusal(unauthorized)) assert.strictEqual(unauthorized.error.status, 401)

      const client = yield* FanoutClient.make({ baseUrl, apiKey: "k-1" })
      const noRoute = yield* failureOf(client.events.send({
        payload: { type: "unrouted.thing", payload: {} },
        urlParams: {},
        headers: {}
      }))
      assert.isTrue(isRefusal(noRoute))
      if (isRefusal(noRoute)) assert.strictEqual(noRoute.error.status, 422)

      const missing = yield* failureOf(client.events.status({ path: { id: "no-such-event" } }))
      assert.isTrue(isRefusal(missing))
      if (isRefusal(missing)) assert.strictEqual(missing.error.status, 404)

      // A body the schema refuses, sent raw: the handler path answers 400 with the one error shape.
      const http = yield* HttpClient.HttpClient
      const bad = yield* http.execute(
        HttpClientRequest.post(`${baseUrl}/v1/events`).pipe(
          HttpClientRequest.bearerToken("k-1"),
          HttpClientRequest.bodyUnsafeJson({ type: 7 })
        )
      )
      assert.strictEqual(bad.status, 400)
      const body = (yield* bad.json) as { error: { status: number; issues: Array<{ path: string }> } }
      assert.strictEqual(body.error.status, 400)
      assert.include(body.error.issues.map((i) => i.path).join(","), "type")
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("dead letters: list, replay one, replay many, purge; targets", () =>
    Effect.gen(function*() {
      const { baseUrl, refuses } = yield* embedded
      const client = yield* FanoutClient.make({ baseUrl, apiKey: "k-1" })
      yield* client.events.send({
        payload: { id: "inv-1", type: "invoice.created", payload: {} },
        urlParams: {},
        headers: {}
      })
      const page = yield* until(
        client.deadLetters.list({ urlParams: { target: "refuses" } }),
        (p) => p.items.length === 1,
        "a dead letter"
      )
      const dead = page.items[0]!
      assert.strictEqual(dead.eventId, "inv-1")
      assert.strictEqual(dead.lastError, "http_422")
      assert.deepStrictEqual(yield* client.deadLetters.replay({ path: { id: dead.id } }), { replayed: 1 })
      // the replay is attempted (and refused again): a second request reaches the target
      yield* until(
        client.deadLetters.list({ urlParams: {} }),
        (p) => p.items.length === 1 && refuses.target.ledger.length === 2,
        "the replay attempted"
      )
      assert.deepStrictEqual(yield* client.deadLetters.replayMany({ payload: { target: "refuses" } }), { replayed: 1 })
      yield* until(
        client.deadLetters.list({ urlParams: {} }),
        (p) => p.items.length === 1 && refuses.target.ledger.length === 3,
        "the bulk replay attempted"
      )
      const again = yield* client.deadLetters.list({ urlParams: {} })
      yield* client.deadLetters.purge({ path: { id: again.items[0]!.id } })
      assert.deepStrictEqual((yield* client.deadLetters.list({ urlParams: {} })).items, [])

      const targets = yield* client.targets.list()
      assert.deepStrictEqual(targets.targets.map((t) => t.name).sort(), ["ok", "refuses"])
    }).pipe(Effect.provide(Transport.layer())))

  it.scopedLive("FanoutClient.layer: the client as a service", () =>
    Effect.gen(function*() {
      const { baseUrl } = yield* embedded
      const health = yield* Effect.flatMap(FanoutClient, (client) => client.ops.healthz()).pipe(
        Effect.provide(FanoutClient.layer({ baseUrl }))
      )
      assert.deepStrictEqual(health, { status: "ok" })
    }).pipe(Effect.provide(Transport.layer())))
})
