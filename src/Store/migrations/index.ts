/**
 * The store's migrations, in order, for `@effect/sql`'s `Migrator.fromRecord`. Keys are
 * `<id>_<name>`; ids only grow; released migrations are never edited.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Effect } from "effect"
import init from "./0001_init.js"
import dependencies from "./0002_dependencies.js"
import fingerprint from "./0003_fingerprint.js"
import leanIndexes from "./0004_lean_indexes.js"
import replayedAt from "./0005_replayed_at.js"
import eventSearch from "./0006_event_search.js"
import resends from "./0007_resends.js"

/**
 * Table names (plain lower-case identifiers: `<prefix>events`, …).
 *
 * @internal
 */
export interface Tables {
  readonly events: string
  readonly targets: string
  readonly deliveries: string
  readonly attempts: string
  readonly migrations: string
}

/** @internal */
export const tables = (prefix: string): Tables => ({
  events: `${prefix}events`,
  targets: `${prefix}targets`,
  deliveries: `${prefix}deliveries`,
  attempts: `${prefix}attempts`,
  migrations: `${prefix}migrations`
})

/** @internal */
export const migrations = (
  sql: SqlClient,
  t: Tables,
  dialect: "sqlite" | "pg"
): Record<string, Effect.Effect<void, SqlError>> => ({
  "0001_init": init(sql, t, dialect),
  "0002_dependencies": dependencies(sql, t, dialect),
  "0003_fingerprint": fingerprint(sql, t, dialect),
  "0004_lean_indexes": leanIndexes(sql, t, dialect),
  "0005_replayed_at": replayedAt(sql, t, dialect),
  "0006_event_search": eventSearch(sql, t, dialect),
  "0007_resends": resends(sql, t, dialect)
})
