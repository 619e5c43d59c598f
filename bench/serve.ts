/**
 * Benchmark "serve": a black-box, end-to-end measurement of `fanout serve` over HTTP, as a new user
 * would make it, against the same work done without durability (raw), with BullMQ + Redis, and
 * (on PostgreSQL) with pg-boss.
 *
 * Open loop (default): a load generator process (bench/serve/loadgen.ts, undici keep-alive) offers
 * events `POST /v1/events` at fixed rates (`--rates`, default 500,1000,2000,4000 events/s) for
 * `--duration` s each: the send instants are fixed by the rate, never by the answers. Every event is
 * routed to two targets (bench/serve/targets.ts, one process, two ports) that record the instant
 * each (event, target) is first received and answer 200 after `--delay` ms (20). Each event carries
 * its offered instant, so receipt − offered is the latency the system adds (the targets' 20 ms come
 * after receipt and are not in it).
 *
 * Sides (each measured run starts a fresh server and a fresh store; order rotated per rate):
 * - raw: bare node:http answering 202, then Promise.allSettled of the two POSTs (bench/serve/raw.ts);
 * - bullmq: node:http + BullMQ 6 `addBulk` (one job per target) + a Worker in the same process, on
 *   a private redis-server with AOF everysec (bench/durable/redis.ts, bench/serve/bullmq.ts);
 * - fanout: `node --import tsx src/bin.ts serve --config <file>` on SQLite (synchronous FULL, the
 *   default), workers in the same process;
 * - fanout-2p: the same SQLite file served by two processes, `fanout serve --api-only` and one
 *   `fanout worker` (delivery in a process of its own: what lets Fanout use a second core);
 * - fanout-pg: `fanout serve --api-only` + 2 `fanout worker` on a fresh database of the machine's
 *   PostgreSQL; pgboss: pg-boss 10 API process + 2 worker processes on the same server
 *   (bench/serve/pgboss.ts). Both on by default when 127.0.0.1:5432 answers (`--no-postgres`).
 *
 * Pinning (default; `--unpinned` turns it off): the server side (its processes, Redis, the
 * PostgreSQL backends of its database) on CPU 0, load generator and targets on CPU 1.
 *
 * `--ingest` adds a closed-loop ingest run (autocannon, `--ingest-connections` 50, in this process):
 * `fanout serve --api-only` on SQLite vs the BullMQ server without its worker vs bare node:http +
 * better-sqlite3 FULL (bench/server/baseline.ts). `--ingest-only` runs only that.
 *
 * Writes the "## Serve end to end" section of bench/RESULTS.md and .tmp/bench-serve.json (with
 * `--no-write`: only .tmp/bench-serve-trial.json). The JSON has every run's figures, including each
 * run's timeline of completed events per 100 ms.
 *
 * Run: npm run bench -- serve [--rates=500,1000,2000,4000] [--duration=20] [--warmup=3] [--reps=1]
 *      [--sides=raw,bullmq,fanout,fanout-2p,fanout-pg,pgboss] [--no-postgres] [--unpinned] [--concurrency=200]
 *      [--connections=256] [--max-in-flight=2000] [--drain=60] [--delay=20] [--pgboss-loops=10]
 *      [--pgboss-batch=100] [--ingest] [--ingest-only] [--ingest-duration=10] [--ingest-connections=50]
 *      [--no-write] [--keep-logs] [--profile=DIR] [--soak=MINUTES]
 *
 * Soak (`--soak=15 --rates=500 --sides=fanout`): one server, one rate, MINUTES long, offered in
 * one-minute windows back to back; per minute: delivered/s, added latency, server CPU and RSS
 * (sampled every 5 s). Writes "## Soak" of RESULTS.md: the RSS slope (least squares, MiB/min, over
 * the whole run and its second half) and p99 per minute.
 */
import type { ChildProcess } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as RedisServer from "./durable/redis.js"
import { writeSection } from "./lib/results.js"
import { fmt, machine, median } from "./lib/stats.js"
import * as Child from "./server/child.js"
import type { FromLoadgen, LoadResult, RunSpec } from "./serve/loadgen.js"
import * as Pg from "./serve/pg.js"
import * as Procs from "./serve/procs.js"
import type { FromTargets, Polled, TargetReport, ToTargets } from "./serve/targets.js"

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, "..")
const require = createRequire(import.meta.url)

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

type SideName = "raw" | "bullmq" | "fanout" | "fanout-2p" | "fanout-pg" | "pgboss"
const allSides: ReadonlyArray<SideName> = ["raw", "bullmq", "fanout", "fanout-2p", "fanout-pg", "pgboss"]

interface Options {
  readonly rates: ReadonlyArray<number>
  readonly duration: number
  readonly warmup: number
  readonly reps: number
  readonly sides: ReadonlyArray<SideName> | undefined
  readonly postgres: boolean | undefined
  readonly pinned: boolean
  readonly concurrency: number
  readonly connections: number
  readonly maxInFlight: number
  readonly drain: number | undefined
  readonly delay: number
  readonly pgbossLoops: number
  readonly pgbossBatch: number
  readonly ingest: boolean
  readonly open: boolean
  readonly ingestDuration: number
  readonly ingestConnections: number
  readonly write: boolean
  readonly keepLogs: boolean
  /** `--profile=DIR`: the Fanout processes run with `--cpu-prof --cpu-prof-dir=DIR`. */
  readonly profile: string | undefined
  /** `--soak=MINUTES`: one side (the first of `--sides`, default fanout) at the first rate of `--rates`, for that long. */
  readonly soak: number | undefined
}

const value = (args: ReadonlyArray<string>, name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)

const number = (args: ReadonlyArray<string>, name: string, fallback: number, min = 1): number => {
  const raw = value(args, name)
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${raw}`)
  return n
}

const parse = (args: ReadonlyArray<string>): Options => {
  const known = new Set([
    "rates",
    "duration",
    "warmup",
    "reps",
    "sides",
    "postgres",
    "no-postgres",
    "unpinned",
    "concurrency",
    "connections",
    "max-in-flight",
    "drain",
    "delay",
    "pgboss-loops",
    "pgboss-batch",
    "ingest",
    "ingest-only",
    "ingest-duration",
    "ingest-connections",
    "no-write",
    "keep-logs",
    "profile",
    "soak"
  ])
  for (const arg of args) {
    const name = arg.replace(/^--/, "").split("=")[0]!
    if (!arg.startsWith("--") || !known.has(name)) throw new Error(`serve: unknown option ${arg}`)
  }
  const rates = (value(args, "rates") ?? "500,1000,2000,4000").split(",").map((s) => Number(s.trim()))
  if (rates.some((r) => !Number.isFinite(r) || r <= 0 || r > 50_000)) {
    throw new Error(`--rates: positive numbers ≤ 50000, got ${value(args, "rates")}`)
  }
  const sidesArg = value(args, "sides")
  const sides = sidesArg?.split(",").map((s) => s.trim() as SideName)
  if (sides?.some((s) => !allSides.includes(s))) {
    throw new Error(`--sides: some of ${allSides.join(",")}, got ${sidesArg}`)
  }
  const drain = value(args, "drain")
  return {
    rates,
    duration: number(args, "duration", 20),
    warmup: number(args, "warmup", 3, 0),
    reps: Math.round(number(args, "reps", 1)),
    sides,
    postgres: args.includes("--no-postgres") ? false : args.includes("--postgres") ? true : undefined,
    pinned: !args.includes("--unpinned"),
    concurrency: Math.round(number(args, "concurrency", 200, 2)),
    connections: Math.round(number(args, "connections", 256)),
    maxInFlight: Math.round(number(args, "max-in-flight", 2000)),
    drain: drain === undefined ? undefined : number(args, "drain", 60),
    delay: number(args, "delay", 20, 0),
    pgbossLoops: Math.round(number(args, "pgboss-loops", 10)),
    pgbossBatch: Math.round(number(args, "pgboss-batch", 100)),
    ingest: args.includes("--ingest") || args.includes("--ingest-only"),
    open: !args.includes("--ingest-only"),
    ingestDuration: number(args, "ingest-duration", 10),
    ingestConnections: Math.round(number(args, "ingest-connections", 50)),
    write: !args.includes("--no-write"),
    keepLogs: args.includes("--keep-logs"),
    profile: value(args, "profile"),
    soak: value(args, "soak") === undefined ? undefined : number(args, "soak", 15)
  }
}

const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)

// ---------------------------------------------------------------------------------------------
// The two helper processes: targets and load generator (IPC, one request at a time)
// ---------------------------------------------------------------------------------------------

/** One message out, the next message of `tag` back (within `timeoutMs`). */
const ask = <M extends { _tag: string }>(
  child: ChildProcess,
  message: unknown,
  tag: M["_tag"],
  timeoutMs: number
): Promise<M> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off("message", onMessage)
      reject(new Error(`no ${tag} answer within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (m: M) => {
      if (m._tag !== tag) return
      clearTimeout(timer)
      child.off("message", onMessage)
      resolve(m)
    }
    child.on("message", onMessage)
    child.send(message as never)
  })

