/**
 * What differs between the SQL store's two dialects, and the statement texts it prepares: the table
 * names (as `@effect/sql` identifiers and as quoted text), the transaction openers, the constant
 * SQLite hot-path texts (enqueue, claim, finish, extendLease: `?` parameters, so the client's
 * prepared-statement cache always hits) and the PostgreSQL group commit's batch statements
 * (`$n` array parameters). Texts built per shape (a number of rows, a batch's parts) are memoised,
 * so each shape is built once.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { Tables } from "../migrations/index.js"

/** The two dialects the SQL store speaks. */
export type Dialect = "sqlite" | "pg"

/** The client's dialect, if the store supports it. */
export const dialectOf = (sql: SqlClient.SqlClient): Dialect | undefined =>
  sql.onDialectOrElse({
    sqlite: () => "sqlite" as const,
    pg: () => "pg" as const,
    orElse: () => undefined
  })

/**
 * The store's own transactions: `BEGIN IMMEDIATE` on SQLite, so a write never starts as a reader and
 * fails with `SQLITE_BUSY_SNAPSHOT`; a read-only snapshot on PostgreSQL.
 */
export const beginTexts = (dialect: Dialect) => ({
  write: dialect === "pg" ? "BEGIN" : "BEGIN IMMEDIATE",
  read: dialect === "pg" ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN"
})

/** The tables as `@effect/sql` identifiers, for the statements built with the `sql` template. */
export const tableFragments = (sql: SqlClient.SqlClient, names: Tables) => ({
  events: sql(names.events),
  targets: sql(names.targets),
  deliveries: sql(names.deliveries),
  attempts: sql(names.attempts)
})

/** @internal */
export type TableFragments = ReturnType<typeof tableFragments>

/** A text per key, built once. */
const memo = (build: (key: string) => string) => {
  const cache = new Map<string, string>()
  return (key: string) => {
    let out = cache.get(key)
    if (out === undefined) cache.set(key, out = build(key))
    return out
  }
}

