/**
 * The Fanout side of the server benchmark: the real server (`Server/Http.layer`, defaults: no API
 * key, 1 MiB body limit, schema validation, idempotent enqueue) on the SQLite store (WAL,
 * `synchronous = FULL`), routing `order.*` to two targets. No worker runs: the benchmark measures
 * acknowledged (durably stored) events per second, not deliveries.
 *
 * With `memory` instead of a file, the in-memory store (nothing durable): what the HTTP layer itself costs.
 *
 * Run by bench/server.ts in its own process: `node --import tsx bench/server/fanout.ts <db file | memory>`.
 */
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import * as Outbox from "../../src/Outbox.js"
import * as Registry from "../../src/Registry.js"
import * as Router from "../../src/Router.js"
import * as Http from "../../src/Server/Http.js"
import * as Store from "../../src/Store.js"
import * as MemoryStore from "../../src/Store/Memory.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Target from "../../src/Target.js"
import { serve } from "./child.js"

const file = process.argv[2]
if (file === undefined) throw new Error("usage: fanout.ts <db file | memory>")

// Never called (no worker): they only make the routes.
const targets = ["inventory", "email"].map((name) =>
  Target.make(name, {
    request: (e) =>
      HttpClientRequest.post(`http://127.0.0.1:9/${name}`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload))
  })
)
const router = Router.make().route("order.*", targets)

const Live = Http.layer({
  port: 0,
  host: "127.0.0.1",
  keepAliveTimeout: "60 seconds",
  headersTimeout: "60 seconds",
  requestTimeout: "65 seconds"
}).pipe(
  Layer.provide(
    Layer.mergeAll(Outbox.layer(router), Registry.layerTargets(targets).pipe(Layer.provide(NodeHttpClient.layerUndici)))
  ),
  Layer.provideMerge(
    file === "memory"
      ? (MemoryStore.layer as Layer.Layer<Store.DeliveryStore, Store.StoreError>)
      : SqliteStore.layer({ filename: file, synchronous: "FULL" })
  )
)

const program = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const context = yield* Layer.buildWithScope(Live, scope)
  const url = yield* Effect.provide(Http.url, context)
  const store = yield* Effect.provide(Store.DeliveryStore, context)
  serve(
    Number(new URL(url).port),
    () =>
      Effect.runPromise(Effect.gen(function*() {
        const s = yield* store.stats
        const d = yield* store.diagnostics
        return { events: (s.pending + s.inFlight + s.delivered + s.dead) / 2, commits: d.writeTransactions }
      })),
    () => Effect.runPromise(Scope.close(scope, Exit.void))
  )
}).pipe(Logger.withMinimumLogLevel(LogLevel.Error))

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exit(1)
})
