/**
 * Migration 6: indexes for the event search (`DeliveryStore.events`, `GET /v1/events`).
 *
 * Append-only: never edit a released migration; add `0007_…` instead.
 *
 * - `events_enqueued (enqueued_at, id)`: the newest events first, a page after a cursor, a time range;
 * - `events_type (type, enqueued_at, id)`: the same within one event type.
 *
 * Both are on `events`, whose rows are written once (enqueue) and deleted once (retention, purge):
 * they cost one index entry each per event and never move on a delivery's status change. The
 * search's other filters use indexes that exist already: `status` pending, in_flight or dead starts
 * from the partial `_open` / `_dead` indexes (migration 4), `target` and the finished statuses are
 * checked per event on the `(event_id, target)` unique index (migration 1).
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
      `CREATE INDEX ${t.events}_enqueued ON ${t.events} (enqueued_at, id)`,
      `CREATE INDEX ${t.events}_type ON ${t.events} (type, enqueued_at, id)`
    ],
    (statement) => sql.unsafe(statement),
    { discard: true }
  )
