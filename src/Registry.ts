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
  Effect.map(
    Effect.forEach(targets, (target) => Effect.map(target.tag, (runtime) => [target.name, runtime] as const)),
    (entries): ReadonlyMap<string, Target.Runtime<unknown>> => new Map(entries)
  )

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = <T extends Target.Any>(targets: ReadonlyArray<T>): Layer.Layer<Registry, never, Target.Requirements<T>> =>
  Layer.effect(Registry, make(targets))

/**
 * The registry and every target's layer (their runtimes are provided too), over one shared
 * `HttpClient`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTargets = <T extends Target.Any>(
  targets: ReadonlyArray<T>
): Layer.Layer<Registry | Target.Requirements<T>, never, HttpClient.HttpClient> =>
  layer(targets).pipe(Layer.provideMerge(Layer.mergeAll(Layer.empty, ...targets.map((t) => t.layer))))
