/**
 * Replay: a target that fails permanently (400) sends its deliveries to the dead-letter queue
 * after one attempt each; once the target is "fixed", one bulk replay delivers them all with their
 * original idempotency keys, and the history keeps both attempts. On SQLite (and PostgreSQL when up).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import * as Outbox from "../../src/Outbox.js"
import * as Postgres from "../../src/Store/Postgres.js"
import * as Sqlite from "../../src/Store/Sqlite.js"
import type * as Store from "../../src/Store.js"
import { Event, Router, Target, Worker } from "../../src/index.js"
import {
  dropPrefix,
  PG_URL,
  postgresAvailable,
  requirePostgres,
  startReceiver,
  uniquePrefix,
  waitFor
} from "./helpers.js"

const Refund = Event.define("refund.issued", Schema.Struct({ n: Schema.Number }))
const dir = mkdtempSync(join(tmpdir(), "fanout-replay-"))
const pgUp = await postgresAvailable()
const prefixes: Array<string> = []
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  for (const p of prefixes) await dropPrefix(p).catch(() => {})
})

const scenario = async (label: string, storeLayer: Layer.Layer<Store.DeliveryStore, Store.StoreError>) => {
  let fixed = false
  const receiver = await startReceiver((path) => path === "/ledger" && !fixed ? 400 : "ok")
  const post = (path: string) => (event: Event.Event<string, unknown>) =>
    HttpClientRequest.post(`${receiver.url}/${path}`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
  const Ledger = Target.make("ledger", { request: post("ledger") })
  const Audit = Target.make("audit", { request: post("audit") })
  const router = Router.make(Refund).route(Refund, [Ledger, Audit])
  const N = 30
  const program = Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const ids: Array<string> = []
    for (let n = 0; n < N; n++) {
      const event = yield* Refund.make({ n }, { id: `${label}-${Date.now()}-${n}` })
      ids.push(event.id)
      yield* outbox.enqueue(event)
    }
    const stats = () => Effect.runPromise(outbox.stats)
    yield* Effect.promise(() => waitFor("ledger all dead", async () => (await stats()).dead === N, 30_000))
    yield* Effect.promise(() => waitFor("audit all delivered", async () => (await stats()).delivered === N, 30_000))
    const page = yield* outbox.deadLetters({ limit: 100, target: "ledger" })
    assert.strictEqual(page.items.length, N)
    for (const item of page.items) {
      assert.strictEqual(item.reason, "permanent")
      assert.strictEqual(item.lastError, "http_400")
      assert.strictEqual(item.attempts, 1)
    }
    assert.strictEqual(
      receiver.receipts.filter((r) => r.path === "/ledger").length,
      N,
      "one attempt each: 400 is not retried"
    )

    fixed = true
    const replayed = yield* outbox.replayMany({ target: "ledger" })
    assert.strictEqual(replayed, N)
    yield* Effect.promise(() => waitFor("replayed delivered", async () => (await stats()).delivered === 2 * N, 30_000))
    assert.strictEqual((yield* outbox.deadLetters({ limit: 100 })).items.length, 0)
    for (const id of ids) {
      const key = `${id}:ledger`
      const seen = receiver.byKey.get(key) ?? []
      assert.deepStrictEqual(seen.map((r) => r.answer), [400, "ok"], `${key}: the replay used the original key`)
      const d = Option.getOrThrow(yield* outbox.status(id)).deliveries.find((x) => x.target === "ledger")!
      assert.strictEqual(d.status, "delivered")
      assert.deepStrictEqual(d.history.map((h) => [h.number, h.outcome]), [[1, "http_400"], [2, "success"]])
      assert.strictEqual(d.idempotencyKey, key)
    }
  })
  const targets = Layer.mergeAll(Ledger.layer, Audit.layer).pipe(Layer.provide(NodeHttpClient.layerUndici))
  const app = Layer.mergeAll(Outbox.layer(router), Worker.layer({ router, pollInterval: "100 millis" })).pipe(
    Layer.provideMerge(Layer.merge(storeLayer, targets))
  )
  try {
    await Effect.runPromise(program.pipe(Effect.provide(app)))
  } finally {
    await receiver.close()
  }
}

describe("dead letters and replay", () => {
  it("SQLite: 400s go to the DLQ; after the fix a bulk replay delivers them with their original keys", {
    timeout: 60_000
  }, async () => {
    await scenario("sqlite", Sqlite.layer({ filename: join(dir, "replay.db") }))
  })

  it.runIf(pgUp || requirePostgres)("PostgreSQL: the same", { timeout: 60_000 }, async () => {
    assert.isTrue(pgUp, `PostgreSQL must be reachable at ${PG_URL}`)
    const prefix = uniquePrefix("replay")
    prefixes.push(prefix)
    await scenario("pg", Postgres.layer({ url: PG_URL, prefix }))
  })
})
