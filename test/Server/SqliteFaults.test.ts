/**
 * SQLite faults, for real (issue 10 item 6): the server on a SQLite file over HTTP, with a worker
 * and loopback targets, while
 *
 * - another **process** (`node -e` with better-sqlite3) holds `BEGIN IMMEDIATE` on the file longer
 *   than the store's busy timeout: every `POST` (single, concurrent — one group commit — and a
 *   batch) is `503` + `Retry-After`, none of those events is in the file, reads still work, and once
 *   the lock is released the same requests store them; the lean ingest path and the `HttpApi`
 *   path answer the same bytes;
 * - the database sits on a 2 MiB tmpfs that a filler file fills up: commits fail `SQLITE_FULL`,
 *   producers get `503` + `Retry-After`, never a `202` for an event that is not stored, reads of
 *   stored events and `/healthz` keep working; once the filler is deleted, the rejected events are
 *   stored on retry, everything is delivered, and `PRAGMA integrity_check` is `ok`.
 *
 * The tmpfs case needs `mount` (root). Where mounting is not permitted it is skipped with the
 * reason printed, or fails when `FANOUT_REQUIRE_TMPFS=1`.
 *
 * No wall-clock thresholds: every wait polls for a state (with a generous bound), every assertion
 * is on status codes, stored rows and counts.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import {
  closeSync,
  fstatSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  rmSync,
  statfsSync,
  unlinkSync,
  writeSync
} from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import * as Metrics from "../../src/Metrics.js"
import type * as Store from "../../src/Store.js"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import { eventually, type Harness, isErrorShape, promise, type Reply, start } from "./harness.js"

const root = fileURLToPath(new URL("../..", import.meta.url))

interface Db {
  prepare(
    sql: string
  ): { all(...params: ReadonlyArray<unknown>): Array<any>; get(...params: ReadonlyArray<unknown>): any }
  pragma(sql: string): Array<any>
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(file: string, options?: object) => Db

const order = (id: string, payload: unknown = { qty: 1 }) => ({ id, type: "order.placed", payload })

/** A fresh temporary directory, removed afterwards. */
const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), prefix))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** The event ids of `ids` that are rows of the file (read on a connection of the test's own). */
const storedIds = (filename: string, ids: ReadonlyArray<string>): Array<string> => {
  const db = new Database(filename, { fileMustExist: true })
  try {
    db.pragma("busy_timeout = 5000")
    const found = new Set(db.prepare("SELECT id FROM fanout_events").all().map((r) => String(r.id)))
    return ids.filter((id) => found.has(id))
  } finally {
    db.close()
  }
}

const integrity = (filename: string): string => {
  const db = new Database(filename, { fileMustExist: true })
  try {
    db.pragma("busy_timeout = 5000")
    return db.pragma("integrity_check").map((r) => String(r.integrity_check)).join("; ")
  } finally {
    db.close()
  }
}

/** Raw bytes of one POST, and its whole raw answer (Date masked): to compare the two ingest paths byte for byte. */
const rawPost = (port: number, path: string, body: unknown): Promise<string> =>
  new Promise((resolve, reject) => {
    const bytes = Buffer.from(JSON.stringify(body))
    const socket = net.connect(port, "127.0.0.1")
    let buffer = Buffer.alloc(0)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error("no complete response within 20 s"))
    }, 20_000)
    const check = (closed: boolean) => {
      const end = buffer.indexOf("\r\n\r\n")
      if (end < 0) {
        if (closed) reject(new Error(`closed without a response: ${buffer.toString("latin1")}`))
        return
      }
      const length = /\r\ncontent-length: *(\d+)/i.exec(buffer.subarray(0, end).toString("latin1"))
      if ((length !== null && buffer.length >= end + 4 + Number(length[1])) || closed) {
        clearTimeout(timer)
        socket.destroy()
        const text = buffer.subarray(0, length !== null ? end + 4 + Number(length[1]) : buffer.length).toString("utf8")
        resolve(text.replace(/\r\nDate: [^\r]+/i, "\r\nDate: <date>"))
      }
    }
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      check(false)
    })
    socket.on("close", () => check(true))
    socket.on("error", () => check(true))
    socket.on("connect", () =>
      socket.write(Buffer.concat([
        Buffer.from(
          `POST ${path} HTTP/1.1\r\nHost: fanout.test\r\ncontent-type: application/json\r\ncontent-length: ${bytes.length}\r\n\r\n`,
          "latin1"
        ),
        bytes
      ])))
  })

