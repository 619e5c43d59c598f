/**
 * `GET /v1/events` through the real server: a SQLite store, a real worker, loopback targets. The
 * search finds events by type, delivery status, target and time, pages with the opaque cursor,
 * refuses bad parameters with the one error shape, and sits behind the API key like every `/v1` route.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as Fault from "../../src/testing/Fault.js"
import { isErrorShape, start } from "./harness.js"

const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

const tempFile = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-search-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => join(dir, "fanout.db")))

const KEY = "search-key-1"
const auth = { authorization: `Bearer ${KEY}` }

describe("GET /v1/events", () => {
  it.scopedLive(
    "finds events by type, status, target and time, pages by cursor, refuses bad parameters",
    () =>
      Effect.gen(function*() {
        const h = yield* start({
          store: SqliteStore.layer({ filename: yield* tempFile }),
          worker: true,
          server: { apiKeys: [KEY] },
          routes: [["order.*", ["a", "b"]], ["user.*", ["a"]]],
          targets: { a: undefined, b: () => Fault.status(422) }
        })
        const post = (body: unknown) =>
          promise(() => h.request("/v1/events?wait=settled", { json: body, headers: auth })).pipe(
            Effect.tap((reply) => assert.strictEqual(reply.status, 200, reply.text))
          )
        for (let i = 1; i <= 5; i++) yield* post({ id: `ord-${i}`, type: "order.placed", payload: { i } })
        yield* post({ id: "usr-1", type: "user.created", payload: {} })
        const get = (query: string) => promise(() => h.request(`/v1/events${query}`, { headers: auth }))

        const all = yield* get("")
        assert.strictEqual(all.status, 200, all.text)
        assert.deepStrictEqual(all.body.items.map((e: any) => e.id), [
          "usr-1",
          "ord-5",
          "ord-4",
          "ord-3",
          "ord-2",
          "ord-1"
        ])
        assert.isUndefined(all.body.next)
        const first = all.body.items[1]
        assert.strictEqual(first.type, "order.placed")
        assert.isFalse(Number.isNaN(Date.parse(first.enqueuedAt)))
        assert.deepStrictEqual(first.deliveries.map((d: any) => [d.target, d.status]).sort(), [["a", "delivered"], [
          "b",
          "dead"
        ]])

        const ids = (reply: { body: any }) => reply.body.items.map((e: any) => e.id)
        assert.deepStrictEqual(ids(yield* get("?type=user.created")), ["usr-1"])
        assert.deepStrictEqual(ids(yield* get("?status=dead&limit=100")), ["ord-5", "ord-4", "ord-3", "ord-2", "ord-1"])
        assert.deepStrictEqual(ids(yield* get("?status=dead&target=a")), [])
        assert.deepStrictEqual(ids(yield* get("?target=b&status=dead&type=order.placed&limit=2")), ["ord-5", "ord-4"])
        assert.deepStrictEqual(ids(yield* get("?status=delivered&target=a&type=user.created")), ["usr-1"])
        const until = encodeURIComponent(all.body.items[5].enqueuedAt)
        assert.deepStrictEqual(ids(yield* get(`?until=${until}`)), ["ord-1"])
        const since = yield* get(`?since=${encodeURIComponent(first.enqueuedAt)}`)
        assert.includeMembers(ids(since), ["usr-1", "ord-5"])
        assert.isTrue(since.body.items.every((e: any) => Date.parse(e.enqueuedAt) >= Date.parse(first.enqueuedAt)))
        assert.notInclude(ids(yield* get(`?since=${Date.parse(first.enqueuedAt) + 1}`)), "ord-5")

        // Pages: opaque cursors, none skipped or repeated.
        const seen: Array<string> = []
        let cursor: string | undefined
        let pages = 0
        do {
          const page = yield* get(`?limit=4${cursor !== undefined ? `&cursor=${encodeURIComponent(cursor)}` : ""}`)
          assert.strictEqual(page.status, 200, page.text)
          seen.push(...ids(page))
          cursor = page.body.next
          pages++
        } while (cursor !== undefined && pages < 10)
        assert.strictEqual(pages, 2)
        assert.deepStrictEqual(seen, ids(all))

        // Bad parameters: 400 with the one error shape, naming the field.
        for (
          const query of ["?status=lost", "?limit=0", "?limit=1001", "?limit=x", "?since=yesterday", "?cursor=zzz"]
        ) {
          const reply = yield* get(query)
          assert.strictEqual(reply.status, 400, `${query}: ${reply.text}`)
          assert.isTrue(isErrorShape(reply.body, 400), reply.text)
        }
        // Behind the API key.
        const anonymous = yield* promise(() => h.request("/v1/events"))
        assert.strictEqual(anonymous.status, 401)
        assert.isTrue(isErrorShape(anonymous.body, 401))
      }),
    60_000
  )
})
