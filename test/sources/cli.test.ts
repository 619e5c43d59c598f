/**
 * The command line of sources: `fanout consume --source NAME` runs one configured source alone (no
 * API, no workers: the events wait in the store for `fanout worker`), refuses an unknown name with
 * a usage error (exit 2), and `fanout sources` prints a server's `GET /v1/sources`.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Redis } from "ioredis"
import { killGroup, runFanout, spawnFanout } from "../Main.helpers.js"
import {
  brokers,
  configOf,
  removeDir,
  run,
  skipReason,
  startTargets,
  tempDir,
  undelivered,
  unique,
  waitFor
} from "./helpers.js"

const skip = await skipReason("sources/cli.test", "redis")
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => undefined)
}, 60_000)

describe.skipIf(skip !== undefined)("fanout consume / fanout sources", () => {
  it("consume --source runs that source alone; the worker delivers; an unknown name exits 2", async () => {
    const r = new Redis(brokers.redis.url)
    cleanups.push(() => r.quit().then(() => undefined))
    const stream = unique("fanout-cli")
    cleanups.push(() => r.del(stream).then(() => undefined))
    const ids: Array<string> = []
    for (let i = 0; i < 20; i++) {
      ids.push(
        `${stream}:${await r.xadd(stream, "*", "body", JSON.stringify({ type: "order.placed", payload: { i } }))}`
      )
    }
    const targets = await startTargets()
    cleanups.push(targets.close)
    const dir = tempDir("source-cli")
    cleanups.push(async () => removeDir(dir))
    const file = join(dir, "fanout.json")
    writeFileSync(
      file,
      JSON.stringify(
        configOf(dir, targets, [{ name: "audit", redis: { url: { env: "AUDIT_REDIS_URL" }, stream, group: "fanout" } }])
      )
    )

    const unknown = await runFanout(["consume", "--config", file, "--source", "nope"], {
      AUDIT_REDIS_URL: brokers.redis.url
    })
    assert.strictEqual(unknown.code, 2, unknown.stderr)
    assert.include(unknown.stderr, "no source named \"nope\" (configured: audit)")

    const consumer = spawnFanout(["consume", "--config", file, "--source", "audit", "--log-format", "none"], {
      AUDIT_REDIS_URL: brokers.redis.url
    })
    cleanups.push(async () => killGroup(consumer, "SIGKILL"))
    await waitFor("the entries consumed and acked", async () => {
      const pending = (await r.xpending(stream, "fanout").catch(() => [1])) as [number]
      const info = (await r.call("XINFO", "GROUPS", stream).catch(() => [])) as Array<Array<unknown>>
      const lag = info[0]?.[info[0].indexOf("lag") + 1]
      return pending[0] === 0 && lag === 0
    }, 60_000)
    // Nothing delivered yet: consume runs no workers.
    assert.strictEqual(targets.a.receipts.length, 0)
    const exited = new Promise<void>((resolve) => consumer.once("exit", () => resolve()))
    killGroup(consumer, "SIGTERM")
    await exited
    // A server on the same store (its source is another one) delivers what consume stored.
    const app = await run(configOf(dir, targets, []))
    cleanups.push(app.stop)
    await waitFor("every consumed entry delivered", () => undelivered(targets, ids).length === 0, 60_000)

    const listed = await runFanout(["sources", "--url", app.url])
    assert.strictEqual(listed.code, 0, listed.stderr)
    assert.deepStrictEqual(JSON.parse(listed.stdout), { sources: [] })
  }, 180_000)
})
