/**
 * The other process of a split isolation run (bench/durable/isolation.ts, `split: true`): target A's
 * loopback server (healthy or hung) and a worker that serves A only, on the run's SQLite file — what
 * `fanout worker --targets a` does. Prints "ready" on the IPC channel once its worker runs; the
 * parent kills it at the end of the run.
 *
 * Run (by the parent): node --import tsx bench/durable/isolation-worker.ts <sqlite file> <healthy|hung> <timeout ms>
 */
import * as Transport from "../../src/Transport.js"
import { Effect, Layer } from "effect"
import * as Sqlite from "../../src/Store/Sqlite.js"
import { Worker } from "../../src/index.js"
import { serve, targetA } from "./isolation.js"

const [file, mode, timeout] = process.argv.slice(2)
const a = await serve(mode === "hung")
const A = targetA(a.url, Number(timeout), false)

const program = Effect.gen(function*() {
  // A's share as it is in the one-process run: half of concurrency 64.
  yield* Worker.make({
    targets: [A],
    concurrency: 32,
    batchSize: 16,
    pollInterval: "50 millis",
    shutdownGrace: "100 millis",
    metricsInterval: false
  })
  process.send?.({ ready: true })
  return yield* Effect.never
})

void Effect.runPromise(program.pipe(
  Effect.scoped,
  Effect.provide(
    Layer.merge(A.layer.pipe(Layer.provide(Transport.layer())), Sqlite.layer({ filename: file!, synchronous: "FULL" }))
  )
))
