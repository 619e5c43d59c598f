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
 *   (`wakeups` `LISTEN`s to it, on a connection of its own that heals: see {@link listener}). An enqueue of its own notifies right after its commit, coalesced,
 *   from one background fiber: a NOTIFY inside a transaction takes a database-wide lock at commit,
 *   which would serialise every enqueue. Inside an application's transaction the NOTIFY is part of
 *   the statement and goes out when the application commits.
 * - Lease times come from each process's clock: keep clocks in sync (NTP) and leases much longer
 *   than the skew.
 *
 * @since 0.1.0
 */
import { createRequire } from "node:module"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Reactivity from "@effect/experimental/Reactivity"
import {
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  Metric,
  PubSub,
  Random,
  RcMap,
  Redacted,
  type Scope,
  Stream
} from "effect"
import * as Metrics from "../Metrics.js"
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
  /**
   * How often the `LISTEN` connection is checked with a `SELECT 1` (default 10 seconds); a check
   * that fails, or takes longer than this interval or 5 s (whichever is shorter), counts as a lost
   * connection (see {@link listener}).
   */
  readonly listenHealthCheck?: Duration.DurationInput | undefined
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
  Effect.gen(function*() {
    const client = yield* PgClient.PgClient
    return yield* Sql.make({
      prefix: options.prefix,
      joinTransactions: true,
      groupCommit: groupCommit(options),
      listen: yield* listener(client.config, options)
    })
  })

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
      listen: yield* listener(client.config, options)
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

// ---------------------------------------------------------------------------------------------
// LISTEN that heals
// ---------------------------------------------------------------------------------------------

/** The little of `pg`'s `Client` the listener uses. */
interface PgListenClient {
  readonly processID: number | null
  connect(): Promise<void>
  query(text: string): Promise<unknown>
  end(): Promise<void>
  on(
    event: "notification",
    listener: (message: { readonly channel: string; readonly payload?: string | undefined }) => void
  ): unknown
  on(event: "error", listener: (error: Error) => void): unknown
  on(event: "end", listener: () => void): unknown
}

interface PgModule {
  readonly Client: new(config: Record<string, unknown>) => PgListenClient
  readonly escapeIdentifier: (name: string) => string
}

let pgModule: PgModule | undefined

/** `pg` as `@effect/sql-pg` itself loads it (its dependency): the very driver and version of the pool. */
const loadPg = (): PgModule => {
  if (pgModule === undefined) {
    const require = createRequire(import.meta.url)
    pgModule = createRequire(require.resolve("@effect/sql-pg/PgClient"))("pg") as PgModule
  }
  return pgModule
}

/** The connection settings of a `PgClient`'s pool, as `PgClient.make` gives them to `pg`, for one more connection. */
const connectionConfig = (config: PgClient.PgClientConfig): Record<string, unknown> => {
  const name = config.applicationName ?? "@effect/sql-pg"
  return {
    connectionString: config.url === undefined ? undefined : Redacted.value(config.url),
    user: config.username,
    host: config.host,
    database: config.database,
    password: config.password === undefined ? undefined : Redacted.value(config.password),
    ssl: config.ssl,
    port: config.port,
    ...(config.stream === undefined ? {} : { stream: config.stream }),
    connectionTimeoutMillis: config.connectTimeout === undefined ? 10_000 : Duration.toMillis(config.connectTimeout),
    // Its own name (PostgreSQL keeps 63 bytes), so operators can tell it from the pool in pg_stat_activity.
    application_name: `${name.slice(0, 56)}:listen`,
    // TCP keepalives, so that a peer gone silent is found by the kernel too (the health check below finds it sooner).
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000
  }
}

/** Why one LISTEN connection ended (or never started). */
class ListenLost extends Data.TaggedError("ListenLost")<{ readonly reason: string }> {}

const messageOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** After the n-th failure in a row: 250 ms doubling up to 30 s, each between half and all of it (jitter). */
const backoffMillis = (failures: number) =>
  Effect.map(Random.next, (r) => {
    const ceiling = Math.min(30_000, 250 * 2 ** Math.min(failures - 1, 16))
    return Math.round(ceiling / 2 + (r * ceiling) / 2)
  })

/**
 * One LISTEN connection's life: connect, `LISTEN`, `onListening`, then forward every notification
 * to `publish` until the connection is lost — an `error` or `end` event of the client (the backend
 * was terminated, the server restarted, the socket reset) or a health check (`SELECT 1` every
 * `healthEvery`) that fails or gets no answer within `healthEvery` or 5 s (a socket gone silent).
 * Fails with why; never succeeds.
 */
