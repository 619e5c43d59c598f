import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as fc from "fast-check"
import * as TargetError from "../src/TargetError.js"

const target = "api"

describe("TargetError.classifyStatus (DESIGN.md §2)", () => {
  it("the table, spot by spot", () => {
    const table: ReadonlyArray<readonly [number, "success" | "transient" | "permanent"]> = [
      [100, "permanent"],
      [199, "permanent"],
      [200, "success"],
      [201, "success"],
      [204, "success"],
      [299, "success"],
      [301, "permanent"],
      [304, "permanent"],
      [400, "permanent"],
      [401, "permanent"],
      [403, "permanent"],
      [404, "permanent"],
      [407, "permanent"],
      [408, "transient"],
      [409, "permanent"],
      [422, "permanent"],
      [424, "permanent"],
      [425, "transient"],
      [426, "permanent"],
      [429, "transient"],
      [499, "permanent"],
      [500, "transient"],
      [501, "permanent"],
      [502, "transient"],
      [503, "transient"],
      [504, "transient"],
      [505, "permanent"],
      [507, "transient"],
      [599, "transient"]
    ]
    for (const [status, expected] of table) {
      assert.strictEqual(TargetError.classifyStatus(status), expected, `HTTP ${status}`)
    }
  })

  it.prop(
    "over 100..599: transient iff 408/425/429 or 5xx other than 501/505; success iff 2xx",
    [fc.integer({ min: 100, max: 599 })],
    ([status]) => {
      const verdict = TargetError.classifyStatus(status)
      const fiveXX = Math.floor(status / 100) === 5
      const transient = [408, 425, 429].includes(status) || (fiveXX && status !== 501 && status !== 505)
      assert.strictEqual(verdict === "transient", transient)
      assert.strictEqual(verdict === "success", Math.floor(status / 100) === 2)
      // fromStatus agrees and carries the status.
      if (verdict !== "success") {
        const error = TargetError.fromStatus(target, status, 1_000)
        assert.strictEqual(error._tag, transient ? "TransientError" : "PermanentError")
        assert.strictEqual(error.status, status)
        assert.strictEqual(TargetError.isTransient(error), transient)
        assert.strictEqual(TargetError.retryAfter(error), transient ? 1_000 : undefined)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )
})

describe("TargetError.isTransient / label / retryAfter", () => {
  const errors = {
    network: new TargetError.TransientError({ target, reason: "Network", message: "ECONNREFUSED" }),
    status503: new TargetError.TransientError({
      target,
      reason: "Status",
      status: 503,
      message: "503",
      retryAfter: 2_000
    }),
    permanent404: new TargetError.PermanentError({ target, reason: "Status", status: 404, message: "404" }),
    transform: new TargetError.PermanentError({ target, reason: "Transform", message: "bad payload" }),
    invalidResponse: new TargetError.PermanentError({ target, reason: "InvalidResponse", message: "bad answer" }),
    attemptTimeout: new TargetError.TimeoutError({ target, message: "slow", scope: "attempt", timeout: 100 }),
    deadline: new TargetError.TimeoutError({ target, message: "late", scope: "deadline", timeout: 1_000 }),
    open: new TargetError.CircuitOpenError({ target, message: "open", retryAfter: 5_000 }),
    limited: new TargetError.RateLimitedError({ target, message: "limited", retryAfter: 250 }),
    bulkhead: new TargetError.BulkheadRejectedError({ target, message: "full" })
  }

  it("only transient errors are retried; a deadline timeout is final", () => {
    const transient = Object.entries(errors).filter(([, e]) => TargetError.isTransient(e)).map(([k]) => k)
    assert.deepStrictEqual(transient, ["network", "status503", "attemptTimeout", "open", "limited", "bulkhead"])
  })

  it("label is short and stable", () => {
    assert.deepStrictEqual(Object.fromEntries(Object.entries(errors).map(([k, e]) => [k, TargetError.label(e)])), {
      network: "network",
      status503: "http_503",
      permanent404: "http_404",
      transform: "transform",
      invalidResponse: "invalidresponse",
      attemptTimeout: "timeout",
      deadline: "deadline",
      open: "circuit_open",
      limited: "rate_limited",
      bulkhead: "bulkhead_rejected"
    })
  })

  it("retryAfter reads what the error asks for, if anything", () => {
    assert.strictEqual(TargetError.retryAfter(errors.status503), 2_000)
    assert.strictEqual(TargetError.retryAfter(errors.open), 5_000)
    assert.strictEqual(TargetError.retryAfter(errors.limited), 250)
    assert.strictEqual(TargetError.retryAfter(errors.network), undefined)
    assert.strictEqual(TargetError.retryAfter(errors.permanent404), undefined)
  })

  it("isDeliveryError recognises every kind, and the union schema round-trips them", () => {
    for (const error of Object.values(errors)) {
      assert.isTrue(TargetError.isDeliveryError(error))
      const encoded = Schema.encodeSync(TargetError.DeliveryError)(error)
      const decoded = Schema.decodeUnknownSync(TargetError.DeliveryError)(JSON.parse(JSON.stringify(encoded)))
      assert.strictEqual(decoded._tag, error._tag)
      assert.strictEqual(TargetError.label(decoded), TargetError.label(error))
    }
    assert.isFalse(TargetError.isDeliveryError(new Error("x")))
    assert.isFalse(TargetError.isDeliveryError({ _tag: "Other" }))
  })
})
