/**
 * Benchmark "transport": the CPU one HTTP exchange costs the sender, for
 *
 * - raw: raw undici (`poster` of bench/lib/undici.ts: `Agent#request`, body read as text);
 * - lean: `Transport.make()`'s `send` (undici `dispatch` with a raw handler, one `Effect.async`);
 * - request: the same as lean but through undici's `Agent#request` + `body.bytes()` inside one
 *   `Effect.async` (the alternative the lean transport did not take; kept here to show why);
 * - adapter: `Transport.fromHttpClient` over `NodeHttpClient.layerUndici` (the platform's
 *   generic HttpClient: span, AbortController, FinalizationRegistry, stream body).
 *
 * Every side sends N JSON POSTs with an idempotency key to one loopback target (the mock
 * target process of bench/lib/targets.ts, pinned to CPU 1 with taskset when possible, the
 * sender to CPU 0), `concurrency` in flight (that many workers, each sending one request after
 * the other: the Effect sides run one fiber per worker, not one per request). Effect sides
 * build the request with `HttpClientRequest.post` + `bodyUnsafeJson` each time (what a target
 * does), raw undici does its `JSON.stringify`. Runs are interleaved after a warm-up, in a
 * rotating order; CPU is `process.cpuUsage()` of the sender over the run.
 *
 * Run: npx tsx bench/transport.ts [--requests=20000] [--concurrency=64] [--reps=3]
 *        [--warmup=4000] [--sides=raw,lean,request,adapter] [--no-pin]
 * (or npm run bench -- transport ...). Profile one side: node --cpu-prof --cpu-prof-dir=.tmp/prof
 * --import tsx bench/transport.ts --sides=lean --reps=1
 */
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Context, Effect, Layer, Scope } from "effect"
import { Agent } from "undici"
import * as Transport from "../src/Transport.js"
import { fmt, gc, machine, median, pin, spread } from "./lib/stats.js"
import * as MockTargets from "./lib/targets.js"
import { poster } from "./lib/undici.js"

const SIDES = ["raw", "lean", "request", "adapter"] as const
type Side = (typeof SIDES)[number]

interface Options {
  readonly requests: number
  readonly concurrency: number
  readonly reps: number
  readonly warmup: number
  readonly sides: ReadonlyArray<Side>
  readonly pin: boolean
}

const option = (args: ReadonlyArray<string>, name: string, fallback: number): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  if (arg === undefined) return fallback
  const value = Number(arg.slice(name.length + 3))
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be an integer >= 1`)
  return value
}

const parse = (args: ReadonlyArray<string>): Options => {
  const sides = args.find((a) => a.startsWith("--sides="))?.slice(8).split(",") ?? [...SIDES]
  for (const side of sides) {
    if (!(SIDES as ReadonlyArray<string>).includes(side)) throw new Error(`unknown side ${side}`)
  }
  return {
    requests: option(args, "requests", 20_000),
    concurrency: option(args, "concurrency", 64),
    reps: option(args, "reps", 3),
    warmup: option(args, "warmup", 4_000),
    sides: sides as ReadonlyArray<Side>, // checked against SIDES just above
    pin: !args.includes("--no-pin")
  }
}

interface RunResult {
  readonly side: Side
  readonly requests: number
  readonly seconds: number
  readonly perSecond: number
  /** Sender CPU (user + system) per request, µs. */
  readonly cpuUs: number
}

const body = (i: number) => ({ id: `evt-${i}`, orderId: `o-${i}`, sku: `sku-${i % 100}`, qty: 1 + (i % 5) })

/** One side, ready to run: `run(n, concurrency)` sends n requests and resolves when all are answered. */
interface Runner {
  readonly run: (n: number, concurrency: number) => Promise<void>
  readonly close: () => Promise<void>
}

const rawRunner = (url: string): Runner => {
  const agent = new Agent()
  const post = poster(agent)
  return {
    run: async (n, concurrency) => {
      let next = 0
      const worker = async () => {
        for (let i = next++; i < n; i = next++) await post(url, "/a", body(i), `evt-${i}:a`)
      }
      await Promise.all(Array.from({ length: concurrency }, worker))
    },
    close: () => agent.close()
  }
}

/** undici's `Agent#request` in one `Effect.async` per request, body read whole (the road not taken). */
const requestSend = (agent: Agent) => (request: HttpClientRequest.HttpClientRequest): Effect.Effect<number, Error> =>
  Effect.async<number, Error>((resume) => {
    const url = new URL(request.url)
    const controller = new AbortController()
    const bodyOf = request.body
    agent.request({
      origin: url.origin,
      path: url.pathname + url.search,
      method: request.method,
      headers: request.headers,
      body: bodyOf._tag === "Uint8Array" ? bodyOf.body : null,
      signal: controller.signal
    }).then(
      (response) => response.body.bytes().then(() => resume(Effect.succeed(response.statusCode))),
      (error: Error) => resume(Effect.fail(error))
    )
    return Effect.sync(() => controller.abort())
  })

