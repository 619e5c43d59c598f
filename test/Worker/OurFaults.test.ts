/**
 * Faults we cause are ours (issue 10, item 3): a request that cannot be built or sent, whatever an
 * answer from the target might say — an invalid header value or name, a body that cannot be
 * encoded, a request builder that throws or dies, an HttpClient that dies on the request — is a
 * `PermanentError` of that delivery: the durable worker (SQLite) dead-letters it at once with the
 * reason, and the target's circuit breaker never hears of it, however many such events come. Over
 * Fanout's own transport and over the platform's clients (`NodeHttpClient.layerUndici`,
 * `FetchHttpClient`).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FetchHttpClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, Schema, Scope } from "effect"
import { Event, Target, Worker } from "../../src/index.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Store from "../../src/Store.js"
import * as Transport from "../../src/Transport.js"
import { reply, startServer } from "../integration/helpers.js"
import { eventually } from "./helpers.js"

const Note = Event.define("note", Schema.Struct({ note: Schema.String, fault: Schema.optional(Schema.String) }))

/** How the target's request goes wrong, by the event's `fault`. */
const build = (url: string) => (event: Event.Event<string, typeof Note.payload.Type>) => {
  const base = HttpClientRequest.post(url).pipe(HttpClientRequest.setHeader("x-note", event.payload.note))
  switch (event.payload.fault) {
    case "header-name":
      return HttpClientRequest.setHeader(base, "x bad name", "1")
    case "throws":
      throw new Error("the builder threw")
    case "dies":
      return Effect.die(new Error("the builder died"))
    case "unencodable":
      // An encode failure in the builder's effect (not a typed PermanentError/ParseError).
      return HttpClientRequest.bodyJson(base, { n: 1n }) as unknown as Effect.Effect<
        HttpClientRequest.HttpClientRequest
      >
    case "client-dies":
      return HttpClientRequest.setHeader(base, "x-explode", "1")
    default:
      return HttpClientRequest.bodyUnsafeJson(base, event.payload)
  }
}

/** A client that dies on a request carrying `x-explode` (a request-building defect inside the HttpClient). */
const exploding = Layer.effect(
  HttpClient.HttpClient,
  Effect.map(HttpClient.HttpClient, (client) =>
    HttpClient.mapRequest(client, (request) => {
      if (request.headers["x-explode"] !== undefined) throw new Error("the client died")
      return request
    }))
)

const clients: ReadonlyArray<readonly [string, Layer.Layer<HttpClient.HttpClient>]> = [
  ["Fanout's transport", Transport.layer()],
  ["NodeHttpClient.layerUndici", NodeHttpClient.layerUndici],
  ["FetchHttpClient", FetchHttpClient.layer]
]

const faults = ["header-value", "header-name", "throws", "dies", "unencodable", "client-dies"] as const

/** What each fault's dead letter says (the clients word header errors their own way). */
const expected: Record<(typeof faults)[number], RegExp> = {
  "header-value": /x-note|header value|invalid/i,
  "header-name": /header (key|name)|invalid/i,
  throws: /the builder threw/,
  dies: /the builder died/,
  unencodable: /could not be built: HttpBodyError: JsonError: .*BigInt/i,
  "client-dies": /could not be sent: the client died/
}

for (const [clientName, client] of clients) {
  describe(`faults we cause are ours (${clientName}, durable worker, SQLite)`, () => {
    it.scopedLive(
      "each bad request is dead-lettered at once with the reason; the breaker stays closed; good events still go",
      () =>
        Effect.gen(function*() {
          const server = yield* startServer((_req, res) => reply(res, 200))
          const target = Target.make("a", {
            request: build(`${server.url}/a`),
            policy: {
              circuitBreaker: { failureThreshold: 3, resetAfter: "1 minute" },
              retry: { maxAttempts: 5, initialDelay: "10 millis" }
            }
          })
          const dir = mkdtempSync(join(tmpdir(), "fanout-ours-"))
          yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
          const context = yield* Layer.build(
            Layer.merge(
              (target.layer as Layer.Layer<never, never, HttpClient.HttpClient>).pipe(
                Layer.provide(Layer.provide(exploding, client))
              ),
              SqliteStore.layer({ filename: join(dir, "fanout.db") })
            )
          ).pipe(Effect.orDie)
          const store = Context.get(context as Context.Context<Store.DeliveryStore>, Store.DeliveryStore)
          const runtime = Context.get(context as Context.Context<any>, target.tag) as Target.Runtime
          const scope = yield* Scope.make()
          yield* Worker.make({
            targets: [target] as ReadonlyArray<Target.Any>,
            workerId: "w",
            pollInterval: "20 millis"
          }).pipe(
            Scope.extend(scope),
            Effect.provide(context as Context.Context<never>)
          ) as Effect.Effect<Worker.Service>
          yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))

          const ids: Array<string> = []
          for (let i = 0; i < 5; i++) {
            for (const fault of faults) {
              const event = yield* Note.make(
                fault === "header-value" ? { note: `line\n${i}` } : { note: "ok", fault },
                { id: `${fault}-${i}` }
              )
              yield* store.enqueue(event, ["a"])
              ids.push(event.id)
            }
          }
          yield* eventually("every bad event dead", Effect.map(store.stats, (s) => s.dead === ids.length), 20_000)
          // In the DLQ with the reason: one attempt each (never retried), permanent, what went wrong.
          const page = yield* store.deadLetters({ limit: 100 })
          assert.strictEqual(page.items.length, ids.length)
          for (const dead of page.items) {
            const fault = faults.find((f) => dead.eventId.startsWith(`${f}-`))!
            const context = `${clientName}: ${dead.eventId}: ${dead.lastErrorMessage}`
            assert.deepStrictEqual(
              [dead.reason, dead.lastError, dead.attempts],
              ["permanent", "invalidrequest", 1],
              context
            )
            assert.match(dead.lastErrorMessage ?? "", expected[fault], context)
            const [delivery] = Option.getOrThrow(yield* store.status(dead.eventId)).deliveries
            assert.deepStrictEqual(delivery!.history.map((a) => [a.outcome, a.errorTag]), [[
              "invalidrequest",
              "PermanentError"
            ]], context)
          }
          // The breaker (threshold 3) never heard of them: closed, no failure counted.
          assert.deepStrictEqual(yield* runtime.breaker.state, { _tag: "Closed", consecutiveFailures: 0 })
          // None reached the target; the next good event goes through at once.
          assert.strictEqual(server.received.length, 0)
          yield* store.enqueue(yield* Note.make({ note: "fine" }, { id: "good" }), ["a"])
          yield* eventually("the good event delivered", Effect.map(store.stats, (s) => s.delivered === 1), 10_000)
          assert.strictEqual(server.received.length, 1)
          assert.strictEqual(server.received[0]!.headers["x-note"], "fine")
        }),
      { timeout: 60_000 }
    )
  })
}
