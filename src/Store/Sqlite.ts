/**
 * The embedded {@link Store.DeliveryStore}: one SQLite file (`@effect/sql-sqlite-node`, better-sqlite3),
 * zero setup. The default store.
 *
 * - WAL journal, `synchronous = FULL` by default (a commit is on disk before it is acknowledged;
 *   `"NORMAL"` is faster but may lose the last commits on power loss — see docs/store.md), a busy
 *   timeout, foreign keys on. On a connection of its own the store makes `FULL` itself, off the
 *   event loop: the connection runs at `NORMAL` and each commit's WAL is `fdatasync`'d on libuv's
 *   thread pool before its callers are answered (`flushOffLoop`, walSync.ts).
 * - Writes run in `BEGIN IMMEDIATE` transactions, and small writes share a group commit: concurrent
 *   enqueues (and claims, finishes, …) are committed together, one fsync for many, each caller
 *   answered only after the commit.
 * - Several processes may open the same file (the write lock serialises them); a claim is then
 *   exclusive across processes because it runs inside `BEGIN IMMEDIATE`.
 * - Faults: a write lock held by another connection past `busyTimeoutMs` fails the whole group
 *   commit `Busy`; a full disk (`SQLITE_FULL`) or an I/O error (`SQLITE_IOERR*`) fails it
 *   `Unavailable`. Either way the transaction is rolled back (nothing of it is stored), every caller
 *   of that commit gets the error (the server answers `503` + `Retry-After`), reads go on, and the
 *   next commit after the cause is gone succeeds: there is nothing to reset.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import { Effect, Layer, type Scope } from "effect"
import * as Store from "../Store.js"
import * as Sql from "./Sql.js"
import * as LeanClient from "./sqliteClient.js"
import * as WalSync from "./walSync.js"

/**
 * Options shared by every SQLite variant.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoreOptions {
  /** `"FULL"` (default: durable at acknowledgement) or `"NORMAL"` (faster; last commits may be lost on power loss). */
  readonly synchronous?: "FULL" | "NORMAL" | undefined
  /**
   * How long a write waits for another connection's (another process's) write lock before failing
   * `Busy` (default 5000 ms). better-sqlite3 waits synchronously: the event loop is blocked meanwhile,
   * so a smaller value answers producers `503` sooner while another process holds the lock.
   */
  readonly busyTimeoutMs?: number | undefined
  /** Table prefix (default `"fanout_"`). */
  readonly prefix?: string | undefined
  /** Most operations per group commit (default 512). */
  readonly maxBatch?: number | undefined
}

/**
 * Options of {@link layer} / {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends StoreOptions {
  /** The database file (created if missing). */
  readonly filename: string
  /**
   * With `synchronous: "FULL"`: flush each commit's WAL off the event loop (default `true`). The
   * connection runs at `NORMAL`, and after each commit the WAL file is `fdatasync`'d on libuv's
   * thread pool; callers are answered only after that flush, so what is acknowledged is as durable as
   * with SQLite's own `FULL`, whose flush inside `COMMIT` blocks the event loop. `false`: SQLite's own
   * `FULL`. (Not available with {@link layerClient}: the application's connection is left as it is.)
   */
  readonly flushOffLoop?: boolean | undefined
  /**
   * The `SqlClient` the store opens: `"lean"` (default), Fanout's own client on better-sqlite3 with a
   * plain statement cache (src/Store/sqliteClient.ts), or `"effect"`, `@effect/sql-sqlite-node`'s
   * `SqliteClient`. Both run the same SQL; the lean one spends less per statement.
   */
  readonly client?: "lean" | "effect" | undefined
}

