/**
 * A resent delivery goes out under its own idempotency key (issue 12, item 9): the worker sends the
 * stored delivery's key (`Claimed.idempotencyKey`), so the target sees `<event id>:<target>` the
 * first time and `<event id>:<target>:resend-<n>` after the n-th resend. Real worker, real SQLite
 * file, a real loopback target that records each request's `Idempotency-Key` header.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import * as SqliteStore from "../../src/Store/Sqlite.js"
import { Event, Target } from "../../src/index.js"
import { reply, startServer } from "../integration/helpers.js"
import { eventually, makeEnv } from "./helpers.js"

const Ping = Event.define("ping", Schema.Struct({ n: Schema.Number }))

describe("resend on the wire", () => {
  it.scopedLive("the target receives the resend's own Idempotency-Key, once per resend", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "fanout-resend-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const server = yield* startServer((_req, res) => reply(res, 200))
      const T = Target.make("t", {
        request: (event: Event.Event<string, unknown>) =>
          HttpClientRequest.post(`${server.url}/t`).pipe(HttpClientRequest.bodyUnsafeJson(event.payload))
      })
      const env = yield* makeEnv([T], SqliteStore.layer({ filename: join(dir, "outbox.db") }))
      yield* env.start({ pollInterval: "20 millis" })
      const event = yield* Ping.make({ n: 1 })
      const delivered = (times: number) =>
        eventually(
          `delivered ${times} times`,
          Effect.map(env.store.status(event.id), (s) => {
            const d = Option.getOrThrow(s).deliveries[0]!
            return d.status === "delivered" && d.history.length === times
          })
        )
      yield* env.store.enqueue(event, ["t"])
      yield* delivered(1)
      const first = yield* env.store.resend(event.id, "t")
      assert.strictEqual(first._tag, "Resent")
      yield* delivered(2)
      const second = yield* env.store.resend(event.id, "t")
      assert.strictEqual(second._tag, "Resent")
      yield* delivered(3)
      assert.deepStrictEqual(server.received.map((r) => r.key), [
        `${event.id}:t`,
        `${event.id}:t:resend-1`,
        `${event.id}:t:resend-2`
      ])
    }))
})
