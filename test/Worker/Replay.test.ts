/**
 * Replay starts the retry budget over (issue 12, item 3): a delivery older than `retry.maxAge` dies
 * `max_age` after one failed attempt; once replayed, its age counts from the replay, so it gets the
 * policy's attempts again instead of one attempt and a second `max_age`. Real worker, real SQLite
 * file, a real loopback target; the event's enqueue instant is moved two days back in the file
 * (another connection, as an old outbox would hold it).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import { Event, Target } from "../../src/index.js"
import { reply, startServer } from "../integration/helpers.js"
import { eventually, makeEnv } from "./helpers.js"

interface Db {
  prepare(sql: string): { run(...params: ReadonlyArray<unknown>): unknown }
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(file: string) => Db

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))
const day = 24 * 60 * 60 * 1000

describe("replay starts the retry budget over", () => {
  it.scopedLive("a dead letter past maxAge, replayed, gets the policy's attempts again (not one attempt and max_age)", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-replay-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const filename = join(dir, "outbox.db")
      // 503 for the first two requests, then 200.
      const server = yield* startServer((_req, res, r) => reply(res, r.nth <= 2 ? 503 : 200))
      const T = Target.make("t", {
        request: (event: Event.Event<string, unknown>) =>
          HttpClientRequest.post(`${server.url}/t`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload)),
        policy: {
          retry: { maxAttempts: 5, maxAge: "1 day", initialDelay: "10 millis", jitter: "none" },
          circuitBreaker: false
        }
      })
      const env = yield* makeEnv([T], SqliteStore.layer({ filename }))
      const event = yield* Ping.make({ n: 1 })
      yield* env.store.enqueue(event, ["t"])
      const old = new Database(filename)
      old.prepare("UPDATE fanout_deliveries SET enqueued_at = enqueued_at - ?").run(2 * day)
      old.close()

      yield* env.start({ pollInterval: "20 millis" })
      const status = () => Effect.map(env.store.status(event.id), (s) => Option.getOrThrow(s).deliveries[0]!)
      yield* eventually("dead after its first attempt", Effect.map(status(), (d) => d.status === "dead"))
      const dead = yield* status()
      assert.strictEqual(dead.deadReason, "max_age")
      assert.deepStrictEqual(dead.history.map((h) => h.outcome), ["http_503"])

      assert.isTrue(yield* env.store.replay(dead.id))
      yield* eventually(
        "delivered after the replay",
        Effect.map(status(), (d) => d.status !== "pending" && d.status !== "in_flight")
      )
      const after = yield* status()
      assert.strictEqual(after.status, "delivered", `after the replay: ${after.status} (${after.deadReason})`)
      assert.deepStrictEqual(after.history.map((h) => h.outcome), ["http_503", "http_503", "success"])
      assert.strictEqual(after.attempts, 2, "attempts count from the replay")
      assert.strictEqual(after.totalAttempts, 3)
    }))
})
