/**
 * The SQL {@link Store.DeliveryStore}, over any `@effect/sql` `SqlClient` whose dialect is SQLite or
 * PostgreSQL. `SqliteStore` and `PostgresStore` are thin layers over {@link make}; use this module
 * directly only to tune options they do not expose.
 *
 * How it writes:
 * - **Own transactions** (`BEGIN IMMEDIATE` on SQLite, so a write never starts as a reader and fails
 *   with `SQLITE_BUSY_SNAPSHOT`; `BEGIN` on PostgreSQL) with typed commit errors.
 * - **Group commit** (SQLite): enqueue, claim, finish, extendLease and release are queued and one writer
 *   fiber commits whatever has accumulated in one transaction (one fsync). The operations first run one
 *   after another with no savepoints; if one fails, the transaction rolls back and the batch runs again
 *   with each operation inside its own savepoint, so one failure does not sink the others. Callers are
 *   answered only after the commit.
 * - **Constant SQL on the hot paths** (SQLite enqueue, claim, finish, extendLease): fixed statement
 *   texts with `?` parameters, run straight on the transaction's connection, so the client's
 *   prepared-statement cache always hits and no statement is compiled, spanned or scoped per call.
 * - **Single statements** (PostgreSQL): claim (`FOR UPDATE SKIP LOCKED`), finish, extendLease and
 *   replay are one statement each, atomic on their own.
 * - **Joined transactions** (`joinTransactions: true`): an operation called inside an open
 *   `SqlClient` transaction (`sql.withTransaction`) of the same client runs in it — under a savepoint —
 *   and commits or rolls back with it: the transactional outbox.
 *
 * Every state change a worker makes is fenced: `WHERE id = ? AND lease = ? AND status = 'in_flight'`.
 *
 * Dependencies (durable pipelines, migration 0002): each delivery row holds its inputs
 * (`after_targets`), how many are not delivered yet (`waiting`; claims take only rows at 0) and how
 * many deliveries run after it (`dependents`; its answer is stored in `response` only when > 0). A
 * `Delivered` finish decrements `waiting` on the event's deliveries that list it, in the same
 * transaction (PostgreSQL: the same statement), and wakes workers when one became due. A claim of
 * rows with inputs reads their answers with one more query per batch.
 *
 * @since 0.1.0
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import type { Fragment } from "@effect/sql/Statement"
import {
  Cause,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Option,
  Queue,
  Schedule,
  type Scope,
  Stream
} from "effect"
import * as Event from "../Event.js"
import * as Store from "../Store.js"
import {
  checkDependencies,
  checkPositiveInt,
  checkTargets,
  decodeEnvelope,
  dependentCounts,
  encodeEnvelope,
  invalid,
  makeSignal,
  newLeaseToken,
  roundRobin
} from "./internal.js"
import { migrations, type Tables, tables } from "./migrations/index.js"
import { beginTexts, dialectOf, statementTexts, tableFragments } from "./Sql/dialect.js"
import { envelopeParts } from "./Sql/envelope.js"
import { fromSqlError, lift } from "./Sql/errors.js"
import {
  type AttemptRow,
  chunks,
  type ClaimRow,
  type DeliveryRow,
  duplicateOf,
  type EnqueueResult,
  type ExistingRow,
  finalState,
  num,
  optNum,
  optStr,
  parseAfter,
  parseId,
  toAttempt
} from "./Sql/rows.js"
import { type ExecuteSync, syncExecutor } from "./syncConnection.js"

export { envelopeJson, envelopeParts } from "./Sql/envelope.js"
export { fromSqlError } from "./Sql/errors.js"

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Prefix of every table (and of the PostgreSQL notification channel `<prefix>work`): lower-case
   * letters, digits and `_`. Default `"fanout_"`.
   */
  readonly prefix?: string | undefined
  /**
   * Run inside an open transaction of the caller's `SqlClient` when there is one (transactional
   * outbox). Only correct when the store uses the very client the application uses; the layers that
   * open their own client set it to `false` and ignore foreign transactions.
   */
  readonly joinTransactions: boolean
  /** Group commit of small writes (the SQLite layers turn it on). */
  readonly groupCommit?: {
    /** At most this many operations per transaction (default 512). */
    readonly maxBatch?: number | undefined
    /** Operations that may wait for the writer before callers are back-pressured (default 10 000). */
    readonly maxPending?: number | undefined
    /**
     * While the writer is saturated (work was already waiting when its last commit ended), how long it
     * may keep gathering operations before the next commit, in milliseconds (default 1). Commits then
     * carry more operations each (one fsync for many) at the cost of up to this much latency; an idle
     * writer never waits.
     */
    readonly lingerMs?: number | undefined
    /**
     * PostgreSQL: how many batch statements may be in flight at once (default 1), each on a pooled
     * connection; while one commits, the next gathers.
     */
    readonly writers?: number | undefined
  } | undefined
  /**
   * SQLite on a connection of the store's own at `synchronous = NORMAL` standing in for `FULL`: makes
   * everything committed before the call durable (the WAL file's `fdatasync`, off the event loop,
   * see walSync.ts) and then calls `done`. Every write's callers are answered only after it.
   */
  readonly flush?: {
    readonly sync: (done: (error: Error | undefined) => void) => void
    /** Flushes completed (for diagnostics). */
    readonly flushes: () => number
  } | undefined
  /** Cross-process wake-ups: subscribe to a notification channel (PostgreSQL `LISTEN`). */
  readonly listen?: ((channel: string) => Stream.Stream<string, SqlError>) | undefined
}

/**
 * The default table prefix.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPrefix = "fanout_"

const prefixPattern = /^[a-z_][a-z0-9_]{0,39}$/

/** @internal */
export const isValidPrefix = (prefix: string): boolean => prefixPattern.test(prefix)



/**
 * A store operation: an effect over the SQL client (its statements find the transaction's
 * connection in context), or — the SQLite hot paths — a function of the transaction's connection
 * that runs constant SQL texts on it directly (no statement compilation, no span or scope per
 * statement, and the client's prepared-statement cache always hits).
 */
type Op<A> =
  | Effect.Effect<A, SqlError | Store.StoreError>
  | ((conn: Connection) => Effect.Effect<A, SqlError | Store.StoreError>)

/** An operation as plain calls on a synchronous connection (see `syncConnection.ts`); throws the statement's `SqlError`. */
type SyncOp<A> = (exec: ExecuteSync) => A

interface Job {
  readonly op: (conn: Connection) => Effect.Effect<unknown, Store.StoreError>
  /** The same operation as plain calls, when it has such a form (SQLite finish): the fast pass runs it so. */
  readonly sync: SyncOp<unknown> | undefined
  readonly operation: string
  /** Answers the caller, once (a callback, not a `Deferred`: one closure per operation on the hot path). */
  readonly answer: (exit: Exit.Exit<unknown, Store.StoreError>) => void
}

/** Aborts a group commit's fast pass (see `runPlain`). */
const againWithSavepoints = { _tag: "AgainWithSavepoints" } as const

