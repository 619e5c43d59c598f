import { assert, describe, it } from "@effect/vitest"
import { parseRetryAfter } from "../src/internal/retryAfter.js"

const now = Date.parse("2025-06-01T12:00:00Z")

describe("parseRetryAfter", () => {
  it("Retry-After in seconds", () => {
    assert.strictEqual(parseRetryAfter({ "retry-after": "120" }, now), 120_000)
    assert.strictEqual(parseRetryAfter({ "retry-after": " 0 " }, now), 0)
    assert.strictEqual(parseRetryAfter({ "retry-after": "1.5" }, now), 1_500)
  })

  it("Retry-After as an HTTP-date, relative to the given now (never negative)", () => {
    assert.strictEqual(parseRetryAfter({ "retry-after": "Sun, 01 Jun 2025 12:00:30 GMT" }, now), 30_000)
    assert.strictEqual(parseRetryAfter({ "retry-after": "Sun, 01 Jun 2025 12:00:30 GMT" }, now + 10_000), 20_000)
    // RFC 850 and asctime forms are HTTP-dates too (RFC 9110 §5.6.7).
    assert.strictEqual(parseRetryAfter({ "retry-after": "Sunday, 01-Jun-25 12:01:00 GMT" }, now), 60_000)
    assert.strictEqual(parseRetryAfter({ "retry-after": "Sun Jun  1 12:00:05 2025" }, now), 5_000)
    assert.strictEqual(parseRetryAfter({ "retry-after": "Sun, 01 Jun 2025 11:00:00 GMT" }, now), 0)
  })

  it("garbage is ignored (undefined, or the next header that says something)", () => {
    for (const value of ["soon", "", "-5", "foo 1", "5, 10", "1e3", "Infinity", "abc 2020", "tomorrow 3"]) {
      assert.strictEqual(parseRetryAfter({ "retry-after": value }, now), undefined, JSON.stringify(value))
    }
    assert.strictEqual(
      parseRetryAfter({ "retry-after": "-5", "ratelimit-reset": "7", "ratelimit-remaining": "0" }, now),
      7_000
    )
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "soon", "ratelimit-remaining": "0" }, now), undefined)
    assert.strictEqual(parseRetryAfter({ "x-ratelimit-reset": "-3", "x-ratelimit-remaining": "0" }, now), undefined)
    assert.strictEqual(parseRetryAfter({}, now, 429), undefined)
  })

  it("Retry-After wins over the rate-limit headers", () => {
    assert.strictEqual(
      parseRetryAfter({ "retry-after": "3", "ratelimit-reset": "50", "ratelimit-remaining": "0" }, now, 429),
      3_000
    )
  })

  it("RateLimit-Reset / X-RateLimit-Reset as delta seconds, only when remaining is 0", () => {
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "30", "ratelimit-remaining": "0" }, now), 30_000)
    assert.strictEqual(parseRetryAfter({ "x-ratelimit-reset": "12", "x-ratelimit-remaining": "0" }, now), 12_000)
    assert.strictEqual(parseRetryAfter({ "x-ratelimit-reset": "12", "x-ratelimit-remaining": " 0 " }, now), 12_000)
    // Quota left: the reset is just information.
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "30", "ratelimit-remaining": "5" }, now, 429), undefined)
    assert.strictEqual(
      parseRetryAfter({ "x-ratelimit-reset": "30", "x-ratelimit-remaining": "1" }, now, 503),
      undefined
    )
  })

  it("with no *-Remaining header, a reset counts only on a 429 or 503", () => {
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "30" }, now, 429), 30_000)
    assert.strictEqual(parseRetryAfter({ "x-ratelimit-reset": "30" }, now, 503), 30_000)
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "30" }, now, 500), undefined)
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "30" }, now, 200), undefined)
    assert.strictEqual(parseRetryAfter({ "ratelimit-reset": "30" }, now), undefined)
  })

  it("X-RateLimit-Reset as a Unix epoch in seconds", () => {
    const epoch = String(now / 1000 + 90)
    assert.strictEqual(parseRetryAfter({ "x-ratelimit-reset": epoch, "x-ratelimit-remaining": "0" }, now), 90_000)
    assert.strictEqual(parseRetryAfter({ "x-ratelimit-reset": epoch }, now, 429), 90_000)
    // An epoch in the past means "now".
    assert.strictEqual(
      parseRetryAfter({ "x-ratelimit-reset": String(now / 1000 - 60), "x-ratelimit-remaining": "0" }, now),
      0
    )
  })

  it("the IETF RateLimit structured header (both draft forms)", () => {
    // draft-ietf-httpapi-ratelimit-headers-07/08: RateLimit: limit=100, remaining=0, reset=30
    assert.strictEqual(parseRetryAfter({ "ratelimit": "limit=100, remaining=0, reset=30" }, now), 30_000)
    assert.strictEqual(parseRetryAfter({ "ratelimit": "limit=100, remaining=4, reset=30" }, now), undefined)
    // Later drafts: RateLimit: "default";r=0;t=30
    assert.strictEqual(parseRetryAfter({ "ratelimit": "\"default\";r=0;t=30" }, now), 30_000)
    assert.strictEqual(parseRetryAfter({ "ratelimit": "\"default\";r=50;t=30" }, now), undefined)
    assert.strictEqual(parseRetryAfter({ "ratelimit": "\"default\";t=8" }, now), 8_000)
    // Nothing usable in it: fall through to the other headers.
    assert.strictEqual(
      parseRetryAfter({ "ratelimit": "\"default\";r=0", "ratelimit-reset": "4", "ratelimit-remaining": "0" }, now),
      4_000
    )
  })
})
