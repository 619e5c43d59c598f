/**
 * What the serve benchmark's own servers (raw, BullMQ, pg-boss) share: a bare `node:http` server
 * on 127.0.0.1 that takes `POST /v1/events` (reads the body, parses the JSON, checks `type` is a
 * string, takes `id` or makes one), hands the event to `accept` and answers 202 `{ id }` once that
 * resolves (500 if it throws); `GET /healthz`; `GET /stats` (what `stats` returns). Plus the body
 * every target receives: `{ id, type, key, payload }`, like Fanout's envelope.
 */
import { randomUUID } from "node:crypto"
import { createServer, type ServerResponse } from "node:http"

export interface Incoming {
  readonly id: string
  readonly type: string
  readonly key?: unknown
  readonly payload: unknown
}

const answer = (res: ServerResponse, status: number, body: string) => {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

export const serveEvents = (
  port: number,
  accept: (event: Incoming) => Promise<void> | void,
  stats: () => Promise<unknown> | unknown = () => ({})
): Promise<void> =>
  new Promise((resolve) => {
    const server = createServer((req, res) => {
      if (req.method === "GET" && req.url === "/healthz") return answer(res, 200, "{\"status\":\"ok\"}")
      if (req.method === "GET" && req.url === "/stats") {
        return void Promise.resolve(stats()).then((s) => answer(res, 200, JSON.stringify(s)), (e) =>
          answer(res, 500, JSON.stringify(String(e))))
      }
      if (req.method !== "POST" || req.url !== "/v1/events") {
        return answer(res, 404, "{\"error\":\"not found\"}")
      }
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) =>
        chunks.push(chunk))
      req.on("end", () => {
        let event: { id?: unknown; type?: unknown; key?: unknown; payload?: unknown }
        try {
          event = JSON.parse(Buffer.concat(chunks).toString("utf8"))
        } catch {
          return answer(res, 400, "{\"error\":\"invalid json\"}")
        }
        if (typeof event !== "object" || event === null || typeof event.type !== "string") {
          return answer(res, 400, "{\"error\":\"invalid event\"}")
        }
        const id = typeof event.id === "string" ? event.id : randomUUID()
        Promise.resolve()
          .then(() => accept({ id, type: event.type as string, key: event.key, payload: event.payload ?? null }))
          .then(
            () => answer(res, 202, JSON.stringify({ id })),
            (error: unknown) => answer(res, 500, JSON.stringify({ error: String(error) }))
          )
      })
    })
    server.keepAliveTimeout = 60_000
    server.headersTimeout = 65_000
    server.listen(port, "127.0.0.1", () => resolve())
  })

/** The JSON body sent to a target for an event. */
export const targetBody = (event: Incoming): string =>
  JSON.stringify({ id: event.id, type: event.type, key: event.key, payload: event.payload })

/** Exits on SIGTERM/SIGINT after `close` (bounded by 5 s). */
export const onStop = (close: () => Promise<unknown>): void => {
  const stop = () => {
    setTimeout(() => process.exit(0), 5_000).unref()
    void close().finally(() => process.exit(0))
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}
