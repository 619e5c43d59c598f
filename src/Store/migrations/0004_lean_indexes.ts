/**
 * Migration 4: indexes that follow the queue, not the history.
 *
 * Append-only: never edit a released migration; add `0005_…` instead.
 *
 * `(status, target, id)` and `(status, finished_at)` held an entry for every delivery ever made,
 * and both moved on every status change (enqueue, claim, finish): three of the five index writes
 * of a delivery's life, in indexes that grew with the history until retention. They become
 * partial indexes over the rows their queries read:
 * - `_open (status, target) WHERE status IN ('pending', 'in_flight')`: the queue gauges;
 * - `_dead (id) WHERE status = 'dead'`: dead-letter pages (in id order, with or without a target),
 *   replays and purges, the dead gauge;
 * - `_finished (finished_at) WHERE status IN ('delivered', 'compensated')`: retention.
 * A delivery now enters `_open` when enqueued, moves in it when claimed, and leaves it when it
 * ends (into `_finished` or `_dead`). `stats`, which counts every status, reads the table.
 *
 * Both dialects accept the same statements.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { Tables } from "./index.js"

/** @internal */
export default (sql: SqlClient, t: Tables, _dialect: "sqlite" | "pg"): Effect.Effect<void, SqlError> =>
  Effect.forEach(
    [
      `DROP INDEX ${t.deliveries}_status`,
      `DROP INDEX ${t.deliveries}_finished`,
      `CREATE INDEX ${t.deliveries}_open ON ${t.deliveries} (status, target) WHERE status IN ('pending', 'in_flight')`,
      `CREATE INDEX ${t.deliveries}_dead ON ${t.deliveries} (id) WHERE status = 'dead'`,
      `CREATE INDEX ${t.deliveries}_finished ON ${t.deliveries} (finished_at) WHERE status IN ('delivered', 'compensated')`
    ],
    (statement) => sql.unsafe(statement),
    { discard: true }
  )