// ---- the other process: BEGIN IMMEDIATE until told to let go ---------------------------------

const lockerScript = `
const Database = require("better-sqlite3")
const db = new Database(process.env.FANOUT_LOCK_FILE, { fileMustExist: true })
db.pragma("busy_timeout = 30000")
db.exec("BEGIN IMMEDIATE")
process.stdout.write("locked\\n")
process.stdin.once("data", () => {
  db.exec("ROLLBACK")
  db.close()
  process.stdout.write("released\\n")
  process.exit(0)
})
`

interface Locker {
  readonly child: ChildProcess
  readonly release: () => Promise<number | null>
}

/** A second process holding the write lock on `filename` (answers once it holds it); killed at the end of the scope. */
const holdLock = (filename: string) =>
  Effect.acquireRelease(
    Effect.async<Locker, Error>((resume) => {
      const child = spawn(process.execPath, ["-e", lockerScript], {
        cwd: root,
        env: { ...process.env, FANOUT_LOCK_FILE: filename },
        stdio: ["pipe", "pipe", "pipe"]
      })
      let out = ""
      let err = ""
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)))
      child.stderr!.on("data", (d) => (err += String(d)))
      child.stdout!.on("data", (d) => {
        out += String(d)
        if (out.startsWith("locked\n")) {
          resume(Effect.succeed({
            child,
            release: () => {
              child.stdin!.write("release\n")
              return exited.then((code) => {
                if (!out.includes("released\n")) throw new Error(`locker did not release: ${out} ${err}`)
                return code
              })
            }
          }))
        }
      })
      child.once("exit", (code) => {
        if (!out.startsWith("locked\n")) resume(Effect.fail(new Error(`locker exited ${code} before locking: ${err}`)))
      })
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.pid !== undefined) child.kill("SIGKILL")
      })
  )

/** `fanout_ingest_refused_total{reason}` now (the registry is the process's). */
const refused = (reason: string) =>
  Effect.map(Metric.value(Metrics.ingestRefused.pipe(Metric.tagged("reason", reason))), (s) => s.count)

/** Records the reason and message of every StoreError the server's enqueues fail with. */
const recordErrors = (errors: Array<string>) => (store: Store.DeliveryStore): Store.DeliveryStore => ({
  ...store,
  enqueue: (event, targets, options) =>
    Effect.tapError(store.enqueue(event, targets, options), (error) =>
      Effect.sync(() => {
        if (error._tag === "StoreError") errors.push(`${error.reason}: ${error.message}`)
      }))
})

const statusOf = (replies: ReadonlyArray<Reply>) =>
  replies.reduce<Record<number, number>>((acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }), {})

/** Waits until the worker has delivered every delivery of the store (and nothing is pending). */
const drained = (h: Harness, deliveries: number) =>
  eventually(
    () => Effect.runPromise(h.store.stats),
    (s) => s.delivered === deliveries && s.pending + s.inFlight === 0,
    60_000
  )

// ---- (a) another process holds the write lock ------------------------------------------------

