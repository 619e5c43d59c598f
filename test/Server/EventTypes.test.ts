/**
 * Payload schemas at ingest, through the whole application (`Main.provide`, real HTTP on loopback,
 * a memory store): a payload that does not match is `422 schema_mismatch` listing each failing
 * JSON pointer, and nothing is stored; the lean listener and the `HttpApi` handlers answer alike
 * (single and batch); `GET /v1/event-types` lists the types; `/openapi.json` carries the schemas
 * and stays a valid document.
 */
import SwaggerParser from "@apidevtools/swagger-parser"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Event from "../../src/Event.js"
import { reply, startServer } from "../integration/helpers.js"
import { prepare, request, start } from "../Main.helpers.js"

const orderSchema = {
  type: "object",
  required: ["orderId", "qty"],
  properties: {
    orderId: { type: "string", minLength: 1 },
    qty: { type: "integer", minimum: 1 },
    items: { type: "array", items: { $ref: "#/$defs/item" } }
  },
  $defs: { item: { type: "object", required: ["sku"], properties: { sku: { type: "string" } } } }
}

const setup = (events: Record<string, unknown>, leanIngest = true) =>
  Effect.gen(function*() {
    const targets = yield* startServer((_req, res) => reply(res, 200))
    const app = yield* prepare({
      server: { port: 0 },
      store: { memory: true },
      targets: { inventory: { url: `${targets.url}/inventory` } },
      routes: { "order.*": ["inventory"], "invoice.sent": ["inventory"] },
      events: events as never
    })
    const url = yield* start({ ...app, server: { ...app.server, leanIngest } })
    return { url, targets }
  })

const post = (url: string, path: string, json: unknown) => request(`${url}${path}`, { method: "POST", json })

