/**
 * Example: a saga. An order must be charged, reserved and shipped, or not happen at all.
 *
 * - payment API: `POST /charges` charges the card (≈50 ms); `DELETE /charges/:id` refunds it;
 * - inventory API: `POST /reservations` reserves stock (≈100 ms); `DELETE /reservations/:id` releases it;
 * - shipping API: `POST /shipments` refuses this order with 422 (≈150 ms): a permanent error.
 *
 * The order is sent in mode `all`: every target must succeed. Shipping fails (422 is not
 * retried), so the send fails with `FanoutFailed`, and the targets that had succeeded are
 * compensated in reverse order of success: the reservation is released, then the charge is
 * refunded. The example prints the timeline as the APIs saw it and their final state.
 *
 * Run: npx tsx examples/saga.ts
 */
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { performance } from "node:perf_hooks"
import { HttpClientRequest } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Schema } from "effect"
import { Event, Fanout, Router, Target, Transport } from "../src/index.js"

// ---------------------------------------------------------------------------------------
// The three APIs (stand-ins for real services), logging to one timeline
// ---------------------------------------------------------------------------------------

const t0 = performance.now()
const timeline: Array<string> = []
const log = (api: string, what: string) =>
  timeline.push(`  ${String(Math.round(performance.now() - t0)).padStart(5)} ms  ${api.padEnd(9)} ${what}`)

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

const json = (res: ServerResponse, status: number, body: unknown, delayMs = 0) =>
  setTimeout(() => {
    res.writeHead(status, { "content-type": "application/json" })
    res.end(JSON.stringify(body))
  }, delayMs)

const charges = new Map<string, { orderId: string; amount: number; refunded: boolean }>()
const reservations = new Map<string, { orderId: string; sku: string; quantity: number; released: boolean }>()

const paymentApi = serve((req, body, res) => {
  if (req.method === "POST") {
    const chargeId = `ch-${charges.size + 1}`
    setTimeout(() => {
      charges.set(chargeId, { orderId: body.orderId, amount: body.amount, refunded: false })
      log("payment", `charged ${chargeId}: ${body.amount} for ${body.orderId}`)
      json(res, 201, { chargeId })
    }, 50)
    return
  }
  const chargeId = req.url!.split("/").at(-1)!
  const charge = charges.get(chargeId)
  if (charge === undefined) return json(res, 404, { error: "no such charge" })
  charge.refunded = true
  log("payment", `refunded ${chargeId} (compensation, key ${req.headers["idempotency-key"]})`)
  json(res, 200, { chargeId, refunded: true })
})

const inventoryApi = serve((req, body, res) => {
  if (req.method === "POST") {
    const reservationId = `r-${reservations.size + 1}`
    setTimeout(() => {
      reservations.set(reservationId, {
        orderId: body.orderId,
        sku: body.sku,
        quantity: body.quantity,
        released: false
      })
      log("inventory", `reserved ${reservationId}: ${body.quantity} × ${body.sku}`)
      json(res, 201, { reservationId })
    }, 100)
    return
  }
  const reservationId = req.url!.split("/").at(-1)!
  const reservation = reservations.get(reservationId)
  if (reservation === undefined) return json(res, 404, { error: "no such reservation" })
  reservation.released = true
  log("inventory", `released ${reservationId} (compensation)`)
  json(res, 200, { reservationId, released: true })
})

const shippingApi = serve((_req, body, res) =>
  setTimeout(() => {
    log("shipping", `refused shipment of ${body.orderId} to ${body.city}: 422`)
    json(res, 422, { error: `no carrier delivers to ${body.city}` })
  }, 150)
)

// ---------------------------------------------------------------------------------------
// The event and the targets, each with its compensation
// ---------------------------------------------------------------------------------------

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({
    orderId: Schema.String,
    amount: Schema.Number,
    sku: Schema.String,
    qty: Schema.Int,
    city: Schema.String
  })
)