const listenOnce = (
  pg: PgModule,
  config: Record<string, unknown>,
  channel: string,
  healthEvery: Duration.Duration,
  publish: (payload: string) => void,
  onListening: (backend: number | null) => Effect.Effect<void>
): Effect.Effect<never, ListenLost, Scope.Scope> =>
  Effect.gen(function*() {
    const lost = yield* Deferred.make<never, ListenLost>()
    const lose = (reason: string) => Deferred.unsafeDone(lost, Exit.fail(new ListenLost({ reason })))
    const client = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const client = new pg.Client(config)
          // Never removed: a pg client that emits `error` with no listener throws, which would end the process.
          client.on("error", (error) => lose(messageOf(error)))
          client.on("end", () => lose("the connection ended"))
          return client
        },
        catch: (cause) => new ListenLost({ reason: messageOf(cause) })
      }),
      // Not awaited: a dead socket may never answer the goodbye.
      (client) => Effect.sync(() => void client.end().catch(() => undefined))
    )
    const run = (what: string, query: () => Promise<unknown>) =>
      Effect.tryPromise({ try: query, catch: (cause) => new ListenLost({ reason: `${what}: ${messageOf(cause)}` }) })
    yield* run("connect", () => client.connect())
    client.on("notification", (message) => {
      if (message.channel === channel) publish(message.payload ?? "")
    })
    yield* run("LISTEN", () => client.query(`LISTEN ${pg.escapeIdentifier(channel)}`))
    yield* onListening(client.processID)
    const patience = Duration.min(healthEvery, Duration.seconds(5))
    yield* run("health check", () => client.query("SELECT 1")).pipe(
      Effect.timeoutFail({
        duration: patience,
        onTimeout: () => new ListenLost({ reason: `health check: no answer within ${Duration.format(patience)}` })
      }),
      Effect.delay(healthEvery),
      Effect.forever,
      Effect.catchAll((error) => Effect.sync(() => lose(error.reason))),
      Effect.forkScoped
    )
    return yield* Deferred.await(lost)
  })

/**
 * The `listen` given to the SQL store: `LISTEN` on a dedicated connection (not `@effect/sql-pg`'s,
 * which swallows its connection's errors, so a lost connection goes unnoticed and wake-ups silently
 * fall back to polling). One connection per channel, shared by every subscriber, opened on the
 * first subscription and closed after the last (or with the store).
 *
 * When the connection is lost (its client's `error`/`end` event, or a failed or hung `SELECT 1`
 * health check), the listener logs a warning and connects again with backoff (250 ms doubling up to
 * 30 s, jittered; reset once listening). Once it listens again it logs, counts
 * `fanout_store_listen_reconnects_total`, and wakes every subscriber once: the notifications sent
 * meanwhile were lost, so the workers make one catch-up poll. `fanout_store_listening` is 1 while
 * listening, 0 while reconnecting.
 */
const listener = (
  config: PgClient.PgClientConfig,
  options: Pick<StoreOptions, "listenHealthCheck">
): Effect.Effect<(channel: string) => Stream.Stream<string>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const connection = connectionConfig(config)
    const healthEvery = Duration.decode(options.listenHealthCheck ?? "10 seconds")
    const maintain = (channel: string, pubsub: PubSub.PubSub<string>) =>
      Effect.gen(function*() {
        const pg = yield* Effect.try(loadPg)
        const reconnects = Metrics.storeListenReconnects.pipe(Metric.tagged("channel", channel))
        const listening = Metrics.storeListening.pipe(Metric.tagged("channel", channel))
        const publish = (payload: string) => void pubsub.unsafeOffer(payload)
        let sessions = 0
        let failures = 0
        for (;;) {
          let listened = false
          const onListening = (backend: number | null) =>
            Effect.gen(function*() {
              listened = true
              failures = 0
              yield* Metric.set(listening, 1)
              if (sessions > 0) {
                yield* Metric.increment(reconnects)
                yield* Effect.logInfo("fanout store: LISTEN restored; waking the workers for a catch-up poll").pipe(
                  Effect.annotateLogs({ channel, backend })
                )
                publish("")
              }
            })
          const lost = yield* Effect.flip(
            Effect.scoped(listenOnce(pg, connection, channel, healthEvery, publish, onListening))
          )
          sessions++
          failures++
          yield* Metric.set(listening, 0)
          const delay = yield* backoffMillis(failures)
          yield* Effect.logWarning(
            listened
              ? `fanout store: LISTEN connection lost (${lost.reason}); wake-ups fall back to polling until it is back; re-listening in ${delay} ms`
              : `fanout store: LISTEN failed (${lost.reason}); retrying in ${delay} ms`
          ).pipe(Effect.annotateLogs({ channel, attempt: failures }))
          yield* Effect.sleep(delay)
        }
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("fanout store: LISTEN stopped; wake-ups come from polling only", cause)
        )
      )
    const channels = yield* RcMap.make({
      lookup: (channel: string) =>
        Effect.gen(function*() {
          const pubsub = yield* Effect.acquireRelease(PubSub.sliding<string>(16), PubSub.shutdown)
          yield* Effect.forkScoped(maintain(channel, pubsub))
          return pubsub
        })
    })
    return (channel: string) =>
      Stream.unwrapScoped(Effect.map(RcMap.get(channels, channel), (pubsub) => Stream.fromPubSub(pubsub)))
  })
