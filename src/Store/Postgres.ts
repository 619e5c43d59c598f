/**
 * The shared {@link Store.DeliveryStore}: PostgreSQL (`@effect/sql-pg`), for several server and
 * worker processes on several machines over one database.
 *
 * - Claims are one statement: per target, `SELECT … FOR UPDATE SKIP LOCKED` picks due rows
 *   (pending and due, or in flight with an expired lease — a crashed worker's), round-robin across
 *   targets, and marks them in flight under a fresh lease token. Concurrent claimers never block on
 *   each other and never get the same row.
 * - Group commit: concurrent enqueues, finishes and lease extensions of one process are written by
 *   one multi-row statement (arrays through `unnest`), one transaction and one commit for all;
 *   finishes stay fenced per row. Each caller is answered after that commit. If the statement fails,
 *   each operation runs again alone, so a failing one sinks only itself.
 * - finish / extendLease / release are fenced single statements (alone, or rows of the group's statement).
 * - enqueue and replay `NOTIFY <prefix>work`, so idle workers in any process wake at once
 *   (`wakeups` `LISTEN`s to it). An enqueue of its own notifies right after its commit, coalesced,
 *   from one background fiber: a NOTIFY inside a transaction takes a database-wide lock at commit,
 *   which would serialise every enqueue. Inside an application's transaction the NOTIFY is part of
 *   the statement and goes out when the application commits.
 * - Lease times come from each process's clock: keep clocks in sync (NTP) and leases much longer
 *   than the skew.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import { Effect, Layer, Redacted, type Scope } from "effect"
import * as Store from "../Store.js"
import * as Sql from "./Sql.js"

/**
 * Options shared by every PostgreSQL variant.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoreOptions {
  /** Table prefix (default `"fanout_"`); also names the notification channel `<prefix>work`. */
  readonly prefix?: string | undefined
  /**
   * Group commit (default on): concurrent enqueues, finishes and lease extensions of this process
   * share one statement — one transaction, one commit. `false`: one statement (and commit) each.
   */
  readonly groupCommit?: boolean | undefined
  /** Most operations per group commit (default 512). */
  readonly maxBatch?: number | undefined
  /** Group-commit statements in flight at once, each on a pooled connection (default 1). */
  readonly writers?: number | undefined
}

const groupCommit = (options: StoreOptions): Sql.Options["groupCommit"] =>
  options.groupCommit === false ? undefined : { maxBatch: options.maxBatch, writers: options.writers }

/**
 * Options of {@link layer} / {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends StoreOptions {
  /** `postgres://user:password@host:port/database` */
  readonly url: string | Redacted.Redacted<string>
  /** Pool size (default 10). */
  readonly maxConnections?: number | undefined
  readonly applicationName?: string | undefined
}

/**
 * A store over the `PgClient` in context (the application's): enqueue inside the application's
 * `sql.withTransaction` joins it (transactional outbox).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWithClient = (
  options: StoreOptions = {}
): Effect.Effect<Store.DeliveryStore, Store.StoreError, PgClient.PgClient | SqlClient.SqlClient | Scope.Scope> =>
  Effect.flatMap(PgClient.PgClient, (client) =>
    Sql.make({
      prefix: options.prefix,
      joinTransactions: true,
      groupCommit: groupCommit(options),
      listen: (channel) => client.listen(channel)
    }))

/**
 * Connects a pool of its own and builds the store on it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Store.DeliveryStore, Store.StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* PgClient.make({
      url: typeof options.url === "string" ? Redacted.make(options.url) : options.url,
      maxConnections: options.maxConnections ?? 10,
      applicationName: options.applicationName ?? "fanout"
    }).pipe(
      Effect.provide(Reactivity.layer),
      Effect.mapError(Sql.fromSqlError("open"))
    )
    return yield* Sql.make({
      prefix: options.prefix,
      joinTransactions: false,
      groupCommit: groupCommit(options),
      listen: (channel) => client.listen(channel)
    }).pipe(Effect.provideService(PgClient.PgClient, client), Effect.provideService(SqlClient.SqlClient, client))
  })

/**
 * The PostgreSQL store on a pool of its own.
 *
 * @example
 * ```ts
 * const StoreLive = PostgresStore.layer({ url: Redacted.make(process.env.DATABASE_URL!) })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Store.DeliveryStore, Store.StoreError> =>
  Layer.scoped(Store.DeliveryStore, make(options))

/**
 * The PostgreSQL store on the application's `PgClient` (provide `PgClient.layer(...)`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerClient = (
  options: StoreOptions = {}
): Layer.Layer<Store.DeliveryStore, Store.StoreError, PgClient.PgClient | SqlClient.SqlClient> =>
  Layer.scoped(Store.DeliveryStore, makeWithClient(options))