const configure = (options: StoreOptions, flushOffLoop = false) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const synchronous = options.synchronous ?? "FULL"
    if (synchronous !== "FULL" && synchronous !== "NORMAL") {
      return yield* Effect.fail(
        new Store.StoreError({ operation: "open", reason: "InvalidInput", message: `open: synchronous must be FULL or NORMAL` })
      )
    }
    const busyTimeout = options.busyTimeoutMs ?? 5000
    if (!Number.isFinite(busyTimeout) || busyTimeout < 0) {
      return yield* Effect.fail(
        new Store.StoreError({
          operation: "open",
          reason: "InvalidInput",
          message: `open: busyTimeoutMs must be a number of milliseconds >= 0, got ${busyTimeout}`
        })
      )
    }
    const busy = Math.floor(busyTimeout)
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busy}`)
    const mode = yield* sql.unsafe<{ journal_mode: string }>(`PRAGMA journal_mode = WAL`)
    // Only a WAL file can be flushed by hand (an in-memory database has none).
    const offLoop = flushOffLoop && synchronous === "FULL" && mode[0]?.journal_mode === "wal"
    yield* sql.unsafe(`PRAGMA synchronous = ${offLoop ? "NORMAL" : synchronous}`)
    yield* sql.unsafe(`PRAGMA foreign_keys = ON`)
    return offLoop
  }).pipe(Effect.catchTag("SqlError", (error) => Effect.fail(Sql.fromSqlError("open")(error))))

const storeOptions = (options: StoreOptions, joinTransactions: boolean): Sql.Options => ({
  prefix: options.prefix,
  joinTransactions,
  groupCommit: { maxBatch: options.maxBatch }
})

/**
 * A store over the SQLite `SqlClient` in context — the application's own client, so that `enqueue`
 * inside the application's `sql.withTransaction` joins it (transactional outbox). Sets the pragmas
 * above on that connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithClient = (
  options: StoreOptions = {}
): Effect.Effect<Store.DeliveryStore, Store.StoreError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.zipRight(configure(options), Sql.make(storeOptions(options, true)))

/**
 * Opens (or creates) the file with a client of its own and builds the store on it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Store.DeliveryStore, Store.StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const opened: Effect.Effect<SqlClient.SqlClient, unknown, Scope.Scope> = options.client === "effect"
      ? SqliteClient.make({ filename: options.filename }).pipe(Effect.provide(Reactivity.layer))
      : Effect.mapError(LeanClient.make(options.filename), (error) => error.cause)
    const client = yield* opened.pipe(
      Effect.catchAll(Effect.die),
      Effect.catchAllDefect((cause) =>
        Effect.fail(
          new Store.StoreError({
            operation: "open",
            reason: "Unavailable",
            message: `open: cannot open ${options.filename}: ${cause instanceof Error ? cause.message : String(cause)}`,
            cause
          })
        )
      )
    )
    return yield* Effect.gen(function*() {
      const offLoop = yield* configure(options, options.flushOffLoop ?? true)
      if (!offLoop) return yield* Sql.make(storeOptions(options, false))
      const wal = WalSync.make(`${options.filename}-wal`)
      yield* Effect.addFinalizer(() => Effect.sync(() => wal.close()))
      return yield* Sql.make({ ...storeOptions(options, false), flush: wal })
    }).pipe(Effect.provideService(SqlClient.SqlClient, client))
  })

/**
 * The SQLite store on its own connection to `filename`.
 *
 * @example
 * ```ts
 * const StoreLive = SqliteStore.layer({ filename: "./fanout.db" })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Store.DeliveryStore, Store.StoreError> =>
  Layer.scoped(Store.DeliveryStore, make(options))

/**
 * The SQLite store on the application's `SqlClient` (provide `SqliteClient.layer(...)`): enqueue joins
 * the application's open transactions.
 *
 * @example
 * ```ts
 * const Db = SqliteClient.layer({ filename: "./app.db" })
 * const Live = SqliteStore.layerClient().pipe(Layer.provideMerge(Db))
 * // in a handler:
 * sql.withTransaction(Effect.gen(function*() {
 *   yield* sql`INSERT INTO orders ${sql.insert(order)}`
 *   yield* store.enqueue(event, ["inventory", "notification"]) // commits or rolls back with the order
 * }))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (
  options: StoreOptions = {}
): Layer.Layer<Store.DeliveryStore, Store.StoreError, SqlClient.SqlClient> =>
  Layer.scoped(Store.DeliveryStore, makeWithClient(options))
