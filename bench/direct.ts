/**
 * Benchmark "direct": the same N events fanned out to two loopback targets, by
 *
 * - A: raw undici (`Agent#request`, keep-alive) + `Promise.allSettled` of the two POSTs per
 *   event, every body read;
 * - T: the bare transport (`Transport.send` of Fanout's own undici transport), the two POSTs per
 *   event (one fork for the second, on Fanout's scheduler), nothing else: the floor of anything
 *   built on it;
 * - B: Fanout `send` (mode settled, default policies: bulkhead, breaker, retry, timeouts) over
 *   `Transport.layer`, tracing off (as `fanout serve` runs without an exporter);
 * - G: the same `send` over the generic `NodeHttpClient.layerUndici`, tracing on (Effect's native
 *   tracer): what a user who provides the platform's client gets.
 *
 * Both sides keep the same number of events in flight. The targets run in a separate Node
 * process (bench/lib/targets.ts). Runs are interleaved in one process after a warm-up; each
 * repetition runs A, B and a second copy of A (A′, the A/A pair that shows the noise), in a
 * rotating order. Prints a markdown table; writes the raw figures to
 * .tmp/bench-direct-c<concurrency>-d<delay>.json.
 *
 * Run: npm run bench -- direct [--events=20000] [--concurrency=64] [--reps=3] [--warmup=4000]
 *        [--delay=0] [--pin] [--sides=A,T,B,A',G]
 * (or the env variables BENCH_EVENTS, BENCH_CONCURRENCY, BENCH_REPS, BENCH_WARMUP, BENCH_DELAY,
 * BENCH_PIN=1). `--delay` makes the targets answer after that many milliseconds (default 0:
 * at once, so the sender's CPU is the bottleneck); `--pin` pins the sender to CPU 0 and the
 * targets to CPU 1 with `taskset`.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { performance } from "node:perf_hooks"
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Fiber, Layer } from "effect"
import { Agent } from "undici"
import { Event, Fanout, Router, Target, Transport } from "../src/index.js"
import { fmt, gc, machine, median, pin, quantile, spread } from "./lib/stats.js"
import * as MockTargets from "./lib/targets.js"
import { onIoScheduler } from "../src/internal/scheduler.js"
import { poster } from "./lib/undici.js"

interface Options {
  readonly events: number
  readonly concurrency: number
  readonly reps: number
  readonly warmup: number
  readonly delay: number
  readonly pin: boolean
  readonly sides: ReadonlyArray<RunResult["side"]>
}

const option = (args: ReadonlyArray<string>, name: string, env: string, fallback: number, least = 1): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  const raw = arg !== undefined ? arg.slice(name.length + 3) : process.env[env]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < least) {
    throw new Error(`--${name} / ${env} must be an integer >= ${least}, got ${raw}`)
  }
  return value
}

const parse = (args: ReadonlyArray<string>): Options => ({
  events: option(args, "events", "BENCH_EVENTS", 20_000),
  concurrency: option(args, "concurrency", "BENCH_CONCURRENCY", 64),
  reps: option(args, "reps", "BENCH_REPS", 3),
  warmup: option(args, "warmup", "BENCH_WARMUP", 4_000),
  delay: option(args, "delay", "BENCH_DELAY", 0, 0),
  pin: args.includes("--pin") || process.env.BENCH_PIN === "1",
  sides: sidesOf(args.find((a) => a.startsWith("--sides="))?.slice("--sides=".length) ?? process.env.BENCH_SIDES)
})

const allSides: ReadonlyArray<RunResult["side"]> = ["A", "T", "B", "A'", "G"]

/** `--sides=B,T` runs only those sides (e.g. to profile one with `node --cpu-prof`); default all. */
const sidesOf = (raw: string | undefined): ReadonlyArray<RunResult["side"]> => {
  if (raw === undefined || raw === "") return allSides
  const wanted = raw.split(",")
  const unknown = wanted.filter((w) => !allSides.includes(w as RunResult["side"]))
  if (unknown.length > 0) {
    throw new Error(`--sides: unknown side(s) ${unknown.join(", ")}; known: ${allSides.join(", ")}`)
  }
  return allSides.filter((side) => wanted.includes(side))
}

