/**
 * Sources: messages/s from each broker through to two targets, Fanout against a hand-written
 * consumer (the floor).
 *
 * For each broker (NATS JetStream, RabbitMQ, Redis Streams), N messages are published first; then
 *
 * - **fanout**: the application in this process (`Main.layer`: the source, a SQLite store with its
 *   synchronous=FULL commits, the workers; no API) consumes them; timed until both mock targets
 *   (their own process) have received N requests;
 * - **baseline**: a consumer written by hand with the broker's client that, for each message,
 *   POSTs it to both targets with undici (keep-alive `Agent`, 32 messages in flight) and acks it
 *   once both answered 2xx: no store, no retries, no dedup.
 *
 * `npm run bench -- sources [--messages=5000] [--brokers=nats,amqp,redis] [--write]` (`--write`
 * puts the table in bench/RESULTS.md, section "sources"). Needs the machine's brokers on their
 * standard ports.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect as natsConnect } from "@nats-io/transport-node"
import { connect as amqpConnect } from "amqplib"
import { Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import { Redis } from "ioredis"
import { Agent } from "undici"
import * as Config from "../src/Config.js"
import * as Main from "../src/Main.js"
import { writeSection } from "./lib/results.js"
import { fmt, machine } from "./lib/stats.js"
import * as MockTargets from "./lib/targets.js"
import { poster } from "./lib/undici.js"

type Broker = "nats" | "amqp" | "redis"

const NATS = "nats://127.0.0.1:4222"
const AMQP = "amqp://guest:guest@127.0.0.1:5672"
const REDIS = "redis://127.0.0.1:6379"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const until = async (what: string, predicate: () => Promise<boolean>, timeoutMs = 300_000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await sleep(10)
  }
}

/** A limit of `n` promises at once. */
const limiter = (n: number) => {
  let active = 0
  const waiting: Array<() => void> = []
  return async <A>(f: () => Promise<A>): Promise<A> => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve))
    active++
    try {
      return await f()
    } finally {
      active--
      waiting.shift()?.()
    }
  }
}

interface Fixture {
  /** The source configuration of this broker's fresh stream/queue. */
  readonly source: typeof Config.SourceConfig.Encoded
  /** Publishes the N messages. */
  readonly publish: (n: number) => Promise<void>
  /** The hand-written consumer: runs until `stop`. */
  readonly baseline: (post: (body: Buffer, key: string) => Promise<void>) => Promise<() => Promise<void>>
  readonly cleanup: () => Promise<void>
}

const body = (i: number) => Buffer.from(JSON.stringify({ type: "order.placed", payload: { sku: "sku-1", qty: 1, i } }))

const fixture = async (broker: Broker, label: string): Promise<Fixture> => {
  const name = `bench_${label}_${process.pid}_${Date.now().toString(36)}`
  switch (broker) {
    case "nats": {
      const nc = await natsConnect({ servers: NATS })
      const jsm = await jetstreamManager(nc)
      await jsm.streams.add({ name, subjects: [`${name}.>`] })
      const js = jetstream(nc)
      return {
        source: { name: "bench", nats: { servers: NATS, stream: name, subject: `${name}.>`, durable: "fanout" } },
        publish: async (n) => {
          const pending: Array<Promise<unknown>> = []
          for (let i = 0; i < n; i++) {
            pending.push(js.publish(`${name}.o`, body(i)))
            if (pending.length >= 256) await Promise.all(pending.splice(0))
          }
          await Promise.all(pending)
        },
        baseline: async (post) => {
          const { AckPolicy } = await import("@nats-io/jetstream")
          await jsm.consumers.add(name, { durable_name: "baseline", ack_policy: AckPolicy.Explicit })
          const consumer = await js.consumers.get(name, "baseline")
          const messages = await consumer.consume({ max_messages: 256 })
          const limit = limiter(32)
          void (async () => {
            for await (const m of messages) {
              void limit(async () => {
                await post(Buffer.from(m.data), `${name}:${m.seq}`)
                m.ack()
              })
            }
          })()
          return async () => {
            messages.stop()
          }
        },
        cleanup: async () => {
          await jsm.streams.delete(name).catch(() => undefined)
          await nc.close()
        }
      }
    }
    case "amqp": {
      const conn = await amqpConnect(AMQP)
      const ch = await conn.createChannel()
      await ch.assertQueue(name, { durable: true })
      return {
        source: { name: "bench", amqp: { url: AMQP, queue: name, prefetch: 100 } },
        publish: async (n) => {
          for (let i = 0; i < n; i++) {
            if (!ch.sendToQueue(name, body(i), { messageId: `${name}-${i}`, persistent: true })) {
              await new Promise<void>((resolve) => ch.once("drain", () => resolve()))
            }
          }
          await until("published", async () => (await ch.checkQueue(name)).messageCount >= n)
        },
        baseline: async (post) => {
          const consumerChannel = await conn.createChannel()
          await consumerChannel.prefetch(100)
          const limit = limiter(32)
          const { consumerTag } = await consumerChannel.consume(name, (m) => {
            if (m === null) return
            void limit(async () => {
              await post(m.content, String(m.properties.messageId))
              consumerChannel.ack(m)
            })
          })
          return async () => {
            await consumerChannel.cancel(consumerTag)
            await consumerChannel.close()
          }
        },
        cleanup: async () => {
          await ch.deleteQueue(name).catch(() => undefined)
          await conn.close()
        }
      }
    }
    case "redis": {
      const r = new Redis(REDIS)
      return {
        source: { name: "bench", redis: { url: REDIS, stream: name, group: "fanout", consumer: "bench" } },
        publish: async (n) => {
          for (let i = 0; i < n; i += 500) {
            const pipeline = r.pipeline()
            for (let j = i; j < Math.min(n, i + 500); j++) pipeline.xadd(name, "*", "body", body(j))
            await pipeline.exec()
          }
        },
        baseline: async (post) => {
          await r.xgroup("CREATE", name, "baseline", "0", "MKSTREAM")
          const reader = new Redis(REDIS)
          let running = true
          const limit = limiter(32)
          const loop = (async () => {
            while (running) {
              const reply = (await reader.callBuffer(
                "XREADGROUP",
                "GROUP",
                "baseline",
                "b",
                "COUNT",
                100,
                "BLOCK",
                200,
                "STREAMS",
                name,
                ">"
              )) as Array<[Buffer, Array<[Buffer, Array<Buffer>]>]> | null
              const entries = reply?.[0]?.[1] ?? []
              await Promise.all(entries.map(([id, fields]) =>
                limit(async () => {
                  await post(fields[1]!, `${name}:${id.toString()}`)
                  await r.xack(name, "baseline", id)
                })
              ))
            }
          })()
          return async () => {
            running = false
            await loop
            reader.disconnect()
          }
        },
        cleanup: async () => {
          await r.del(name)
          await r.quit()
        }
      }
    }
  }
}

