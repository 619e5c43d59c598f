/**
 * Migration 2: dependencies between an event's deliveries (durable pipelines).
 *
 * Append-only: never edit a released migration; add `0003_…` instead.
 *
 * New columns of `deliveries` (existing rows get the defaults: plain deliveries, nothing held):
 * - `after_targets`: the targets this delivery runs after, a JSON array in enqueue order; NULL for
 *   a plain delivery.
 * - `waiting`: how many of those inputs are not delivered yet. A `pending` row is claimable only at 0.
 * - `dependents`: how many deliveries of the same event run after this one; the answer given to
 *   `finish` is stored only when > 0.
 * - `response`: that stored answer (JSON text), read by the dependents' claims.
 *
 * No side table: the deliveries that run after a delivered input are found among the deliveries of
 * the same event (the `UNIQUE (event_id, target)` index; an event has a handful of targets) by
 * looking for the input in `after_targets`. So enqueue writes no extra rows, and retention and purge
 * cannot leave orphans behind.
 *
 * The claim index `_due` is rebuilt with `waiting = 0` in its predicate: held rows (due since their
 * enqueue, possibly for a long time when an input is dead) stay out of it, so claims never wade
 * through them. Claims repeat the literal `waiting = 0` so both planners can prove the predicate.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { Tables } from "./index.js"

/** @internal */
export default (sql: SqlClient, t: Tables, _dialect: "sqlite" | "pg"): Effect.Effect<void, SqlError> => {
  // Both dialects accept the same statements: an ADD COLUMN with a constant default rewrites no
  // rows (PostgreSQL ≥ 11, SQLite), so the migration is cheap on a large existing outbox apart
  // from rebuilding `_due`.
  const statements = [
    `ALTER TABLE ${t.deliveries} ADD COLUMN after_targets TEXT`,
    `ALTER TABLE ${t.deliveries} ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0`,
    `ALTER TABLE ${t.deliveries} ADD COLUMN dependents INTEGER NOT NULL DEFAULT 0`,
    `ALTER TABLE ${t.deliveries} ADD COLUMN response TEXT`,
    `DROP INDEX ${t.deliveries}_due`,
    `CREATE INDEX ${t.deliveries}_due ON ${t.deliveries} (target, available_at, id)
      WHERE status IN ('pending', 'in_flight') AND waiting = 0`
  ]
  return Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true })
}