interface Helpers {
  readonly urlA: string
  readonly urlB: string
  readonly targets: Procs.Proc
  readonly loadgen: Procs.Proc
  readonly begin: (tag: string, n: number) => Promise<Polled>
  readonly expect: (unacked: ReadonlyArray<number>) => Promise<Polled>
  readonly poll: () => Promise<Polled>
  readonly report: (t0: number, tEnd: number) => Promise<TargetReport>
  readonly load: (spec: Omit<RunSpec, "_tag">) => Promise<LoadResult>
}

const startHelpers = async (dir: string, options: Options): Promise<Helpers> => {
  const cpu = options.pinned ? 1 : undefined
  const targets = Procs.start("targets", process.execPath, [
    "--import",
    "tsx",
    join(here, "serve", "targets.ts"),
    `--delay=${options.delay}`
  ], {
    cpu,
    log: join(dir, "targets.log"),
    ipc: true
  })
  const loadgen = Procs.start("loadgen", process.execPath, ["--import", "tsx", join(here, "serve", "loadgen.ts")], {
    cpu,
    log: join(dir, "loadgen.log"),
    ipc: true
  })
  const waitFor = <M>(proc: Procs.Proc, tag: string) =>
    new Promise<M>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${proc.name} not ready in 60 s: ${Procs.tail(proc.log)}`)),
        60_000
      )
      proc.child.on("message", (m: { _tag: string }) => {
        if (m._tag === tag) {
          clearTimeout(timer)
          resolve(m as M)
        }
      })
      void proc.exited.then((how) => reject(new Error(`${proc.name} exited (${how}): ${Procs.tail(proc.log)}`)))
    })
  const [ready] = await Promise.all([
    waitFor<Extract<FromTargets, { _tag: "ready" }>>(targets, "ready"),
    waitFor<FromLoadgen>(loadgen, "ready")
  ])
  const polled = (m: Extract<FromTargets, { _tag: "polled" }>) => m.polled
  return {
    urlA: `http://127.0.0.1:${ready.portA}`,
    urlB: `http://127.0.0.1:${ready.portB}`,
    targets,
    loadgen,
    begin: (tag, n) =>
      ask<Extract<FromTargets, { _tag: "polled" }>>(
        targets.child,
        { _tag: "begin", tag, n } satisfies ToTargets,
        "polled",
        30_000
      ).then(polled),
    expect: (unacked) =>
      ask<Extract<FromTargets, { _tag: "polled" }>>(
        targets.child,
        { _tag: "expect", unacked } satisfies ToTargets,
        "polled",
        30_000
      ).then(polled),
    poll: () =>
      ask<Extract<FromTargets, { _tag: "polled" }>>(
        targets.child,
        { _tag: "poll" } satisfies ToTargets,
        "polled",
        30_000
      ).then(polled),
    report: (t0, tEnd) =>
      ask<Extract<FromTargets, { _tag: "report" }>>(
        targets.child,
        { _tag: "report", t0, tEnd } satisfies ToTargets,
        "report",
        60_000
      ).then((m) => m.report),
    load: (spec) =>
      ask<Extract<FromLoadgen, { _tag: "result" }>>(
        loadgen.child,
        { _tag: "run", ...spec } satisfies RunSpec,
        "result",
        spec.seconds * 1000 + spec.answerTimeoutMs + 30_000
      ).then((m) => m.result)
  }
}

// ---------------------------------------------------------------------------------------------
// The sides: starting a fresh server (and store) for one measured run
// ---------------------------------------------------------------------------------------------

interface Running {
  readonly url: string
  /** Process groups of the server side, and single pids (Redis). */
  readonly pgids: ReadonlyArray<number>
  readonly pids: ReadonlyArray<number>
  /** The PostgreSQL database of the run, if any (its backends count as the side's CPU). */
  readonly database?: string
  readonly logs: ReadonlyArray<string>
  readonly stop: () => Promise<void>
  /** After the run: what the server says about itself (its /stats or /readyz). */
  readonly stats: () => Promise<unknown>
}

const durabilityOf: Record<SideName, string> = {
  raw: "none: 202 before anything is stored or sent; a crash loses what is in memory; no retry",
  bullmq: "Redis AOF everysec: up to ~1 s of acknowledged jobs lost on a crash of Redis or the machine",
  fanout: "SQLite WAL, synchronous=FULL (the default): fsync'd before the 202",
  "fanout-2p": "SQLite WAL, synchronous=FULL (the default): fsync'd before the 202",
  "fanout-pg": "PostgreSQL commit before the 202",
  pgboss: "PostgreSQL commit of both jobs before the 202"
}

const labelOf: Record<SideName, string> = {
  raw: "A raw node:http + undici",
  bullmq: "B BullMQ 6 + Redis 7",
  fanout: "C fanout serve, SQLite",
  "fanout-2p": "C2 fanout serve --api-only + 1 worker, SQLite",
  "fanout-pg": "D fanout serve --api-only + 2 workers, PostgreSQL",
  pgboss: "E pg-boss 10, API + 2 workers"
}

/** The label without its letter ("C2 fanout serve …" → "fanout serve …"). */
const plainLabel = (side: SideName): string => labelOf[side].replace(/^[A-Z]\d? /, "")

const childEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("FANOUT_") && !k.startsWith("OTEL_")) env[k] = v
  return env
}

let runCounter = 0

const fanoutConfig = (file: string, port: number, store: unknown, helpers: Helpers, options: Options) =>
  writeFileSync(
    file,
    JSON.stringify(
      {
        server: { host: "127.0.0.1", port },
        store,
        targets: {
          a: { url: `${helpers.urlA}/a`, concurrency: options.concurrency },
          b: { url: `${helpers.urlB}/b`, concurrency: options.concurrency }
        },
        routes: { "order.*": ["a", "b"] }
      },
      null,
      2
    )
  )

