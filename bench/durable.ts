/**
 * Benchmark "durable" (issue 3), all in one run on this machine:
 *
 * 1. enqueue events/s through `DeliveryStore.enqueue` (one event + two deliveries per call,
 *    `--producers` concurrent callers): SQLite `synchronous=FULL`, SQLite `NORMAL`, PostgreSQL;
 * 2. end-to-end delivered events/s to two loopback targets (answering 200 at once, in a separate
 *    process): a producer enqueues while a worker in the same process delivers, with Fanout on
 *    SQLite (FULL and NORMAL) and on PostgreSQL, and the same work done the BullMQ way (BullMQ 6 on
 *    a Redis of our own with AOF everysec: one job per (event, target), processor POSTs with undici,
 *    attempts 5, exponential backoff, worker concurrency = `--concurrency`);
 * 3. isolation: target B's delivered rate and latency with target A healthy, hung with its default
 *    policy (the circuit breaker opens), and hung with its breaker off (the worst case).
 *
 * Every measured side runs in a fresh process (bench/durable/side.ts); the sides of a repetition run
 * in a rotating order. Prints markdown, appends/replaces the "## Durable" section of
 * bench/RESULTS.md, and writes the raw figures to .tmp/bench-durable.json.
 *
 * Run: npm run bench -- durable [--events=3000] [--enqueue-events=5000] [--producers=32]
 *      [--concurrency=100] [--reps=2] [--warmup=1000] [--isolation-events=1500]
 *      [--isolation-latency-events=1000] [--no-write]
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Effect, Redacted } from "effect"
import { type IsolationRun, runIsolation } from "./durable/isolation.js"
import { writeSection } from "./lib/results.js"
import * as RedisServer from "./durable/redis.js"
import type { Side, SideResult, StoreSpec } from "./durable/side.js"
import { fmt, machine, median, spread } from "./lib/stats.js"
import * as MockTargets from "./lib/targets.js"

const here = fileURLToPath(new URL(".", import.meta.url))
const sideScript = join(here, "durable", "side.ts")
const PG_URL = process.env.FANOUT_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

const option = (args: ReadonlyArray<string>, name: string, fallback: number): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  if (arg === undefined) return fallback
  const value = Number(arg.slice(name.length + 3))
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`)
  return value
}

const runSide = (side: Side): Promise<SideResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", sideScript, JSON.stringify(side)], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stdout.on("data", (c) => (out += String(c)))
    child.stderr.on("data", (c) => (err += String(c)))
    child.on("exit", (code) => {
      const line = out.trim().split("\n").filter((l) => l.startsWith("{")).pop()
      if (code !== 0 || line === undefined) {
        return reject(new Error(`side ${side.kind} failed (${code}): ${err.slice(-3000)}`))
      }
      resolve(JSON.parse(line) as SideResult)
    })
  })

const pgSettings = (): Promise<string | undefined> =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const sql = yield* PgClient.make({ url: Redacted.make(PG_URL), maxConnections: 1, connectTimeout: "3 seconds" })
      const show = (name: string) =>
        Effect.map(sql.unsafe<Record<string, string>>(`SHOW ${name}`), (r) => Object.values(r[0]!)[0])
      const version = yield* Effect.map(
        sql.unsafe<{ v: string }>("SELECT current_setting('server_version') AS v"),
        (r) => r[0]!.v
      )
      return `PostgreSQL ${version}, fsync=${yield* show("fsync")}, synchronous_commit=${yield* show(
        "synchronous_commit"
      )}`
    })).pipe(Effect.provide(Reactivity.layer), Effect.timeout("10 seconds"))
  ).catch(() => undefined)

const dropPrefix = (prefix: string) =>
  Effect.runPromise(
    Effect.scoped(Effect.gen(function*() {
      const sql = yield* PgClient.make({ url: Redacted.make(PG_URL), maxConnections: 1 })
      for (const t of ["attempts", "deliveries", "events", "targets", "migrations"]) {
        yield* sql.unsafe(`DROP TABLE IF EXISTS ${prefix}${t} CASCADE`)
      }
    })).pipe(Effect.provide(Reactivity.layer))
  ).catch(() => {})

const fsyncMs = (dir: string): number | undefined => {
  // One fsync'd SQLite commit on this disk (what synchronous=FULL pays per transaction).
  try {
    const out = execFileSync(process.execPath, [
      "-e",
      `const D=require(${JSON.stringify(join(here, "..", "node_modules", "better-sqlite3"))});` +
      `const db=new D(${
        JSON.stringify(join(dir, "fsync.db"))
      });db.pragma("journal_mode=WAL");db.pragma("synchronous=FULL");` +
      `db.exec("create table t(x)");const s=db.prepare("insert into t values(1)");const t=performance.now();` +
      `for(let i=0;i<300;i++)s.run();console.log((performance.now()-t)/300)`
    ], { encoding: "utf8" })
    return Number(out.trim())
  } catch {
    return undefined
  }
}

/** From the profile and A/B runs of 2026-11-30 (store and worker change); update when the figures move. */
const whereTheTimeGoes = [
  "**Where Fanout's time goes** (2026-11-30). Fanout's process is CPU-bound; BullMQ's queue logic runs inside Redis, a",
  "second process on the second core, while SQLite runs inside Fanout's process. Per delivered event (two deliveries),",
  "about 1.25 ms of CPU: the SQLite store about 0.33 ms (0.10–0.12 ms per enqueue and 0.10–0.12 ms per claim + finish of",
  "one delivery, measured without HTTP in one warm process; 12k writes in about 270 transactions); the rest is HTTP",
  "(`Target.attempt`, see \"## Direct\"), the worker's per-delivery fiber, span and metrics, and the Effect runtime and",
  "garbage collection around them (GC alone is about 16 % of the profile). BullMQ's Node side costs 0.39 ms per event.",
  "",
  "**What changed in the store and the worker (2026-11-30).** The SQLite hot paths (enqueue, claim, finish,",
  "extendLease) run constant SQL texts with `?` parameters straight on the transaction's connection: no statement is",
  "compiled, spanned or scoped per call (a direct `Connection.execute` costs about 4.5 µs here, a `sql` template about",
  "27 µs), and the prepared-statement cache always hits. A group commit first runs its operations without savepoints",
  "(three statements fewer per operation); only when one fails does it roll back and run the batch again with a",
  "savepoint per operation, so a failure still sinks only its own operation. `finish` is one fenced",
  "`UPDATE … RETURNING` and one `INSERT` (plus the dependents' release when it has dependents), without a generator. The",
  "worker puts its log annotations (event, target, attempt) on its log calls instead of around each delivery (a fiber's",
  "log annotations are diffed and patched at every fork and join below it: about 0.05 ms per delivery), opens its",
  "attempt span without an `Error` per delivery, counts through `Metrics.labelled`, and writes its finish without a",
  "generator. Guarantees are unchanged: synchronous=FULL, `BEGIN IMMEDIATE`, every state change fenced by its lease,",
  "each caller answered only after its commit.",
  "Before → after, CPU per delivered event of the Fanout SQLite FULL side (3 alternating pairs of fresh processes,",
  "commit 88c56d0 without and with the change, load average about 2): 1.78 → 1.21 ms median (per-pair ratios",
  "0.66–0.74), about 0.3 ms of it in the store and 0.25 ms in the worker. The store alone: 0.20 → 0.11 ms per enqueue,",
  "0.21 → 0.11 ms per claim + finish. Against the 2026-11-22 table (2.55 ms per event) the drop to 1.26 ms also includes",
  "the direct-path work of 88c56d0. That run was made under load average ~8, this one under ~2: BullMQ's rate rose from",
  "1,139 to 2,762 events/s with the load alone, so the rate ratio (0.32 then, 0.35 now) hides Fanout's gain; compare CPU",
  "per event (Fanout 2,552 → 1,265 ms per 1k events; BullMQ 467 → 388)."
].join("\n")

