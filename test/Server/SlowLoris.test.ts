/**
 * Slow clients: 300 sockets trickle header bytes (one every 200 ms, never finishing) while normal
 * producers keep posting events. The normal requests are still answered, and promptly; every
 * trickling socket is answered 408 (one error shape) and closed by `headersTimeout`, not before.
 *
 * Real time on loopback; the bounds are generous (this may run on a loaded 2-core machine): the
 * point is "served at all, and in well under the timeout", not a latency figure.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { isErrorShape, start, totalDeliveries } from "./harness.js"

interface Loris {
  readonly socket: net.Socket
  readonly openedAt: number
  closedAt: number | undefined
  received: string
}

describe("slow-loris", () => {
  it.scopedLive(
    "300 trickling sockets neither block normal requests nor outlive headersTimeout",
    () =>
      Effect.gen(function*() {
        const headersTimeoutMs = 2_000
        const h = yield* start({
          server: {
            headersTimeout: `${headersTimeoutMs} millis`,
            requestTimeout: "4 seconds",
            connectionsCheckingInterval: "200 millis"
          }
        })
        const lorises: Array<Loris> = []
        const timers: Array<NodeJS.Timeout> = []
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const t of timers) clearInterval(t)
            for (const l of lorises) l.socket.destroy()
          })
        )
        yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 300 }, (_, i) =>
            new Promise<void>((resolve) => {
              const socket = net.connect(h.port, "127.0.0.1")
              const loris: Loris = { socket, openedAt: 0, closedAt: undefined, received: "" }
              lorises.push(loris)
              socket.on("connect", () => {
                ;(loris as { openedAt: number }).openedAt = Date.now()
                socket.write(`POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow-${i}: `)
                const timer = setInterval(() => {
                  if (!socket.destroyed && socket.writable) socket.write("a")
                }, 200)
                timers.push(timer)
                resolve()
              })
              socket.on("data", (d) => (loris.received += d.toString("utf8")))
              socket.on("error", () => {})
              socket.on("close", () => (loris.closedAt ??= Date.now()))
            })))
        )

        // Normal traffic while every loris holds its socket open.
        for (let i = 0; i < 20; i++) {
          const r = yield* Effect.promise(() =>
            h.request("/v1/events", { json: { type: "order.placed", payload: { i } } })
          )
          assert.strictEqual(r.status, 202)
          // Served while every loris still held its socket: not by waiting for them to be cut off.
          const cut = lorises.filter((l) => l.closedAt !== undefined).length
          assert.strictEqual(cut, 0, `request ${i} answered only after ${cut} trickling sockets were cut off`)
        }
        assert.strictEqual(yield* Effect.promise(() => totalDeliveries(h.store)), 40)
        assert.isTrue(
          lorises.filter((l) => l.closedAt !== undefined && l.closedAt - l.openedAt < headersTimeoutMs * 0.9).length ===
            0
        )

        // Every loris is cut off by headersTimeout (plus the checking interval), with a 408 in the one shape.
        const deadline = Date.now() + 20_000
        while (lorises.some((l) => l.closedAt === undefined) && Date.now() < deadline) {
          yield* Effect.sleep("100 millis")
        }
        const open = lorises.filter((l) => l.closedAt === undefined).length
        assert.strictEqual(open, 0, `${open} trickling sockets still open`)
        for (const l of lorises) {
          assert.isAtLeast(l.closedAt! - l.openedAt, headersTimeoutMs * 0.9)
          assert.match(l.received, /^HTTP\/1\.1 408 /)
          assert.isTrue(isErrorShape(JSON.parse(l.received.slice(l.received.indexOf("\r\n\r\n") + 4)), 408))
        }
      }),
    { timeout: 60_000 }
  )
})
