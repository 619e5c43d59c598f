/**
 * Durable pipelines under crashes (SQLite, real processes): graphs `a ∥ b → c → d` are enqueued
 * while a worker process is SIGKILLed at random moments, five times, and restarted. The targets
 * fail at random (503s and connection resets) and answer every reception differently, so the test
 * can check that each dependent received its inputs *exactly as the inputs' targets answered
 * them* (the answer that was recorded as the delivery's success), never a stale or invented one.
 *
 * At the end: every graph completed (all four deliveries delivered); no dependent was sent before
 * all its inputs had been answered 2xx; c's `inputs` equal what a and b answered, d's what c
 * answered; and the file passes `PRAGMA integrity_check`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { Event } from "../../src/index.js"
import type { Config } from "../fixtures/durable-worker.js"
import {
  integrityCheck,
  killAll,
  prng,
  sleep,
  spawnWorker,
  sqliteStore,
  waitFor,
  type WorkerProcess
} from "./helpers.js"

interface Reception {
  readonly target: string
  readonly key: string
  readonly body: any
  /** What was answered: a status with its body, or a reset. */
  readonly status: number | "reset"
  readonly answer: unknown
  readonly at: number
}

/** One loopback server for every target (path `/<target>`), recording bodies and answers. */
const startTargets = async (fault: () => 503 | "reset" | "ok") => {
  const receptions: Array<Reception> = []
  let n = 0
  const server: Server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("error", () => {})
    req.on("end", () => {
      const target = (req.url ?? "/").slice(1)
      const key = String(req.headers["idempotency-key"] ?? "")
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "null")
      const choice = fault()
      if (choice === "reset") {
        receptions.push({ target, key, body, status: "reset", answer: undefined, at: Date.now() })
        req.socket.destroy()
        return
      }
      const status = choice === "ok" ? 200 : choice
      // Every reception answers something new: a dependent can only hold it if it was stored.
      const answer = { from: target, key, n: ++n }
      receptions.push({ target, key, body, status, answer, at: Date.now() })
      const text = JSON.stringify(answer)
      // A little latency, so that kills land while graphs are in flight.
      setTimeout(() => {
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
        res.end(text)
      }, 5 + (n % 20))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    receptions,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

const dir = mkdtempSync(join(tmpdir(), "fanout-pipeline-crash-"))
const workers: Array<WorkerProcess> = []
let closeTargets: () => Promise<void> = async () => {}

afterAll(async () => {
  await killAll(workers)
  await closeTargets()
  rmSync(dir, { recursive: true, force: true })
})

const TARGETS = ["a", "b", "c", "d"] as const
const AFTER = { c: ["a", "b"], d: ["c"] } as const

describe("durable pipelines: crash (SQLite, real processes)", () => {
  it("SIGKILLed 5 times while graphs are in flight: every graph completes with the inputs as answered", {
    timeout: 150_000
  }, async () => {
    const seed = Number(process.env.FANOUT_SEED ?? Date.now() % 1_000_000)
    console.log(`pipeline crash test seed=${seed} (FANOUT_SEED=${seed} to replay the fault choices)`)
    const random = prng(seed)
    const targets = await startTargets(() => {
      const r = random()
      return r < 0.15 ? 503 : r < 0.2 ? "reset" : "ok"
    })
    closeTargets = targets.close
    const filename = join(dir, "outbox.db")
    const store = sqliteStore(filename, "FULL")
    const N = 120
    const ids = Array.from({ length: N }, (_, i) => `graph-${seed}-${i}`)
    const enqueue = (from: number, to: number) =>
      store.run((s) =>
        Effect.forEach(ids.slice(from, to), (id, i) =>
          Effect.flatMap(
            Event.make("order.placed", { n: from + i }, { id }),
            (event) => s.enqueue(event, TARGETS, { after: AFTER })
          ), { concurrency: 20, discard: true })
      )
    await enqueue(0, N / 2)

    const config = (k: number): Config => ({
      store: { kind: "sqlite", filename, synchronous: "FULL" },
      targets: TARGETS.map((name) => ({ name, url: targets.url, timeoutMs: 600 })),
      worker: { workerId: `pipeline-crash-${k}`, concurrency: 16, batchSize: 8, leaseMs: 1_000, pollIntervalMs: 100 },
      reportMs: 100
    })

    const kills = 5
    let killedInFlight = 0
    for (let k = 0; k < kills; k++) {
      const w = spawnWorker(config(k))
      workers.push(w)
      await w.ready
      if (k === 1) await enqueue(N / 2, N)
      if ((await store.run((s) => s.stats)).depth === 0) {
        w.signal("SIGKILL")
        await w.exited
        continue
      }
      await waitFor("the worker claims", () => (w.state()?.claimedTotal ?? 0) > 0, 30_000, 20)
      await sleep(50 + Math.floor(random() * 600))
      w.signal("SIGKILL")
      assert.strictEqual(await w.exited, null, "killed by a signal")
      killedInFlight++
      console.log(`kill ${k + 1}: after ${w.state()?.delivered ?? 0} deliveries`)
    }
    assert.isAtLeast(killedInFlight, 3, "most kills landed while graphs were in flight")
    const last = spawnWorker(config(kills))
    workers.push(last)
    await last.ready
    await waitFor(
      "every graph complete",
      async () => (await store.run((s) => s.stats)).delivered === 4 * N,
      90_000,
      200
    )
    last.signal("SIGTERM")
    await last.exited

    const ok = (target: string, id: string) =>
      targets.receptions.filter((r) => r.target === target && r.key === `${id}:${target}` && r.status === 200)
    const statuses = await store.run((s) => Effect.forEach(ids, (id) => Effect.map(s.status(id), Option.getOrThrow)))
    let repeats = 0
    for (const [i, id] of ids.entries()) {
      const status = statuses[i]!
      assert.deepStrictEqual(status.deliveries.map((d) => [d.target, d.status]), TARGETS.map((t) => [t, "delivered"]))
      for (const target of TARGETS) {
        const answered = ok(target, id)
        assert.isAbove(answered.length, 0, `${id}:${target} answered 2xx`)
        repeats += answered.length - 1
      }
      // Each dependent was sent only after its inputs had answered 2xx, and every reception of it
      // carried inputs exactly as one of those inputs' 2xx answers (the recorded one).
      for (const [dependent, inputs] of Object.entries(AFTER)) {
        const sent = targets.receptions.filter((r) => r.target === dependent && r.key === `${id}:${dependent}`)
        assert.isAbove(sent.length, 0)
        for (const reception of sent) {
          const payload = reception.body.payload
          assert.strictEqual(payload.event.id, id)
          assert.deepStrictEqual(Object.keys(payload.inputs).sort(), [...inputs].sort())
          for (const input of inputs) {
            const answers = ok(input, id)
            assert.isTrue(
              answers.some((a) => JSON.stringify(a.answer) === JSON.stringify(payload.inputs[input])),
              `${id}: ${dependent} got ${JSON.stringify(payload.inputs[input])} from ${input}, which answered ${
                JSON.stringify(answers.map((a) => a.answer))
              }`
            )
            assert.isAtLeast(reception.at, Math.min(...answers.map((a) => a.at)))
          }
        }
        // All receptions of one dependent carried the same inputs: what was stored never changed.
        assert.strictEqual(new Set(sent.map((r) => JSON.stringify(r.body.payload.inputs))).size, 1)
      }
    }
    console.log(
      `pipeline crash: ${N} graphs × ${TARGETS.length} steps complete; ${repeats} 2xx answers repeated (crash or lease expiry after an answer)`
    )
    await store.dispose()
    assert.strictEqual(await integrityCheck(filename), "ok")
  })
})
