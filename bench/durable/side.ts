/**
 * One measured side of `bench/durable.ts`, run in a fresh process:
 * `node --import tsx bench/durable/side.ts '<json Side>'` prints one JSON line (the result).
 *
 * - `enqueue`: `events` events (two deliveries each) written by `concurrency` concurrent callers
 *   through `DeliveryStore.enqueue`;
 * - `fanout`: end to end — a producer enqueues `events` events (same concurrency) while a Fanout
 *   worker in the same process delivers them to the two mock targets; timed from the first enqueue
 *   until the targets have received every (event, target) and the store has recorded every delivery;
 * - `bullmq`: the same work the BullMQ way — one job per (event, target) added with `addBulk` per
 *   event, a Worker whose processor POSTs with undici (attempts 5, exponential backoff), timed until
 *   the targets have received every request and every job has completed.
 */
import { performance } from "node:perf_hooks"
import { GCProfiler } from "node:v8"
import { HttpClientRequest } from "@effect/platform"
import * as Transport from "../../src/Transport.js"
import { Effect, Layer, RuntimeFlags, RuntimeFlagsPatch, Supervisor } from "effect"
import * as Postgres from "../../src/Store/Postgres.js"
import * as Sqlite from "../../src/Store/Sqlite.js"
import * as Store from "../../src/Store.js"
import { Event, Target, Worker } from "../../src/index.js"
import { poster } from "../lib/undici.js"

/**
 * `FANOUT_BENCH_COUNT=1` (bench/ops.ts sets it): the fanout side also counts, over its measured
 * window, the Effect instructions its fibers evaluate (op supervision), the fibers started, the
 * suspensions, and the bytes allocated on the JS heap (summed from the GC profiler's before/after
 * heap sizes). Counting costs CPU: such a run's timings are not comparable with the others.
 */
const counting = process.env.FANOUT_BENCH_COUNT === "1"
const tally = { on: false, effects: 0, fibers: 0, suspends: 0 }
class Tally extends Supervisor.AbstractSupervisor<void> {
  value = Effect.void
  override onStart() {
    if (tally.on) tally.fibers++
  }
  override onEffect() {
    if (tally.on) tally.effects++
  }
  override onSuspend() {
    if (tally.on) tally.suspends++
  }
}
const counted = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  counting
    ? effect.pipe(
      Effect.supervised(new Tally()),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    )
    : effect

/** Bytes allocated on the JS heap while `profiler` ran: each GC's heap before it, minus the heap after the previous one. */
const allocatedBytes = (data: ReturnType<GCProfiler["stop"]> | undefined, start: number, end: number): number => {
  let total = 0
  let last = start
  for (const gc of data?.statistics ?? []) {
    total += gc.beforeGC.heapStatistics.usedHeapSize - last
    last = gc.afterGC.heapStatistics.usedHeapSize
  }
  return total + (end - last)
}

export type StoreSpec =
  | { readonly kind: "sqlite"; readonly filename: string; readonly synchronous: "FULL" | "NORMAL" }
  | { readonly kind: "pg"; readonly url: string; readonly prefix: string }

/** What the two end-to-end sides share: the same work, to the same two mock targets. */
interface EndToEnd {
  readonly events: number
  /** Events run through the same path first, untimed (JIT warm-up). */
  readonly warmup: number
  readonly producers: number
  readonly concurrency: number
  readonly urlA: string
  readonly urlB: string
}

export type Side =
  | {
    readonly kind: "enqueue"
    readonly store: StoreSpec
    readonly events: number
    readonly warmup: number
    readonly concurrency: number
  }
  | EndToEnd & { readonly kind: "fanout"; readonly store: StoreSpec }
  | EndToEnd & { readonly kind: "bullmq"; readonly redisPort: number; readonly queue: string }

export interface SideResult {
  readonly seconds: number
  readonly eventsPerSecond: number
  /** CPU of this process per 1 000 events, ms. */
  readonly cpuMsPer1k: number
  readonly requests?: number
  readonly extra?: Record<string, unknown>
}

const payload = (i: number) => ({
  orderId: `o-${i}`,
  sku: `sku-${i % 100}`,
  qty: 1 + (i % 5),
  email: `c${i}@example.com`
})

