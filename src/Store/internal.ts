/**
 * Helpers shared by the store implementations. Not part of the public API.
 *
 * @internal
 */
import { DateTime, Effect, PubSub, Schema, Stream } from "effect"
import * as Event from "../Event.js"
import { StoreError } from "../Store.js"

/** @internal */
export const invalid = (operation: string, message: string): StoreError =>
  new StoreError({ operation, reason: "InvalidInput", message: `${operation}: ${message}` })

/**
 * The JSON envelope of an event, as stored. Fails with `InvalidInput` when the event does not match
 * the envelope schema or its payload is not JSON-serialisable.
 *
 * @internal
 */
export const encodeEnvelope = (event: Event.Any): Effect.Effect<string, StoreError> =>
  Effect.try({
    try: () => {
      const json = JSON.stringify(Event.encode(event))
      if (typeof json !== "string") throw new Error("the event does not serialise to JSON")
      return json
    },
    catch: (cause) =>
      new StoreError({
        operation: "enqueue",
        reason: "InvalidInput",
        message: `enqueue: event ${String(event?.id)} cannot be stored: ${
          cause instanceof Error ? cause.message : String(cause)
        }`,
        cause
      })
  })

const hasOwn = Object.prototype.hasOwnProperty

/** An id as stored before the id alphabet (any 1–200 characters): what a stored envelope may hold. */
const storedId = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(Event.maxIdLength))
const storedIdOk = (value: string) => value.length >= 1 && value.length <= Event.maxIdLength

/**
 * The envelope schema for reading back what a store holds: `Event.Envelope`, but an id or key is
 * any 1–200 characters, as the rule was when events stored before the id alphabet were accepted —
 * they stay readable (and deliverable) instead of turning into corrupt rows.
 *
 * @internal
 */
export const StoredEnvelope = Schema.Struct({ ...Event.Envelope.fields, id: storedId, key: Schema.optional(storedId) })
const decodeStored = Schema.decodeUnknown(StoredEnvelope)

/**
 * The event of a parsed envelope, built directly, when it is plainly one (every field of the schema's
 * own type, no `__proto__` header): the value {@link StoredEnvelope}'s decoding gives, for a fraction
 * of its cost (a claim decodes every row it takes). `undefined` steps aside: the schema then decides,
 * and words the error. test/Store/Envelope.test.ts asserts that the two agree whenever this answers.
 *
 * @internal
 */
export const envelopeOf = (input: unknown): Event.Any | undefined => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined
  const o = input as Record<string, unknown>
  const { createdAt, headers, id, key, type } = o
  if (typeof id !== "string" || !storedIdOk(id)) return undefined
  if (typeof type !== "string" || type.length < 1 || type.length > 200) return undefined
  if (hasOwn.call(o, "key") && (typeof key !== "string" || !storedIdOk(key))) return undefined
  if (!hasOwn.call(o, "payload") || typeof createdAt !== "string") return undefined
  let copied: Record<string, string> = {}
  if (hasOwn.call(o, "headers")) {
    if (typeof headers !== "object" || headers === null || Array.isArray(headers)) return undefined
    if (Object.getPrototypeOf(headers) !== Object.prototype || hasOwn.call(headers, "__proto__")) return undefined
    copied = {}
    for (const name of Object.keys(headers)) {
      const value = (headers as Record<string, unknown>)[name]
      if (typeof value !== "string") return undefined
      copied[name] = value
    }
    if (Object.getOwnPropertySymbols(headers).length > 0) return undefined
  }
  let at: DateTime.Utc
  try {
    at = DateTime.unsafeMake(createdAt)
  } catch {
    return undefined
  }
  return hasOwn.call(o, "key")
    ? { id, type, key: key as string, payload: o.payload, headers: copied, createdAt: at }
    : { id, type, payload: o.payload, headers: copied, createdAt: at }
}

/**
 * Decodes a stored envelope; `Corrupt` when it is not valid JSON or not an event.
 *
 * @internal
 */
export const decodeEnvelope = (operation: string, json: string): Effect.Effect<Event.Any, StoreError> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (cause) {
    return Effect.fail(
      new StoreError({ operation, reason: "Corrupt", message: `${operation}: stored envelope is not JSON`, cause })
    )
  }
  const event = envelopeOf(parsed)
  if (event !== undefined) return Effect.succeed(event)
  return Effect.mapError(
    decodeStored(parsed),
    (cause) =>
      new StoreError({
        operation,
        reason: "Corrupt",
        message: `${operation}: stored envelope is not an event: ${cause.message}`,
        cause
      })
  )
}

/**
 * Checks enqueue's targets: at least one, each a non-empty string; duplicates are dropped (first kept).
 *
 * @internal
 */