describe("schemas at ingest", () => {
  it.scopedLive("a mismatch is 422 schema_mismatch with every failing pointer; nothing is stored", () =>
    Effect.gen(function*() {
      const { url } = yield* setup({ "order.placed": { schema: orderSchema } })
      const bad = yield* post(url, "/v1/events", {
        id: "bad-1",
        type: "order.placed",
        payload: { orderId: "", qty: "2", items: [{ sku: "a" }, { name: "b" }] }
      })
      assert.strictEqual(bad.status, 422, bad.text)
      assert.strictEqual(bad.body.error.code, "schema_mismatch")
      assert.include(bad.body.error.message, "\"order.placed\"")
      assert.deepStrictEqual(
        bad.body.error.issues.map((i: { path: string }) => i.path).sort(),
        ["/payload/items/1", "/payload/orderId", "/payload/qty"]
      )
      const stored = yield* request(`${url}/v1/events/bad-1`)
      assert.strictEqual(stored.status, 404, "nothing was stored")

      const good = yield* post(url, "/v1/events", {
        id: "good-1",
        type: "order.placed",
        payload: { orderId: "o", qty: 2 }
      })
      assert.strictEqual(good.status, 202, good.text)
      // A type with no schema (matched by the wildcard route) takes any payload; an unknown type stays no_route.
      const free = yield* post(url, "/v1/events", { type: "order.cancelled", payload: "anything" })
      assert.strictEqual(free.status, 202, free.text)
      const unknown = yield* post(url, "/v1/events", { type: "refund.issued", payload: {} })
      assert.deepStrictEqual([unknown.status, unknown.body.error.code], [422, "no_route"])
    }))

  it.scopedLive("the lean listener and the HttpApi handlers answer alike, for one event and for a batch", () =>
    Effect.gen(function*() {
      const events = { "order.placed": { schema: orderSchema } }
      const lean = yield* setup(events, true)
      const plain = yield* setup(events, false)
      const one = { id: "x-1", type: "order.placed", payload: { orderId: "o", qty: 0 } }
      const batch = {
        events: [
          { id: "b-1", type: "order.placed", payload: { orderId: "o", qty: 1 } },
          { id: "b-2", type: "order.placed", payload: { qty: 1 } },
          { id: "b-3", type: "order.placed", payload: { orderId: "o", qty: 1.5 } }
        ]
      }
      const answers = yield* Effect.all([
        post(lean.url, "/v1/events", one), // the lean listener
        post(lean.url, "/v1/events?wait=settled", one), // ?wait goes to the HttpApi handler
        post(plain.url, "/v1/events", one), // no lean listener at all
        post(lean.url, "/v1/events:batch", batch),
        post(plain.url, "/v1/events:batch", batch)
      ])
      const [a, b, c, d, e] = answers.map((r) => ({ status: r.status, body: r.body }))
      assert.strictEqual(a!.status, 422)
      assert.deepStrictEqual(a!.body.error.issues, [{ path: "/payload/qty", message: "must be >= 1" }])
      assert.deepStrictEqual(b, a)
      assert.deepStrictEqual(c, a)
      assert.strictEqual(d!.status, 422)
      assert.deepStrictEqual(
        d!.body.error.issues.map((i: { path: string }) => i.path),
        ["/events/1/payload", "/events/2/payload/qty"]
      )
      assert.include(d!.body.error.message, "2 of 3 events")
      assert.deepStrictEqual(e, d)
      // All or nothing: the batch's valid event was not stored either.
      const stored = yield* request(`${lean.url}/v1/events/b-1`)
      assert.strictEqual(stored.status, 404)
    }))

  it.scopedLive("GET /v1/event-types lists declared types, routed types and patterns; /openapi.json refers to the schemas", () =>
    Effect.gen(function*() {
      const { url } = yield* setup({ "order.placed": { schema: orderSchema } })
      const listed = yield* request(`${url}/v1/event-types`)
      assert.strictEqual(listed.status, 200, listed.text)
      assert.deepStrictEqual(listed.body, {
        types: [
          {
            type: "order.placed",
            validated: true,
            kind: "json-schema",
            schema: orderSchema,
            ref: "#/components/schemas/EventPayload.order.placed"
          },
          { type: "invoice.sent", validated: false }
        ],
        patterns: ["order.*"]
      })
      const doc = (yield* request(`${url}/openapi.json`)).body
      yield* Effect.promise(() => SwaggerParser.validate(structuredClone(doc)))
      const component = doc.components.schemas["EventPayload.order.placed"]
      assert.deepStrictEqual(component.properties.items.items, {
        $ref: "#/components/schemas/EventPayload.order.placed/$defs/item"
      })
      assert.deepStrictEqual(doc.components.schemas.EventInput.allOf, [{
        if: { properties: { type: { const: "order.placed" } }, required: ["type"] },
        then: { properties: { payload: { $ref: "#/components/schemas/EventPayload.order.placed" } } }
      }])
      assert.isDefined(doc.paths["/v1/event-types"]?.get)
      // The whole document resolves: the rewritten $defs reference points at the item schema.
      const dereferenced = yield* Effect.promise(() => SwaggerParser.dereference(structuredClone(doc)))
      assert.deepStrictEqual(
        (dereferenced as any).components.schemas["EventPayload.order.placed"].properties.items.items.required,
        ["sku"]
      )
    }))

  it.scopedLive("a TypeScript configuration's Event.define schema is checked the same way", () =>
    Effect.gen(function*() {
      const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Int }))
      const { url } = yield* setup({ "order.placed": OrderPlaced })
      const bad = yield* post(url, "/v1/events", { type: "order.placed", payload: { orderId: 1, qty: 2 } })
      assert.strictEqual(bad.status, 422, bad.text)
      assert.deepStrictEqual(bad.body.error.issues.map((i: { path: string }) => i.path), ["/payload/orderId"])
      const good = yield* post(url, "/v1/events", { type: "order.placed", payload: { orderId: "o", qty: 2 } })
      assert.strictEqual(good.status, 202, good.text)
      const listed = yield* request(`${url}/v1/event-types`)
      assert.strictEqual(listed.body.types[0].kind, "effect-schema")
      assert.strictEqual(listed.body.types[0].schema.type, "object")
      const doc = (yield* request(`${url}/openapi.json`)).body
      yield* Effect.promise(() => SwaggerParser.validate(structuredClone(doc)))
    }))
})
