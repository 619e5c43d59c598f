/**
 * Migration 5: when each delivery was last replayed.
 *
 * Append-only: never edit a released migration; add `0006_…` instead.
 *
 * New column of `deliveries`:
 * - `replayed_at`: the instant (ms) of the delivery's last replay, NULL if never replayed. A retry
 *   budget's age (`retry.maxAge`) counts from it when set, else from `enqueued_at`, so a replayed
 *   dead letter gets the whole budget again (attempts were already reset by replay).
 *
 * A nullable ADD COLUMN without a default rewrites no rows (SQLite, PostgreSQL). No index: the
 * column is only read with its row, at claim.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { Tables } from "./index.js"

/** @internal */
export default (sql: SqlClient, t: Tables, dialect: "sqlite" | "pg"): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql.unsafe(`ALTER TABLE ${t.deliveries} ADD COLUMN replayed_at ${dialect === "pg" ? "BIGINT" : "INTEGER"}`))
