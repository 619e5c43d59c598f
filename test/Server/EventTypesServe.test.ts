/**
 * Payload schemas through a real `fanout serve` process (black box): a JSON configuration declares
 * `events["order.placed"].schema`; a payload that does not match is answered `422 schema_mismatch`
 * with its JSON pointers and never reaches the target, a matching one is delivered; a schema Ajv
 * refuses stops the server at start (exit 2) with the file, the path and the reason.
 */
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { reply, startServer } from "../integration/helpers.js"
import { killGroup, request, runFanout, spawnFanout } from "../Main.helpers.js"

/** Starts `fanout serve --config file`; resolves with its URL once it logs that it listens. */
const serve = (file: string): Promise<{ readonly child: ChildProcess; readonly url: string }> =>
  new Promise((resolve, reject) => {
    const child = spawnFanout(["serve", "--config", file])
    let output = ""
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL")
      reject(new Error(`the server did not start within 120 s:\n${output}`))
    }, 120_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const match = /"message":"fanout: listening on (http:\/\/[^"]+)"/.exec(output)
      if (match !== null) {
        clearTimeout(timer)
        resolve({ child, url: match[1]! })
      }
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    child.on("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`the server exited (${code}) before listening:\n${output}`))
    })
  })

const schema = {
  type: "object",
  required: ["orderId", "qty"],
  properties: { orderId: { type: "string" }, qty: { type: "integer", minimum: 1 } }
}

describe("fanout serve with event schemas", () => {
  it.scopedLive(
    "422 schema_mismatch for a payload that does not match (nothing delivered), 202 and delivered for one that does",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "fanout-schemas-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
        const targets = yield* startServer((_req, res) => reply(res, 200))
        const file = join(dir, "fanout.config.json")
        writeFileSync(
          file,
          JSON.stringify({
            server: { host: "127.0.0.1", port: 0 },
            store: { sqlite: "fanout.db" },
            targets: { inventory: { url: `${targets.url}/inventory` } },
            routes: { "order.*": ["inventory"] },
            events: { "order.placed": { schema } }
          })
        )
        const server = yield* Effect.acquireRelease(
          Effect.promise(() => serve(file)),
          ({ child }) => Effect.sync(() => killGroup(child, "SIGKILL"))
        )
        const post = (json: unknown, query = "") => request(`${server.url}/v1/events${query}`, { method: "POST", json })

        const bad = yield* post({ id: "bad", type: "order.placed", payload: { orderId: "o-1", qty: 0 } })
        assert.strictEqual(bad.status, 422, bad.text)
        assert.deepStrictEqual(bad.body.error.code, "schema_mismatch")
        assert.deepStrictEqual(bad.body.error.issues, [{ path: "/payload/qty", message: "must be >= 1" }])
        const badWait = yield* post({ id: "bad", type: "order.placed", payload: { qty: 1 } }, "?wait=all")
        assert.strictEqual(badWait.status, 422, badWait.text)
        assert.deepStrictEqual(badWait.body.error.issues.map((i: { path: string }) => i.path), ["/payload"])
        assert.strictEqual((yield* request(`${server.url}/v1/events/bad`)).status, 404)

        const good = yield* post({ id: "good", type: "order.placed", payload: { orderId: "o-1", qty: 2 } }, "?wait=all")
        assert.strictEqual(good.status, 200, good.text)
        assert.strictEqual(good.body.deliveries[0].status, "delivered")
        assert.deepStrictEqual(targets.on("/inventory").map((r) => JSON.parse(r.body).id), ["good"])

        const types = yield* request(`${server.url}/v1/event-types`)
        assert.deepStrictEqual(types.body.types[0].schema, schema)
      }),
    { timeout: 180_000 }
  )

  it.live(
    "a schema Ajv refuses stops `fanout serve` at start: exit 2, the file, the path and the reason",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(join(tmpdir(), "fanout-schemas-bad-"))
        const file = join(dir, "bad.config.json")
        writeFileSync(
          file,
          JSON.stringify({
            store: { memory: true },
            targets: { inventory: { url: "http://127.0.0.1:1/inventory" } },
            routes: { "order.*": ["inventory"] },
            events: { "order.placed": { schema: { type: "object", properties: { qty: { type: "int" } } } } }
          })
        )
        const ran = yield* Effect.promise(() => runFanout(["serve", "--config", file]))
        rmSync(dir, { recursive: true, force: true })
        assert.strictEqual(ran.code, 2, ran.stdout + ran.stderr)
        assert.include(ran.stderr, `${file}: events["order.placed"].schema: schema is invalid`)
      }),
    { timeout: 120_000 }
  )
})
