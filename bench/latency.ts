/**
 * Benchmark "latency": wall-clock time of one send when the APIs are slow, the speed comparisons
 * that used to be thresholds in `npm test` (test/integration/fanout.test.ts, "two 200 ms targets
 * take about 200 ms, not 400"; test/pipeline/timing.test.ts, "best of 3 under 280 ms"). The tests
 * now assert the order of requests and answers instead, which no machine load can upset; the
 * times are measured here:
 *
 * - fan-out: two targets that answer after `--delay` ms; concurrent sending takes about `delay`,
 *   one after the other would take `2 × delay`;
 * - pipeline: A (`delay/2`) and B (`delay`) in parallel, C after A (`delay/2`): the critical path is
 *   `delay`, a level-by-level run (A and B, then C) would take `1.5 × delay`.
 *
 * Each runs `--reps` times after two warm-up runs over loopback (TestTarget.serve, undici).
 * Prints the runs, their median and best, and the two bounds.
 *
 * Run: npm run bench -- latency [--delay=200] [--reps=10]
 */
import { HttpClientRequest } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { performance } from "node:perf_hooks"
import { Event, Fanout, Pipeline, Router, Target } from "../src/index.js"
import { Fault, TestTarget } from "../src/testing.js"

const option = (args: ReadonlyArray<string>, name: string, fallback: number): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  const value = arg === undefined ? fallback : Number(arg.slice(name.length + 3))
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`)
  return value
}

const api = <const N extends string>(name: N, latency: number) =>
  Effect.map(
    TestTarget.serve(TestTarget.make(name, { faults: () => Fault.ok({ latency }) })),
    (loopback) =>
      Target.make(name, {
        request: (e) =>
          HttpClientRequest.post(`${loopback.url}/${name}`).pipe(HttpClientRequest.bodyUnsafeJson(e.payload)),
        policy: { retry: { maxAttempts: 1 }, circuitBreaker: false }
      })
  )

const measure = (reps: number, once: (id: string) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    for (const id of ["warm-up-1", "warm-up-2"]) yield* once(id)
    const times: Array<number> = []
    for (let i = 0; i < reps; i++) {
      const start = performance.now()
      yield* once(`run-${i}`)
      times.push(performance.now() - start)
    }
    return times
  })

const summary = (label: string, times: ReadonlyArray<number>, floor: number, naive: number) => {
  const sorted = [...times].sort((a, b) => a - b)
  const median = sorted[Math.floor(sorted.length / 2)]!
  return `${label}: median ${median.toFixed(1)} ms, best ${sorted[0]!.toFixed(1)} ms ` +
    `(floor ${floor} ms; without concurrency at least ${naive} ms); runs ${times.map((t) => t.toFixed(0)).join(", ")}`
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const delay = option(args, "delay", 200)
  const reps = option(args, "reps", 10)
  const half = Math.round(delay / 2)
  const program = Effect.gen(function*() {
    const x = yield* api("x", delay)
    const y = yield* api("y", delay)
    const context = yield* Layer.build(Layer.merge(x.layer, y.layer).pipe(Layer.provide(NodeHttpClient.layerUndici)))
    const sender = yield* Fanout.make(Router.make().route("ping", [x, y])).pipe(Effect.provide(context))
    const fanout = yield* measure(reps, (id) => Effect.flatMap(Event.make("ping", {}, { id }), sender.send))
    const a = yield* api("a", half)
    const b = yield* api("b", delay)
    const c = yield* api("c", half)
    const pipeline = Pipeline.make().step(a).step(b).step(c, { after: [a] })
    const times = yield* Effect.gen(function*() {
      const runner = yield* Pipeline.runner(pipeline)
      return yield* measure(
        reps,
        (id) => Effect.flatMap(Event.make("ping", {}, { id }), (e) => runner.run(e, { mode: "all" }))
      )
    }).pipe(Effect.provide(Layer.mergeAll(a.layer, b.layer, c.layer).pipe(Layer.provide(NodeHttpClient.layerUndici))))
    process.stdout.write(`${summary("fan-out, 2 targets", fanout, delay, 2 * delay)}\n`)
    process.stdout.write(`${summary("pipeline A‖B, C after A", times, delay, delay + half)}\n`)
  })
  await Effect.runPromise(Effect.scoped(program))
}
