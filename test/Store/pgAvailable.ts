/**
 * Whether the machine's PostgreSQL answers, checked once per test file: the store tests that need it
 * run against it, fail when `FANOUT_REQUIRE_POSTGRES=1` (CI) and it is unreachable, and otherwise
 * say clearly that they skipped.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Redacted } from "effect"

export const url = process.env.FANOUT_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test"
export const required = process.env.FANOUT_REQUIRE_POSTGRES === "1"

/** Connects once (3 s timeout): undefined when reachable, else why not. */
export const reachable: string | undefined = await Effect.runPromise(
  Effect.scoped(PgClient.make({ url: Redacted.make(url), connectTimeout: "3 seconds" })).pipe(
    Effect.provide(Reactivity.layer),
    Effect.as(undefined),
    Effect.catchAllCause((cause) => Effect.succeed(Cause.pretty(cause).split("\n")[0]))
  )
)

/**
 * Why `file`'s PostgreSQL tests skip (undefined: they run). Prints the reason, and when PostgreSQL is
 * required but unreachable registers a failing test under `suite`.
 */
export const skipReason = (file: string, suite: string): string | undefined => {
  const skip = reachable !== undefined && !required
    ? `PostgreSQL unreachable at ${
      url.replace(/\/\/[^@]*@/, "//")
    } (${reachable}); set FANOUT_REQUIRE_POSTGRES=1 to fail instead`
    : undefined
  if (skip !== undefined) console.warn(`[${file}] skipped: ${skip}`)
  if (reachable !== undefined && required) {
    describe(suite, () => {
      it("PostgreSQL is required (FANOUT_REQUIRE_POSTGRES=1) but unreachable", () => {
        assert.fail(`cannot reach ${url}: ${reachable}`)
      })
    })
  }
  return skip
}