/**
 * Builds the store over the `SqlClient` in context: runs the migrations (under a lock, so several
 * processes may start at once), then answers the {@link Store.DeliveryStore} contract.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Store.DeliveryStore, Store.StoreError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? defaultPrefix
    if (!isValidPrefix(prefix)) {
      return yield* Effect.fail(invalid("open", `bad table prefix ${JSON.stringify(prefix)}: use [a-z_][a-z0-9_]*`))
    }
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const dialect = dialectOf(sql)
    if (dialect === undefined) {
      return yield* Effect.fail(
        new Store.StoreError({ operation: "open", reason: "Unsupported", message: "open: only SQLite and PostgreSQL are supported" })
      )
    }
    const pg = dialect === "pg"
    const names: Tables = tables(prefix)
    const T = tableFragments(sql, names)
    const { batchText, existingMany, finishTexts, insertDeliveries, insertTargets, text } = statementTexts(names)
    /** One statement on the transaction's connection, past `@effect/sql`'s per-statement machinery. */
    const q = (conn: Connection, statement: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<any>, SqlError> =>
      conn.execute(statement, params, undefined)
    const channel = `${prefix}work`
    const signal = yield* makeSignal
    /** Targets known to be committed in the targets table (never removed, so safe to cache). */
    const knownTargets = new Set<string>()
    /**
     * `diagnostics`; besides the contract's three, `notifies`: the `NOTIFY` statements sent after our
     * own commits (PostgreSQL), for the benchmarks.
     */
    const counters = { writeTransactions: 0, writeOperations: 0, largestBatch: 0, notifies: 0 }
    let rotation = 0

    // ---- transactions ------------------------------------------------------------------------

    const exec = (conn: Connection, statement: string) => conn.executeUnprepared(statement, [], undefined)
    const begin = beginTexts(dialect)

    /** Runs `effect` in a transaction of our own on a reserved connection; commit errors are typed. */
    const own = <A, E, R>(
      operation: string,
      kind: "write" | "read",
      effect: Effect.Effect<A, E, R>
    ): Effect.Effect<A, E | Store.StoreError, Exclude<R, SqlClient.TransactionConnection>> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.scoped(
          Effect.gen(function*() {
            const toError = fromSqlError(operation)
            const conn = yield* Effect.mapError(restore(sql.reserve), toError)
            yield* Effect.mapError(exec(conn, kind === "write" ? begin.write : begin.read), toError)
            const exit = yield* Effect.exit(
              restore(effect).pipe(Effect.provideService(SqlClient.TransactionConnection, [conn, 0] as const))
            )
            if (Exit.isFailure(exit)) {
              yield* Effect.ignore(exec(conn, "ROLLBACK"))
              return yield* exit
            }
            const committed = yield* Effect.exit(exec(conn, "COMMIT"))
            if (Exit.isFailure(committed)) {
              yield* Effect.ignore(exec(conn, "ROLLBACK"))
              return yield* Effect.failCause(Cause.map(committed.cause, toError))
            }
            return exit.value
          })
        )
      ) as Effect.Effect<A, E | Store.StoreError, Exclude<R, SqlClient.TransactionConnection>>

    const flush = pg ? undefined : options.flush
    const flushError = (operation: string, error: Error) =>
      new Store.StoreError({
        operation,
        reason: "Unavailable",
        message: `${operation}: the commit could not be flushed to disk: ${error.message}`,
        cause: error
      })
    /** After a write's commit: its callers wait for the flush (when the store flushes itself). */
    const flushed = (operation: string): Effect.Effect<void, Store.StoreError> =>
      Effect.async<void, Store.StoreError>((resume) =>
        flush!.sync((error) => resume(error === undefined ? Effect.void : Effect.fail(flushError(operation, error))))
      )

    const countWrite = (operations: number) => {
      counters.writeTransactions++
      counters.writeOperations += operations
      if (operations > counters.largestBatch) counters.largestBatch = operations
    }

    // ---- group commit (SQLite; PostgreSQL's is further down, after its statements) ----------

    const closedError = new Store.StoreError({ operation: "commit", reason: "Closed", message: "commit: the store was closed" })
    let submit: (<A>(op: Op<A>, operation: string, sync?: SyncOp<A>) => Effect.Effect<A, Store.StoreError>) | undefined
    if (options.groupCommit !== undefined && !pg) {
      const maxBatch = Math.max(1, options.groupCommit.maxBatch ?? 512)
      const queue = yield* Queue.bounded<Job>(Math.max(1, options.groupCommit.maxPending ?? 10_000))
      let closed = false
      const runJob = (conn: Connection) => (job: Job): Effect.Effect<Exit.Exit<unknown, Store.StoreError>, SqlError> =>
        Effect.gen(function*() {
          yield* exec(conn, "SAVEPOINT fanout_op")
          const exit = yield* Effect.exit(job.op(conn))
          if (Exit.isFailure(exit)) yield* exec(conn, "ROLLBACK TO fanout_op")
          yield* exec(conn, "RELEASE fanout_op")
          return exit
        })
      /**
       * The fast pass: every operation straight on the connection, no savepoints (three statements
       * fewer per operation). An operation that fails aborts the pass: the transaction rolls back,
       * and a batch of several operations runs again with a savepoint per operation (so one failure
       * does not sink the others); a batch of one answers its failure. Operations only touch the
       * database, so running them again after the rollback is safe.
       */
      const runPlain = (
        conn: Connection,
        jobs: ReadonlyArray<Job>
      ): Effect.Effect<Array<Exit.Exit<unknown, Store.StoreError>>, Store.StoreError | typeof againWithSavepoints> => {
        const exec = syncExecutor(conn)
        if (exec !== undefined && jobs.every((job) => job.sync !== undefined)) {
          // Every operation has a plain form and the connection runs statements synchronously: the
          // whole pass is one Effect (DESIGN §8), with the same failure rules as below.
          return Effect.suspend((): Effect.Effect<
            Array<Exit.Exit<unknown, Store.StoreError>>,
            Store.StoreError | typeof againWithSavepoints
          > => {
            const out: Array<Exit.Exit<unknown, Store.StoreError>> = []
            for (const job of jobs) {
              try {
                out.push(Exit.succeed(job.sync!(exec)))
              } catch (cause) {
                if (jobs.length > 1) return Effect.fail(againWithSavepoints)
                return cause instanceof SqlError ? Effect.fail(fromSqlError(job.operation)(cause)) : Effect.die(cause)
              }
            }
            return Effect.succeed(out)
          })
        }
        return Effect.forEach(jobs, (job) =>
          Effect.flatMap(
            Effect.exit(job.op(conn)),
            (exit): Effect.Effect<Exit.Exit<unknown, Store.StoreError>, Store.StoreError | typeof againWithSavepoints> =>
              Exit.isSuccess(exit)
                ? Effect.succeed(exit)
                : jobs.length > 1
                ? Effect.fail(againWithSavepoints)
                : Effect.failCause(exit.cause)
          ))
      }
      const inTransaction = (jobs: ReadonlyArray<Job>, savepoints: boolean) =>
        own(
          "commit",
          "write",
          Effect.flatMap(
            SqlClient.TransactionConnection,
            ([conn]): Effect.Effect<
              Array<Exit.Exit<unknown, Store.StoreError>>,
              SqlError | Store.StoreError | typeof againWithSavepoints
            > => savepoints ? Effect.forEach(jobs, runJob(conn)) : runPlain(conn, jobs)
          )
        ).pipe(
          Effect.mapError((error) =>
            error._tag === "SqlError" ? fromSqlError("commit")(error as SqlError) : error as Exclude<typeof error, SqlError>
          )
        )
      const runBatch = (jobs: ReadonlyArray<Job>) =>
        inTransaction(jobs, false).pipe(
          Effect.catchIf((error) => error === againWithSavepoints, () => inTransaction(jobs, true)),
          Effect.exit,
          Effect.flatMap((exit) => {
            if (Exit.isSuccess(exit)) {
              countWrite(jobs.length)
              const answer = () => jobs.forEach((job, i) => job.answer(exit.value[i]!))
              if (flush === undefined) return Effect.sync(answer)
              // Answered once the commit is on disk; meanwhile this fiber goes on to the next batch.
              return Effect.sync(() =>
                flush.sync((error) => {
                  if (error === undefined) return answer()
                  const failed = Exit.fail(flushError("commit", error))
                  jobs.forEach((job) => job.answer(failed))
                })
              )
            }
            const failed = Exit.failCause(exit.cause as Cause.Cause<Store.StoreError>)
            return Effect.sync(() => jobs.forEach((job) => job.answer(failed)))
          })
        )
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          closed = true
          const rest = yield* Queue.takeAll(queue)
          const failed = Exit.fail(closedError)
          for (const job of rest) job.answer(failed)
          yield* Queue.shutdown(queue)
        })
      )
      // The commit is synchronous (better-sqlite3) and blocks the event loop, so jobs only pile up
      // while the loop turns: yield one macrotask after the first job, so the requests that arrived
      // meanwhile (HTTP, other fibers) can submit theirs into the same transaction.
      const turn = Effect.async<void>((resume) => {
        const handle = setImmediate(() => resume(Effect.void))
        return Effect.sync(() => clearImmediate(handle))
      })
      // Saturated: requests reach the store a few event-loop turns after their bytes arrive (parsing,
      // validation), and a synchronous commit blocks those turns; so one turn after the first job
      // mostly finds nothing new, and every commit carries one operation. When work was already
      // waiting at the end of the last commit, let the loop run for `lingerMs` first.
      const lingerMs = Math.max(0, options.groupCommit.lingerMs ?? 1)
      let saturated = false
      const linger = Effect.async<void>((resume) => {
        const handle = setTimeout(() => resume(Effect.void), lingerMs)
        return Effect.sync(() => clearTimeout(handle))
      })
      yield* Effect.gen(function*() {
        const first = yield* Queue.take(queue)
        yield* turn
        const jobs = [first, ...(yield* Queue.takeUpTo(queue, maxBatch - 1))]
        if (saturated && lingerMs > 0 && jobs.length < maxBatch) {
          // A timer, not a spin: the loop reads and parses what arrived meanwhile.
          yield* linger
          jobs.push(...(yield* Queue.takeUpTo(queue, maxBatch - jobs.length)))
        }
        yield* Effect.uninterruptible(runBatch(jobs))
        saturated = (yield* Queue.size(queue)) > 0
      }).pipe(Effect.forever, Effect.forkScoped)
      submit = <A>(op: Op<A>, operation: string, sync?: SyncOp<A>) =>
        Effect.suspend(() => {
          if (closed) return Effect.fail(closedError)
          const lifted = lift(operation)
          // The answer may come before the caller waits for it (a synchronous commit); keep it then.
          let early: Exit.Exit<unknown, Store.StoreError> | undefined
          let resume: ((exit: Exit.Exit<unknown, Store.StoreError>) => void) | undefined
          const job: Job = {
            op: typeof op === "function" ? (conn) => lifted(op(conn)) : () => lifted(op),
            sync,
            operation,
            answer: (exit) => {
              if (resume !== undefined) resume(exit)
              else early = exit
            }
          }
          const answered = Effect.async<unknown, Store.StoreError>((callback) => {
            if (early !== undefined) callback(early)
            else resume = callback
          })
          // Room in the queue (the usual case): no Effect for the offer; else wait for room (back-pressure).
          return Queue.unsafeOffer(queue, job) ? answered : Effect.zipRight(Queue.offer(queue, job), answered)
        }) as Effect.Effect<A, Store.StoreError>
    }

    // ---- running an operation ----------------------------------------------------------------

    const ambient = Effect.serviceOption(SqlClient.TransactionConnection)
    const detach = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      options.joinTransactions
        ? effect
        : Effect.mapInputContext(effect, (context: Context.Context<never>) =>
          Context.omit(SqlClient.TransactionConnection)(context) as Context.Context<never>)

    /**
     * How an operation runs when no joinable transaction is open:
     * - `batch`: a write that may share a group commit (else: its own write transaction, or alone when `single`);
     * - `write`: its own write transaction;
     * - `read`: its own read transaction (a consistent snapshot over several statements);
     * - `query`: one read statement, no transaction.
     * `single` marks an operation that is one statement, atomic on its own (no BEGIN needed on PostgreSQL).
     */
    const run = <A>(
      operation: string,
      kind: "batch" | "write" | "read" | "query",
      op: Op<A>,
      single = false,
      sync?: SyncOp<A>
    ): Effect.Effect<A, Store.StoreError> => {
      // The group commit runs the operation on its writer fiber: nothing of the caller's context
      // (a foreign transaction) reaches it, so it needs no detaching.
      if (kind === "batch" && submit !== undefined && !options.joinTransactions) return submit(op, operation, sync)
      // A connection operation only runs where a transaction provides the connection (ours, the
      // group commit's, or a joined one): it is only ever given as a write.
      const lifted = lift(operation)(
        typeof op === "function"
          ? Effect.flatMap(SqlClient.TransactionConnection, ([conn]) => op(conn)) as Effect.Effect<
            A,
            SqlError | Store.StoreError
          >
          : op
      )
      const alone: Effect.Effect<A, Store.StoreError> = kind === "query"
        ? lifted
        : kind === "read"
        ? own(operation, "read", lifted)
        : kind === "batch" && submit !== undefined
        ? submit(op, operation)
        : pg && single
        ? Effect.tap(lifted, () => countWrite(1))
        : flush !== undefined
        ? Effect.zipLeft(Effect.tap(own(operation, "write", lifted), () => countWrite(1)), flushed(operation))
        : Effect.tap(own(operation, "write", lifted), () => countWrite(1))
      if (!options.joinTransactions) return detach(alone)
      return Effect.flatMap(ambient, (open) => {
        if (Option.isNone(open)) return alone
        counters.writeOperations += kind === "batch" || kind === "write" ? 1 : 0
        return kind === "query" || kind === "read"
          ? lifted
          : lift(operation)(sql.withTransaction(lifted))
      })
    }

    const inJoinedTransaction: Effect.Effect<boolean> = options.joinTransactions
      ? Effect.map(ambient, Option.isSome)
      : Effect.succeed(false)

    // ---- migrations --------------------------------------------------------------------------

    const migrate = Effect.gen(function*() {
      if (pg) {
        yield* sql`SELECT pg_advisory_xact_lock(hashtext(${names.migrations}))`
        yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS ${names.migrations} (
          migration_id integer PRIMARY KEY,
          created_at timestamp with time zone NOT NULL DEFAULT now(),
          name text NOT NULL
        )`)
      }
      return yield* Migrator.make({})({
        loader: Migrator.fromRecord(migrations(sql, names, dialect)),
        table: names.migrations
      })
    }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
    const migrationError = (cause: unknown) =>
      new Store.StoreError({
        operation: "migrate",
        reason: "Migration",
        message: `migrate: ${cause instanceof Error ? cause.message : String(cause)}${
          cause instanceof Error && cause.cause instanceof Error ? ` (${cause.cause.message})` : ""
        }`,
        cause
      })
    yield* detach(own("migrate", "write", migrate)).pipe(
      Effect.catchAllDefect((defect) => Effect.fail(migrationError(defect))),
      Effect.mapError((error) => error._tag === "StoreError" ? error : migrationError(error))
    )

    // ---- enqueue -----------------------------------------------------------------------------


    type Enqueue = (
      event: { readonly id: string; readonly type: string },
      json: string,
      fingerprint: string,
      targets: ReadonlyArray<string>,
      dependencies: ReadonlyMap<string, ReadonlyArray<string>>,
      keep: boolean,
      now: number,
      notifyInline: boolean,
      /** When the deliveries are due (`Store.dueAt`: now, or a later scheduled time). */
      due: number
    ) => Op<EnqueueResult>


    /**
     * The dependency columns of each delivery row, for an enqueue with dependencies (a plain enqueue
     * leaves them to their defaults: no inputs, nothing waiting, no dependents).
     */
    const dependencyColumns = (
      targets: ReadonlyArray<string>,
      dependencies: ReadonlyMap<string, ReadonlyArray<string>>,
      keep: boolean
    ) => {
      const dependents = dependentCounts(dependencies, targets, keep)
      return targets.map((target) => {
        const inputs = dependencies.get(target)
        return {
          after_targets: inputs === undefined ? null : JSON.stringify(inputs),
          waiting: inputs?.length ?? 0,
          dependents: dependents.get(target) ?? 0
        }
      })
    }

    /**
     * PostgreSQL: NOTIFY after our own commits from one background fiber, coalesced (a sliding queue of
     * one: any number of requests while a NOTIFY runs become one more). A NOTIFY inside a transaction
     * takes a database-wide lock at commit, serialising every committing enqueue; outside, data
     * commits never wait for it. Inside an application's transaction we cannot see the commit, so
     * there the NOTIFY stays in the statement (delivered when the application commits).
     */
    const notifyLater: Effect.Effect<void> = pg
      ? yield* Effect.gen(function*() {
        const requests = yield* Queue.sliding<void>(1)
        yield* Queue.take(requests).pipe(
          Effect.zipRight(sql`SELECT pg_notify(${channel}, '1')`),
          Effect.tap(() => counters.notifies++),
          Effect.catchAllCause((cause) => Effect.logWarning("fanout store: NOTIFY failed", cause)),
          Effect.forever,
          Effect.forkScoped
        )
        return Effect.asVoid(Queue.offer(requests, undefined))
      })
      : Effect.void

    const existing = (eventId: string, fingerprint: string) =>
      Effect.map(
        sql<ExistingRow>`SELECT e.fingerprint, d.id, d.target, d.status
          FROM ${T.events} e LEFT JOIN ${T.deliveries} d ON d.event_id = e.id WHERE e.id = ${eventId} ORDER BY d.id`,
        (rows) => duplicateOf(eventId, fingerprint, rows)
      )

    /**
     * PostgreSQL: one statement inserts the event, any new target names and the deliveries, and
     * NOTIFYs (delivered at commit). A duplicate id inserts nothing; its deliveries are then read by a
     * second statement, whose fresh snapshot sees a concurrent first enqueue once it has committed.
     */
    const enqueuePg: Enqueue = (event, json, fingerprint, targets, dependencies, keep, now, notifyInline, due) =>
      Effect.gen(function*() {
        const fresh = targets.filter((target) => !knownTargets.has(target))
        const names = sql.csv(fresh.map((name) => sql`(${name}::text)`))
        // A plain enqueue keeps its statement (and its cached plan) as it was: the dependency columns
        // are only named when some target has inputs.
        const piped = dependencies.size > 0 || keep
        const columns = piped ? dependencyColumns(targets, dependencies, keep) : []
        const rows = sql.csv(targets.map((target, i) =>
          piped
            ? sql`(${target}::text, ${i}::integer, ${columns[i]!.after_targets}::text, ${columns[i]!.waiting}::integer, ${
              columns[i]!.dependents
            }::integer)`
            : sql`(${target}::text, ${i}::integer)`
        ))
        const inserted = yield* sql<{ id: unknown; target: string; status: Store.Status }>`WITH
          ev AS (
            INSERT INTO ${T.events} (id, type, envelope, enqueued_at, fingerprint)
            VALUES (${event.id}, ${event.type}, ${json}, ${now}, ${fingerprint})
            ON CONFLICT (id) DO NOTHING RETURNING id
          ),${
          fresh.length > 0
            ? sql` tg AS (
            INSERT INTO ${T.targets} (name) SELECT name FROM (VALUES ${names}) AS v (name)
            ON CONFLICT (name) DO NOTHING
          ),`
            : sql.literal("")
        }
          dl AS (
            INSERT INTO ${T.deliveries} (event_id, target, status, attempts, total_attempts, available_at, enqueued_at, updated_at${
          piped ? sql.literal(", after_targets, waiting, dependents") : sql.literal("")
        })
            SELECT ev.id, v.target, 'pending', 0, 0, ${due}, ${now}, ${now}${
          piped ? sql.literal(", v.after_targets, v.waiting, v.dependents") : sql.literal("")
        }
            FROM ev CROSS JOIN (VALUES ${rows}) AS v (target, ord${
          piped ? sql.literal(", after_targets, waiting, dependents") : sql.literal("")
        }) ORDER BY v.ord
            RETURNING id, target, status${notifyInline ? sql`, pg_notify(${channel}, '1')::text AS notified` : sql.literal("")}
          )
          SELECT id, target, status FROM dl ORDER BY id`
        if (inserted.length === 0) return yield* existing(event.id, fingerprint)
        return {
          eventId: event.id,
          created: true,
          deliveries: inserted.map((row) => ({ id: String(row.id), target: row.target, status: row.status }))
        } satisfies Store.Enqueued
      })

    /**
     * SQLite: the event (its id is the idempotency key), any new target names, then the deliveries,
     * in constant SQL texts run straight on the transaction's connection.
     */
    /** SQLite's deliveries INSERT for a new event: its text and parameters. */
    const sqliteDeliveries = (
      event: { readonly id: string },
      targets: ReadonlyArray<string>,
      dependencies: ReadonlyMap<string, ReadonlyArray<string>>,
      keep: boolean,
      now: number,
      due: number
    ) => {
      const columns = dependencies.size > 0 || keep ? dependencyColumns(targets, dependencies, keep) : undefined
      const params: Array<unknown> = []
      for (let i = 0; i < targets.length; i++) {
        params.push(event.id, targets[i], due, now, now)
        if (columns !== undefined) params.push(columns[i]!.after_targets, columns[i]!.waiting, columns[i]!.dependents)
      }
      return { text: insertDeliveries(targets.length, columns !== undefined), params }
    }
    const enqueuedOf = (event: { readonly id: string }, rows: ReadonlyArray<any>): Store.Enqueued => ({
      eventId: event.id,
      created: true,
      deliveries: rows.map((row) => ({ id: String(row.id), target: row.target, status: row.status }))
    })

    const enqueueSqlite: Enqueue = (event, json, fingerprint, targets, dependencies, keep, now, _notifyInline, due) => (conn: Connection) =>
      Effect.flatMap(q(conn, text.insertEvent, [event.id, event.type, json, now, fingerprint]), (inserted): Effect.Effect<
        EnqueueResult,
        SqlError
      > => {
        if (inserted.length === 0) {
          return Effect.map(q(conn, text.existing, [event.id]), (rows) => duplicateOf(event.id, fingerprint, rows as ReadonlyArray<ExistingRow>))
        }
        const fresh = targets.filter((target) => !knownTargets.has(target))
        const insert = sqliteDeliveries(event, targets, dependencies, keep, now, due)
        const deliveries = Effect.map(q(conn, insert.text, insert.params), (rows) => enqueuedOf(event, rows))
        return fresh.length === 0 ? deliveries : Effect.zipRight(
          q(conn, insertTargets(fresh.length), fresh),
          deliveries
        )
      })

    /** `enqueueSqlite` as plain calls (the group commit's fast pass; see `runPlain`). */
    const enqueueSqliteSync = (
      event: { readonly id: string; readonly type: string },
      json: string,
      fingerprint: string,
      targets: ReadonlyArray<string>,
      dependencies: ReadonlyMap<string, ReadonlyArray<string>>,
      keep: boolean,
      now: number,
      due: number
    ): SyncOp<EnqueueResult> =>
    (exec) => {
      const inserted = exec(text.insertEvent, [event.id, event.type, json, now, fingerprint])
      if (inserted.length === 0) return duplicateOf(event.id, fingerprint, exec(text.existing, [event.id]) as ReadonlyArray<ExistingRow>)
      const fresh = targets.filter((target) => !knownTargets.has(target))
      if (fresh.length > 0) exec(insertTargets(fresh.length), fresh)
      const insert = sqliteDeliveries(event, targets, dependencies, keep, now, due)
      return enqueuedOf(event, exec(insert.text, insert.params))
    }

    /** The fingerprint of an event the schema path encoded (the shortcut stepped aside). */
    const fingerprintSlow = (event: Event.Any) =>
      Effect.try({
        try: () => Event.fingerprint(event),
        catch: (cause) => invalid("enqueue", `event ${event.id} cannot be fingerprinted: ${String(cause)}`)
      })

    const enqueue: Store.DeliveryStore["enqueue"] = (event, targets, enqueueOptions) =>
      Effect.gen(function*() {
        const unique = yield* checkTargets(targets)
        const dependencies = yield* checkDependencies(unique, enqueueOptions?.after)
        // The payload is serialised once, for the envelope and the fingerprint's content text.
        const parts = envelopeParts(event)
        const json = parts?.json ?? (yield* encodeEnvelope(event))
        const fingerprint = parts !== undefined ? Event.fingerprintOf(parts.content) : yield* fingerprintSlow(event)
        const now = yield* Clock.currentTimeMillis
        const joined = options.joinTransactions ? yield* inJoinedTransaction : false
        const keep = enqueueOptions?.keepAnswers === true
        const due = Store.dueAt(enqueueOptions, now)
        if (typeof due !== "number") return yield* due
        // A scheduled enqueue (due later) takes the single-statement path, not the group commit's
        // batch statement (which stores one time for due, enqueue and update).
        if (pgWriter !== undefined && !joined && due === now) {
          // The group commit does the rest after its commit (known targets, NOTIFY, signal).
          const { answer, answered } = slot<EnqueueResult>()
          yield* pgWriter.submit({
            _tag: "enqueue",
            event,
            json,
            fingerprint,
            targets: unique,
            columns: dependencies.size > 0 || keep ? dependencyColumns(unique, dependencies, keep) : [],
            now,
            alone: Effect.suspend(() =>
              run("enqueue", "batch", enqueuePg(event, json, fingerprint, unique, dependencies, keep, now, false, now), true)
            ),
            answer
          })
          const outcome = yield* answered
          return outcome instanceof Store.ConflictError ? yield* outcome : outcome
        }
        const result = yield* run(
          "enqueue",
          "batch",
          (pg ? enqueuePg : enqueueSqlite)(event, json, fingerprint, unique, dependencies, keep, now, joined, due),
          true,
          pg ? undefined : enqueueSqliteSync(event, json, fingerprint, unique, dependencies, keep, now, due)
        )
        if (result instanceof Store.ConflictError) return yield* result
        if (result.created) {
          if (!joined) {
            for (const target of unique) knownTargets.add(target)
            if (pg) yield* notifyLater
          }
          yield* signal.notify
        }
        return result
      })

    // ---- claim -------------------------------------------------------------------------------

    const claimSqlite = (options: Store.ClaimOptions, now: number, token: string, start: number) => (conn: Connection) =>
      Effect.flatMap(
        options.targets !== undefined
          ? Effect.succeed(options.targets)
          : Effect.map(q(conn, text.allTargets, []), (rows) => rows.map((row): string => row.name)),
        (targets) =>
          Effect.flatMap(
            Effect.forEach(targets, (target) => q(conn, text.due, [target, now, options.limit]) as Effect.Effect<ReadonlyArray<ClaimRow>, SqlError>),
            (groups) => {
              const picked = roundRobin(groups, options.limit, start)
              if (picked.length === 0) return Effect.succeed<ReadonlyArray<ClaimRow>>([])
              const expires = now + options.leaseMs
              return Effect.as(
                q(conn, text.take, [token, expires, options.workerId, now, JSON.stringify(picked.map((row) => num(row.id)))]),
                picked.map((row): ClaimRow => ({ ...row, lease: `${token}:${num(row.id)}`, available_at: expires }))
              )
            }
          )
      )

    const claimPg = (options: Store.ClaimOptions, now: number, token: string) => {
      const targets = options.targets !== undefined
        ? sql`SELECT name FROM ${T.targets} WHERE name IN ${sql.in(options.targets)}`
        : sql`SELECT name FROM ${T.targets}`
      return sql<ClaimRow>`WITH candidates AS (
          SELECT c.id, c.target, c.available_at
          FROM (${targets}) t
          CROSS JOIN LATERAL (
            SELECT d.id, d.target, d.available_at FROM ${T.deliveries} d
            WHERE d.target = t.name AND d.status IN ('pending', 'in_flight') AND d.waiting = 0
              AND d.available_at <= ${now}
            ORDER BY d.available_at, d.id
            LIMIT ${options.limit}
            FOR UPDATE SKIP LOCKED
          ) c
        ), picked AS (
          SELECT id FROM (
            SELECT id, available_at, row_number() OVER (PARTITION BY target ORDER BY available_at, id) AS rn
            FROM candidates
          ) r
          ORDER BY rn, available_at, id
          LIMIT ${options.limit}
        ), claimed AS (
          UPDATE ${T.deliveries} d
          SET status = 'in_flight', lease = ${token}::text || ':' || d.id::text, available_at = ${now + options.leaseMs},
              worker_id = ${options.workerId}, updated_at = ${now}
          FROM picked WHERE d.id = picked.id
          RETURNING d.id, d.event_id, d.target, d.attempts, d.first_attempt_at, d.enqueued_at, d.replayed_at, d.resends, d.lease,
            d.available_at,
            d.after_targets, d.dependents
        )
        SELECT claimed.*, e.envelope FROM claimed JOIN ${T.events} e ON e.id = claimed.event_id
        ORDER BY claimed.available_at, claimed.id`
    }

    const claim: Store.DeliveryStore["claim"] = (options) =>
      Effect.gen(function*() {
        yield* checkPositiveInt("claim", "limit", options.limit)
        yield* checkPositiveInt("claim", "leaseMs", options.leaseMs)
        if (options.targets !== undefined && options.targets.length === 0) return []
        const now = yield* Clock.currentTimeMillis
        const token = newLeaseToken()
        const rows = yield* run(
          "claim",
          "batch",
          pg ? claimPg(options, now, token) : claimSqlite(options, now, token, rotation++),
          true
        )
        const readable: Array<{ readonly row: ClaimRow; readonly event: Event.Any; readonly after: ReadonlyArray<string> }> = []
        for (const row of rows) {
          const id = String(row.id)
          const decoded = yield* Effect.either(decodeEnvelope("claim", row.envelope))
          const after = parseAfter(row.after_targets)
          if (decoded._tag === "Left" || after === undefined) {
            // A row we cannot read would be claimed forever: dead-letter it, fenced by this claim.
            const [outcome, message, reason] = decoded._tag === "Left"
              ? ["corrupt_envelope", decoded.left.message, "corrupt envelope"]
              : ["corrupt_dependencies", "claim: stored after_targets is not a JSON array of names", "corrupt dependencies"]
            yield* finish(
              { id, lease: row.lease },
              { startedAt: now, durationMs: 0, outcome, message },
              Store.Next.Dead({ reason })
            ).pipe(Effect.ignore)
            continue
          }
          readable.push({ row, event: decoded.right, after })
        }
        const responses = yield* loadInputs(readable.filter((x) => x.after.length > 0).map((x) => x.row.event_id))
        return readable.map(({ after, event, row }): Store.Claimed => {
          const inputs: Record<string, string | undefined> = {}
          for (const input of after) inputs[input] = responses.get(row.event_id)?.get(input)
          return {
            id: String(row.id),
            lease: row.lease,
            eventId: row.event_id,
            target: row.target,
            idempotencyKey: Store.resendKey(row.event_id, row.target, num(row.resends)),
            event,
            attempts: num(row.attempts),
            firstAttemptAt: optNum(row.first_attempt_at),
            leaseExpiresAt: num(row.available_at),
            enqueuedAt: num(row.enqueued_at),
            replayedAt: optNum(row.replayed_at),
            workerId: options.workerId,
            after,
            inputs,
            dependents: num(row.dependents)
          }
        })
      })

    /**
     * The stored answers of the inputs of claimed dependents: event id → input target → response.
     * One query per claim batch (in chunks of 500 events), none when no claimed row has inputs. It
     * runs after the claim has committed, which is safe: a dependent is claimable only once its
     * inputs are delivered, and a delivered row's response never changes.
     */
    const loadInputs = (eventIds: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const out = new Map<string, Map<string, string | undefined>>()
        const unique = Array.from(new Set(eventIds))
        if (unique.length === 0) return out
        const rows = yield* run(
          "claim",
          "query",
          Effect.map(
            Effect.forEach(chunks(unique, 500), (part) =>
              sql<{ event_id: string; target: string; response: unknown }>`SELECT event_id, target, response
                FROM ${T.deliveries} WHERE event_id IN ${sql.in(part)} AND dependents > 0`),
            (results) => results.flat()
          )
        )
        for (const row of rows) {
          let byTarget = out.get(row.event_id)
          if (byTarget === undefined) out.set(row.event_id, byTarget = new Map())
          byTarget.set(row.target, optStr(row.response))
        }
        return out
      })

    // ---- finish ------------------------------------------------------------------------------

    /**
     * What a finish did: whether it applied (the lease held), and how many dependents it made due
     * (their last input was this delivery).
     */
    interface Finished {
      readonly applied: boolean
      readonly due: number
    }
    const notApplied: Finished = { applied: false, due: 0 }
    const appliedAlone: Finished = { applied: true, due: 0 }

    const finishOp = (
      id: number,
      claim: Store.Claim,
      attempt: Store.AttemptInput,
      next: Store.Next,
      now: number,
      notifyInline: boolean,
      /** Filled with the operation's plain form too, where it has one (SQLite). */
      sync?: { op?: SyncOp<Finished> }
    ): Op<Finished> => {
      const state = finalState(next, now)
      const failed = attempt.outcome !== "success"
      // Delivered: keep the answer only when some delivery runs after this one (else it would only
      // bloat the row), and return what the dependents' release needs. Other outcomes keep their
      // statement as it was: a dead or compensated input releases nothing, its dependents stay held.
      const delivered = next._tag === "Delivered"
      const response = delivered ? next.response ?? null : null
      const values = {
        started_at: Math.round(attempt.startedAt),
        duration_ms: Math.max(0, Math.round(attempt.durationMs)),
        outcome: attempt.outcome,
        http_status: attempt.status ?? null,
        error_tag: attempt.errorTag ?? null,
        message: attempt.message ?? null,
        retry_after_ms: attempt.retryAfterMs !== undefined ? Math.round(attempt.retryAfterMs) : null,
        lease: claim.lease
      }
      if (pg) {
        const errorColumns = failed
          ? sql`, last_error = ${attempt.outcome}, last_error_message = ${attempt.message ?? null}`
          : sql.literal("")
        const responseColumn = delivered
          ? sql`, response = CASE WHEN dependents > 0 THEN ${response}::text ELSE NULL END`
          : sql.literal("")
        const update = sql`UPDATE ${T.deliveries}
          SET status = ${state.status}, attempts = attempts + 1, total_attempts = total_attempts + 1,
              first_attempt_at = COALESCE(first_attempt_at, ${Math.round(attempt.startedAt)}),
              available_at = ${state.availableAt}, lease = NULL, dead_reason = ${state.deadReason},
              finished_at = ${state.finishedAt}, updated_at = ${now}${errorColumns}${responseColumn}
          WHERE id = ${id} AND lease = ${claim.lease} AND status = 'in_flight'
          RETURNING id, total_attempts, worker_id${delivered ? sql.literal(", event_id, target, dependents") : sql.literal("")}`
        const insert = sql`INSERT INTO ${T.attempts}
              (delivery_id, number, started_at, duration_ms, outcome, http_status, error_tag, message, retry_after_ms, lease, worker_id)
            SELECT id, total_attempts, ${values.started_at}::bigint, ${values.duration_ms}::integer, ${values.outcome}::text,
                   ${values.http_status}::integer, ${values.error_tag}::text, ${values.message}::text,
                   ${values.retry_after_ms}::bigint, ${values.lease}::text, worker_id
            FROM updated`
        if (!delivered) {
          return Effect.map(
            sql`WITH updated AS (${update}) ${insert} RETURNING delivery_id`,
            (rows): Finished => ({ applied: rows.length > 0, due: 0 })
          )
        }
        // Still one statement: the release of the dependents reads the fenced update's RETURNING, so
        // a lost lease (no row updated) releases nothing. Concurrent finishes of two inputs of one
        // dependent serialise on its row lock, and READ COMMITTED re-reads `waiting` after the wait.
        const notify = notifyInline
          ? sql`, CASE WHEN EXISTS (SELECT 1 FROM released WHERE waiting = 0) THEN pg_notify(${channel}, '1')::text END AS notified`
          : sql.literal("")
        return Effect.map(
          sql<{ applied: unknown; due: unknown }>`WITH updated AS (${update}),
            inserted AS (${insert} RETURNING delivery_id),
            released AS (
              UPDATE ${T.deliveries} d SET waiting = d.waiting - 1, available_at = ${now}, updated_at = ${now}
              FROM updated u
              WHERE u.dependents > 0 AND d.event_id = u.event_id AND d.status = 'pending' AND d.waiting > 0
                AND d.after_targets::jsonb @> jsonb_build_array(u.target)
              RETURNING d.waiting
            )
            SELECT (SELECT count(*) FROM inserted)::integer AS applied,
                   (SELECT count(*) FROM released WHERE waiting = 0)::integer AS due${notify}`,
          (rows): Finished => ({ applied: num(rows[0]?.applied ?? 0) > 0, due: num(rows[0]?.due ?? 0) })
        )
      }
      // SQLite: the fenced UPDATE, then the attempt row (it needs the row's new total and worker id:
      // SQLite cannot feed one statement's RETURNING to another), then the dependents' release.
      const updateParams: Array<unknown> = [
        state.status,
        values.started_at,
        state.availableAt,
        state.deadReason,
        state.finishedAt,
        now
      ]
      if (failed) updateParams.push(attempt.outcome, attempt.message ?? null)
      if (delivered) updateParams.push(response)
      updateParams.push(id, claim.lease)
      const updateText = finishTexts[failed ? 1 : 0]![delivered ? 1 : 0]!
      const attemptParams = (row: Record<string, unknown>) => [
        id,
        num(row.total_attempts),
        values.started_at,
        values.duration_ms,
        values.outcome,
        values.http_status,
        values.error_tag,
        values.message,
        values.retry_after_ms,
        values.lease,
        optStr(row.worker_id) ?? null
      ]
      const releaseParams = (row: Record<string, unknown>) => [now, now, String(row.event_id), String(row.target)]
      const releasedFinished = (released: ReadonlyArray<Record<string, unknown>>): Finished => ({
        applied: true,
        due: released.filter((r) => num(r.waiting) === 0).length
      })
      if (sync !== undefined) {
        // The same three statements as plain calls (the group commit's fast pass; see `runPlain`).
        sync.op = (exec) => {
          const row = exec(updateText, updateParams)[0]
          if (row === undefined) return notApplied
          exec(text.attempt, attemptParams(row))
          if (!delivered || num(row.dependents) === 0) return appliedAlone
          return releasedFinished(exec(text.releaseDependents, releaseParams(row)))
        }
      }
      return (conn: Connection) =>
        Effect.flatMap(q(conn, updateText, updateParams), (rows) => {
          const row = rows[0]
          if (row === undefined) return Effect.succeed(notApplied)
          const insert = q(conn, text.attempt, attemptParams(row))
          if (!delivered || num(row.dependents) === 0) return Effect.as(insert, appliedAlone)
          return Effect.zipRight(insert, Effect.map(q(conn, text.releaseDependents, releaseParams(row)), releasedFinished))
        })
    }

    // ---- group commit (PostgreSQL) -----------------------------------------------------------

    /**
     * PostgreSQL group commit: enqueue, finish and extendLease calls of this process are queued, and
     * a writer takes everything waiting (up to `maxBatch`) and writes it with **one statement** —
     * multi-row `INSERT … SELECT FROM unnest(arrays)` for the events (`ON CONFLICT (id) DO NOTHING`),
     * the new target names and the deliveries, one `UPDATE … FROM unnest(…)` for the finishes (fenced
     * per row by id, lease and status, as alone) with the attempts' `INSERT` and the dependents'
     * release reading its `RETURNING`, one for the lease extensions. One statement is one
     * transaction (autocommit): one round trip and one commit (one WAL flush) for the whole batch,
     * and every caller is answered only after it returned, that is after the commit.
     *
     * - A statement never changes one row twice: a finish or extension of a row already in the
     *   batch goes to the next statement (ops of one batch are concurrent, so any order is theirs).
     * - If the statement fails, nothing of it was written; a batch of one answers its error, a larger
     *   batch runs each operation again alone (its single statement), so one failing operation (or a
     *   deadlock with another process) sinks only itself.
     * - Duplicate event ids: within a batch the first is written and the others answer its
     *   deliveries (`created: false`); an id already stored inserts nothing, and its deliveries are
     *   read after the commit by one statement (a fresh snapshot that sees a concurrent first
     *   enqueue, which `ON CONFLICT` waited for).
     * - Rows are sent sorted by id, so two processes' batches take their locks in the same order.
     * - After a commit that created events or made dependents due: one `NOTIFY` (coalesced, from the
     *   background fiber) and one in-process signal.
     */
    /**
     * A one-shot answer for a queued job: `answer` (called once; later calls are ignored) and
     * `answered`, the caller's wait (the answer may come before the caller waits).
     */
    const slot = <A>() => {
      let early: Exit.Exit<A, Store.StoreError> | undefined
      let resume: ((exit: Exit.Exit<A, Store.StoreError>) => void) | undefined
      let done = false
      return {
        answer: (exit: Exit.Exit<A, Store.StoreError>) => {
          if (done) return
          done = true
          if (resume !== undefined) resume(exit)
          else early = exit
        },
        answered: Effect.async<A, Store.StoreError>((callback) => {
          if (early !== undefined) callback(early)
          else resume = callback
        })
      }
    }

    interface PgEnqueueJob {
      readonly _tag: "enqueue"
      readonly event: { readonly id: string; readonly type: string }
      readonly json: string
      readonly fingerprint: string
      readonly targets: ReadonlyArray<string>
      readonly columns: ReadonlyArray<{ readonly after_targets: string | null; readonly waiting: number; readonly dependents: number }>
      readonly now: number
      readonly alone: Effect.Effect<EnqueueResult, Store.StoreError>
      readonly answer: (exit: Exit.Exit<EnqueueResult, Store.StoreError>) => void
    }
    interface PgFinishJob {
      readonly _tag: "finish"
      readonly id: number
      readonly lease: string
      readonly status: Store.Status
      readonly availableAt: number | null
      readonly deadReason: string | null
      readonly finishedAt: number | null
      readonly failed: boolean
      readonly delivered: boolean
      readonly response: string | null
      readonly startedAt: number
      readonly durationMs: number
      readonly outcome: string
      readonly httpStatus: number | null
      readonly errorTag: string | null
      readonly message: string | null
      readonly retryAfterMs: number | null
      readonly now: number
      readonly alone: Effect.Effect<Finished, Store.StoreError>
      readonly answer: (exit: Exit.Exit<boolean, Store.StoreError>) => void
    }
    interface PgExtendJob {
      readonly _tag: "extend"
      readonly id: number
      readonly lease: string
      readonly expires: number
      readonly now: number
      readonly alone: Effect.Effect<boolean, Store.StoreError>
      readonly answer: (exit: Exit.Exit<boolean, Store.StoreError>) => void
    }
    type PgJob = PgEnqueueJob | PgFinishJob | PgExtendJob
    interface BatchRow {
      readonly k: "e" | "f" | "x" | "r"
      readonly id: string | null
      readonly event_id: string | null
      readonly target: string | null
      readonly status: Store.Status | null
    }

    /** After a commit that created events or made dependents due: wake workers here and elsewhere. */
    const wake = Effect.zipRight(notifyLater, signal.notify)

    /** Answers every job of a failed batch statement with the failure. */
    const failAll = (jobs: ReadonlyArray<PgJob>, error: SqlError): void =>
      jobs.forEach((job) => {
        const failure = fromSqlError(job._tag === "extend" ? "extendLease" : job._tag)(error)
        job.answer(Exit.fail(failure))
      })

    /** Each job alone (its own single statement, as without group commit): a failure sinks only its job. */
    const eachAlone = (jobs: ReadonlyArray<PgJob>) =>
      Effect.forEach(jobs, (job) => {
        switch (job._tag) {
          case "enqueue":
            return Effect.flatMap(Effect.exit(job.alone), (exit) => {
              if (Exit.isSuccess(exit) && !(exit.value instanceof Store.ConflictError) && exit.value.created) {
                for (const target of job.targets) knownTargets.add(target)
                return Effect.as(wake, job.answer(exit))
              }
              return Effect.sync(() => job.answer(exit))
            })
          case "finish":
            return Effect.flatMap(Effect.exit(job.alone), (exit) =>
              Exit.isSuccess(exit)
                ? Effect.as(exit.value.due > 0 ? wake : Effect.void, job.answer(Exit.succeed(exit.value.applied)))
                : Effect.sync(() => job.answer(Exit.failCause(exit.cause))))
          case "extend":
            return Effect.flatMap(Effect.exit(job.alone), (exit) => Effect.sync(() => job.answer(exit)))
        }
      }, { discard: true })

    /** One statement for `jobs` (no finish/extension repeats a row id), then the answers. */
    const runStatement = (jobs: ReadonlyArray<PgJob>) =>
      Effect.gen(function*() {
        const enqueues: Array<PgEnqueueJob> = []
        const finishes: Array<PgFinishJob> = []
        const extensions: Array<PgExtendJob> = []
        /** The first enqueue of each event id in this batch: the one written. */
        const firsts = new Map<string, PgEnqueueJob>()
        for (const job of jobs) {
          if (job._tag === "enqueue") {
            enqueues.push(job)
            if (!firsts.has(job.event.id)) firsts.set(job.event.id, job)
          } else if (job._tag === "finish") finishes.push(job)
          else extensions.push(job)
        }
        const written = Array.from(firsts.values()).sort((a, b) => a.event.id < b.event.id ? -1 : a.event.id > b.event.id ? 1 : 0)
        const fresh = new Set<string>()
        for (const job of written) for (const target of job.targets) if (!knownTargets.has(target)) fresh.add(target)
        let key = ""
        const params: Array<unknown> = []
        if (written.length > 0) {
          key += "e"
          params.push(
            written.map((job) => job.event.id),
            written.map((job) => job.event.type),
            written.map((job) => job.json),
            written.map((job) => job.now),
            written.map((job) => job.fingerprint)
          )
          if (fresh.size > 0) {
            key += "t"
            params.push(Array.from(fresh).sort())
          }
          const eventIds: Array<string> = []
          const targets: Array<string> = []
          const at: Array<number> = []
          const after: Array<string | null> = []
          const waiting: Array<number> = []
          const dependents: Array<number> = []
          for (const job of written) {
            for (let i = 0; i < job.targets.length; i++) {
              eventIds.push(job.event.id)
              targets.push(job.targets[i]!)
              at.push(job.now)
              const column = job.columns[i]
              after.push(column?.after_targets ?? null)
              waiting.push(column?.waiting ?? 0)
              dependents.push(column?.dependents ?? 0)
            }
          }
          params.push(eventIds, targets, at, after, waiting, dependents)
        }
        if (finishes.length > 0) {
          key += "f"
          const rows = finishes.slice().sort((a, b) => a.id - b.id)
          params.push(
            rows.map((f) => f.id),
            rows.map((f) => f.lease),
            rows.map((f) => f.status),
            rows.map((f) => f.startedAt),
            rows.map((f) => f.availableAt),
            rows.map((f) => f.deadReason),
            rows.map((f) => f.finishedAt),
            rows.map((f) => f.now),
            rows.map((f) => f.failed),
            rows.map((f) => f.delivered),
            rows.map((f) => f.response),
            rows.map((f) => f.durationMs),
            rows.map((f) => f.outcome),
            rows.map((f) => f.httpStatus),
            rows.map((f) => f.errorTag),
            rows.map((f) => f.message),
            rows.map((f) => f.retryAfterMs)
          )
        }
        if (extensions.length > 0) {
          key += "x"
          const rows = extensions.slice().sort((a, b) => a.id - b.id)
          params.push(rows.map((x) => x.id), rows.map((x) => x.lease), rows.map((x) => x.expires), rows.map((x) => x.now))
        }
        const result = yield* Effect.either(sql.unsafe<BatchRow>(batchText(key), params))
        if (result._tag === "Left") {
          if (jobs.length === 1) return failAll(jobs, result.left)
          return yield* eachAlone(jobs)
        }
        countWrite(jobs.length)
        const created = new Map<string, Array<{ id: string; target: string; status: Store.Status }>>()
        const finished = new Set<number>()
        const extended = new Set<number>()
        let due = 0
        for (const row of result.right) {
          switch (row.k) {
            case "e": {
              const eventId = row.event_id!
              let list = created.get(eventId)
              if (list === undefined) created.set(eventId, list = [])
              list.push({ id: row.id!, target: row.target!, status: row.status! })
              break
            }
            case "f":
              finished.add(Number(row.id))
              break
            case "x":
              extended.add(Number(row.id))
              break
            case "r":
              due = Number(row.id)
              break
          }
        }
        for (const target of fresh) knownTargets.add(target)
        if (created.size > 0 || due > 0) yield* wake
        const duplicates: Array<PgEnqueueJob> = []
        for (const job of enqueues) {
          const deliveries = created.get(job.event.id)
          if (deliveries === undefined) {
            duplicates.push(job)
            continue
          }
          if (deliveries.length > 1) deliveries.sort((a, b) => Number(a.id) - Number(b.id))
          const first = firsts.get(job.event.id)!
          // A second enqueue of an id written by this very statement: the same content, or a conflict.
          job.answer(Exit.succeed(
            first === job
              ? { eventId: job.event.id, created: true, deliveries }
              : Store.conflicts(job.fingerprint, first.fingerprint)
              ? Store.conflict(job.event.id, job.fingerprint, first.fingerprint)
              : { eventId: job.event.id, created: false, deliveries }
          ))
        }
        for (const job of finishes) job.answer(Exit.succeed(finished.has(job.id)))
        for (const job of extensions) job.answer(Exit.succeed(extended.has(job.id)))
        if (duplicates.length === 0) return
        // Ids stored before this batch (or by another process meanwhile): their first enqueue's deliveries.
        const stored = yield* Effect.either(
          sql.unsafe<ExistingRow & { event_id: string }>(existingMany, [Array.from(new Set(duplicates.map((job) => job.event.id)))])
        )
        if (stored._tag === "Left") return failAll(duplicates, stored.left)
        const byEvent = new Map<string, Array<ExistingRow>>()
        for (const row of stored.right) {
          let list = byEvent.get(row.event_id)
          if (list === undefined) byEvent.set(row.event_id, list = [])
          list.push(row)
        }
        for (const job of duplicates) job.answer(Exit.succeed(duplicateOf(job.event.id, job.fingerprint, byEvent.get(job.event.id) ?? [])))
      })

    /** Splits a batch into statements in which no row id is finished or extended twice, and runs them in order. */
    const runPgBatch = (jobs: ReadonlyArray<PgJob>) =>
      Effect.gen(function*() {
        let pending = jobs
        while (pending.length > 0) {
          const now: Array<PgJob> = []
          const later: Array<PgJob> = []
          const ids = new Set<number>()
          for (const job of pending) {
            if (job._tag === "enqueue") now.push(job)
            else if (ids.has(job.id)) later.push(job)
            else {
              ids.add(job.id)
              now.push(job)
            }
          }
          yield* runStatement(now)
          pending = later
        }
      })

    interface PgWriter {
      /** Queues the job; its answer comes through `job.answer`, once, after the commit. */
      readonly submit: (job: PgJob) => Effect.Effect<void, Store.StoreError>
    }
    const pgWriter: PgWriter | undefined = pg && options.groupCommit !== undefined
      ? yield* Effect.gen(function*() {
        const groupCommit = options.groupCommit!
        const maxBatch = Math.max(1, groupCommit.maxBatch ?? 512)
        const writers = Math.max(1, Math.floor(groupCommit.writers ?? 1))
        const queue = yield* Queue.bounded<PgJob>(Math.max(1, groupCommit.maxPending ?? 10_000))
        let closed = false
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            closed = true
            const rest = yield* Queue.takeAll(queue)
            const failed = Exit.fail(closedError)
            for (const job of rest) job.answer(failed)
            yield* Queue.shutdown(queue)
          })
        )
        const loop = Effect.gen(function*() {
          const first = yield* Queue.take(queue)
          const rest = yield* Queue.takeUpTo(queue, maxBatch - 1)
          yield* Effect.uninterruptible(
            runPgBatch(rest.length === 0 ? [first] : [first, ...rest]).pipe(
              Effect.catchAllCause((cause) => Effect.logError("fanout store: group commit failed", cause))
            )
          )
        }).pipe(Effect.forever)
        for (let i = 0; i < writers; i++) yield* Effect.forkScoped(loop)
        return {
          submit: (job: PgJob) =>
            closed
              ? Effect.fail(closedError)
              // Room in the queue (the usual case): no Effect for the offer; else wait for room (back-pressure).
              : Queue.unsafeOffer(queue, job)
              ? Effect.void
              : Effect.asVoid(Queue.offer(queue, job))
        } satisfies PgWriter
      })
      : undefined

    /** A finish through the PostgreSQL group commit. */
    const finishBatched = (
      writer: PgWriter,
      id: number,
      claim: Store.Claim,
      attempt: Store.AttemptInput,
      next: Store.Next,
      now: number
    ): Effect.Effect<boolean, Store.StoreError> => {
      const state = finalState(next, now)
      const delivered = next._tag === "Delivered"
      const { answer, answered } = slot<boolean>()
      const job: PgFinishJob = {
        _tag: "finish",
        id,
        lease: claim.lease,
        status: state.status,
        availableAt: state.availableAt,
        deadReason: state.deadReason,
        finishedAt: state.finishedAt,
        failed: attempt.outcome !== "success",
        delivered,
        response: delivered ? next.response ?? null : null,
        startedAt: Math.round(attempt.startedAt),
        durationMs: Math.max(0, Math.round(attempt.durationMs)),
        outcome: attempt.outcome,
        httpStatus: attempt.status ?? null,
        errorTag: attempt.errorTag ?? null,
        message: attempt.message ?? null,
        retryAfterMs: attempt.retryAfterMs !== undefined ? Math.round(attempt.retryAfterMs) : null,
        now,
        alone: Effect.suspend(() => run("finish", "batch", finishOp(id, claim, attempt, next, now, false), true)),
        answer
      }
      return Effect.zipRight(writer.submit(job), answered)
    }

    const runFinish = (
      id: number,
      claim: Store.Claim,
      attempt: Store.AttemptInput,
      next: Store.Next,
      now: number,
      joined: boolean
    ): Effect.Effect<Finished, Store.StoreError> => {
      const sync: { op?: SyncOp<Finished> } = {}
      const op = finishOp(id, claim, attempt, next, now, joined, pg ? undefined : sync)
      return run("finish", "batch", op, true, sync.op)
    }

    const finish: Store.DeliveryStore["finish"] = (claim, attempt, next) => {
      const id = parseId(claim.id)
      if (id === undefined) return Effect.succeed(false)
      const finishAt = (now: number, joined: boolean) =>
        pgWriter !== undefined && !joined
          ? finishBatched(pgWriter, id, claim, attempt, next, now)
          : Effect.flatMap(runFinish(id, claim, attempt, next, now, joined), (finished) =>
            finished.due > 0
              // Dependents became due: wake the workers, as an enqueue does (PostgreSQL: NOTIFY after
              // our commit, or inside the caller's transaction when we joined it).
              ? Effect.as(joined ? signal.notify : Effect.zipRight(notifyLater, signal.notify), finished.applied)
              : Effect.succeed(finished.applied))
      // Only PostgreSQL joins a caller's transaction here; elsewhere no lookup for one.
      return pg && options.joinTransactions
        ? Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.flatMap(inJoinedTransaction, (joined) => finishAt(now, joined)))
        : Effect.clockWith((clock) => finishAt(clock.unsafeCurrentTimeMillis(), false))
    }

    const extendLease: Store.DeliveryStore["extendLease"] = (claim, leaseMs) =>
      Effect.gen(function*() {
        yield* checkPositiveInt("extendLease", "leaseMs", leaseMs)
        const id = parseId(claim.id)
        if (id === undefined) return false
        const now = yield* Clock.currentTimeMillis
        const expires = now + leaseMs
        if (pgWriter !== undefined && !(yield* inJoinedTransaction)) {
          const { answer, answered } = slot<boolean>()
          const job: PgExtendJob = {
            _tag: "extend",
            id,
            lease: claim.lease,
            expires,
            now,
            alone: Effect.suspend(() =>
              Effect.map(
                run(
                  "extendLease",
                  "batch",
                  sql`UPDATE ${T.deliveries} SET available_at = ${expires}, updated_at = ${now}
                    WHERE id = ${id} AND lease = ${claim.lease} AND status = 'in_flight' RETURNING id`,
                  true
                ),
                (rows) => rows.length > 0
              )
            ),
            answer
          }
          yield* pgWriter.submit(job)
          return yield* answered
        }
        const rows = yield* run(
          "extendLease",
          "batch",
          pg ? sql`UPDATE ${T.deliveries} SET available_at = ${now + leaseMs}, updated_at = ${now}
            WHERE id = ${id} AND lease = ${claim.lease} AND status = 'in_flight' RETURNING id` : (conn: Connection) =>
            q(conn, text.extend, [expires, now, id, claim.lease]),
          true
        )
        return rows.length > 0
      })

    const release: Store.DeliveryStore["release"] = (claims) =>
      Effect.gen(function*() {
        const valid = claims.filter((claim) => parseId(claim.id) !== undefined)
        if (valid.length === 0) return 0
        const now = yield* Clock.currentTimeMillis
        const parts = chunks(valid, 500)
        const released = yield* run(
          "release",
          "batch",
          Effect.map(
            Effect.forEach(parts, (part) =>
              sql`UPDATE ${T.deliveries} SET status = 'pending', lease = NULL, available_at = ${now}, updated_at = ${now}
                WHERE id IN ${sql.in(part.map((claim) => parseId(claim.id)!))}
                  AND lease IN ${sql.in(part.map((claim) => claim.lease))}
                  AND status = 'in_flight'
                RETURNING id`),
            (results) => results.reduce((n, rows) => n + rows.length, 0)
          ),
          parts.length === 1
        )
        if (released > 0) yield* signal.notify
        return released
      })

    // ---- dead letters ------------------------------------------------------------------------

    const deadWhere = (filter: Store.DeadLetterFilter): Fragment => {
      const clauses: Array<Fragment> = [sql`status = 'dead'`]
      if (filter.target !== undefined) clauses.push(sql`target = ${filter.target}`)
      if (filter.errorLabel !== undefined) clauses.push(sql`last_error = ${filter.errorLabel}`)
      if (filter.from !== undefined) clauses.push(sql`finished_at >= ${filter.from}`)
      if (filter.to !== undefined) clauses.push(sql`finished_at <= ${filter.to}`)
      return sql.and(clauses)
    }

    const deadLetters: Store.DeliveryStore["deadLetters"] = (query) =>
      Effect.gen(function*() {
        yield* checkPositiveInt("deadLetters", "limit", query.limit)
        const after = query.cursor !== undefined ? parseId(query.cursor) : 0
        if (after === undefined) return yield* Effect.fail(invalid("deadLetters", `bad cursor ${JSON.stringify(query.cursor)}`))
        const rows = yield* run(
          "deadLetters",
          "query",
          sql<DeliveryRow & { type: string }>`SELECT d.id, d.event_id, e.type, d.target, d.status, d.attempts, d.total_attempts,
              d.available_at, d.last_error, d.last_error_message, d.dead_reason, d.finished_at, d.enqueued_at, d.resends
            FROM ${T.deliveries} d JOIN ${T.events} e ON e.id = d.event_id
            WHERE ${deadWhere(query)} AND d.id > ${after}
            ORDER BY d.id LIMIT ${query.limit + 1}`
        )
        const items = rows.slice(0, query.limit).map((row): Store.DeadLetter => ({
          id: String(row.id),
          eventId: row.event_id,
          eventType: row.type,
          target: row.target,
          idempotencyKey: Store.resendKey(row.event_id, row.target, num(row.resends)),
          reason: optStr(row.dead_reason) ?? "",
          lastError: optStr(row.last_error),
          lastErrorMessage: optStr(row.last_error_message),
          attempts: num(row.attempts),
          totalAttempts: num(row.total_attempts),
          deadAt: num(row.finished_at),
          enqueuedAt: num(row.enqueued_at)
        }))
        return { items, next: rows.length > query.limit ? items[items.length - 1]!.id : undefined }
      })

    const replayWhere = (operation: string, where: Fragment, single: boolean) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const update = sql`UPDATE ${T.deliveries}
          SET status = 'pending', attempts = 0, first_attempt_at = NULL, replayed_at = ${now}, available_at = ${now}, lease = NULL,
              dead_reason = NULL, finished_at = NULL, updated_at = ${now}
          WHERE ${where} RETURNING id`
        const rows = yield* run(
          operation,
          single ? "batch" : "write",
          pg ? sql`WITH replayed AS (${update}) SELECT id, pg_notify(${channel}, '1') FROM replayed` : update,
          true
        )
        if (rows.length > 0) yield* signal.notify
        return rows.length
      })

    const replay: Store.DeliveryStore["replay"] = (id) => {
      const parsed = parseId(id)
      if (parsed === undefined) return Effect.succeed(false)
      return Effect.map(replayWhere("replay", sql`id = ${parsed} AND status = 'dead'`, true), (n) => n > 0)
    }

    const replayMany: Store.DeliveryStore["replayMany"] = (filter) => replayWhere("replayMany", deadWhere(filter), false)

    /**
     * One conditional UPDATE (a finished delivery of the event to the target back to pending, one
     * more resend); when it changes nothing, one read says why.
     */
    const resend: Store.DeliveryStore["resend"] = (eventId, target) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const update = sql`UPDATE ${T.deliveries}
          SET status = 'pending', attempts = 0, first_attempt_at = NULL, replayed_at = ${now}, available_at = ${now}, lease = NULL,
              dead_reason = NULL, finished_at = NULL, resends = resends + 1, updated_at = ${now}
          WHERE event_id = ${eventId} AND target = ${target} AND status IN ('delivered', 'compensated')
          RETURNING id, resends`
        const rows = yield* run(
          "resend",
          "batch",
          pg
            ? sql<{ id: unknown; resends: unknown }>`WITH resent AS (${update}) SELECT id, resends, pg_notify(${channel}, '1') FROM resent`
            : sql<{ id: unknown; resends: unknown }>`${update}`,
          true
        )
        const resent = rows[0]
        if (resent !== undefined) {
          yield* signal.notify
          const resends = num(resent.resends)
          return {
            _tag: "Resent",
            id: String(resent.id),
            target,
            idempotencyKey: Store.resendKey(eventId, target, resends),
            resends
          } satisfies Store.ResendResult
        }
        const found = yield* run(
          "resend",
          "read",
          sql<{ id: unknown; status: Store.Status | null }>`SELECT d.id, d.status FROM ${T.events} e
            LEFT JOIN ${T.deliveries} d ON d.event_id = e.id AND d.target = ${target}
            WHERE e.id = ${eventId}`
        )
        const row = found[0]
        if (row === undefined) return { _tag: "UnknownEvent" } satisfies Store.ResendResult
        if (row.status === null || row.id === null) return { _tag: "NoDelivery" } satisfies Store.ResendResult
        if (row.status === "dead") return { _tag: "Dead", id: String(row.id) } satisfies Store.ResendResult
        if (row.status === "pending" || row.status === "in_flight") {
          return { _tag: "Open", id: String(row.id), status: row.status } satisfies Store.ResendResult
        }
        // It finished between the update and the read: resend it now.
        return yield* resend(eventId, target)
      })

    /** Deletes matching deliveries (with their attempts, and events left empty) in chunks of 1 000. */
    /**
     * The held dependents of deleted inputs (transitively): a delivery still waiting for an input
     * that no longer exists could never run, and would count as pending for ever.
     */
    const heldBy = (deleted: ReadonlyArray<{ readonly event_id: string; readonly target: string }>) =>
      Effect.gen(function*() {
        const out: Array<number> = []
        let frontier = deleted
        while (frontier.length > 0) {
          const gone = new Set(frontier.map((row) => `${row.event_id}\u0000${row.target}`))
          const candidates = yield* sql<{ id: unknown; event_id: string; target: string; after_targets: unknown }>`
            SELECT id, event_id, target, after_targets FROM ${T.deliveries}
            WHERE event_id IN ${sql.in(Array.from(new Set(frontier.map((row) => row.event_id))))}
              AND status = 'pending' AND waiting > 0`
          const next = candidates.filter((row) =>
            (parseAfter(row.after_targets) ?? []).some((input) => gone.has(`${row.event_id}\u0000${input}`))
          )
          if (next.length === 0) break
          const ids = next.map((row) => num(row.id))
          yield* sql`DELETE FROM ${T.attempts} WHERE delivery_id IN ${sql.in(ids)}`
          yield* sql`DELETE FROM ${T.deliveries} WHERE id IN ${sql.in(ids)}`
          out.push(...ids)
          frontier = next
        }
        return out.length
      })

    const deleteWhere = (operation: string, where: Fragment) =>
      Effect.gen(function*() {
        let deliveries = 0
        let events = 0
        while (true) {
          const [n, e, h] = yield* run(
            operation,
            "write",
            Effect.gen(function*() {
              const rows = yield* sql<{ id: unknown; event_id: string; target: string; dependents: unknown }>`
                SELECT id, event_id, target, dependents FROM ${T.deliveries}
                WHERE ${where} ORDER BY id LIMIT 1000`
              if (rows.length === 0) return [0, 0, 0] as const
              const ids = rows.map((row) => num(row.id))
              yield* sql`DELETE FROM ${T.attempts} WHERE delivery_id IN ${sql.in(ids)}`
              yield* sql`DELETE FROM ${T.deliveries} WHERE id IN ${sql.in(ids)}`
              const inputs = rows.filter((row) => num(row.dependents) > 0)
              const held = inputs.length > 0 ? yield* heldBy(inputs) : 0
              const eventIds = Array.from(new Set(rows.map((row) => row.event_id)))
              const gone = yield* sql`DELETE FROM ${T.events} WHERE id IN ${sql.in(eventIds)}
                AND NOT EXISTS (SELECT 1 FROM ${T.deliveries} d WHERE d.event_id = ${T.events}.id)
                RETURNING id`
              return [rows.length, gone.length, held] as const
            })
          )
          deliveries += n + h
          events += e
          if (n < 1000) return { deliveries, events }
        }
      })

    const purge: Store.DeliveryStore["purge"] = (selection) => {
      if (typeof selection === "string") {
        const id = parseId(selection)
        if (id === undefined) return Effect.succeed(0)
        return Effect.map(deleteWhere("purge", sql`id = ${id} AND status = 'dead'`), (removed) => removed.deliveries)
      }
      return Effect.map(deleteWhere("purge", deadWhere(selection)), (removed) => removed.deliveries)
    }

    const purgeTarget: Store.DeliveryStore["purgeTarget"] = (target) =>
      Effect.gen(function*() {
        // Two passes, each on a partial index: `_open (status, target)` for pending, `_dead` for dead.
        const pending = yield* deleteWhere(
          "purgeTarget",
          sql`status IN ('pending', 'in_flight') AND status = 'pending' AND target = ${target}`
        )
        const dead = yield* deleteWhere("purgeTarget", sql`status = 'dead' AND target = ${target}`)
        return { deliveries: pending.deliveries + dead.deliveries, events: pending.events + dead.events }
      })

    const retention: Store.DeliveryStore["retention"] = (olderThan) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const cutoff = now - Duration.toMillis(Duration.decode(olderThan))
        return yield* deleteWhere(
          "retention",
          // An input's answer is kept while a sibling may still need it (pending, in flight, or dead
          // and replayable): deleting it would hand the dependent an empty input.
          sql`status IN ('delivered', 'compensated') AND finished_at < ${cutoff} AND (dependents = 0 OR NOT EXISTS (
            SELECT 1 FROM ${T.deliveries} h WHERE h.event_id = ${T.deliveries}.event_id
              AND h.status IN ('pending', 'in_flight', 'dead')))`
        )
      })

    // ---- reads -------------------------------------------------------------------------------

    const status: Store.DeliveryStore["status"] = (eventId) =>
      Effect.gen(function*() {
        const found = yield* run(
          "status",
          "read",
          Effect.gen(function*() {
            const events = yield* sql<{ envelope: string; enqueued_at: unknown }>`SELECT envelope, enqueued_at
              FROM ${T.events} WHERE id = ${eventId}`
            const event = events[0]
            if (event === undefined) return Option.none()
            const deliveries = yield* sql<DeliveryRow>`SELECT * FROM ${T.deliveries} WHERE event_id = ${eventId} ORDER BY id`
            const attempts = deliveries.length === 0 ? [] : yield* sql<AttemptRow>`SELECT * FROM ${T.attempts}
              WHERE delivery_id IN ${sql.in(deliveries.map((row) => num(row.id)))} ORDER BY delivery_id, number`
            return Option.some({ event, deliveries, attempts })
          })
        )
        if (Option.isNone(found)) return Option.none()
        const { attempts, deliveries, event } = found.value
        const decoded = yield* decodeEnvelope("status", event.envelope)
        const afters: Array<ReadonlyArray<string>> = []
        for (const row of deliveries) {
          const after = parseAfter(row.after_targets)
          if (after === undefined) {
            return yield* Effect.fail(
              new Store.StoreError({
                operation: "status",
                reason: "Corrupt",
                message: `status: delivery ${String(row.id)}: stored after_targets is not a JSON array of names`
              })
            )
          }
          afters.push(after)
        }
        return Option.some<Store.EventStatus>({
          event: decoded,
          enqueuedAt: num(event.enqueued_at),
          deliveries: deliveries.map((row, i): Store.DeliveryStatus => {
            const history = attempts.filter((a) => num(a.delivery_id) === num(row.id)).map(toAttempt)
            return {
              id: String(row.id),
              target: row.target,
              idempotencyKey: Store.resendKey(row.event_id, row.target, num(row.resends)),
              status: row.status,
              attempts: num(row.attempts),
              totalAttempts: num(row.total_attempts),
              nextAttemptAt: row.status === "pending" ? optNum(row.available_at) : undefined,
              leaseExpiresAt: row.status === "in_flight" ? optNum(row.available_at) : undefined,
              lastError: optStr(row.last_error),
              lastErrorMessage: optStr(row.last_error_message),
              deadReason: optStr(row.dead_reason),
              finishedAt: optNum(row.finished_at),
              after: afters[i]!,
              waiting: num(row.waiting),
              response: optStr(row.response),
              history
            }
          })
        })
      })

    // ---- event search ------------------------------------------------------------------------

    /**
     * `d.status` with the status as literal text (it is one of five names), so SQLite can prove a
     * partial index's predicate: `pending`/`in_flight` read `_open`, `dead` reads `_dead`.
     */
    const drivingStatus: Partial<Record<Store.Status, Fragment>> = {
      pending: sql.literal("d.status IN ('pending', 'in_flight') AND d.status = 'pending'"),
      in_flight: sql.literal("d.status IN ('pending', 'in_flight') AND d.status = 'in_flight'"),
      dead: sql.literal("d.status = 'dead'")
    }
    const statuses: ReadonlySet<string> = new Set(["pending", "in_flight", "delivered", "dead", "compensated"])

    const events_: Store.DeliveryStore["events"] = (query) =>
      Effect.gen(function*() {
        yield* checkPositiveInt("events", "limit", query.limit)
        const after = query.cursor !== undefined ? Store.eventCursor.decode(query.cursor) : undefined
        if (query.cursor !== undefined && after === undefined) {
          return yield* Effect.fail(invalid("events", `bad cursor ${JSON.stringify(query.cursor)}`))
        }
        if (query.status !== undefined && !statuses.has(query.status)) {
          return yield* Effect.fail(invalid("events", `unknown status ${JSON.stringify(query.status)}`))
        }
        const clauses: Array<Fragment> = []
        if (query.type !== undefined) clauses.push(sql`e.type = ${query.type}`)
        if (query.since !== undefined) clauses.push(sql`e.enqueued_at >= ${query.since}`)
        if (query.until !== undefined) clauses.push(sql`e.enqueued_at <= ${query.until}`)
        if (after !== undefined) clauses.push(sql`(e.enqueued_at, e.id) < (${after[0]}, ${after[1]})`)
        const driving = query.status !== undefined ? drivingStatus[query.status] : undefined
        const limit = query.limit + 1
        const rows = yield* run(
          "events",
          "read",
          Effect.gen(function*() {
            const found = driving !== undefined
              // A small set (the queue or the dead letters): from its partial index to the events.
              ? yield* sql<{ id: string; type: string; enqueued_at: unknown }>`SELECT e.id, e.type, e.enqueued_at
                  FROM ${T.deliveries} d CROSS JOIN ${T.events} e
                  WHERE ${
                sql.and([
                  driving,
                  ...(query.target !== undefined ? [sql`d.target = ${query.target}`] : []),
                  sql`e.id = d.event_id`,
                  ...clauses
                ])
              }
                  GROUP BY e.id, e.type, e.enqueued_at
                  ORDER BY e.enqueued_at DESC, e.id DESC LIMIT ${limit}`
              // Newest first on an events index; a target or a finished status is checked per event
              // on its (event_id, target) index (on SQLite the unary + keeps the planner off the status indexes).
              : yield* sql<{ id: string; type: string; enqueued_at: unknown }>`SELECT e.id, e.type, e.enqueued_at
                  FROM ${T.events} e
                  WHERE ${
                sql.and([
                  ...clauses,
                  ...(query.target !== undefined || query.status !== undefined
                    ? [sql`EXISTS (SELECT 1 FROM ${T.deliveries} d WHERE ${
                      sql.and([
                        sql`d.event_id = e.id`,
                        ...(query.target !== undefined ? [sql`d.target = ${query.target}`] : []),
                        ...(query.status !== undefined ? [pg ? sql`d.status = ${query.status}` : sql`+d.status = ${query.status}`] : [])
                      ])
                    })`]
                    : [sql`1 = 1`])
                ])
              }
                  ORDER BY e.enqueued_at DESC, e.id DESC LIMIT ${limit}`
            const page = found.slice(0, query.limit)
            const deliveries = page.length === 0 ? [] : yield* sql<{
              id: unknown
              event_id: string
              target: string
              status: Store.Status
            }>`SELECT id, event_id, target, status FROM ${T.deliveries}
              WHERE event_id IN ${sql.in(page.map((row) => row.id))} ORDER BY id`
            return { found, page, deliveries }
          })
        )
        const byEvent = new Map<string, Array<{ id: string; target: string; status: Store.Status }>>()
        for (const d of rows.deliveries) {
          let list = byEvent.get(d.event_id)
          if (list === undefined) byEvent.set(d.event_id, list = [])
          list.push({ id: String(d.id), target: d.target, status: d.status })
        }
        const items = rows.page.map((row): Store.EventSummary => ({
          id: row.id,
          type: row.type,
          enqueuedAt: num(row.enqueued_at),
          deliveries: byEvent.get(row.id) ?? []
        }))
        const last = items[items.length - 1]
        return {
          items,
          next: rows.found.length > query.limit && last !== undefined
            ? Store.eventCursor.encode(last.enqueuedAt, last.id)
            : undefined
        }
      })

    interface CountRow {
      readonly target: string
      readonly status: Store.Status
      readonly n: unknown
      readonly oldest: unknown
    }
    /**
     * Runs a count query (a row per target and status) and sums it by status (the keys `empty` has;
     * `in_flight` is `inFlight`), overall and per target, with the depth and the oldest pending age.
     */
    const counted = <K extends string>(
      operation: string,
      query: Effect.Effect<ReadonlyArray<CountRow>, SqlError>,
      empty: () => Record<K | "pending" | "inFlight", number>
    ) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* run(operation, "query", query)
        const total = empty()
        const targets: Record<string, Record<K | "pending" | "inFlight", number>> = {}
        let oldest: number | undefined
        for (const row of rows) {
          const key = (row.status === "in_flight" ? "inFlight" : row.status) as K
          const n = num(row.n)
          total[key] += n
          ;(targets[row.target] ??= empty())[key] += n
          if (row.status === "pending" || row.status === "in_flight") {
            const o = optNum(row.oldest)
            if (o !== undefined && (oldest === undefined || o < oldest)) oldest = o
          }
        }
        return {
          ...total,
          depth: total.pending + total.inFlight,
          oldestPendingAgeMs: oldest === undefined ? 0 : Math.max(0, now - oldest),
          targets
        }
      })

    const stats: Store.DeliveryStore["stats"] = counted(
      "stats",
      sql<CountRow>`SELECT target, status, COUNT(*) AS n, MIN(enqueued_at) AS oldest
        FROM ${T.deliveries} GROUP BY target, status`,
      () => ({ pending: 0, inFlight: 0, delivered: 0, dead: 0, compensated: 0 })
    )

    // Only the rows of these statuses (two partial indexes): its cost follows the queue, not the history.
    const gauges: Store.DeliveryStore["gauges"] = counted(
      "gauges",
      // Each half reads one partial index (and, for the oldest age, the queue's rows).
      sql<CountRow>`SELECT target, status, COUNT(*) AS n, MIN(enqueued_at) AS oldest
        FROM ${T.deliveries} WHERE status IN ('pending', 'in_flight') GROUP BY target, status
        UNION ALL
        SELECT target, 'dead' AS status, COUNT(*) AS n, NULL AS oldest
        FROM ${T.deliveries} WHERE status = 'dead' GROUP BY target`,
      () => ({ pending: 0, inFlight: 0, dead: 0 })
    )

    // ---- wake-ups ----------------------------------------------------------------------------

    // Later delivery: the earliest future due time of a pending delivery to the target. Its WHERE
    // implies the partial `_due` index's (target, available_at) predicate, so it reads that index.
    const nextDue: NonNullable<Store.DeliveryStore["nextDue"]> = (target) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* run(
          "nextDue",
          "query",
          sql<{ readonly at: unknown }>`SELECT available_at AS at FROM ${T.deliveries}
            WHERE target = ${target} AND status IN ('pending', 'in_flight') AND waiting = 0 AND available_at > ${now}
              AND status = 'pending'
            ORDER BY available_at LIMIT 1`
        )
        const at = rows[0]?.at
        return at === undefined || at === null ? Option.none() : Option.some(num(at))
      })

    const wakeups: Stream.Stream<void> = options.listen === undefined
      ? signal.stream
      : Stream.merge(
        signal.stream,
        options.listen(channel).pipe(
          Stream.map((): void => undefined),
          Stream.tapErrorCause((cause) => Effect.logWarning("fanout store: LISTEN failed, retrying", cause)),
          Stream.retry(Schedule.spaced("1 second")),
          Stream.catchAll(() => Stream.empty)
        )
      )

    return {
      enqueue,
      claim,
      finish,
      extendLease,
      release,
      deadLetters,
      replay,
      replayMany,
      resend,
      purgeTarget,
      purge,
      status,
      events: events_,
      stats,
      gauges,
      retention,
      wakeups,
      nextDue,
      diagnostics: Effect.sync(() => flush === undefined ? { ...counters } : { ...counters, flushes: flush.flushes() })
    } satisfies Store.DeliveryStore
  })
