/**
 * PostgreSQL outage (issue 10 item 5), real processes: a PostgreSQL cluster of the test's own
 * (`initdb` + `pg_ctl` on a free port and a fresh data directory, never the machine's server), a
 * `fanout serve` (ingest and a worker) and a `fanout worker` on it, two loopback targets, and 8
 * producer loops posting `POST /v1/events`. Under load the cluster is stopped (`pg_ctl stop -m
 * immediate`) for `FANOUT_PG_OUTAGE_MS` (default 5000; the figure is 15000), then started
 * again on the same port and data directory.
 *
 * - producers get `503 store_unavailable` + `Retry-After` (never a `500`, never anything else) and
 *   send the same id again until it is acknowledged; nothing is answered 2xx that is not stored;
 * - `/readyz` answers `503 not_ready` while the database is down and `200` once it is back;
 * - the workers log their failed claims (`worker: store claim failed (Unavailable), will retry`),
 *   back off, and deliver again; no process exits;
 * - afterwards every acknowledged id has reached both targets (lost = 0).
 *
 * The cluster needs `initdb`/`pg_ctl` (FANOUT_PG_BIN, default /usr/lib/postgresql/15/bin) and, as
 * root, a `postgres` user to run them as. Without them the test is skipped with the reason printed,
 * or fails when FANOUT_REQUIRE_POSTGRES=1.
 *
 * No wall-clock thresholds: every wait polls for a recorded state (a status, a log line, a receipt)
 * with a generous bound; the only timed wait is the outage itself (the fault's length).
 */
import { spawn, spawnSync } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { killGroup, spawnFanout } from "../Main.helpers.js"
import { type Receiver, sleep, startReceiver, waitFor } from "./helpers.js"

const BIN = process.env.FANOUT_PG_BIN ?? "/usr/lib/postgresql/15/bin"
const OUTAGE_MS = Number(process.env.FANOUT_PG_OUTAGE_MS ?? 5_000)
const required = process.env.FANOUT_REQUIRE_POSTGRES === "1"
const isRoot = process.getuid?.() === 0

