/**
 * The baseline of the server benchmark: a bare `node:http` handler that reads the body, parses the
 * JSON, checks it has a string `type`, and inserts it into SQLite with better-sqlite3 — WAL and
 * `synchronous = FULL` (the same durability as Fanout's default store), one insert (one commit) per
 * request — then answers 202 with the id. No validation beyond that, no auth, no limits.
 *
 * Run by bench/server.ts in its own process: `node --import tsx bench/server/baseline.ts <db file>`.
 */
import { randomUUID } from "node:crypto"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { createRequire } from "node:module"
import { serve } from "./child.js"

const require = createRequire(import.meta.url)
// better-sqlite3 ships no types; it comes with @effect/sql-sqlite-node.
const Database = require("better-sqlite3") as new(file: string) => {
  pragma: (sql: string) => unknown
  exec: (sql: string) => void
  prepare: (sql: string) => { run: (...args: Array<unknown>) => unknown; get: () => unknown }
  close: () => void
}

const file = process.argv[2]
if (file === undefined) throw new Error("usage: baseline.ts <db file>")

const db = new Database(file)
db.pragma("journal_mode = WAL")
db.pragma("synchronous = FULL")
db.exec(
  "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, type TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL)"
)
const insert = db.prepare("INSERT OR IGNORE INTO events (id, type, payload, created_at) VALUES (?, ?, ?, ?)")
const count = db.prepare("SELECT COUNT(*) AS n FROM events")

const answer = (res: import("node:http").ServerResponse, status: number, body: string) => {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
  res.end(body)
}

const server = createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/v1/events") return answer(res, 404, "{\"error\":\"not found\"}")
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => {
    let event: { id?: unknown; type?: unknown; payload?: unknown }
    try {
      event = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch {
      return answer(res, 400, "{\"error\":\"invalid json\"}")
    }
    if (typeof event !== "object" || event === null || typeof event.type !== "string") {
      return answer(res, 400, "{\"error\":\"invalid event\"}")
    }
    const id = typeof event.id === "string" ? event.id : randomUUID()
    insert.run(id, event.type, JSON.stringify(event.payload ?? null), Date.now())
    answer(res, 202, JSON.stringify({ id }))
  })
})
server.keepAliveTimeout = 60_000
server.headersTimeout = 65_000

server.listen(0, "127.0.0.1", () =>
  serve(
    (server.address() as AddressInfo).port,
    () => {
      const events = (count.get() as { n: number }).n
      // One commit per insert (autocommit), plus the CREATE TABLE.
      return { events, commits: events + 1 }
    },
    () =>
      new Promise<void>((done) => {
        server.closeAllConnections()
        server.close(() => {
          db.close()
          done()
        })
      })
  ))
