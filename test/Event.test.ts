import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Either, Equal, ParseResult, Schema, TestClock } from "effect"
import * as fc from "fast-check"
import { Event } from "../src/index.js"
import { uuidv7 } from "../src/internal/uuid.js"

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const OrderPlaced = Event.define(
  "order.placed",
  Schema.Struct({ orderId: Schema.String, sku: Schema.String, qty: Schema.Int })
)

/** The 48-bit millisecond timestamp at the front of a UUIDv7. */
const millisOf = (id: string) => parseInt(id.replace(/-/g, "").slice(0, 12), 16)

const formatError = (e: ParseResult.ParseError) => ParseResult.TreeFormatter.formatErrorSync(e)

describe("Event ids (UUIDv7 from the Effect Clock)", () => {
  it.effect("format: version nibble 7, variant 10xx, timestamp = Clock time", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.parse("2025-06-01T12:00:00.123Z"))
      const ids = yield* Effect.forEach(Array.from({ length: 50 }), () => Event.newId)
      for (const id of ids) {
        assert.match(id, UUID_V7)
        assert.strictEqual(millisOf(id), Date.parse("2025-06-01T12:00:00.123Z"))
      }
      assert.strictEqual(new Set(ids).size, 50, "random bits make same-millisecond ids distinct")
      const event = yield* OrderPlaced.make({ orderId: "o-1", sku: "s", qty: 1 })
      assert.match(event.id, UUID_V7)
      assert.isTrue(Equal.equals(event.createdAt, DateTime.unsafeMake(Date.parse("2025-06-01T12:00:00.123Z"))))
    }))

  it.effect("ids sort by creation time under TestClock", () =>
    Effect.gen(function*() {
      // Steps from 1 ms (same-prefix neighbours) to years; each id is made after the step.
      const steps = [1, 1, 7, 255, 256, 65_536, 1, 3_600_000, 1, 86_400_000 * 400, 1]
      const ids: Array<string> = [(yield* Event.make("t", null)).id]
      for (const step of steps) {
        yield* TestClock.adjust(step)
        ids.push((yield* Event.make("t", null)).id)
      }
      assert.deepStrictEqual([...ids].sort(), ids)
      assert.deepStrictEqual(
        ids.map(millisOf),
        [0, ...steps].map((_, i, all) => all.slice(0, i + 1).reduce((a, b) => a + b, 0))
      )
    }))

  // TestClock steps cost real milliseconds each, so the 200-run property drives the id
  // function with the millisecond values the Clock would give.
  it.prop(
    "ids from increasing milliseconds sort in creation order",
    [fc.array(fc.integer({ min: 0, max: 2 ** 47 }), { minLength: 2, maxLength: 30 })],
    ([times]) => {
      const sorted = [...new Set(times)].sort((a, b) => a - b)
      const ids = sorted.map(uuidv7)
      ids.forEach((id) => assert.match(id, UUID_V7))
      assert.deepStrictEqual([...ids].sort(), ids)
      assert.deepStrictEqual(ids.map(millisOf), sorted)
    },
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("a caller's id, key and headers are kept", () =>
    Effect.gen(function*() {
      const event = yield* OrderPlaced.make(
        { orderId: "o-1", sku: "s", qty: 2 },
        { id: "my-id-1", key: "o-1", headers: { "x-tenant": "acme" } }
      )
      assert.strictEqual(event.id, "my-id-1")
      assert.strictEqual(event.key, "o-1")
      assert.deepStrictEqual(event.headers, { "x-tenant": "acme" })
      assert.strictEqual(event.type, "order.placed")
      const bare = yield* Event.make("t", 1)
      assert.isFalse("key" in bare)
      assert.deepStrictEqual(bare.headers, {})
    }))
})

