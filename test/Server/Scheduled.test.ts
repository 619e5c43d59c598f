/**
 * Later delivery (issue 15, item 3) through the whole application (`Main.provide`: real HTTP on
 * loopback, a SQLite store, workers): `POST /v1/events` (lean listener and `HttpApi` path) and
 * `POST /v1/events:batch` take `deliverAt` (RFC 3339) or `delay` (a duration). Both, a bad value or
 * a time beyond `server.maxDelay` is 422 and stores nothing. A scheduled event shows as `scheduled`
 * with `deliverAt` in `GET /v1/events/{id}` and reaches its target at or after that instant — with
 * the workers' poll interval at 1 minute, so only the exact wake-up (`store.nextDue`) can deliver it
 * in time. `fanout send --delay` (the real executable) schedules one too.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { reply, startServer } from "../integration/helpers.js"
import { prepare, request, runFanout, start } from "../Main.helpers.js"

/** Polls `get` until `done` holds (every 20 ms, 20 s at most). */
const until = <A>(get: Effect.Effect<A>, done: (a: A) => boolean) =>
  get.pipe(
    Effect.filterOrFail(done, () => "not yet" as const),
    Effect.retry(Schedule.spaced("20 millis")),
    Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("condition not reached in 20 s") })
  )

const setup = Effect.gen(function*() {
  const dir = mkdtempSync(join(tmpdir(), "fanout-scheduled-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  const targets = yield* startServer((_req, res) => reply(res, 200))
  const app = yield* prepare({
    server: { port: 0, maxDelay: "1 hour" },
    store: { sqlite: join(dir, "fanout.db") },
    targets: { inventory: { url: `${targets.url}/inventory` } },
    routes: { "order.*": ["inventory"] }
  })
  // No poll to speak of: a scheduled delivery is only on time through the exact wake-up.
  const url = yield* start(app, { worker: { pollInterval: "1 minute" } })
  return { url, targets }
})

const post = (url: string, path: string, json: unknown) => request(`${url}${path}`, { method: "POST", json })

describe("later delivery through the server", () => {
  it.scopedLive("both fields, a bad value, or beyond server.maxDelay: 422 on every path, nothing stored", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const soon = new Date(Date.now() + 60_000).toISOString()
      const tooFar = new Date(Date.now() + 2 * 3_600_000).toISOString()
      const cases: ReadonlyArray<readonly [Record<string, unknown>, string, string]> = [
        [{ deliverAt: soon, delay: "1 minute" }, "invalid_schedule", "deliverAt"],
        [{ deliverAt: "tomorrow" }, "invalid_schedule", "deliverAt"],
        [{ deliverAt: "2026-13-45T99:00:00Z" }, "invalid_schedule", "deliverAt"],
        [{ delay: "soon" }, "invalid_schedule", "delay"],
        [{ delay: "-5 seconds" }, "invalid_schedule", "delay"],
        [{ delay: "2 hours" }, "schedule_beyond_horizon", "delay"],
        [{ deliverAt: tooFar }, "schedule_beyond_horizon", "deliverAt"]
      ]
      let n = 0
      for (const [schedule, code, path] of cases) {
        // The lean listener, the HttpApi path (`?wait=`), and the batch.
        for (const route of ["/v1/events", "/v1/events?wait=all"]) {
          const id = `bad-${++n}`
          const answer = yield* post(url, route, { id, type: "order.placed", payload: {}, ...schedule })
          assert.strictEqual(answer.status, 422, `${route} ${JSON.stringify(schedule)}: ${answer.text}`)
          assert.strictEqual(answer.body.error.code, code, answer.text)
          assert.deepStrictEqual(answer.body.error.issues.map((i: { path: string }) => i.path), [path])
          assert.strictEqual((yield* request(`${url}/v1/events/${id}`)).status, 404)
        }
        const id = `bad-${++n}`
        const batch = yield* post(url, "/v1/events:batch", {
          events: [{ id: `${id}-ok`, type: "order.placed", payload: {} }, {
            id,
            type: "order.placed",
            payload: {},
            ...schedule
          }]
        })
        assert.strictEqual(batch.status, 422, batch.text)
        assert.strictEqual(batch.body.error.code, code)
        assert.deepStrictEqual(batch.body.error.issues.map((i: { path: string }) => i.path), [`events[1].${path}`])
        // All or nothing: the good event of the batch was not stored either.
        assert.strictEqual((yield* request(`${url}/v1/events/${id}-ok`)).status, 404)
      }
    }))

  it.scopedLive("a delayed event is scheduled, then delivered at or after its instant, without waiting for the poll", () =>
    Effect.gen(function*() {
      const { targets, url } = yield* setup
      const sent = yield* post(url, "/v1/events", {
        id: "o-1",
        type: "order.placed",
        payload: { n: 1 },
        delay: "3 seconds"
      })
      assert.strictEqual(sent.status, 202, sent.text)
      assert.deepStrictEqual(sent.body.deliveries.map((d: { status: string }) => d.status), ["pending"])
      const status = yield* request(`${url}/v1/events/o-1`)
      const delivery = status.body.deliveries[0]
      const deliverAt = Date.parse(delivery.deliverAt)
      assert.strictEqual(delivery.status, "scheduled", status.text)
      assert.strictEqual(delivery.nextAttemptAt, delivery.deliverAt)
      assert.deepStrictEqual(delivery.history, [])
      // The instant is the server's receipt + 3 s: after the enqueue.
      assert.isAbove(deliverAt, Date.parse(status.body.enqueuedAt))

      // The same id and content again, due now: a duplicate, and the first schedule stands.
      const again = yield* post(url, "/v1/events", {
        id: "o-1",
        type: "order.placed",
        payload: { n: 1 },
        delay: "0 seconds"
      })
      assert.deepStrictEqual([again.status, again.body.duplicate], [200, true])
      const still = (yield* request(`${url}/v1/events/o-1`)).body.deliveries[0]
      assert.deepStrictEqual([still.status, still.deliverAt], ["scheduled", delivery.deliverAt])

      // A batch item with deliverAt, the same instant.
      const batch = yield* post(url, "/v1/events:batch", {
        events: [{ id: "o-2", type: "order.placed", payload: { n: 2 }, deliverAt: delivery.deliverAt }]
      })
      assert.strictEqual(batch.status, 202, batch.text)
      assert.strictEqual((yield* request(`${url}/v1/events/o-2`)).body.deliveries[0].status, "scheduled")

      const done = yield* until(
        request(`${url}/v1/events/o-2`),
        (r) => r.body.deliveries[0].status === "delivered"
      )
      assert.isUndefined(done.body.deliveries[0].deliverAt)
      yield* until(request(`${url}/v1/events/o-1`), (r) => r.body.deliveries[0].status === "delivered")
      const received = targets.on("/inventory")
      assert.deepStrictEqual(received.map((r) => JSON.parse(r.body).id).sort(), ["o-1", "o-2"])
      for (const r of received) assert.isAtLeast(r.wallAt, deliverAt, "received before its deliverAt")
    }))

  it.scopedLive("a deliverAt in the past is due now; fanout send --deliver-at / --delay schedule through the API", () =>
    Effect.gen(function*() {
      const { targets, url } = yield* setup
      const past = yield* post(url, "/v1/events?wait=all", {
        id: "p-1",
        type: "order.placed",
        payload: {},
        deliverAt: "2020-01-01T00:00:00Z"
      })
      assert.strictEqual(past.status, 200, past.text)
      assert.strictEqual(past.body.deliveries[0].status, "delivered")

      // ?wait= does not wait for the schedule past its bound (here Prefer: wait=1): 202, not settled.
      const waited = yield* request(`${url}/v1/events?wait=all`, {
        method: "POST",
        headers: { prefer: "wait=1" },
        json: { id: "w-1", type: "order.placed", payload: {}, delay: "1 hour" }
      })
      assert.strictEqual(waited.status, 202, waited.text)
      assert.strictEqual(waited.body.settled, false)

      // --deliver-at: an instant the test chose, so the receipt can be compared with it.
      const at = new Date(Date.now() + 2_000).toISOString()
      const [ran, later] = yield* Effect.all([
        Effect.promise(() =>
          runFanout(["send", "order.placed", "{\"n\":3}", "--id", "c-1", "--deliver-at", at, "--url", url])
        ),
        Effect.promise(() =>
          runFanout(["send", "order.placed", "{\"n\":4}", "--id", "c-2", "--delay", "1 hour", "--url", url])
        )
      ], { concurrency: 2 })
      assert.strictEqual(ran.code, 0, ran.stderr)
      assert.strictEqual(later.code, 0, later.stderr)
      // --delay: scheduled an hour after the server received it (the enqueue time is stamped just after).
      const hour = (yield* request(`${url}/v1/events/c-2`)).body
      assert.strictEqual(hour.deliveries[0].status, "scheduled")
      const ahead = Date.parse(hour.deliveries[0].deliverAt) - Date.parse(hour.enqueuedAt)
      assert.isAtMost(ahead, 3_600_000)
      assert.isAbove(ahead, 3_500_000)
      yield* until(request(`${url}/v1/events/c-1`), (r) => r.body.deliveries[0].status === "delivered")
      const got = targets.on("/inventory").find((r) => JSON.parse(r.body).id === "c-1")
      assert.isDefined(got)
      assert.isAtLeast(got!.wallAt, Date.parse(at))
      assert.isUndefined(targets.on("/inventory").find((r) => JSON.parse(r.body).id === "c-2"))
    }))
})
