/**
 * Shadows that mirror a primary (issue 12, item 1, the comparison): `Router.compareAnswers`
 * (status, JSON body by member and position, ignored JSON Pointers), the router's `mirrors` and
 * `mirrorsOf`, the configuration's object form (`"shadow": { "inventory-v2": "inventory" }`, with
 * `compare.ignore`), and `GET /v1/events/{id}`'s `shadowComparisons` through the whole application.
 */
import { assert, describe, it } from "@effect/vitest"
import { HttpClientRequest } from "@effect/platform"
import { DateTime, Effect, Either, Schedule } from "effect"
import * as Config from "../src/Config.js"
import type * as Event from "../src/Event.js"
import * as Router from "../src/Router.js"
import * as Target from "../src/Target.js"
import { reply, startServer } from "./integration/helpers.js"
import { prepare, request, start } from "./Main.helpers.js"

const target = (name: string) =>
  Target.make(name, { request: () => HttpClientRequest.get(`http://127.0.0.1:1/${name}`) })
const event = (type: string): Event.Any => ({
  id: "e",
  type,
  payload: {},
  headers: {},
  createdAt: DateTime.unsafeMake(0)
})

describe("Router.compareAnswers", () => {
  it("match: the same status and JSON, whatever the order of members", () => {
    const result = Router.compareAnswers(
      { status: 200, body: { a: 1, b: { c: [1, 2] } } },
      { status: 200, body: { b: { c: [1, 2] }, a: 1 } }
    )
    assert.deepStrictEqual(result, { result: "match", differences: [] })
  })

  it("differ: the status first, then each differing value, missing member and extra element by pointer", () => {
    const result = Router.compareAnswers(
      { status: 200, body: { a: 1, gone: true, list: [1, 2], "x/y": "p" } },
      { status: 201, body: { a: 2, list: [1, 2, 3], "x/y": "q" } }
    )
    assert.strictEqual(result.result, "differ")
    assert.deepStrictEqual(result.differences, [
      { at: "status", primary: 200, shadow: 201 },
      { at: "/a", primary: 1, shadow: 2 },
      { at: "/gone", primary: true, shadow: undefined },
      { at: "/list/2", primary: undefined, shadow: 3 },
      { at: "/x~1y", primary: "p", shadow: "q" }
    ])
  })

  it("ignored pointers, with * for any one segment, and everything below them", () => {
    const primary = {
      status: 200,
      body: { at: "t1", items: [{ id: 1, seen: "x" }, { id: 2, seen: "y" }], meta: { trace: "a" } }
    }
    const shadow = {
      status: 200,
      body: { at: "t2", items: [{ id: 1, seen: "z" }, { id: 2, seen: "w" }], meta: { trace: "b", more: 1 } }
    }
    assert.strictEqual(Router.compareAnswers(primary, shadow).result, "differ")
    assert.deepStrictEqual(Router.compareAnswers(primary, shadow, ["/at", "/items/*/seen", "/meta"]), {
      result: "match",
      differences: []
    })
    const still = Router.compareAnswers(
      primary,
      { ...shadow, body: { ...shadow.body, items: [{ id: 9, seen: "z" }] } },
      [
        "/at",
        "/items/*/seen",
        "/meta"
      ]
    )
    assert.deepStrictEqual(still.differences.map((d) => d.at), ["/items/0/id", "/items/1"])
  })

  it("a non-JSON body is compared as a value; at most 20 differences", () => {
    assert.strictEqual(Router.compareAnswers({ status: 200, body: "ok" }, { status: 200, body: "ok" }).result, "match")
    const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, i]))
    const none = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, -i - 1]))
    assert.strictEqual(
      Router.compareAnswers({ status: 200, body: many }, { status: 200, body: none }).differences.length,
      20
    )
  })
})

describe("Router mirrors", () => {
  it("mirrorsOf: the shadows of an event that mirror one of its primaries, with the route's ignored paths", () => {
    const router = Router.make()
      .route("order.*", [target("inventory")], {
        shadow: [target("inventory-v2"), target("audit")],
        mirrors: { "inventory-v2": "inventory" },
        compare: { ignore: ["/at"] }
      })
    assert.deepStrictEqual(router.mirrorsOf(event("order.placed")), [
      { shadow: "inventory-v2", primary: "inventory", ignore: ["/at"] }
    ])
    assert.deepStrictEqual(router.mirrorsOf(event("invoice.sent")), [])
    // the array form stays: no comparison
    assert.deepStrictEqual(Router.make().route("x", [target("a")], { shadow: [target("b")] }).mirrorsOf(event("x")), [])
  })

  it("a mirror must be one of the route's shadows, and its primary one of its targets", () => {
    assert.throws(
      () => Router.make().route("x", [target("a")], { shadow: [target("b")], mirrors: { c: "a" } }),
      /c mirrors a but is not one of its shadow targets/
    )
    assert.throws(
      () => Router.make().route("x", [target("a")], { shadow: [target("b")], mirrors: { b: "z" } }),
      /b mirrors z, which is not one of its targets/
    )
  })
})

