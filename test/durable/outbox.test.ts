/**
 * The transactional outbox at the library level: `Outbox.enqueue` inside the application's own
 * `sql.withTransaction`, on the same SQLite file (and on PostgreSQL), with a worker running over the
 * same store. A rollback leaves no event (and nothing is ever sent); a commit leaves exactly one,
 * which the worker then delivers to both targets.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Redacted, Schema } from "effect"
import * as Outbox from "../../src/Outbox.js"
import * as Postgres from "../../src/Store/Postgres.js"
import * as Sqlite from "../../src/Store/Sqlite.js"
import * as Store from "../../src/Store.js"
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

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, total: Schema.Number }))

const dir = mkdtempSync(join(tmpdir(), "fanout-outbox-"))
const pgUp = await postgresAvailable()
const prefixes: Array<string> = []
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  for (const p of prefixes) await dropPrefix(p).catch(() => {})
})

const scenario = async (
  dialect: "sqlite" | "pg",
  client: Layer.Layer<SqlClient.SqlClient | any, any>,
  storeLayer: Layer.Layer<Store.DeliveryStore, Store.StoreError, any>
) => {
  const receiver = await startReceiver(() => "ok")
  const post = (path: string) => (event: Event.Event<string, { readonly orderId: string }>) =>
    HttpClientRequest.post(`${receiver.url}/${path}`).pipe(
      HttpClientRequest.bodyUnsafeJson({ order: event.payload.orderId })
    )
  const Inventory = Target.make("inventory", { request: post("inventory") })
  const Email = Target.make("email", { request: post("email") })
  const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Email])
  const table = `orders_${uniquePrefix(dialect).replace(/^t_/, "")}`.slice(0, 50).replace(/_$/, "")
  const run = `${dialect}-${Date.now()}`

  const program = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox.Outbox
    const store = yield* Store.DeliveryStore
    const worker = yield* Worker.Worker
    yield* sql.unsafe(`CREATE TABLE ${table} (id TEXT PRIMARY KEY)`)
    const count = Effect.map(
      sql.unsafe<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`),
      (r) => Number(r[0]!.n)
    )

    // Rollback: the order and its event go together.
    const declined = yield* OrderPlaced.make({ orderId: "o-1", total: 10 }, { id: `${run}-declined` })
    const rolledBack = yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql.unsafe(`INSERT INTO ${table} (id) VALUES ('o-1')`)
      const enqueued = yield* outbox.enqueue(declined)
      assert.isTrue(enqueued.created)
      // Inside the transaction the event is there…
      assert.isTrue(Option.isSome(yield* store.status(declined.id)))
      return yield* Effect.fail("payment declined" as const)
    })).pipe(Effect.either)
    assert.deepStrictEqual(rolledBack._tag, "Left")
    // …and after the rollback it is not, nor is the order.
    assert.isTrue(Option.isNone(yield* store.status(declined.id)))
    assert.strictEqual(yield* count, 0)

    // Commit: exactly one event, with one delivery per target.
    const placed = yield* OrderPlaced.make({ orderId: "o-2", total: 20 }, { id: `${run}-placed` })
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql.unsafe(`INSERT INTO ${table} (id) VALUES ('o-2')`)
      yield* outbox.enqueue(placed)
    }))
    assert.strictEqual(yield* count, 1)
    const status = Option.getOrThrow(yield* store.status(placed.id))
    assert.deepStrictEqual(status.deliveries.map((d) => d.target).sort(), ["email", "inventory"])

    // The worker (running all along) delivers the committed event, never the rolled-back one.
    // Once both deliveries are recorded nothing is left to send (the rolled-back event was never
    // stored, see above), so the receipts are final: no sleep needed before reading them. The
    // worker counts a delivery just after the store has recorded it, so wait for both.
    yield* Effect.promise(() =>
      waitFor(
        "recorded",
        () =>
          Effect.runPromise(
            Effect.zipWith(store.stats, worker.state, (s, w) => s.delivered === 2 && w.delivered === 2)
          ),
        20_000
      )
    )
    assert.deepStrictEqual(
      receiver.receipts.map((r) => r.key).sort(),
      [`${placed.id}:email`, `${placed.id}:inventory`]
    )
    const after = yield* store.stats
    assert.strictEqual(after.delivered, 2)
    assert.strictEqual(after.depth, 0)
    assert.strictEqual((yield* worker.state).delivered, 2)
    yield* sql.unsafe(`DROP TABLE ${table}`)
  })

  const targets = Layer.mergeAll(Inventory.layer, Email.layer).pipe(Layer.provide(NodeHttpClient.layerUndici))
  const storeAndClient = storeLayer.pipe(Layer.provideMerge(client))
  const app = Layer.mergeAll(
    Outbox.layer(router),
    Worker.layer({ router, pollInterval: "100 millis", workerId: `outbox-${dialect}` })
  ).pipe(Layer.provideMerge(Layer.merge(storeAndClient, targets)))
  try {
    await Effect.runPromise(
      program.pipe(Effect.provide(app as Layer.Layer<any, any, never>)) as Effect.Effect<void, unknown>
    )
  } finally {
    await receiver.close()
  }
}

describe("transactional outbox (library level)", () => {
  it(
    "SQLite: enqueue joins the app's transaction on the same file; rollback leaves nothing, commit one event, delivered",
    {
      timeout: 60_000
    },
    async () => {
      const filename = join(dir, "app.db")
      await scenario("sqlite", SqliteClient.layer({ filename }), Sqlite.layerClient({ synchronous: "FULL" }))
    }
  )

  it.runIf(pgUp || requirePostgres)(
    "PostgreSQL: the same through the app's PgClient",
    { timeout: 60_000 },
    async () => {
      assert.isTrue(pgUp, `PostgreSQL must be reachable at ${PG_URL}`)
      const prefix = uniquePrefix("outbox")
      prefixes.push(prefix)
      await scenario("pg", PgClient.layer({ url: Redacted.make(PG_URL) }), Postgres.layerClient({ prefix }))
    }
  )
})
