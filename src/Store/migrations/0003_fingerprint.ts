/**
 * Migration 3: each event's fingerprint.
 *
 * Append-only: never edit a released migration; add `0004_…` instead.
 *
 * New column of `events`:
 * - `fingerprint`: the SHA-256 (64 hex digits) of the event's content — `type`, `key`, `payload`,
 *   as `Event.fingerprint` computes it (not `createdAt`, not `headers`). A second enqueue of a
 *   stored id with another fingerprint is a conflict (nothing written); with the same one, a
 *   duplicate. NULL for the events stored before this migration: their content is not compared,
 *   a second enqueue of their id counts as a duplicate.
 *
 * A nullable ADD COLUMN without a default rewrites no rows (SQLite, PostgreSQL), so the migration
 * is instant on a large existing outbox. No index: the column is only read with its row, by id.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { Tables } from "./index.js"

/** @internal */
export default (sql: SqlClient, t: Tables, _dialect: "sqlite" | "pg"): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql.unsafe(`ALTER TABLE ${t.events} ADD COLUMN fingerprint TEXT`))