const isolationNote = [
  "With A hung and its default policy, A's circuit breaker opens once its first share of attempts has timed out (32",
  "attempts in the whole run), and A costs nothing after that: B's rate goes up (the worker does one target's work",
  "instead of two), its median and p95 latency are below the healthy run's and its p99 within 10 % of it (medians of",
  "the rounds), inside the issue's bar.",
  "",
  "With A's breaker off, B's rate still goes up and its median latency is lower, but its tail pays. A's whole share",
  "(32 attempts) times out together once a second, and aborting, recording, rescheduling and replacing each one costs",
  "about 2.5 ms of CPU (measured with a worker serving only a hung target: 2.5 ms per timed-out attempt on SQLite,",
  "against 1.4 ms per delivery to a healthy one) on the thread that B's deliveries share: a burst of tens of",
  "milliseconds once a second. B's slowest samples sit right after each of A's timeout rounds, which is where its p99",
  "comes from. Handling expired attempts one per event-loop turn spread the bursts but cost more than it saved (each",
  "retry then committed on its own: 748 commits instead of 201 for about 1,400 operations, 3.7 instead of 2.5 ms per",
  "timed-out attempt), so it was not kept.",
  "",
  "Serving A from a process of its own (`fanout worker --targets a`, last table) takes A's CPU off B's thread: B's",
  "figures with A hung are then within the healthy ones."
].join("\n")

