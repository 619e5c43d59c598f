/**
 * The isolation scenario (issue 3, "no head-of-line blocking"), shared by the test
 * (test/durable/isolation.test.ts) and the benchmark (bench/durable.ts).
 *
 * One worker, in this process, over a fresh store, delivers events routed to two targets, A and B,
 * each on its own loopback server. Two phases per run:
 *
 * 1. backlog: `events` events are enqueued, then the worker starts; B's delivered rate is
 *    `events / time until B has answered them all`;
 * 2. latency: `latencyEvents` more are enqueued at `rate` per second (open loop) while the worker
 *    runs; B's latency is the time from each enqueue call to B's receipt of that event.
 *
 * In a `healthy` run A answers 200 at once; in a `hung` run A never answers: its attempts time out
 * after `timeoutMs`. With `breaker: true` (the default) A keeps the default circuit breaker, which
 * opens after its first failures, as a user's target would; with `breaker: false` (the worst case)
 * A keeps its whole share of the worker busy with attempts that time out, all run long.
 *
 * With `split: true` (SQLite only) A is served by a worker of its own in another process
 * (bench/durable/isolation-worker.ts, as `fanout worker --targets a` would), with its breaker off,
 * and this process's worker serves B only: isolation between processes instead of within one.
 */
import { fork } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { performance } from "node:perf_hooks"
import { HttpClientRequest } from "@effect/platform"
import * as Transport from "../../src/Transport.js"
import { Effect, Layer } from "effect"
import * as Memory from "../../src/Store/Memory.js"
import * as Sqlite from "../../src/Store/Sqlite.js"
import * as Store from "../../src/Store.js"
import { Event, Target, Worker } from "../../src/index.js"

export interface IsolationOptions {
  readonly store: "sqlite" | "memory"
  readonly synchronous?: "FULL" | "NORMAL"
  readonly events: number
  readonly latencyEvents: number
  /** Enqueues per second in the latency phase. */
  readonly rate: number
  readonly concurrency?: number
  readonly timeoutMs?: number
  /** A keeps the default circuit breaker (default true); false: breaker off, the worst case. */
  readonly breaker?: boolean
  /** A's worker runs in a process of its own (breaker off); this process's worker serves B only. */
  readonly split?: boolean
}

export interface IsolationRun {
  readonly mode: "healthy" | "hung"
  /** B's delivered events per second over the backlog phase. */
  readonly rateB: number
  readonly p50B: number
  readonly p95B: number
  readonly p99B: number
  /** B's slowest latency-phase event, enqueue to receipt. */
  readonly maxB: number
  /** B's receipts: backlog + latency events (each once unless redelivered). */
  readonly receivedB: number
  readonly uniqueB: number
  /** A's receipts (attempts that reached A). */
  readonly receivedA: number
  /** Most deliveries the worker held for A at once (sampled). */
  readonly maxHeldA: number
  readonly limitA: number
}

interface Server {
  readonly url: string
  readonly received: Map<string, number>
  count: number
  readonly close: () => Promise<void>
}

/** A loopback target that answers 200 at once, or (`hang`) never answers; it records the first receipt of each key. */
export const serve = (hang: boolean): Promise<Server> =>
  new Promise((resolve) => {
    const received = new Map<string, number>()
    const open = new Set<ServerResponse>()
    const state = { count: 0 }
    const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
      req.resume()
      req.on("end", () => {
        state.count++
        const key = String(req.headers["idempotency-key"])
        if (!received.has(key)) received.set(key, performance.now())
        if (hang) {
          open.add(res)
          res.on("close", () => open.delete(res))
          return
        }
        res.writeHead(200, { "content-type": "application/json", "content-length": "11" })
        res.end("{\"ok\":true}")
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        received,
        get count() {
          return state.count
        },
        set count(n) {
          state.count = n
        },
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections()
            server.close(() => done())
          })
      }))
  })

const quantile = (xs: ReadonlyArray<number>, q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!
}

const post = (url: string) => (event: Event.Event<string, unknown>) =>
  HttpClientRequest.post(url).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))

/** Target A on the server at `url`: `timeoutMs` per attempt, retried for the whole run, its breaker on or off. */
export const targetA = (url: string, timeoutMs: number, breaker: boolean) =>
  Target.make("a", {
    request: post(`${url}/a`),
    policy: {
      timeout: timeoutMs,
      ...(breaker ? {} : { circuitBreaker: false as const }),
      retry: { maxAttempts: 1_000, initialDelay: 100, maxDelay: 1_000 }
    }
  })

