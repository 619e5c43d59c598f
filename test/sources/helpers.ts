/**
 * Helpers for the source tests: whether a broker answers (required under FANOUT_REQUIRE_BROKERS=1,
 * else the tests say they skipped and why), the whole application in this process over a real
 * SQLite file with two loopback targets, free ports, private broker processes.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createConnection, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import type * as Config from "../../src/Config.js"
import type * as Main from "../../src/Main.js"
import { type Receiver, startReceiver, waitFor } from "../durable/helpers.js"
import { prepare, request, start } from "../Main.helpers.js"

export { waitFor }

export const required = process.env.FANOUT_REQUIRE_BROKERS === "1"

export const brokers = {
  nats: { host: "127.0.0.1", port: 4222, url: "nats://127.0.0.1:4222" },
  amqp: { host: "127.0.0.1", port: 5672, url: "amqp://guest:guest@127.0.0.1:5672" },
  redis: { host: "127.0.0.1", port: 6379, url: "redis://127.0.0.1:6379" }
} as const

/** Connects once (2 s): undefined when the port answers, else why not. */
export const probe = (host: string, port: number): Promise<string | undefined> =>
  new Promise((resolve) => {
    const socket = createConnection({ host, port })
    const done = (why: string | undefined) => {
      socket.destroy()
      resolve(why)
    }
    socket.setTimeout(2_000, () => done("no answer within 2 s"))
    socket.once("connect", () => done(undefined))
    socket.once("error", (error) => done(error.message))
  })

/**
 * Why `file`'s tests of `kind` skip (undefined: they run). Prints the reason; when brokers are
 * required (FANOUT_REQUIRE_BROKERS=1) and this one is down, registers a failing test instead.
 */
export const skipReason = async (file: string, kind: keyof typeof brokers): Promise<string | undefined> => {
  const { host, port } = brokers[kind]
  const down = await probe(host, port)
  if (down === undefined) return undefined
  if (required) {
    describe(`${kind} broker`, () => {
      it(`is required (FANOUT_REQUIRE_BROKERS=1) but ${host}:${port} does not answer`, () => {
        assert.fail(`${kind} at ${host}:${port}: ${down}`)
      })
    })
    return `required but down (${down})`
  }
  const why = `${kind} broker unreachable at ${host}:${port} (${down}); set FANOUT_REQUIRE_BROKERS=1 to fail instead`
  console.warn(`[${file}] skipped: ${why}`)
  return why
}

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })

export const unique = (label: string) => `${label}_${process.pid}_${Date.now().toString(36)}`

export const tempDir = (label: string) => mkdtempSync(join(tmpdir(), `fanout-${label}-`))
export const removeDir = (dir: string) => rmSync(dir, { recursive: true, force: true })

/** Two loopback targets `a` and `b`, answering 200 to everything. */
export const startTargets = async (): Promise<{ a: Receiver; b: Receiver; close: () => Promise<void> }> => {
  const a = await startReceiver(() => "ok")
  const b = await startReceiver(() => "ok")
  return { a, b, close: () => Promise.all([a.close(), b.close()]).then(() => undefined) }
}

/** The configuration of a run: a SQLite file, targets a and b for `order.*`, these sources. */
export const configOf = (
  dir: string,
  targets: { a: Receiver; b: Receiver },
  sources: ReadonlyArray<typeof Config.SourceConfig.Encoded>,
  port = 0
): typeof Config.FanoutConfig.Encoded => ({
  server: { host: "127.0.0.1", port },
  store: { sqlite: join(dir, "fanout.db") },
  targets: {
    a: { url: `${targets.a.url}/a`, retry: { initialDelay: "50 millis", maxDelay: "500 millis" } },
    b: { url: `${targets.b.url}/b`, retry: { initialDelay: "50 millis", maxDelay: "500 millis" } }
  },
  routes: { "order.*": ["a", "b"] },
  sources
})

export interface Running {
  readonly url: string
  readonly app: Main.App
  readonly stop: () => Promise<void>
}

/** The whole application (API, workers, sources) in this process until `stop`. */
export const run = async (
  config: typeof Config.FanoutConfig.Encoded,
  env: Record<string, string> = {}
): Promise<Running> => {
  const scope = Effect.runSync(Scope.make())
  const app = await Effect.runPromise(prepare(config, env))
  const url = await Effect.runPromise(Scope.extend(start(app, { worker: { pollInterval: "50 millis" } }), scope))
  return { url, app, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

export interface SourceView {
  readonly name: string
  readonly kind: string
  readonly received: number
  readonly stored: number
  readonly duplicates: number
  readonly acked: number
  readonly rejected: number
  readonly redelivered: number
  readonly retried: number
  readonly lag?: number
  readonly state: string
}

/** `GET /v1/sources`: the named source's counters. */
export const sourceView = async (url: string, name: string): Promise<SourceView | undefined> => {
  const reply = await Effect.runPromise(request(`${url}/v1/sources`))
  if (reply.status !== 200) throw new Error(`GET /v1/sources: ${reply.status} ${reply.text}`)
  return (reply.body.sources as ReadonlyArray<SourceView>).find((s) => s.name === name)
}

/** The ids among `ids` not yet delivered (2xx) to both targets. */
export const undelivered = (targets: { a: Receiver; b: Receiver }, ids: Iterable<string>): Array<string> =>
  [...ids].filter((id) => targets.a.okCount(`${id}:a`) === 0 || targets.b.okCount(`${id}:b`) === 0)

/** A private broker process (its own port and data folder), stopped with `stop`. */
export interface Private {
  readonly port: number
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

const privateProcess = (command: string, args: (port: number) => ReadonlyArray<string>, port: number): Private => {
  let child: ChildProcess | undefined
  return {
    port,
    start: async () => {
      child = spawn(command, [...args(port)], { stdio: "ignore" })
      await waitFor(`${command} on port ${port}`, async () => (await probe("127.0.0.1", port)) === undefined, 20_000)
    },
    stop: async () => {
      const c = child
      child = undefined
      if (c === undefined || c.exitCode !== null) return
      const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()))
      c.kill("SIGTERM")
      await exited
    }
  }
}

/** A private nats-server with JetStream on a free port, its store in `dir` (survives restarts). */
export const privateNats = async (dir: string): Promise<Private> =>
  privateProcess(
    "/usr/sbin/nats-server",
    (port) => ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
    await freePort()
  )

/** A private redis-server on a free port, with an append-only file in `dir` (survives restarts). */
export const privateRedis = async (dir: string): Promise<Private> =>
  privateProcess("/usr/bin/redis-server", (port) => [
    "--bind",
    "127.0.0.1",
    "--port",
    String(port),
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--dir",
    dir,
    "--daemonize",
    "no"
  ], await freePort())