export const checkTargets = (targets: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>, StoreError> => {
  if (!Array.isArray(targets) || targets.length === 0) {
    return Effect.fail(invalid("enqueue", "at least one target is required"))
  }
  const unique: Array<string> = []
  for (const target of targets) {
    if (typeof target !== "string" || target.length === 0 || target.length > 200) {
      return Effect.fail(invalid("enqueue", `bad target name ${JSON.stringify(target)}`))
    }
    if (!unique.includes(target)) unique.push(target)
  }
  return Effect.succeed(unique)
}

/** @internal */
export const checkPositiveInt = (operation: string, name: string, value: number): Effect.Effect<void, StoreError> =>
  Number.isSafeInteger(value) && value > 0
    ? Effect.void
    : Effect.fail(invalid(operation, `${name} must be a positive integer, got ${value}`))

/**
 * Picks at most `limit` candidates round-robin across targets: the first due of each target, then the
 * second of each, and so on. `groups` are each already in due order; `start` rotates which target goes
 * first so a small limit does not always favour the same target.
 *
 * @internal
 */
export const roundRobin = <A>(groups: ReadonlyArray<ReadonlyArray<A>>, limit: number, start: number): Array<A> => {
  const picked: Array<A> = []
  const n = groups.length
  if (n === 0) return picked
  for (let rank = 0; picked.length < limit; rank++) {
    let any = false
    for (let k = 0; k < n && picked.length < limit; k++) {
      const group = groups[(start + k) % n]!
      const item = group[rank]
      if (item !== undefined) {
        picked.push(item)
        any = true
      }
    }
    if (!any) break
  }
  return picked
}

/**
 * An in-process wake-up signal: `notify` never blocks, slow subscribers see coalesced signals.
 *
 * @internal
 */
export interface Signal {
  readonly notify: Effect.Effect<void>
  readonly stream: Stream.Stream<void>
}

/** @internal */
export const makeSignal: Effect.Effect<Signal> = Effect.map(PubSub.sliding<void>(1), (pubsub) => ({
  notify: Effect.asVoid(PubSub.publish(pubsub, undefined)),
  stream: Stream.fromPubSub(pubsub)
}))

/** @internal */
export const newLeaseToken = (): string => globalThis.crypto.randomUUID()

/**
 * Checks enqueue's dependencies against its (deduplicated) targets and normalises them: every
 * name is an enqueued target, none lists itself, no cycle; duplicate inputs are dropped. Answers
 * target → its inputs (in enqueue order), for the targets that have inputs.
 *
 * @internal
 */
export const checkDependencies = (
  targets: ReadonlyArray<string>,
  after: Readonly<Record<string, ReadonlyArray<string>>> | undefined
): Effect.Effect<ReadonlyMap<string, ReadonlyArray<string>>, StoreError> => {
  const out = new Map<string, ReadonlyArray<string>>()
  if (after === undefined) return Effect.succeed(out)
  if (typeof after !== "object" || after === null) return Effect.fail(invalid("enqueue", "after must be an object"))
  const known = new Set(targets)
  for (const [target, inputs] of Object.entries(after)) {
    if (!known.has(target)) {
      return Effect.fail(invalid("enqueue", `after: ${JSON.stringify(target)} is not one of the targets`))
    }
    if (!Array.isArray(inputs)) {
      return Effect.fail(invalid("enqueue", `after.${target} must be an array of target names`))
    }
    const unique: Array<string> = []
    for (const input of inputs) {
      if (typeof input !== "string" || !known.has(input)) {
        return Effect.fail(invalid("enqueue", `after.${target}: ${JSON.stringify(input)} is not one of the targets`))
      }
      if (input === target) return Effect.fail(invalid("enqueue", `after.${target}: a target cannot run after itself`))
      if (!unique.includes(input)) unique.push(input)
    }
    if (unique.length > 0) out.set(target, targets.filter((t) => unique.includes(t)))
  }
  // Depth-first search for a cycle, reported as a path.
  const state = new Map<string, "visiting" | "done">()
  const stack: Array<string> = []
  const visit = (node: string): ReadonlyArray<string> | undefined => {
    if (state.get(node) === "done") return undefined
    if (state.get(node) === "visiting") return [...stack.slice(stack.indexOf(node)), node]
    state.set(node, "visiting")
    stack.push(node)
    for (const input of out.get(node) ?? []) {
      const cycle = visit(input)
      if (cycle !== undefined) return cycle
    }
    stack.pop()
    state.set(node, "done")
    return undefined
  }
  for (const target of targets) {
    const cycle = visit(target)
    if (cycle !== undefined) return Effect.fail(invalid("enqueue", `after: cycle ${cycle.join(" → ")}`))
  }
  return Effect.succeed(out)
}

/**
 * Counts, per target, the consumers of its answer: the targets that run after it, plus one for
 * each target when the event's answers are kept (`keepAnswers`: the aggregate reads every answer).
 *
 * @internal
 */
export const dependentCounts = (
  dependencies: ReadonlyMap<string, ReadonlyArray<string>>,
  targets: ReadonlyArray<string>,
  keepAnswers: boolean
): Map<string, number> => {
  const counts = new Map<string, number>()
  if (keepAnswers) { for (const target of targets) counts.set(target, 1) }
  for (const inputs of dependencies.values()) {
    for (const input of inputs) counts.set(input, (counts.get(input) ?? 0) + 1)
  }
  return counts
}