/** The uid/gid of the `postgres` user (PostgreSQL refuses to run as root), or why not. */
const postgresUser = (): { readonly uid: number; readonly gid: number } | string => {
  const uid = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" })
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" })
  if (uid.status !== 0 || gid.status !== 0) {
    return `no postgres user (${(uid.stderr || uid.error?.message || "").trim()})`
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

/** Why the cluster cannot be made here (undefined: it can). */
const unavailable = ((): string | undefined => {
  for (const tool of ["initdb", "pg_ctl"]) if (!existsSync(join(BIN, tool))) return `${join(BIN, tool)} not found`
  if (isRoot) {
    if (spawnSync("runuser", ["--help"]).error !== undefined) {
      return "runuser not found (needed to run PostgreSQL as postgres)"
    }
    const user = postgresUser()
    if (typeof user === "string") return user
  }
  return undefined
})()

if (unavailable !== undefined) {
  console.warn(
    `[durable/pg-outage.test] ${
      required ? "FAILED" : "skipped"
    }: cannot start a PostgreSQL cluster of its own: ${unavailable}` +
      (required ? " (FANOUT_REQUIRE_POSTGRES=1)" : "; set FANOUT_REQUIRE_POSTGRES=1 to fail instead")
  )
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })

// ---- a PostgreSQL cluster of the test's own --------------------------------------------------------

interface Cluster {
  readonly port: number
  readonly url: string
  readonly start: () => Promise<void>
  readonly stop: (mode: "immediate" | "fast") => Promise<void>
  /** Stops it at once, synchronously, if it runs (teardown). */
  readonly kill: () => void
  readonly log: () => string
}

interface Ran {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs a PostgreSQL tool (as `postgres` when we are root), without blocking the event loop (the
 * producers and the receivers of this process keep going while the cluster stops and starts).
 */
const pgTool = (dir: string, tool: string, args: ReadonlyArray<string>, timeoutMs = 120_000): Promise<Ran> =>
  new Promise((resolve) => {
    const command = isRoot ? "runuser" : join(BIN, tool)
    const argv = isRoot ? ["-u", "postgres", "--", join(BIN, tool), ...args] : [...args]
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v
    const child = spawn(command, argv, { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += String(d)))
    child.stderr.on("data", (d) => (stderr += String(d)))
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.on("error", (error) => (stderr += error.message))
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })

/** The same, synchronously (teardown on exit only). */
const pgToolSync = (dir: string, tool: string, args: ReadonlyArray<string>) =>
  spawnSync(
    isRoot ? "runuser" : join(BIN, tool),
    isRoot ? ["-u", "postgres", "--", join(BIN, tool), ...args] : [...args],
    {
      cwd: dir,
      timeout: 60_000,
      stdio: "ignore"
    }
  )

const makeCluster = async (dir: string): Promise<Cluster> => {
  if (isRoot) {
    const user = postgresUser() as { uid: number; gid: number }
    chownSync(dir, user.uid, user.gid)
  }
  const data = join(dir, "data")
  const logFile = join(dir, "postgres.log")
  const init = await pgTool(dir, "initdb", [
    "-D",
    data,
    "-A",
    "trust",
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--locale=C",
    "--no-sync"
  ])
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr}${init.stdout}`)
  const port = await freePort()
  // Its own port, its own socket directory (never /var/run/postgresql), loopback only.
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c max_connections=100`
  let up = false
  const ctl = async (args: ReadonlyArray<string>) => {
    const ran = await pgTool(dir, "pg_ctl", ["-D", data, ...args])
    if (ran.status !== 0) {
      const log = (() => {
        try {
          return spawnSync("tail", ["-n", "30", logFile], { encoding: "utf8" }).stdout
        } catch {
          return ""
        }
      })()
      throw new Error(`pg_ctl ${args.join(" ")} failed (${ran.status}): ${ran.stderr}${ran.stdout}\n${log}`)
    }
  }
  const cluster: Cluster = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start: async () => {
      up = true
      await ctl(["-l", logFile, "-o", options, "-w", "-t", "60", "start"])
    },
    stop: async (mode) => {
      await ctl(["-m", mode, "-w", "-t", "60", "stop"])
      up = false
    },
    kill: () => {
      if (up) pgToolSync(dir, "pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
      up = false
    },
    log: () => spawnSync("tail", ["-n", "50", logFile], { encoding: "utf8" }).stdout
  }
  await cluster.start()
  return cluster
}

// ---- the run -------------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "fanout-pg-outage-"))
const receivers: Array<Receiver> = []
const children: Array<ReturnType<typeof spawnFanout>> = []
let cluster: Cluster | undefined

const teardown = () => {
  for (const child of children) killGroup(child, "SIGKILL")
  cluster?.kill()
}
// Should vitest's worker die first: the cluster is not left running on its temp directory.
process.once("exit", teardown)

afterAll(async () => {
  teardown()
  await Promise.all(receivers.map((r) => r.close()))
  rmSync(dir, { recursive: true, force: true })
})

interface Probe {
  readonly status: number | "error"
  readonly code?: string | undefined
}

const readyz = async (url: string): Promise<Probe> => {
  try {
    const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5_000) })
    const text = await response.text()
    let code: string | undefined
    try {
      code = JSON.parse(text)?.error?.code
    } catch {
      code = undefined
    }
    return { status: response.status, code }
  } catch {
    return { status: "error" }
  }
}

