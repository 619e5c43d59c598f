/**
 * The SQLite `SqlClient` the SQLite store opens for itself (`SqliteStore.make` / `layer`): the same
 * client as `@effect/sql-sqlite-node`'s `SqliteClient.make` — one better-sqlite3 connection behind a
 * one-permit semaphore, the SQLite statement compiler, `@effect/sql`'s transactions — with a leaner
 * statement path for the store's hot loop:
 *
 * - prepared statements are kept in a plain `Map` by SQL text (at most {@link capacity}, the oldest
 *   dropped first) instead of an Effect `Cache`, whose lookup hashes the whole SQL text, reads the
 *   clock for its time-to-live and runs a few Effects per statement;
 * - a statement runs in one `Effect.suspend`, without reading the fiber's context for
 *   `SqlClient.SafeIntegers` (the store never turns it on; this client is not handed to users).
 *
 * Measured (2026-12-03, one core, `taskset -c 0 npm run bench -- store-ops --events=4000 --rounds=6
 * --clients=lean,effect`, rounds alternating in one process): enqueue + 2 × (claim + finish) 372 µs
 * of CPU per event (median) against 402 µs with `SqliteClient`, lower in 5 of 6 paired rounds; a
 * bare `conn.execute` of a cached statement 5.2–6.1 µs against 2.3–2.8 µs for the statement
 * itself. The store's conformance suite runs on both clients (test/Store/Sqlite.test.ts), and
 * `SqliteStore.layerClient` still takes any `SqlClient`.
 *
 * @internal
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { SyncConnection } from "./syncConnection.js"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import { createRequire } from "node:module"
import { Effect, Scope, Stream } from "effect"

/** What this client uses of a better-sqlite3 statement (the package ships no types; @effect/sql-sqlite-node depends on it). */
interface SqliteStatement {
  readonly reader: boolean
  all(...params: ReadonlyArray<unknown>): Array<unknown>
  run(...params: ReadonlyArray<unknown>): unknown
  raw(on: boolean): SqliteStatement
}
/** What this client uses of a better-sqlite3 database. */
interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  pragma(source: string): unknown
  close(): void
}
// `require` is untyped: the constructor's shape is the one above (better-sqlite3 12).
const Sqlite = createRequire(import.meta.url)("better-sqlite3") as new(filename: string) => SqliteDatabase

/** Prepared statements kept per connection (the store uses a few dozen texts). */
const capacity = 500
const transactionControl = /^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b/

const failed = (message: string) => (cause: unknown) => new SqlError({ cause, message })
const prepareFailed = failed("Failed to prepare statement ")
const executeFailed = failed("Failed to execute statement")

/**
 * Opens `filename` (WAL journal, as `SqliteClient.make` does) and returns a `SqlClient` on it,
 * closed with the scope.
 *
 * @internal
 */
export const make = (filename: string): Effect.Effect<Client.SqlClient, SqlError, Scope.Scope> =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const db = new Sqlite(filename)
          try {
            db.pragma("journal_mode = WAL")
          } catch (cause) {
            db.close()
            throw cause
          }
          return db
        },
        catch: failed(`Failed to open ${filename}`)
      }),
      (db) => Effect.sync(() => db.close())
    )

    const statements = new Map<string, SqliteStatement>()
    const prepared = (sql: string): SqliteStatement => {
      let statement = statements.get(sql)
      if (statement === undefined) {
        statement = db.prepare(sql)
        if (statements.size >= capacity) statements.delete(statements.keys().next().value!)
        statements.set(sql, statement)
      }
      return statement
    }

    /** Runs one statement: its rows when it returns rows, else the run's info (`raw`) or `[]`. */
    const runNow = (statement: SqliteStatement, params: ReadonlyArray<unknown>, raw: boolean) => {
      if (statement.reader) return statement.all(...params)
      const info = statement.run(...params)
      return raw ? info : []
    }

    /** Runs `use` on the prepared statement of `sql`, now; throws the prepare or execute failure as a `SqlError`. */
    const useStatement = <A>(sql: string, use: (statement: SqliteStatement) => A): A => {
      let statement: SqliteStatement
      try {
        statement = prepared(sql)
      } catch (cause) {
        throw prepareFailed(cause)
      }
      try {
        return use(statement)
      } catch (cause) {
        throw executeFailed(cause)
      }
    }

    /** {@link useStatement} in one suspend, its failure typed. */
    const withStatement = <A>(sql: string, use: (statement: SqliteStatement) => A): Effect.Effect<A, SqlError> =>
      Effect.suspend(() => {
        try {
          return Effect.succeed(useStatement(sql, use))
        } catch (error) {
          // useStatement throws only the SqlErrors it builds.
          return Effect.fail(error as SqlError)
        }
      })

    /** The rows as arrays of values (better-sqlite3's raw mode, switched back off after). */
    const values = (statement: SqliteStatement, params: ReadonlyArray<unknown>): ReadonlyArray<ReadonlyArray<unknown>> => {
      if (!statement.reader) {
        statement.run(...params)
        return []
      }
      statement.raw(true)
      try {
        return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
      } finally {
        statement.raw(false)
      }
    }

    const connection: SyncConnection = {
      executeSync: (sql, params) => useStatement(sql, (statement) => runNow(statement, params, false) as ReadonlyArray<any>),
      execute: (sql, params, transformRows) => {
        const rows = withStatement(sql, (statement) => runNow(statement, params, false) as ReadonlyArray<any>)
        return transformRows ? Effect.map(rows, transformRows) : rows
      },
      executeRaw: (sql, params) => withStatement(sql, (statement) => runNow(statement, params, true)),
      executeValues: (sql, params) => withStatement(sql, (statement) => values(statement, params)),
      executeUnprepared: (sql, params, transformRows) => {
        const rows = Effect.suspend(() => {
          try {
            // Transaction control (the store's BEGIN IMMEDIATE, COMMIT, savepoints: a few fixed texts,
            // several per commit) reuses its prepared statement; anything else is prepared afresh.
            const statement = transactionControl.test(sql) ? prepared(sql) : db.prepare(sql)
            return Effect.succeed(runNow(statement, params ?? [], false) as ReadonlyArray<any>)
          } catch (cause) {
            return Effect.fail(executeFailed(cause))
          }
        })
        return transformRows ? Effect.map(rows, transformRows) : rows
      },
      executeStream: () => Stream.dieMessage("executeStream not implemented")
    }

    const semaphore = yield* Effect.makeSemaphore(1)
    const acquirer = semaphore.withPermits(1)(Effect.succeed(connection))
    const transactionAcquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
        ),
        connection
      )
    )
    return yield* Client.make({
      acquirer,
      compiler: Statement.makeCompilerSqlite(),
      transactionAcquirer,
      spanAttributes: [["db.system.name", "sqlite"]]
    }).pipe(Effect.provide(Reactivity.layer))
  })
