/**
 * Mock targets for the benchmarks, run in their own Node process (so that they do not
 * take event-loop time from the system under test): one `node:http` server on two ports
 * (A and B) on 127.0.0.1, answering every POST with 200 and a small JSON body, at once or
 * after a fixed delay, keep-alive on.
 *
 * Parent side: {@link start} forks this file and returns the two URLs, a `counts()` query
 * (requests seen per port, over IPC) and `stop()`. Child side: this file run as a script.
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"

export interface Counts {
  readonly a: number
  readonly b: number
}

export interface MockTargets {
  readonly urlA: string
  readonly urlB: string
  readonly pid: number
  /** Requests received so far on each port. */
  readonly counts: () => Promise<Counts>
  readonly stop: () => Promise<void>
}

type ToParent = { readonly _tag: "ready"; readonly portA: number; readonly portB: number } | {
  readonly _tag: "counts"
  readonly counts: Counts
}

const self = fileURLToPath(import.meta.url)

/** Forks the mock-target process and waits until both ports listen. */
export const start = (delayMs = 0): Promise<MockTargets> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = fork(self, ["--child", `--delay=${delayMs}`], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const waiting: Array<(counts: Counts) => void> = []
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`mock targets exited early (code ${code})`)))
    child.on("message", (message: ToParent) => {
      if (message._tag === "counts") {
        waiting.shift()?.(message.counts)
        return
      }
      child.removeAllListeners("exit")
      resolve({
        urlA: `http://127.0.0.1:${message.portA}`,
        urlB: `http://127.0.0.1:${message.portB}`,
        pid: child.pid!,
        counts: () =>
          new Promise<Counts>((done) => {
            waiting.push(done)
            child.send("counts")
          }),
        stop: () =>
          new Promise<void>((done) => {
            child.once("exit", () => done())
            child.send("stop")
          })
      })
    })
  })

const body = JSON.stringify({ ok: true, accepted: true })
const length = String(Buffer.byteLength(body))

const listen = (delayMs: number, onRequest: () => void): Promise<{ port: number; close: () => void }> =>
  new Promise((resolve) => {
    const server = createServer({ keepAlive: true, keepAliveTimeout: 60_000 }, (req, res) => {
      req.resume()
      req.on("end", () => {
        onRequest()
        const answer = () => {
          res.writeHead(200, { "content-type": "application/json", "content-length": length })
          res.end(body)
        }
        if (delayMs > 0) setTimeout(answer, delayMs)
        else answer()
      })
    })
    // Idle keep-alive connections must survive the pauses between benchmark runs.
    server.headersTimeout = 65_000
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => {
          server.closeAllConnections()
          server.close()
        }
      }))
  })

const child = async () => {
  const counts = { a: 0, b: 0 }
  const delay = Number(process.argv.find((a) => a.startsWith("--delay="))?.slice(8) ?? 0)
  const a = await listen(delay, () => counts.a++)
  const b = await listen(delay, () => counts.b++)
  process.on("message", (message) => {
    if (message === "counts") process.send!({ _tag: "counts", counts: { ...counts } } satisfies ToParent)
    if (message === "stop") {
      a.close()
      b.close()
      process.disconnect()
    }
  })
  process.on("disconnect", () => process.exit(0))
  process.send!({ _tag: "ready", portA: a.port, portB: b.port } satisfies ToParent)
}

if (process.argv.includes("--child") && process.argv[1] === self) void child()
