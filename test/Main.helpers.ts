/**
 * Helpers for the tests of the composition root, the CLI, telemetry and shutdown: the whole
 * application (`Main.provide`) in this process on 127.0.0.1 port 0, real loopback targets, and
 * child processes of the real `fanout` executable.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, Fiber } from "effect"
import type { Scope } from "effect"
import * as Config from "../src/Config.js"
import * as Main from "../src/Main.js"
import * as Http from "../src/Server/Http.js"

export const root = fileURLToPath(new URL("..", import.meta.url))

/** Resolves a configuration as `fanout serve` would, with the environment given (not the process's). */
export const prepare = (
  config: typeof Config.FanoutConfig.Encoded,
  env: Record<string, string> = {},
  file = "test.config.json"
): Effect.Effect<Main.App, Config.ConfigError> =>
  Effect.flatMap(Config.decode(file, config), (decoded) => Main.prepare(file, decoded, env)).pipe(
    Effect.withConfigProvider(Config.environmentProvider(env))
  )

/** The whole application in this process until the scope closes; answers its URL. */
export const start = (
  app: Main.App,
  options: Main.RunOptions = {}
): Effect.Effect<string, Main.StartError, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const ready = yield* Effect.makeLatch(false)
    let url = ""
    const fiber = yield* Main.provide(
      app,
      options,
      Effect.zipRight(
        Effect.flatMap(Http.url, (u) => Effect.sync(() => (url = u))),
        Effect.zipRight(ready.open, Effect.never)
      )
    ).pipe(Effect.forkIn(scope))
    // A failure to start (port taken, store unreachable) fails here instead of waiting forever.
    yield* Effect.raceFirst(ready.await, Fiber.join(fiber))
    return url
  })

export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly body: any
  readonly text: string
}

export const request = (url: string, init: RequestInit & { readonly json?: unknown } = {}): Effect.Effect<Reply> =>
  Effect.promise(async () => {
    const { json, ...rest } = init
    const response = await fetch(url, {
      ...rest,
      ...(json !== undefined
        ? { body: JSON.stringify(json), headers: { "content-type": "application/json", ...(rest.headers as object) } }
        : {})
    })
    const text = await response.text()
    let body: any = undefined
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
    return { status: response.status, headers: response.headers, body, text }
  })

export interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Environment for child processes: no FANOUT_* or OTEL_* leaking in from the test runner. */
export const cleanEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("FANOUT_") && !k.startsWith("OTEL_")) env[k] = v
  }
  return { ...env, NO_COLOR: "1", ...extra }
}

/** Spawns `node --import tsx src/bin.ts ...args` in its own process group. */
export const spawnFanout = (args: ReadonlyArray<string>, env: Record<string, string> = {}): ChildProcess =>
  spawn(process.execPath, ["--import", "tsx", "src/bin.ts", ...args], {
    cwd: root,
    env: cleanEnv(env),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"]
  })

/** Runs `fanout ...args` to its end. */
export const runFanout = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  timeoutMs = 90_000
): Promise<Ran> =>
  new Promise((resolve, reject) => {
    const child = spawnFanout(args, env)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL")
      reject(new Error(`fanout ${args.join(" ")}: no exit within ${timeoutMs} ms\n${stdout}\n${stderr}`))
    }, timeoutMs)
    // "close", not "exit": it comes once the process has exited *and* its stdout and stderr have
    // ended, so the output is complete (no sleep to let the pipes drain).
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })

/** Signals the child's whole process group (spawned detached). */
export const killGroup = (child: ChildProcess, signal: NodeJS.Signals): void => {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}
