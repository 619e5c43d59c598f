/**
 * Migration 7: how many times each delivery was resent.
 *
 * Append-only: never edit a released migration; add `0008_…` instead.
 *
 * New column of `deliveries`:
 * - `resends`: how many times `DeliveryStore.resend` sent the (finished) delivery again, 0 until
 *   then. The delivery's idempotency key is derived from it (`Store.resendKey`):
 *   `<event id>:<target>` at 0, `<event id>:<target>:resend-<n>` after the n-th resend.
 *
 * `ADD COLUMN … NOT NULL DEFAULT 0` (a constant default) rewrites no rows on SQLite or PostgreSQL
 * (11 and later). No index: the column is only read with its row.
 *
 * @internal
 */
import type { SqlClient } from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { Tables } from "./index.js"

/** @internal */
export default (sql: SqlClient, t: Tables, _dialect: "sqlite" | "pg"): Effect.Effect<void, SqlError> =>
  Effect.asVoid(sql.unsafe(`ALTER TABLE ${t.deliveries} ADD COLUMN resends INTEGER NOT NULL DEFAULT 0`))
