/**
 * Migration 1: events, targets, deliveries and the attempt history.
 *
 * Append-only: never edit a released migration; add `0002_…` instead.
 *
 * Columns worth knowing:
 * - `deliveries.available_at`: when the row can next be claimed — the next attempt time of a
 *   `pending` row, the lease expiry of an `in_flight` one, NULL once finished. Claims read one
 *   partial index on `(target, available_at)`, which also finds crashed workers' rows.
 * - `deliveries.lease`: the fencing token of the current claim (`<claim uuid>:<row id>`).
 * - `deliveries.attempts` counts attempts for scheduling (a replay resets it); `total_attempts`
 *   numbers the history and is never reset.
 * - `targets`: every target name ever enqueued, so a claim can visit targets one by one (fairness)
 *   without scanning the backlog.
 *
 * Times are epoch milliseconds.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { Tables } from "./index.js"

/** @internal */
export default (sql: SqlClient, t: Tables, dialect: "sqlite" | "pg"): Effect.Effect<void, SqlError> => {
  const pg = dialect === "pg"
  const id = pg ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT"
  const ref = pg ? "BIGINT" : "INTEGER"
  const time = pg ? "BIGINT" : "INTEGER"
  const statements = [
    `CREATE TABLE ${t.events} (
      id TEXT PRIMARY KEY NOT NULL,
      type TEXT NOT NULL,
      envelope TEXT NOT NULL,
      enqueued_at ${time} NOT NULL
    )`,
    `CREATE TABLE ${t.targets} (
      name TEXT PRIMARY KEY NOT NULL
    )`,
    `CREATE TABLE ${t.deliveries} (
      id ${id},
      event_id TEXT NOT NULL REFERENCES ${t.events} (id) ON DELETE CASCADE,
      target TEXT NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('pending', 'in_flight', 'delivered', 'dead', 'compensated')),
      attempts INTEGER NOT NULL DEFAULT 0,
      total_attempts INTEGER NOT NULL DEFAULT 0,
      available_at ${time},
      first_attempt_at ${time},
      lease TEXT,
      worker_id TEXT,
      last_error TEXT,
      last_error_message TEXT,
      dead_reason TEXT,
      enqueued_at ${time} NOT NULL,
      finished_at ${time},
      updated_at ${time} NOT NULL,
      UNIQUE (event_id, target)
    )`,
    `CREATE INDEX ${t.deliveries}_due ON ${t.deliveries} (target, available_at, id)
      WHERE status IN ('pending', 'in_flight')`,
    `CREATE INDEX ${t.deliveries}_status ON ${t.deliveries} (status, target, id)`,
    `CREATE INDEX ${t.deliveries}_finished ON ${t.deliveries} (status, finished_at)`,
    `CREATE TABLE ${t.attempts} (
      id ${id},
      delivery_id ${ref} NOT NULL REFERENCES ${t.deliveries} (id) ON DELETE CASCADE,
      number INTEGER NOT NULL,
      started_at ${time} NOT NULL,
      duration_ms INTEGER NOT NULL,
      outcome TEXT NOT NULL,
      http_status INTEGER,
      error_tag TEXT,
      message TEXT,
      retry_after_ms ${time},
      lease TEXT NOT NULL,
      worker_id TEXT
    )`,
    `CREATE INDEX ${t.attempts}_delivery ON ${t.attempts} (delivery_id, number)`
  ]
  return Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true })
}
