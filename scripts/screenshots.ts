/**
 * Screenshots of every dashboard page, light and dark, into docs/screenshots/ (`npm run screenshots`).
 *
 * Runs a real server (the test harness: SQLite in memory-backed temp file, a worker, loopback
 * targets), sends it a few minutes' worth of traffic in a few seconds, and photographs the pages
 * with Debian's Chromium through playwright-core (FANOUT_CHROMIUM overrides /usr/bin/chromium).
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { chromium } from "playwright-core"
import * as Fault from "../src/testing/Fault.js"
import { start } from "../test/Server/harness.js"

const out = join(import.meta.dirname, "..", "docs", "screenshots")
const KEY = "screenshot-key"
const auth = { authorization: `Bearer ${KEY}` }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const program = Effect.gen(function*() {
  let tick = 0
  const h = yield* start({
    worker: true,
    server: { apiKeys: [KEY] },
    policy: {
      timeout: "2 seconds",
      retry: { maxAttempts: 4, initialDelay: "100 millis", maxDelay: "400 millis" },
      circuitBreaker: { failureThreshold: 5, resetAfter: "30 seconds" }
    },
    targets: {
      inventory: () => Fault.delayed(5 + Math.round(Math.random() * 20), Fault.ok()),
      payments: (
        r
      ) => (r.attempt === 1 && Math.random() < 0.3
        ? Fault.unavailable()
        : Fault.delayed(20 + Math.round(Math.random() * 60), Fault.ok())),
      shipping: () => Fault.delayed(10, Fault.ok()),
      crm: (r) => (r.body.includes("\"vip\":true") ? Fault.status(422) : Fault.ok()),
      legacy: () => ((tick++ > 4) ? Fault.unavailable() : Fault.ok())
    },
    after: { shipping: ["inventory", "payments"] }
  })
  yield* Effect.promise(async () => {
    const post = (body: unknown) =>
      h.request("/v1/events", {
        json: {
          ...(body as object),
          headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }
        },
        headers: auth
      })
    for (let i = 1; i <= 60; i++) {
      await post({
        id: `order-${1000 + i}`,
        type: "order.placed",
        payload: { orderId: `o-${1000 + i}`, qty: 1 + (i % 3), vip: i % 9 === 0 }
      })
      await sleep(60)
    }
    await sleep(1500)
    const browser = await chromium.launch({
      executablePath: process.env.FANOUT_CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-background-networking"]
    })
    mkdirSync(out, { recursive: true })
    try {
      for (const scheme of ["light", "dark"] as const) {
        const context = await browser.newContext({
          colorScheme: scheme,
          viewport: { width: 1280, height: 900 },
          deviceScaleFactor: 1
        })
        const page = await context.newPage()
        await page.goto(h.url)
        await page.getByRole("heading", { name: "Sign in" }).waitFor()
        await page.screenshot({ path: join(out, `signin-${scheme}.png`) })
        await page.getByLabel("API key").fill(KEY)
        await page.getByRole("button", { name: "Sign in" }).click()
        await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor()
        // A few samples for the charts, with traffic flowing.
        for (let i = 0; i < 12; i++) {
          await post({
            id: `order-${scheme}-${i}`,
            type: "order.placed",
            payload: { orderId: `o-${scheme}-${i}`, qty: 1 }
          })
          await sleep(500)
        }
        await page.screenshot({ path: join(out, `overview-${scheme}.png`), fullPage: true })
        await page.goto(`${h.url}/#/events`)
        await page.locator("tr[data-event]").first().waitFor()
        await page.screenshot({ path: join(out, `events-${scheme}.png`) })
        const retried = await h.request("/v1/events?target=payments&limit=200", { headers: auth })
        const withRetry = retried.body.items.find((e: any) => e.id.startsWith("order-1")) ?? retried.body.items[0]
        let eventId = withRetry.id
        for (const e of retried.body.items) {
          const s = await h.request(`/v1/events/${encodeURIComponent(e.id)}`, { headers: auth })
          if (s.body.deliveries.some((d: any) => d.target === "payments" && d.history.length > 1)) {
            eventId = e.id
            break
          }
        }
        await page.goto(`${h.url}/#/events/${encodeURIComponent(eventId)}`)
        await page.getByRole("heading", { name: `Event ${eventId}` }).waitFor()
        await page.screenshot({ path: join(out, `event-${scheme}.png`), fullPage: true })
        await page.goto(`${h.url}/#/dead-letters`)
        await page.locator("tr[data-dead-letter]").first().waitFor()
        await page.locator("tr[data-dead-letter] input[type=checkbox]").first().check()
        await page.screenshot({ path: join(out, `dead-letters-${scheme}.png`) })
        await page.getByRole("button", { name: "Replay all matching…" }).click()
        await page.getByRole("dialog").waitFor()
        await page.screenshot({ path: join(out, `replay-dialog-${scheme}.png`) })
        await context.close()
      }
      const phone = await browser.newContext({
        colorScheme: "light",
        viewport: { width: 390, height: 844 },
        isMobile: true
      })
      const page = await phone.newPage()
      await page.goto(h.url)
      await page.getByLabel("API key").fill(KEY)
      await page.getByRole("button", { name: "Sign in" }).click()
      await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor()
      await sleep(2500)
      await page.screenshot({ path: join(out, "overview-phone.png") })
      await phone.close()
    } finally {
      await browser.close()
    }
  })
  console.log(`screenshots written to ${out}`)
})

await Effect.runPromise(Effect.scoped(program))
