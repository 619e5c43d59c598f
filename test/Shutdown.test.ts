/**
 * Graceful shutdown of a real `fanout serve` process under load: every event the server
 * acknowledged (202/200) before, during or after SIGTERM is delivered to every target — by this
 * process before it exits, or after a restart on the same SQLite file — and every event it did not
 * store was refused with an error the client saw. The process exits 0.
 *
 * Real time and real processes: the margins are generous (a loaded 2-core machine starts a tsx
 * process in 5–20 s), and nothing asserts a tight timing.
 */
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { reply, startServer } from "./integration/helpers.js"
import { killGroup, spawnFanout } from "./Main.helpers.js"

interface Running {
  readonly child: ChildProcess
  readonly url: string
  readonly output: () => string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/** Starts `fanout serve --config file` and waits for its "listening" log line. */
const serve = (file: string): Promise<Running> =>
  new Promise((resolve, reject) => {
    const child = spawnFanout(["serve", "--config", file])
    let output = ""
    let announced = false
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.on("exit", (code, signal) => done({ code, signal }))
    )
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL")
      reject(new Error(`the server did not start within 120 s:\n${output}`))
    }, 120_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const match = /"message":"fanout: listening on (http:\/\/[^"]+)"/.exec(output)
      if (match !== null && !announced) {
        announced = true
        clearTimeout(timer)
        resolve({ child, url: match[1]!, output: () => output, exited })
      }
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    void exited.then(({ code }) => {
      if (!announced) {
        clearTimeout(timer)
        reject(new Error(`the server exited (${code}) before listening:\n${output}`))
      }
    })
  })

type Result = "acked" | "refused"

describe("Shutdown", () => {
  it.scopedLive(
    "SIGTERM under load: acknowledged events are all delivered (after a restart if need be), the rest refused; exit 0",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "fanout-shutdown-"))
        // Targets answer after a delay, so deliveries are in flight when the signal comes; notification
        // is slow and held to 4 at a time, so a backlog is left in the store for the restart.
        const targets = yield* startServer((_req, res, r) => {
          setTimeout(() => reply(res, 200), r.path === "/notification" ? 200 : 15)
        })
        const file = join(dir, "fanout.config.json")
        writeFileSync(
          file,
          JSON.stringify({
            server: { host: "127.0.0.1", port: 0 },
            store: { sqlite: "fanout.db" },
            targets: {
              inventory: { url: `${targets.url}/inventory`, timeout: "5 seconds" },
              notification: { url: `${targets.url}/notification`, timeout: "5 seconds", concurrency: 4 }
            },
            routes: { "order.*": ["inventory", "notification"] }
          })
        )
        const results = new Map<string, Result>()
        const outcome = yield* Effect.promise(async () => {
          const first = await serve(file)
          let signalledAt = 0
          let sent = 0
          let sentAfterSignal = 0
          let ackedAfterSignal = 0
          const loop = async (worker: number) => {
            let refusedInARow = 0
            for (let n = 0; refusedInARow < 3; n++) {
              const id = `ev-${worker}-${n}`
              sent++
              if (signalledAt > 0) sentAfterSignal++
              let result: Result = "refused"
              try {
                const response = await fetch(`${first.url}/v1/events`, {
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body: JSON.stringify({ id, type: "order.placed", payload: { n } }),
                  signal: AbortSignal.timeout(30_000)
                })
                await response.text()
                result = response.status === 202 || response.status === 200 ? "acked" : "refused"
              } catch {
                result = "refused"
              }
              results.set(id, result)
              if (result === "acked" && signalledAt > 0) ackedAfterSignal++
              refusedInARow = result === "refused" && signalledAt > 0 ? refusedInARow + 1 : 0
              if (result === "refused") await new Promise((r) => setTimeout(r, 20))
            }
          }
          const loops = Array.from({ length: 8 }, (_, i) => loop(i))
          // Load until a few hundred events are acknowledged, then signal.
          const deadline = Date.now() + 60_000
          while ([...results.values()].filter((r) => r === "acked").length < 200 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 20))
          }
          signalledAt = Date.now()
          killGroup(first.child, "SIGTERM")
          const exit = await first.exited
          await Promise.all(loops)
          return { exit, sent, sentAfterSignal, ackedAfterSignal, output: first.output() }
        })

        assert.deepStrictEqual(outcome.exit, { code: 0, signal: null }, outcome.output.slice(-3000))
        assert.include(outcome.output, "fanout: shutting down")
        assert.include(outcome.output, "fanout: stopped")
        const acked = [...results].filter(([, r]) => r === "acked").map(([id]) => id)
        assert.isAtLeast(acked.length, 200, "the load was real")
        assert.isAbove(outcome.sentAfterSignal, 0, "requests kept coming while the server shut down")
        assert.isAbove(targets.on("/notification").length, 0, "deliveries were under way")

        // Restart on the same SQLite file: whatever was acknowledged and not yet delivered goes out now.
        const delivered = (path: string) =>
          new Set(targets.on(path).map((r) => r.headers["x-fanout-event-id"] as string))
        const missing = () => {
          const inventory = delivered("/inventory")
          const notification = delivered("/notification")
          return acked.filter((id) => !inventory.has(id) || !notification.has(id))
        }
        const beforeRestart = missing().length
        console.log(
          `shutdown under load: ${outcome.sent} sent, ${acked.length} acknowledged, ${outcome.sentAfterSignal} sent after SIGTERM ` +
            `(${outcome.ackedAfterSignal} of them acknowledged), ${beforeRestart} acknowledged but left for the restart`
        )
        const second = yield* Effect.promise(() => serve(file))
        yield* targets.until(() => missing().length === 0, "90 seconds").pipe(
          Effect.catchAllDefect(() => Effect.void)
        )
        const lost = missing()
        killGroup(second.child, "SIGTERM")
        const secondExit = yield* Effect.promise(() => second.exited)
        rmSync(dir, { recursive: true, force: true })

        assert.deepStrictEqual(
          lost,
          [],
          `acknowledged but never delivered (of ${acked.length}; ${beforeRestart} were left for the restart)`
        )
        assert.deepStrictEqual(secondExit, { code: 0, signal: null }, second.output().slice(-3000))
        // Every target got each acknowledged event under its own idempotency key.
        for (const path of ["/inventory", "/notification"]) {
          const keys = new Set(targets.on(path).map((r) => r.key))
          for (const id of acked) assert.isTrue(keys.has(`${id}:${path.slice(1)}`))
        }
      }),
    { timeout: 300_000 }
  )
})
