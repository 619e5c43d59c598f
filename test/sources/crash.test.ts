/**
 * Crashes while consuming: a real `fanout serve` (SQLite FULL) consuming a RabbitMQ queue of 2,000
 * messages is SIGKILLed 5 times, at seeded moments chosen by progress (how many messages have
 * reached both targets), and started again on the same file each time; a last one drains. Every
 * message reaches every target at least once (lost = 0), the queue ends empty, and the duplicate
 * deliveries (a message redelivered by the broker after a kill is deduplicated by its event id;
 * a delivery sent but not recorded before a kill is sent again) are counted and printed.
 *
 * FANOUT_SOURCE_CRASH_MESSAGES (default 2000) and FANOUT_SOURCE_CRASH_KILLS (default 5) change the
 * run; the seed is printed and FANOUT_SEED replays the kill moments.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { connect } from "amqplib"
import { prng } from "../durable/helpers.js"
import { killGroup, spawnFanout } from "../Main.helpers.js"
import {
  brokers,
  configOf,
  freePort,
  removeDir,
  skipReason,
  startTargets,
  tempDir,
  undelivered,
  unique,
  waitFor
} from "./helpers.js"

const skip = await skipReason("sources/crash.test", "amqp")
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => undefined)
}, 60_000)

const ready = async (url: string) => {
  try {
    const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) })
    await response.arrayBuffer()
    return response.status === 200
  } catch {
    return false
  }
}

describe.skipIf(skip !== undefined)("fanout serve consuming RabbitMQ, SIGKILLed", () => {
  it("every message reaches every target at least once: lost = 0, duplicates reported", async () => {
    const total = Number(process.env.FANOUT_SOURCE_CRASH_MESSAGES ?? 2000)
    const kills = Number(process.env.FANOUT_SOURCE_CRASH_KILLS ?? 5)
    const seed = Number(process.env.FANOUT_SEED ?? Date.now() % 1_000_000)
    console.log(`source crash test seed=${seed} messages=${total} kills=${kills} (FANOUT_SEED=${seed} replays)`)
    const random = prng(seed)

    const conn = await connect(brokers.amqp.url)
    cleanups.push(() => conn.close())
    const ch = await conn.createChannel()
    const queue = unique("fanout-crash")
    await ch.assertQueue(queue, { durable: true })
    cleanups.push(() => ch.deleteQueue(queue).then(() => undefined))
    const ids: Array<string> = []
    for (let i = 0; i < total; i++) {
      const id = `crash-${seed}-${i}`
      ids.push(id)
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ type: "order.placed", payload: { i } })), {
        messageId: id,
        persistent: true
      })
    }
    await waitFor("every message in the queue", async () => (await ch.checkQueue(queue)).messageCount === total, 30_000)

    const targets = await startTargets()
    cleanups.push(targets.close)
    const dir = tempDir("source-crash")
    cleanups.push(async () => removeDir(dir))
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const file = join(dir, "fanout.json")
    writeFileSync(
      file,
      JSON.stringify(
        configOf(dir, targets, [{ name: "crash", amqp: { url: brokers.amqp.url, queue, prefetch: 100 } }], port)
      )
    )
    const serve = () => {
      const child = spawnFanout(["serve", "--config", file, "--log-format", "none"])
      cleanups.push(async () => killGroup(child, "SIGKILL"))
      let stderr = ""
      child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      return { child, exited, stderr: () => stderr }
    }
    const delivered = () => total - undelivered(targets, ids).length

    const tally: Array<string> = []
    for (let k = 0; k < kills; k++) {
      const server = serve()
      await waitFor(`fanout serve ready (run ${k})\n${server.stderr()}`, () => ready(url), 60_000)
      // Kill at a seeded point of progress: between this run's share of the messages, so every kill
      // lands while messages are still arriving.
      const share = total / (kills + 1)
      const at = Math.min(total - 1, Math.floor(share * k + share * (0.3 + 0.7 * random())))
      await waitFor(
        `run ${k}: ${at} messages delivered to both\n${server.stderr()}`,
        () => delivered() >= at,
        120_000,
        5
      )
      killGroup(server.child, "SIGKILL")
      await server.exited
      tally.push(`kill ${k + 1} at ${delivered()} of ${total} delivered to both`)
    }
    const last = serve()
    await waitFor(`fanout serve ready (drain)\n${last.stderr()}`, () => ready(url), 60_000)
    await waitFor(
      `every message delivered to a and b (missing ${undelivered(targets, ids).length})`,
      () => undelivered(targets, ids).length === 0,
      180_000,
      100
    )
    await waitFor("the queue empty (every message acked)", async () => {
      const q = await ch.checkQueue(queue)
      return q.messageCount === 0
    }, 60_000)
    killGroup(last.child, "SIGTERM")
    await last.exited

    const lost = undelivered(targets, ids).length
    const duplicates = (receiver: typeof targets.a) =>
      [...receiver.byKey.values()].reduce((n, receipts) => n + Math.max(0, receipts.length - 1), 0)
    const stray = [...targets.a.byKey.keys()].filter((key) => !ids.includes(key.replace(/:a$/, "")))
    console.log(
      `source crash tally (seed ${seed}): ${kills} kills, ${total} messages, lost ${lost}, ` +
        `duplicate deliveries a=${duplicates(targets.a)} b=${duplicates(targets.b)}, ` +
        `receipts a=${targets.a.receipts.length} b=${targets.b.receipts.length}\n  ${tally.join("\n  ")}`
    )
    assert.strictEqual(lost, 0)
    assert.deepStrictEqual(stray, [])
  }, 600_000)
})
