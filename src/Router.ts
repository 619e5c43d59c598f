/**
 * Routes: which targets an event type goes to. Exact types and wildcards (`order.*`, `*`),
 * an optional filter, and shadow targets (mirrored traffic whose outcome never changes the
 * result). The table is typed: a route accepts only targets that can take the payload of
 * every event it matches, and the fan-out requires every routed target to be provided.
 *
 * @since 0.1.0
 */
import type * as Event from "./Event.js"
import type * as Target from "./Target.js"

/**
 * `"order.*"` as a template literal type (`order.${string}`).
 *
 * @since 0.1.0
 * @category type-level
 */
export type Glob<P extends string> = P extends `${infer Head}*${infer Tail}` ? `${Head}${string}${Glob<Tail>}` : P

/**
 * The payloads of the events in `E` whose type matches the pattern `P`. For an untyped router
 * (`Router.make()` with no definitions) it is `any`: payloads are then checked at run time by
 * each target's `accepts` schema (a mismatch is a `PermanentError`).
 *
 * @since 0.1.0
 * @category type-level
 */
export type PayloadMatching<E extends Event.Any, P extends string> = E extends Event.Event<infer T, infer Payload>
  ? string extends T ? any : T extends Glob<P> ? Payload : never
  : never

/**
 * @since 0.1.0
 * @category models
 */
export interface RouteOptions<E> {
  /** Deliver only events for which this is true. */
  readonly filter?: (event: E) => boolean
  /** Mirrored targets: delivered in the background; their outcome never changes the result. */
  readonly shadow?: ReadonlyArray<Target.Any>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Route {
  readonly pattern: string
  readonly targets: ReadonlyArray<Target.Any>
  readonly shadow: ReadonlyArray<Target.Any>
  readonly filter: ((event: Event.Any) => boolean) | undefined
  readonly matches: (type: string) => boolean
}

/**
 * Where one event goes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolution {
  readonly targets: ReadonlyArray<Target.Any>
  readonly shadow: ReadonlyArray<Target.Any>
}

const matcher = (pattern: string): (type: string) => boolean => {
  if (!pattern.includes("*")) return (type) => type === pattern
  const regex = new RegExp(
    "^" + pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$"
  )
  return (type) => regex.test(type)
}

/**
 * A route table over the events `E`, naming the targets `T`.
 *
 * @since 0.1.0
 * @category models
 */
export class Router<E extends Event.Any, T extends Target.Any> {
  /** @internal */
  constructor(readonly routes: ReadonlyArray<Route>) {}

  /**
   * Routes the events of a definition, or of a type pattern over the router's events, to
   * targets that accept their payload.
   */
  route<
    const D extends Event.Definition<any, any, any>,
    const Ts extends ReadonlyArray<Target.Accepting<Event.TypeOf<D>["payload"]> & Target.Any>,
    const S extends ReadonlyArray<Target.Accepting<Event.TypeOf<D>["payload"]> & Target.Any> = []
  >(
    definition: D,
    targets: Ts,
    options?: RouteOptions<Event.TypeOf<D>> & { readonly shadow?: S }
  ): Router<E | Event.TypeOf<D>, T | Ts[number] | S[number]>
  route<
    const P extends string,
    const Ts extends ReadonlyArray<Target.Accepting<PayloadMatching<E, P>> & Target.Any>,
    const S extends ReadonlyArray<Target.Accepting<PayloadMatching<E, P>> & Target.Any> = []
  >(
    pattern: P,
    targets: Ts,
    options?: RouteOptions<Extract<E, { readonly type: Glob<P> }>> & { readonly shadow?: S }
  ): Router<E, T | Ts[number] | S[number]>
  route(
    what: string | Event.Definition<any, any, any>,
    targets: ReadonlyArray<Target.Any>,
    options: RouteOptions<any> = {}
  ): Router<any, any> {
    const pattern = typeof what === "string" ? what : what.type
    if (pattern.length === 0) throw new TypeError("route: empty event type pattern")
    const names = new Set<string>()
    for (const target of [...targets, ...(options.shadow ?? [])]) {
      if (names.has(target.name)) throw new TypeError(`route ${pattern}: target ${target.name} named twice`)
      names.add(target.name)
    }
    return new Router([...this.routes, {
      pattern,
      targets,
      shadow: options.shadow ?? [],
      filter: options.filter,
      matches: matcher(pattern)
    }])
  }

  /**
   * The targets of an event: the union of every matching route (exact and wildcard), each
   * target once; a target that is primary anywhere is not also a shadow.
   */
  resolve(event: Event.Any): Resolution {
    const targets = new Map<string, Target.Any>()
    const shadow = new Map<string, Target.Any>()
    for (const route of this.routes) {
      if (!route.matches(event.type)) continue
      if (route.filter !== undefined && !route.filter(event)) continue
      for (const t of route.targets) targets.set(t.name, t)
      for (const t of route.shadow) shadow.set(t.name, t)
    }
    for (const name of targets.keys()) shadow.delete(name)
    return { targets: [...targets.values()], shadow: [...shadow.values()] }
  }

  /**
   * Whether `target` only mirrors events of this type: a shadow in some route matching the type
   * and a primary in none (filters aside, since only the type is known — e.g. for a dead letter).
   */
  isShadowOf(type: string, target: string): boolean {
    let shadow = false
    for (const route of this.routes) {
      if (!route.matches(type)) continue
      if (route.targets.some((t) => t.name === target)) return false
      if (route.shadow.some((t) => t.name === target)) shadow = true
    }
    return shadow
  }

  /** Does any route match this event type (filters aside)? */
  hasRoute(type: string): boolean {
    return this.routes.some((route) => route.matches(type))
  }

  /** Every target named by any route, once. */
  get targets(): ReadonlyArray<Target.Any> {
    const all = new Map<string, Target.Any>()
    for (const route of this.routes) for (const t of [...route.targets, ...route.shadow]) all.set(t.name, t)
    return [...all.values()]
  }
}

/**
 * An empty router over the given event definitions (none: untyped events of any type).
 *
 * @example
 * ```ts
 * const router = Router.make(OrderPlaced, OrderCancelled)
 *   .route(OrderPlaced, [Inventory, Notification], { shadow: [Audit] })
 *   .route("order.*", [Notification])
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Ds extends ReadonlyArray<Event.Definition<any, any, any>>>(
  ..._definitions: Ds
): Router<Ds extends readonly [] ? Event.Any : Event.TypeOf<Ds[number]>, never> => new Router([])

/**
 * The events a router takes.
 *
 * @since 0.1.0
 * @category type-level
 */
export type EventsOf<R> = R extends Router<infer E, any> ? E : never

/**
 * The targets a router names.
 *
 * @since 0.1.0
 * @category type-level
 */
export type TargetsOf<R> = R extends Router<any, infer T> ? T : never