let profileDir: string | undefined
/** `FANOUT_BENCH_NODE_ARGS`: extra Node flags for the Fanout processes (space-separated), for A/B runs. */
const extraNodeArgs = (process.env.FANOUT_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "")
const fanoutArgs = (...args: ReadonlyArray<string>) => [
  ...(profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDir}`]),
  ...extraNodeArgs,
  "--import",
  "tsx",
  join(root, "src", "bin.ts"),
  ...args
]

const waitHttp = async (url: string, procs: ReadonlyArray<Procs.Proc>, what: string) => {
  const ok = await Procs.until(() => Procs.answers(url), 90_000, 200, () => Procs.exitedOf(procs))
  if (!ok) {
    throw new Error(`${what} did not answer ${url} within 90 s:\n${procs.map((p) => Procs.tail(p.log)).join("\n")}`)
  }
}

const waitLog = async (proc: Procs.Proc, text: string) => {
  const ok = await Procs.until(
    () => readFileSync(proc.log, "utf8").includes(text),
    90_000,
    200,
    () => Procs.exitedOf([proc])
  )
  if (!ok) throw new Error(`${proc.name} did not log "${text}" within 90 s:\n${Procs.tail(proc.log)}`)
}

const stopAll = async (procs: ReadonlyArray<Procs.Proc>) => {
  await Promise.all(procs.map((p) => p.stop()))
}

const startSide = async (
  side: SideName,
  helpers: Helpers,
  options: Options,
  dir: string,
  mode: { readonly workers: boolean } = { workers: true }
): Promise<Running> => {
  const k = ++runCounter
  const runDir = join(dir, `${k}-${side}`)
  mkdirSync(runDir, { recursive: true })
  const cpu = options.pinned ? 0 : undefined
  const env = childEnv()
  const port = await Procs.freePort()
  const url = `http://127.0.0.1:${port}`
  const node = process.execPath
  const getJson = async (path: string) => {
    const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) })
    return response.json() as Promise<unknown>
  }

  if (side === "raw") {
    const p = Procs.start("raw", node, [
      "--import",
      "tsx",
      join(here, "serve", "raw.ts"),
      String(port),
      helpers.urlA,
      helpers.urlB
    ], {
      cpu,
      env,
      log: join(runDir, "raw.log")
    })
    await waitHttp(`${url}/healthz`, [p], "raw")
    return { url, pgids: [p.pid], pids: [], logs: [p.log], stop: () => stopAll([p]), stats: () => getJson("/stats") }
  }

  if (side === "bullmq") {
    const redisPort = await Procs.freePort()
    const redis = await RedisServer.start(redisPort, runDir)
    Procs.track(redis.pid)
    if (cpu !== undefined) Procs.pinAll(redis.pid, cpu)
    const args = [
      join(here, "serve", "bullmq.ts"),
      String(port),
      String(redisPort),
      helpers.urlA,
      helpers.urlB,
      String(options.concurrency)
    ]
    const p = Procs.start("bullmq", node, ["--import", "tsx", ...args, ...(mode.workers ? [] : ["--no-worker"])], {
      cpu,
      env,
      log: join(runDir, "bullmq.log")
    })
    try {
      await waitHttp(`${url}/healthz`, [p], "bullmq")
    } catch (error) {
      await p.stop()
      await redis.stop()
      throw error
    }
    return {
      url,
      pgids: [p.pid],
      pids: [redis.pid],
      logs: [p.log],
      stop: async () => {
        await p.stop()
        await redis.stop()
        Procs.untrack(redis.pid)
      },
      stats: () => getJson("/stats")
    }
  }

  if (side === "fanout") {
    const config = join(runDir, "fanout.config.json")
    fanoutConfig(config, port, { sqlite: join(runDir, "fanout.db") }, helpers, options)
    const args = mode.workers
      ? fanoutArgs("serve", "--config", config, "--concurrency", String(options.concurrency))
      : fanoutArgs("serve", "--api-only", "--config", config)
    const p = Procs.start("fanout", node, args, { cpu, env, log: join(runDir, "fanout.log") })
    await waitHttp(`${url}/readyz`, [p], "fanout serve")
    return { url, pgids: [p.pid], pids: [], logs: [p.log], stop: () => stopAll([p]), stats: () => getJson("/readyz") }
  }

  if (side === "fanout-2p") {
    const config = join(runDir, "fanout.config.json")
    fanoutConfig(config, port, { sqlite: join(runDir, "fanout.db") }, helpers, options)
    const api = Procs.start("fanout-api", node, fanoutArgs("serve", "--api-only", "--config", config), {
      cpu,
      env,
      log: join(runDir, "api.log")
    })
    const procs = [api]
    try {
      await waitHttp(`${url}/readyz`, [api], "fanout serve --api-only")
      if (mode.workers) {
        const worker = Procs.start(
          "fanout-worker",
          node,
          fanoutArgs("worker", "--config", config, "--concurrency", String(options.concurrency)),
          {
            cpu,
            env,
            log: join(runDir, "worker.log")
          }
        )
        procs.push(worker)
        await waitLog(worker, "fanout: workers running")
      }
    } catch (error) {
      await stopAll(procs)
      throw error
    }
    return {
      url,
      pgids: procs.map((p) => p.pid),
      pids: [],
      logs: procs.map((p) => p.log),
      stop: () => stopAll(procs),
      stats: () => getJson("/readyz")
    }
  }

  // PostgreSQL sides: a fresh database of the run's own.
  const database = `bench_serve_${process.pid}_${k}`
  const dbUrl = await Pg.createDatabase(database)
  const forget = Procs.onSignal(() => Pg.dropDatabase(database))
  const procs: Array<Procs.Proc> = []
  const cleanup = async () => {
    await stopAll(procs)
    await Pg.dropDatabase(database).catch((e) => log(`drop ${database}: ${String(e)}`))
    forget()
  }
  try {
    if (side === "fanout-pg") {
      const config = join(runDir, "fanout.config.json")
      fanoutConfig(config, port, { postgres: dbUrl }, helpers, options)
      const api = Procs.start("fanout-api", node, fanoutArgs("serve", "--api-only", "--config", config), {
        cpu,
        env,
        log: join(runDir, "api.log")
      })
      procs.push(api)
      await waitHttp(`${url}/readyz`, [api], "fanout serve --api-only")
      if (mode.workers) {
        const each = String(Math.max(1, Math.round(options.concurrency / 2)))
        for (const i of [1, 2]) {
          procs.push(
            Procs.start(`fanout-worker-${i}`, node, fanoutArgs("worker", "--config", config, "--concurrency", each), {
              cpu,
              env,
              log: join(runDir, `worker-${i}.log`)
            })
          )
        }
        for (const w of procs.slice(1)) await waitLog(w, "fanout: workers running")
      }
      return {
        url,
        pgids: procs.map((p) => p.pid),
        pids: [],
        database,
        logs: procs.map((p) => p.log),
        stop: cleanup,
        stats: () => getJson("/readyz")
      }
    }
    const script = join(here, "serve", "pgboss.ts")
    const api = Procs.start("pgboss-api", node, ["--import", "tsx", script, "api", String(port), dbUrl], {
      cpu,
      env,
      log: join(runDir, "api.log")
    })
    procs.push(api)
    await waitHttp(`${url}/healthz`, [api], "pg-boss api")
    if (mode.workers) {
      for (const i of [1, 2]) {
        procs.push(
          Procs.start(
            `pgboss-worker-${i}`,
            node,
            [
              "--import",
              "tsx",
              script,
              "worker",
              dbUrl,
              helpers.urlA,
              helpers.urlB,
              String(options.pgbossLoops),
              String(options.pgbossBatch)
            ],
            { cpu, env, log: join(runDir, `worker-${i}.log`) }
          )
        )
      }
      for (const w of procs.slice(1)) await waitLog(w, "pg-boss worker: ready")
    }
    return {
      url,
      pgids: procs.map((p) => p.pid),
      pids: [],
      database,
      logs: procs.map((p) => p.log),
      stop: cleanup,
      stats: () => getJson("/stats")
    }
  } catch (error) {
    await cleanup()
    throw error
  }
}

