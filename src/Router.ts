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
  /**
   * Shadow name → the name of the primary (one of `targets`) it mirrors: the two answers are
   * compared ({@link compareAnswers}) — the way to try a new version of an API on real traffic.
   */
  readonly mirrors?: Readonly<Record<string, string>>
  /** What the comparison of mirrored answers ignores: JSON Pointers into the body (`*` matches any one segment). */
  readonly compare?: { readonly ignore?: ReadonlyArray<string> }
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
  /** Shadow name → the primary it mirrors (empty: no comparison). */
  readonly mirrors: Readonly<Record<string, string>>
  /** JSON Pointers the comparison of mirrored answers ignores. */
  readonly ignore: ReadonlyArray<string>
}

/**
 * A shadow that mirrors a primary, for one event: their answers are compared.
 *
 * @since 0.1.0
 * @category models
 */
export interface Mirror {
  readonly shadow: string
  readonly primary: string
  /** JSON Pointers the comparison ignores (`*` matches any one segment). */
  readonly ignore: ReadonlyArray<string>
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
    const mirrors = options.mirrors ?? {}
    for (const [shadow, primary] of Object.entries(mirrors)) {
      if (!(options.shadow ?? []).some((t) => t.name === shadow)) {
        throw new TypeError(`route ${pattern}: ${shadow} mirrors ${primary} but is not one of its shadow targets`)
      }
      if (!targets.some((t) => t.name === primary)) {
        throw new TypeError(`route ${pattern}: ${shadow} mirrors ${primary}, which is not one of its targets`)
      }
    }
    return new Router([...this.routes, {
      pattern,
      targets,
      shadow: options.shadow ?? [],
      filter: options.filter,
      matches: matcher(pattern),
      mirrors,
      ignore: options.compare?.ignore ?? []
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

  /**
   * The shadows of an event that mirror a primary (every matching route's `mirrors`, for the
   * targets it resolves as shadow and primary): the pairs whose answers are compared.
   */
  mirrorsOf(event: Event.Any): ReadonlyArray<Mirror> {
    const resolved = this.resolve(event)
    const shadows = new Set(resolved.shadow.map((t) => t.name))
    const primaries = new Set(resolved.targets.map((t) => t.name))
    const out = new Map<string, Mirror>()
    for (const route of this.routes) {
      if (!route.matches(event.type)) continue
      if (route.filter !== undefined && !route.filter(event)) continue
      for (const [shadow, primary] of Object.entries(route.mirrors)) {
        if (shadows.has(shadow) && primaries.has(primary) && !out.has(shadow)) {
          out.set(shadow, { shadow, primary, ignore: route.ignore })
        }
      }
    }
    return [...out.values()]
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

/**
 * One answer of a target, as compared: its HTTP status and its body (parsed JSON, or text).
 *
 * @since 0.1.0
 * @category comparison
 */
export interface Answer {
  readonly status: number | undefined
  readonly body: unknown
}

/**
 * Where two answers differ: a JSON Pointer into the body (`""` the whole body), or `status`.
 *
 * @since 0.1.0
 * @category comparison
 */
export interface Difference {
  readonly at: string
  readonly primary: unknown
  readonly shadow: unknown
}

/**
 * The comparison of a shadow's answer with its primary's.
 *
 * @since 0.1.0
 * @category comparison
 */
export interface Comparison {
  readonly result: "match" | "differ"
  /** The first differences (at most 20), status first. */
  readonly differences: ReadonlyArray<Difference>
}

const escapeSegment = (segment: string): string => segment.replaceAll("~", "~0").replaceAll("/", "~1")

const ignoredBy = (patterns: ReadonlyArray<ReadonlyArray<string>>) => (path: ReadonlyArray<string>): boolean =>
  patterns.some((p) => p.length <= path.length && p.every((segment, i) => segment === "*" || segment === path[i]))

const parsePointer = (pointer: string): ReadonlyArray<string> =>
  pointer === "" ? [] : pointer.replace(/^\//, "").split("/").map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"))

/**
 * Compares a shadow's answer with its primary's: the status, and the body as JSON (objects by
 * member, whatever their order; arrays by position), skipping every path `ignore` names (JSON
 * Pointers, `*` for any one segment; a pointer also ignores everything below it).
 *
 * @since 0.1.0
 * @category comparison
 */
export const compareAnswers = (primary: Answer, shadow: Answer, ignore: ReadonlyArray<string> = []): Comparison => {
  const differences: Array<Difference> = []
  const max = 20
  if (primary.status !== shadow.status) {
    differences.push({ at: "status", primary: primary.status, shadow: shadow.status })
  }
  const ignored = ignoredBy(ignore.map(parsePointer))
  const walk = (a: unknown, b: unknown, path: Array<string>): void => {
    if (differences.length >= max || ignored(path)) return
    const at = path.map((s) => `/${escapeSegment(s)}`).join("")
    if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.max(a.length, b.length); i++) {
        if (i >= a.length || i >= b.length) {
          if (!ignored([...path, String(i)])) differences.push({ at: `${at}/${i}`, primary: a[i], shadow: b[i] })
          if (differences.length >= max) return
          continue
        }
        walk(a[i], b[i], [...path, String(i)])
      }
      return
    }
    const isObject = (v: unknown): v is Record<string, unknown> =>
      typeof v === "object" && v !== null && !Array.isArray(v)
    if (isObject(a) && isObject(b)) {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])]
      for (const key of keys) {
        const next = [...path, key]
        if (!(key in a) || !(key in b)) {
          if (!ignored(next)) differences.push({ at: `${at}/${escapeSegment(key)}`, primary: a[key], shadow: b[key] })
          if (differences.length >= max) return
          continue
        }
        walk(a[key], b[key], next)
      }
      return
    }
    if (a !== b) differences.push({ at, primary: a, shadow: b })
  }
  walk(primary.body, shadow.body, [])
  return { result: differences.length === 0 ? "match" : "differ", differences }
}