interface Row {
  readonly label: string
  readonly durability: string
  readonly results: Array<SideResult>
}

const table = (rows: ReadonlyArray<Row>, unit: string) =>
  [
    `| side | durability of an acknowledged write | runs | ${unit} median (min–max) | CPU ms / 1k events (median) |`,
    "|---|---|---:|---:|---:|",
    ...rows.filter((r) => r.results.length > 0).map((r) =>
      `| ${r.label} | ${r.durability} | ${r.results.length} | ${spread(r.results.map((x) => x.eventsPerSecond))} | ${
        fmt(median(r.results.map((x) => x.cpuMsPer1k)))
      } |`
    )
  ].join("\n")

export const main = async (args: ReadonlyArray<string>) => {
  const events = option(args, "events", 3_000)
  const enqueueEvents = option(args, "enqueue-events", 5_000)
  const producers = option(args, "producers", 32)
  const concurrency = option(args, "concurrency", 100)
  const reps = option(args, "reps", 2)
  const isolationEvents = option(args, "isolation-events", 1_500)
  const isolationLatency = option(args, "isolation-latency-events", 1_000)
  const warmup = option(args, "warmup", 1_000)
  const write = !args.includes("--no-write")
  const dir = mkdtempSync(join(tmpdir(), "fanout-bench-durable-"))
  const log = (line: string) => process.stderr.write(line + "\n")
  const started = new Date()
  const before = machine()
  log(`durable benchmark: ${before}`)

  const pg = await pgSettings()
  if (pg === undefined) log(`PostgreSQL not reachable at ${PG_URL}: its sides are skipped`)
  const fsync = fsyncMs(dir)
  const targets = await MockTargets.start()
  let redis: RedisServer.RedisServer | undefined
  const prefixes: Array<string> = []
  try {
    redis = await RedisServer.start(6390, dir)
  } catch (error) {
    log(`BullMQ side skipped: ${String(error)}`)
  }

  const sqlite = (sync: "FULL" | "NORMAL", name: string): StoreSpec => ({
    kind: "sqlite",
    filename: join(dir, `${name}-${Math.random().toString(36).slice(2)}.db`),
    synchronous: sync
  })
  const pgSpec = (): StoreSpec => {
    const prefix = `bench_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}_`
    prefixes.push(prefix)
    return { kind: "pg", url: PG_URL, prefix }
  }
  const pgDurability = pg !== undefined ? `committed (${pg.split(", ").slice(1).join(", ")})` : "-"
  const sqliteFull = "fsync'd before acknowledged (WAL, synchronous=FULL)"
  const sqliteNormal =
    "survives a process crash; the last commits may be lost on power failure (WAL, synchronous=NORMAL)"
  const redisDurability = redis
    ? `AOF everysec: up to ~1 s of acknowledged jobs lost on a crash of Redis or the machine (${redis.durability})`
    : "-"

  const enqueueRows: Array<Row> = [
    { label: "Fanout enqueue, SQLite FULL", durability: sqliteFull, results: [] },
    { label: "Fanout enqueue, SQLite NORMAL", durability: sqliteNormal, results: [] },
    { label: "Fanout enqueue, PostgreSQL", durability: pgDurability, results: [] }
  ]
  const e2eRows: Array<Row> = [
    { label: "Fanout, SQLite FULL", durability: sqliteFull, results: [] },
    { label: "Fanout, SQLite NORMAL", durability: sqliteNormal, results: [] },
    { label: "Fanout, PostgreSQL", durability: pgDurability, results: [] },
    { label: "BullMQ 6 + Redis 7", durability: redisDurability, results: [] }
  ]
  /**
   * One round of runs next to each other: A healthy, A hung with its breaker on, with it off; and the
   * same two (healthy, breaker off) with A served by a worker process of its own.
   */
  type Kind = "healthy" | "breaker" | "worst" | "splitHealthy" | "splitWorst"
  const isolation: Array<Record<Kind, IsolationRun>> = []

  try {
    for (let rep = 0; rep < reps; rep++) {
      const enqueueSides: Array<[Row, () => Side | undefined]> = [
        [
          enqueueRows[0]!,
          () => ({
            kind: "enqueue",
            store: sqlite("FULL", "enq"),
            events: enqueueEvents,
            warmup,
            concurrency: producers
          })
        ],
        [
          enqueueRows[1]!,
          () => ({
            kind: "enqueue",
            store: sqlite("NORMAL", "enq"),
            events: enqueueEvents,
            warmup,
            concurrency: producers
          })
        ],
        [
          enqueueRows[2]!,
          () =>
            pg ? { kind: "enqueue", store: pgSpec(), events: enqueueEvents, warmup, concurrency: producers } : undefined
        ]
      ]
      const common = { events, warmup, producers, concurrency, urlA: targets.urlA, urlB: targets.urlB }
      const e2eSides: Array<[Row, () => Side | undefined]> = [
        [e2eRows[0]!, () => ({ kind: "fanout", store: sqlite("FULL", "e2e"), ...common })],
        [e2eRows[1]!, () => ({ kind: "fanout", store: sqlite("NORMAL", "e2e"), ...common })],
        [e2eRows[2]!, () => pg ? { kind: "fanout", store: pgSpec(), ...common } : undefined],
        [e2eRows[3]!, () => redis ? { kind: "bullmq", redisPort: redis.port, queue: `q${rep}`, ...common } : undefined]
      ]
      for (const sides of [enqueueSides, e2eSides]) {
        const order = sides.map((_, i) => (i + rep) % sides.length)
        for (const i of order) {
          const [row, make] = sides[i]!
          const side = make()
          if (side === undefined) continue
          const before = await targets.counts()
          const result = await runSide(side)
          if (side.kind !== "enqueue") {
            const after = await targets.counts()
            const received = after.a - before.a + after.b - before.b
            if (received < 2 * (events + warmup)) {
              throw new Error(`${row.label}: targets received ${received} < ${2 * (events + warmup)}`)
            }
          }
          row.results.push(result)
          log(
            `rep ${rep + 1}: ${row.label}: ${fmt(result.eventsPerSecond)} events/s (${
              JSON.stringify(result.extra ?? {})
            })`
          )
        }
      }
      const isoOptions = {
        store: "sqlite" as const,
        synchronous: "FULL" as const,
        events: isolationEvents,
        latencyEvents: isolationLatency,
        rate: 100
      }
      if (rep === 0) await runIsolation("healthy", { ...isoOptions, events: 1_000, latencyEvents: 50 }) // warm-up
      // Two triplets per repetition, the second in reverse order, so that warm-up and drift favour no run.
      const kinds: ReadonlyArray<readonly [Kind, () => Promise<IsolationRun>]> = [
        ["healthy", () => runIsolation("healthy", isoOptions)],
        ["breaker", () => runIsolation("hung", { ...isoOptions, breaker: true })],
        ["worst", () => runIsolation("hung", { ...isoOptions, breaker: false })],
        ["splitHealthy", () => runIsolation("healthy", { ...isoOptions, split: true })],
        ["splitWorst", () => runIsolation("hung", { ...isoOptions, split: true })]
      ]
      for (const order of [kinds, [...kinds].reverse()]) {
        const runs: Partial<Record<Kind, IsolationRun>> = {}
        for (const [kind, run] of order) runs[kind] = await run()
        const round = runs as Record<Kind, IsolationRun>
        isolation.push(round)
        log(
          `rep ${rep + 1}: isolation (${order[0]![0]} first): B p95 ${round.healthy.p95B.toFixed(1)} healthy, ` +
            `${round.breaker.p95B.toFixed(1)} A hung (breaker on), ${
              round.worst.p95B.toFixed(1)
            } A hung (breaker off); ` +
            `split: ${round.splitHealthy.p95B.toFixed(1)} healthy, ${round.splitWorst.p95B.toFixed(1)} A hung ms`
        )
      }
    }
  } finally {
    await targets.stop()
    await redis?.stop()
    for (const p of prefixes) await dropPrefix(p)
    rmSync(dir, { recursive: true, force: true })
  }

  const ratio = (row: Row) => {
    const bull = e2eRows[3]!.results
    if (bull.length === 0 || row.results.length === 0) return "-"
    return `${
      (median(row.results.map((r) => r.eventsPerSecond)) / median(bull.map((r) => r.eventsPerSecond))).toFixed(2)
    }`
  }
  const isoLine = (base: Kind, hung: Kind, f: (r: IsolationRun) => number, digits: number) =>
    `${spread(isolation.map((p) => f(p[base])), digits)} | ${spread(isolation.map((p) => f(p[hung])), digits)} | ${
      spread(isolation.map((p) => f(p[hung]) / f(p[base])), 2)
    }`
  const isoTable = (base: Kind, hung: Kind) =>
    [
      "| B's figure | A healthy | A hung | hung ÷ healthy |",
      "|---|---:|---:|---:|",
      `| delivered events/s | ${isoLine(base, hung, (r) => r.rateB, 0)} |`,
      `| latency p50 ms | ${isoLine(base, hung, (r) => r.p50B, 1)} |`,
      `| latency p95 ms | ${isoLine(base, hung, (r) => r.p95B, 1)} |`,
      `| latency p99 ms | ${isoLine(base, hung, (r) => r.p99B, 1)} |`
    ].join("\n")
  const section = [
    "## Durable",
    "",
    `\`npm run bench -- durable --events=${events} --enqueue-events=${enqueueEvents} --producers=${producers} --concurrency=${concurrency} --reps=${reps} --warmup=${warmup} --isolation-events=${isolationEvents} --isolation-latency-events=${isolationLatency}\` (${
      started.toISOString().slice(0, 10)
    }). Each side runs in a fresh Node process; the sides of a repetition run in a rotating order; the two mock targets (200 at once, keep-alive) run in their own process (bench/lib/targets.ts).`,
    "",
    before,
    "",
    `Disk: one fsync'd SQLite commit takes ${fsync !== undefined ? fsync.toFixed(2) : "?"} ms here. ${
      pg ?? "PostgreSQL: not reachable."
    } ${redis ? `Redis 7 on port ${redis.port}, ${redis.durability}.` : "Redis: not started."}`,
    "",
    `### Enqueue (${fmt(enqueueEvents)} events, two deliveries each, ${producers} concurrent callers)`,
    "",
    table(enqueueRows, "events/s"),
    "",
    `### End to end (${fmt(events)} events → ${
      fmt(2 * events)
    } HTTP deliveries; producer and worker in one process, ${producers} concurrent producers, worker concurrency ${concurrency})`,
    "",
    `Timed from the first enqueue until every (event, target) has been received by the targets and recorded as delivered (Fanout: \`finish\` committed; BullMQ: job completed), after ${
      fmt(warmup)
    } untimed warm-up events through the same path in the same process.`,
    "",
    table(e2eRows, "delivered events/s"),
    "",
    "| Fanout ÷ BullMQ (medians) | ratio |",
    "|---|---:|",
    ...e2eRows.slice(0, 3).map((r) => `| ${r.label} | ${ratio(r)} |`),
    "",
    whereTheTimeGoes,
    "",
    `### Isolation (SQLite FULL; B's rate over a backlog of ${fmt(isolationEvents)} events, B's latency over ${
      fmt(isolationLatency)
    } more enqueued at 100/s; A hung = never answers, 1 s attempt timeout)`,
    "",
    `${isolation.length} rounds of five runs (A healthy; A hung with its default policy; A hung with its breaker off; and, with A served by a worker process of its own, A healthy and A hung with its breaker off), half of them in reverse order, after a 1,000-event warm-up; each ratio is taken within its round. A hung holds ${
      spread(isolation.map((p) => p.worst.receivedA), 0)
    } attempts over a run with its breaker off (its share: ${isolation[0]?.worst.limitA ?? "?"} at a time), ${
      spread(isolation.map((p) => p.breaker.receivedA), 0)
    } with its breaker on.`,
    "",
    "**A hung, default policy** (its circuit breaker opens after its first timeouts):",
    "",
    isoTable("healthy", "breaker"),
    "",
    "**A hung, circuit breaker off** (the worst case: A's whole share of the worker times out, again and again):",
    "",
    isoTable("healthy", "worst"),
    "",
    "**A hung, circuit breaker off, A served by a process of its own** (`fanout worker --targets a`; this process serves B):",
    "",
    isoTable("splitHealthy", "splitWorst"),
    "",
    isolationNote,
    ""
  ].join("\n")

  process.stdout.write(section + "\n")
  mkdirSync(join(here, "..", ".tmp"), { recursive: true })
  writeFileSync(
    join(here, "..", ".tmp", "bench-durable.json"),
    JSON.stringify({ machine: before, pg, fsyncMs: fsync, enqueueRows, e2eRows, isolation }, null, 2)
  )
  if (write) {
    const path = writeSection("Durable", section)
    log(`wrote the "## Durable" section of ${path}`)
  }
}