/** One side of (a): a server (lean ingest or the HttpApi path) on a fresh file; answers the raw 503s of both kinds. */
const lockScenario = (leanIngest: boolean) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("fanout-busy-")
    const filename = join(dir, "fanout.db")
    const errors: Array<string> = []
    const logs: Array<string> = []
    const h = yield* start({
      store: SqliteStore.layer({ filename, busyTimeoutMs: 50 }),
      server: { leanIngest },
      wrapStore: recordErrors(errors),
      worker: true,
      logs
    })
    const refusedBefore = yield* refused("busy")
    const before = yield* promise(() => h.request("/v1/events", { json: order("pre-1") }))
    assert.strictEqual(before.status, 202, before.text)

    const locker = yield* holdLock(filename)

    // Singles sent together (they share group commits), a batch, and the raw bytes of each for the comparison.
    const singles = Array.from({ length: 12 }, (_, i) => order(`lock-s-${i}`))
    const batch = { events: Array.from({ length: 10 }, (_, i) => order(`lock-b-${i}`)) }
    const ids = [...singles.map((e) => e.id), ...batch.events.map((e) => e.id), "lock-raw-1", "lock-raw-2"]
    const locked = yield* promise(() =>
      Promise.all([
        ...singles.map((e) => h.request("/v1/events", { json: e })),
        h.request("/v1/events:batch", { json: batch })
      ])
    )
    assert.deepStrictEqual(statusOf(locked), { 503: 13 }, locked.map((r) => r.text).join("\n"))
    for (const reply of locked) {
      assert.isTrue(isErrorShape(reply.body, 503), reply.text)
      assert.strictEqual(reply.body.error.code, "store_unavailable")
      assert.strictEqual(reply.headers.get("retry-after"), "1")
    }
    const batchReply = locked[locked.length - 1]!
    assert.deepStrictEqual(batchReply.body.results.map((r: any) => r.status), batch.events.map(() => "failed"))
    const rawSingle = yield* promise(() => rawPost(h.port, "/v1/events", order("lock-raw-1")))
    const rawBatch = yield* promise(() => rawPost(h.port, "/v1/events:batch", { events: [order("lock-raw-2")] }))

    // The store said why: SQLITE_BUSY after the busy timeout, as `Busy`.
    assert.deepStrictEqual(errors.filter((e) => !e.startsWith("Busy: ")), [])
    assert.isTrue(errors.some((e) => /database is locked \(SQLITE_BUSY[A-Z_]*\)$/.test(e)), errors.join("\n"))

    // Counted, one per event not stored (12 singles, 10 in the batch, 2 raw), and logged without a
    // line per event: the first at once, then at most one per 10 s with the count since the last.
    assert.strictEqual((yield* refused("busy")) - refusedBefore, 24, "fanout_ingest_refused_total{reason=busy}")
    const refusedLines = logs.filter((l) => l.includes("the store refused"))
    assert.strictEqual(
      refusedLines[0],
      "WARN fanout server: the store refused an event (Busy); answering 503 store_unavailable, nothing stored for it"
    )
    const logged = refusedLines.slice(1).map((l) =>
      Number(/^WARN fanout server: the store refused (\d+) events \(Busy\)/.exec(l)?.[1])
    )
    assert.isTrue(logged.every((n) => n > 0) && 1 + logged.reduce((a, n) => a + n, 0) <= 24, refusedLines.join("\n"))

    // Still locked: nothing of those commits is in the file; reads are served.
    assert.deepStrictEqual(storedIds(filename, ids), [])
    const read = yield* promise(() => h.request("/v1/events/pre-1"))
    assert.strictEqual(read.status, 200, read.text)
    assert.strictEqual((yield* promise(() => h.request("/v1/events/lock-s-0"))).status, 404)
    assert.strictEqual((yield* promise(() => h.request("/healthz"))).status, 200)

    assert.strictEqual(yield* promise(() => locker.release()), 0)

    // Recovers by itself: the same requests again (no restart) store every event.
    const first = yield* eventually(() => h.request("/v1/events", { json: singles[0] }), (r) => r.status !== 503)
    assert.strictEqual(first.status, 202, first.text)
    const retried = yield* promise(() =>
      Promise.all([
        ...singles.slice(1).map((e) => h.request("/v1/events", { json: e })),
        h.request("/v1/events:batch", { json: batch }),
        h.request("/v1/events", { json: order("lock-raw-1") }),
        h.request("/v1/events:batch", { json: { events: [order("lock-raw-2")] } })
      ])
    )
    assert.deepStrictEqual(statusOf(retried), { 202: 14 }, retried.map((r) => r.text).join("\n"))
    assert.deepStrictEqual(storedIds(filename, ids).sort(), [...ids].sort())
    assert.strictEqual((yield* promise(() => h.request("/v1/events/lock-b-9"))).status, 200)
    const stats = yield* drained(h, 2 * (1 + ids.length))
    assert.strictEqual(stats.delivered, 2 * (1 + ids.length))
    assert.strictEqual(integrity(filename), "ok")
    return { rawSingle, rawBatch }
  })