const base = {
  targets: {
    inventory: { url: "http://127.0.0.1:1/inventory" },
    "inventory-v2": { url: "http://127.0.0.1:1/inventory-v2" }
  }
}

const build = (routes: unknown) =>
  Effect.runSync(
    Effect.either(Effect.flatMap(Config.decode("f.json", { ...base, routes }), (c) => Config.build("f.json", c, {})))
  )

describe("Config: shadow as { shadow: primary }", () => {
  it("the object form builds a router whose mirrors and ignored paths are the configuration's", () => {
    const built = build({
      "order.*": { targets: ["inventory"], shadow: { "inventory-v2": "inventory" }, compare: { ignore: ["/at"] } }
    })
    assert.isTrue(Either.isRight(built))
    if (Either.isRight(built)) {
      assert.deepStrictEqual(built.right.router.mirrorsOf(event("order.placed")), [
        { shadow: "inventory-v2", primary: "inventory", ignore: ["/at"] }
      ])
      assert.deepStrictEqual(built.right.router.resolve(event("order.placed")).shadow.map((t) => t.name), [
        "inventory-v2"
      ])
    }
  })

  it("an unknown shadow, a primary that is not one of the route's targets, a bad pointer: refused by path", () => {
    const unknown = build({ "order.*": { targets: ["inventory"], shadow: { nobody: "inventory" } } })
    assert.isTrue(Either.isLeft(unknown))
    if (Either.isLeft(unknown)) {
      assert.deepStrictEqual(unknown.left.issues.map((i) => i.path), ["routes[\"order.*\"].shadow[\"nobody\"]"])
    }
    const primary = build({ "order.*": { targets: ["inventory"], shadow: { "inventory-v2": "billing" } } })
    assert.isTrue(Either.isLeft(primary))
    if (Either.isLeft(primary)) {
      assert.include(
        primary.left.message,
        "routes[\"order.*\"].shadow[\"inventory-v2\"]: Expected the primary inventory-v2 mirrors"
      )
    }
    const pointer = build({
      "order.*": { targets: ["inventory"], shadow: { "inventory-v2": "inventory" }, compare: { ignore: ["at"] } }
    })
    assert.isTrue(Either.isLeft(pointer) && pointer.left.message.includes("Expected a JSON Pointer"))
  })
})

/** Polls `get` until `done` holds (every 20 ms, 20 s at most). */
const until = <A>(get: Effect.Effect<A>, done: (a: A) => boolean) =>
  get.pipe(
    Effect.filterOrFail(done, () => "not yet" as const),
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("condition not reached in 20 s") })
  )

describe("GET /v1/events/{id}: shadowComparisons", () => {
  it.scopedLive("status only when no answer is stored; status and body when they are (an aggregate keeps them)", () =>
    Effect.gen(function*() {
      // inventory answers 200 { ok, at }; the v2 shadow 201 for "d-" ids, else 200 with another `at`.
      const targets = yield* startServer((req, res, r) => {
        const id = JSON.parse(r.body).id as string
        const v2 = req.url === "/inventory-v2"
        reply(res, v2 && id.startsWith("d-") ? 201 : 200, { ok: true, at: v2 ? "later" : "now", id })
      })
      const app = yield* prepare({
        server: { port: 0 },
        store: { memory: true },
        targets: {
          inventory: { url: `${targets.url}/inventory` },
          "inventory-v2": { url: `${targets.url}/inventory-v2` }
        },
        routes: {
          "order.*": { targets: ["inventory"], shadow: { "inventory-v2": "inventory" }, compare: { ignore: ["/at"] } }
        },
        // An aggregate for order.kept: its answers are stored, so the bodies are compared too.
        aggregates: { "order.kept": ({ responses }: { responses: Record<string, unknown> }) => responses }
      })
      const url = yield* start(app, { worker: { pollInterval: "20 millis" } })
      const settled = (id: string) =>
        until(request(`${url}/v1/events/${id}`), (r) => r.body.shadowComparisons?.[0]?.result !== "pending")

      for (const [id, type] of [["d-1", "order.placed"], ["m-1", "order.placed"], ["k-1", "order.kept"]] as const) {
        const sent = yield* request(`${url}/v1/events`, { method: "POST", json: { id, type, payload: {} } })
        assert.strictEqual(sent.status, 202, sent.text)
      }
      const differ = (yield* settled("d-1")).body.shadowComparisons
      assert.deepStrictEqual(differ, [{
        shadow: "inventory-v2",
        primary: "inventory",
        result: "differ",
        compared: ["status"],
        differences: [{ at: "status", primary: 200, shadow: 201 }]
      }])
      const match = (yield* settled("m-1")).body.shadowComparisons
      assert.deepStrictEqual(match[0].result, "match")
      assert.deepStrictEqual(match[0].compared, ["status"])
      const kept = (yield* settled("k-1")).body.shadowComparisons
      assert.deepStrictEqual(kept[0], {
        shadow: "inventory-v2",
        primary: "inventory",
        result: "match",
        compared: ["status", "body"],
        differences: []
      })
    }))
})