type Payload = { readonly orderId: string; readonly sku: string; readonly qty: number; readonly email: string }

// What each target receives (the same on both sides).
const bodyA = (e: Event.Event<string, Payload>) => ({
  id: e.id,
  orderId: e.payload.orderId,
  sku: e.payload.sku,
  qty: e.payload.qty
})
const bodyB = (e: Event.Event<string, Payload>) => ({ id: e.id, orderId: e.payload.orderId, to: e.payload.email })

interface RunResult {
  readonly side: "A" | "A'" | "T" | "B" | "G"
  readonly events: number
  readonly seconds: number
  readonly eventsPerSecond: number
  /** CPU time of this (the sender's) process per 1 000 events, in ms. */
  readonly cpuMsPer1k: number
  /** CPU used by the mock-target process during the run, in % of one core. */
  readonly targetsCpuPercent: number | undefined
  readonly p50: number
  readonly p99: number
  readonly failures: number
}

/** Clock ticks of user + system CPU of a process (Linux /proc), for the targets' load. */
const cpuTicks = (pid: number): number | undefined => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return undefined
  }
}

const measure = async (
  side: RunResult["side"],
  targets: MockTargets.MockTargets,
  events: number,
  body: (latencies: Float64Array) => Promise<number>
): Promise<RunResult> => {
  gc()
  await new Promise((r) => setTimeout(r, 200))
  const before = await targets.counts()
  const latencies = new Float64Array(events)
  const ticks0 = cpuTicks(targets.pid)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const failures = await body(latencies)
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const ticks1 = cpuTicks(targets.pid)
  const after = await targets.counts()
  const received = after.a - before.a + after.b - before.b
  if (received !== 2 * events) throw new Error(`${side}: targets received ${received} requests, expected ${2 * events}`)
  return {
    side,
    events,
    seconds,
    eventsPerSecond: events / seconds,
    cpuMsPer1k: ((cpu.user + cpu.system) / 1000) / (events / 1000),
    // Linux clock ticks are 1/100 s.
    targetsCpuPercent: ticks0 !== undefined && ticks1 !== undefined ? (ticks1 - ticks0) / seconds : undefined,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    failures
  }
}