describe("Event envelope", () => {
  const valid = {
    id: "e-1",
    type: "order.placed",
    key: "o-1",
    payload: { orderId: "o-1", sku: "s", qty: 2 },
    headers: { "x-a": "1" },
    createdAt: "2025-06-01T12:00:00.000Z"
  }

  it.effect("decode errors name the bad field", () =>
    Effect.gen(function*() {
      const { type: _type, ...noType } = valid
      const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
        [noType, /\["type"\][\s\S]*is missing/],
        [{ ...valid, id: "" }, /\["id"\]/],
        [{ ...valid, createdAt: "yesterday" }, /\["createdAt"\]/],
        [{ ...valid, headers: { "x-a": 1 } }, /\["headers"\][\s\S]*\["x-a"\][\s\S]*Expected string/],
        [{ ...valid, key: 5 }, /\["key"\]/]
      ]
      for (const [input, expected] of cases) {
        const result = yield* Effect.either(Event.decodeUnknown(input))
        assert.isTrue(Either.isLeft(result), JSON.stringify(input))
        if (Either.isLeft(result)) assert.match(formatError(result.left), expected)
      }
    }))

  it.effect("headers default to {}; key is optional", () =>
    Effect.gen(function*() {
      const { headers: _h, key: _k, ...minimal } = valid
      const event = yield* Event.decodeUnknown(minimal)
      assert.deepStrictEqual(event.headers, {})
      assert.isFalse("key" in event)
    }))

  it.effect("encode / decode round trip", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.parse("2025-06-01T12:00:00.500Z"))
      const event = yield* OrderPlaced.make({ orderId: "o-1", sku: "s", qty: 2 }, { key: "o-1", headers: { h: "v" } })
      const encoded = Event.encode(event)
      assert.strictEqual(encoded.createdAt, "2025-06-01T12:00:00.500Z")
      const json = JSON.parse(JSON.stringify(encoded))
      const decoded = yield* Event.decodeUnknown(json)
      assert.deepStrictEqual({ ...decoded, createdAt: DateTime.formatIso(decoded.createdAt) }, {
        ...event,
        createdAt: DateTime.formatIso(event.createdAt)
      })
      assert.isTrue(Equal.equals(decoded.createdAt, event.createdAt))
      assert.deepStrictEqual(Event.encode(decoded), encoded)
    }))

  it.effect("a definition decodes its payload and names the bad payload field", () =>
    Effect.gen(function*() {
      const untyped = yield* Event.decodeUnknown(valid)
      const typed = yield* OrderPlaced.decode(untyped)
      assert.deepStrictEqual(typed.payload, { orderId: "o-1", sku: "s", qty: 2 })
      const bad = yield* Effect.either(
        OrderPlaced.decode({ ...untyped, payload: { orderId: "o-1", sku: "s", qty: 1.5 } })
      )
      assert.isTrue(Either.isLeft(bad))
      if (Either.isLeft(bad)) assert.match(formatError(bad.left), /\["qty"\]/)
      const missing = yield* Effect.either(OrderPlaced.decode({ ...untyped, payload: { orderId: "o-1", qty: 1 } }))
      assert.isTrue(Either.isLeft(missing) && /\["sku"\][\s\S]*is missing/.test(formatError(missing.left)))
    }))
})

