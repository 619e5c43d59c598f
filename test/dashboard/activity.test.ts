/**
 * The dashboard's activity feed in Chromium: a breaker that opens on the real application
 * (`Main.layer`, operator events configured and routed) shows up on the overview as
 * "circuit opened", linking to the event.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel } from "effect"
import { reply, startServer } from "../integration/helpers.js"
import { prepare, start } from "../Main.helpers.js"
import { browser, P, page as newPage, skipReason } from "./browser.js"

const dir = mkdtempSync(join(tmpdir(), "fanout-activity-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const d = skipReason !== undefined ? describe.skip : describe

d(`dashboard activity feed in Chromium${skipReason !== undefined ? ` (skipped: ${skipReason})` : ""}`, () => {
  it.scopedLive("a breaker opening appears in the activity feed", () =>
    Effect.gen(function*() {
      const targets = yield* startServer((_req, res, r) => reply(res, r.path === "/flaky" ? 503 : 200))
      const config = {
        server: { port: 0 },
        store: { sqlite: join(dir, "activity.db") },
        targets: {
          flaky: {
            url: `${targets.url}/flaky`,
            retry: { maxAttempts: 1 },
            circuitBreaker: { failureThreshold: 2, resetAfter: "1 hour" }
          },
          pager: { url: `${targets.url}/pager` }
        },
        routes: { "order.*": ["flaky"], "fanout.*": ["pager"] },
        operatorEvents: { every: "50 millis" }
      }
      const app = yield* prepare(config, {}, join(dir, "activity.json"))
      const url = yield* start(app, { worker: { pollInterval: "50 millis" } }).pipe(
        Logger.withMinimumLogLevel(LogLevel.None)
      )
      for (let i = 0; i < 3; i++) {
        yield* P(() =>
          fetch(`${url}/v1/events?wait=settled`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ id: `act-${i}`, type: "order.placed", payload: {} })
          })
        )
      }
      const b = yield* browser
      const page = yield* newPage(b)
      yield* P(() => page.goto(url))
      const item = page.locator("[data-activity=\"fanout.target.circuit_opened\"]")
      yield* P(() => item.waitFor({ timeout: 30_000 }))
      yield* P(() => item.getByRole("link", { name: "circuit opened" }).click())
      yield* P(() => page.locator("pre.json").filter({ hasText: "\"target\": \"flaky\"" }).waitFor({ timeout: 30_000 }))
      assert.include(yield* P(() => page.locator("pre.json").innerText()), "fanout.target.circuit_opened")
    }), 60_000)
})
