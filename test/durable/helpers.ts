/**
 * Helpers for the process-level durable tests: loopback receivers that record every request by
 * idempotency key, worker child processes (killed by process group), PostgreSQL availability and
 * per-run table prefixes, and a small store handle for the test process itself.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { mkdirSync, rmSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { buildSync } from "esbuild"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Postgres from "../../src/Store/Postgres.js"
import * as Sqlite from "../../src/Store/Sqlite.js"
import * as Store from "../../src/Store.js"
import type { Config } from "../fixtures/durable-worker.js"

export const PG_URL = process.env.FANOUT_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

// ---- receivers -----------------------------------------------------------------------------------

export type Behaviour = "ok" | "reset" | "hang" | number

export interface Receipt {
  readonly key: string
  readonly path: string
  /** The `x-worker` header (the fixture's worker id). */
  readonly worker: string | undefined
  readonly answer: Behaviour
  readonly at: number
}

export interface Receiver {
  readonly url: string
  readonly receipts: Array<Receipt>
  /** Receipts per idempotency key. */
  readonly byKey: Map<string, Array<Receipt>>
  /** Keys answered 2xx, with how many times. */
  readonly okCount: (key: string) => number
  /** Replaces the behaviour (e.g. "fix" a target). */
  setBehaviour(f: (path: string, key: string, req: IncomingMessage) => Behaviour): void
  /** Answers every hung request with `status` (or resets them). */
  release(status: number | "reset"): void
  readonly close: () => Promise<void>
}

/** A loopback server answering by `behaviour(path, key)`; a receipt is recorded when the body has been read. */
export const startReceiver = async (
  behaviour: (path: string, key: string, req: IncomingMessage) => Behaviour
): Promise<Receiver> => {
  let choose = behaviour
  const receipts: Array<Receipt> = []
  const byKey = new Map<string, Array<Receipt>>()
  const hung = new Set<ServerResponse>()
  const server: Server = createServer({ keepAliveTimeout: 30_000 }, (req: IncomingMessage, res: ServerResponse) => {
    req.on("data", () => {})
    req.on("error", () => {})
    req.on("end", () => {
      const key = String(req.headers["idempotency-key"] ?? "")
      const path = req.url ?? "/"
      const answer = choose(path, key, req)
      const worker = req.headers["x-worker"]
      const receipt: Receipt = {
        key,
        path,
        worker: typeof worker === "string" ? worker : undefined,
        answer,
        at: Date.now()
      }
      receipts.push(receipt)
      let list = byKey.get(key)
      if (list === undefined) byKey.set(key, list = [])
      list.push(receipt)
      if (answer === "hang") {
        hung.add(res)
        res.on("close", () => hung.delete(res))
        return
      }
      if (answer === "reset") {
        req.socket.destroy()
        return
      }
      const status = answer === "ok" ? 200 : answer
      const body = JSON.stringify({ ok: status < 300 })
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      res.end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    receipts,
    byKey,
    okCount: (key) => (byKey.get(key) ?? []).filter((r) => r.answer === "ok").length,
    setBehaviour(f) {
      choose = f
    },
    release(status) {
      for (const res of [...hung]) {
        if (status === "reset") res.socket?.destroy()
        else {
          const body = JSON.stringify({ ok: status < 300 })
          res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
          res.end(body)
        }
        hung.delete(res)
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

/** The test kit's seeded PRNG (mulberry32), so a failing run can be replayed from its printed seed. */
export { prng } from "../../src/testing/Fault.js"

// ---- worker processes ----------------------------------------------------------------------------

const fixture = fileURLToPath(new URL("../fixtures/durable-worker.ts", import.meta.url))
const cacheDir = fileURLToPath(new URL("../../node_modules/.cache/fanout/", import.meta.url))
let bundled: string | undefined

/**
 * The fixture bundled once (our sources only; packages stay external) into node_modules/.cache, so a
 * worker process starts with plain `node` — about twice as fast as `node --import tsx` on a loaded
 * 2-core machine, which matters when a test restarts workers many times.
 */
export const workerScript = (): string => {
  if (bundled !== undefined) return bundled
  const outfile = join(cacheDir, `durable-worker-${process.pid}.mjs`)
  mkdirSync(cacheDir, { recursive: true })
  buildSync({
    entryPoints: [fixture],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    outfile,
    logLevel: "silent"
  })
  process.on("exit", () => rmSync(outfile, { force: true }))
  return bundled = outfile
}

export interface WorkerState {
  readonly t: string
  readonly workerId: string
  readonly claimed: number
  readonly inFlight: number
  readonly delivered: number
  readonly retried: number
  readonly dead: number
  readonly lostLeases: number
  readonly storeErrors: number
  readonly claimedTotal: number
  readonly lastError?: { readonly operation: string; readonly message: string }
}

export interface WorkerProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly ready: Promise<void>
  readonly exited: Promise<number | null>
  /** The last state line printed. */
  state(): WorkerState | undefined
  /** The stderr text so far (JSON logs). */
  stderr(): string
  /** Signals the whole process group (the child is a group leader). */
  signal(sig: NodeJS.Signals): void
}

/** Spawns `node <bundled test/fixtures/durable-worker.ts> <config>` as its own process group. */
export const spawnWorker = (config: Config): WorkerProcess => {
  const child = spawn(process.execPath, [workerScript(), JSON.stringify(config)], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NODE_OPTIONS: "" }
  })
  let last: WorkerState | undefined
  let err = ""
  let buffer = ""
  let resolveReady: () => void = () => {}
  let rejectReady: (e: Error) => void = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve
    rejectReady = reject
  })
  child.stdout!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    buffer += chunk
    let i: number
    while ((i = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      try {
        const parsed = JSON.parse(line) as WorkerState
        if (parsed.t === "ready") resolveReady()
        else if (parsed.t === "state" || parsed.t === "stopped") last = parsed
      } catch {
        // not ours
      }
    }
  })
  child.stderr!.setEncoding("utf8")
  child.stderr!.on("data", (chunk: string) => {
    err += chunk
    if (err.length > 1_000_000) err = err.slice(-500_000)
  })
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  void exited.then((code) => rejectReady(new Error(`worker exited (${code}) before ready: ${err.slice(-2000)}`)))
  ready.catch(() => {})
  return {
    child,
    pid: child.pid!,
    ready,
    exited,
    state: () => last,
    stderr: () => err,
    signal(sig) {
      try {
        process.kill(-child.pid!, sig)
      } catch {
        // already gone
      }
    }
  }
}

/** Kills every still-running worker's process group (test teardown). */
export const killAll = async (workers: ReadonlyArray<WorkerProcess>) => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.signal("SIGKILL")
  await Promise.all(workers.map((w) => Promise.race([w.exited, sleep(5_000)])))
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `predicate` until it holds; throws `what` after `timeoutMs`. */
export const waitFor = async (
  what: string,
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
  every = 50
) => {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await sleep(every)
  }
}