/** CPU so far of the side's processes (and its PostgreSQL backends), by pid. */
const sampleCpu = async (running: Running): Promise<Map<number, number>> => {
  const backends = running.database !== undefined ? await Pg.backends(running.database).catch(() => []) : []
  return Procs.cpuMsOf(running.pgids, [...running.pids, ...backends])
}

const pinBackends = async (running: Running, options: Options): Promise<number> => {
  if (!options.pinned || running.database === undefined) return 0
  const pids = await Pg.backends(running.database).catch(() => [])
  return pids.filter((pid) => Procs.pinAll(pid, 0)).length
}

/** Log lines at level ERROR or FATAL (Fanout's JSON logs) or with "Error" (the others). */
const logProblems = (files: ReadonlyArray<string>): Array<string> => {
  const out: Array<string> = []
  for (const file of files) {
    let text = ""
    try {
      text = readFileSync(file, "utf8")
    } catch {
      continue
    }
    for (const line of text.split("\n")) {
      if (/"logLevel":"(ERROR|FATAL)"|^\s*(Error|TypeError|RangeError)\b|pg-boss: |Unhandled/.test(line)) {
        out.push(line.slice(0, 300))
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// One open-loop run
// ---------------------------------------------------------------------------------------------

interface OpenRun {
  readonly side: SideName
  readonly rate: number
  readonly rep: number
  readonly offered: number
  readonly load: Omit<LoadResult, "unacked"> & { readonly unackedCount: number }
  readonly targets: TargetReport
  readonly ackedPerSecond: number
  readonly deliveredPerSecond: number
  /** Events delivered (both targets) ÷ (window + time until the last was delivered): the rate sustained, backlog included. */
  readonly sustainedPerSecond: number
  readonly backlogAtEnd: number
  /** Acknowledged events not received by both targets when the drain wait ended. */
  readonly shortfall: number
  readonly drainedWithin1s: boolean
  /** ms after the end of the window when the last acknowledged event was delivered (if all were). */
  readonly drainMs: number | undefined
  readonly keepsUp: boolean
  readonly serverCpuMs: number
  readonly serverCpuMsPer1k: number
  readonly pinnedBackends: number
  readonly warmupOk: boolean
  readonly problems: ReadonlyArray<string>
  readonly stats: unknown
}

const drainWait = async (helpers: Helpers, maxMs: number): Promise<Polled> => {
  const deadline = Date.now() + maxMs
  let last = await helpers.poll()
  let lastChange = Date.now()
  while (last.ackedMissing > 0 && Date.now() < deadline && Date.now() - lastChange < 15_000) {
    await Procs.sleep(200)
    const next = await helpers.poll()
    if (next.both !== last.both) lastChange = Date.now()
    last = next
  }
  return last
}

/** What the load generator is told about the server under test. */
const loadSpec = (running: Running, options: Options) => ({
  url: running.url,
  connections: options.connections,
  maxInFlight: options.maxInFlight,
  lateMs: 5,
  answerTimeoutMs: 30_000
})

/** Warm-up (JIT, connections, the store's first pages), not measured: at ≤ 300/s for `--warmup` s. Whether all of it was acknowledged and delivered. */
const warmUp = async (running: Running, rate: number, helpers: Helpers, options: Options): Promise<boolean> => {
  if (options.warmup <= 0) return true
  const tag = `w${runCounter}`
  const warmRate = Math.min(rate, 300)
  await helpers.begin(tag, Math.max(1, Math.round(warmRate * options.warmup)))
  const warm = await helpers.load({ ...loadSpec(running, options), tag, rate: warmRate, seconds: options.warmup })
  await helpers.expect(warm.unacked)
  const drained = await drainWait(helpers, 30_000)
  const ok = warm.acked === warm.offered && drained.ackedMissing === 0
  if (!ok) {
    log(
      `  warm-up: ${warm.acked}/${warm.offered} acked (${JSON.stringify(warm.statuses)}, errors ${warm.errors}: ${
        warm.errorSample.join(", ")
      }), ${drained.ackedMissing} not delivered`
    )
  }
  return ok
}

const openRun = async (
  side: SideName,
  rate: number,
  rep: number,
  helpers: Helpers,
  options: Options,
  dir: string
): Promise<OpenRun> => {
  const running = await startSide(side, helpers, options, dir)
  try {
    const spec = loadSpec(running, options)
    const warmupOk = await warmUp(running, rate, helpers, options)
    const pinnedBackends = await pinBackends(running, options)
    const tag = `r${runCounter}`
    const n = Math.max(1, Math.round(rate * options.duration))
    await helpers.begin(tag, n)
    const cpu0 = await sampleCpu(running)
    const load = await helpers.load({ ...spec, tag, rate, seconds: options.duration })
    await helpers.expect(load.unacked)
    const drainMax = (options.drain ?? Math.max(10, 3 * options.duration)) * 1000
    const drained = await drainWait(helpers, drainMax)
    const cpu1 = await sampleCpu(running)
    const report = await helpers.report(load.t0, load.tEnd)
    const stats = await running.stats().catch((e) => String(e))
    const serverCpuMs = Procs.cpuDelta(cpu0, cpu1)
    const deliveredPerSecond = report.deliveredByEnd / options.duration
    const shortfall = drained.ackedMissing
    const lastAfter = report.lastCompletionAfterEndMs
    const drainedWithin1s = shortfall === 0 && (lastAfter === undefined || lastAfter <= 1000)
    const { unacked, ...loadRest } = load
    return {
      side,
      rate,
      rep,
      offered: n,
      load: { ...loadRest, unackedCount: unacked.length },
      targets: report,
      ackedPerSecond: load.acked / options.duration,
      deliveredPerSecond,
      sustainedPerSecond: report.both / ((options.duration * 1000 + Math.max(0, lastAfter ?? 0)) / 1000),
      backlogAtEnd: n - report.deliveredByEnd,
      shortfall,
      drainedWithin1s,
      drainMs: shortfall === 0 ? Math.max(0, lastAfter ?? 0) : undefined,
      keepsUp: deliveredPerSecond >= 0.98 * rate && drainedWithin1s,
      serverCpuMs,
      serverCpuMsPer1k: report.both > 0 ? serverCpuMs / (report.both / 1000) : Number.NaN,
      pinnedBackends,
      warmupOk,
      problems: logProblems(running.logs).slice(0, 20),
      stats
    }
  } finally {
    await running.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Ingest (closed loop)
// ---------------------------------------------------------------------------------------------

interface AutocannonResult {
  readonly duration: number
  readonly errors: number
  readonly timeouts: number
  readonly non2xx: number
  readonly "2xx": number
  readonly latency: { readonly p50: number; readonly p99: number }
}
// autocannon ships no types.
const autocannon = require("autocannon") as (options: Record<string, unknown>) => Promise<AutocannonResult>

const ingestBody = JSON.stringify({
  type: "order.placed",
  key: "customer-42",
  payload: { orderId: "o-123", sku: "sku-9", qty: 2, email: "someone@example.com" }
})

const cannon = (url: string, connections: number, duration: number) =>
  autocannon({
    url: `${url}/v1/events`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: ingestBody,
    connections,
    duration,
    pipelining: 1
  })

type IngestSide = "baseline" | "bullmq" | "fanout"

interface IngestRun {
  readonly side: IngestSide
  readonly rep: number
  readonly ackedPerSecond: number
  readonly acked: number
  readonly non2xx: number
  readonly errors: number
  readonly p50: number
  readonly p99: number
  readonly cpuUsPerRequest: number
  /** Events the store holds afterwards, counted from the store, minus those of the warm-up. */
  readonly stored: number | undefined
}

const countSqliteEvents = (file: string): number => {
  const Database = require("better-sqlite3") as new(file: string, options: { readonly: boolean }) => {
    prepare: (sql: string) => { get: () => unknown }
    close: () => void
  }
  const db = new Database(file, { readonly: true })
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM fanout_events").get() as { n: number }).n
  } finally {
    db.close()
  }
}

const ingestRun = async (
  side: IngestSide,
  rep: number,
  helpers: Helpers,
  options: Options,
  dir: string
): Promise<IngestRun> => {
  const warm = Math.min(3, Math.max(1, options.warmup))
  if (side === "baseline") {
    const file = join(dir, `baseline-${rep}.db`)
    const server = await Child.start(join(here, "server", "baseline.ts"), [file])
    Procs.track(server.pid)
    try {
      if (options.pinned) Procs.pinAll(server.pid, 0)
      await cannon(server.url, options.ingestConnections, warm)
      const before = (await server.stored()).events
      const cpu0 = Procs.cpuMsOf([], [server.pid])
      const result = await cannon(server.url, options.ingestConnections, options.ingestDuration)
      const cpu = Procs.cpuDelta(cpu0, Procs.cpuMsOf([], [server.pid]))
      const after = (await server.stored()).events
      return ingestRow(side, rep, result, cpu, after - before)
    } finally {
      await server.stop()
      Procs.untrack(server.pid)
    }
  }
  // BullMQ without its worker (Fanout: ingestWithWarm).
  const running = await startSide("bullmq", helpers, options, dir, { workers: false })
  try {
    await cannon(running.url, options.ingestConnections, warm)
    const before = await bullmqWaiting(running)
    const cpu0 = await sampleCpu(running)
    const result = await cannon(running.url, options.ingestConnections, options.ingestDuration)
    const cpu = Procs.cpuDelta(cpu0, await sampleCpu(running))
    const after = await bullmqWaiting(running)
    return ingestRow(
      side,
      rep,
      result,
      cpu,
      before !== undefined && after !== undefined ? (after - before) / 2 : undefined
    )
  } finally {
    await running.stop()
  }
}

const bullmqWaiting = async (running: Running): Promise<number | undefined> => {
  const stats = (await running.stats()) as { jobs?: { waiting?: number } }
  return stats.jobs?.waiting
}

const ingestRow = (
  side: IngestSide,
  rep: number,
  r: AutocannonResult,
  cpuMs: number,
  stored: number | undefined
): IngestRun => ({
  side,
  rep,
  acked: r["2xx"],
  ackedPerSecond: r["2xx"] / r.duration,
  non2xx: r.non2xx,
  errors: r.errors + r.timeouts,
  p50: r.latency.p50,
  p99: r.latency.p99,
  cpuUsPerRequest: r["2xx"] > 0 ? (cpuMs * 1000) / r["2xx"] : Number.NaN,
  stored
})

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const f0 = (x: number | undefined) => (typeof x !== "number" || Number.isNaN(x) ? "–" : fmt(x))
const f1 = (x: number | undefined) => (typeof x !== "number" || Number.isNaN(x) ? "–" : fmt(x, 1))
const f2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "–" : fmt(x, 2))

const med = (runs: ReadonlyArray<OpenRun>, f: (r: OpenRun) => number) => median(runs.map(f))

const openTable = (
  runs: ReadonlyArray<OpenRun>,
  sides: ReadonlyArray<SideName>,
  rates: ReadonlyArray<number>
): Array<string> => {
  const lines = [
    `| side | offered/s | acked/s | delivered/s | delivered/s incl. drain | added latency p50 / p99 / max ms | ack p99 ms | non-2xx + errors + dropped | late sends | backlog at end | drained after end | keeps up | server CPU ms / 1k events |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|`
  ]
  for (const rate of rates) {
    for (const side of sides) {
      const rs = runs.filter((r) => r.side === side && r.rate === rate)
      if (rs.length === 0) continue
      const shortfall = rs.reduce((n, r) => n + r.shortfall, 0)
      const drained = rs.every((r) => r.drainMs !== undefined)
        ? `${f2(med(rs, (r) => r.drainMs!) / 1000)} s`
        : `**no: ${fmt(shortfall)} acked not delivered**`
      const keeps = rs.filter((r) => r.keepsUp).length
      lines.push(
        `| ${labelOf[side]} | ${fmt(rate)} | ${f0(med(rs, (r) => r.ackedPerSecond))} | ${
          f0(med(rs, (r) => r.deliveredPerSecond))
        } | ${f0(med(rs, (r) => r.sustainedPerSecond))} | ${f1(med(rs, (r) => r.targets.latency.p50))} / ${
          f1(med(rs, (r) => r.targets.latency.p99))
        } / ${f1(med(rs, (r) => r.targets.latency.max))} | ${f1(med(rs, (r) => r.load.ack.p99))} | ${
          fmt(rs.reduce((n, r) => n + r.load.non2xx + r.load.errors + r.load.dropped, 0))
        } | ${fmt(rs.reduce((n, r) => n + r.load.late, 0))} | ${f0(med(rs, (r) => r.backlogAtEnd))} | ${drained} | ${
          rs.length === 1 ? (keeps === 1 ? "yes" : "no") : `${keeps}/${rs.length}`
        } | ${f0(med(rs, (r) => r.serverCpuMsPer1k))} |`
      )
    }
  }
  return lines
}

// ---------------------------------------------------------------------------------------------
// Soak: one server, one rate, minutes long
// ---------------------------------------------------------------------------------------------

interface SoakMinute {
  readonly minute: number
  readonly offered: number
  readonly acked: number
  readonly delivered: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly cpuMsPer1k: number
  readonly rssMb: number
  readonly problems: number
}

/** Least-squares slope of y over x. */
const slope = (points: ReadonlyArray<readonly [number, number]>): number => {
  const n = points.length
  if (n < 2) return Number.NaN
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  let num = 0
  let den = 0
  for (const [x, y] of points) {
    num += (x - mx) * (y - my)
    den += (x - mx) ** 2
  }
  return den === 0 ? Number.NaN : num / den
}

const soakRun = async (options: Options, dir: string, side: SideName, rate: number) => {
  const helpers = await startHelpers(dir, options)
  const running = await startSide(side, helpers, options, dir)
  const minutes: Array<SoakMinute> = []
  const rss: Array<readonly [number, number]> = []
  const t0 = Date.now()
  const sampler = setInterval(() => rss.push([(Date.now() - t0) / 60_000, Procs.rssMbOf(running.pgids)]), 5_000)
  try {
    const spec = loadSpec(running, options)
    // The same warm-up as the open-loop runs, then the minutes.
    await warmUp(running, rate, helpers, options)
    rss.push([(Date.now() - t0) / 60_000, Procs.rssMbOf(running.pgids)])
    for (let m = 1; m <= options.soak!; m++) {
      const tag = `soak-${m}`
      const n = rate * 60
      await helpers.begin(tag, n)
      const cpu0 = await sampleCpu(running)
      const load = await helpers.load({ ...spec, tag, rate, seconds: 60 })
      await helpers.expect(load.unacked)
      const drained = await drainWait(helpers, 30_000)
      const cpu1 = await sampleCpu(running)
      const report = await helpers.report(load.t0, load.tEnd)
      const minute: SoakMinute = {
        minute: m,
        offered: n,
        acked: load.acked,
        delivered: report.both,
        p50: report.latency.p50,
        p99: report.latency.p99,
        max: report.latency.max,
        cpuMsPer1k: report.both > 0 ? Procs.cpuDelta(cpu0, cpu1) / (report.both / 1000) : Number.NaN,
        rssMb: Procs.rssMbOf(running.pgids),
        problems: drained.ackedMissing
      }
      minutes.push(minute)
      log(
        `  minute ${m}: acked ${fmt(load.acked)}, delivered ${fmt(report.both)}, added p50 ${f1(minute.p50)} p99 ${
          f1(minute.p99)
        } max ${f1(minute.max)} ms, CPU ${f0(minute.cpuMsPer1k)} ms/1k, RSS ${f1(minute.rssMb)} MiB`
      )
    }
  } finally {
    clearInterval(sampler)
    await running.stop()
    await helpers.targets.stop()
    await helpers.loadgen.stop()
  }
  return { minutes, rss, problems: logProblems(running.logs) }
}

const soakMain = async (options: Options, dir: string, described: string, loadStart: string, started: number) => {
  const side = options.sides?.[0] ?? "fanout"
  const rate = options.rates[0]!
  log(`soak: ${labelOf[side]} at ${rate}/s for ${options.soak} min; ${options.pinned ? "pinned" : "unpinned"}`)
  const { minutes, rss, problems } = await soakRun(options, dir, side, rate)
  const all = slope(rss)
  const half = slope(rss.filter(([x]) => x >= (options.soak! / 2)))
  const p99s = minutes.map((m) => m.p99)
  const firstFive = median(p99s.slice(0, 5))
  const lastFive = median(p99s.slice(-5))
  const lost = minutes.reduce((n, m) => n + m.problems, 0)
  const lines = [
    `## Soak`,
    ``,
    `\`npm run bench -- serve ${process.argv.slice(3).join(" ")}\` (${new Date().toISOString().slice(0, 10)}; took ${
      ((Date.now() - started) / 60_000).toFixed(1)
    } min): ${labelOf[side]}, ${
      fmt(rate)
    } events/s offered for ${options.soak} one-minute windows back to back on one server and one store, each event to two targets answering after ${options.delay} ms. Durability: ${
      durabilityOf[side]
    }.`,
    ``,
    `${described}, load average at the start ${loadStart}, at the end ${
      loadavg().map((x) => x.toFixed(2)).join(" ")
    }. ${
      options.pinned ? "Server pinned to CPU 0, load generator and targets to CPU 1." : "Unpinned."
    } RSS: VmRSS of the server's processes, sampled every 5 s.`,
    ``,
    `| result | value |`,
    `|---|---:|`,
    `| RSS slope, whole run | ${f2(all)} MiB/min |`,
    `| RSS slope, second half | ${f2(half)} MiB/min |`,
    `| RSS at the start → end | ${f1(rss[0]?.[1])} → ${f1(rss[rss.length - 1]?.[1])} MiB |`,
    `| added latency p99, median of the first 5 minutes → of the last 5 | ${f1(firstFive)} → ${f1(lastFive)} ms |`,
    `| acknowledged events not delivered when a minute's drain wait ended | ${fmt(lost)} |`,
    ``,
    `| minute | offered | acked | delivered | added p50 / p99 / max ms | server CPU ms / 1k events | RSS MiB |`,
    `|---:|---:|---:|---:|---:|---:|---:|`,
    ...minutes.map((m) =>
      `| ${m.minute} | ${fmt(m.offered)} | ${fmt(m.acked)} | ${fmt(m.delivered)} | ${f1(m.p50)} / ${f1(m.p99)} / ${
        f1(m.max)
      } | ${f0(m.cpuMsPer1k)} | ${f1(m.rssMb)} |`
    ),
    ``,
    problems.length > 0
      ? `Log lines at ERROR or worse: ${problems.length} (first: \`${problems[0]}\`).`
      : `No log line at ERROR or worse.`,
    ``
  ]
  const section = lines.join("\n")
  writeFileSync(join(root, ".tmp", "bench-soak.json"), JSON.stringify({ minutes, rss }, null, 2))
  if (options.write) {
    writeSection("Soak", section)
    log(`wrote bench/RESULTS.md (## Soak) and .tmp/bench-soak.json`)
  } else process.stdout.write(section + "\n")
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const options = parse(args)
  profileDir = options.profile
  Procs.installCleanup()
  const started = Date.now()
  const described = machine()
  const loadStart = loadavg().map((x) => x.toFixed(2)).join(" ")
  const dir = mkdtempSync(join(tmpdir(), "fanout-bench-serve-"))
  Procs.onSignal(async () => rmSync(dir, { recursive: true, force: true }))
  if (options.pinned && !Procs.pinAll(process.pid, 1)) {
    log("cannot pin this process (taskset missing?): running unpinned")
  }
  const pgUp = options.postgres !== false && (await Pg.available())
  if (options.postgres === true && !pgUp) throw new Error(`--postgres: ${Pg.adminUrl} does not answer`)
  if (pgUp) {
    const stale = await Pg.dropStale()
    if (stale.length > 0) log(`dropped stale databases: ${stale.join(", ")}`)
  }
  if (options.soak !== undefined) {
    mkdirSync(join(root, ".tmp"), { recursive: true })
    try {
      await soakMain(options, dir, described, loadStart, started)
    } finally {
      if (!options.keepLogs) rmSync(dir, { recursive: true, force: true })
    }
    return
  }
  const sides = (options.sides ?? allSides).filter((s) => pgUp || (s !== "fanout-pg" && s !== "pgboss"))
  const pgInfo = pgUp ? await Pg.describe() : "PostgreSQL: not used"
  log(
    `serve bench: sides ${sides.join(", ")}; rates ${options.rates.join(", ")}/s × ${options.duration} s; ${
      options.pinned ? "pinned" : "unpinned"
    }; logs in ${dir}`
  )

  const runs: Array<OpenRun> = []
  const failed: Array<{ readonly what: string; readonly error: string }> = []
  const ingest: Array<IngestRun> = []
  let helpers: Helpers | undefined
  try {
    helpers = await startHelpers(dir, options)
    if (options.open) {
      for (let rep = 0; rep < options.reps; rep++) {
        for (const [ri, rate] of options.rates.entries()) {
          const order = sides.map((_, i) => sides[(i + ri + rep) % sides.length]!)
          for (const side of order) {
            log(`rep ${rep + 1} rate ${rate}/s: ${side}`)
            let run: OpenRun
            try {
              run = await openRun(side, rate, rep, helpers, options, dir)
            } catch (error) {
              const message = error instanceof Error ? error.message : String(error)
              log(`  FAILED: ${message}`)
              failed.push({ what: `${labelOf[side]} at ${fmt(rate)}/s (rep ${rep + 1})`, error: message })
              continue
            }
            runs.push(run)
            log(
              `  acked ${fmt(run.ackedPerSecond)}/s, delivered ${fmt(run.deliveredPerSecond)}/s, added p50 ${
                f1(run.targets.latency.p50)
              } p99 ${f1(run.targets.latency.p99)} max ${
                f1(run.targets.latency.max)
              } ms, non-2xx ${run.load.non2xx}, errors ${run.load.errors}, dropped ${run.load.dropped}, late ${run.load.late}, backlog ${
                fmt(run.backlogAtEnd)
              }, shortfall ${run.shortfall}, drain ${
                run.drainMs === undefined ? "no" : `${fmt(run.drainMs)} ms`
              }, CPU ${f0(run.serverCpuMsPer1k)} ms/1k${
                run.problems.length > 0 ? `, ${run.problems.length} log problems` : ""
              }`
            )
          }
        }
      }
    }
    if (options.ingest) {
      const ingestSides: ReadonlyArray<IngestSide> = ["baseline", "bullmq", "fanout"]
      const reps = Math.max(options.reps, 2)
      for (let rep = 0; rep < reps; rep++) {
        for (const [i] of ingestSides.entries()) {
          const side = ingestSides[(i + rep) % ingestSides.length]!
          log(`ingest rep ${rep + 1}: ${side}`)
          let run: IngestRun
          try {
            run = await ingestWithWarm(side, rep, helpers, options, dir)
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error)
            log(`  FAILED: ${message}`)
            failed.push({ what: `ingest ${side} (rep ${rep + 1})`, error: message })
            continue
          }
          ingest.push(run)
          log(
            `  ${fmt(run.ackedPerSecond)} acks/s, p50 ${run.p50} p99 ${run.p99} ms, ${
              f0(run.cpuUsPerRequest)
            } µs CPU/request, stored ${run.stored ?? "?"}`
          )
        }
      }
    }
  } finally {
    await helpers?.targets.stop(2_000)
    await helpers?.loadgen.stop(2_000)
  }
  const minutes = (Date.now() - started) / 60_000
  const loadEnd = loadavg().map((x) => x.toFixed(2)).join(" ")

  // ---- markdown ----
  const command = `npm run bench -- serve${args.length > 0 ? ` ${args.join(" ")}` : ""}`
  const date = new Date().toISOString().slice(0, 10)
  const top = Math.max(...options.rates)
  const ceiling = (side: SideName) => {
    const rs = runs.filter((r) => r.side === side && r.rate === top)
    return rs.length > 0 ? med(rs, (r) => r.deliveredPerSecond) : Number.NaN
  }
  const sustained = (side: SideName) => {
    const rs = runs.filter((r) => r.side === side && r.rate === top)
    return rs.length > 0 ? med(rs, (r) => r.sustainedPerSecond) : Number.NaN
  }
  const keptUpTo = (side: SideName) => {
    const ok = options.rates.filter((rate) => {
      const rs = runs.filter((r) => r.side === side && r.rate === rate)
      return rs.length > 0 && rs.every((r) => r.keepsUp)
    })
    return ok.length > 0 ? Math.max(...ok) : undefined
  }
  const low = Math.min(...options.rates)
  const cpuAt = (side: SideName) => {
    const rs = runs.filter((r) => r.side === side && r.rate === low)
    return rs.length > 0 ? med(rs, (r) => r.serverCpuMsPer1k) : Number.NaN
  }
  const has = (s: SideName) => runs.some((r) => r.side === s)
  const ratio = (a: SideName, b: SideName, what: string, f: (s: SideName) => number) =>
    has(a) && has(b) ? [`| ${what}: ${plainLabel(a)} ÷ ${plainLabel(b)} | ${f2(f(a) / f(b))} |`] : []
  const problems = runs.filter((r) =>
    r.problems.length > 0 || !r.warmupOk || r.shortfall > 0 || r.load.non2xx + r.load.errors + r.load.dropped > 0
  )

  const section: Array<string> = [
    `## Serve end to end`,
    ``,
    `\`${command}\` (${date}; took ${
      fmt(minutes, 1)
    } min). Black box over HTTP: producers \`POST /v1/events\` to a running server, ` +
    `each event routed to two targets that answer 200 after ${options.delay} ms.`,
    ``,
    `${described}; load average at the start ${loadStart}, at the end ${loadEnd}. ` +
    `${
      options.pinned
        ? "Pinned: the server side (its processes, Redis, and the PostgreSQL backends connected to its database when the window starts) on CPU 0 (`taskset -c 0`, `taskset -a -p` for running processes), load generator and targets on CPU 1; other jobs on the machine are not kept off either core."
        : "Not pinned."
    } ` +
    `${pgInfo}.`,
    ``,
    `**What is measured.** Open loop: a load generator process (undici \`Pool\`, ${options.connections} keep-alive connections, at most ${options.maxInFlight} requests unanswered, beyond which a send is dropped and counted) ` +
    `offers events at a fixed rate for ${options.duration} s (event i leaves at t0 + i/rate, whatever the answers; a send more than 5 ms behind its instant is counted late). ` +
    `Each event carries its offered instant (CLOCK_MONOTONIC, shared by the processes); the targets (one process, two ports) record the instant each (event, target) body is first fully received. ` +
    `**Added latency = first receipt − offered instant**, over every (event, target): the targets' own ${options.delay} ms come after receipt and are not in it; it includes the server's queueing, ` +
    `storing, polling, and the load generator's own lateness. acked/s: 2xx answers ÷ ${options.duration} s; delivered/s: events received by both targets by the end of the window ÷ ${options.duration} s; ` +
    `delivered/s incl. drain: all events received by both ÷ (window + time until the last was), the rate sustained when the backlog is counted; ` +
    `backlog at end: offered − delivered by then; drained: when the last acknowledged event reached both targets (wait bounded by ${
      fmt(options.drain ?? Math.max(10, 3 * options.duration))
    } s, or 15 s without progress). ` +
    `**Keeps up** = delivered/s ≥ 0.98 × offered and every acknowledged event delivered within 1 s after the window. ` +
    `Server CPU: utime + stime from /proc of the server's process groups plus Redis, plus (PostgreSQL sides) the backends connected to the run's database ` +
    `(pg_stat_activity; the shared WAL writer, checkpointer and other background processes are excluded), from the start of the window until drained, per 1,000 events delivered. ` +
    `Each measured run starts a fresh server and a fresh store (SQLite file, Redis, or PostgreSQL database), then ${options.warmup} s at ≤ 300/s of warm-up (not measured); sides run in a rotated order at each rate. ` +
    `Worker concurrency ${options.concurrency} on every side (Fanout: \`--concurrency\`, split over the 2 workers on PostgreSQL, and each target's bulkhead ${options.concurrency}; BullMQ: Worker concurrency; ` +
    `pg-boss: ${options.pgbossLoops} \`work\` loops × batch ${options.pgbossBatch} per worker process, polling every 0.5 s, the smallest pg-boss 10 allows).`,
    ``,
    ...(runs.length > 0
      ? [
        `| side | durability of a 202 |`,
        `|---|---|`,
        ...sides.filter((s) => runs.some((r) => r.side === s)).map((s) => `| ${labelOf[s]} | ${durabilityOf[s]} |`),
        ``,
        ...openTable(runs, sides, options.rates),
        ``
      ]
      : [options.open ? "(no open-loop run completed)" : "(open loop not run: --ingest-only)", ``])
  ]
  if (runs.length > 0) {
    section.push(
      `| side | highest offered rate kept up | delivered/s at ${
        fmt(top)
      }/s offered (ceiling) | … incl. drain | server CPU ms / 1k events at ${fmt(low)}/s |`,
      `|---|---:|---:|---:|---:|`,
      ...sides.filter(has).map((s) =>
        `| ${labelOf[s]} | ${keptUpTo(s) === undefined ? "none" : fmt(keptUpTo(s)!)} | ${f0(ceiling(s))} | ${
          f0(sustained(s))
        } | ${f0(cpuAt(s))} |`
      ),
      ``,
      `| ratio | value |`,
      `|---|---:|`,
      ...ratio("fanout", "bullmq", "ceiling", ceiling),
      ...ratio("fanout", "raw", "ceiling", ceiling),
      ...ratio("fanout-2p", "bullmq", "ceiling", ceiling),
      ...ratio("fanout-2p", "fanout", "ceiling", ceiling),
      ...ratio("fanout-pg", "pgboss", "ceiling", ceiling),
      ...ratio("fanout-pg", "fanout", "ceiling", ceiling),
      ...ratio("fanout", "bullmq", "delivered/s incl. drain at the top rate", sustained),
      ...ratio("fanout-2p", "bullmq", "delivered/s incl. drain at the top rate", sustained),
      ...ratio("fanout-pg", "pgboss", "delivered/s incl. drain at the top rate", sustained),
      ...ratio("fanout", "bullmq", `CPU per event at ${fmt(low)}/s`, cpuAt),
      ...ratio("fanout", "raw", `CPU per event at ${fmt(low)}/s`, cpuAt),
      ...ratio("fanout-pg", "pgboss", `CPU per event at ${fmt(low)}/s`, cpuAt),
      ``
    )
    if (problems.length > 0 || failed.length > 0) {
      section.push(`Runs with something to note:`, ``)
      for (const f of failed) {
        const first = f.error.split("\n").find((l) => /error|exited|did not/i.test(l)) ?? f.error.split("\n")[0]
        section.push(`- ${f.what}: **failed**: ${first?.slice(0, 300)}`)
      }
      for (const r of problems) {
        const notes = [
          r.shortfall > 0
            ? `${fmt(r.shortfall)} acknowledged events not received by both targets when the drain wait ended`
            : "",
          r.load.non2xx > 0 ? `non-2xx ${JSON.stringify(r.load.statuses)}` : "",
          r.load.errors > 0 ? `${r.load.errors} transport errors/unanswered (${r.load.errorSample.join(", ")})` : "",
          r.load.dropped > 0
            ? `${
              fmt(r.load.dropped)
            } sends dropped by the load generator (${options.maxInFlight} requests already unanswered: the server answered too slowly)`
            : "",
          !r.warmupOk ? "warm-up not fully acknowledged and delivered" : "",
          r.problems.length > 0
            ? `${r.problems.length} error lines in its logs, first: \`${r.problems[0]!.slice(0, 200)}\``
            : ""
        ].filter((x) => x !== "")
        section.push(`- ${labelOf[r.side]} at ${fmt(r.rate)}/s (rep ${r.rep + 1}): ${notes.join("; ")}.`)
      }
      section.push(``)
    } else {
      section.push(
        `Every acknowledged event was received by both targets in every run, with no non-2xx answers and no error lines in the servers' logs.`,
        ``
      )
    }
  }
  if (ingest.length > 0) {
    const of = (s: IngestSide) => ingest.filter((r) => r.side === s)
    const m = (s: IngestSide, f: (r: IngestRun) => number) => (of(s).length > 0 ? median(of(s).map(f)) : Number.NaN)
    const row = (s: IngestSide, label: string, durability: string) =>
      `| ${label} | ${durability} | ${of(s).length} | ${f0(m(s, (r) => r.ackedPerSecond))} | ${
        f1(m(s, (r) => r.p50))
      } / ${f1(m(s, (r) => r.p99))} | ${f0(m(s, (r) => r.cpuUsPerRequest))} | ${
        fmt(of(s).reduce((n, r) => n + r.acked, 0))
      } | ${of(s).every((r) => r.stored !== undefined) ? fmt(of(s).reduce((n, r) => n + (r.stored ?? 0), 0)) : "–"} | ${
        fmt(of(s).reduce((n, r) => n + r.non2xx + r.errors, 0))
      } |`
    section.push(
      `### Ingest, closed loop`,
      ``,
      `autocannon (in the benchmark's process${
        options.pinned ? ", CPU 1" : ""
      }), ${options.ingestConnections} connections × ${options.ingestDuration} s per run, each request a new event (no id), ` +
        `after a warm-up; servers${
          options.pinned ? " on CPU 0" : ""
        }, fresh store per run, no workers; runs rotated. CPU per request: the server side's CPU (for BullMQ with Redis) ÷ 2xx. ` +
        `Stored: counted from the store after the run (Fanout: rows of \`fanout_events\` in the SQLite file minus the warm-up's; BullMQ: waiting jobs ÷ 2; baseline: its table), ≥ acknowledged since requests in flight at the end are stored but not counted.`,
      ``,
      `| server | durability of a 202 | runs | acks/s | p50 / p99 ms | CPU µs / request | acked | stored | non-2xx + errors |`,
      `|---|---|---:|---:|---:|---:|---:|---:|---:|`,
      row(
        "baseline",
        "bare node:http + better-sqlite3, one insert per request",
        "SQLite WAL synchronous=FULL, one commit per request"
      ),
      row("bullmq", "node:http + BullMQ `addBulk` (no worker)", "Redis AOF everysec"),
      row("fanout", "`fanout serve --api-only`, SQLite", "SQLite WAL synchronous=FULL, group commit"),
      ``,
      `| ratio (medians) | acks/s | CPU per request |`,
      `|---|---:|---:|`,
      `| Fanout ÷ baseline | ${f2(m("fanout", (r) => r.ackedPerSecond) / m("baseline", (r) => r.ackedPerSecond))} | ${
        f2(m("fanout", (r) => r.cpuUsPerRequest) / m("baseline", (r) => r.cpuUsPerRequest))
      } |`,
      `| Fanout ÷ BullMQ | ${f2(m("fanout", (r) => r.ackedPerSecond) / m("bullmq", (r) => r.ackedPerSecond))} | ${
        f2(m("fanout", (r) => r.cpuUsPerRequest) / m("bullmq", (r) => r.cpuUsPerRequest))
      } |`,
      ``,
      `\`fanout serve\` exposes no count of stored events or of store commits on \`/metrics\` (only queue depth and the like), so "every 202 follows an fsync" cannot be shown from outside: ` +
        `the stored count comes from the file, and commits per event are not visible black-box (bench/server.ts measures them in-process).`,
      ``
    )
  }
  section.push(
    `Raw figures: \`.tmp/bench-serve.json\`. Preliminary when other jobs share the two cores (see the load average).`
  )
  const text = section.join("\n")
  console.log(text)
  mkdirSync(join(root, ".tmp"), { recursive: true })
  // A --no-write run (a trial) does not overwrite the raw figures behind RESULTS.md.
  const jsonFile = join(root, ".tmp", options.write ? "bench-serve.json" : "bench-serve-trial.json")
  writeFileSync(
    jsonFile,
    JSON.stringify(
      { date, command, machine: described, loadStart, loadEnd, options, pg: pgInfo, minutes, runs, failed, ingest },
      null,
      2
    )
  )
  if (options.write) {
    writeSection("Serve end to end", text)
    log(`wrote bench/RESULTS.md (## Serve end to end) and .tmp/bench-serve.json`)
  } else {
    log(`wrote .tmp/bench-serve-trial.json (RESULTS.md and .tmp/bench-serve.json untouched: --no-write)`)
  }
  const shortfall = runs.reduce((n, r) => n + r.shortfall, 0)
  if (problems.length > 0 || failed.length > 0 || options.keepLogs) log(`logs kept in ${dir}`)
  else rmSync(dir, { recursive: true, force: true })
  if (shortfall > 0) log(`WARNING: ${shortfall} acknowledged events were not received by both targets (see the table)`)
}

/** Ingest with the warm-up's acknowledged count remembered for Fanout (its file holds both). */
const ingestWithWarm = async (
  side: IngestSide,
  rep: number,
  helpers: Helpers,
  options: Options,
  dir: string
): Promise<IngestRun> => {
  if (side !== "fanout") return ingestRun(side, rep, helpers, options, dir)
  // The Fanout ingest run, done here so the warm-up's 2xx can be subtracted from the stored count.
  const running = await startSide("fanout", helpers, options, dir, { workers: false })
  const file = join(dir, `${runCounter}-fanout`, "fanout.db")
  try {
    const warm = await cannon(running.url, options.ingestConnections, Math.min(3, Math.max(1, options.warmup)))
    await Procs.sleep(500)
    const cpu0 = await sampleCpu(running)
    const result = await cannon(running.url, options.ingestConnections, options.ingestDuration)
    const cpu = Procs.cpuDelta(cpu0, await sampleCpu(running))
    await running.stop()
    const total = countSqliteEvents(file)
    return ingestRow("fanout", rep, result, cpu, total - warm["2xx"])
  } finally {
    await running.stop()
  }
}