const run = async () => {
  const started = Date.now()
  cluster = await makeCluster(dir)
  const a = await startReceiver(() => "ok")
  const b = await startReceiver(() => "ok")
  receivers.push(a, b)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  // One configuration per process, alike but for an `x-worker` header on the targets' requests, so
  // the receivers can tell which process delivered.
  const configFile = (name: string) => {
    const file = join(dir, `${name}.json`)
    const headers = { "x-worker": name }
    writeFileSync(
      file,
      JSON.stringify({
        server: { host: "127.0.0.1", port },
        store: { postgres: cluster!.url },
        targets: { a: { url: `${a.url}/a`, headers }, b: { url: `${b.url}/b`, headers } },
        routes: { "order.*": ["a", "b"] }
      })
    )
    return file
  }
  const spawnLogged = (command: "serve" | "worker") => {
    const child = spawnFanout([command, "--config", configFile(command), "--log-format", "json"])
    children.push(child)
    // The JSON logs (Effect's Logger.json writes to stdout) and anything on stderr, together: the
    // last 200 kB of text, and every message counted by its text (what the tally reports).
    let stderr = ""
    const messages = new Map<string, number>()
    let partial = ""
    const append = (chunk: Buffer) => {
      const text = chunk.toString("utf8")
      stderr += text
      if (stderr.length > 400_000) stderr = stderr.slice(-200_000)
      partial += text
      let i: number
      while ((i = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, i)
        partial = partial.slice(i + 1)
        try {
          const parsed = JSON.parse(line) as { message?: unknown; logLevel?: unknown }
          const message = `${parsed.logLevel} ${
            Array.isArray(parsed.message) ? parsed.message.join(" ") : String(parsed.message)
          }`
            .replace(/\b\d+ ms\b/g, "<n> ms")
            .replace(/127\.0\.0\.1:\d+/g, "<host:port>")
          messages.set(message, (messages.get(message) ?? 0) + 1)
        } catch {
          messages.set(`(not JSON) ${line.slice(0, 200)}`, (messages.get(`(not JSON) ${line.slice(0, 200)}`) ?? 0) + 1)
        }
      }
    }
    child.stdout!.on("data", append)
    child.stderr!.on("data", append)
    let exit: string | undefined
    child.once("exit", (code, signal) => (exit = `exit ${code} ${signal ?? ""}`))
    return { child, stderr: () => stderr, messages, exit: () => exit }
  }
  const serve = spawnLogged("serve")
  const worker = spawnLogged("worker")
  await waitFor("fanout serve ready", async () => (await readyz(url)).status === 200, 60_000, 50).catch((e) => {
    throw new Error(`${e.message}\n${serve.stderr().slice(-3000)}`)
  })
  // Both running before the outage (a process that cannot reach its store at start exits: another scenario).
  await waitFor("fanout worker running", () => worker.stderr().includes("fanout: workers running"), 60_000, 50).catch(
    (e) => {
      throw new Error(`${e.message}\n${worker.stderr().slice(-3000)}`)
    }
  )

  // ---- producers: 8 loops, each id sent again after a 503 until it is acknowledged ----
  const acked = new Set<string>()
  const sent = new Set<string>()
  const statuses = new Map<string, number>()
  const unexpected: Array<string> = []
  let unavailable503 = 0
  let alive = true
  let next = 0
  const tally = (key: string) => statuses.set(key, (statuses.get(key) ?? 0) + 1)
  const producer = async (loop: number) => {
    while (alive) {
      const id = `po-${loop}-${next++}`
      sent.add(id)
      for (;;) {
        let status: number | "error" = "error"
        try {
          const response = await fetch(`${url}/v1/events`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ id, type: "order.placed", payload: { loop } }),
            signal: AbortSignal.timeout(30_000)
          })
          status = response.status
          const text = await response.text()
          tally(String(status))
          if (status === 202 || status === 200) {
            acked.add(id)
            break
          }
          if (status === 503) {
            unavailable503++
            const code = (() => {
              try {
                return JSON.parse(text)?.error?.code
              } catch {
                return undefined
              }
            })()
            if (code !== "store_unavailable" || response.headers.get("retry-after") === null) {
              unexpected.push(`${id}: 503 without store_unavailable + Retry-After: ${text}`)
            }
            // A producer's retry: the same id again, a little later (load pacing, not synchronisation).
            await sleep(50)
            continue
          }
          unexpected.push(`${id}: ${status} ${text.slice(0, 300)}`)
          break
        } catch (error) {
          tally("error")
          unexpected.push(`${id}: no answer (${(error as Error).message})`)
          break
        }
      }
    }
  }
  const loops = Array.from({ length: 8 }, (_, i) => producer(i))

  // ---- before: progress, both processes delivering ----
  await waitFor(
    `200 acknowledgements before the outage\n${serve.stderr().slice(-2000)}`,
    () => acked.size >= 200,
    60_000,
    10
  )
  const delivered = (r: Receiver, name: string) => [...acked].filter((id) => r.okCount(`${id}:${name}`) > 0).length
  await waitFor(
    "some deliveries to both targets before the outage",
    () => delivered(a, "a") >= 50 && delivered(b, "b") >= 50,
    60_000,
    10
  )
  const ackedBefore = acked.size

  // ---- the outage ----
  await cluster.stop("immediate")
  const stoppedAt = Date.now()
  const notReady = await (async () => {
    let probe: Probe = { status: "error" }
    await waitFor("/readyz says not ready", async () => (probe = await readyz(url)).status === 503, 60_000, 50)
    return probe
  })()
  await waitFor("a producer got a 503", () => unavailable503 > 0, 60_000, 10)
  const claimFailed = /worker: store claim failed \(Unavailable\), will retry/
  await waitFor(
    "fanout worker logs its failed claims",
    () => [...worker.messages.keys()].some((m) => claimFailed.test(m)),
    60_000,
    50
  ).catch((e) => {
    throw new Error(`${e.message}\n${worker.stderr().slice(-3000)}`)
  })
  await waitFor(
    "fanout serve's worker logs its failed claims",
    () => [...serve.messages.keys()].some((m) => claimFailed.test(m)),
    60_000,
    50
  ).catch((e) => {
    throw new Error(`${e.message}\n${serve.stderr().slice(-3000)}`)
  })
  // The fault's length (the only timed wait): the database stays down for FANOUT_PG_OUTAGE_MS.
  await sleep(Math.max(0, OUTAGE_MS - (Date.now() - stoppedAt)))
  const ackedDuringOutage = acked.size - ackedBefore
  const notReadyAtEnd = await readyz(url)
  const healthz = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(
    (r) => r.status,
    () => "error"
  )
  const aliveDuringOutage = [serve, worker].map((p) => p.exit() ?? "running")
  const outageMs = Date.now() - stoppedAt

  // ---- back ----
  await cluster.start()
  const startedAgainAt = Date.now()
  await waitFor(
    `/readyz ready again\n${serve.stderr().slice(-2000)}`,
    async () => (await readyz(url)).status === 200,
    120_000,
    50
  )
  const ackedAtRecovery = acked.size
  await waitFor("200 more acknowledgements after the outage", () => acked.size >= ackedAtRecovery + 200, 120_000, 10)
  // Both processes' workers deliver again: each has sent a request that a target answered after
  // the database came back (the producers keep posting until then).
  const deliveredAfter = (name: string) =>
    [...a.receipts, ...b.receipts].filter((r) => r.worker === name && r.answer === "ok" && r.at >= startedAgainAt)
      .length
  await waitFor(
    "both workers deliver after the outage",
    () => deliveredAfter("serve") > 0 && deliveredAfter("worker") > 0,
    120_000,
    10
  )
  alive = false
  await Promise.all(loops)

  const missing = () => [...acked].filter((id) => a.okCount(`${id}:a`) === 0 || b.okCount(`${id}:b`) === 0)
  await waitFor(`every acknowledged id delivered to a and b`, () => missing().length === 0, 180_000, 100)

  // ---- the record ----
  const duplicates = [...[a, b]].reduce(
    (n, r) => n + [...r.byKey.keys()].filter((key) => r.okCount(key) > 1).length,
    0
  )
  const received = new Set([...a.receipts, ...b.receipts].map((r) => r.key.replace(/:[ab]$/, "")))
  const stray = [...received].filter((id) => !sent.has(id))
  const others = [...statuses].filter(([s]) => !["200", "202", "503"].includes(s))
  const storeErrorLines = (messages: Map<string, number>) =>
    Object.fromEntries([...messages].filter(([m]) => /store|LISTEN|defect|error/i.test(m)))
  const line = {
    outageMs,
    configuredOutageMs: OUTAGE_MS,
    sent: sent.size,
    acknowledged: acked.size,
    ackedDuringOutage,
    "503s": unavailable503,
    statuses: Object.fromEntries(statuses),
    other: others.reduce((n, [, c]) => n + c, 0),
    unexpected: unexpected.length,
    deliveredA: delivered(a, "a"),
    deliveredB: delivered(b, "b"),
    lost: missing().length,
    duplicates,
    repeats: a.receipts.length - a.byKey.size + b.receipts.length - b.byKey.size,
    deliveredAfterOutageBy: { serve: deliveredAfter("serve"), worker: deliveredAfter("worker") },
    logs: { serve: storeErrorLines(serve.messages), worker: storeErrorLines(worker.messages) },
    readyzDuringOutage: `${notReady.status} ${notReady.code}`,
    seconds: Math.round((Date.now() - started) / 100) / 10
  }
  console.log(`pg outage tally: ${JSON.stringify(line)}`)

  const errors = [...serve.messages, ...worker.messages].filter(([m]) => /^(ERROR|FATAL)|defect|\(not JSON\)/.test(m))
  assert.deepStrictEqual(errors, [], "no error-level log line, no defect, nothing but JSON logs")
  assert.deepStrictEqual(unexpected, [], "only 2xx and 503 store_unavailable + Retry-After")
  assert.deepStrictEqual(others, [])
  assert.isAbove(unavailable503, 0)
  assert.isTrue(
    [...serve.messages.keys()].some((m) =>
      /^WARN fanout server: the store refused (an event|\d+ events) \(Unavailable\)/.test(m)
    ),
    "fanout serve logs the refused enqueues"
  )
  assert.strictEqual(notReady.code, "not_ready")
  assert.strictEqual(notReadyAtEnd.status, 503, "still not ready at the end of the outage")
  assert.strictEqual(healthz, 200, "/healthz (liveness) answers during the outage")
  assert.deepStrictEqual(aliveDuringOutage, ["running", "running"])
  assert.deepStrictEqual([serve.exit(), worker.exit()], [undefined, undefined], "no process exited")
  // Every id a producer sent was acknowledged in the end (a 503'd id was stored on its retry).
  assert.strictEqual(acked.size, sent.size)
  assert.strictEqual(missing().length, 0, "lost")
  assert.deepStrictEqual(stray, [], "nothing received that no producer sent")
  // Both processes delivered after the outage too: the last ids went to both, through any of them.
  assert.strictEqual(line.deliveredA, acked.size)
  assert.strictEqual(line.deliveredB, acked.size)

  killGroup(serve.child, "SIGTERM")
  killGroup(worker.child, "SIGTERM")
}

describe("PostgreSQL outage under load (real processes, a cluster of the test's own)", () => {
  it.skipIf(unavailable !== undefined && !required)(
    `database stopped for FANOUT_PG_OUTAGE_MS (${OUTAGE_MS} ms): 503 + Retry-After, /readyz not ready, no exit; afterwards lost = 0`,
    { timeout: 600_000 },
    async () => {
      if (unavailable !== undefined) assert.fail(`PostgreSQL is required (FANOUT_REQUIRE_POSTGRES=1): ${unavailable}`)
      await run()
    }
  )
})