// ---- stores in the test process ------------------------------------------------------------------

export interface StoreHandle {
  readonly run: <A, E>(f: (store: Store.DeliveryStore) => Effect.Effect<A, E>) => Promise<A>
  readonly dispose: () => Promise<void>
}

export const openStore = (layer: Layer.Layer<Store.DeliveryStore, Store.StoreError>): StoreHandle => {
  const runtime = ManagedRuntime.make(layer)
  return {
    run: (f) => runtime.runPromise(Effect.flatMap(Store.DeliveryStore, f)),
    dispose: () => runtime.dispose()
  }
}

export const sqliteStore = (filename: string, synchronous: "FULL" | "NORMAL" = "FULL") =>
  openStore(Sqlite.layer({ filename, synchronous }))

export const pgStore = (prefix: string) =>
  openStore(Postgres.layer({ url: PG_URL, prefix, applicationName: "fanout-test" }))

// ---- PostgreSQL ------------------------------------------------------------------------------------

/** Runs one query on a fresh PostgreSQL connection (application name `fanout-test-admin`). */
export const pgQuery = <R extends object = Record<string, unknown>>(
  text: string,
  timeoutMs = 10_000
): Promise<ReadonlyArray<R>> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sql = yield* PgClient.make({
          url: Redacted.make(PG_URL),
          maxConnections: 1,
          applicationName: "fanout-test-admin",
          connectTimeout: "3 seconds"
        })
        return yield* sql.unsafe<R>(text)
      })
    ).pipe(Effect.provide(Reactivity.layer), Effect.timeout(timeoutMs))
  )

/** Whether PostgreSQL answers at PG_URL (within a few seconds). */
export const postgresAvailable = (): Promise<boolean> => pgQuery("select 1 as one", 5_000).then(() => true, () => false)

/** Whether PostgreSQL tests must run (fail instead of skip when it is down). */
export const requirePostgres = process.env.FANOUT_REQUIRE_POSTGRES === "1"

