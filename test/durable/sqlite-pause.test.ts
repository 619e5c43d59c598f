/**
 * Fencing on SQLite, real processes: a worker is SIGSTOPped past its lease while its request is on
 * the wire; a second worker process takes the delivery over and delivers it; the first, resumed,
 * gets its answer late and the store rejects its result (fencing). The delivery is recorded once, by
 * the second worker, under a new lease.
 *
 * Nothing here is timed by the test: "past its lease" is the lease expiry *stored in the file* when
 * the first worker was stopped, and the takeover is checked against that stored instant (the
 * second worker's recorded attempt start, and the moment its request reached the target), never
 * against a wall-clock delay. (The PostgreSQL twin is in postgres.test.ts.)
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Event } from "../../src/index.js"
import type { Config } from "../fixtures/durable-worker.js"
import {
  integrityCheck,
  killAll,
  type Receiver,
  spawnWorker,
  sqliteQuery,
  sqliteStore,
  sqliteWriteLockFree,
  startReceiver,
  stopOutsideTransactions,
  waitFor,
  type WorkerProcess
} from "./helpers.js"

const dir = mkdtempSync(join(tmpdir(), "fanout-sqlite-pause-"))
const workers: Array<WorkerProcess> = []
const receivers: Array<Receiver> = []

afterAll(async () => {
  await killAll(workers)
  await Promise.all(receivers.map((r) => r.close()))
  rmSync(dir, { recursive: true, force: true })
})

interface LeaseRow {
  readonly status: string
  readonly lease: string | null
  readonly worker_id: string | null
  readonly available_at: number | null
}

describe("fencing on SQLite (real processes)", () => {
  it("pause: a worker SIGSTOPped past its stored lease; another takes over; its late result is fenced off", {
    timeout: 60_000
  }, async () => {
    const filename = join(dir, "outbox.db")
    const store = sqliteStore(filename, "FULL")
    const a = await startReceiver((_path, _key, req) => req.headers["x-worker"] === "p1" ? "hang" : "ok")
    receivers.push(a)
    const id = "pause-sqlite-1"
    await store.run((s) => Effect.flatMap(Event.make("order.placed", { n: 1 }, { id }), (e) => s.enqueue(e, ["a"])))

    const config = (workerId: string): Config => ({
      store: { kind: "sqlite", filename, synchronous: "FULL" },
      targets: [{ name: "a", url: a.url, timeoutMs: 20_000 }],
      worker: { workerId, concurrency: 4, batchSize: 4, leaseMs: 1_500, pollIntervalMs: 100 },
      reportMs: 100
    })
    const leaseOf = async (): Promise<LeaseRow> => {
      const rows = await sqliteQuery<LeaseRow>(
        filename,
        "SELECT status, lease, worker_id, available_at FROM fanout_deliveries WHERE event_id = ?",
        [id]
      )
      assert.strictEqual(rows.length, 1)
      return rows[0]!
    }

    const p1 = spawnWorker(config("p1"))
    workers.push(p1)
    await p1.ready
    await waitFor("p1's request arrives", () => a.receipts.length === 1, 30_000, 10)
    // Stopped outside any write transaction, so the file stays writable for p2 (a worker stopped
    // holding the write lock is another scenario).
    const tries = await stopOutsideTransactions(p1, () => sqliteWriteLockFree(filename))
    // p1 can write nothing more: this is the lease it holds, as stored.
    const held = await leaseOf()
    assert.strictEqual(held.status, "in_flight")
    assert.strictEqual(held.worker_id, "p1")
    assert.isNotNull(held.lease)
    const expiry = Number(held.available_at)
    assert.isAbove(expiry, a.receipts[0]!.at, "the stored expiry lies after p1's request was sent")

    const p2 = spawnWorker(config("p2"))
    workers.push(p2)
    await p2.ready
    await waitFor(
      "p2 delivers it",
      async () => {
        const s = await store.run((st) => st.status(id))
        return Option.getOrThrow(s).deliveries[0]!.status === "delivered"
      },
      30_000,
      50
    )

    const taken = Option.getOrThrow(await store.run((s) => s.status(id))).deliveries[0]!
    assert.strictEqual(taken.history.length, 1)
    const attempt = taken.history[0]!
    assert.strictEqual(attempt.workerId, "p2")
    assert.notStrictEqual(attempt.lease, held.lease, "p2 delivered under a lease of its own")
    // The takeover came after the stored expiry: p2's recorded attempt start, and the instant p2's
    // request reached the target, are both at or after it.
    assert.isAtLeast(attempt.startedAt, expiry, "p2's attempt started after p1's stored lease expired")
    assert.deepStrictEqual(a.receipts.map((r) => r.worker), ["p1", "p2"])
    assert.isAtLeast(a.receipts[1]!.at, expiry, "p2's request arrived after p1's stored lease expired")

    // p1's request gets its answer while p1 is still stopped; p1 reads it when resumed.
    a.release(200)
    p1.signal("SIGCONT")
    await waitFor("p1's late result is rejected", () => (p1.state()?.lostLeases ?? 0) === 1, 30_000, 20)

    const status = Option.getOrThrow(await store.run((s) => s.status(id)))
    const d = status.deliveries[0]!
    assert.strictEqual(d.status, "delivered")
    assert.strictEqual(d.totalAttempts, 1)
    assert.strictEqual(d.history.length, 1)
    assert.strictEqual(d.history[0]!.workerId, "p2")
    assert.strictEqual(d.history[0]!.outcome, "success")
    assert.deepStrictEqual(
      a.byKey.get(`${id}:a`)?.map((r) => r.worker),
      ["p1", "p2"],
      "both requests bore the same idempotency key"
    )
    assert.strictEqual(p1.state()?.delivered, 0)
    assert.strictEqual(p2.state()?.delivered, 1)
    assert.match(p1.stderr(), /lease lost/)
    for (const w of [p1, p2]) w.signal("SIGTERM")
    await Promise.all([p1.exited, p2.exited])
    // Still consistent after both stopped: nothing was written by p1 on its way out.
    const after = Option.getOrThrow(await store.run((s) => s.status(id))).deliveries[0]!
    assert.strictEqual(after.status, "delivered")
    assert.strictEqual(after.history.length, 1)
    assert.strictEqual(after.history[0]!.workerId, "p2")
    const attempts = await sqliteQuery<{ worker_id: string; lease: string }>(
      filename,
      "SELECT a.worker_id, a.lease FROM fanout_attempts a JOIN fanout_deliveries d ON d.id = a.delivery_id WHERE d.event_id = ?",
      [id]
    )
    assert.deepStrictEqual(attempts.map((r) => r.worker_id), ["p2"], "the attempt ledger holds p2's attempt only")
    console.log(
      `sqlite pause: p1 stopped after ${tries} tr${tries === 1 ? "y" : "ies"}; stored expiry ${expiry};` +
        ` p2's attempt started ${attempt.startedAt - expiry} ms after it`
    )
    await store.dispose()
    assert.strictEqual(await integrityCheck(filename), "ok")
  })
})