const splitWorkerScript = fileURLToPath(new URL("./isolation-worker.ts", import.meta.url))

/** The process that serves A in a split run, until the scope closes. */
const startSplitWorker = (file: string, mode: "healthy" | "hung", timeoutMs: number) =>
  Effect.acquireRelease(
    Effect.async<ReturnType<typeof fork>, Error>((resume) => {
      const child = fork(splitWorkerScript, [file, mode, String(timeoutMs)], {
        execArgv: ["--import", "tsx"],
        stdio: "inherit"
      })
      child.once("message", () => resume(Effect.succeed(child)))
      child.once("exit", (code) =>
        resume(Effect.fail(new Error(`isolation-worker exited (${code}) before it was ready`))))
    }).pipe(Effect.orDie),
    (child) =>
      Effect.sync(() => child.kill("SIGKILL"))
  )

/** One run (healthy or hung), start to finish, with its own store and servers. */
export const runIsolation = async (mode: "healthy" | "hung", options: IsolationOptions): Promise<IsolationRun> => {
  const dir = mkdtempSync(join(tmpdir(), "fanout-isolation-"))
  const a = await serve(mode === "hung")
  const b = await serve(false)
  const timeoutMs = options.timeoutMs ?? 1_000
  const A = targetA(a.url, timeoutMs, options.breaker !== false)
  const B = Target.make("b", { request: post(`${b.url}/b`) })
  const storeLayer: Layer.Layer<Store.DeliveryStore, Store.StoreError> = options.store === "memory"
    ? Memory.layer
    : Sqlite.layer({ filename: join(dir, "isolation.db"), synchronous: options.synchronous ?? "FULL" })
  const tag = `${mode}-${Date.now()}`

  const program = Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const enqueue = (i: number) =>
      Effect.flatMap(Event.make("tick", { i }, { id: `${tag}-${i}` }), (event) => store.enqueue(event, ["a", "b"]))
    yield* Effect.forEach(Array.from({ length: options.events }, (_, i) => i), enqueue, {
      concurrency: 32,
      discard: true
    })

    if (options.split) yield* startSplitWorker(join(dir, "isolation.db"), mode, timeoutMs)
    const worker = yield* Worker.make({
      targets: options.split ? [B] : [A, B],
      // B's share as it is in the one-process run.
      concurrency: options.split ? Math.floor((options.concurrency ?? 64) / 2) : options.concurrency ?? 64,
      batchSize: 16,
      pollInterval: "200 millis",
      shutdownGrace: "100 millis",
      metricsInterval: false
    })
    let maxHeldA = 0
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
      Effect.map(worker.state, (s) => {
        maxHeldA = Math.max(maxHeldA, s.targets.a?.claimed ?? 0)
      }),
      Effect.sleep("20 millis")
    )))
    const started = performance.now()
    while (b.received.size < options.events) yield* Effect.sleep("2 millis")
    const rateB = options.events / ((performance.now() - started) / 1000)

    const sentAt = new Map<string, number>()
    const interval = 1000 / options.rate
    const t0 = performance.now()
    for (let k = 0; k < options.latencyEvents; k++) {
      const i = options.events + k
      const due = t0 + k * interval
      const wait = due - performance.now()
      if (wait > 0) yield* Effect.sleep(`${wait} millis`)
      sentAt.set(`${tag}-${i}:b`, performance.now())
      yield* enqueue(i)
    }
    const total = options.events + options.latencyEvents
    const deadline = performance.now() + 60_000
    while (b.received.size < total && performance.now() < deadline) yield* Effect.sleep("2 millis")
    const latencies: Array<number> = []
    for (const [key, at] of sentAt) {
      const got = b.received.get(key)
      if (got !== undefined) latencies.push(got - at)
    }
    const state = yield* worker.state
    return {
      mode,
      rateB,
      p50B: quantile(latencies, 0.5),
      p95B: quantile(latencies, 0.95),
      p99B: quantile(latencies, 0.99),
      maxB: latencies.reduce((m, x) => Math.max(m, x), 0),
      receivedB: b.count,
      uniqueB: b.received.size,
      receivedA: a.count,
      maxHeldA,
      limitA: state.targets.a?.limit ?? 0
    } satisfies IsolationRun
  })

  try {
    return await Effect.runPromise(
      program.pipe(
        Effect.scoped,
        Effect.provide(Layer.mergeAll(A.layer, B.layer).pipe(Layer.provide(Transport.layer()), Layer.merge(storeLayer)))
      )
    )
  } finally {
    await a.close()
    await b.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
