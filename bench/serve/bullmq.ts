/**
 * Side B of the serve benchmark: a bare `node:http` server that validates minimally, adds one
 * BullMQ job per target (`addBulk`, job id `<event id>-<target>`: BullMQ refuses ":" in custom ids, 5 attempts, exponential backoff)
 * and answers 202 once Redis has them; a BullMQ `Worker` in the same process (concurrency `<n>`)
 * POSTs each job to its target with undici. Durability is Redis's: with AOF `everysec`, up to about
 * 1 s of acknowledged jobs can be lost on a crash of Redis or the machine.
 *
 * `node --import tsx bench/serve/bullmq.ts <port> <redis port> <url A> <url B> <concurrency> [--no-worker]`
 */
import { Queue, Worker } from "bullmq"
import { Agent } from "undici"
import { poster } from "../lib/undici.js"
import { type Incoming, onStop, serveEvents } from "./common.js"

const [port, redisPort, urlA, urlB, concurrency] = process.argv.slice(2)
if (
  port === undefined || redisPort === undefined || urlA === undefined || urlB === undefined || concurrency === undefined
) {
  throw new Error("usage: bullmq.ts <port> <redis port> <url A> <url B> <concurrency> [--no-worker]")
}
const withWorker = !process.argv.includes("--no-worker")

const connection = { host: "127.0.0.1", port: Number(redisPort), maxRetriesPerRequest: null }
const name = "serve-bench"
const queue = new Queue(name, { connection })
await queue.waitUntilReady()
const options = {
  attempts: 5,
  backoff: { type: "exponential", delay: 100 },
  removeOnComplete: true,
  removeOnFail: false
}
const counts = { accepted: 0, completed: 0, failed: 0 }

const agent = new Agent({ keepAliveTimeout: 30_000 })
const post = poster(agent)
let worker: Worker | undefined
if (withWorker) {
  worker = new Worker(
    name,
    async (job) => {
      const { target, event } = job.data as { target: "a" | "b"; event: Incoming }
      await post(target === "a" ? urlA : urlB, `/${target}`, event, `${event.id}:${target}`)
    },
    { connection, concurrency: Number(concurrency) }
  )
  worker.on("completed", () => counts.completed++)
  worker.on("failed", () => counts.failed++)
  worker.on("error", () => {})
  await worker.waitUntilReady()
}

await serveEvents(Number(port), async (event) => {
  await queue.addBulk([
    { name: "a", data: { target: "a", event }, opts: { ...options, jobId: `${event.id}-a` } },
    { name: "b", data: { target: "b", event }, opts: { ...options, jobId: `${event.id}-b` } }
  ])
  counts.accepted++
}, async () => ({ ...counts, jobs: await queue.getJobCounts("waiting", "active", "delayed", "completed", "failed") }))

onStop(async () => {
  await worker?.close()
  await queue.close()
  await agent.close()
})
process.stdout.write(
  `bullmq: listening on ${port}${withWorker ? `, worker concurrency ${concurrency}` : ", no worker"}\n`
)