const targets = (paymentUrl: string, inventoryUrl: string, shippingUrl: string) => {
  const Payment = Target.make("payment", {
    accepts: Schema.Struct({ orderId: Schema.String, amount: Schema.Number }),
    request: (event) =>
      HttpClientRequest.post(`${paymentUrl}/charges`).pipe(
        HttpClientRequest.bodyUnsafeJson({ orderId: event.payload.orderId, amount: event.payload.amount })
      ),
    response: Schema.Struct({ chargeId: Schema.String }),
    // The undo of a charge: a refund, given the charge the API answered with.
    compensate: ({ response }) => HttpClientRequest.del(`${paymentUrl}/charges/${response.chargeId}`),
    policy: { retry: { initialDelay: "20 millis" } }
  })
  const Inventory = Target.make("inventory", {
    accepts: Schema.Struct({ orderId: Schema.String, sku: Schema.String, qty: Schema.Int }),
    request: (event) =>
      HttpClientRequest.post(`${inventoryUrl}/reservations`).pipe(
        HttpClientRequest.bodyUnsafeJson({
          orderId: event.payload.orderId,
          sku: event.payload.sku,
          quantity: event.payload.qty
        })
      ),
    response: Schema.Struct({ reservationId: Schema.String }),
    compensate: ({ response }) => HttpClientRequest.del(`${inventoryUrl}/reservations/${response.reservationId}`),
    policy: { retry: { initialDelay: "20 millis" } }
  })
  const Shipping = Target.make("shipping", {
    accepts: Schema.Struct({ orderId: Schema.String, city: Schema.String }),
    request: (event) =>
      HttpClientRequest.post(`${shippingUrl}/shipments`).pipe(
        HttpClientRequest.bodyUnsafeJson({ orderId: event.payload.orderId, city: event.payload.city })
      ),
    policy: { retry: { initialDelay: "20 millis" } }
  })
  return { Payment, Inventory, Shipping }
}

// ---------------------------------------------------------------------------------------
// Sending the order, all or nothing
// ---------------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const payment = yield* paymentApi
  const inventory = yield* inventoryApi
  const shipping = yield* shippingApi
  const { Inventory, Payment, Shipping } = targets(payment.url, inventory.url, shipping.url)
  const router = Router.make(OrderPlaced).route(OrderPlaced, [Payment, Inventory, Shipping])

  const placeOrder = Effect.gen(function*() {
    const fanout = yield* Fanout.make(router)
    const event = yield* OrderPlaced.make({ orderId: "o-7", amount: 42.5, sku: "sku-42", qty: 2, city: "Atlantis" })
    log("client", `send ${event.type} ${event.payload.orderId} (mode "all")`)
    return yield* fanout.send(event, { mode: "all" }).pipe(
      Effect.map((delivered) => `all delivered in ${delivered.durationMs} ms`),
      Effect.catchTag("FanoutFailed", (failed) =>
        Effect.gen(function*() {
          log("client", `FanoutFailed: ${failed.message}`)
          yield* Console.log(
            `send failed with FanoutFailed: ${failed.target} → ${failed.error._tag}: ${failed.error.message}`
          )
          yield* Console.log("outcome per target:")
          for (const outcome of Object.values(failed.outcomes)) {
            const detail = outcome._tag === "Compensated"
              ? `delivered (attempts ${outcome.delivered.attempts}, ${
                JSON.stringify(outcome.delivered.response)
              }), then undone: ${outcome.compensation._tag} HTTP ${
                outcome.compensation._tag === "Delivered" ? outcome.compensation.status : "-"
              }`
              : outcome._tag === "Failed"
              ? `attempts ${outcome.attempts}: ${outcome.error._tag} ${outcome.error.message}`
              : outcome._tag
            yield* Console.log(`  ${outcome.target.padEnd(10)} ${outcome._tag.padEnd(12)} ${detail}`)
          }
          return "the order was rolled back"
        }))
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.mergeAll(Payment.layer, Inventory.layer, Shipping.layer).pipe(Layer.provide(Transport.layer()))
    )
  )
  const verdict = yield* placeOrder

  yield* Console.log(`\ntimeline (as the APIs saw it):\n${timeline.join("\n")}`)
  const openCharges = [...charges.values()].filter((c) => !c.refunded)
  const heldReservations = [...reservations.values()].filter((r) => !r.released)
  yield* Console.log(`\nfinal state: ${verdict}`)
  yield* Console.log(`  payment:   ${charges.size} charge(s), ${openCharges.length} not refunded`)
  yield* Console.log(`  inventory: ${reservations.size} reservation(s), ${heldReservations.length} still held`)
  if (openCharges.length > 0 || heldReservations.length > 0) {
    return yield* Effect.dieMessage("the saga left a charge or a reservation behind")
  }
})

NodeRuntime.runMain(Effect.scoped(program))