/** The constant statement texts over the tables `names`. */
export const statementTexts = (names: Tables) => {
  // SQLite hot paths: constant texts (the prepared-statement cache hits; no compilation per call).
  const Q = {
    events: `"${names.events}"`,
    targets: `"${names.targets}"`,
    deliveries: `"${names.deliveries}"`,
    attempts: `"${names.attempts}"`
  }
  const text = {
    insertEvent: `INSERT INTO ${Q.events} (id, type, envelope, enqueued_at, fingerprint) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (id) DO NOTHING RETURNING id`,
    // A duplicate's deliveries and the stored fingerprint, in one statement (an event without
    // deliveries, which retention is about to remove, gives one row of NULL deliveries).
    existing: `SELECT e.fingerprint, d.id, d.target, d.status
        FROM ${Q.events} e LEFT JOIN ${Q.deliveries} d ON d.event_id = e.id WHERE e.id = ? ORDER BY d.id`,
    allTargets: `SELECT name FROM ${Q.targets} ORDER BY name`,
    due: `SELECT d.id, d.event_id, d.target, d.attempts, d.first_attempt_at, d.enqueued_at, d.replayed_at, d.resends,
          d.after_targets, d.dependents, e.envelope
        FROM ${Q.deliveries} d JOIN ${Q.events} e ON e.id = d.event_id
        WHERE d.target = ? AND d.status IN ('pending', 'in_flight') AND d.waiting = 0 AND d.available_at <= ?
        ORDER BY d.available_at, d.id LIMIT ?`,
    take: `UPDATE ${Q.deliveries}
        SET status = 'in_flight', lease = ? || ':' || id, available_at = ?, worker_id = ?, updated_at = ?
        WHERE id IN (SELECT value FROM json_each(?))`,
    attempt: `INSERT INTO ${Q.attempts}
        (delivery_id, number, started_at, duration_ms, outcome, http_status, error_tag, message, retry_after_ms, lease, worker_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    // The dependents are among the event's few deliveries (the UNIQUE (event_id, target) index):
    // those that list this target as an input and still wait. The unary `+` keeps SQLite's
    // planner (which has no statistics) off the status indexes, which would visit every pending
    // row of the outbox.
    releaseDependents: `UPDATE ${Q.deliveries} SET waiting = waiting - 1, available_at = ?, updated_at = ?
        WHERE event_id = ? AND +status = 'pending' AND waiting > 0
          AND EXISTS (SELECT 1 FROM json_each(after_targets) WHERE json_each.value = ?)
        RETURNING waiting`,
    extend: `UPDATE ${Q.deliveries} SET available_at = ?, updated_at = ?
        WHERE id = ? AND lease = ? AND status = 'in_flight' RETURNING id`
  }
  /** The fenced finish UPDATE, by whether the attempt failed and whether it delivered. */
  const finishTexts = [false, true].map((failed) =>
    [false, true].map((delivered) =>
      `UPDATE ${Q.deliveries}
        SET status = ?, attempts = attempts + 1, total_attempts = total_attempts + 1,
            first_attempt_at = COALESCE(first_attempt_at, ?), available_at = ?, lease = NULL, dead_reason = ?,
            finished_at = ?, updated_at = ?${failed ? ", last_error = ?, last_error_message = ?" : ""}${
        delivered ? ", response = CASE WHEN dependents > 0 THEN ? ELSE NULL END" : ""
      }
        WHERE id = ? AND lease = ? AND status = 'in_flight'
        RETURNING id, total_attempts, worker_id${delivered ? ", event_id, target, dependents" : ""}`
    )
  )
  const deliveryRows = memo((key) => {
    const [n, piped] = key.split(":")
    const row = piped === "1" ? "(?, ?, 'pending', 0, 0, ?, ?, ?, ?, ?, ?)" : "(?, ?, 'pending', 0, 0, ?, ?, ?)"
    return `INSERT INTO ${Q.deliveries}
        (event_id, target, status, attempts, total_attempts, available_at, enqueued_at, updated_at${
      piped === "1" ? ", after_targets, waiting, dependents" : ""
    })
        VALUES ${Array.from({ length: Number(n) }, () => row).join(", ")} RETURNING id, target, status`
  })
  const insertDeliveries = (n: number, piped: boolean) => deliveryRows(`${n}:${piped ? 1 : 0}`)
  const targetRows = memo((n) =>
    `INSERT INTO ${Q.targets} (name) VALUES ${Array.from({ length: Number(n) }, () => "(?)").join(", ")}
        ON CONFLICT (name) DO NOTHING`
  )
  const insertTargets = (n: number) => targetRows(String(n))

  /** The batch statement for the parts a batch has: (e)nqueues, new (t)argets, (f)inishes, e(x)tensions. */
  const batchText = memo((key) => {
    let n = 0
    const p = (type: string) => `$${++n}::${type}[]`
    const ctes: Array<string> = []
    const selects: Array<string> = []
    if (key.includes("e")) {
      ctes.push(`ev AS (
          INSERT INTO ${Q.events} (id, type, envelope, enqueued_at, fingerprint)
          SELECT * FROM unnest(${p("text")}, ${p("text")}, ${p("text")}, ${p("bigint")}, ${p("text")})
          ON CONFLICT (id) DO NOTHING RETURNING id
        )`)
      if (key.includes("t")) {
        ctes.push(`tg AS (INSERT INTO ${Q.targets} (name) SELECT unnest(${p("text")}) ON CONFLICT (name) DO NOTHING)`)
      }
      ctes.push(`dl AS (
          INSERT INTO ${Q.deliveries}
            (event_id, target, status, attempts, total_attempts, available_at, enqueued_at, updated_at, after_targets, waiting, dependents)
          SELECT v.event_id, v.target, 'pending', 0, 0, v.at, v.at, v.at, v.after_targets, v.waiting, v.dependents
          FROM unnest(${p("text")}, ${p("text")}, ${p("bigint")}, ${p("text")}, ${p("integer")}, ${p("integer")})
            WITH ORDINALITY AS v (event_id, target, at, after_targets, waiting, dependents, ord)
          JOIN ev ON ev.id = v.event_id
          ORDER BY v.ord
          RETURNING id, event_id, target, status
        )`)
      selects.push(`SELECT 'e' AS k, id::text AS id, event_id, target, status FROM dl`)
    }
    if (key.includes("f")) {
      ctes.push(`fu AS (
          UPDATE ${Q.deliveries} d
          SET status = i.status, attempts = d.attempts + 1, total_attempts = d.total_attempts + 1,
              first_attempt_at = COALESCE(d.first_attempt_at, i.started_at), available_at = i.available_at, lease = NULL,
              dead_reason = i.dead_reason, finished_at = i.finished_at, updated_at = i.at,
              last_error = CASE WHEN i.failed THEN i.outcome ELSE d.last_error END,
              last_error_message = CASE WHEN i.failed THEN i.message ELSE d.last_error_message END,
              response = CASE WHEN i.delivered THEN CASE WHEN d.dependents > 0 THEN i.response END ELSE d.response END
          FROM unnest(${p("bigint")}, ${p("text")}, ${p("text")}, ${p("bigint")}, ${p("bigint")}, ${p("text")}, ${
        p("bigint")
      },
              ${p("bigint")}, ${p("boolean")}, ${p("boolean")}, ${p("text")}, ${p("integer")}, ${p("text")}, ${
        p("integer")
      },
              ${p("text")}, ${p("text")}, ${p("bigint")})
            AS i (id, lease, status, started_at, available_at, dead_reason, finished_at, at, failed, delivered, response,
              duration_ms, outcome, http_status, error_tag, message, retry_after_ms)
          WHERE d.id = i.id AND d.lease = i.lease AND d.status = 'in_flight'
          RETURNING d.id, d.total_attempts, d.worker_id, d.event_id, d.target, d.dependents, i.delivered, i.at, i.started_at,
            i.duration_ms, i.outcome, i.http_status, i.error_tag, i.message, i.retry_after_ms, i.lease
        )`)
      ctes.push(`fa AS (
          INSERT INTO ${Q.attempts}
            (delivery_id, number, started_at, duration_ms, outcome, http_status, error_tag, message, retry_after_ms, lease, worker_id)
          SELECT id, total_attempts, started_at, duration_ms, outcome, http_status, error_tag, message, retry_after_ms, lease, worker_id
          FROM fu
        )`)
      // The dependents of the delivered inputs, among each event's few deliveries (a LATERAL probe
      // of the (event_id, target) index per input); two inputs of one dependent in this batch count
      // twice. Concurrent releases from other processes serialise on the row lock, and the WHERE is
      // re-checked on the row's latest version.
      ctes.push(`fr AS (
          UPDATE ${Q.deliveries} d SET waiting = d.waiting - r.n, available_at = r.at, updated_at = r.at
          FROM (
            SELECT x.id, count(*)::integer AS n, max(u.at) AS at
            FROM fu u CROSS JOIN LATERAL (
              SELECT x.id FROM ${Q.deliveries} x
              WHERE x.event_id = u.event_id AND x.status = 'pending' AND x.waiting > 0
                AND x.after_targets::jsonb @> jsonb_build_array(u.target)
            ) x
            WHERE u.delivered AND u.dependents > 0
            GROUP BY x.id
          ) r
          WHERE d.id = r.id AND d.status = 'pending' AND d.waiting > 0
          RETURNING d.waiting
        )`)
      selects.push(
        `SELECT 'f' AS k, id::text AS id, NULL::text AS event_id, NULL::text AS target, NULL::text AS status FROM fu`
      )
      selects.push(`SELECT 'r', (SELECT count(*) FROM fr WHERE waiting = 0)::text, NULL, NULL, NULL`)
    }
    if (key.includes("x")) {
      ctes.push(`xu AS (
          UPDATE ${Q.deliveries} d SET available_at = i.expires, updated_at = i.at
          FROM unnest(${p("bigint")}, ${p("text")}, ${p("bigint")}, ${p("bigint")}) AS i (id, lease, expires, at)
          WHERE d.id = i.id AND d.lease = i.lease AND d.status = 'in_flight'
          RETURNING d.id
        )`)
      selects.push(
        `SELECT 'x' AS k, id::text AS id, NULL::text AS event_id, NULL::text AS target, NULL::text AS status FROM xu`
      )
    }
    return `WITH ${ctes.join(",\n")}\n${selects.join("\nUNION ALL ")}`
  })

  /** Stored events' fingerprints and deliveries (one row of NULL deliveries for an event without any). */
  const existingMany = `SELECT e.id AS event_id, e.fingerprint, d.id::text AS id, d.target, d.status
      FROM ${Q.events} e LEFT JOIN ${Q.deliveries} d ON d.event_id = e.id
      WHERE e.id = ANY($1::text[]) ORDER BY d.id`

  return { Q, text, finishTexts, insertDeliveries, insertTargets, batchText, existingMany }
}

/** @internal */
export type Texts = ReturnType<typeof statementTexts>
