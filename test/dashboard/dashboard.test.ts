/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core) against the real
 * server (`Http.layer`), a real worker and real loopback targets: sign-in, the overview and a
 * breaker opening, an event's attempt timeline, a dead letter replayed from the page and then
 * delivered at the target, and an unauthenticated browser that sees nothing and can do nothing.
 */
import * as NodeHttp from "node:http"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import type { Page } from "playwright-core"
import * as Dashboard from "../../src/Server/Dashboard.js"
import * as ServerOptions from "../../src/Server/Options.js"
import * as Fault from "../../src/testing/Fault.js"
import { type Harness, start } from "../Server/harness.js"
import { browser, P, page as newPage, skipReason } from "./browser.js"

const KEY = "dashboard-key-1"
const auth = { authorization: `Bearer ${KEY}` }
const TIMEOUT = 30_000

const post = (h: Harness, body: unknown, query = "") =>
  P(() => h.request(`/v1/events${query}`, { json: body, headers: auth }))

const signIn = (page: Page, url: string) =>
  P(async () => {
    await page.goto(url)
    await page.getByLabel("API key").fill(KEY)
    await page.getByRole("button", { name: "Sign in" }).click()
    await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor({ timeout: TIMEOUT })
  })

/** Polls `check` (every 50 ms, up to TIMEOUT) until it holds. */
const eventually = (check: () => boolean | Promise<boolean>, what: string) =>
  P(async () => {
    const until = Date.now() + TIMEOUT
    while (!(await check())) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  })

/** A raw request (node:http), with headers fetch would not let a test set. */
const raw = (url: string, method: string, path: string, headers: Record<string, string>) =>
  P(() =>
    new Promise<number>((resolve, reject) => {
      const req = NodeHttp.request(new URL(path, url), { method, headers }, (res) => {
        res.resume()
        res.on("end", () => resolve(res.statusCode ?? 0))
      })
      req.on("error", reject)
      req.end()
    })
  )

const d = skipReason !== undefined ? describe.skip : describe

