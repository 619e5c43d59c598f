/**
 * PostgreSQL, real processes (each test uses its own table prefix, dropped afterwards):
 *
 * - scale-out: three worker processes share one database, one is SIGKILLed mid-run; every
 *   (event, target) is delivered, nothing is lost, and a target saw a key twice only where the
 *   killed worker's lease expired (the first reception came from the killed worker, before the kill);
 * - pause: a worker SIGSTOPped past its lease while its request is on the wire; another worker takes
 *   the delivery over and delivers it; the paused worker, resumed, gets its answer late and the store
 *   rejects it (fencing): the record shows one attempt, by the second worker;
 * - reconnect: the worker's connections are killed with `pg_terminate_backend` several times mid-run;
 *   the worker keeps going and everything is delivered.
 *
 * PostgreSQL at 127.0.0.1:5432, database `test` (FANOUT_PG_URL overrides). When it is down the tests
 * are skipped with a message, unless FANOUT_REQUIRE_POSTGRES=1.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Event } from "../../src/index.js"
import type { Config } from "../fixtures/durable-worker.js"
import {
  dropPrefix,
  killAll,
  oracle,
  PG_URL,
  pgQuery,
  pgSessionsIdle,
  pgStore,
  postgresAvailable,
  type Receiver,
  requirePostgres,
  spawnWorker,
  startReceiver,
  stopOutsideTransactions,
  type StoreHandle,
  uniquePrefix,
  waitFor,
  type WorkerProcess
} from "./helpers.js"

const available = await postgresAvailable()
if (!available) {
  console.warn(
    `PostgreSQL is not reachable at ${PG_URL}: the PostgreSQL durable tests are skipped` +
      (requirePostgres ? " — but FANOUT_REQUIRE_POSTGRES=1, so they fail" : "")
  )
}

const workers: Array<WorkerProcess> = []
const receivers: Array<Receiver> = []
const prefixes: Array<string> = []
const stores: Array<StoreHandle> = []

afterAll(async () => {
  await killAll(workers)
  await Promise.all(receivers.map((r) => r.close()))
  await Promise.all(stores.map((s) => s.dispose().catch(() => {})))
  if (available) { for (const p of prefixes) await dropPrefix(p).catch(() => {}) }
})

const setup = (label: string) => {
  const prefix = uniquePrefix(label)
  prefixes.push(prefix)
  const store = pgStore(prefix)
  stores.push(store)
  return { prefix, store }
}

const enqueue = (store: StoreHandle, ids: ReadonlyArray<string>, targets: ReadonlyArray<string>) =>
  store.run((s) =>
    Effect.forEach(
      ids,
      (id, n) => Effect.flatMap(Event.make("order.placed", { n }, { id }), (e) => s.enqueue(e, targets)),
      {
        concurrency: 10,
        discard: true
      }
    )
  )

const pgConfig = (
  prefix: string,
  workerId: string,
  targets: Config["targets"],
  worker: Partial<Config["worker"]> = {}
): Config => ({
  store: { kind: "pg", url: PG_URL, prefix, applicationName: workerId },
  targets,
  worker: { workerId, concurrency: 20, batchSize: 10, leaseMs: 2_000, pollIntervalMs: 250, ...worker },
  reportMs: 100
})

describe.runIf(available || requirePostgres)("durable delivery on PostgreSQL (real processes)", () => {
  it("PostgreSQL is reachable", () => {
    assert.isTrue(available, `PostgreSQL must be reachable at ${PG_URL} (FANOUT_REQUIRE_POSTGRES=1)`)
  })

  it("scale-out: three workers, one SIGKILLed mid-run: all delivered, repeats only after a lease expiry", {
    timeout: 120_000
  }, async () => {
    const { prefix, store } = setup("scale")
    const a = await startReceiver(() => "ok")
    const b = await startReceiver(() => "ok")
    receivers.push(a, b)
    const N = 400
    const ids = Array.from({ length: N }, (_, i) => `scale-${prefix}-${i}`)
    // The store exists before the workers start (migrations run once, by the test).
    await enqueue(store, ids.slice(0, 50), ["a", "b"])
    const targets = [{ name: "a", url: a.url }, { name: "b", url: b.url }]
    const ws = ["w1", "w2", "w3"].map((id) => spawnWorker(pgConfig(prefix, id, targets)))
    workers.push(...ws)
    await Promise.all(ws.map((w) => w.ready))
    await enqueue(store, ids.slice(50), ["a", "b"])
    const victim = ws[1]!
    await waitFor("the victim has delivered some", () => (victim.state()?.delivered ?? 0) >= 20, 60_000, 10)
    // Stopped first, so the leases it holds can be read as stored (it can write nothing more), then killed.
    victim.signal("SIGSTOP")
    const leasesAtKill = new Map(
      (await pgQuery<{ event_id: string; target: string; available_at: string }>(
        `select event_id, target, available_at from ${prefix}deliveries where worker_id = 'w2' and status = 'in_flight'`
      )).map((r): [string, number] => [`${r.event_id}:${r.target}`, Number(r.available_at)])
    )
    victim.signal("SIGKILL")
    await victim.exited
    await waitFor(
      "every delivery delivered",
      async () => (await store.run((s) => s.stats)).delivered === 2 * N,
      90_000,
      200
    )
    for (const w of [ws[0]!, ws[2]!]) w.signal("SIGTERM")
    await Promise.all([ws[0]!.exited, ws[2]!.exited])

    const result = oracle(ids, [["a", a], ["b", b]])
    assert.deepStrictEqual(result.lost, [])
    // Which worker recorded each delivery.
    const byWorker = new Map<string, number>()
    const statuses = await store.run((s) => Effect.forEach(ids, (id) => Effect.map(s.status(id), Option.getOrThrow)))
    for (const status of statuses) {
      for (const d of status.deliveries) {
        assert.strictEqual(d.status, "delivered")
        assert.strictEqual(d.history.length, 1, "healthy targets: one recorded attempt")
        const h = d.history[0]!
        assert.strictEqual(h.outcome, "success")
        byWorker.set(h.workerId ?? "?", (byWorker.get(h.workerId ?? "?") ?? 0) + 1)
        const key = `${status.event.id}:${d.target}`
        const seen = (d.target === "a" ? a : b).byKey.get(key)!
        if (seen.length > 1) {
          // A repeat: the first reception was the killed worker's, on a lease it held when it was
          // killed; the one recorded is a survivor's, under a different lease, started after the
          // expiry stored for the killed worker's lease.
          assert.strictEqual(seen.length, 2, key)
          assert.strictEqual(seen[0]!.worker, "w2", key)
          const expiry = leasesAtKill.get(key)
          assert.isDefined(expiry, `${key}: repeated, but not held by the killed worker when it was killed`)
          assert.isAtLeast(h.startedAt, expiry!, `${key}: taken over after the killed worker's stored lease expiry`)
          assert.notStrictEqual(h.workerId, "w2", key)
          assert.strictEqual(seen[1]!.worker, h.workerId, key)
        }
      }
    }
    console.log(
      `scale-out: ${2 * N} deliveries recorded by ${JSON.stringify(Object.fromEntries(byWorker))};` +
        ` repeats ${result.repeats} (all after the killed worker's lease expired; it held ${leasesAtKill.size} when killed);` +
        ` lost ${result.lost.length}`
    )
    assert.isAbove(byWorker.get("w1") ?? 0, 0)
    assert.isAbove(byWorker.get("w2") ?? 0, 0)
    assert.isAbove(byWorker.get("w3") ?? 0, 0)
  })

  it("pause: a worker SIGSTOPped past its lease; its late result is fenced off", { timeout: 60_000 }, async () => {
    const { prefix, store } = setup("pause")
    const a = await startReceiver((_path, _key, req) => req.headers["x-worker"] === "p1" ? "hang" : "ok")
    receivers.push(a)
    const targets = [{ name: "a", url: a.url, timeoutMs: 20_000 }]
    const id = `pause-${prefix}`
    await enqueue(store, [id], ["a"])
    const p1 = spawnWorker(pgConfig(prefix, "p1", targets, { leaseMs: 1_500, pollIntervalMs: 100 }))
    workers.push(p1)
    await p1.ready
    await waitFor("p1's request arrives", () => a.receipts.length === 1, 30_000, 10)
    // Stopped while none of its sessions is inside a statement or a transaction (a worker stopped
    // holding a row lock is another scenario); p1 can write nothing more, so this is its stored lease.
    await stopOutsideTransactions(p1, () => pgSessionsIdle("p1"))
    const [held] = await pgQuery<
      { status: string; lease: string | null; worker_id: string | null; available_at: string }
    >(
      `select status, lease, worker_id, available_at from ${prefix}deliveries where event_id = '${id}'`
    )
    assert.strictEqual(held?.status, "in_flight")
    assert.strictEqual(held?.worker_id, "p1")
    const expiry = Number(held!.available_at)
    const p2 = spawnWorker(pgConfig(prefix, "p2", targets, { leaseMs: 1_500, pollIntervalMs: 100 }))
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
    // Taken over only after the stored lease expired: p2's recorded attempt start and the instant its
    // request reached the target are both at or after the expiry p1's claim left in the database.
    const taken = Option.getOrThrow(await store.run((s) => s.status(id))).deliveries[0]!.history
    assert.strictEqual(taken.length, 1)
    assert.strictEqual(taken[0]!.workerId, "p2")
    assert.notStrictEqual(taken[0]!.lease, held!.lease, "p2 delivered under a lease of its own")
    assert.isAtLeast(taken[0]!.startedAt, expiry, "p2's attempt started after p1's stored lease expired")
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
    assert.deepStrictEqual(a.receipts.map((r) => r.worker), ["p1", "p2"])
    assert.strictEqual(p1.state()?.delivered, 0)
    assert.strictEqual(p2.state()?.delivered, 1)
    assert.match(p1.stderr(), /lease lost/)
    for (const w of [p1, p2]) w.signal("SIGTERM")
    await Promise.all([p1.exited, p2.exited])
    // Still consistent after both stopped: nothing was written by p1 on its way out.
    const after = Option.getOrThrow(await store.run((s) => s.status(id))).deliveries[0]!
    assert.strictEqual(after.status, "delivered")
    assert.strictEqual(after.history.length, 1)
  })

  it("reconnect: the worker's connections are terminated mid-run; it keeps going", { timeout: 90_000 }, async () => {
    const { prefix, store } = setup("reconnect")
    const a = await startReceiver(() => "ok")
    const b = await startReceiver(() => "ok")
    receivers.push(a, b)
    const N = 300
    const ids = Array.from({ length: N }, (_, i) => `reconnect-${prefix}-${i}`)
    await enqueue(store, ids.slice(0, 1), ["a", "b"])
    const appName = `fanout-reconnect-${process.pid}`
    const w = spawnWorker(pgConfig(prefix, appName, [{ name: "a", url: a.url }, { name: "b", url: b.url }], {
      concurrency: 10,
      batchSize: 5
    }))
    workers.push(w)
    await w.ready
    await enqueue(store, ids.slice(1), ["a", "b"])
    let terminated = 0
    for (let k = 0; k < 4; k++) {
      await waitFor("progress", () => (w.state()?.delivered ?? 0) >= (k + 1) * 60, 60_000, 10)
      const rows = await pgQuery<{ ok: boolean }>(
        `select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = '${appName}'`
      )
      terminated += rows.filter((r) => r.ok).length
    }
    await waitFor(
      "every delivery delivered",
      async () => (await store.run((s) => s.stats)).delivered === 2 * N,
      60_000,
      200
    )
    assert.isNull(w.child.exitCode, "the worker is still running")
    const state = w.state()!
    console.log(
      `reconnect: terminated ${terminated} backend connections; the worker saw ${state.storeErrors} store errors` +
        ` (last: ${state.lastError?.operation}: ${state.lastError?.message}) and delivered ${state.delivered}`
    )
    assert.isAbove(terminated, 0)
    const result = oracle(ids, [["a", a], ["b", b]])
    assert.deepStrictEqual(result.lost, [])
    w.signal("SIGTERM")
    await w.exited
  })
})
