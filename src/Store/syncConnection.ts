/**
 * A SQL connection that also runs a statement synchronously, throwing its `SqlError`: the lean
 * SQLite client's (better-sqlite3 is synchronous, `sqliteClient.ts`). The store's group commit runs
 * whole operations through it as plain calls (`Sql.ts`, `runPlain`), with no Effect per statement;
 * any other connection gets the operations as Effects.
 *
 * @internal
 */
import type { Connection } from "@effect/sql/SqlConnection"

/** @internal */
export type ExecuteSync = (sql: string, params: ReadonlyArray<unknown>) => ReadonlyArray<any>

/** @internal */
export interface SyncConnection extends Connection {
  readonly executeSync: ExecuteSync
}

/** The synchronous executor of a connection, if it has one. @internal */
export const syncExecutor = (conn: Connection): ExecuteSync | undefined =>
  // `in` narrows to a property of unknown type; the lean client is the only one that sets it, with this signature.
  "executeSync" in conn && typeof conn.executeSync === "function" ? (conn as SyncConnection).executeSync : undefined
