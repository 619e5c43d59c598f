/**
 * Example: a pipeline. An order is placed; the caller wants one answer: is it shipped, and how?
 *
 * - customer API (≈40 ms): the order carries only a customer id; the customer's record (name,
 *   country) is fetched first and added to the order (enrichment);
 * - inventory API (≈120 ms) reserves the goods and payment API (≈200 ms) charges the card,
 *   concurrently, both with the enriched order;
 * - shipping API (≈80 ms) runs after both, with the reservation id from inventory and the charge
 *   id from payment (typed: the input mapper reads their decoded answers);
 * - the caller gets one combined answer (aggregate).
 *
 * Shipping starts the moment payment (the slower input) answers: the run takes the critical
 * path customer → payment → shipping ≈ 320 ms, not the sum of everything (440 ms). The example
 * prints the timeline as bars, the critical path marked with `*`.
 *
 * A second order is placed in mode `all` with a card the payment API declines (402): shipping
 * is blocked by payment and never called, and the reservation already made is released
 * (saga compensation).
 *
 * Third, the same pipeline runs durably: order o-3 is enqueued into an outbox (SQLite, a temporary
 * file) with its graph, and a worker delivers it step by step; shipping becomes due only once
 * inventory and payment are delivered, and gets their stored answers.
 *
 * Run: npx tsx examples/pipeline.ts
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpClientRequest } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, Option, Schema } from "effect"
import { Event, Outbox, Pipeline, Router, SqliteStore, Target, Transport, Worker } from "../src/index.js"

// ---------------------------------------------------------------------------------------
// Four mock APIs on 127.0.0.1, each with a set latency
// ---------------------------------------------------------------------------------------

type Handler = (req: IncomingMessage, body: any) => { readonly status: number; readonly body: unknown }

const serve = (latencyMs: number, handler: Handler) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly close: () => Promise<void> }>((resume) => {
      const server = createServer((req: IncomingMessage, res: ServerResponse) => {
        let text = ""
        req.on("data", (chunk) => (text += chunk))
        req.on("end", () =>
          setTimeout(() => {
            const answer = handler(req, text === "" ? undefined : JSON.parse(text))
            res.writeHead(answer.status, { "content-type": "application/json" })
            res.end(JSON.stringify(answer.body))
          }, latencyMs))
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

const reservations = new Map<string, { readonly sku: string; released: boolean }>()

const customerApi = serve(40, (req) => {
  const id = req.url!.split("/").at(-1)!
  return { status: 200, body: { id, name: id === "cu-1" ? "Ada Lovelace" : "Alan Turing", country: "GB" } }
})
const inventoryApi = serve(120, (req, body) => {
  if (req.method === "DELETE") {
    const reservation = reservations.get(req.url!.split("/").at(-1)!)
    if (reservation !== undefined) reservation.released = true
    return { status: 200, body: { released: true } }
  }
  const reservationId = `r-${reservations.size + 1}`
  reservations.set(reservationId, { sku: body.sku, released: false })
  return { status: 201, body: { reservationId, warehouse: body.country === "GB" ? "Leeds" : "Lyon" } }
})
const paymentApi = serve(200, (_req, body) =>
  body.card === "4000-0000-0000-0002"
    ? { status: 402, body: { error: "card declined" } }
    : { status: 201, body: { chargeId: `ch-${body.orderId}` } })
const shippingApi = serve(80, (_req, body) => ({
  status: 201,
  body: { trackingId: `TRK-${body.reservationId}-${body.chargeId}`, eta: "2 days" }
}))

// ---------------------------------------------------------------------------------------
// The event, the targets and the pipeline
// ---------------------------------------------------------------------------------------

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({ orderId: Schema.String, customerId: Schema.String, sku: Schema.String, card: Schema.String })
)

const targets = (urls: { customer: string; inventory: string; payment: string; shipping: string }) => {
  const json = (url: string, body: unknown) => HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUnsafeJson(body))
  const Customer = Target.make("customer", {
    accepts: Schema.Struct({ customerId: Schema.String }),
    request: (e) => HttpClientRequest.get(`${urls.customer}/customers/${e.payload.customerId}`),
    response: Schema.Struct({ name: Schema.String, country: Schema.String })
  })
  const Inventory = Target.make("inventory", {
    accepts: Schema.Struct({ orderId: Schema.String, sku: Schema.String, country: Schema.String }),
    request: (e) => json(`${urls.inventory}/reservations`, e.payload),
    response: Schema.Struct({ reservationId: Schema.String, warehouse: Schema.String }),
    compensate: ({ response }) => HttpClientRequest.del(`${urls.inventory}/reservations/${response.reservationId}`)
  })
  const Payment = Target.make("payment", {
    accepts: Schema.Struct({ orderId: Schema.String, card: Schema.String }),
    request: (e) => json(`${urls.payment}/charges`, { orderId: e.payload.orderId, card: e.payload.card }),
    response: Schema.Struct({ chargeId: Schema.String })
  })
  const Shipping = Target.make("shipping", {
    accepts: Schema.Struct({
      orderId: Schema.String,
      name: Schema.String,
      reservationId: Schema.String,
      chargeId: Schema.String
    }),
    request: (e) => json(`${urls.shipping}/shipments`, e.payload),
    response: Schema.Struct({ trackingId: Schema.String, eta: Schema.String })
  })
  return { Customer, Inventory, Payment, Shipping }
}

const pipelineOf = ({ Customer, Inventory, Payment, Shipping }: ReturnType<typeof targets>) =>
  Pipeline.make(OrderPlaced)
    // The customer's record joins the order: every later step sees `name` and `country`.
    .enrich(Customer, (event, customer) => ({ ...event.payload, name: customer.name, country: customer.country }))
    .step(Inventory)
    .step(Payment)
    .step(Shipping, {
      after: [Inventory, Payment],
      input: ({ event, inputs }) => ({
        orderId: event.payload.orderId,
        name: event.payload.name,
        reservationId: inputs.inventory.reservationId,
        chargeId: inputs.payment.chargeId
      })
    })
    .aggregate(({ event, responses }) => ({
      orderId: event.payload.orderId,
      customer: event.payload.name,
      warehouse: responses.inventory.warehouse,
      chargeId: responses.payment.chargeId,
      trackingId: responses.shipping.trackingId,
      eta: responses.shipping.eta
    }))

// ---------------------------------------------------------------------------------------
// The timeline, as bars, with the critical path
// ---------------------------------------------------------------------------------------

/** Walks back from the call that ended last, through the input that ended when it started. */
const criticalPath = (graph: Pipeline.Graph, timeline: ReadonlyArray<Pipeline.Timing>): Set<string> => {
  const calls = timeline.filter((t) => t.phase !== "compensate")
  const path = new Set<string>()
  let current = calls.reduce((a, b) => (b.endedAt > a.endedAt ? b : a))
  for (;;) {
    path.add(current.step)
    const step = graph.steps.find((s) => s.name === current.step)
    const candidates = step !== undefined && step.after.length > 0
      ? calls.filter((t) => step.after.includes(t.step))
      : calls.filter((t) => t.phase === "enrich" && t.endedAt <= current.startedAt)
    if (candidates.length === 0) return path
    current = candidates.reduce((a, b) => (b.endedAt > a.endedAt ? b : a))
  }
}