describe("the id alphabet (ids, Idempotency-Keys, event keys)", () => {
  const printable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join("")

  it("printable ASCII 0x21-0x7E, 1-200 characters; anything else names the index and char code", () => {
    assert.isTrue(Event.isId(printable))
    assert.isTrue(Event.isId("x".repeat(200)))
    assert.isFalse(Event.isId(""))
    assert.isFalse(Event.isId("x".repeat(201)))
    assert.isFalse(Event.isId(42))
    for (let c = 0; c < 0x21; c++) assert.strictEqual(Event.badCharIndex(`ab${String.fromCharCode(c)}`), 2, `char ${c}`)
    assert.strictEqual(Event.badCharIndex("a\u007f"), 1)
    assert.strictEqual(Event.badCharIndex("caf\u00e9"), 3)
    assert.strictEqual(
      Event.idProblem("a\nb"),
      "Invalid character at index 1 (char code 10): expected printable ASCII 0x21-0x7E, no spaces or control characters"
    )
    // An astral character shows as its code point, at the index JavaScript (and, since everything
    // before it is ASCII, UTF-8) counts.
    assert.match(Event.idProblem("ok-\u{1F600}")!, /^Invalid character at index 3 \(char code 128512\)/)
    assert.strictEqual(Event.idProblem("x".repeat(201)), "Expected at most 200 characters, got 201")
    assert.isUndefined(Event.idProblem(printable))
  })

  it("the Id schema agrees with isId, and its failure is the same message", () => {
    const decode = Schema.decodeUnknownEither(Event.Id)
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 210 }), fc.fullUnicodeString({ maxLength: 10 })), (s) => {
        const decoded = decode(s)
        assert.strictEqual(Either.isRight(decoded), Event.isId(s), JSON.stringify(s))
        if (Either.isLeft(decoded) && s.length >= 1 && s.length <= 200) {
          assert.include(formatError(decoded.left), Event.idProblem(s)!)
        }
      }),
      { numRuns: 2000 }
    )
  })

  it.effect("Event.make and a definition's make reject a bad id or key with InvalidEventError", () =>
    Effect.gen(function*() {
      const badId = yield* Effect.flip(Event.make("order.placed", {}, { id: "a\nb" }))
      assert.strictEqual(badId._tag, "InvalidEventError")
      assert.strictEqual(badId.field, "id")
      assert.strictEqual(
        badId.message,
        "id: Invalid character at index 1 (char code 10): expected printable ASCII 0x21-0x7E, no spaces or control characters"
      )
      const badKey = yield* Effect.flip(OrderPlaced.make({ orderId: "o", sku: "s", qty: 1 }, { id: "ok", key: "c 1" }))
      assert.deepStrictEqual([
        badKey.field,
        badKey.message.startsWith("key: Invalid character at index 1 (char code 32)")
      ], ["key", true])
      const empty = yield* Effect.flip(Event.make("t", 1, { id: "" }))
      assert.strictEqual(empty.message, "id: Expected at least 1 character, got 0")
      const good = yield* Event.make("t", 1, { id: printable, key: "k-1" })
      assert.strictEqual(good.id, printable)
    }))

  it.effect("the envelope schema applies the rule to id and key (decode and encode)", () =>
    Effect.gen(function*() {
      const valid = { id: "e-1", type: "t", payload: 1, headers: {}, createdAt: "2025-06-01T12:00:00.000Z" }
      for (const input of [{ ...valid, id: "e 1" }, { ...valid, key: "k\t1" }, { ...valid, id: "é" }]) {
        const result = yield* Effect.either(Event.decodeUnknown(input))
        assert.isTrue(Either.isLeft(result), JSON.stringify(input))
        if (Either.isLeft(result)) {
          assert.match(formatError(result.left), /Invalid character at index \d+ \(char code \d+\)/)
        }
      }
      const event = yield* Event.decodeUnknown(valid)
      assert.throws(() => Event.encode({ ...event, id: "a\nb" }), /char code 10/)
    }))
})

describe("fingerprints (what makes two events with one id the same event)", () => {
  it.effect("type, key and payload count; createdAt and headers do not", () =>
    Effect.gen(function*() {
      const base = yield* Event.make("order.placed", { qty: 1, lines: ["a"] }, { id: "e-1", key: "c-1" })
      const fp = Event.fingerprint(base)
      assert.match(fp, /^[0-9a-f]{64}$/)
      assert.strictEqual(
        Event.contentJson(base),
        "{\"type\":\"order.placed\",\"key\":\"c-1\",\"payload\":{\"qty\":1,\"lines\":[\"a\"]}}"
      )
      assert.strictEqual(fp, Event.fingerprintOf(Event.contentJson(base)))
      yield* TestClock.adjust(60_000)
      const later = yield* Event.make("order.placed", { qty: 1, lines: ["a"] }, {
        id: "e-2",
        key: "c-1",
        headers: { traceparent: "00-x-y-01" }
      })
      assert.strictEqual(Event.fingerprint(later), fp, "another createdAt, id and headers: same content")
      // JSON parsed and written again: whitespace and number spelling do not matter.
      assert.strictEqual(
        Event.fingerprint({ ...base, payload: JSON.parse("{ \"qty\" : 1.0, \"lines\": [ \"a\" ] }") }),
        fp
      )
      const { key: _key, ...noKey } = base
      for (
        const other of [{ ...base, type: "order.paid" }, { ...base, key: "c-2" }, noKey, {
          ...base,
          payload: { qty: 2, lines: ["a"] }
        }, { ...base, payload: { lines: ["a"], qty: 1 } }]
      ) {
        assert.notStrictEqual(Event.fingerprint(other), fp, JSON.stringify(other))
      }
    }))
})

