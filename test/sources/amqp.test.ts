/**
 * The RabbitMQ source against the machine's RabbitMQ (127.0.0.1:5672, guest/guest): delivery to
 * both targets, a poison message through the queue's own dead-letter exchange, an existing queue
 * used as it is (checked passively: its arguments stay), and the connection dropped by the broker
 * (`rabbitmqctl close_connection` on this source's own named connection) survived with nothing lost.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { type Channel, type ChannelModel, connect } from "amqplib"
import {
  brokers,
  configOf,
  removeDir,
  run,
  skipReason,
  sourceView,
  startTargets,
  tempDir,
  undelivered,
  unique,
  waitFor
} from "./helpers.js"

const exec = promisify(execFile)
const skip = await skipReason("sources/amqp.test", "amqp")
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => undefined)
}, 60_000)

const open = async (): Promise<{ conn: ChannelModel; ch: Channel }> => {
  const conn = await connect(brokers.amqp.url)
  const ch = await conn.createChannel()
  cleanups.push(() => conn.close())
  return { conn, ch }
}

/** Publishes `n` envelopes, the even ones with a `message-id`; answers the expected event ids. */
const publish = async (ch: Channel, queue: string, label: string, n: number): Promise<Array<string>> => {
  const { createHash } = await import("node:crypto")
  const ids: Array<string> = []
  for (let i = 0; i < n; i++) {
    const body = Buffer.from(JSON.stringify({ type: "order.placed", payload: { label, i } }))
    if (i % 2 === 0) {
      ch.sendToQueue(queue, body, { messageId: `${label}-${i}`, persistent: true })
      ids.push(`${label}-${i}`)
    } else {
      ch.sendToQueue(queue, body, { persistent: true })
      ids.push(createHash("sha256").update(body).digest("hex"))
    }
  }
  return ids
}

describe.skipIf(skip !== undefined)("RabbitMQ source", () => {
  it(
    "every message becomes an event delivered to both routed targets; a missing queue is declared durable",
    async () => {
      const { ch } = await open()
      const queue = unique("fanout-t")
      cleanups.push(() => ch.deleteQueue(queue).then(() => undefined))
      const targets = await startTargets()
      cleanups.push(targets.close)
      const dir = tempDir("amqp")
      cleanups.push(async () => removeDir(dir))
      const app = await run(
        configOf(dir, targets, [{ name: "billing", amqp: { url: brokers.amqp.url, queue, prefetch: 50 } }])
      )
      cleanups.push(app.stop)
      await waitFor(
        "the source running",
        async () => (await sourceView(app.url, "billing"))?.state === "running",
        30_000
      )
      const declared = await ch.checkQueue(queue)
      assert.strictEqual(declared.queue, queue)
      const ids = await publish(ch, queue, "q", 200)
      await waitFor("every message delivered to a and b", () => undelivered(targets, ids).length === 0, 60_000)
      await waitFor("every message acked", async () => (await sourceView(app.url, "billing"))?.acked === 200, 30_000)
      const view = await sourceView(app.url, "billing")
      assert.strictEqual(view?.kind, "amqp")
      assert.strictEqual(view?.received, 200)
      assert.strictEqual(view?.rejected, 0)
      for (const id of ids) assert.strictEqual(targets.b.okCount(`${id}:b`), 1, id)
      assert.strictEqual((await ch.checkQueue(queue)).messageCount, 0)
    },
    120_000
  )

  it(
    "a poison message goes to the queue's own dead-letter exchange (nack, requeue=false); the queue is not redeclared",
    async () => {
      const { ch } = await open()
      const queue = unique("fanout-p")
      const dlx = `${queue}.dlx`
      const dead = `${queue}.dead`
      await ch.assertExchange(dlx, "fanout", { durable: false, autoDelete: false })
      await ch.assertQueue(dead, { durable: false })
      await ch.bindQueue(dead, dlx, "")
      // An existing queue with arguments: a redeclaration without them would fail (PRECONDITION_FAILED).
      await ch.assertQueue(queue, { durable: true, arguments: { "x-dead-letter-exchange": dlx } })
      cleanups.push(async () => {
        await ch.deleteQueue(queue)
        await ch.deleteQueue(dead)
        await ch.deleteExchange(dlx)
      })
      ch.sendToQueue(queue, Buffer.from("not json {"), { messageId: "p-1" })
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ type: "invoice.sent", payload: {} })), { messageId: "p-2" })
      ch.sendToQueue(queue, Buffer.from(JSON.stringify({ type: "order.placed", payload: { ok: 1 } })), {
        messageId: "p-3"
      })
      const targets = await startTargets()
      cleanups.push(targets.close)
      const dir = tempDir("amqp-poison")
      cleanups.push(async () => removeDir(dir))
      const app = await run(configOf(dir, targets, [{ name: "poison", amqp: { url: brokers.amqp.url, queue } }]))
      cleanups.push(app.stop)
      await waitFor("the good one delivered", () => undelivered(targets, ["p-3"]).length === 0, 30_000)
      await waitFor("two dead-lettered", async () => (await ch.checkQueue(dead)).messageCount === 2, 30_000)
      const got: Array<string> = []
      for (let i = 0; i < 2; i++) {
        const m = await ch.get(dead, { noAck: true })
        if (m !== false) got.push(String(m.properties.messageId))
      }
      assert.deepStrictEqual(got.sort(), ["p-1", "p-2"])
      const view = await sourceView(app.url, "poison")
      assert.strictEqual(view?.rejected, 2)
      assert.strictEqual(view?.acked, 1)
    },
    120_000
  )

  it("survives its connection being closed by the broker: nothing lost", async () => {
    const { ch } = await open()
    const queue = unique("fanout-a")
    await ch.assertQueue(queue, { durable: true })
    cleanups.push(() => ch.deleteQueue(queue).then(() => undefined))
    const targets = await startTargets()
    cleanups.push(targets.close)
    const dir = tempDir("amqp-away")
    cleanups.push(async () => removeDir(dir))
    const name = unique("away")
    const app = await run(configOf(dir, targets, [{ name, amqp: { url: brokers.amqp.url, queue, prefetch: 10 } }]))
    cleanups.push(app.stop)
    const first = await publish(ch, queue, "a1", 100)
    await waitFor("some of the first batch delivered", () => undelivered(targets, first).length < 100, 30_000)
    // Close this source's own connection (found by its name), not anyone else's.
    const { stdout } = await exec("rabbitmqctl", [
      "list_connections",
      "pid",
      "client_properties",
      "-q",
      "--no-table-headers"
    ])
    const mine = stdout.split("\n").filter((line) => line.includes(`"fanout-source-${name}"`)).map((line) =>
      line.split("\t")[0]!
    )
    assert.strictEqual(mine.length, 1, stdout)
    await exec("rabbitmqctl", ["close_connection", mine[0]!, "fanout test: connection dropped"])
    const second = await publish(ch, queue, "a2", 100)
    await waitFor("the source reconnected", async () => (await sourceView(app.url, name))?.state === "running", 30_000)
    await waitFor(
      "both batches delivered",
      () => undelivered(targets, [...first, ...second]).length === 0,
      60_000
    )
    const view = await sourceView(app.url, name)
    assert.strictEqual(view?.rejected, 0)
    assert.isAtLeast(view?.acked ?? 0, 200 - 10)
  }, 180_000)
})
