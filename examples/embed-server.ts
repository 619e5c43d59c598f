/**
 * Example: an Effect application that serves its own endpoint (`GET /hello`) and Fanout's HTTP API
 * from one `HttpServer`, under its own middleware, and calls Fanout's API with the typed client.
 *
 * - `FanoutApi.add(Hello)`: the application's group beside Fanout's (`events`, `deadLetters`,
 *   `targets`, `ops`);
 * - `Server.layerHandlers()`: Fanout's handlers, provided to `HttpApiBuilder.api(...)` next to the
 *   application's own; `Server.layerErrors`: Fanout's one error shape;
 * - `HttpApiBuilder.middleware(...)`: the application's own middleware (here it stamps
 *   `x-served-by`) around every route, Fanout's included;
 * - `FanoutClient.make({ baseUrl })`: `events.send` (with `?wait=settled`), `events.status` and
 *   `targets.list`, typed by the same schemas the server answers with.
 *
 * The durable outbox is in memory here and one worker delivers to a `node:http` stand-in of a
 * downstream API on 127.0.0.1.
 *
 * Run: npx tsx examples/embed-server.ts
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import {
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpClient,
  HttpMiddleware,
  HttpServer,
  HttpServerResponse
} from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Schema } from "effect"
import { FanoutClient, HttpTarget, MemoryStore, Outbox, Registry, Router, Transport, Worker } from "../src/index.js"
import { FanoutApi, Server } from "../src/server.js"

// ---------------------------------------------------------------------------------------
// The downstream API Fanout delivers to (a stand-in)
// ---------------------------------------------------------------------------------------

const received: Array<unknown> = []
const downstream = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
    const server = createServer((req, res) => {
      let text = ""
      req.on("data", (chunk) => (text += chunk))
      req.on("end", () => {
        received.push(JSON.parse(text))
        res.writeHead(200, { "content-type": "application/json" }).end("{\"ok\":true}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`,
        close: () => {
          server.closeAllConnections()
          server.close()
        }
      })))
  }),
  (api) => Effect.sync(api.close)
)

// ---------------------------------------------------------------------------------------
// The application's own API, beside Fanout's
// ---------------------------------------------------------------------------------------

class Hello extends HttpApiGroup.make("hello").add(
  HttpApiEndpoint.get("hello", "/hello").addSuccess(Schema.Struct({ hello: Schema.String }))
) {}

const AppApi = FanoutApi.add(Hello)

const HelloLive = HttpApiBuilder.group(
  AppApi,
  "hello",
  (handlers) => handlers.handle("hello", () => Effect.succeed({ hello: "world" }))
)

/** The application's own middleware, around every route (Fanout's included). */
const servedBy = HttpMiddleware.make((app) =>
  Effect.map(app, (response) => HttpServerResponse.setHeader(response, "x-served-by", "embed-example"))
)

// ---------------------------------------------------------------------------------------
// One HttpServer for both
// ---------------------------------------------------------------------------------------

const app = (targetUrl: string) => {
  const orders = HttpTarget.make("orders", { url: targetUrl })
  const router = Router.make().route("order.*", [orders])
  const Core = Layer.mergeAll(Registry.layerTargets([orders]), MemoryStore.layer).pipe(
    Layer.provide(Transport.layer())
  )
  const ApiLive = HttpApiBuilder.api(AppApi).pipe(
    Layer.provide([HelloLive, Server.layerHandlers()]),
    Layer.provide(Outbox.layer(router))
  )
  return HttpApiBuilder.serve().pipe(
    Layer.provide([Server.layerErrors, HttpApiBuilder.middleware(servedBy)]),
    Layer.provide(ApiLive),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Layer.provide(Worker.layer({ router, pollInterval: "50 millis" })),
    Layer.provideMerge(Core)
  )
}

const program = Effect.gen(function*() {
  const api = yield* downstream
  const context = yield* Layer.build(app(api.url))
  const address = Effect.runSync(Effect.provide(HttpServer.HttpServer, context)).address
  if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
  const baseUrl = `http://127.0.0.1:${address.port}`

  // The application's own route, with its middleware.
  const http = yield* HttpClient.HttpClient
  const hello = yield* http.get(`${baseUrl}/hello`)
  const helloBody = yield* hello.json
  yield* Console.log(
    `GET /hello -> ${hello.status} ${JSON.stringify(helloBody)} (x-served-by: ${hello.headers["x-served-by"]})`
  )

  // Fanout's API on the same server, through the typed client.
  const client = yield* FanoutClient.make({ baseUrl })
  const accepted = yield* client.events.send({
    payload: { id: "order-1", type: "order.placed", payload: { orderId: "o-1" } },
    urlParams: { wait: "settled" },
    headers: {}
  })
  yield* Console.log(
    `POST /v1/events?wait=settled -> ${accepted.id}: ${
      accepted.deliveries.map((d) => `${d.target} ${d.status}`).join(", ")
    }`
  )
  const status = yield* client.events.status({ path: { id: "order-1" } })
  const attempts = status.deliveries.map((d) => `${d.target}: ${d.history.length} attempt(s)`).join(", ")
  yield* Console.log(`GET /v1/events/order-1 -> ${attempts}`)
  const targets = yield* client.targets.list()
  yield* Console.log(
    `GET /v1/targets -> ${targets.targets.map((t) => `${t.name} (circuit ${t.circuit.state})`).join(", ")}`
  )
  yield* Console.log(
    `the downstream API received ${received.length} event(s): ${
      JSON.stringify(received.map((e) => (e as { id: string }).id))
    }`
  )
  if (accepted.deliveries.some((d) => d.status !== "delivered") || received.length !== 1) {
    return yield* Effect.dieMessage("the order was not delivered")
  }
  yield* Console.log("one HttpServer served /hello and Fanout's API; the typed client sent, read and listed")
}).pipe(Effect.scoped, Effect.provide(Transport.layer()))

NodeRuntime.runMain(program)
