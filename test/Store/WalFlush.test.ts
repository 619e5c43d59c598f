/**
 * SQLite `FULL` with the WAL flushed off the event loop (src/Store/walSync.ts): the connection runs
 * at `NORMAL` and each commit's callers are answered only after an `fdatasync` of the WAL file that
 * began after their commit. The flushes here are the real ones on a real file; where a test needs to
 * hold one to see the order of things, it wraps `node:fs` and releases the flush itself.
 */
import * as fs from "node:fs"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option } from "effect"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"
import * as Sql from "../../src/Store/Sql.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import * as WalSync from "../../src/Store/walSync.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-walsync-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const event = (id: string) => Event.make("order.placed", { id }, { id })

/** Real `node:fs`, except that each `fdatasync` waits until the test releases it (or fails it). */
const heldFs = () => {
  const held: Array<(error?: NodeJS.ErrnoException) => void> = []
  let completed = 0
  const io: WalSync.Fs = {
    open: (path, flags, callback) => fs.open(path, flags, callback),
    closeSync: (fd) => fs.closeSync(fd),
    fdatasync: (fd, callback) => {
      held.push((error) => {
        if (error !== undefined) return callback(error)
        fs.fdatasync(fd, (e) => {
          completed++
          callback(e)
        })
      })
    }
  }
  return { io, held, completed: () => completed }
}

/** The store as `SqliteStore.layer` builds it, with the flushes going through `io`. */
const storeWith = (filename: string, io: WalSync.Fs) =>
  Effect.gen(function*() {
    // The client lives as long as the test's scope (not just while the store is built).
    const client = yield* Layer.build(SqliteClient.layer({ filename }))
    return yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe("PRAGMA journal_mode = WAL")
      yield* sql.unsafe("PRAGMA synchronous = NORMAL")
      const wal = WalSync.make(`${filename}-wal`, io)
      yield* Effect.addFinalizer(() => Effect.sync(() => wal.close()))
      return yield* Sql.make({ joinTransactions: false, groupCommit: {}, flush: wal })
    }).pipe(Effect.provide(client))
  }).pipe(Effect.orDie)

/** Polls (no timer) until `check` holds: a turn of the event loop at a time. */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 10_000 && !check(); i++) yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
    assert.isTrue(check(), "the condition never held")
  })

describe("SQLite FULL, WAL flushed off the event loop", () => {
  it.scoped("an enqueue is answered only after a flush that began after its commit", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { io, held, completed } = heldFs()
      const store = yield* storeWith(join(dir, "outbox.db"), io)
      const first = yield* Effect.fork(store.enqueue(yield* event("e-1"), ["a", "b"]))
      yield* until(() => held.length === 1)
      // Committed (a read on the same file sees it) and its flush asked for, but not answered.
      assert.isTrue(Option.isSome(yield* store.status("e-1")))
      assert.isTrue(Option.isNone(yield* Fiber.poll(first)))

      // A second commit while the first flush is held is not covered by it: it waits for the next.
      const second = yield* Effect.fork(store.enqueue(yield* event("e-2"), ["a"]))
      yield* until(() => Option.isSome(Effect.runSync(Effect.orDie(store.status("e-2")))))
      assert.strictEqual(held.length, 1, "no second flush while one runs")
      held.shift()!()
      const answered = yield* Fiber.join(first)
      assert.isTrue(answered.created)
      assert.strictEqual(completed(), 1)
      assert.isTrue(Option.isNone(yield* Fiber.poll(second)), "the second commit came after the first flush began")
      yield* until(() => held.length === 1)
      held.shift()!()
      assert.isTrue((yield* Fiber.join(second)).created)
      assert.strictEqual(completed(), 2)
      assert.strictEqual((yield* store.diagnostics).flushes, 2)
    }))

  it.scoped("a claim (its own write transaction) also waits for its flush", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { io, held } = heldFs()
      const store = yield* storeWith(join(dir, "outbox.db"), io)
      const enqueue = yield* Effect.fork(store.enqueue(yield* event("c-1"), ["a"]))
      yield* until(() => held.length === 1)
      held.shift()!()
      yield* Fiber.join(enqueue)
      const claim = yield* Effect.fork(store.claim({ workerId: "w", limit: 10, leaseMs: 10_000 }))
      yield* until(() => held.length === 1)
      assert.isTrue(Option.isNone(yield* Fiber.poll(claim)))
      held.shift()!()
      assert.deepStrictEqual((yield* Fiber.join(claim)).map((c) => c.idempotencyKey), ["c-1:a"])
    }))

  it.scoped("a failed flush fails every caller of the commits it covered (Unavailable); the next one succeeds", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { io, held } = heldFs()
      const store = yield* storeWith(join(dir, "outbox.db"), io)
      const fibers = yield* Effect.forEach(
        ["f-1", "f-2", "f-3"],
        (id) => Effect.flatMap(event(id), (e) => Effect.fork(Effect.either(store.enqueue(e, ["a"]))))
      )
      yield* until(() => held.length === 1)
      const eio = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" })
      held.shift()!(eio)
      // The three may have shared the held flush or waited for the next: fail every flush until all answered.
      const results = []
      for (const fiber of fibers) {
        for (;;) {
          const done = yield* Fiber.poll(fiber)
          if (Option.isSome(done)) {
            results.push(Exit.getOrElse(done.value, () => assert.fail("the enqueue died")))
            break
          }
          if (held.length > 0) held.shift()!(eio)
          yield* Effect.promise(() => new Promise((r) => setImmediate(r)))
        }
      }
      for (const result of results) {
        assert.strictEqual(result._tag, "Left")
        if (result._tag === "Left") {
          assert.strictEqual(result.left._tag, "StoreError")
          assert.strictEqual(result.left._tag === "StoreError" ? result.left.reason : undefined, "Unavailable")
          assert.match(result.left.message, /could not be flushed to disk: EIO/)
        }
      }
      // Not acknowledged, but committed: a retry with the same id finds it (at least once, never lost twice).
      const again = yield* Effect.fork(store.enqueue(yield* event("f-1"), ["a"]))
      yield* until(() => held.length === 1)
      held.shift()!()
      assert.isFalse((yield* Fiber.join(again)).created)
    }))

  it.effect("SqliteStore.layer: FULL (default) flushes the WAL itself; flushOffLoop: false is SQLite's own FULL; NORMAL flushes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const probe = (options: Partial<SqliteStore.Options>, file: string) =>
        Effect.gen(function*() {
          const store = yield* Store.DeliveryStore
          yield* store.enqueue(yield* event(`p-${file}`), ["a"])
          // (`PRAGMA synchronous` is per connection: another connection cannot read the store's.)
          return (yield* store.diagnostics).flushes
        }).pipe(Effect.provide(SqliteStore.layer({ ...options, filename: join(dir, file) })))
      assert.isAtLeast((yield* probe({}, "a.db")) ?? 0, 1, "FULL (default) flushes off the loop")
      assert.isUndefined(yield* probe({ flushOffLoop: false }, "b.db"), "SQLite's own FULL: no flushes of ours")
      assert.isUndefined(yield* probe({ synchronous: "NORMAL" }, "c.db"), "NORMAL: no flush at all")
    }).pipe(Effect.scoped))
})
