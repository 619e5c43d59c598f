/**
 * Side E of the serve benchmark, pg-boss 10 on PostgreSQL, in two roles:
 *
 * - `api`: a bare `node:http` server that validates minimally, `boss.send`s one job per target
 *   (queue `deliveries`, 5 attempts with backoff) and answers 202 once both are committed;
 * - `worker`: `<loops>` `boss.work` loops on the queue, each fetching up to `<batch>` jobs at a time
 *   and POSTing them to their targets with undici (`Promise.allSettled`; any failure fails the
 *   batch, so pg-boss retries it; the idempotency key makes the repeats harmless). pg-boss 10 polls:
 *   a loop that has finished a batch waits out the rest of its polling interval (0.5 s, the
 *   smallest pg-boss allows) before it fetches again, whether or not jobs are waiting.
 *
 * `node --import tsx bench/serve/pgboss.ts api <port> <database url>`
 * `node --import tsx bench/serve/pgboss.ts worker <database url> <url A> <url B> <loops> <batch>`
 */
import PgBoss from "pg-boss"
import { Agent } from "undici"
import { poster } from "../lib/undici.js"
import { type Incoming, onStop, serveEvents } from "./common.js"

const [role, ...args] = process.argv.slice(2)
const queueName = "deliveries"

if (role === "api") {
  const [port, url] = args
  if (port === undefined || url === undefined) throw new Error("usage: pgboss.ts api <port> <database url>")
  const boss = new PgBoss({ connectionString: url, max: 20 })
  boss.on("error", (error) => process.stderr.write(`pg-boss: ${String(error)}\n`))
  await boss.start()
  await boss.createQueue(queueName)
  const options = { retryLimit: 4, retryDelay: 1, retryBackoff: true }
  let accepted = 0
  await serveEvents(Number(port), async (event) => {
    await Promise.all([
      boss.send(queueName, { target: "a", event }, options),
      boss.send(queueName, { target: "b", event }, options)
    ])
    accepted++
  }, async () => ({ accepted, queue: await boss.getQueueSize(queueName) }))
  onStop(() => boss.stop({ graceful: false, wait: true }))
  process.stdout.write(`pg-boss api: listening on ${port}\n`)
} else if (role === "worker") {
  const [url, urlA, urlB, loops, batch] = args
  if (url === undefined || urlA === undefined || urlB === undefined || loops === undefined || batch === undefined) {
    throw new Error("usage: pgboss.ts worker <database url> <url A> <url B> <loops> <batch>")
  }
  const boss = new PgBoss({
    connectionString: url,
    max: Number(loops) + 4,
    supervise: false,
    schedule: false,
    migrate: false
  })
  boss.on("error", (error) => process.stderr.write(`pg-boss: ${String(error)}\n`))
  await boss.start()
  const agent = new Agent({ keepAliveTimeout: 30_000 })
  const post = poster(agent)
  for (let i = 0; i < Number(loops); i++) {
    await boss.work<{ target: "a" | "b"; event: Incoming }>(
      queueName,
      { batchSize: Number(batch), pollingIntervalSeconds: 0.5 },
      async (jobs) => {
        const results = await Promise.allSettled(
          jobs.map(({ data }) =>
            post(data.target === "a" ? urlA : urlB, `/${data.target}`, data.event, `${data.event.id}:${data.target}`)
          )
        )
        const failed = results.filter((r) => r.status === "rejected")
        if (failed.length > 0) throw new Error(`${failed.length} of ${jobs.length} deliveries failed`)
      }
    )
  }
  onStop(async () => {
    await boss.stop({ graceful: false, wait: true })
    await agent.close()
  })
  process.stdout.write(`pg-boss worker: ready (${loops} loops × batch ${batch})\n`)
} else {
  throw new Error("usage: pgboss.ts api|worker …")
}
