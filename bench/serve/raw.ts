/**
 * Side A of the serve benchmark, the floor: a bare `node:http` server that answers 202 at once and
 * then `Promise.allSettled` of the two POSTs with undici (keep-alive `Agent`). Nothing durable, no
 * retry: an event is lost if the process dies or a target fails.
 *
 * `node --import tsx bench/serve/raw.ts <port> <target A url> <target B url>`
 */
import { Agent } from "undici"
import { poster } from "../lib/undici.js"
import { onStop, serveEvents } from "./common.js"

const [port, urlA, urlB] = process.argv.slice(2)
if (port === undefined || urlA === undefined || urlB === undefined) {
  throw new Error("usage: raw.ts <port> <url A> <url B>")
}

const agent = new Agent({ keepAliveTimeout: 30_000 })
const post = poster(agent)
const counts = { accepted: 0, delivered: 0, failed: 0 }

await serveEvents(Number(port), (event) => {
  counts.accepted++
  const body = { id: event.id, type: event.type, key: event.key, payload: event.payload }
  // After the 202: the answer does not wait for the targets.
  setImmediate(() =>
    void Promise.allSettled([post(urlA, "/a", body, `${event.id}:a`), post(urlB, "/b", body, `${event.id}:b`)]).then(
      (results) => {
        for (const r of results) {
          if (r.status === "fulfilled") counts.delivered++
          else counts.failed++
        }
      }
    )
  )
}, () => counts)
onStop(() => agent.close())
process.stdout.write(`raw: listening on ${port}\n`)