d(`dashboard in Chromium${skipReason !== undefined ? ` (skipped: ${skipReason})` : ""}`, () => {
  it.scopedLive(
    "an unauthenticated browser sees no data and cannot act; the page's CSP allows no inline script",
    () =>
      Effect.gen(function*() {
        const h = yield* start({
          worker: true,
          server: { apiKeys: [KEY], authThrottle: false },
          targets: { "secret-target": () => Fault.status(422) }
        })
        const dead = yield* post(
          h,
          { id: "hidden-event-1", type: "order.placed", payload: { secret: "s3cr3t" } },
          "?wait=settled"
        )
        assert.strictEqual(dead.body.deliveries[0].status, "dead", dead.text)

        const b = yield* browser
        const page = yield* newPage(b)
        const response = yield* P(() => page.goto(h.url))
        const csp = response?.headers()["content-security-policy"] ?? ""
        assert.strictEqual(csp, Dashboard.contentSecurityPolicy)
        assert.include(csp, "script-src 'self'")
        assert.notInclude(csp, "unsafe-inline")
        yield* P(() => page.getByRole("heading", { name: "Sign in" }).waitFor({ timeout: TIMEOUT }))
        // Nothing of the server's data on the page, in any place.
        const html = yield* P(() => page.content())
        for (const secret of ["secret-target", "hidden-event-1", "s3cr3t"]) assert.notInclude(html, secret)
        // A wrong key is refused and shows nothing either.
        yield* P(() => page.getByLabel("API key").fill("wrong-key"))
        yield* P(() => page.getByRole("button", { name: "Sign in" }).click())
        yield* P(() => page.getByRole("alert").filter({ hasText: "not accepted" }).waitFor({ timeout: TIMEOUT }))
        assert.notInclude(yield* P(() => page.content()), "secret-target")
        // The key is nowhere but in memory: no cookie, no storage, not in the URL.
        assert.deepStrictEqual(yield* P(() => page.context().cookies()), [])
        assert.strictEqual(yield* P(() => page.evaluate<number>("localStorage.length + sessionStorage.length")), 0)
        assert.notInclude(page.url(), "wrong-key")
        // Acting without a key, from the page's own origin: the API refuses, nothing changes.
        const statuses = yield* P(() =>
          page.evaluate(async () => {
            const a = await fetch("/v1/dead-letters:replay", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: "{}"
            })
            const b = await fetch("/v1/dead-letters", { method: "GET" })
            return [a.status, b.status]
          })
        )
        assert.deepStrictEqual(statuses, [401, 401])
        // From another site, even with the key: refused before the API (CSRF).
        assert.strictEqual(
          yield* raw(h.url, "POST", "/v1/dead-letters:replay", { ...auth, "sec-fetch-site": "cross-site" }),
          403
        )
        assert.strictEqual(
          yield* raw(h.url, "DELETE", "/v1/dead-letters/1", { ...auth, origin: "https://elsewhere.example" }),
          403
        )
        const still = yield* P(() => h.request("/v1/dead-letters", { headers: auth }))
        assert.deepStrictEqual(still.body.items.map((x: any) => x.eventId), ["hidden-event-1"])
        assert.strictEqual(h.targets["secret-target"]!.target.stats.received, 1)
      }),
    60_000
  )

  it.scopedLive(
    "sign in; the overview shows each target and its circuit state, and the state changes when a breaker opens",
    () =>
      Effect.gen(function*() {
        let failing = false
        const h = yield* start({
          worker: true,
          server: { apiKeys: [KEY] },
          policy: {
            timeout: "2 seconds",
            retry: { maxAttempts: 1, initialDelay: "20 millis", maxDelay: "50 millis" },
            circuitBreaker: { failureThreshold: 3, resetAfter: "1 hour" }
          },
          targets: { inventory: undefined, payments: () => (failing ? Fault.unavailable() : Fault.ok()) }
        })
        const b = yield* browser
        const page = yield* newPage(b)
        // The page runs under its CSP without a violation and without an uncaught error.
        const problems: Array<string> = []
        page.on("console", (m) => {
          if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text())
        })
        page.on("pageerror", (e) => problems.push(String(e)))
        yield* signIn(page, h.url)
        const card = (name: string) => page.locator(`article[data-target="${name}"]`)
        for (const name of ["inventory", "payments"]) {
          yield* P(() => card(name).getByRole("heading", { name }).waitFor({ timeout: TIMEOUT }))
          yield* P(() => card(name).locator("[data-circuit=\"closed\"]").waitFor({ timeout: TIMEOUT }))
        }
        assert.strictEqual(yield* P(() => page.locator("article[data-target]").count()), 2)
        // The target starts failing: three failures open its breaker, and the page shows it.
        failing = true
        for (let i = 0; i < 3; i++) {
          yield* post(h, { id: `cb-${i}`, type: "order.placed", payload: { i } }, "?wait=settled")
        }
        const open = yield* P(() => h.request("/v1/targets", { headers: auth }))
        assert.strictEqual(open.body.targets.find((t: any) => t.name === "payments").circuit.state, "open", open.text)
        yield* P(() => card("payments").locator("[data-circuit=\"open\"]").waitFor({ timeout: TIMEOUT }))
        assert.include(yield* P(() => card("payments").locator("[data-circuit=\"open\"]").innerText()), "next probe in")
        yield* P(() => card("inventory").locator("[data-circuit=\"closed\"]").waitFor({ timeout: TIMEOUT }))
        // Its dead letters show on its card.
        yield* P(() =>
          card("payments").locator("[data-figure=\"dead\"]").filter({ hasText: "3" }).waitFor({ timeout: TIMEOUT })
        )
        // The chart of each target is drawn (uPlot's canvas).
        assert.strictEqual(yield* P(() => page.locator("article[data-target] .chart canvas").count()), 2)
        assert.deepStrictEqual(problems, [])
      }),
    60_000
  )

  it.scopedLive(
    "an event's page shows its attempts as a timeline (status codes, errors, the success)",
    () =>
      Effect.gen(function*() {
        const h = yield* start({
          worker: true,
          server: { apiKeys: [KEY] },
          policy: { timeout: "2 seconds", retry: { maxAttempts: 5, initialDelay: "20 millis", maxDelay: "50 millis" } },
          targets: { inventory: undefined, shipping: [Fault.unavailable(), Fault.status(429)] }
        })
        const settled = yield* post(h, { id: "order-77", type: "order.placed", payload: { qty: 2 } }, "?wait=settled")
        assert.deepStrictEqual(settled.body.deliveries.map((x: any) => [x.target, x.status]).sort(), [
          ["inventory", "delivered"],
          ["shipping", "delivered"]
        ])
        const b = yield* browser
        const page = yield* newPage(b)
        yield* signIn(page, h.url)
        yield* P(() => page.getByRole("link", { name: "Events" }).click())
        yield* P(() => page.getByLabel("Target").selectOption("shipping"))
        yield* P(() => page.getByRole("button", { name: "Search" }).click())
        yield* P(() => page.getByRole("link", { name: "order-77" }).click())
        yield* P(() => page.getByRole("heading", { name: "Event order-77" }).waitFor({ timeout: TIMEOUT }))
        const timeline = page.getByRole("list", { name: "Attempts to shipping" })
        const attempts = timeline.locator("li[data-attempt]")
        yield* P(() => attempts.nth(2).waitFor({ timeout: TIMEOUT }))
        assert.strictEqual(yield* P(() => attempts.count()), 3)
        const texts = yield* P(() => attempts.allInnerTexts())
        assert.include(texts[0]!, "HTTP 503")
        assert.include(texts[1]!, "HTTP 429")
        assert.include(texts[2]!, "HTTP 200")
        assert.include(texts[2]!, "success")
        assert.match(texts[0]!, /took \d+ ms/)
        assert.strictEqual(
          yield* P(() => page.getByRole("list", { name: "Attempts to inventory" }).locator("li[data-attempt]").count()),
          1
        )
        // The envelope is on the page.
        assert.include(yield* P(() => page.locator("pre.json").innerText()), "\"qty\": 2")
      }),
    60_000
  )

  it.scopedLive(
    "a dead letter replayed from the page is then delivered at the target; Replay all matching… shows the count first",
    () =>
      Effect.gen(function*() {
        let refusing = true
        const h = yield* start({
          worker: true,
          server: { apiKeys: [KEY] },
          targets: { crm: () => (refusing ? Fault.status(422) : Fault.ok()) }
        })
        for (const id of ["dl-1", "dl-2", "dl-3"]) {
          const r = yield* post(h, { id, type: "order.placed", payload: { id } }, "?wait=settled")
          assert.strictEqual(r.body.deliveries[0].status, "dead", r.text)
        }
        refusing = false
        const crm = h.targets.crm!.target
        const deliveredAtTarget = (eventId: string) =>
          crm.requestsFor(`${eventId}:crm`).some((r) => r.result === "answered" && r.status === 200)

        const b = yield* browser
        const page = yield* newPage(b)
        yield* signIn(page, h.url)
        yield* P(() => page.getByRole("link", { name: "Dead letters" }).click())
        const rows = page.locator("tr[data-dead-letter]")
        yield* P(() => rows.nth(2).waitFor({ timeout: TIMEOUT }))
        // One: its own "Replay…" button, then the confirmation.
        yield* P(() => page.getByRole("button", { name: /^Replay… dead letter .* event dl-1\)$/ }).click())
        const dialog = page.getByRole("dialog")
        yield* P(() => dialog.getByRole("button", { name: "Replay 1" }).click())
        yield* P(() =>
          page.getByRole("status").filter({ hasText: "Replayed 1 dead letter." }).waitFor({ timeout: TIMEOUT })
        )
        yield* eventually(() => deliveredAtTarget("dl-1"), "dl-1 delivered at the target")
        yield* eventually(async () => (await rows.count()) === 2, "the replayed row to leave the list")
        // All matching: the count is shown before anything is replayed.
        yield* P(() => page.getByRole("button", { name: "Replay all matching…" }).click())
        yield* P(() =>
          dialog.getByText("Replay 2 dead letters (no filter: every dead letter)?", { exact: false }).waitFor({
            timeout: TIMEOUT
          })
        )
        assert.isFalse(deliveredAtTarget("dl-2"))
        yield* P(() => dialog.getByRole("button", { name: "Replay 2" }).click())
        yield* eventually(
          () => deliveredAtTarget("dl-2") && deliveredAtTarget("dl-3"),
          "dl-2 and dl-3 delivered at the target"
        )
        yield* P(() => page.getByText("No dead letter matches.").waitFor({ timeout: TIMEOUT }))
        const status = yield* P(() => h.request("/v1/events/dl-3", { headers: auth }))
        assert.strictEqual(status.body.deliveries[0].status, "delivered")
        // Same idempotency key on the replay as on the first try.
        assert.deepStrictEqual([...new Set(crm.requestsFor("dl-3:crm").map((r) => r.key))], ["dl-3:crm"])
      }),
    60_000
  )
})

