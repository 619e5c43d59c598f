/**
 * The loopback form of a TestTarget: a real `node:http` server on 127.0.0.1.
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"
import type { Scope } from "effect"
import type { TestTarget } from "./TestTarget.js"

/**
 * A TestTarget on a real socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface Loopback {
  readonly target: TestTarget
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly port: number
}

const headersOf = (req: IncomingMessage): Record<string, string> => {
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v
  }
  return headers
}

/**
 * Serves `target` on 127.0.0.1 (port 0 unless given) until the scope closes; closing destroys
 * every open connection (hung ones included) and cancels pending latency timers. Request times
 * come from the Effect `Clock` (real time unless a test clock is provided).
 *
 * @since 0.1.0
 * @category constructors
 */
export const serve = (
  target: TestTarget,
  options: { readonly host?: string; readonly port?: number } = {}
): Effect.Effect<Loopback, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const host = options.host ?? "127.0.0.1"
    const timers = new Set<NodeJS.Timeout>()
    let base = ""

    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("error", () => {})
      req.on("end", () => {
        const exchange = target.receive({
          method: req.method ?? "GET",
          url: base + (req.url ?? "/"),
          headers: headersOf(req),
          body: Buffer.concat(chunks).toString("utf8"),
          receivedAt: now()
        })
        // Closed before an answer: the client gave up (no-op once answered or reset).
        res.on("close", () => exchange.abort(now()))
        const step = exchange.step
        if (step._tag === "Hang") return
        const act = () => {
          if (step._tag === "Reset") {
            exchange.reset(now())
            req.socket.destroy()
            return
          }
          if (res.destroyed) return
          const answer = exchange.respond(now())
          res.writeHead(answer.status, answer.headers)
          res.end(answer.body)
        }
        if (step.latency <= 0) return act()
        const timer = setTimeout(() => {
          timers.delete(timer)
          act()
        }, step.latency)
        timers.add(timer)
      })
    }

    const server = yield* Effect.acquireRelease(
      Effect.async<ReturnType<typeof createServer>>((resume) => {
        const server = createServer(handle)
        server.once("error", (error) => resume(Effect.die(error)))
        server.listen(options.port ?? 0, host, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          for (const timer of timers) clearTimeout(timer)
          timers.clear()
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const port = (server.address() as AddressInfo).port
    base = `http://${host}:${port}`
    return { target, url: base, port }
  })