/** A: raw undici, `Promise.allSettled` of the two POSTs, bodies read, `concurrency` events in flight. */
const runRaw = (
  side: "A" | "A'",
  targets: MockTargets.MockTargets,
  events: ReadonlyArray<Event.Event<string, Payload>>,
  concurrency: number
) =>
  measure(side, targets, events.length, async (latencies) => {
    const agent = new Agent()
    const post = poster(agent)
    let next = 0
    let failures = 0
    const worker = async () => {
      for (let i = next++; i < events.length; i = next++) {
        const event = events[i]!
        const start = performance.now()
        const results = await Promise.allSettled([
          post(targets.urlA, "/a", bodyA(event), `${event.id}:a`),
          post(targets.urlB, "/b", bodyB(event), `${event.id}:b`)
        ])
        latencies[i] = performance.now() - start
        for (const result of results) if (result.status === "rejected") failures++
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    await agent.close()
    return failures
  })

/** T: the bare transport, `Transport.send` of the two POSTs per event, same concurrency. */
const runTransport = (
  targets: MockTargets.MockTargets,
  events: ReadonlyArray<Event.Event<string, Payload>>,
  concurrency: number
) =>
  measure(
    "T",
    targets,
    events.length,
    (latencies) =>
      Effect.runPromise(onIoScheduler(Effect.scoped(Effect.gen(function*() {
        const { transport } = yield* Transport.make()
        const options = { timeoutMs: 10_000, maxResponseBytes: 1024 * 1024 }
        const post = (url: string, body: unknown, key: string) =>
          Effect.map(
            Effect.either(transport.send(
              HttpClientRequest.post(url).pipe(
                HttpClientRequest.bodyUnsafeJson(body),
                HttpClientRequest.setHeader("idempotency-key", key)
              ),
              options
            )),
            (r) => r._tag === "Right" && r.right.status < 300 ? 0 : 1
          )
        let failures = 0
        yield* Effect.forEach(
          events,
          (event, i) =>
            Effect.suspend(() => {
              const start = performance.now()
              // One fork per event (the second POST), as Fanout does, on the same scheduler.
              return Effect.flatMap(Effect.fork(post(`${targets.urlB}/b`, bodyB(event), `${event.id}:b`)), (b) =>
                Effect.map(
                  Effect.zip(post(`${targets.urlA}/a`, bodyA(event), `${event.id}:a`), Fiber.join(b)),
                  ([x, y]) => {
                    latencies[i] = performance.now() - start
                    failures += x + y
                  }
                ))
            }),
          { concurrency, discard: true }
        )
        return failures
      }))))
  )

/**
 * B: Fanout `send` (settled, default policies) over Fanout's transport with tracing off; G: over
 * the platform's `NodeHttpClient.layerUndici` with Effect's native tracer on. Same concurrency.
 */
const runFanout = (
  side: "B" | "G",
  targets: MockTargets.MockTargets,
  events: ReadonlyArray<Event.Event<string, Payload>>,
  concurrency: number
) =>
  measure(side, targets, events.length, (latencies) => {
    const A = Target.make("a", {
      request: (e: Event.Event<string, Payload>) =>
        HttpClientRequest.post(`${targets.urlA}/a`).pipe(HttpClientRequest.bodyUnsafeJson(bodyA(e)))
    })
    const B = Target.make("b", {
      request: (e: Event.Event<string, Payload>) =>
        HttpClientRequest.post(`${targets.urlB}/b`).pipe(HttpClientRequest.bodyUnsafeJson(bodyB(e)))
    })
    const router = Router.make().route("order.placed", [A, B])
    const program = Effect.gen(function*() {
      const client = side === "B" ? Transport.layer() : NodeHttpClient.layerUndici
      const context = yield* Layer.build(Layer.mergeAll(A.layer, B.layer).pipe(Layer.provide(client)))
      const sender = yield* Fanout.make(router).pipe(Effect.provide(context))
      let failures = 0
      yield* Effect.forEach(
        events,
        (event, i) =>
          Effect.suspend(() => {
            const start = performance.now()
            return Effect.map(sender.send(event), (result) => {
              latencies[i] = performance.now() - start
              if (result.outcomes.a?._tag !== "Delivered") failures++
              if (result.outcomes.b?._tag !== "Delivered") failures++
            })
          }),
        { concurrency, discard: true }
      )
      return failures
    })
    return Effect.runPromise(Effect.scoped(program).pipe(Effect.withTracerEnabled(side === "G")))
  })

const row = (label: string, runs: ReadonlyArray<RunResult>): ReadonlyArray<string> => {
  if (runs.length === 0) return []
  const targetsCpu = runs.map((r) => r.targetsCpuPercent).filter((x): x is number => x !== undefined)
  return [
    `| ${label} | ${runs.length} | ${spread(runs.map((r) => r.eventsPerSecond))} | ${
      fmt(median(runs.map((r) => r.cpuMsPer1k)))
    } | ${targetsCpu.length > 0 ? `${fmt(median(targetsCpu))} %` : "n/a"} | ${
      fmt(median(runs.map((r) => r.p50)), 2)
    } | ${fmt(median(runs.map((r) => r.p99)), 2)} |`
  ]
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const options = parse(args)
  const log = (line: string) => process.stderr.write(`${line}\n`)
  const targets = await MockTargets.start(options.delay)
  try {
    const pinned = options.pin && pin(process.pid, 0) && pin(targets.pid, 1)
    const makeEvents = (n: number, prefix: string) =>
      Array.from({ length: n }, (_, i) =>
        Effect.runSync(
          Event.make("order.placed", {
            orderId: `${prefix}-${i}`,
            sku: `sku-${i % 100}`,
            qty: 1 + (i % 5),
            email: `buyer${i}@example.com`
          })
        ))
    const warmupEvents = makeEvents(options.warmup, "warm")
    const events = makeEvents(options.events, "o")

    log(
      `direct: ${options.events} events × 2 targets, ${options.concurrency} in flight, delay ${options.delay} ms, ${options.reps} reps, warm-up ${options.warmup}`
    )
    const order = options.sides
    const run = (side: RunResult["side"], batch: ReadonlyArray<Event.Event<string, Payload>>) =>
      side === "B" || side === "G"
        ? runFanout(side, targets, batch, options.concurrency)
        : side === "T"
        ? runTransport(targets, batch, options.concurrency)
        : runRaw(side, targets, batch, options.concurrency)
    for (const side of order) {
      if (side === "A'") continue
      log(`warm-up ${side} …`)
      await run(side, warmupEvents)
    }

    const results: Array<RunResult> = []
    for (let rep = 0; rep < options.reps; rep++) {
      // Rotate the order so that no side always runs first (or right after a GC-heavy one).
      for (let k = 0; k < order.length; k++) {
        const side = order[(k + rep) % order.length]!
        const result = await run(side, events)
        if (result.failures > 0) throw new Error(`${side}: ${result.failures} failed deliveries`)
        results.push(result)
        log(
          `rep ${rep + 1} ${side.padEnd(2)} ${fmt(result.eventsPerSecond)} events/s  cpu ${
            fmt(result.cpuMsPer1k)
          } ms/1k  p50 ${fmt(result.p50, 2)} ms  p99 ${fmt(result.p99, 2)} ms`
        )
      }
    }

    const of = (side: RunResult["side"]) => results.filter((r) => r.side === side)
    const ratio = (num: RunResult["side"], den: RunResult["side"]) =>
      of(num).flatMap((r, i) => {
        const base = of(den)[i]
        return base === undefined ? [] : [r.eventsPerSecond / base.eventsPerSecond]
      })
    const fanoutVsRaw = ratio("B", "A")
    const transportVsRaw = ratio("T", "A")
    const genericVsRaw = ratio("G", "A")
    const noise = ratio("A'", "A")
    // CPU per delivery (two deliveries per event), µs.
    const perDelivery = (side: RunResult["side"]) =>
      of(side).length === 0 ? "not run" : fmt(median(of(side).map((r) => r.cpuMsPer1k)) / 2)
    const ratioRow = (label: string, xs: ReadonlyArray<number>) =>
      xs.length === 0 ? [] : [`| ${label} | ${spread(xs, 2)} |`]

    const table = [
      `### direct: Fanout \`send\` vs raw undici, two loopback targets`,
      ``,
      `${machine()}; ${options.events} events per run, ${options.concurrency} events in flight, targets answer ${
        options.delay === 0 ? "at once" : `after ${options.delay} ms`
      }, ${options.reps} reps after a ${options.warmup}-event warm-up per side; ${
        pinned ? "sender pinned to CPU 0, targets to CPU 1" : "not pinned"
      }`,
      ``,
      `| side | runs | events/s median (min–max) | sender CPU ms / 1k events | targets CPU | p50 ms | p99 ms |`,
      `|---|---:|---:|---:|---:|---:|---:|`,
      ...row("A: raw undici + Promise.allSettled", of("A")),
      ...row("A′: raw undici again (A/A noise)", of("A'")),
      ...row("T: bare transport (Transport.send × 2)", of("T")),
      ...row("B: Fanout send on Transport.layer, tracing off", of("B")),
      ...row("G: Fanout send on NodeHttpClient.layerUndici, native tracer on", of("G")),
      ``,
      `CPU µs per delivery (median): raw ${perDelivery("A")}, bare transport ${perDelivery("T")}, Fanout \`send\` ${
        perDelivery("B")
      }, Fanout on the generic client ${perDelivery("G")}.`,
      ``,
      `| ratio of events/s (per rep, same conditions) | median (min–max) |`,
      `|---|---:|`,
      ...ratioRow("B / A: Fanout ÷ raw", fanoutVsRaw),
      ...ratioRow("T / A: bare transport ÷ raw", transportVsRaw),
      ...ratioRow("G / A: Fanout on the generic client ÷ raw", genericVsRaw),
      ...ratioRow("A′ / A: raw ÷ raw (noise)", noise)
    ].join("\n")
    console.log(table)

    mkdirSync(".tmp", { recursive: true })
    const file = `.tmp/bench-direct-c${options.concurrency}-d${options.delay}.json`
    writeFileSync(
      file,
      JSON.stringify(
        {
          machine: machine(),
          options: { ...options, pinned },
          results,
          fanoutVsRaw,
          transportVsRaw,
          genericVsRaw,
          noise
        },
        null,
        2
      )
    )
    log(`wrote ${file}`)
  } finally {
    await targets.stop()
  }
}