const render = (graph: Pipeline.Graph, timeline: ReadonlyArray<Pipeline.Timing>) => {
  const msPerChar = 10
  const startedAt = Math.min(...timeline.map((t) => t.startedAt))
  const total = Math.max(...timeline.map((t) => t.endedAt)) - startedAt
  const critical = criticalPath(graph, timeline)
  return timeline.map((t) => {
    const from = t.startedAt - startedAt
    const to = t.endedAt - startedAt
    const bar = " ".repeat(Math.round(from / msPerChar)) + "█".repeat(Math.max(1, Math.round((to - from) / msPerChar)))
    const mark = critical.has(t.step) && t.phase !== "compensate" ? "*" : " "
    const label = `${t.step} (${t.phase})`.padEnd(24)
    return `  ${mark} ${label} |${bar.padEnd(Math.ceil(total / msPerChar) + 1)}| ${String(from).padStart(4)}–${
      String(to).padStart(4)
    } ms  ${t.outcome}`
  }).join("\n")
}

// ---------------------------------------------------------------------------------------
// Two orders
// ---------------------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const urls = {
    customer: (yield* customerApi).url,
    inventory: (yield* inventoryApi).url,
    payment: (yield* paymentApi).url,
    shipping: (yield* shippingApi).url
  }
  const t = targets(urls)
  const pipeline = pipelineOf(t)
  const live = Layer.mergeAll(t.Customer.layer, t.Inventory.layer, t.Payment.layer, t.Shipping.layer).pipe(
    Layer.provide(Transport.layer())
  )

  yield* Effect.gen(function*() {
    const runner = yield* Pipeline.runner(pipeline)

    // 1. A good order: one combined answer.
    const order = yield* OrderPlaced.make({
      orderId: "o-1",
      customerId: "cu-1",
      sku: "sku-42",
      card: "4242-4242-4242-4242"
    })
    const result = yield* runner.run(order, { mode: "all" })
    yield* Console.log(`order o-1: all steps delivered in ${result.durationMs} ms\n`)
    yield* Console.log(render(pipeline.graph, result.timeline))
    yield* Console.log(
      `\n  * critical path: ${[...criticalPath(pipeline.graph, result.timeline)].reverse().join(" → ")}`
    )
    const sum = result.timeline.reduce((total, s) => total + (s.endedAt - s.startedAt), 0)
    yield* Console.log(`  (the calls took ${sum} ms in all; the run took ${result.durationMs} ms)\n`)
    yield* Console.log(`combined answer: ${JSON.stringify(result.aggregate, null, 2)}\n`)

    // 2. A declined card, all or nothing: shipping is blocked, the reservation released.
    const declined = yield* OrderPlaced.make({
      orderId: "o-2",
      customerId: "cu-2",
      sku: "sku-7",
      card: "4000-0000-0000-0002"
    })
    const failure = yield* runner.run(declined, { mode: "all" }).pipe(Effect.flip)
    if (failure._tag !== "PipelineFailed") return yield* Effect.dieMessage(`unexpected ${failure._tag}`)
    yield* Console.log(`order o-2: ${failure.message}\n`)
    yield* Console.log(render(pipeline.graph, failure.timeline))
    yield* Console.log("")
    for (const [step, outcome] of Object.entries(failure.outcomes)) {
      const detail = outcome._tag === "Blocked"
        ? `blocked by ${outcome.by}: never called`
        : outcome._tag === "Compensated"
        ? `delivered ${JSON.stringify(outcome.delivered.response)}, then undone (${outcome.compensation._tag})`
        : outcome._tag === "Failed"
        ? `${outcome.error._tag}: ${outcome.error.message}`
        : outcome._tag
      yield* Console.log(`  ${step.padEnd(10)} ${outcome._tag.padEnd(12)} ${detail}`)
    }
    const held = [...reservations.entries()].filter(([, r]) => !r.released).map(([id]) => id)
    yield* Console.log(`\nreservations still held: ${held.join(", ") || "none"} (r-1 is order o-1's)`)
    if (held.length !== 1) return yield* Effect.dieMessage("the declined order's reservation was not released")
  }).pipe(Effect.provide(live))

  // 3. Durably: the graph is stored with the event; a worker delivers step by step.
  const dir = mkdtempSync(join(tmpdir(), "fanout-example-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const durable = Layer.mergeAll(
    Outbox.layer(Router.make(OrderPlaced), { pipelines: [pipeline] }),
    Worker.layer({ targets: [], pipelines: [pipeline], pollInterval: "1 second", metricsInterval: false })
  ).pipe(
    Layer.provideMerge(SqliteStore.layer({ filename: join(dir, "outbox.db") })),
    Layer.provide(live)
  )
  yield* Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const order = yield* OrderPlaced.make({
      orderId: "o-3",
      customerId: "cu-1",
      sku: "sku-9",
      card: "4242-4242-4242-4242"
    })
    const enqueued = yield* outbox.enqueue(order)
    yield* Console.log(
      `\norder o-3, durably: enqueued ${enqueued.deliveries.map((d) => d.target).join(", ")} with the graph`
    )
    let status = Option.getOrThrow(yield* outbox.status(order.id))
    while (status.deliveries.some((d) => d.status !== "delivered")) {
      yield* Effect.sleep("20 millis")
      status = Option.getOrThrow(yield* outbox.status(order.id))
    }
    const t0 = status.enqueuedAt
    for (const d of status.deliveries) {
      const last = d.history.at(-1)!
      yield* Console.log(
        `  ${d.target.padEnd(10)} after [${d.after.join(", ")}]`.padEnd(50) + " " +
          `sent at +${last.startedAt - t0} ms, ${last.durationMs} ms, HTTP ${last.status}`
      )
    }
  }).pipe(Effect.provide(durable))
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
