/**
 * Example: one "order placed" event goes to two APIs at once.
 *
 * - the inventory API reserves stock (it takes about 150 ms);
 * - the notification API sends the confirmation email (about 100 ms), and is flaky: it
 *   answers 503 on the first try for every second order, so those orders are retried.
 *
 * Both APIs are small `node:http` servers this example starts on 127.0.0.1. Each order is
 * fanned out in `settled` mode (every target tried, one outcome per target), with the default
 * policies except a shorter first retry delay. The fan-out takes about as long as the slower
 * target, not the sum of both.
 *
 * Run: npx tsx examples/two-apis.ts
 */
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpClientRequest } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Schema } from "effect"
import { Event, Fanout, Router, Target, Transport } from "../src/index.js"

// ---------------------------------------------------------------------------------------
// The two APIs (stand-ins for real services)
// ---------------------------------------------------------------------------------------

type Handler = (req: IncomingMessage, body: any, res: ServerResponse) => void

/** A JSON API on 127.0.0.1, closed when the scope ends. */
const serve = (handler: Handler) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly close: () => Promise<void> }>((resume) => {
      const server = createServer((req, res) => {
        let text = ""
        req.on("data", (chunk) => (text += chunk))
        req.on("end", () => handler(req, text === "" ? undefined : JSON.parse(text), res))
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          close: () =>
            new Promise<void>((done) => {
              server.closeAllConnections()
              server.close(() => done())
            })
        })))
    }),
    (api) => Effect.promise(api.close)
  )

const json = (res: ServerResponse, status: number, body: unknown, delayMs: number) =>
  setTimeout(() => {
    res.writeHead(status, { "content-type": "application/json" })
    res.end(JSON.stringify(body))
  }, delayMs)

const reservations: Array<{ reservationId: string; sku: string; quantity: number }> = []
const emails: Array<{ messageId: string; to: string; orderId: string }> = []
/** Every request the notification API saw: order, idempotency key, status answered. */
const notificationLog: Array<{ orderId: string; key: string; status: number }> = []

const inventoryApi = serve((_req, body, res) => {
  const reservation = { reservationId: `r-${reservations.length + 1}`, sku: body.sku, quantity: body.quantity }
  reservations.push(reservation)
  json(res, 201, { reservationId: reservation.reservationId }, 150)
})

const notificationApi = serve((req, body, res) => {
  const key = String(req.headers["idempotency-key"])
  const tries = notificationLog.filter((entry) => entry.key === key).length
  // Flaky: the first try of every second order (o-2, o-4, ...) is refused.
  const flaky = Number(body.orderId.slice(2)) % 2 === 0 && tries === 0
  notificationLog.push({ orderId: body.orderId, key, status: flaky ? 503 : 202 })
  if (flaky) return json(res, 503, { error: "mail relay busy" }, 100)
  const email = { messageId: `m-${emails.length + 1}`, to: body.to, orderId: body.orderId }
  emails.push(email)
  json(res, 202, { messageId: email.messageId }, 100)
})

// ---------------------------------------------------------------------------------------
// The event, the targets and the route
// ---------------------------------------------------------------------------------------

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({ orderId: Schema.String, sku: Schema.String, qty: Schema.Int, email: Schema.String })
)

// Default policies (timeouts, retries, bulkhead, circuit breaker), with a short first retry
// delay so that the flaky notifications are retried quickly.
const policy = { retry: { initialDelay: "20 millis" } } as const

const targets = (inventoryUrl: string, notificationUrl: string) => {
  const Inventory = Target.make("inventory", {
    // Each target states what it needs from the event, and builds its own request.
    accepts: Schema.Struct({ sku: Schema.String, qty: Schema.Int }),
    request: (event) =>
      HttpClientRequest.post(`${inventoryUrl}/reservations`).pipe(
        HttpClientRequest.bodyUnsafeJson({ sku: event.payload.sku, quantity: event.payload.qty })
      ),
    response: Schema.Struct({ reservationId: Schema.String }),
    policy
  })
  const Notification = Target.make("notification", {
    accepts: Schema.Struct({ orderId: Schema.String, email: Schema.String }),
    request: (event) =>
      HttpClientRequest.post(`${notificationUrl}/emails`).pipe(
        HttpClientRequest.bodyUnsafeJson({
          to: event.payload.email,
          template: "order-confirmed",
          orderId: event.payload.orderId
        })
      ),
    response: Schema.Struct({ messageId: Schema.String }),
    policy
  })
  return { Inventory, Notification }
}

// ---------------------------------------------------------------------------------------
// Sending a few orders
// ---------------------------------------------------------------------------------------

const pad = (s: string | number, n: number) => String(s).padEnd(n)

const program = Effect.gen(function*() {
  const inventory = yield* inventoryApi
  const notification = yield* notificationApi
  const { Inventory, Notification } = targets(inventory.url, notification.url)
  const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Notification])

  const sendOrders = Effect.gen(function*() {
    const fanout = yield* Fanout.make(router)
    for (let i = 1; i <= 4; i++) {
      const event = yield* OrderPlaced.make({
        orderId: `o-${i}`,
        sku: "sku-42",
        qty: i,
        email: `buyer${i}@example.com`
      })
      const result = yield* fanout.send(event, { mode: "settled" })

      yield* Console.log(`\norder o-${i} (event ${event.id})`)
      let slowest = 0
      let sum = 0
      for (const outcome of Object.values(result.outcomes)) {
        slowest = Math.max(slowest, outcome.durationMs)
        sum += outcome.durationMs
        const detail = outcome._tag === "Delivered"
          ? `HTTP ${outcome.status} ${JSON.stringify(outcome.response)}`
          : `${outcome.error._tag}: ${outcome.error.message}`
        yield* Console.log(
          `  ${pad(outcome.target, 13)} ${pad(outcome._tag, 10)} attempts ${outcome.attempts}  ${
            pad(`${outcome.durationMs} ms`, 7)
          } ${detail}`
        )
      }
      yield* Console.log(
        `  fan-out took ${result.durationMs} ms; slower target ${slowest} ms; both one after the other would be ${sum} ms`
      )
    }
  }).pipe(
    Effect.scoped,
    Effect.provide(Layer.mergeAll(Inventory.layer, Notification.layer).pipe(Layer.provide(Transport.layer())))
  )
  yield* sendOrders

  yield* Console.log(
    `\ninventory API: ${reservations.length} reservations (${reservations.map((r) => r.reservationId).join(", ")})`
  )
  yield* Console.log(`notification API: ${emails.length} emails sent, ${notificationLog.length} requests received:`)
  for (const entry of notificationLog) {
    yield* Console.log(`  ${entry.orderId}  HTTP ${entry.status}  idempotency-key ${entry.key}`)
  }
  yield* Console.log("(a retried order carries the same idempotency key on every try)")
})

NodeRuntime.runMain(Effect.scoped(program))