const storeLayer = (spec: StoreSpec): Layer.Layer<Store.DeliveryStore, Store.StoreError> =>
  spec.kind === "sqlite"
    ? Sqlite.layer({ filename: spec.filename, synchronous: spec.synchronous })
    : Postgres.layer({ url: spec.url, prefix: spec.prefix, maxConnections: 10 })

/** Runs `body` `concurrency` at a time over 0..n-1 (a pool of async loops). */
const pool = async (n: number, concurrency: number, body: (i: number) => Promise<unknown>) => {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, async () => {
    for (let i = next++; i < n; i = next++) await body(i)
  }))
}

const runEnqueue = (side: Extract<Side, { kind: "enqueue" }>) =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const all = yield* Effect.forEach(
      Array.from({ length: side.warmup + side.events }, (_, i) => i),
      (i) => Event.make("order.placed", payload(i))
    )
    yield* Effect.forEach(all.slice(0, side.warmup), (event) => store.enqueue(event, ["a", "b"]), {
      concurrency: side.concurrency,
      discard: true
    })
    const events = all.slice(side.warmup)
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    yield* Effect.forEach(events, (event) => store.enqueue(event, ["a", "b"]), {
      concurrency: side.concurrency,
      discard: true
    })
    const seconds = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    const stats = yield* store.stats
    if (stats.pending !== 2 * all.length) {
      throw new Error(`enqueue: ${stats.pending} pending, expected ${2 * all.length}`)
    }
    const diagnostics = yield* store.diagnostics
    return {
      seconds,
      eventsPerSecond: side.events / seconds,
      cpuMsPer1k: (cpu.user + cpu.system) / 1000 / (side.events / 1000),
      extra: { ...diagnostics }
    } satisfies SideResult
  }).pipe(Effect.provide(storeLayer(side.store)))

const runFanout = (side: Extract<Side, { kind: "fanout" }>) => {
  const A = Target.make("a", {
    request: (e: Event.Event<string, ReturnType<typeof payload>>) =>
      HttpClientRequest.post(`${side.urlA}/a`).pipe(
        HttpClientRequest.bodyUnsafeJson({
          id: e.id,
          orderId: e.payload.orderId,
          sku: e.payload.sku,
          qty: e.payload.qty
        })
      )
  })
  const B = Target.make("b", {
    request: (e: Event.Event<string, ReturnType<typeof payload>>) =>
      HttpClientRequest.post(`${side.urlB}/b`).pipe(
        HttpClientRequest.bodyUnsafeJson({ id: e.id, orderId: e.payload.orderId, to: e.payload.email })
      )
  })
  return Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const all = yield* Effect.forEach(
      Array.from({ length: side.warmup + side.events }, (_, i) => i),
      (i) => Event.make("order.placed", payload(i))
    )
    const warm = all.slice(0, side.warmup)
    const events = all.slice(side.warmup)
    const worker = yield* Worker.make({
      targets: [A, B],
      concurrency: side.concurrency,
      metricsInterval: false,
      pollInterval: "1 second"
    })
    yield* Effect.forEach(warm, (event) => store.enqueue(event, ["a", "b"]), {
      concurrency: side.producers,
      discard: true
    })
    while ((yield* worker.state).delivered < 2 * side.warmup) yield* Effect.sleep("5 millis")
    const base = (yield* worker.state).delivered
    const profiler = counting ? new GCProfiler() : undefined
    const heap0 = process.memoryUsage().heapUsed
    profiler?.start()
    tally.on = counting
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    yield* Effect.forEach(events, (event) => store.enqueue(event, ["a", "b"]), {
      concurrency: side.producers,
      discard: true
    })
    const enqueuedAt = (performance.now() - t0) / 1000
    // Done when the worker has recorded every delivery (the targets were sent each one first).
    while ((yield* worker.state).delivered - base < 2 * side.events) yield* Effect.sleep("5 millis")
    const seconds = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    tally.on = false
    const heap1 = process.memoryUsage().heapUsed
    const gcs = profiler?.stop()
    const perEvent = counting
      ? {
        effectsPerEvent: tally.effects / side.events,
        fibersPerEvent: tally.fibers / side.events,
        suspendsPerEvent: tally.suspends / side.events,
        allocatedKiBPerEvent: allocatedBytes(gcs, heap0, heap1) / 1024 / side.events
      }
      : {}
    const stats = yield* store.stats
    const state = yield* worker.state
    const diagnostics = yield* store.diagnostics
    return {
      seconds,
      eventsPerSecond: side.events / seconds,
      cpuMsPer1k: (cpu.user + cpu.system) / 1000 / (side.events / 1000),
      extra: {
        enqueueSeconds: enqueuedAt,
        delivered: stats.delivered - base,
        claims: state.claims,
        retried: state.retried,
        ...diagnostics,
        ...perEvent
      }
    } satisfies SideResult
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.mergeAll(A.layer, B.layer).pipe(Layer.provide(Transport.layer()), Layer.merge(storeLayer(side.store)))
    ),
    // Outermost: the store's writer fiber and the worker's fibers are counted too.
    counted
  )
}

