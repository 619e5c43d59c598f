/**
 * The SQL store's envelope shortcut (`Sql.envelopeJson`) gives the very text the schema path
 * gives (`JSON.stringify(Event.encode(event))`), or steps aside.
 */
import { assert, describe, it } from "@effect/vitest"
import { DateTime, Effect, Either, FastCheck as fc, Schema } from "effect"
import * as Event from "../../src/Event.js"
import { decodeEnvelope, envelopeOf, StoredEnvelope } from "../../src/Store/internal.js"
import { envelopeJson, envelopeParts } from "../../src/Store/Sql.js"

const schemaJson = (event: unknown): string | undefined => {
  try {
    // The shortcut takes anything shaped like an event; the schema path decides what is one.
    return JSON.stringify(Event.encode(event as Event.Any))
  } catch {
    return undefined
  }
}

/** Mostly valid (weight 8), sometimes one of the invalid forms. */
const mostly = <A>(valid: fc.Arbitrary<A>, ...invalid: ReadonlyArray<fc.Arbitrary<unknown>>) =>
  fc.oneof(
    { arbitrary: valid as fc.Arbitrary<unknown>, weight: 8 },
    ...invalid.map((arbitrary) => ({ arbitrary, weight: 1 }))
  )

const name = mostly(
  fc.string({ minLength: 1, maxLength: 200 }),
  fc.constant(""),
  fc.string({ minLength: 201, maxLength: 203 }),
  fc.integer(),
  // Outside the id alphabet (printable ASCII 0x21-0x7E), for ids and keys.
  fc.fullUnicodeString({ minLength: 1, maxLength: 8 })
)
const event = fc.record(
  {
    id: name,
    type: name,
    key: mostly(fc.string({ maxLength: 200 }), fc.string({ minLength: 201, maxLength: 203 }), fc.integer()),
    payload: mostly(fc.jsonValue(), fc.constant(undefined), fc.constant(1n)),
    headers: mostly(
      fc.dictionary(fc.oneof(fc.string(), fc.constantFrom("constructor", "toString", "1", "0")), fc.string()),
      fc.constant({ ["__proto__"]: "x" }).map((o) => JSON.parse(JSON.stringify(o)) as unknown),
      fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.constant(null)), { minKeys: 1 }),
      fc.constant([]),
      fc.constant(null),
      fc.constant(undefined)
    ),
    createdAt: mostly(
      fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => DateTime.unsafeMake(ms)),
      fc.constant(DateTime.unsafeMakeZoned(0, { timeZone: "Europe/Paris" })),
      fc.constant(new Date(0)),
      fc.constant("2024-01-01T00:00:00.000Z")
    ),
    extra: fc.jsonValue()
  },
  { requiredKeys: ["id", "type", "payload", "headers", "createdAt"] }
)

describe("Sql.envelopeJson", () => {
  it("equals the schema's encoding whenever it answers; steps aside for every invalid event", () => {
    let answered = 0
    fc.assert(
      fc.property(event, (e) => {
        const fast = envelopeJson(e as unknown as Event.Any)
        const slow = schemaJson(e)
        if (fast !== undefined) {
          answered++
          assert.strictEqual(fast, slow)
          // The fingerprint's content text is the one the envelope was built around.
          assert.strictEqual(
            envelopeParts(e as unknown as Event.Any)!.content,
            Event.contentJson(e as unknown as Event.Any)
          )
        }
      }),
      { numRuns: 3000 }
    )
    assert.isAbove(answered, 100)
  })

  it("answers for a plain event, with and without key", () => {
    const base = {
      id: "e-1",
      type: "order.placed",
      payload: { qty: 1, lines: [{ sku: "s" }] },
      headers: { "x-a": "1" },
      createdAt: DateTime.unsafeMake(1_700_000_000_123)
    }
    for (const e of [base, { ...base, key: "c-1" }]) {
      assert.strictEqual(envelopeJson(e), JSON.stringify(Event.encode(e)))
    }
    assert.strictEqual(
      envelopeJson(base),
      "{\"id\":\"e-1\",\"type\":\"order.placed\",\"payload\":{\"qty\":1,\"lines\":[{\"sku\":\"s\"}]},\"headers\":{\"x-a\":\"1\"},\"createdAt\":\"2023-11-14T22:13:20.123Z\"}"
    )
  })
})

/** A JSON text shaped like a stored envelope, sometimes with one field of the wrong kind. */
const storedJson = fc.record(
  {
    id: mostly(
      fc.stringMatching(/^[!-~]{1,40}$/),
      fc.constant(""),
      fc.string({ minLength: 1, maxLength: 4 }),
      fc.integer()
    ),
    type: mostly(
      fc.string({ minLength: 1, maxLength: 40 }),
      fc.constant(""),
      fc.string({ minLength: 201, maxLength: 202 }),
      fc.constant(null)
    ),
    key: mostly(fc.stringMatching(/^[!-~]{1,20}$/), fc.constant("a b"), fc.integer(), fc.constant(null)),
    payload: fc.jsonValue(),
    headers: mostly(
      fc.dictionary(
        fc.oneof(fc.string(), fc.constantFrom("constructor", "toString", "1", "0", "__proto__")),
        fc.string()
      ),
      fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.constant(null)), { minKeys: 1 }),
      fc.constant([]),
      fc.constant(null)
    ),
    createdAt: mostly(
      fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => new Date(ms).toISOString()),
      fc.constantFrom("2024-01-01", "2024-01-01T00:00:00+02:00", "not a date", "", "1e3"),
      fc.integer()
    ),
    extra: fc.jsonValue()
  },
  { requiredKeys: ["id", "type", "createdAt"] }
).map((o) => JSON.stringify(o))

describe("envelopeOf (the claim's decoding shortcut)", () => {
  it("gives the stored-envelope schema's decoding whenever it answers; steps aside for everything it rejects", () => {
    let answered = 0
    fc.assert(
      fc.property(storedJson, (json) => {
        const parsed: unknown = JSON.parse(json)
        const fast = envelopeOf(parsed)
        const slow = Effect.runSync(Effect.either(Schema.decodeUnknown(StoredEnvelope)(JSON.parse(json))))
        if (fast !== undefined) {
          answered++
          assert.isTrue(Either.isRight(slow), `the shortcut answered for an envelope the schema rejects: ${json}`)
          if (Either.isRight(slow)) {
            assert.deepStrictEqual(fast, slow.right)
            assert.deepStrictEqual(Object.keys(fast), Object.keys(slow.right))
            assert.strictEqual(Object.getPrototypeOf(fast.headers), Object.getPrototypeOf(slow.right.headers))
          }
        }
      }),
      { numRuns: 3000 }
    )
    assert.isAbove(answered, 300)
  })

  it("reads an event stored before the id alphabet (a space in its id and key), on both paths", () => {
    const old = {
      id: "order 1",
      type: "order.placed",
      key: "customer é",
      payload: { n: 1 },
      headers: {},
      createdAt: "2026-01-01T00:00:00.000Z"
    }
    const fast = envelopeOf(old)
    assert.strictEqual(fast?.id, "order 1")
    assert.strictEqual(fast?.key, "customer é")
    // The slow path (a field the shortcut steps aside for) reads it too.
    const slow = Effect.runSync(decodeEnvelope("claim", JSON.stringify({ ...old, headers: { ["__proto__"]: "x" } })))
    assert.strictEqual(slow.id, "order 1")
    assert.isTrue(Either.isLeft(Effect.runSync(Effect.either(Event.decodeUnknown(old)))), "the ingest rule refuses it")
  })
})
