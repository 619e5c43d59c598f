/**
 * Benchmark "server": acknowledged events per second on `POST /v1/events`, with the SQLite store.
 *
 * - A: baseline — a bare `node:http` handler that parses the JSON and inserts it into SQLite with
 *   better-sqlite3 (WAL, `synchronous = FULL`, one insert per request) (bench/server/baseline.ts);
 * - B: Fanout's server (`Server/Http.layer`: routing, schema validation, body limits, idempotent
 *   enqueue of the event and one delivery per target, group commit) on `SqliteStore`, also
 *   `synchronous = FULL` (bench/server/fanout.ts);
 * - C (for reading the figures, not a fair comparison): the same server on the in-memory store,
 *   nothing durable — what the HTTP layer itself costs.
 *
 * Each server runs in its own process (the load generator does not share its event loop), on its
 * own fresh database file. Load: autocannon (programmatic API) with N connections for D seconds,
 * each request a new event (no id: the server makes one). Runs are interleaved (A, B, then B, A,
 * …) after a warm-up of each, for ≥3 repetitions; the table shows medians (min–max) and the
 * per-repetition ratio B / A. Afterwards each server's database is counted: every 2xx must be a
 * stored event. Writes the "## Server" section of bench/RESULTS.md and .tmp/bench-server.json.
 *
 * Run: npm run bench -- server [--duration=10] [--connections=32] [--reps=3] [--warmup=3] [--pin]
 * (or BENCH_DURATION, BENCH_CONNECTIONS, BENCH_REPS, BENCH_WARMUP, BENCH_PIN=1)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { writeSection } from "./lib/results.js"
import { fmt, machine, median, pin, spread } from "./lib/stats.js"
import * as Child from "./server/child.js"

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)

interface AutocannonResult {
  readonly duration: number
  readonly errors: number
  readonly timeouts: number
  readonly non2xx: number
  readonly "2xx": number
  readonly latency: { readonly p50: number; readonly p99: number; readonly p90: number; readonly average: number }
  readonly requests: { readonly total: number; readonly average: number }
}

// autocannon ships no types.
const autocannon = require("autocannon") as (options: Record<string, unknown>) => Promise<AutocannonResult>

interface Options {
  readonly duration: number
  readonly connections: number
  readonly reps: number
  readonly warmup: number
  readonly pin: boolean
}

const option = (args: ReadonlyArray<string>, name: string, env: string, fallback: number): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  const raw = arg !== undefined ? arg.slice(name.length + 3) : process.env[env]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`--${name} / ${env} must be a positive integer, got ${raw}`)
  }
  return value
}

const parse = (args: ReadonlyArray<string>): Options => ({
  duration: option(args, "duration", "BENCH_DURATION", 10),
  connections: option(args, "connections", "BENCH_CONNECTIONS", 32),
  reps: Math.max(3, option(args, "reps", "BENCH_REPS", 3)),
  warmup: option(args, "warmup", "BENCH_WARMUP", 3),
  pin: args.includes("--pin") || process.env.BENCH_PIN === "1"
})

type Side = "A" | "B" | "C"

interface Run {
  readonly side: Side
  readonly rep: number
  readonly acknowledgedPerSecond: number
  readonly acknowledged: number
  readonly non2xx: number
  readonly errors: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  /** Server process CPU per 1 000 acknowledged events, in ms. */
  readonly serverCpuMsPer1k: number | undefined
}

const body = JSON.stringify({
  type: "order.placed",
  key: "customer-42",
  payload: {
    orderId: "o-123",
    sku: "sku-9",
    qty: 2,
    email: "someone@example.com",
    lines: [{ sku: "sku-9", qty: 2, price: 1999 }]
  }
})

const load = (url: string, connections: number, duration: number): Promise<AutocannonResult> =>
  autocannon({
    url: `${url}/v1/events`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    connections,
    duration,
    pipelining: 1
  })

const measure = async (side: Side, rep: number, server: Child.ServerProcess, options: Options): Promise<Run> => {
  const cpuBefore = server.cpuMs()
  const result = await load(server.url, options.connections, options.duration)
  const cpuAfter = server.cpuMs()
  const acknowledged = result["2xx"]
  return {
    side,
    rep,
    acknowledged,
    acknowledgedPerSecond: acknowledged / result.duration,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    serverCpuMsPer1k: cpuBefore !== undefined && cpuAfter !== undefined && acknowledged > 0
      ? ((cpuAfter - cpuBefore) / acknowledged) * 1000
      : undefined
  }
}