const runBullmq = async (side: Extract<Side, { kind: "bullmq" }>): Promise<SideResult> => {
  const { Queue, Worker: BullWorker } = await import("bullmq")
  const { Agent } = await import("undici")
  const connection = {
    host: "127.0.0.1",
    port: side.redisPort,
    maxRetriesPerRequest: null,
    enableAutoPipelining: false
  }
  const queue = new Queue(side.queue, { connection })
  await queue.waitUntilReady()
  const agent = new Agent()
  const post = poster(agent)
  let completed = 0
  let failed = 0
  const worker = new BullWorker(
    side.queue,
    async (job) => {
      const data = job.data as { id: string; target: "a" | "b"; p: ReturnType<typeof payload> }
      const body = data.target === "a"
        ? { id: data.id, orderId: data.p.orderId, sku: data.p.sku, qty: data.p.qty }
        : { id: data.id, orderId: data.p.orderId, to: data.p.email }
      await post(data.target === "a" ? side.urlA : side.urlB, `/${data.target}`, body, `${data.id}:${data.target}`)
    },
    { connection, concurrency: side.concurrency, autorun: false }
  )
  worker.on("completed", () => completed++)
  worker.on("failed", () => failed++)
  await worker.waitUntilReady()
  const ids = Array.from({ length: side.warmup + side.events }, (_, i) => `bull-${side.queue}-${i}`)
  const options = {
    attempts: 5,
    backoff: { type: "exponential", delay: 100 },
    removeOnComplete: true,
    removeOnFail: false
  }
  const produce = (from: number, n: number) =>
    pool(n, side.producers, (k) => {
      const i = from + k
      return queue.addBulk([
        { name: "a", data: { id: ids[i], target: "a", p: payload(i) }, opts: { ...options, jobId: `${ids[i]}-a` } },
        { name: "b", data: { id: ids[i], target: "b", p: payload(i) }, opts: { ...options, jobId: `${ids[i]}-b` } }
      ])
    })
  void worker.run()
  await produce(0, side.warmup)
  while (completed < 2 * side.warmup) await new Promise((r) => setTimeout(r, 5))
  const base = completed
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await produce(side.warmup, side.events)
  const enqueueSeconds = (performance.now() - t0) / 1000
  while (completed - base < 2 * side.events) await new Promise((r) => setTimeout(r, 5))
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  await worker.close()
  await queue.obliterate({ force: true })
  await queue.close()
  await agent.close()
  return {
    seconds,
    eventsPerSecond: side.events / seconds,
    cpuMsPer1k: (cpu.user + cpu.system) / 1000 / (side.events / 1000),
    extra: { enqueueSeconds, completed: completed - base, failed }
  }
}

const main = async () => {
  const side = JSON.parse(process.argv[2] ?? "{}") as Side
  const result: SideResult = side.kind === "bullmq"
    ? await runBullmq(side)
    // Tracing off, as `fanout serve` runs without an exporter.
    : await Effect.runPromise(
      Effect.withTracerEnabled(side.kind === "enqueue" ? runEnqueue(side) : runFanout(side), false)
    )
  process.stdout.write(JSON.stringify(result) + "\n")
  process.exit(0)
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) void main()