describe("Event.encode (the lean encoder) against Schema.encodeSync(Envelope)", () => {
  const schemaEncode = Schema.encodeSync(Event.Envelope)
  const outcome = (f: () => unknown) => {
    try {
      const value = f() as Record<string, unknown>
      return { ok: true, keys: Object.keys(value), headerKeys: Object.keys(value.headers as object), value }
    } catch (error) {
      return { ok: false, message: (error as Error).message }
    }
  }
  const idArb = fc.oneof(
    fc.stringMatching(/^[!-~]{1,12}$/),
    fc.constantFrom("", "a b", "a\nb", "é", "x".repeat(200), "x".repeat(201)),
    fc.constant(7 as unknown as string)
  )
  const headersArb = fc.oneof(
    fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 4 }),
    fc.constant({ n: 1 } as unknown as Record<string, string>),
    fc.constant(Object.assign(Object.create(null), { a: "1" }) as Record<string, string>),
    fc.constant({ [Symbol("s")]: "x", a: "1" } as unknown as Record<string, string>),
    fc.constant(JSON.parse(`{"__proto__":"x"}`) as Record<string, string>),
    fc.constant(null as unknown as Record<string, string>)
  )
  const createdAtArb = fc.oneof(
    fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => DateTime.unsafeMake(ms)),
    fc.constant(DateTime.unsafeMakeZoned(0, { timeZone: "Europe/Paris" }) as unknown as DateTime.Utc),
    fc.constant(new Date(0) as unknown as DateTime.Utc),
    fc.constant("2026-01-01T00:00:00.000Z" as unknown as DateTime.Utc)
  )
  const eventArb = fc.record(
    {
      id: idArb,
      type: fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), fc.constantFrom("", "t".repeat(201))),
      key: fc.oneof(idArb, fc.constant(undefined)),
      payload: fc.oneof(fc.jsonValue(), fc.constant(undefined)),
      headers: headersArb,
      createdAt: createdAtArb,
      extra: fc.string()
    },
    { requiredKeys: ["id", "type", "headers", "createdAt"] }
  )

  it("same members in the same order, or the same error, for any input", () => {
    fc.assert(
      fc.property(eventArb, (input) => {
        const event = input as unknown as Event.Any
        const lean = outcome(() => Event.encode(event))
        const schema = outcome(() => schemaEncode(event as Schema.Schema.Type<typeof Event.Envelope>))
        assert.deepStrictEqual(lean, schema)
      }),
      { numRuns: 2_000 }
    )
  })

  it("a valid event takes the lean path (the schema is not asked)", () => {
    const event = {
      id: "e-1",
      type: "order.placed",
      key: "k",
      payload: { a: [1] },
      headers: { traceparent: "x" },
      createdAt: DateTime.unsafeMake(0)
    }
    const encoded = Event.encode(event)
    assert.deepStrictEqual(encoded, {
      id: "e-1",
      type: "order.placed",
      key: "k",
      payload: { a: [1] },
      headers: { traceparent: "x" },
      createdAt: "1970-01-01T00:00:00.000Z"
    })
    assert.strictEqual(encoded.payload, event.payload, "the payload is passed through, as the schema's Unknown does")
    assert.notStrictEqual(encoded.headers, event.headers, "the headers are a copy")
  })
})