/** What a target builds per event (part of the Effect sides' measured CPU; see {@link buildCost}). */
const buildRequest = (url: string, i: number): HttpClientRequest.HttpClientRequest =>
  HttpClientRequest.post(`${url}/a`).pipe(
    HttpClientRequest.setHeader("idempotency-key", `evt-${i}:a`),
    HttpClientRequest.bodyUnsafeJson(body(i))
  )

/** CPU µs of {@link buildRequest} alone (raw undici's counterpart is one JSON.stringify). */
const buildCost = (url: string, n: number): number => {
  const cpu0 = process.cpuUsage()
  let length = 0
  for (let i = 0; i < n; i++) length += buildRequest(url, i).url.length
  const cpu = process.cpuUsage(cpu0)
  if (length === 0) throw new Error("unreachable")
  return (cpu.user + cpu.system) / n
}

/** An Effect side: `concurrency` fibers, each sending its share one request after the other. */
const effectRunner = (
  url: string,
  make: Effect.Effect<
    (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<number, unknown>,
    never,
    Scope.Scope
  >
): Runner => {
  const scope = Effect.runSync(Scope.make())
  const send = Effect.runSync(Scope.extend(make, scope))
  return {
    run: (n, concurrency) => {
      let next = 0
      const worker = Effect.suspend(() => {
        const loop = (): Effect.Effect<void, unknown> => {
          const i = next++
          if (i >= n) return Effect.void
          const request = buildRequest(url, i)
          return Effect.flatMap(
            send(request),
            (status) => status >= 200 && status < 300 ? loop() : Effect.fail(new Error(`HTTP ${status}`))
          )
        }
        return loop()
      })
      return Effect.runPromise(
        Effect.all(Array.from({ length: concurrency }, () => worker), { concurrency: "unbounded", discard: true })
      )
    },
    close: () => Effect.runPromise(Scope.close(scope, Effect.runSync(Effect.exit(Effect.void))))
  }
}

const sendOptions: Transport.SendOptions = { timeoutMs: 10_000, maxResponseBytes: 1024 * 1024 }

const statusOf = (transport: Transport.Transport) => (request: HttpClientRequest.HttpClientRequest) =>
  Effect.map(transport.send(request, sendOptions), (response) => response.status)

const runners: Record<Side, (url: string) => Runner> = {
  raw: rawRunner,
  lean: (url) => effectRunner(url, Effect.map(Transport.make(), ({ transport }) => statusOf(transport))),
  request: (url) =>
    effectRunner(
      url,
      Effect.map(
        Effect.acquireRelease(Effect.sync(() => new Agent()), (agent) => Effect.promise(() => agent.close())),
        requestSend
      )
    ),
  adapter: (url) =>
    effectRunner(
      url,
      Effect.map(
        Layer.build(NodeHttpClient.layerUndici),
        (context) => statusOf(Transport.fromHttpClient(Context.get(context, HttpClient.HttpClient)))
      )
    )
}

const measure = async (
  side: Side,
  runner: Runner,
  targets: MockTargets.MockTargets,
  requests: number,
  concurrency: number
): Promise<RunResult> => {
  gc()
  await new Promise((r) => setTimeout(r, 100))
  const before = await targets.counts()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await runner.run(requests, concurrency)
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const after = await targets.counts()
  if (after.a - before.a !== requests) {
    throw new Error(`${side}: target received ${after.a - before.a}, expected ${requests}`)
  }
  return { side, requests, seconds, perSecond: requests / seconds, cpuUs: (cpu.user + cpu.system) / requests }
}

const labels: Record<Side, string> = {
  raw: "raw undici (Agent#request, body text)",
  lean: "lean Transport.send (dispatch, raw handler)",
  request: "Agent#request in one Effect.async (not taken)",
  adapter: "fromHttpClient(NodeHttpClient.layerUndici)"
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const options = parse(args)
  const log = (line: string) => process.stderr.write(`${line}\n`)
  const targets = await MockTargets.start(0)
  const active = new Map<Side, Runner>()
  try {
    const host = machine() // before pinning: nproc counts the CPUs this process may use
    const pinned = options.pin && pin(targets.pid, 1) && pin(process.pid, 0)
    for (const side of options.sides) active.set(side, runners[side](targets.urlA))
    log(
      `transport: ${options.requests} POSTs per run, ${options.concurrency} in flight, ${options.reps} reps, warm-up ${options.warmup}`
    )
    for (const [side, runner] of active) {
      log(`warm-up ${side} …`)
      await measure(side, runner, targets, options.warmup, options.concurrency)
    }
    const results: Array<RunResult> = []
    const order = options.sides
    for (let rep = 0; rep < options.reps; rep++) {
      for (let k = 0; k < order.length; k++) {
        const side = order[(k + rep) % order.length]!
        const result = await measure(side, active.get(side)!, targets, options.requests, options.concurrency)
        results.push(result)
        log(`rep ${rep + 1} ${side.padEnd(8)} ${fmt(result.perSecond)} req/s  cpu ${fmt(result.cpuUs, 1)} µs/req`)
      }
    }
    const of = (side: Side) => results.filter((r) => r.side === side)
    const lines = [
      `### transport: CPU per HTTP exchange, one loopback target`,
      ``,
      `${host}; ${options.requests} POSTs per run, ${options.concurrency} in flight, ${options.reps} reps after a ${options.warmup}-request warm-up per side; ${
        pinned ? "sender pinned to CPU 0, target to CPU 1" : "not pinned"
      }`,
      ``,
      `| side | requests/s median (min–max) | sender CPU µs / request median (min–max) |`,
      `|---|---:|---:|`,
      ...options.sides.map((side) =>
        `| ${labels[side]} | ${spread(of(side).map((r) => r.perSecond))} | ${spread(of(side).map((r) => r.cpuUs), 1)} |`
      )
    ]
    if (options.sides.includes("raw")) {
      lines.push(``, `| ratio to raw undici (per rep) | CPU / request | requests/s |`, `|---|---:|---:|`)
      for (const side of options.sides) {
        if (side === "raw") continue
        const cpu = of(side).map((r, i) => r.cpuUs / of("raw")[i]!.cpuUs)
        const rate = of(side).map((r, i) => r.perSecond / of("raw")[i]!.perSecond)
        lines.push(`| ${side} / raw | ${spread(cpu, 2)} | ${spread(rate, 2)} |`)
      }
      if (options.sides.includes("lean") && options.sides.includes("adapter")) {
        const cpu = of("adapter").map((r, i) => r.cpuUs / of("lean")[i]!.cpuUs)
        lines.push(`| adapter / lean | ${spread(cpu, 2)} | |`)
      }
    }
    const build = median([1, 2, 3].map(() => buildCost(targets.urlA, options.requests)))
    lines.push(
      ``,
      `Of each Effect side's CPU, building the HttpClientRequest (post + setHeader + bodyUnsafeJson, what a target does) is ${
        fmt(build, 1)
      } µs (measured alone); raw undici's counterpart is a JSON.stringify.`
    )
    console.log(lines.join("\n"))
    log(
      `median CPU µs/request: ${
        options.sides.map((s) => `${s} ${fmt(median(of(s).map((r) => r.cpuUs)), 1)}`).join(", ")
      }`
    )
  } finally {
    for (const runner of active.values()) await runner.close()
    await targets.stop()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main(process.argv.slice(2))
