/**
 * Debian's Chromium, driven by playwright-core (never a browser download): whether it is here, and
 * a page per test. Without it the browser tests say clearly that they skipped, unless
 * `FANOUT_REQUIRE_CHROMIUM=1` (CI), where they run and fail.
 */
import { existsSync } from "node:fs"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { Effect } from "effect"
import type { Scope } from "effect"

export const executablePath = process.env.FANOUT_CHROMIUM ?? "/usr/bin/chromium"
export const required = process.env.FANOUT_REQUIRE_CHROMIUM === "1"

/** Why the browser tests skip (undefined: they run). */
export const skipReason: string | undefined = existsSync(executablePath) || required
  ? undefined
  : `no Chromium at ${executablePath} (apt-get install chromium, or set FANOUT_CHROMIUM; FANOUT_REQUIRE_CHROMIUM=1 makes this a failure)`

if (skipReason !== undefined) console.warn(`test/dashboard: SKIPPED: ${skipReason}`)

export const launch = (): Promise<Browser> =>
  chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]
  })

/** A browser for the scope. */
export const browser: Effect.Effect<Browser, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(launch),
  (b) => Effect.promise(() => b.close())
)

/** A fresh context (no cookies, nothing in memory) and page for the scope. */
export const page = (
  b: Browser,
  options: { readonly colorScheme?: "light" | "dark"; readonly viewport?: { width: number; height: number } } = {}
): Effect.Effect<Page, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.promise(() =>
        b.newContext({
          colorScheme: options.colorScheme ?? "light",
          viewport: options.viewport ?? { width: 1280, height: 900 },
          timezoneId: "Europe/Paris"
        })
      ),
      (c: BrowserContext) => Effect.promise(() => c.close())
    ),
    (context) => context
  ).pipe(Effect.flatMap((context) => Effect.promise(() => context.newPage())))

/** A promise as an Effect (a failure is a defect: the test fails with it). */
export const P = <A>(f: () => Promise<A>): Effect.Effect<A> => Effect.promise(f)