describe("SQLite: another process holds the write lock past the busy timeout", () => {
  it.scopedLive(
    "503 + Retry-After, nothing of the commit stored, reads served, recovers once released; both paths alike",
    () =>
      Effect.gen(function*() {
        const lean = yield* Effect.scoped(lockScenario(true))
        const app = yield* Effect.scoped(lockScenario(false))
        assert.match(lean.rawSingle, /^HTTP\/1\.1 503 /)
        assert.match(lean.rawSingle, /\r\nretry-after: 1\r\n/i)
        assert.match(lean.rawBatch, /^HTTP\/1\.1 503 /)
        assert.strictEqual(lean.rawSingle, app.rawSingle)
        assert.strictEqual(lean.rawBatch, app.rawBatch)
      }),
    { timeout: 120_000 }
  )
})

// ---- (b) a full disk ----------------------------------------------------------------------------

/** Whether this process may mount a tmpfs (tried once, on a throwaway directory). */
const probeTmpfs = (): { readonly ok: true } | { readonly ok: false; readonly reason: string } => {
  const dir = mkdtempSync(join(tmpdir(), "fanout-tmpfs-probe-"))
  try {
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { encoding: "utf8" })
    if (mounted.error !== undefined || mounted.status !== 0) {
      return {
        ok: false,
        reason: `mount -t tmpfs is not permitted here (${
          mounted.error?.message || mounted.stderr.trim() || `exit ${mounted.status}`
        })`
      }
    }
    spawnSync("umount", [dir])
    return { ok: true }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const tmpfs = probeTmpfs()
const requireTmpfs = process.env.FANOUT_REQUIRE_TMPFS === "1"
if (!tmpfs.ok) {
  console.warn(
    `SqliteFaults.test: ${tmpfs.reason}; the full-disk test is ${
      requireTmpfs ? "FAILED (FANOUT_REQUIRE_TMPFS=1)" : "skipped"
    }`
  )
}

/** A 2 MiB tmpfs on a fresh directory, unmounted (lazily if still busy) and removed afterwards. */
const smallDisk = Effect.acquireRelease(
  Effect.sync(() => {
    if (!tmpfs.ok) throw new Error(tmpfs.reason)
    const dir = mkdtempSync(join(tmpdir(), "fanout-full-"))
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir], { encoding: "utf8" })
    if (mounted.status !== 0) {
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`mount -t tmpfs failed: ${mounted.stderr}`)
    }
    return dir
  }),
  (dir) =>
    Effect.sync(() => {
      if (spawnSync("umount", [dir]).status !== 0) spawnSync("umount", ["-l", dir])
      rmSync(dir, { recursive: true, force: true })
    })
)

/**
 * Writes a filler file until the file system has no room left, then gives `leave` bytes back (so
 * that the store runs out of space under load, not at its first write); answers its path.
 */
const fill = (dir: string, leave: number): string => {
  const path = join(dir, "filler")
  const fd = openSync(path, "w")
  try {
    for (const size of [256 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size, 1)
      for (;;) {
        try {
          writeSync(fd, chunk)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOSPC") break
          throw error
        }
      }
    }
    ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leave))
  } finally {
    closeSync(fd)
  }
  return path
}

