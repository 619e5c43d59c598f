/**
 * Resend (issue 12, item 9, the second half) through the whole application (`Main.provide`: real
 * HTTP on loopback, a SQLite store, workers): `POST /v1/events/{id}/targets/{name}/resend` puts a
 * delivered delivery back to pending under the key `<event id>:<target>:resend-<n>`, and the
 * worker sends it again; an unknown event or target is 404, a target no longer configured 422, an
 * open or dead delivery 409 — nothing changed. `fanout resend <id> --target NAME` (the real
 * executable) does the same through the API.
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
  const dir = mkdtempSync(join(tmpdir(), "fanout-resend-"))
  yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
  // "slow" hangs until released, so a delivery to it stays in flight; "bad" always answers 400.
  const held: Array<() => void> = []
  const targets = yield* startServer((req, res) => {
    if (req.url === "/slow") held.push(() => reply(res, 200))
    else reply(res, req.url === "/bad" ? 400 : 200)
  })
  const app = yield* prepare({
    server: { port: 0 },
    store: { sqlite: join(dir, "fanout.db") },
    targets: {
      inventory: { url: `${targets.url}/inventory` },
      slow: { url: `${targets.url}/slow`, timeout: "30 seconds" },
      bad: { url: `${targets.url}/bad`, retry: { maxAttempts: 1 } }
    },
    routes: { "order.*": ["inventory"], "slow.*": ["slow"], "bad.*": ["bad"] }
  })
  const url = yield* start(app, { worker: { pollInterval: "20 millis" } })
  // Registered after the app: it runs first on close, so the app's shutdown does not wait for "slow".
  yield* Effect.addFinalizer(() => Effect.sync(() => held.forEach((f) => f())))
  return { url, targets, dir, app }
})

const post = (url: string, path: string, json?: unknown) =>
  request(`${url}${path}`, { method: "POST", ...(json !== undefined ? { json } : {}) })

describe("resend", () => {
  it.scopedLive("a delivered event goes to the target again under <id>:<target>:resend-<n>; history kept", () =>
    Effect.gen(function*() {
      const { targets, url } = yield* setup
      const sent = yield* post(url, "/v1/events?wait=all", { id: "o-1", type: "order.placed", payload: { n: 1 } })
      assert.strictEqual(sent.status, 200, sent.text)
      assert.strictEqual(targets.on("/inventory").length, 1)

      const resent = yield* post(url, "/v1/events/o-1/targets/inventory/resend")
      assert.strictEqual(resent.status, 202, resent.text)
      assert.strictEqual(resent.headers.get("location"), "/v1/events/o-1")
      assert.deepStrictEqual(resent.body, {
        id: sent.body.deliveries[0].id,
        eventId: "o-1",
        target: "inventory",
        status: "pending",
        idempotencyKey: "o-1:inventory:resend-1",
        resends: 1
      })
      const status = yield* until(
        request(`${url}/v1/events/o-1`),
        (r) => r.body.deliveries[0].status === "delivered" && r.body.deliveries[0].history.length === 2
      )
      const delivery = status.body.deliveries[0]
      assert.strictEqual(delivery.idempotencyKey, "o-1:inventory:resend-1")
      assert.deepStrictEqual(delivery.history.map((a: { number: number }) => a.number), [1, 2])
      assert.strictEqual(targets.on("/inventory").length, 2, "the target received the event a second time")
      assert.deepStrictEqual(targets.on("/inventory").map((r) => JSON.parse(r.body).id), ["o-1", "o-1"])
      // On the wire too: the resend carries its own Idempotency-Key.
      assert.deepStrictEqual(targets.on("/inventory").map((r) => r.key), ["o-1:inventory", "o-1:inventory:resend-1"])

      const twice = yield* post(url, "/v1/events/o-1/targets/inventory/resend")
      assert.strictEqual(twice.body.idempotencyKey, "o-1:inventory:resend-2")
    }))

  it.scopedLive("404 unknown event or target, 409 open or dead, 422 target no longer configured; nothing changed", () =>
    Effect.gen(function*() {
      const { app, url } = yield* setup
      const unknown = yield* post(url, "/v1/events/nope/targets/inventory/resend")
      assert.deepStrictEqual([unknown.status, unknown.body.error.code], [404, "not_found"])
      yield* post(url, "/v1/events?wait=all", { id: "o-2", type: "order.placed", payload: {} })
      const noDelivery = yield* post(url, "/v1/events/o-2/targets/slow/resend")
      assert.deepStrictEqual([noDelivery.status, noDelivery.body.error.code], [404, "not_found"])
      const unknownTarget = yield* post(url, "/v1/events/o-2/targets/nobody/resend")
      assert.deepStrictEqual([unknownTarget.status, unknownTarget.body.error.code], [404, "not_found"])

      // In flight: 409 delivery_open.
      yield* post(url, "/v1/events", { id: "s-1", type: "slow.placed", payload: {} })
      yield* until(request(`${url}/v1/events/s-1`), (r) => r.body.deliveries[0].status === "in_flight")
      const open = yield* post(url, "/v1/events/s-1/targets/slow/resend")
      assert.deepStrictEqual([open.status, open.body.error.code], [409, "delivery_open"])
      assert.include(open.body.error.message, "in_flight")

      // Dead: 409 delivery_dead, pointing at the replay.
      const dead = yield* post(url, "/v1/events?wait=all", { id: "b-1", type: "bad.placed", payload: {} })
      assert.strictEqual(dead.status, 502, dead.text)
      const refused = yield* post(url, "/v1/events/b-1/targets/bad/resend")
      assert.deepStrictEqual([refused.status, refused.body.error.code], [409, "delivery_dead"])
      assert.include(refused.body.error.message, `/v1/dead-letters/${dead.body.deliveries[0].id}/replay`)
      const still = yield* request(`${url}/v1/events/b-1`)
      assert.strictEqual(still.body.deliveries[0].status, "dead")
      assert.strictEqual(still.body.deliveries[0].idempotencyKey, "b-1:bad")

      // The same store under a configuration without "inventory": 422, the delivery untouched.
      const { inventory: _, ...rest } = app.config.targets
      const without = yield* prepare({
        server: { port: 0 },
        store: app.config.store!,
        targets: rest as never,
        routes: { "slow.*": ["slow"], "bad.*": ["bad"] }
      })
      const url2 = yield* start(without, { workers: false })
      const orphan = yield* post(url2, "/v1/events/o-2/targets/inventory/resend")
      assert.deepStrictEqual([orphan.status, orphan.body.error.code], [422, "target_not_configured"])
      const kept = yield* request(`${url2}/v1/events/o-2`)
      assert.deepStrictEqual([kept.body.deliveries[0].status, kept.body.deliveries[0].idempotencyKey], [
        "delivered",
        "o-2:inventory"
      ])
    }))

  it.scopedLive(
    "fanout resend <id> --target NAME: the answer as JSON (exit 0); a refusal exits 1 with the server's message",
    () =>
      Effect.gen(function*() {
        const { url } = yield* setup
        yield* post(url, "/v1/events?wait=all", { id: "c-1", type: "order.placed", payload: {} })
        const [ok, refused] = yield* Effect.promise(() =>
          Promise.all([
            runFanout(["resend", "c-1", "--target", "inventory", "--url", url]),
            runFanout(["resend", "c-9", "--target", "inventory", "--url", url])
          ])
        )
        assert.strictEqual(ok.code, 0, ok.stderr)
        assert.strictEqual(JSON.parse(ok.stdout).idempotencyKey, "c-1:inventory:resend-1")
        assert.strictEqual(refused.code, 1, refused.stdout)
        assert.include(refused.stderr, "No event with id \"c-9\"")
      }),
    { timeout: 120_000 }
  )
})
