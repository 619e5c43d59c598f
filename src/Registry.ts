/**
 * The targets of an application at run time, by name: what the server's `/v1/targets`,
 * the workers and the CLI look up.
 *
 * @since 0.1.0
 */
import type { HttpClient } from "@effect/platform"
import { Context, Effect, Layer } from "effect"
import type * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category tags
 */
export class Registry extends Context.Tag("fanout/Registry")<Registry, ReadonlyMap<string, Target.Runtime<unknown>>>() {}

/**
 * Collects the runtimes of the given targets (their layers must be provided).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends Target.Any>(
  targets: ReadonlyArray<T>
): Effect.Effect<ReadonlyMap<string, Target.Runtime<unknown>>, never, Target.Requirements<T>> =>
  Effect.gen(function*() {
    const map = new Map<string, Target.Runtime<unknown>>()
    for (const target of targets) map.set(target.name, (yield* target.tag) as Target.Runtime<unknown>)
    return map as ReadonlyMap<string, Target.Runtime<unknown>>
  }) as unknown as Effect.Effect<ReadonlyMap<string, Target.Runtime<unknown>>, never, Target.Requirements<T>>

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = <T extends Target.Any>(targets: ReadonlyArray<T>): Layer.Layer<Registry, never, Target.Requirements<T>> =>
  Layer.effect(Registry, make(targets))

/**
 * The registry and every target's layer, over one shared `HttpClient`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTargets = (
  targets: ReadonlyArray<Target.Any>
): Layer.Layer<Registry, never, HttpClient.HttpClient> => {
  const all = targets.map((t) => t.layer as unknown as Layer.Layer<unknown, never, HttpClient.HttpClient>)
  const merged = all.length === 0 ? Layer.empty : Layer.mergeAll(...(all as [Layer.Layer<unknown, never, HttpClient.HttpClient>]))
  return layer(targets).pipe(Layer.provideMerge(merged)) as Layer.Layer<Registry, never, HttpClient.HttpClient>
}