describe("SQLite: the database's file system fills up", () => {
  it.scopedLive.skipIf(!tmpfs.ok && !requireTmpfs)(
    "503 + Retry-After, no 202 for anything not stored, reads served, recovers once space is freed, integrity ok",
    () =>
      Effect.gen(function*() {
        const dir = yield* smallDisk
        const filename = join(dir, "fanout.db")
        const result = yield* Effect.scoped(Effect.gen(function*() {
          const errors: Array<string> = []
          const h = yield* start({
            store: SqliteStore.layer({ filename, busyTimeoutMs: 50 }),
            wrapStore: recordErrors(errors),
            worker: true
          })
          const payload = (i: number) => ({ qty: i, note: "x".repeat(1500) })
          const before = Array.from({ length: 5 }, (_, i) => order(`pre-${i}`, payload(i)))
          for (const e of before) {
            assert.strictEqual((yield* promise(() => h.request("/v1/events", { json: e }))).status, 202)
          }
          yield* drained(h, 2 * before.length)

          const refusedBefore = yield* refused("unavailable")
          const filler = fill(dir, 256 * 1024)
          assert.isBelow(statfsSync(dir).bavail * statfsSync(dir).bsize, 320 * 1024)

          // Post until the store has refused several in a row (the WAL's free pages are used up first).
          const acked: Array<string> = []
          const rejected: Array<string> = []
          const unexpected: Array<string> = []
          let refusedInARow = 0
          for (let round = 0; round < 400 && refusedInARow < 3; round++) {
            // Four at once, so that the failing commits are group commits of several events.
            const events = Array.from({ length: 4 }, (_, j) => order(`full-${round}-${j}`, payload(round)))
            const replies = yield* promise(() => Promise.all(events.map((e) => h.request("/v1/events", { json: e }))))
            replies.forEach((reply, j) => {
              const id = events[j]!.id
              if (reply.status === 202) acked.push(id)
              else if (reply.status === 503) {
                rejected.push(id)
                if (
                  !isErrorShape(reply.body, 503) || reply.body.error.code !== "store_unavailable" ||
                  reply.headers.get("retry-after") !== "1"
                ) {
                  unexpected.push(`${id}: 503 without the error shape or Retry-After: ${reply.text}`)
                }
              } else unexpected.push(`${id}: ${reply.status} ${reply.text}`)
            })
            refusedInARow = replies.every((r) => r.status === 503) ? refusedInARow + 1 : 0
          }
          assert.deepStrictEqual(unexpected, [])
          // The store said why: SQLITE_FULL, as `Unavailable` (retryable).
          assert.deepStrictEqual(errors.filter((e) => !e.startsWith("Unavailable: ")), [])
          assert.isTrue(errors.some((e) => e.endsWith("database or disk is full (SQLITE_FULL)")), errors.join("\n"))
          assert.isAtLeast(rejected.length, 12, `the store never refused a write (${acked.length} acknowledged)`)
          assert.strictEqual(
            (yield* refused("unavailable")) - refusedBefore,
            rejected.length,
            "fanout_ingest_refused_total{reason=unavailable}"
          )

          // Still full: everything acknowledged is stored and readable, nothing refused is.
          const everything = [...before.map((e) => e.id), ...acked]
          assert.deepStrictEqual(storedIds(filename, [...everything, ...rejected]).sort(), [...everything].sort())
          for (const id of everything) {
            const read = yield* promise(() => h.request(`/v1/events/${id}`))
            assert.strictEqual(read.status, 200, `${id}: ${read.text}`)
          }
          assert.strictEqual((yield* promise(() => h.request(`/v1/events/${rejected[0]}`))).status, 404)
          assert.strictEqual((yield* promise(() => h.request("/healthz"))).status, 200)

          unlinkSync(filler)

          // Recovers by itself: the refused events, sent again as they were (`full-<round>-<j>`), are stored.
          const resend = (id: string) => order(id, payload(Number(id.split("-")[1])))
          const again = yield* eventually(
            () => h.request("/v1/events", { json: resend(rejected[0]!) }),
            (r) => r.status !== 503,
            30_000
          )
          assert.strictEqual(again.status, 202, again.text)
          const retried: Array<Reply> = []
          for (const id of rejected.slice(1)) {
            retried.push(yield* promise(() => h.request("/v1/events", { json: resend(id) })))
          }
          assert.deepStrictEqual(statusOf(retried), { 202: rejected.length - 1 }, retried.map((r) => r.text).join("\n"))
          const all = [...everything, ...rejected]
          assert.deepStrictEqual(storedIds(filename, all).sort(), [...all].sort())
          const stats = yield* drained(h, 2 * all.length)
          assert.strictEqual(stats.delivered, 2 * all.length)
          assert.strictEqual(stats.dead, 0)
          assert.strictEqual(integrity(filename), "ok")
          return {
            ackedWhileFilling: acked.length,
            rejected: rejected.length,
            stored: all.length,
            storeErrors: errors.length
          }
        }))
        // After the server closed the file, too.
        assert.strictEqual(integrity(filename), "ok")
        console.log(`SqliteFaults.test full disk: ${JSON.stringify(result)}`)
      }),
    { timeout: 180_000 }
  )
})
