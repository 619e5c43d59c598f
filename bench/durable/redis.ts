/**
 * A Redis of the benchmark's own, on its own port, persisting with AOF `appendfsync everysec`
 * (the machine's Redis on 6379 keeps nothing on disk, which would flatter BullMQ). Killed at the end.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Redis } from "ioredis"

export interface RedisServer {
  readonly port: number
  readonly pid: number
  /** `appendonly`, `appendfsync` and `save` as the server reports them. */
  readonly durability: string
  readonly stop: () => Promise<void>
}

export const start = async (port: number, dir: string): Promise<RedisServer> => {
  const child: ChildProcess = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--dir",
      dir,
      "--save",
      ""
    ],
    { stdio: ["ignore", "ignore", "inherit"] }
  )
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const client = new Redis({
    host: "127.0.0.1",
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null
  })
  client.on("error", () => {})
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      await client.connect()
      await client.ping()
      break
    } catch (error) {
      client.disconnect()
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill("SIGKILL")
        throw new Error(`redis-server on port ${port} did not start: ${String(error)}`)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const get = async (key: string) => ((await client.config("GET", key)) as Array<string>)[1] ?? "?"
  const durability = `appendonly=${await get("appendonly")}, appendfsync=${await get("appendfsync")}, save="${await get(
    "save"
  )}"`
  client.disconnect()
  return {
    port,
    pid: child.pid!,
    durability,
    stop: async () => {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
      await exited
      clearTimeout(timer)
    }
  }
}