d(`dashboard in Chromium, by keyboard${skipReason !== undefined ? ` (skipped: ${skipReason})` : ""}`, () => {
  it.scopedLive(
    "select a dead letter and purge it with the keyboard only: it leaves the list and the store",
    () =>
      Effect.gen(function*() {
        const h = yield* start({ worker: true, server: { apiKeys: [KEY] }, targets: { crm: () => Fault.status(422) } })
        for (const id of ["pk-1", "pk-2"]) {
          const r = yield* post(h, { id, type: "order.placed", payload: {} }, "?wait=settled")
          assert.strictEqual(r.body.deliveries[0].status, "dead", r.text)
        }
        const b = yield* browser
        const page = yield* newPage(b)
        yield* signIn(page, h.url)
        yield* P(() => page.getByRole("link", { name: "Dead letters" }).focus())
        yield* P(() => page.keyboard.press("Enter"))
        const rows = page.locator("tr[data-dead-letter]")
        yield* P(() => rows.nth(1).waitFor({ timeout: TIMEOUT }))
        yield* P(() => page.getByRole("checkbox", { name: /event pk-1\)$/ }).focus())
        yield* P(() => page.keyboard.press("Space"))
        assert.isTrue(yield* P(() => page.getByRole("checkbox", { name: /event pk-1\)$/ }).isChecked()))
        // The bulk action and its confirmation, each pressed with Enter.
        const purge = page.getByRole("button", { name: "Purge selected…" })
        yield* P(() => purge.focus())
        yield* P(() => page.keyboard.press("Enter"))
        const confirm = page.getByRole("dialog").getByRole("button", { name: "Purge 1" })
        yield* P(() => confirm.waitFor({ timeout: TIMEOUT }))
        yield* P(() => confirm.focus())
        yield* P(() => page.keyboard.press("Enter"))
        yield* P(() =>
          page.getByRole("status").filter({ hasText: "Purged 1 dead letter." }).waitFor({ timeout: TIMEOUT })
        )
        yield* eventually(async () => (await rows.count()) === 1, "the purged row to leave the list")
        const left = yield* P(() => h.request("/v1/dead-letters", { headers: auth }))
        assert.deepStrictEqual(left.body.items.map((x: any) => x.eventId), ["pk-2"])
        // Escape closes a confirmation without doing anything.
        yield* P(() => page.getByRole("button", { name: /^Purge… dead letter .* event pk-2\)$/ }).focus())
        yield* P(() => page.keyboard.press("Enter"))
        yield* P(() => page.getByRole("dialog").waitFor({ timeout: TIMEOUT }))
        yield* P(() => page.keyboard.press("Escape"))
        yield* P(() => page.getByRole("dialog").waitFor({ state: "hidden", timeout: TIMEOUT }))
        const still = yield* P(() => h.request("/v1/dead-letters", { headers: auth }))
        assert.deepStrictEqual(still.body.items.map((x: any) => x.eventId), ["pk-2"])
      }),
    60_000
  )
})

