/**
 * How SQL errors become store errors, and store errors HTTP answers: every lock or serialization
 * conflict is `Busy`, a full disk, an I/O error or an unreachable database `Unavailable`; both are
 * retryable and answered `503` + `Retry-After` (issue 10 item 6). The real faults are in
 * test/Server/SqliteFaults.test.ts; this covers the codes a test machine cannot easily provoke.
 */
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Errors from "../../src/Server/Errors.js"
import * as Store from "../../src/Store.js"
import { fromSqlError } from "../../src/Store/Sql.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"

const sqlError = (code: string | undefined, message = "boom") =>
  new SqlError({
    cause: Object.assign(new Error(message), code === undefined ? {} : { code }),
    message: "Failed to execute statement"
  })

const cases: ReadonlyArray<readonly [string | undefined, Store.StoreErrorReason]> = [
  ["SQLITE_BUSY", "Busy"],
  ["SQLITE_BUSY_TIMEOUT", "Busy"],
  ["SQLITE_BUSY_SNAPSHOT", "Busy"],
  ["SQLITE_BUSY_RECOVERY", "Busy"],
  ["SQLITE_LOCKED", "Busy"],
  ["SQLITE_LOCKED_SHAREDCACHE", "Busy"],
  ["SQLITE_LOCKED_VTAB", "Busy"],
  ["40001", "Busy"],
  ["40P01", "Busy"],
  ["55P03", "Busy"],
  ["SQLITE_FULL", "Unavailable"],
  ["SQLITE_IOERR", "Unavailable"],
  ["SQLITE_IOERR_WRITE", "Unavailable"],
  ["SQLITE_IOERR_FSYNC", "Unavailable"],
  ["SQLITE_IOERR_SHORT_READ", "Unavailable"],
  ["SQLITE_CANTOPEN", "Unavailable"],
  ["SQLITE_READONLY", "Unavailable"],
  ["SQLITE_BUSYNESS", "Unavailable"],
  ["57P01", "Unavailable"],
  ["08006", "Unavailable"],
  [undefined, "Unavailable"]
]

describe("fromSqlError", () => {
  for (const [code, reason] of cases) {
    it(`${code ?? "no code"} → ${reason} → 503 + Retry-After`, () => {
      const error = fromSqlError("commit")(sqlError(code, "database or disk is full"))
      assert.strictEqual(error.reason, reason)
      assert.isTrue(Store.isRetryable(error))
      assert.isTrue(error.message.startsWith("commit: database or disk is full"), error.message)
      if (code?.startsWith("SQLITE_")) assert.isTrue(error.message.endsWith(`(${code})`), error.message)
      const failure = Errors.fromStoreError(error)
      assert.strictEqual(failure.error.status, 503)
      assert.strictEqual(failure.error.code, "store_unavailable")
      assert.strictEqual(failure.headers["retry-after"], "1")
    })
  }
})

describe("SqliteStore busyTimeoutMs", () => {
  for (const value of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
    it.scoped(`${value} is refused at open (InvalidInput), not sent to SQLite`, () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(SqliteStore.make({ filename: ":memory:", busyTimeoutMs: value }))
        assert.strictEqual(error.reason, "InvalidInput")
        assert.include(error.message, "busyTimeoutMs")
      }))
  }
  it.scoped("0 is allowed (fail Busy at once)", () =>
    Effect.asVoid(SqliteStore.make({ filename: ":memory:", busyTimeoutMs: 0 })))
})
