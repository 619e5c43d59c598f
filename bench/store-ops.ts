/**
 * Benchmark "store-ops": the CPU of each store operation on its own, no HTTP — where a durable event's
 * store time goes. One process (pin it: `taskset -c 0 npm run bench -- store-ops`), one SQLite file
 * (synchronous FULL, the default), `--events` events per round (two deliveries each): enqueue them
 * (32 concurrent callers), claim every delivery (batches of 50, per target), finish each as delivered
 * (100 concurrent). A warm-up round first, then `--rounds` measured rounds; CPU is the process's
 * user + system time over each phase, per event (enqueue) or per delivery (claim, finish). With
 * `--statements`, each better-sqlite3 statement's own time is summed too (the rest of an operation
 * is the JavaScript around it: Effect, @effect/sql, the group commit's writer). COMMIT includes its
 * fsync (wall time, mostly waiting on the disk, not CPU).
 *
 * Prints only (no RESULTS.md section): the figures are quoted, with the command, where used.
 *
 * `--clients=lean,effect` runs the rounds on both SQL clients the store can open (its own lean client,
 * the default, and `@effect/sql-sqlite-node`'s `SqliteClient`), one store and file each, alternating
 * round by round in the same process, and prints the median per client.
 *
 * Run: npm run bench -- store-ops [--events=4000] [--rounds=2] [--statements] [--clients=lean,effect]
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { Event } from "../src/index.js"
import * as Sqlite from "../src/Store/Sqlite.js"
import * as Store from "../src/Store.js"

const require = createRequire(import.meta.url)

interface Tally {
  n: number
  us: number
}

/** Wraps better-sqlite3's statement methods to sum each statement's own time. */
const timeStatements = (): Map<string, Tally> => {
  const Database = require("better-sqlite3") as new(file: string) => { prepare(sql: string): object; close(): void }
  const db = new Database(":memory:")
  const proto = Object.getPrototypeOf(db.prepare("SELECT 1")) as Record<string, (...args: Array<unknown>) => unknown>
  db.close()
  const stats = new Map<string, Tally>()
  for (const method of ["run", "all", "get"]) {
    const original = proto[method]!
    proto[method] = function(this: { source: string }, ...args: Array<unknown>) {
      const t0 = process.hrtime.bigint()
      try {
        return original.apply(this, args)
      } finally {
        const key = this.source.replace(/\s+/g, " ").slice(0, 90)
        const tally = stats.get(key) ?? { n: 0, us: 0 }
        tally.n++
        tally.us += Number(process.hrtime.bigint() - t0) / 1000
        stats.set(key, tally)
      }
    }
  }
  return stats
}

const cpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

const value = (args: ReadonlyArray<string>, name: string, fallback: number) => {
  const raw = args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const n = raw === undefined ? fallback : Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`)
  return n
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const events = value(args, "events", 4000)
  const rounds = value(args, "rounds", 2)
  const stats = args.includes("--statements") ? timeStatements() : undefined
  const clientsArg = args.find((a) => a.startsWith("--clients="))?.slice("--clients=".length) ?? "lean"
  const clients = clientsArg.split(",").map((c) => {
    if (c !== "lean" && c !== "effect") throw new Error(`--clients: lean and/or effect, got ${c}`)
    return c
  })
  const dir = mkdtempSync(join(tmpdir(), "fanout-store-ops-"))
  const program = Effect.gen(function*() {
    const stores = yield* Effect.forEach(clients, (client) =>
      Effect.map(
        Sqlite.make({ filename: join(dir, `store-ops-${client}.db`), synchronous: "FULL", client }),
        (store) => [client, store] as const
      ))
    const round = (store: Store.DeliveryStore, tag: string) =>
      Effect.gen(function*() {
        const batch = yield* Effect.forEach(
          Array.from({ length: events }, (_, i) => i),
          (i) =>
            Event.make("order.placed", { i, sku: `s-${i % 100}`, email: `c${i}@example.com` }, { id: `${tag}-${i}` })
        )
        let t = cpu()
        yield* Effect.forEach(batch, (e) => store.enqueue(e, ["a", "b"]), { concurrency: 32, discard: true })
        const enqueue = (cpu() - t) / events
        t = cpu()
        const claimed: Array<Store.Claimed> = []
        while (true) {
          const got = yield* Effect.forEach(
            ["a", "b"],
            (target) => store.claim({ workerId: "bench", limit: 50, leaseMs: 60_000, targets: [target] }),
            { concurrency: 2 }
          )
          if (got.flat().length === 0) break
          claimed.push(...got.flat())
        }
        const claim = (cpu() - t) / claimed.length
        t = cpu()
        yield* Effect.forEach(
          claimed,
          (d) =>
            store.finish(
              { id: d.id, lease: d.lease },
              { startedAt: Date.now(), durationMs: 1, outcome: "success", status: 200 },
              Store.Next.Delivered()
            ),
          { concurrency: 100, discard: true }
        )
        const finish = (cpu() - t) / claimed.length
        return { enqueue, claim, finish, deliveries: claimed.length }
      })
    for (const [client, store] of stores) yield* round(store, `warm-${client}`)
    stats?.clear()
    const perEvent = new Map<string, Array<number>>(clients.map((c) => [c, []]))
    for (let r = 1; r <= rounds; r++) {
      for (const [client, store] of stores) {
        const x = yield* round(store, `r${r}-${client}`)
        const total = x.enqueue + 2 * (x.claim + x.finish)
        perEvent.get(client)!.push(total)
        console.log(
          `round ${r}${clients.length > 1 ? ` (${client})` : ""}: enqueue ${x.enqueue.toFixed(0)} µs CPU/event, ` +
            `claim ${x.claim.toFixed(0)} µs/delivery, finish ${
              x.finish.toFixed(0)
            } µs/delivery (${x.deliveries} deliveries); ` +
            `per event (enqueue + 2 × (claim + finish)): ${total.toFixed(0)} µs`
        )
      }
    }
    if (clients.length > 1) {
      const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
      for (const [client, xs] of perEvent) console.log(`median per event, ${client}: ${median(xs).toFixed(0)} µs CPU`)
    }
  })
  try {
    await Effect.runPromise(Effect.scoped(program))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  if (stats !== undefined) {
    const measured = rounds * events
    console.log(`\nstatements over the measured rounds (${measured} events), own time (COMMIT includes its fsync):`)
    for (const [sql, t] of [...stats].sort((a, b) => b[1].us - a[1].us).slice(0, 10)) {
      console.log(
        `${(t.us / measured).toFixed(1).padStart(7)} µs/event ${String(t.n).padStart(7)} × ${
          (t.us / t.n).toFixed(1).padStart(7)
        } µs  ${sql}`
      )
    }
  }
}
