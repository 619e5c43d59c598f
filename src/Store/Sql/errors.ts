/**
 * `SqlError` to {@link Store.StoreError}: the mapping every SQL store operation answers with.
 * Re-exported by `Sql.ts`.
 *
 * @internal
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import * as Store from "../../Store.js"

const busyCodes = new Set([
  "SQLITE_BUSY",
  "SQLITE_BUSY_SNAPSHOT",
  "SQLITE_BUSY_RECOVERY",
  "SQLITE_BUSY_TIMEOUT",
  "SQLITE_LOCKED",
  "SQLITE_LOCKED_SHAREDCACHE",
  "40001",
  "40P01",
  "55P03"
])

/**
 * Maps an `SqlError` to a {@link Store.StoreError} (both retryable, answered `503` + `Retry-After`
 * by the server):
 *
 * - `Busy`: lock and serialization conflicts — SQLite `SQLITE_BUSY*` (another connection or process
 *   held the write lock past the busy timeout) and `SQLITE_LOCKED*`, PostgreSQL `40001`, `40P01`,
 *   `55P03`;
 * - `Unavailable`: everything else, in particular SQLite `SQLITE_FULL` (the disk or file system is
 *   full: the transaction was rolled back, nothing of it is stored), `SQLITE_IOERR*` (a failed read,
 *   write or fsync), `SQLITE_CANTOPEN` and `SQLITE_READONLY*`, and any unreachable database.
 *
 * better-sqlite3 reports extended codes (`SQLITE_BUSY_SNAPSHOT`, `SQLITE_IOERR_WRITE`, …): a code is
 * matched by its primary code, so every extension of `SQLITE_BUSY` / `SQLITE_LOCKED` is `Busy`.
 *
 * @since 0.1.0
 * @category errors
 */
export const fromSqlError = (operation: string) => (error: SqlError): Store.StoreError => {
  const cause = error.cause as { readonly code?: unknown; readonly message?: unknown } | null | undefined
  const code = typeof cause?.code === "string" ? cause.code : undefined
  const detail = typeof cause?.message === "string" ? cause.message : error.message
  const busy = code !== undefined && (busyCodes.has(code) || /^SQLITE_(BUSY|LOCKED)(_|$)/.test(code))
  return new Store.StoreError({
    operation,
    reason: busy ? "Busy" : "Unavailable",
    message: `${operation}: ${detail}${code !== undefined && code.startsWith("SQLITE_") ? ` (${code})` : ""}`,
    cause: error
  })
}

/** An effect's `SqlError` as the operation's {@link Store.StoreError}. */
export const lift = (operation: string) => <A, R>(effect: Effect.Effect<A, SqlError | Store.StoreError, R>) =>
  Effect.catchTag(effect, "SqlError", (error) => Effect.fail(fromSqlError(operation)(error)))
