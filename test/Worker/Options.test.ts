/**
 * Impossible worker options fail `Worker.make` with a `WorkerOptionsError` in the error channel
 * (not a thrown `RangeError`, which would be a defect), with the same messages as before.
 */
import { HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import * as Memory from "../../src/Store/Memory.js"
import * as Transport from "../../src/Transport.js"
import { Target, Worker } from "../../src/index.js"

const A = Target.make("a", { request: () => HttpClientRequest.post("http://127.0.0.1:9/a") })

const failureOf = (options: Worker.Options<typeof A>) =>
  Worker.make(options).pipe(
    Effect.either,
    Effect.scoped,
    Effect.provide(Memory.layer),
    Effect.provide(A.layer.pipe(Layer.provide(Transport.layer())))
  )

describe("Worker.make: impossible options", () => {
  it.effect("fail with WorkerOptionsError, naming the option", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Worker.Options<typeof A>, string]> = [
        [{ targets: [A], concurrency: 0 }, "Worker: concurrency must be an integer >= 1, got 0"],
        [{ targets: [A], batchSize: 1.5 }, "Worker: batchSize must be an integer >= 1, got 1.5"],
        [{ targets: [A], leaseMs: -1 }, "Worker: leaseMs must be an integer >= 1, got -1"],
        [{ targets: [A], maxStoredResponseBytes: 0 }, "Worker: maxStoredResponseBytes must be an integer >= 1, got 0"],
        [{ targets: [] }, "Worker: no targets to serve"],
        [{ targets: [A], only: [] }, "Worker: only is empty"],
        [{ targets: [A], only: ["b"] }, "Worker: only names unknown targets: b (known: a)"]
      ]
      for (const [options, message] of cases) {
        const result = yield* failureOf(options)
        assert.isTrue(Either.isLeft(result), message)
        if (Either.isLeft(result)) {
          assert.instanceOf(result.left, Worker.WorkerOptionsError)
          assert.strictEqual(result.left._tag, "WorkerOptionsError")
          assert.strictEqual(result.left.message, message)
        }
      }
    }))
})