const runFanout = async (broker: Broker, n: number, targets: MockTargets.MockTargets): Promise<number> => {
  const f = await fixture(broker, "f")
  const dir = mkdtempSync(join(tmpdir(), "fanout-bench-sources-"))
  try {
    await f.publish(n)
    const before = await targets.counts()
    const config = await Effect.runPromise(Config.decode("bench.json", {
      store: { sqlite: join(dir, "fanout.db") },
      targets: { a: { url: `${targets.urlA}/a` }, b: { url: `${targets.urlB}/b` } },
      routes: { "order.*": ["a", "b"] },
      sources: [f.source]
    }))
    const app = await Effect.runPromise(Main.prepare("bench.json", config, {}))
    const scope = Effect.runSync(Scope.make())
    const t0 = performance.now()
    await Effect.runPromise(
      Layer.buildWithScope(Main.layer(app, { api: false, sources: true }), scope).pipe(
        Logger.withMinimumLogLevel(LogLevel.Warning)
      )
    )
    await until("fanout: every message at both targets", async () => {
      const c = await targets.counts()
      return c.a - before.a >= n && c.b - before.b >= n
    })
    const seconds = (performance.now() - t0) / 1000
    await Effect.runPromise(Scope.close(scope, Exit.void))
    return n / seconds
  } finally {
    await f.cleanup()
    rmSync(dir, { recursive: true, force: true })
  }
}

const runBaseline = async (broker: Broker, n: number, targets: MockTargets.MockTargets): Promise<number> => {
  const f = await fixture(broker, "b")
  const agent = new Agent({ connections: 64, pipelining: 1 })
  const send = poster(agent)
  try {
    await f.publish(n)
    const before = await targets.counts()
    const t0 = performance.now()
    const stop = await f.baseline(async (bytes, key) => {
      const event = JSON.parse(bytes.toString("utf8")) as unknown
      await Promise.all([
        send(targets.urlA, "/a", event, `${key}:a`),
        send(targets.urlB, "/b", event, `${key}:b`)
      ])
    })
    await until("baseline: every message at both targets", async () => {
      const c = await targets.counts()
      return c.a - before.a >= n && c.b - before.b >= n
    })
    const seconds = (performance.now() - t0) / 1000
    await stop()
    return n / seconds
  } finally {
    await agent.close()
    await f.cleanup()
  }
}

export const main = async (args: ReadonlyArray<string>) => {
  const arg = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  const n = Number(arg("messages") ?? 5000)
  const brokers = (arg("brokers") ?? "nats,amqp,redis").split(",") as Array<Broker>
  const targets = await MockTargets.start()
  const rows: Array<string> = []
  try {
    for (const broker of brokers) {
      const baseline = await runBaseline(broker, n, targets)
      const fanout = await runFanout(broker, n, targets)
      const row = `| ${broker} | ${n} | ${fmt(fanout)} | ${fmt(baseline)} | ${(fanout / baseline).toFixed(2)} |`
      console.log(row)
      rows.push(row)
    }
  } finally {
    await targets.stop()
  }
  const section = [
    "## sources",
    "",
    `Messages/s from a broker through to two targets (${n} messages published first; \`npm run bench -- sources\`). ` +
    "fanout: the source, a SQLite store (FULL), the workers, in one process; baseline: a hand-written " +
    "consumer POSTing each message to both targets with undici, then acking (no store). Mock targets in their own process.",
    "",
    `Machine: ${machine()}`,
    "",
    "| broker | messages | fanout msg/s | baseline msg/s | fanout / baseline |",
    "| --- | --- | --- | --- | --- |",
    ...rows
  ].join("\n")
  console.log(`\n${section}`)
  if (args.includes("--write")) console.log(`written to ${writeSection("sources", section)}`)
}
