/**
 * Helpers for the worker tests: targets over one real undici client, a store (memory unless
 * given), and workers started in their own scopes so a test can stop them (graceful shutdown).
 */
import type { HttpClient } from "@effect/platform"
import * as Transport from "../../src/Transport.js"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as Memory from "../../src/Store/Memory.js"
import * as Store from "../../src/Store.js"
import type { Target } from "../../src/index.js"
import { Worker } from "../../src/index.js"

export interface Env {
  readonly context: Context.Context<any>
  readonly store: Store.DeliveryStore
  /** Starts a worker in a scope of its own; `stop` closes it (graceful shutdown) and waits. */
  readonly start: (
    options: Worker.Tuning
  ) => Effect.Effect<{ readonly worker: Worker.Service; readonly stop: Effect.Effect<void> }>
}

/** Builds the targets' runtimes over one undici client and a store, in the caller's scope. */
export const makeEnv = (
  targets: ReadonlyArray<Target.Any>,
  store: Layer.Layer<Store.DeliveryStore, any> = Memory.layer
): Effect.Effect<Env, never, Scope.Scope> =>
  Effect.gen(function*() {
    const layers = targets.map((t) => t.layer) as ReadonlyArray<Layer.Layer<never, never, HttpClient.HttpClient>>
    const merged = layers.reduce(
      (acc, l) => Layer.merge(acc, l),
      Layer.empty as Layer.Layer<never, never, HttpClient.HttpClient>
    )
    const context = yield* Layer.build(
      Layer.merge(merged.pipe(Layer.provide(Transport.layer())), store)
    ).pipe(Effect.orDie)
    const deliveryStore = Context.get(context as Context.Context<Store.DeliveryStore>, Store.DeliveryStore)
    const start = (options: Worker.Tuning) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const worker = yield* Worker.make({ targets: targets as ReadonlyArray<Target.Any>, ...options }).pipe(
          Scope.extend(scope),
          Effect.provide(context as Context.Context<never>)
        ) as Effect.Effect<Worker.Service>
        return { worker, stop: Scope.close(scope, Exit.void) }
      })
    return { context, store: deliveryStore, start }
  })

/** Polls `predicate` every 10 ms (real time) until it holds; dies with `what` after `timeoutMs`. */
export const eventually = <E, R>(
  what: string,
  predicate: Effect.Effect<boolean, E, R>,
  timeoutMs = 10_000
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!(yield* predicate)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for: ${what}`)
      yield* Effect.sleep("10 millis")
    }
  })
