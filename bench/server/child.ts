/**
 * The two servers of the server benchmark run in their own processes (so that the load generator
 * does not share their event loop). Parent side: {@link start} forks a server script and talks to
 * it over IPC. Child side: {@link serve} announces the port and answers `stored` / `stop`.
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"

type ToParent =
  | { readonly _tag: "ready"; readonly port: number }
  | { readonly _tag: "stored"; readonly stored: Stored }

/** What a server has stored; `commits`: write transactions so far (when it knows). */
export interface Stored {
  readonly events: number
  readonly commits?: number | undefined
}

export interface ServerProcess {
  readonly url: string
  readonly pid: number
  /** Events the server has stored (in its database) so far, and its commits. */
  readonly stored: () => Promise<Stored>
  /** User + system CPU time of the process so far, in milliseconds (Linux /proc), if readable. */
  readonly cpuMs: () => number | undefined
  readonly stop: () => Promise<void>
}

const ticksPerMs = 100 / 1000

/** Forks `script` (a .ts file run through tsx) with `args`, and waits for it to listen. */
export const start = (script: string, args: ReadonlyArray<string>): Promise<ServerProcess> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = fork(script, [...args], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const waiting: Array<(stored: Stored) => void> = []
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`${script} exited early (code ${code})`)))
    child.on("message", (message: ToParent) => {
      if (message._tag === "stored") {
        waiting.shift()?.(message.stored)
        return
      }
      child.removeAllListeners("exit")
      resolve({
        url: `http://127.0.0.1:${message.port}`,
        pid: child.pid!,
        stored: () =>
          new Promise<Stored>((done) => {
            waiting.push(done)
            child.send("stored")
          }),
        cpuMs: () => {
          try {
            const fields = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]!.split(" ")
            return (Number(fields[11]) + Number(fields[12])) / ticksPerMs
          } catch {
            return undefined
          }
        },
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done()
            child.once("exit", () => done())
            child.send("stop")
          })
      })
    })
  })

/** Child side: reports `port`, answers `stored` with `count()`, exits on `stop` (after `close()`). */
export const serve = (port: number, count: () => Promise<Stored> | Stored, close: () => Promise<void> | void): void => {
  process.on("message", async (message) => {
    if (message === "stored") process.send!({ _tag: "stored", stored: await count() } satisfies ToParent)
    if (message === "stop") {
      await close()
      process.disconnect()
      process.exit(0)
    }
  })
  process.on("disconnect", () => process.exit(0))
  process.send!({ _tag: "ready", port } satisfies ToParent)
}