const row = (label: string, runs: ReadonlyArray<Run>) => {
  const cpu = runs.map((r) => r.serverCpuMsPer1k).filter((x): x is number => x !== undefined)
  return `| ${label} | ${runs.length} | ${spread(runs.map((r) => r.acknowledgedPerSecond))} | ${
    fmt(median(runs.map((r) => r.p50)), 1)
  } | ${fmt(median(runs.map((r) => r.p99)), 1)} | ${cpu.length > 0 ? fmt(median(cpu)) : "n/a"} | ${
    runs.reduce((n, r) => n + r.non2xx + r.errors, 0)
  } |`
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const options = parse(args)
  const log = (line: string) => process.stderr.write(`${line}\n`)
  const dir = mkdtempSync(join(tmpdir(), "fanout-bench-server-"))
  const servers: Partial<Record<Side, Child.ServerProcess>> = {}
  try {
    servers.A = await Child.start(join(here, "server", "baseline.ts"), [join(dir, "baseline.db")])
    servers.B = await Child.start(join(here, "server", "fanout.ts"), [join(dir, "fanout.db")])
    servers.C = await Child.start(join(here, "server", "fanout.ts"), ["memory"])
    const described = machine()
    const pinned = options.pin && pin(process.pid, 0) && pin(servers.A.pid, 1) && pin(servers.B.pid, 1) &&
      pin(servers.C.pid, 1)
    log(
      `baseline ${servers.A.url}, fanout ${servers.B.url}, fanout (memory) ${servers.C.url}; ${options.connections} connections, ${options.duration} s per run, ${options.reps} reps`
    )

    for (const side of ["A", "B", "C"] as const) {
      log(`warm-up ${side} (${options.warmup} s)`)
      await load(servers[side]!.url, options.connections, options.warmup)
    }
    const warmStored = { A: await servers.A.stored(), B: await servers.B.stored() }
    const sides: ReadonlyArray<Side> = ["A", "B", "C"]

    const runs: Array<Run> = []
    for (let rep = 0; rep < options.reps; rep++) {
      // Rotate the order, so no side always runs first or last.
      const order = sides.map((_, i) => sides[(i + rep) % sides.length]!)
      for (const side of order) {
        const run = await measure(side, rep, servers[side]!, options)
        runs.push(run)
        log(
          `rep ${rep + 1} ${side}: ${
            fmt(run.acknowledgedPerSecond)
          } ack/s, p50 ${run.p50} ms, p99 ${run.p99} ms, non-2xx ${run.non2xx}, errors ${run.errors}`
        )
      }
    }

    // Every acknowledged event is in the database.
    const end = { A: await servers.A.stored(), B: await servers.B.stored() }
    const stored = { A: end.A.events - warmStored.A.events, B: end.B.events - warmStored.B.events }
    const commits = {
      A: (end.A.commits ?? 0) - (warmStored.A.commits ?? 0),
      B: (end.B.commits ?? 0) - (warmStored.B.commits ?? 0)
    }
    const acknowledged = {
      A: runs.filter((r) => r.side === "A").reduce((n, r) => n + r.acknowledged, 0),
      B: runs.filter((r) => r.side === "B").reduce((n, r) => n + r.acknowledged, 0)
    }

    const of = (side: Side) => runs.filter((r) => r.side === side)
    const ratioOf = (side: Side) =>
      of(side).map((x) => x.acknowledgedPerSecond / of("A").find((a) => a.rep === x.rep)!.acknowledgedPerSecond)
    const ratios = ratioOf("B")
    const date = new Date().toISOString().slice(0, 10)
    const section = [
      `## Server`,
      ``,
      `\`npm run bench -- server --duration=${options.duration} --connections=${options.connections} --reps=${options.reps}\` (${date}). ` +
      `Acknowledged events per second on \`POST /v1/events\` (a 2xx means stored durably: SQLite WAL, \`synchronous = FULL\`), ` +
      `autocannon ${options.connections} connections × ${options.duration} s per run, each request a new event; ` +
      `each server in its own process, runs interleaved (order rotated every rep: A B C, B C A, C A B, …) after a ${options.warmup} s warm-up each; ` +
      `${pinned ? "load generator pinned to CPU 0, servers to CPU 1" : "not pinned"}.`,
      ``,
      `${described}`,
      ``,
      `| side | runs | acknowledged events/s median (min–max) | p50 ms | p99 ms | server CPU ms / 1k events | non-2xx + errors |`,
      `|---|---:|---:|---:|---:|---:|---:|`,
      row("A: bare node:http + better-sqlite3, one insert per request", of("A")),
      row("B: Fanout server (validation, routing, idempotent enqueue of event + 2 deliveries)", of("B")),
      row("C: Fanout server on the in-memory store (not durable; the HTTP layer's own cost)", of("C")),
      ``,
      `| ratio (per rep) | median (min–max) |`,
      `|---|---:|`,
      `| B / A | ${spread(ratios, 2)} |`,
      `| C / A | ${spread(ratioOf("C"), 2)} |`,
      ``,
      `Stored during the measured runs (≥ acknowledged: requests in flight when a run stops are stored but not counted): ` +
      `A ${fmt(stored.A)} events for ${fmt(acknowledged.A)} acknowledged, in ${fmt(commits.A)} commits; ` +
      `B ${fmt(stored.B)} events for ${fmt(acknowledged.B)} acknowledged, in ${fmt(commits.B)} commits ` +
      `(${fmt(stored.B / Math.max(1, commits.B), 2)} events per commit). A commits (and fsyncs) once per request, ` +
      `blocking its event loop; B writes each event and its two delivery rows in one transaction, and concurrent ` +
      `enqueues may share a commit (group commit), each answered only after its commit` +
      (commits.B > 0 && stored.B / commits.B < 1.2
        ? ` — here they almost never did: the store's writer takes the next job as soon as a commit returns, and ` +
          `the synchronous commit blocked the event loop while the other requests waited to be read.`
        : `.`)
    ].join("\n")
    console.log(section)
    writeSection("Server", section)
    mkdirSync(join(here, "..", ".tmp"), { recursive: true })
    writeFileSync(
      join(here, "..", ".tmp", "bench-server.json"),
      JSON.stringify(
        { machine: described, options: { ...options, pinned }, runs, ratios, stored, commits, acknowledged },
        null,
        2
      )
    )
    log(`wrote bench/RESULTS.md (## Server) and .tmp/bench-server.json`)
    if (stored.A < acknowledged.A || stored.B < acknowledged.B) {
      throw new Error(`acknowledged events missing from a database: ${JSON.stringify({ stored, acknowledged })}`)
    }
  } finally {
    await Promise.all([servers.A?.stop(), servers.B?.stop(), servers.C?.stop()])
    rmSync(dir, { recursive: true, force: true })
  }
}