/** A table prefix unique to this run. */
export const uniquePrefix = (label: string) =>
  `t_${label}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}_`

/** Drops the tables of a prefix. */
export const dropPrefix = async (prefix: string) => {
  for (const t of ["attempts", "deliveries", "events", "targets", "migrations"]) {
    await pgQuery(`DROP TABLE IF EXISTS ${prefix}${t} CASCADE`)
  }
}

/** `PRAGMA integrity_check` of a SQLite file ("ok" when sound). */
export const integrityCheck = (filename: string): Promise<string> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sql = yield* SqliteClient.make({ filename, readonly: true })
        const rows = yield* sql.unsafe<{ integrity_check: string }>("PRAGMA integrity_check")
        return rows.map((r) => r.integrity_check).join("; ")
      })
    ).pipe(Effect.provide(Reactivity.layer))
  )

// ---- pausing a worker cleanly ----------------------------------------------------------------------

/** Runs one statement on a fresh SQLite connection to `filename` (read-only unless `write`). */
export const sqliteQuery = <R extends object = Record<string, unknown>>(
  filename: string,
  text: string,
  params: ReadonlyArray<unknown> = []
): Promise<ReadonlyArray<R>> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sql = yield* SqliteClient.make({ filename, readonly: true })
        return yield* sql.unsafe<R>(text, params as Array<never>)
      })
    ).pipe(Effect.provide(Reactivity.layer))
  )

/**
 * Whether no connection holds the SQLite write lock of `filename` right now: a `BEGIN IMMEDIATE`
 * with a zero busy timeout succeeds (and is rolled back at once).
 */
export const sqliteWriteLockFree = (filename: string): Promise<boolean> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const sql = yield* SqliteClient.make({ filename })
        yield* sql.unsafe("PRAGMA busy_timeout = 0")
        const began = yield* Effect.either(sql.unsafe("BEGIN IMMEDIATE"))
        if (began._tag === "Left") return false
        yield* sql.unsafe("ROLLBACK")
        return true
      })
    ).pipe(Effect.provide(Reactivity.layer))
  )

/** Whether every PostgreSQL session of `applicationName` is idle (none holds a transaction or runs a statement). */
export const pgSessionsIdle = async (applicationName: string): Promise<boolean> => {
  const rows = await pgQuery<{ busy: string | number }>(
    `select count(*) as busy from pg_stat_activity where application_name = '${applicationName}' and state <> 'idle'`
  )
  return Number(rows[0]?.busy ?? 0) === 0
}

/**
 * SIGSTOPs `worker` at a moment it holds no database lock: stop it, check with `idle` (e.g.
 * `sqliteWriteLockFree`), and if it was stopped inside a transaction, let it run a moment and try
 * again. A worker stopped inside a write transaction would block every other worker's claims for as
 * long as it stays stopped, which is a different scenario (a stuck process holding a lock), not the
 * one the fencing tests are about. Returns how many tries it took.
 */
export const stopOutsideTransactions = async (
  worker: WorkerProcess,
  idle: () => Promise<boolean>,
  tries = 50
): Promise<number> => {
  for (let k = 1; k <= tries; k++) {
    worker.signal("SIGSTOP")
    if (await idle()) return k
    worker.signal("SIGCONT")
    await sleep(5)
  }
  throw new Error(`could not stop the worker outside a transaction in ${tries} tries`)
}

// ---- the oracle ------------------------------------------------------------------------------------

export interface Oracle {
  readonly expected: number
  /** (event, target) pairs the targets never answered 2xx. */
  readonly lost: Array<string>
  /** Raw receipts minus unique keys (retries of failed attempts included). */
  readonly repeats: number
  /** Keys answered 2xx more than once (a delivery sent again after it had succeeded). */
  readonly duplicatesAfterSuccess: Array<string>
}

export const oracle = (
  eventIds: ReadonlyArray<string>,
  targets: ReadonlyArray<readonly [string, Receiver]>
): Oracle => {
  const lost: Array<string> = []
  const dup: Array<string> = []
  let repeats = 0
  for (const [name, receiver] of targets) {
    for (const id of eventIds) {
      const key = `${id}:${name}`
      const ok = receiver.okCount(key)
      if (ok === 0) lost.push(key)
      if (ok > 1) dup.push(key)
    }
    repeats += receiver.receipts.length - receiver.byKey.size
  }
  return { expected: eventIds.length * targets.length, lost, repeats, duplicatesAfterSuccess: dup }
}
