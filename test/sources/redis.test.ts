/**
 * The Redis Streams source against the machine's Redis (127.0.0.1:6379) for delivery, the
 * dead-letter stream and XAUTOCLAIM of a dead consumer's entries, and a private `redis-server`
 * (its own port, an append-only file) stopped and started again for "the broker goes away".
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Redis } from "ioredis"
import {
  brokers,
  configOf,
  privateRedis,
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

const skip = await skipReason("sources/redis.test", "redis")
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => undefined)
}, 60_000)

const client = (url: string = brokers.redis.url) => {
  const r = new Redis(url, { lazyConnect: false })
  cleanups.push(() => r.quit().then(() => undefined))
  return r
}

/** Adds `n` envelopes (field `field`); answers the expected event ids (`<stream>:<entry id>`). */
const add = async (r: Redis, stream: string, label: string, n: number, field = "body") => {
  const ids: Array<string> = []
  for (let i = 0; i < n; i++) {
    const id = await r.xadd(stream, "*", field, JSON.stringify({ type: "order.placed", payload: { label, i } }))
    ids.push(`${stream}:${id}`)
  }
  return ids
}

describe.skipIf(skip !== undefined)("Redis Streams source", () => {
  it("every entry becomes an event delivered to both routed targets; XACKed; the group is created", async () => {
    const r = client()
    const stream = unique("fanout-t")
    cleanups.push(() => r.del(stream).then(() => undefined))
    const ids = await add(r, stream, "r", 200, "msg")
    const targets = await startTargets()
    cleanups.push(targets.close)
    const dir = tempDir("redis")
    cleanups.push(async () => removeDir(dir))
    const app = await run(configOf(dir, targets, [{
      name: "audit",
      redis: { url: brokers.redis.url, stream, group: "fanout", field: "msg", consumer: "c1" }
    }]))
    cleanups.push(app.stop)
    await waitFor("every entry delivered to a and b", () => undelivered(targets, ids).length === 0, 60_000)
    await waitFor("every entry acked", async () => (await sourceView(app.url, "audit"))?.acked === 200, 30_000)
    const pending = (await r.xpending(stream, "fanout")) as [number, ...Array<unknown>]
    assert.strictEqual(pending[0], 0)
    const view = await sourceView(app.url, "audit")
    assert.strictEqual(view?.kind, "redis")
    assert.strictEqual(view?.received, 200)
    assert.strictEqual(view?.rejected, 0)
    for (const id of ids) assert.strictEqual(targets.a.okCount(`${id}:a`), 1, id)
  }, 120_000)

  it(
    "poison entries (not JSON, no body field, no route, a payload failing its schema) go to the dead-letter stream; a dead consumer's pending entry is reclaimed (XAUTOCLAIM)",
    async () => {
      const r = client()
      const stream = unique("fanout-p")
      cleanups.push(() => r.del(stream, `${stream}:dead`).then(() => undefined))
      // An existing group, and an entry a consumer that died took and never acked.
      await r.xgroup("CREATE", stream, "fanout", "0", "MKSTREAM")
      const orphan = await add(r, stream, "orphan", 1)
      await r.xreadgroup("GROUP", "fanout", "dead-consumer", "COUNT", 1, "STREAMS", stream, ">")
      await r.xadd(stream, "*", "body", "not json {")
      await r.xadd(stream, "*", "other", "no body field")
      await r.xadd(stream, "*", "body", JSON.stringify({ type: "invoice.sent", payload: {} }))
      // The declared schema of order.placed wants a `label`.
      await r.xadd(stream, "*", "body", JSON.stringify({ type: "order.placed", payload: { i: 1 } }))
      const good = await add(r, stream, "good", 1)
      const targets = await startTargets()
      cleanups.push(targets.close)
      const dir = tempDir("redis-poison")
      cleanups.push(async () => removeDir(dir))
      const app = await run({
        ...configOf(dir, targets, [{
          name: "poison",
          redis: { url: brokers.redis.url, stream, group: "fanout", consumer: "c1", minIdle: "1 millis" }
        }]),
        events: { "order.placed": { schema: { type: "object", required: ["label"] } } }
      })
      cleanups.push(app.stop)
      await waitFor(
        "the good entry and the orphan delivered",
        () => undelivered(targets, [...good, ...orphan]).length === 0,
        30_000
      )
      await waitFor("four dead-lettered", async () => (await r.xlen(`${stream}:dead`)) === 4, 30_000)
      const dead = await r.xrange(`${stream}:dead`, "-", "+")
      const reasons = dead.map(([, fields]) => fields[fields.indexOf("reason") + 1]!.split(":")[0])
      assert.deepStrictEqual(reasons.sort(), ["no_route", "not_json", "not_json", "schema_mismatch"])
      const view = await sourceView(app.url, "poison")
      assert.strictEqual(view?.rejected, 4)
      assert.strictEqual(view?.acked, 2)
      assert.isAtLeast(view?.redelivered ?? 0, 1)
      const pending = (await r.xpending(stream, "fanout")) as [number, ...Array<unknown>]
      assert.strictEqual(pending[0], 0)
    },
    120_000
  )

  it("a source falling behind its broker is told once as a fanout.source.lagging operator event", async () => {
    const r = client()
    const stream = unique("fanout-lag")
    cleanups.push(() => r.del(stream).then(() => undefined))
    const ids = await add(r, stream, "lag", 60)
    const targets = await startTargets()
    cleanups.push(targets.close)
    // Target a answers 503: deliveries pile up to maxQueueDepth, the source stops pulling, and the
    // entries left at the broker are its lag.
    targets.a.setBehaviour((path) => (path === "/a" ? 503 : "ok"))
    const dir = tempDir("redis-lag")
    cleanups.push(async () => removeDir(dir))
    const base = configOf(dir, targets, [{
      name: "lagging",
      concurrency: 2,
      redis: { url: brokers.redis.url, stream, group: "fanout", consumer: "c1", count: 5 }
    }])
    const app = await run({
      ...base,
      server: { ...base.server, maxQueueDepth: 10 },
      targets: {
        a: {
          url: `${targets.a.url}/a`,
          retry: { maxAttempts: 1000, initialDelay: "50 millis", maxDelay: "200 millis" },
          circuitBreaker: false
        },
        pager: { url: `${targets.b.url}/pager` }
      },
      routes: { "order.*": ["a"], "fanout.source.*": ["pager"] },
      operatorEvents: { minInterval: "1 hour", every: "50 millis", sourceLagThreshold: 20 }
    })
    cleanups.push(app.stop)
    const told = () =>
      targets.b.receipts.filter((x) => x.path === "/pager" && x.key.startsWith("fanout.source.lagging:lagging:"))
    await waitFor("the lagging source told to the pager", async () => told().length === 1, 30_000)
    const found = await (await fetch(`${app.url}/v1/events?type=fanout.source.lagging`)).json() as {
      items: Array<{ id: string }>
    }
    assert.strictEqual(found.items.length, 1)
    const event = await (await fetch(`${app.url}/v1/events/${encodeURIComponent(found.items[0]!.id)}`)).json() as {
      payload: { source: string; lag: number; threshold: number; suppressed: number }
    }
    assert.strictEqual(event.payload.source, "lagging")
    assert.isAtLeast(event.payload.lag, 20)
    assert.strictEqual(event.payload.threshold, 20)
    // Once the target answers, the backlog drains; the lag was told once, not at every reading.
    targets.a.setBehaviour(() => "ok")
    await waitFor("every entry delivered", () => ids.every((id) => targets.a.okCount(`${id}:a`) > 0), 120_000)
    assert.strictEqual(told().length, 1)
  }, 180_000)

  it("backpressure: while the queue depth is at server.maxQueueDepth the source takes no more entries", async () => {
    const r = client()
    const stream = unique("fanout-bp")
    cleanups.push(() => r.del(stream).then(() => undefined))
    const ids = await add(r, stream, "bp", 100)
    const targets = await startTargets()
    cleanups.push(targets.close)
    // The targets answer 503 (transient): deliveries pile up in the store, retried.
    targets.a.setBehaviour(() => 503)
    targets.b.setBehaviour(() => 503)
    const dir = tempDir("redis-bp")
    cleanups.push(async () => removeDir(dir))
    const base = configOf(dir, targets, [{
      name: "bp",
      concurrency: 2,
      redis: { url: brokers.redis.url, stream, group: "fanout", consumer: "c1", count: 5 }
    }])
    const retry = { maxAttempts: 1000, initialDelay: "50 millis", maxDelay: "200 millis" }
    const app = await run({
      ...base,
      server: { ...base.server, maxQueueDepth: 20 },
      targets: {
        a: { url: `${targets.a.url}/a`, retry, circuitBreaker: false },
        b: { url: `${targets.b.url}/b`, retry, circuitBreaker: false }
      }
    })
    cleanups.push(app.stop)
    const depth = async () => ((await (await fetch(`${app.url}/readyz`)).json()) as { depth: number }).depth
    await waitFor("the queue at its bound", async () => (await depth()) >= 20, 30_000)
    // The broker's lag first, then the source's counters: the source may read a few more entries
    // in between (never fewer), so the lag read first is at least what the later counters leave.
    const groups = (await r.call("XINFO", "GROUPS", stream)) as Array<Array<unknown>>
    const lag = Number(groups[0]![groups[0]!.indexOf("lag") + 1])
    const held = (await sourceView(app.url, "bp"))!
    // 10 events fill 20 deliveries; at most the 2 in progress, the entries read with them (5) and a
    // depth reading up to 100 ms old more: far from the 100 published, which wait at the broker.
    assert.isAtMost(held.stored, 10 + 2 + 5 + 10)
    assert.isAtLeast(lag, 100 - held.received - 5)
    targets.a.setBehaviour(() => "ok")
    targets.b.setBehaviour(() => "ok")
    await waitFor(
      "every entry delivered once the targets answer",
      () => undelivered(targets, ids).length === 0,
      120_000
    )
    assert.strictEqual((await sourceView(app.url, "bp"))?.stored, 100)
  }, 180_000)

  it("survives its broker stopping and starting again: nothing lost", async () => {
    const dir = tempDir("redis-away")
    cleanups.push(async () => removeDir(dir))
    const broker = await privateRedis(dir)
    await broker.start()
    cleanups.push(broker.stop)
    const url = `redis://127.0.0.1:${broker.port}`
    const stream = "away"
    let r = new Redis(url)
    const first = await add(r, stream, "a1", 50)
    await r.quit()
    const targets = await startTargets()
    cleanups.push(targets.close)
    const app = await run(
      configOf(dir, targets, [{ name: "away", redis: { url, stream, group: "fanout", consumer: "c1" } }])
    )
    cleanups.push(app.stop)
    await waitFor("the first batch delivered", () => undelivered(targets, first).length === 0, 60_000)
    await broker.stop()
    await waitFor(
      "the source sees its broker gone",
      async () => (await sourceView(app.url, "away"))?.state === "reconnecting",
      30_000
    )
    await broker.start()
    r = client(url)
    const second = await add(r, stream, "a2", 50)
    await waitFor(
      "the second batch delivered after the restart",
      () => undelivered(targets, second).length === 0,
      90_000
    )
    const view = await sourceView(app.url, "away")
    assert.strictEqual(view?.rejected, 0)
    assert.strictEqual(view?.state, "running")
  }, 180_000)
})
