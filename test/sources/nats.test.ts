/**
 * The NATS JetStream source against real servers: the machine's (127.0.0.1:4222) for delivery and
 * the dead-letter path (`term` → the MSG_TERMINATED advisory), a private `nats-server` (its own
 * port and store folder) stopped and started again for "the broker goes away".
 */
import { headers as natsHeaders } from "@nats-io/nats-core"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, assert, describe, it } from "@effect/vitest"
import {
  configOf,
  privateNats,
  removeDir,
  run,
  type Running,
  skipReason,
  sourceView,
  startTargets,
  tempDir,
  undelivered,
  unique,
  waitFor
} from "./helpers.js"

const skip = await skipReason("sources/nats.test", "nats")
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => undefined)
}, 60_000)

const setupStream = async (nc: NatsConnection, stream: string, subject: string) => {
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: stream, subjects: [subject] })
  cleanups.push(() => jsm.streams.delete(stream).then(() => undefined))
}

/** Publishes `n` envelopes: the even ones with a `Nats-Msg-Id` header. Answers the expected event ids. */
const publish = async (nc: NatsConnection, stream: string, subjectBase: string, label: string, n: number) => {
  const js = jetstream(nc)
  const ids: Array<string> = []
  for (let i = 0; i < n; i++) {
    const body = JSON.stringify({ type: "order.placed", payload: { label, i } })
    if (i % 2 === 0) {
      const h = natsHeaders()
      h.set("Nats-Msg-Id", `${label}-${i}`)
      await js.publish(`${subjectBase}.${i}`, body, { headers: h })
      ids.push(`${label}-${i}`)
    } else {
      const ack = await js.publish(`${subjectBase}.${i}`, body)
      ids.push(`${stream}:${ack.seq}`)
    }
  }
  return ids
}

describe.skipIf(skip !== undefined)("NATS JetStream source", () => {
  it("every message becomes an event delivered to both routed targets; acked, counted, in /metrics", async () => {
    const nc = await connect({ servers: "nats://127.0.0.1:4222" })
    cleanups.push(() => nc.close())
    const stream = unique("FANOUT_T")
    await setupStream(nc, stream, `${stream}.>`)
    const ids = await publish(nc, stream, `${stream}.orders`, "n", 200)
    const targets = await startTargets()
    cleanups.push(targets.close)
    const dir = tempDir("nats")
    cleanups.push(async () => removeDir(dir))
    const app: Running = await run(configOf(dir, targets, [{
      name: "orders",
      nats: { servers: "nats://127.0.0.1:4222", stream, subject: `${stream}.orders.>`, durable: "fanout" }
    }]))
    cleanups.push(app.stop)
    await waitFor("every message delivered to a and b", () => undelivered(targets, ids).length === 0, 60_000)
    await waitFor("every message acked", async () => (await sourceView(app.url, "orders"))?.acked === 200, 30_000)
    const view = await sourceView(app.url, "orders")
    assert.strictEqual(view?.kind, "nats")
    assert.strictEqual(view?.received, 200)
    assert.strictEqual(view?.stored, 200)
    assert.strictEqual(view?.rejected, 0)
    await waitFor("the lag read as 0", async () => (await sourceView(app.url, "orders"))?.lag === 0, 30_000)
    const metrics = await (await fetch(`${app.url}/metrics`)).text()
    assert.match(
      metrics,
      /fanout_source_messages_total\{[^}]*outcome="acked"[^}]*source="orders"[^}]*\} 200|fanout_source_messages_total\{[^}]*source="orders"[^}]*outcome="acked"[^}]*\} 200/
    )
    // Exactly once each at the targets here: no crash, no redelivery.
    for (const id of ids) assert.strictEqual(targets.a.okCount(`${id}:a`), 1, id)
  }, 120_000)

  it(
    "a poison message is terminated (the MSG_TERMINATED advisory) and counted; the good one still goes through",
    async () => {
      const nc = await connect({ servers: "nats://127.0.0.1:4222" })
      cleanups.push(() => nc.close())
      const stream = unique("FANOUT_P")
      await setupStream(nc, stream, `${stream}.>`)
      const advisories: Array<{ stream_seq: number }> = []
      const sub = nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.${stream}.fanout`, {
        callback: (_error, msg) => {
          advisories.push(msg.json())
        }
      })
      cleanups.push(async () => sub.unsubscribe())
      const js = jetstream(nc)
      const notJson = await js.publish(`${stream}.x`, "not json {")
      const unrouted = await js.publish(`${stream}.x`, JSON.stringify({ type: "invoice.sent", payload: {} }))
      const good = await js.publish(`${stream}.x`, JSON.stringify({ type: "order.placed", payload: { ok: true } }))
      const targets = await startTargets()
      cleanups.push(targets.close)
      const dir = tempDir("nats-poison")
      cleanups.push(async () => removeDir(dir))
      const app = await run(configOf(dir, targets, [{
        name: "poison",
        nats: { servers: "nats://127.0.0.1:4222", stream, subject: `${stream}.>`, durable: "fanout" }
      }]))
      cleanups.push(app.stop)
      await waitFor("two MSG_TERMINATED advisories", () => advisories.length === 2, 30_000)
      assert.deepStrictEqual(advisories.map((a) => a.stream_seq).sort(), [notJson.seq, unrouted.seq].sort())
      await waitFor(
        "the good one delivered",
        () => undelivered(targets, [`${stream}:${good.seq}`]).length === 0,
        30_000
      )
      const view = await sourceView(app.url, "poison")
      assert.strictEqual(view?.rejected, 2)
      assert.strictEqual(view?.acked, 1)
    },
    120_000
  )

  it("survives its broker stopping and starting again: nothing lost", async () => {
    const dir = tempDir("nats-away")
    cleanups.push(async () => removeDir(dir))
    const broker = await privateNats(dir)
    await broker.start()
    cleanups.push(broker.stop)
    const servers = `nats://127.0.0.1:${broker.port}`
    const stream = unique("FANOUT_A")
    let nc = await connect({ servers })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] })
    const first = await publish(nc, stream, `${stream}.o`, "a1", 50)
    await nc.close()
    const targets = await startTargets()
    cleanups.push(targets.close)
    const app = await run(configOf(dir, targets, [{
      name: "away",
      nats: { servers, stream, subject: `${stream}.>`, durable: "fanout" }
    }]))
    cleanups.push(app.stop)
    await waitFor("the first batch delivered", () => undelivered(targets, first).length === 0, 60_000)
    await broker.stop()
    await broker.start()
    nc = await connect({ servers })
    cleanups.push(() => nc.close())
    const second = await publish(nc, stream, `${stream}.o`, "a2", 50)
    await waitFor(
      "the second batch delivered after the restart",
      () => undelivered(targets, second).length === 0,
      90_000
    )
    const view = await sourceView(app.url, "away")
    assert.strictEqual(view?.rejected, 0)
    assert.isAtLeast(view?.acked ?? 0, 100)
  }, 180_000)
})
