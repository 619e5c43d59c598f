/**
 * The model-based test of the store (test/Store/StoreModel.ts) on the memory, SQLite and PostgreSQL
 * stores. Worker B is the same instance for memory, a second connection to the same file for SQLite
 * and a second pool on the same tables for PostgreSQL. `FANOUT_MODEL_RUNS` / `FANOUT_MODEL_COMMANDS`
 * run more or longer sequences; `FANOUT_PROP_SEED` replays a printed seed (docs/testing.md).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Redacted } from "effect"
import * as MemoryStore from "../../src/Store/Memory.js"
import * as PostgresStore from "../../src/Store/Postgres.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import { skipReason, url } from "./pgAvailable.js"
import { suite } from "./StoreModel.js"

suite("memory", Effect.map(MemoryStore.make, (store) => ({ a: store, b: store })))

suite(
  "sqlite",
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-model-"))),
      (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
    )
    const filename = join(dir, "outbox.db")
    return { a: yield* SqliteStore.make({ filename }), b: yield* SqliteStore.make({ filename }) }
  })
)

const skip = skipReason("Store/StoreModel.test", "DeliveryStore model: postgres")
const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`
let counter = 0

suite(
  "postgres",
  Effect.gen(function*() {
    const prefix = `fanout_m${runId}_${(counter++).toString(36)}_`
    // Registered first, so it runs after both stores have closed.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const sql = yield* PgClient.make({ url: Redacted.make(url) })
        for (const table of ["attempts", "deliveries", "targets", "events", "migrations"]) {
          yield* sql.unsafe(`DROP TABLE IF EXISTS ${prefix}${table} CASCADE`)
        }
      }).pipe(Effect.scoped, Effect.provide(Reactivity.layer), Effect.orDie)
    )
    const a = yield* PostgresStore.make({ url, prefix, maxConnections: 4 })
    const b = yield* PostgresStore.make({ url, prefix, maxConnections: 4 })
    return { a, b }
  }),
  { skip }
)
