/**
 * Crash test (SQLite): a worker process delivering to two loopback targets that fail at random
 * (20 % 503, 5 % connection resets) is SIGKILLed at random moments, six times, and restarted each
 * time, while the test process keeps enqueueing into the same SQLite file. At the end every
 * (event, target) was answered 2xx at least once, nothing is lost, the store's record is coherent
 * (each delivery delivered, exactly one successful attempt in its history), and the file passes
 * `PRAGMA integrity_check`.
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
  oracle,
  prng,
  type Receiver,
  sleep,
  spawnWorker,
  sqliteStore,
  startReceiver,
  waitFor,
  type WorkerProcess
} from "./helpers.js"

const dir = mkdtempSync(join(tmpdir(), "fanout-crash-"))
const workers: Array<WorkerProcess> = []
const receivers: Array<Receiver> = []

afterAll(async () => {
  await killAll(workers)
  await Promise.all(receivers.map((r) => r.close()))
  rmSync(dir, { recursive: true, force: true })
})

describe("crash (SQLite, real processes)", () => {
  it("SIGKILLed 6 times at random moments: nothing lost, the file is sound", { timeout: 150_000 }, async () => {
    const seed = Number(process.env.FANOUT_SEED ?? Date.now() % 1_000_000)
    console.log(`crash test seed=${seed} (FANOUT_SEED=${seed} to replay the fault choices)`)
    const random = prng(seed)
    const faulty = () => {
      const r = random()
      return r < 0.2 ? 503 : r < 0.25 ? "reset" as const : "ok" as const
    }
    const a = await startReceiver(faulty)
    const b = await startReceiver(faulty)
    receivers.push(a, b)
    const filename = join(dir, "outbox.db")
    const store = sqliteStore(filename, "FULL")
    const N = 160
    const ids = Array.from({ length: N }, (_, i) => `crash-${seed}-${i}`)
    const enqueue = (from: number, to: number) =>
      store.run((s) =>
        Effect.forEach(
          ids.slice(from, to),
          (id, i) =>
            Effect.flatMap(
              Event.make("order.placed", { n: from + i }, { id }),
              (event) => s.enqueue(event, ["a", "b"])
            ),
          {
            concurrency: 20,
            discard: true
          }
        )
      )
    await enqueue(0, N / 2)

    const config = (n: number): Config => ({
      store: { kind: "sqlite", filename, synchronous: "FULL" },
      targets: [
        { name: "a", url: a.url, timeoutMs: 600 },
        { name: "b", url: b.url, timeoutMs: 600 }
      ],
      worker: { workerId: `crash-${n}`, concurrency: 16, batchSize: 8, leaseMs: 1_000, pollIntervalMs: 100 },
      reportMs: 100
    })

    const kills = 6
    let secondHalf = false
    for (let k = 0; k < kills; k++) {
      const spawned = Date.now()
      const w = spawnWorker(config(k))
      workers.push(w)
      await w.ready
      const readyIn = Date.now() - spawned
      // The rest arrives while workers come and go (earlier if the first half is already done,
      // so that this worker has something to claim).
      if (!secondHalf && (k === 2 || (await store.run((s) => s.stats)).depth === 0)) {
        secondHalf = true
        await enqueue(N / 2, N)
      }
      if ((await store.run((s) => s.stats)).depth === 0) {
        // Everything already delivered: nothing left to interrupt.
        w.signal("SIGKILL")
        await w.exited
        continue
      }
      // A random moment once it is at work: during a claim, an HTTP attempt, or a finish.
      await waitFor("the worker claims", () => (w.state()?.claimedTotal ?? 0) > 0, 30_000, 20)
      await sleep(50 + Math.floor(random() * 700))
      w.signal("SIGKILL")
      const code = await w.exited
      assert.strictEqual(code, null, "killed by a signal")
      assert.strictEqual(w.child.signalCode, "SIGKILL")
      console.log(`kill ${k + 1}: ready in ${readyIn} ms, killed after ${w.state()?.delivered ?? 0} deliveries`)
    }
    const progressAtLastKill = await store.run((s) => s.stats)
    console.log(
      `after ${kills} kills: delivered ${progressAtLastKill.delivered}/${
        2 * N
      }, in flight ${progressAtLastKill.inFlight}`
    )

    const last = spawnWorker(config(kills))
    workers.push(last)
    await last.ready
    const drainStart = Date.now()
    await waitFor(
      "every delivery delivered",
      async () => (await store.run((s) => s.stats)).delivered === 2 * N,
      90_000,
      200
    )
    console.log(`last worker drained the rest in ${Date.now() - drainStart} ms`)
    last.signal("SIGTERM")
    await last.exited
    assert.strictEqual(last.state()?.t, "stopped", "the last worker stopped gracefully")

    // The targets' view: every (event, target) answered 2xx at least once.
    const result = oracle(ids, [["a", a], ["b", b]])
    console.log(
      `crash: ${result.expected} (event, target) pairs; lost ${result.lost.length}; raw repeat receptions ${result.repeats}` +
        ` (retries of 503/reset included); sent again after a 2xx (crash between answer and record, or lease expiry): ` +
        `${result.duplicatesAfterSuccess.length}`
    )
    assert.deepStrictEqual(result.lost, [])
    for (const [name, r] of [["a", a], ["b", b]] as const) {
      for (const id of ids) assert.isTrue(r.byKey.has(`${id}:${name}`), `${name} saw ${id}`)
    }

    // The store's view: coherent records.
    const statuses = await store.run((s) => Effect.forEach(ids, (id) => Effect.map(s.status(id), Option.getOrThrow)))
    let attempts = 0
    for (const status of statuses) {
      assert.strictEqual(status.deliveries.length, 2)
      for (const d of status.deliveries) {
        assert.strictEqual(d.status, "delivered", `${status.event.id}:${d.target}`)
        assert.strictEqual(d.history.filter((h) => h.outcome === "success").length, 1)
        assert.strictEqual(d.history.at(-1)!.outcome, "success")
        assert.deepStrictEqual(d.history.map((h) => h.number), d.history.map((_, i) => i + 1))
        attempts += d.history.length
      }
    }
    const stats = await store.run((s) => s.stats)
    assert.strictEqual(stats.depth, 0)
    assert.strictEqual(stats.dead, 0)
    console.log(`crash: ${attempts} attempts recorded for ${2 * N} deliveries`)
    await store.dispose()
    assert.strictEqual(await integrityCheck(filename), "ok")
  })
})
