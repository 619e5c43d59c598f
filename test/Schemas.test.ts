/**
 * Payload schemas (issue 12, item 5), below the server: `Schemas.make` compiles JSON Schemas with
 * Ajv (draft 2020-12, formats) and takes Effect Schemas; `Schemas.check` lists every failing JSON
 * pointer; the configuration's `events` section decodes, compiles once at build, and a bad schema
 * is a `ConfigError` naming its path.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Either, Schema } from "effect"
import * as Config from "../src/Config.js"
import * as Event from "../src/Event.js"
import * as Schemas from "../src/Schemas.js"

const orderSchema = {
  type: "object",
  required: ["orderId", "qty"],
  properties: {
    orderId: { type: "string", minLength: 1 },
    qty: { type: "integer", minimum: 1 },
    email: { type: "string", format: "email" },
    items: { type: "array", items: { type: "object", required: ["sku"], properties: { sku: { type: "string" } } } }
  },
  additionalProperties: false
} as const

const compile = (declarations: Record<string, Schemas.Declaration>): Schemas.Service => {
  const made = Schemas.make(declarations)
  if (Either.isLeft(made)) throw new Error(JSON.stringify(made.left))
  return made.right
}

const event = (type: string, payload: unknown): Event.Any => ({
  id: "e-1",
  type,
  payload,
  headers: {},
  createdAt: DateTime.unsafeMake(0)
})

describe("Schemas", () => {
  it("a JSON Schema: every failing pointer, with Ajv's message; formats are checked", () => {
    const types = compile({ "order.placed": { _tag: "JsonSchema", schema: orderSchema } })
    assert.deepStrictEqual(types.issues("order.placed", { orderId: "o-1", qty: 2, email: "a@b.example" }), [])
    const issues = types.issues("order.placed", {
      orderId: "",
      qty: 0,
      email: "not an address",
      items: [{ sku: "s" }, {}],
      extra: true
    })
    assert.deepStrictEqual(issues.map((i) => i.pointer).sort(), ["", "/email", "/items/1", "/orderId", "/qty"])
    assert.include(issues.find((i) => i.pointer === "")!.message, "\"extra\"")
    assert.include(issues.find((i) => i.pointer === "/email")!.message, "format \"email\"")
    assert.include(issues.find((i) => i.pointer === "/items/1")!.message, "required property 'sku'")
    assert.deepStrictEqual(types.issues("order.placed", "text"), [{ pointer: "", message: "must be object" }])
  })

  it("a type without a schema accepts any payload", () => {
    const types = compile({ "order.placed": { _tag: "JsonSchema", schema: orderSchema } })
    assert.isFalse(types.has("order.cancelled"))
    assert.deepStrictEqual(types.issues("order.cancelled", 42), [])
    assert.deepStrictEqual(
      Schemas.check(types, event("order.cancelled", 42)),
      Either.right(event("order.cancelled", 42))
    )
    assert.deepStrictEqual(Schemas.empty.issues("anything", null), [])
  })

  it("check: the event, or a PayloadMismatch with its id, type and issues", () => {
    const types = compile({ "order.placed": { _tag: "JsonSchema", schema: orderSchema } })
    const bad = Schemas.check(types, event("order.placed", { orderId: "o", qty: "2" }))
    assert.isTrue(Either.isLeft(bad))
    if (Either.isLeft(bad)) {
      assert.strictEqual(bad.left._tag, "PayloadMismatch")
      assert.strictEqual(bad.left.eventId, "e-1")
      assert.strictEqual(bad.left.type, "order.placed")
      assert.deepStrictEqual(bad.left.issues, [{ pointer: "/qty", message: "must be integer" }])
      assert.include(bad.left.message, "/qty must be integer")
    }
  })

  it.effect("checkEvent uses the EventTypes of the context, and lets everything through without one", () =>
    Effect.gen(function*() {
      const types = compile({ "order.placed": { _tag: "JsonSchema", schema: orderSchema } })
      const bad = event("order.placed", {})
      const refused = yield* Effect.flip(Schemas.checkEvent(bad).pipe(Effect.provide(Schemas.layer(types))))
      assert.strictEqual(refused._tag, "PayloadMismatch")
      assert.deepStrictEqual(yield* Schemas.checkEvent(bad), bad)
    }))

  it("an Effect Schema: decoded with every issue (pointers from its paths), listed as its JSON Schema", () => {
    const types = compile({
      "order.placed": { _tag: "Effect", schema: Schema.Struct({ orderId: Schema.String, qty: Schema.Int }) }
    })
    assert.deepStrictEqual(types.issues("order.placed", { orderId: "o", qty: 1 }), [])
    const issues = types.issues("order.placed", { qty: 1.5 })
    assert.deepStrictEqual(issues.map((i) => i.pointer).sort(), ["/orderId", "/qty"])
    const listed = types.types[0]!
    assert.strictEqual(listed.kind, "effect-schema")
    assert.strictEqual((listed.schema as { type?: unknown }).type, "object")
  })

  it("JSON Pointer segments are escaped (RFC 6901)", () => {
    assert.strictEqual(Schemas.pointerOf(["a/b", "c~d", 0]), "/a~1b/c~0d/0")
    assert.strictEqual(Schemas.pointerOf([]), "")
  })

  it("a schema Ajv refuses is reported with its type: a bad type, an unknown keyword, an unknown format", () => {
    const made = Schemas.make({
      a: { _tag: "JsonSchema", schema: { type: "integr" } },
      b: { _tag: "JsonSchema", schema: { type: "object", requird: ["x"] } },
      c: { _tag: "JsonSchema", schema: { type: "string", format: "no-such-format" } },
      d: { _tag: "JsonSchema", schema: { type: "string" } }
    })
    assert.isTrue(Either.isLeft(made))
    if (Either.isLeft(made)) {
      assert.deepStrictEqual(made.left.map((p) => p.type), ["a", "b", "c"])
      assert.include(made.left[0]!.message, "schema is invalid")
      assert.include(made.left[1]!.message, "unknown keyword: \"requird\"")
      assert.include(made.left[2]!.message, "unknown format \"no-such-format\"")
    }
  })
})

const base = {
  targets: { inventory: { url: "http://127.0.0.1:1/inventory" } },
  routes: { "order.*": ["inventory"] }
}

const buildConfig = (config: unknown) =>
  Effect.runSync(Effect.either(Effect.flatMap(Config.decode("f.json", config), (c) => Config.build("f.json", c, {}))))

describe("Config events", () => {
  it("a JSON configuration's schemas are compiled at build and checked", () => {
    const built = buildConfig({ ...base, events: { "order.placed": { schema: orderSchema } } })
    assert.isTrue(Either.isRight(built))
    if (Either.isRight(built)) {
      const types = built.right.eventTypes
      assert.deepStrictEqual(types.types.map((t) => [t.type, t.kind]), [["order.placed", "json-schema"]])
      assert.deepStrictEqual(types.issues("order.placed", { orderId: "o", qty: 1 }), [])
      assert.deepStrictEqual(types.issues("order.placed", { orderId: "o" }).map((i) => i.pointer), [""])
    }
    const none = buildConfig(base)
    assert.isTrue(Either.isRight(none) && none.right.eventTypes.types.length === 0)
  })

  it("a bad schema is a configuration error naming the type's path and Ajv's reason", () => {
    const built = buildConfig({
      ...base,
      events: { "order.placed": { schema: { type: "object", properties: { qty: { type: "int" } } } } }
    })
    assert.isTrue(Either.isLeft(built))
    if (Either.isLeft(built)) {
      assert.strictEqual(built.left.issues[0]!.path, "events[\"order.placed\"].schema")
      assert.include(built.left.message, "f.json: events[\"order.placed\"].schema: schema is invalid")
    }
  })

  it("a type no route matches, a wildcard, a schema that is no JSON Schema, an unknown field: refused", () => {
    const unrouted = buildConfig({ ...base, events: { "invoice.sent": { schema: true } } })
    assert.isTrue(Either.isLeft(unrouted))
    if (Either.isLeft(unrouted)) {
      assert.deepStrictEqual(unrouted.left.issues.map((i) => i.path), ["events[\"invoice.sent\"]"])
      assert.include(unrouted.left.message, "Expected an event type that a route matches")
    }
    const wildcard = buildConfig({ ...base, events: { "order.*": { schema: true } } })
    assert.isTrue(Either.isLeft(wildcard) && wildcard.left.message.includes("Expected an exact event type (no *)"))
    const notASchema = buildConfig({ ...base, events: { "order.placed": { schema: "object" } } })
    assert.isTrue(Either.isLeft(notASchema) && notASchema.left.message.includes("Expected a JSON Schema"))
    const extra = buildConfig({ ...base, events: { "order.placed": { schema: true, shema: {} } } })
    assert.isTrue(Either.isLeft(extra))
  })

  it("a TypeScript configuration: an Event.define declaration (or { schema: <Effect Schema> }) is used", () => {
    const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Int }))
    const built = buildConfig({
      ...base,
      events: {
        "order.placed": OrderPlaced,
        "order.cancelled": { schema: Schema.Struct({ orderId: Schema.String }) }
      }
    })
    assert.isTrue(Either.isRight(built))
    if (Either.isRight(built)) {
      const types = built.right.eventTypes
      assert.deepStrictEqual(types.types.map((t) => [t.type, t.kind]), [
        ["order.placed", "effect-schema"],
        ["order.cancelled", "effect-schema"]
      ])
      assert.deepStrictEqual(types.issues("order.placed", { orderId: "o", qty: 2 }), [])
      assert.deepStrictEqual(types.issues("order.placed", { orderId: "o", qty: "2" }).map((i) => i.pointer), ["/qty"])
      assert.deepStrictEqual(types.issues("order.cancelled", {}).map((i) => i.pointer), ["/orderId"])
    }
    const misfiled = buildConfig({ ...base, events: { "order.cancelled": OrderPlaced } })
    assert.isTrue(Either.isLeft(misfiled) && misfiled.left.message.includes("got Event.define(\"order.placed\""))
  })
})