describe("dashboard routes (no browser)", () => {
  it.scopedLive(
    "GET / is the page shell (no data, CSP), its bundle is served; server.dashboard: false makes / a 404",
    () =>
      Effect.gen(function*() {
        const on = yield* start({ server: { apiKeys: [KEY] } })
        const page = yield* P(() => on.request("/"))
        assert.strictEqual(page.status, 200)
        assert.include(page.headers.get("content-type") ?? "", "text/html")
        assert.strictEqual(page.headers.get("content-security-policy"), Dashboard.contentSecurityPolicy)
        assert.strictEqual(page.headers.get("x-frame-options"), "DENY")
        assert.notInclude(page.text, "<script>")
        assert.include(page.text, `<script type="module" src="/dashboard/app.js"></script>`)
        const js = yield* P(() => on.request("/dashboard/app.js"))
        assert.strictEqual(js.status, 200)
        assert.include(js.headers.get("content-type") ?? "", "javascript")
        assert.isAbove(js.text.length, 10_000)
        const css = yield* P(() => on.request("/dashboard/app.css"))
        assert.strictEqual(css.status, 200)
        assert.include(css.headers.get("content-type") ?? "", "text/css")
        // A same-origin state change with the key goes through (404: no such dead letter).
        assert.strictEqual(
          yield* raw(on.url, "DELETE", "/v1/dead-letters/1", { ...auth, "sec-fetch-site": "same-origin" }),
          404
        )

        const off = yield* start({ server: { apiKeys: [KEY], dashboard: false } })
        for (const path of ["/", "/dashboard/app.js"]) {
          const reply = yield* P(() => off.request(path))
          assert.strictEqual(reply.status, 404, path)
        }
        // Without the dashboard, the cross-site refusal is off too (the API answers as before).
        assert.strictEqual(
          yield* raw(off.url, "DELETE", "/v1/dead-letters/1", { ...auth, "sec-fetch-site": "cross-site" }),
          404
        )
      }),
    60_000
  )

  it("server.dashboard in the configuration reaches the server options (default on)", () => {
    assert.isTrue(Either.getOrThrow(ServerOptions.fromConfig({}, {})).dashboard)
    assert.isFalse(Either.getOrThrow(ServerOptions.fromConfig({ dashboard: false }, {})).dashboard)
    assert.isTrue(ServerOptions.make({}).dashboard)
  })
})
