/**
 * A model-based test of the {@link Store.DeliveryStore} contract (issue 10, item 9): random command
 * sequences run against a store and against a small reference model of what src/Store.ts's doc
 * comments promise, comparing the two after every command.
 *
 * Shape: the commands are plain data (`fc.array` of a tagged union, so fast-check prints and shrinks
 * a failing sequence readably), interpreted in one Effect per run. That fits Effect better than
 * `fc.asyncModelRun`: the store is built in the run's scope and the TestClock (which the stores read
 * through `Clock.currentTimeMillis`) belongs to that run's fiber, so "advance the clock" is just
 * `TestClock.adjust` and nothing leaves the Effect runtime between commands. Commands that act on
 * "a claim" or "a delivery" carry an index, resolved at run time modulo what the model holds then
 * (so every generated sequence is valid and shrinking keeps it valid).
 *
 * The model: events (id → payload variant, enqueue time, deliveries), per delivery its status,
 * scheduling attempts, first attempt time, available_at (due time of a pending delivery, lease expiry
 * of an in-flight one), lease token and owner, finish time, last error, dead reason and attempt
 * history; the virtual time; every claim either worker ever received (live or stale).
 *
 * Commands: enqueue (new id; same id and payload → duplicate; other payload → ConflictError), claim
 * by worker A or B (limit, leaseMs, optional targets filter), extendLease, finish with Delivered /
 * Retry at an instant / Dead / Compensated, release, the same three with a forged lease, advance the
 * clock (fixed steps, exactly to the next due/expiry instant, past every lease), replay, replayMany,
 * purge (by id and by filter), retention.
 *
 * Checks after every command: the command's own answer (claim: exactly the due deliveries it may
 * take, how many, oldest first within a target, round-robin across targets, fresh lease tokens, the
 * claimed fields; fenced operations: applied iff the lease is the current one; counts of
 * release/replayMany/purge/retention); then stats and gauges (counts per status overall and per
 * target, depth, oldest pending age), the dead-letter list, and the status of every event the
 * command touched (all of them after clock jumps and bulk operations, and at the end of the run,
 * with dead-letter paging).
 *
 * "Worker B" is a second store instance on the same database for the SQL stores (a second
 * connection or pool, as another process would have); for the memory store it is the same instance.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Option, type Scope, TestClock } from "effect"
import * as Event from "../../src/Event.js"
import * as Store from "../../src/Store.js"

/** Two handles on one store: worker A's and worker B's. */
export interface Workers {
  readonly a: Store.DeliveryStore
  readonly b: Store.DeliveryStore
}

/** Builds a fresh, empty store (both handles) in the run's scope. */
export type Factory = Effect.Effect<Workers, unknown, Scope.Scope>

type Worker = "A" | "B"
type Outcome = "Delivered" | "Retry" | "Dead" | "Compensated"

const EVENT_IDS = ["e0", "e1", "e2", "e3", "e4"] as const
const TARGETS = ["a", "b", "c"] as const
const LABELS = ["success", "http_503", "timeout", "http_400"] as const

export type Command =
  | {
    readonly _tag: "Enqueue"
    readonly event: number
    readonly variant: number
    readonly targets: ReadonlyArray<string>
    readonly via: Worker
  }
  | {
    readonly _tag: "Claim"
    readonly worker: Worker
    readonly limit: number
    readonly leaseMs: number
    readonly targets: ReadonlyArray<string> | undefined
  }
  | { readonly _tag: "Extend"; readonly claim: number; readonly live: boolean; readonly leaseMs: number }
  | {
    readonly _tag: "Finish"
    readonly claim: number
    readonly live: boolean
    readonly next: Outcome
    readonly outcome: string
    readonly retryInMs: number
  }
  | { readonly _tag: "Release"; readonly claims: ReadonlyArray<number>; readonly live: boolean }
  | { readonly _tag: "Forge"; readonly delivery: number; readonly op: "finish" | "extend" | "release" }
  | { readonly _tag: "Advance"; readonly by: number | "nextDeadline" | "pastLeases" }
  | { readonly _tag: "Replay"; readonly delivery: number; readonly dead: boolean; readonly via: Worker }
  | { readonly _tag: "ReplayMany"; readonly filter: Store.DeadLetterFilter; readonly via: Worker }
  | { readonly _tag: "Purge"; readonly delivery: number; readonly dead: boolean; readonly via: Worker }
  | { readonly _tag: "PurgeMany"; readonly filter: Store.DeadLetterFilter; readonly via: Worker }
  /** `olderThanMs`, or `{ finished: i }`: exactly the age of a finished delivery (the boundary: it stays). */
  | { readonly _tag: "Retention"; readonly olderThanMs: number | { readonly finished: number }; readonly via: Worker }

// ---- commands ------------------------------------------------------------------------------

const worker = fc.constantFrom<Worker>("A", "B")
const index = fc.nat({ max: 1_000 })
/** Mostly one of the claims whose lease is current; else any claim ever received (often stale). */
const live = fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) })
const targetSet = fc.subarray([...TARGETS], { minLength: 1 })
const filter: fc.Arbitrary<Store.DeadLetterFilter> = fc.oneof(
  fc.constant({}),
  fc.record({ target: fc.constantFrom(...TARGETS) }),
  fc.record({ errorLabel: fc.constantFrom(...LABELS) }),
  fc.record({ target: fc.constantFrom(...TARGETS), errorLabel: fc.constantFrom(...LABELS) })
)

const enqueue = fc.record({
  _tag: fc.constant("Enqueue" as const),
  event: fc.nat({ max: EVENT_IDS.length - 1 }),
  variant: fc.nat({ max: 1 }),
  // duplicates in the list are allowed: the store keeps one delivery per target
  targets: fc.oneof(targetSet, fc.array(fc.constantFrom(...TARGETS), { minLength: 1, maxLength: 4 })),
  via: worker
})

export const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: enqueue },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Claim" as const),
      worker,
      limit: fc.integer({ min: 1, max: 4 }),
      leaseMs: fc.constantFrom(100, 1_000, 5_000),
      targets: fc.option(fc.oneof({ weight: 5, arbitrary: targetSet }, { weight: 1, arbitrary: fc.constant([]) }), {
        nil: undefined
      })
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Extend" as const),
      claim: index,
      live,
      leaseMs: fc.constantFrom(100, 2_000, 10_000)
    })
  },
  {
    weight: 7,
    arbitrary: fc.record({
      _tag: fc.constant("Finish" as const),
      claim: index,
      live,
      next: fc.constantFrom<Outcome>("Delivered", "Delivered", "Retry", "Retry", "Dead", "Dead", "Compensated"),
      outcome: fc.constantFrom(...LABELS),
      retryInMs: fc.constantFrom(-500, 0, 1, 700, 3_000)
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Release" as const),
      claims: fc.uniqueArray(index, { minLength: 1, maxLength: 3 }),
      live
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Forge" as const),
      delivery: index,
      op: fc.constantFrom("finish" as const, "extend" as const, "release" as const)
    })
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Advance" as const),
      by: fc.oneof(
        fc.constantFrom(1, 99, 500, 1_000, 4_000),
        fc.constant("nextDeadline" as const),
        fc.constant("pastLeases" as const)
      )
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("Replay" as const), delivery: index, dead: live, via: worker })
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("ReplayMany" as const), filter, via: worker }) },
  {
    weight: 1,
    arbitrary: fc.record({ _tag: fc.constant("Purge" as const), delivery: index, dead: live, via: worker })
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("PurgeMany" as const), filter, via: worker }) },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("Retention" as const),
      olderThanMs: fc.oneof(fc.constantFrom(0, 1, 1_000, 10_000), fc.record({ finished: index })),
      via: worker
    })
  }
)

/** A few enqueues first (so most runs have work to claim), then any commands; `maxLength` in all. */
export const commands = (maxLength: number): fc.Arbitrary<ReadonlyArray<Command>> =>
  fc.tuple(
    fc.array(enqueue, { minLength: 0, maxLength: Math.min(3, maxLength) }),
    fc.array(command, { minLength: 1, maxLength: Math.max(1, maxLength - 3), size: "max" })
  ).map(([first, rest]) => [...first, ...rest].slice(0, maxLength))

// ---- the model -----------------------------------------------------------------------------

interface MAttempt {
  readonly lease: string
  readonly workerId: string | undefined
  readonly outcome: string
  readonly startedAt: number
}

interface MDelivery {
  readonly id: string
  /** Creation order (the stores' ids grow with it). */
  readonly seq: number
  readonly eventId: string
  readonly target: string
  status: Store.Status
  attempts: number
  firstAttemptAt: number | undefined
  /** Pending: when due; in flight: when the lease runs out; finished: undefined. */
  availableAt: number | undefined
  lease: string | undefined
  workerId: string | undefined
  readonly enqueuedAt: number
  finishedAt: number | undefined
  lastError: string | undefined
  lastErrorMessage: string | undefined
  deadReason: string | undefined
  readonly history: Array<MAttempt>
}

interface MEvent {
  readonly variant: number
  readonly enqueuedAt: number
  /** Delivery ids, in creation order. */
  readonly deliveries: Array<string>
}

interface HeldClaim {
  readonly worker: Worker
  readonly claim: Store.Claim
}

class Model {
  now = 0
  seq = 0
  readonly events = new Map<string, MEvent>()
  readonly deliveries = new Map<string, MDelivery>()
  /** Every delivery id the store ever answered (removed ones included: replay/purge of them is a no-op). */
  readonly known: Array<string> = []
  /** Every claim either worker received, live or stale. */
  readonly claims: Array<HeldClaim> = []
  readonly leases = new Set<string>()
  readonly everStored = new Set<string>()

  active(d: MDelivery) {
    return d.status === "pending" || d.status === "in_flight"
  }
  /** What a claim may take at this instant: pending and due, or in flight with the lease run out. */
  claimable(d: MDelivery) {
    return this.active(d) && d.availableAt !== undefined && d.availableAt <= this.now
  }
  /** The delivery a claim fences, when its lease is the current one. */
  fenced(claim: Store.Claim): MDelivery | undefined {
    const d = this.deliveries.get(claim.id)
    return d !== undefined && d.status === "in_flight" && d.lease === claim.lease ? d : undefined
  }
  sorted(): Array<MDelivery> {
    return Array.from(this.deliveries.values()).sort((x, y) => x.seq - y.seq)
  }
  dead(filter: Store.DeadLetterFilter): Array<MDelivery> {
    return this.sorted().filter((d) =>
      d.status === "dead" &&
      (filter.target === undefined || d.target === filter.target) &&
      (filter.errorLabel === undefined || d.lastError === filter.errorLabel) &&
      (filter.from === undefined || (d.finishedAt ?? 0) >= filter.from) &&
      (filter.to === undefined || (d.finishedAt ?? 0) <= filter.to)
    )
  }
  /** Removes a delivery, and its event when that was its last delivery; answers whether the event went. */
  remove(d: MDelivery): boolean {
    this.deliveries.delete(d.id)
    const event = this.events.get(d.eventId)!
    event.deliveries.splice(event.deliveries.indexOf(d.id), 1)
    if (event.deliveries.length > 0) return false
    this.events.delete(d.eventId)
    return true
  }
  replay(d: MDelivery) {
    d.status = "pending"
    d.attempts = 0
    d.firstAttemptAt = undefined
    d.availableAt = this.now
    d.lease = undefined
    d.deadReason = undefined
    d.finishedAt = undefined
  }
}

const workerId = (w: Worker) => `worker-${w}`

const makeEvent = (id: string, variant: number) =>
  Effect.orDie(Event.make("order.placed", { v: variant, id }, { id, key: "k-1" }))

const attemptOf = (now: number, outcome: string): Store.AttemptInput => ({
  startedAt: now,
  durationMs: 3,
  outcome,
  ...(outcome === "success" ? { status: 200 } : { errorTag: "TransientError", message: `${outcome} happened` })
})

const nextOf = (outcome: Outcome, at: number): Store.Next => {
  switch (outcome) {
    case "Delivered":
      return Store.Next.Delivered()
    case "Retry":
      return Store.Next.Retry({ at })
    case "Dead":
      return Store.Next.Dead({ reason: "gave up" })
    case "Compensated":
      return Store.Next.Compensated()
  }
}

/** Applies one attempt to the model, as `finish` promises. */
const applyFinish = (m: Model, d: MDelivery, claim: Store.Claim, outcome: string, next: Outcome, at: number) => {
  d.attempts++
  d.firstAttemptAt ??= m.now
  d.history.push({ lease: claim.lease, workerId: d.workerId, outcome, startedAt: m.now })
  if (outcome !== "success") {
    d.lastError = outcome
    d.lastErrorMessage = `${outcome} happened`
  }
  d.lease = undefined
  if (next === "Retry") {
    d.status = "pending"
    d.availableAt = at
    d.finishedAt = undefined
    d.deadReason = undefined
    return
  }
  d.status = next === "Delivered" ? "delivered" : next === "Dead" ? "dead" : "compensated"
  d.deadReason = next === "Dead" ? "gave up" : undefined
  d.availableAt = undefined
  d.finishedAt = m.now
}

// ---- checks --------------------------------------------------------------------------------

const counts = (m: Model) => {
  const empty = () => ({ pending: 0, inFlight: 0, delivered: 0, dead: 0, compensated: 0 })
  const total = empty()
  const targets: Record<string, ReturnType<typeof empty>> = {}
  let oldest: number | undefined
  for (const d of m.deliveries.values()) {
    const key = d.status === "in_flight" ? "inFlight" : d.status
    total[key]++
    ;(targets[d.target] ??= empty())[key]++
    if (m.active(d) && (oldest === undefined || d.enqueuedAt < oldest)) oldest = d.enqueuedAt
  }
  return { total, targets, oldestPendingAgeMs: oldest === undefined ? 0 : m.now - oldest }
}

const deadLetterOf = (d: MDelivery) => ({
  id: d.id,
  eventId: d.eventId,
  eventType: "order.placed",
  target: d.target,
  idempotencyKey: `${d.eventId}:${d.target}`,
  reason: d.deadReason ?? "",
  lastError: d.lastError,
  lastErrorMessage: d.lastErrorMessage,
  attempts: d.attempts,
  totalAttempts: d.history.length,
  deadAt: d.finishedAt,
  enqueuedAt: d.enqueuedAt
})

const plainDeadLetter = (x: Store.DeadLetter) => ({
  id: x.id,
  eventId: x.eventId,
  eventType: x.eventType,
  target: x.target,
  idempotencyKey: x.idempotencyKey,
  reason: x.reason,
  lastError: x.lastError,
  lastErrorMessage: x.lastErrorMessage,
  attempts: x.attempts,
  totalAttempts: x.totalAttempts,
  deadAt: x.deadAt,
  enqueuedAt: x.enqueuedAt
})

const checkStatus = (m: Model, store: Store.DeliveryStore, eventId: string, where: string) =>
  Effect.gen(function*() {
    const found = yield* store.status(eventId)
    const expected = m.events.get(eventId)
    if (expected === undefined) {
      assert.isTrue(Option.isNone(found), `${where}: status(${eventId}) should be none (never stored or removed)`)
      return
    }
    assert.isTrue(Option.isSome(found), `${where}: status(${eventId}) should be some`)
    const status = Option.getOrThrow(found)
    assert.strictEqual(status.event.id, eventId, where)
    assert.deepStrictEqual(status.event.payload, { v: expected.variant, id: eventId }, `${where}: ${eventId} payload`)
    assert.strictEqual(status.enqueuedAt, expected.enqueuedAt, `${where}: ${eventId} enqueuedAt`)
    const actual = status.deliveries.map((x) => ({
      id: x.id,
      target: x.target,
      idempotencyKey: x.idempotencyKey,
      status: x.status,
      attempts: x.attempts,
      totalAttempts: x.totalAttempts,
      nextAttemptAt: x.nextAttemptAt,
      leaseExpiresAt: x.leaseExpiresAt,
      lastError: x.lastError,
      lastErrorMessage: x.lastErrorMessage,
      deadReason: x.deadReason,
      finishedAt: x.finishedAt,
      after: x.after,
      waiting: x.waiting,
      history: x.history.map((h) => ({
        number: h.number,
        lease: h.lease,
        workerId: h.workerId,
        outcome: h.outcome,
        startedAt: h.startedAt
      }))
    })).sort((x, y) => x.target.localeCompare(y.target))
    const model = expected.deliveries.map((id) => m.deliveries.get(id)!).map((d) => ({
      id: d.id,
      target: d.target,
      idempotencyKey: `${eventId}:${d.target}`,
      status: d.status,
      attempts: d.attempts,
      totalAttempts: d.history.length,
      nextAttemptAt: d.status === "pending" ? d.availableAt : undefined,
      leaseExpiresAt: d.status === "in_flight" ? d.availableAt : undefined,
      lastError: d.lastError,
      lastErrorMessage: d.lastErrorMessage,
      deadReason: d.deadReason,
      finishedAt: d.finishedAt,
      after: [],
      waiting: 0,
      history: d.history.map((h, i) => ({
        number: i + 1,
        lease: h.lease,
        workerId: h.workerId,
        outcome: h.outcome,
        startedAt: h.startedAt
      }))
    })).sort((x, y) => x.target.localeCompare(y.target))
    assert.deepStrictEqual(actual, model, `${where}: status(${eventId})`)
  })

const checkAll = (m: Model, w: Workers, touched: ReadonlySet<string> | "all", where: string) =>
  Effect.gen(function*() {
    const c = counts(m)
    const stats = yield* w.a.stats
    assert.deepStrictEqual(
      stats,
      {
        ...c.total,
        depth: c.total.pending + c.total.inFlight,
        oldestPendingAgeMs: c.oldestPendingAgeMs,
        targets: c.targets
      },
      `${where}: stats`
    )
    const gauges = yield* w.b.gauges
    const gaugeTargets: Record<string, { pending: number; inFlight: number; dead: number }> = {}
    for (const [name, t] of Object.entries(c.targets)) {
      if (t.pending + t.inFlight + t.dead > 0) {
        gaugeTargets[name] = { pending: t.pending, inFlight: t.inFlight, dead: t.dead }
      }
    }
    assert.deepStrictEqual(
      gauges,
      {
        pending: c.total.pending,
        inFlight: c.total.inFlight,
        dead: c.total.dead,
        depth: c.total.pending + c.total.inFlight,
        oldestPendingAgeMs: c.oldestPendingAgeMs,
        targets: gaugeTargets
      },
      `${where}: gauges`
    )
    const page = yield* w.a.deadLetters({ limit: 1_000 })
    assert.deepStrictEqual(
      { items: page.items.map(plainDeadLetter), next: page.next },
      { items: m.dead({}).map(deadLetterOf), next: undefined },
      `${where}: dead letters, oldest delivery first`
    )
    const ids = touched === "all" ? EVENT_IDS : Array.from(touched)
    for (const id of ids) {
      yield* checkStatus(m, w.b, id, where)
    }
  })

/** Dead letters paged two at a time: the same sequence, without gaps or repeats. */
const checkPaging = (m: Model, store: Store.DeliveryStore) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    let cursor: string | undefined
    for (let page = 0; page < 100; page++) {
      const result = yield* store.deadLetters({ limit: 2, ...(cursor !== undefined ? { cursor } : {}) })
      seen.push(...result.items.map((x) => x.id))
      if (result.next === undefined) break
      cursor = result.next
    }
    assert.deepStrictEqual(seen, m.dead({}).map((d) => d.id), "dead letters paged by 2")
  })

// ---- one run -------------------------------------------------------------------------------

/** How often each interesting case came up (printed per store with `FANOUT_MODEL_STATS=1`). */
const tally = new Map<string, number>()
const seen = (what: string) => tally.set(what, (tally.get(what) ?? 0) + 1)

const pick = <A>(items: ReadonlyArray<A>, i: number): A | undefined =>
  items.length === 0 ? undefined : items[i % items.length]

/** The delivery ids to pick from: the dead letters (when asked and there are some), else every id ever seen. */
const deliveriesOf = (m: Model, dead: boolean): ReadonlyArray<string> => {
  const letters = dead ? m.dead({}).map((d) => d.id) : []
  return letters.length > 0 ? letters : m.known
}

/** The claims to pick from: those with the current lease (when asked and there are some), else all. */
const claimsOf = (m: Model, live: boolean): ReadonlyArray<HeldClaim> => {
  const current = live ? m.claims.filter((x) => m.fenced(x.claim) !== undefined) : []
  return current.length > 0 ? current : m.claims
}

/** Runs `cmds` against a fresh store from `factory` and the model, checking after every command. */
export const run = (factory: Factory, cmds: ReadonlyArray<Command>) =>
  Effect.scoped(Effect.gen(function*() {
    const w = yield* factory
    const m = new Model()
    m.now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const storeOf = (x: Worker) => x === "A" ? w.a : w.b

    for (const [step, cmd] of cmds.entries()) {
      const where = `step ${step} ${JSON.stringify(cmd)}`
      const touched = new Set<string>()
      let all = false
      switch (cmd._tag) {
        case "Enqueue": {
          const id = EVENT_IDS[cmd.event]!
          touched.add(id)
          const event = yield* makeEvent(id, cmd.variant)
          const result = yield* Effect.either(storeOf(cmd.via).enqueue(event, cmd.targets))
          const existing = m.events.get(id)
          if (existing !== undefined && existing.variant !== cmd.variant) {
            seen("enqueue: conflict")
            assert.isTrue(result._tag === "Left" && result.left._tag === "ConflictError", `${where}: a ConflictError`)
            if (result._tag === "Left" && result.left._tag === "ConflictError") {
              assert.strictEqual(result.left.eventId, id)
            }
            break
          }
          if (result._tag === "Left") {
            return assert.fail(`${where}: enqueue failed: ${result.left.message}`)
          }
          const answer = result.right
          assert.strictEqual(answer.eventId, id, where)
          const bySort = <A extends { readonly target: string }>(xs: ReadonlyArray<A>) =>
            [...xs].sort((x, y) => x.target.localeCompare(y.target))
          if (existing !== undefined) {
            seen("enqueue: duplicate")
            assert.isFalse(answer.created, `${where}: a duplicate`)
            assert.deepStrictEqual(
              bySort(answer.deliveries.map((x) => ({ id: x.id, target: x.target, status: x.status }))),
              bySort(
                existing.deliveries.map((x) => m.deliveries.get(x)!).map((d) => ({
                  id: d.id,
                  target: d.target,
                  status: d.status
                }))
              ),
              `${where}: the duplicate answers the first enqueue's deliveries, with their current status`
            )
            break
          }
          seen(m.everStored.has(id) ? "enqueue: created again after its deliveries were removed" : "enqueue: created")
          m.everStored.add(id)
          assert.isTrue(answer.created, `${where}: created`)
          const unique = Array.from(new Set(cmd.targets))
          assert.deepStrictEqual(
            answer.deliveries.map((x) => [x.target, x.status]),
            unique.map((t) => [t, "pending"]),
            where
          )
          const ids = answer.deliveries.map((x) => x.id)
          for (const did of ids) assert.isFalse(m.known.includes(did), `${where}: delivery id ${did} is new`)
          const deliveries: Array<string> = []
          for (const x of answer.deliveries) {
            m.deliveries.set(x.id, {
              id: x.id,
              seq: m.seq++,
              eventId: id,
              target: x.target,
              status: "pending",
              attempts: 0,
              firstAttemptAt: undefined,
              availableAt: m.now,
              lease: undefined,
              workerId: undefined,
              enqueuedAt: m.now,
              finishedAt: undefined,
              lastError: undefined,
              lastErrorMessage: undefined,
              deadReason: undefined,
              history: []
            })
            m.known.push(x.id)
            deliveries.push(x.id)
          }
          m.events.set(id, { variant: cmd.variant, enqueuedAt: m.now, deliveries })
          break
        }
        case "Claim": {
          const due = m.sorted().filter((d) =>
            m.claimable(d) && (cmd.targets === undefined || cmd.targets.includes(d.target))
          )
          const got = yield* storeOf(cmd.worker).claim({
            workerId: workerId(cmd.worker),
            limit: cmd.limit,
            leaseMs: cmd.leaseMs,
            ...(cmd.targets !== undefined ? { targets: cmd.targets } : {})
          })
          assert.strictEqual(
            got.length,
            Math.min(cmd.limit, due.length),
            `${where}: how many were claimed (${due.length} due)`
          )
          assert.strictEqual(new Set(got.map((c) => c.id)).size, got.length, `${where}: no delivery twice in a batch`)
          const dueIds = new Set(due.map((d) => d.id))
          for (const c of got) {
            assert.isTrue(dueIds.has(c.id), `${where}: ${c.id} was claimable (due, or its lease expired)`)
            const d = m.deliveries.get(c.id)!
            assert.deepStrictEqual(
              {
                eventId: c.eventId,
                target: c.target,
                idempotencyKey: c.idempotencyKey,
                attempts: c.attempts,
                firstAttemptAt: c.firstAttemptAt,
                leaseExpiresAt: c.leaseExpiresAt,
                enqueuedAt: c.enqueuedAt,
                workerId: c.workerId,
                after: c.after,
                dependents: c.dependents,
                payload: c.event.payload
              },
              {
                eventId: d.eventId,
                target: d.target,
                idempotencyKey: `${d.eventId}:${d.target}`,
                attempts: d.attempts,
                firstAttemptAt: d.firstAttemptAt,
                leaseExpiresAt: m.now + cmd.leaseMs,
                enqueuedAt: d.enqueuedAt,
                workerId: workerId(cmd.worker),
                after: [],
                dependents: 0,
                payload: { v: m.events.get(d.eventId)!.variant, id: d.eventId }
              },
              `${where}: claimed ${c.id}`
            )
            assert.isFalse(m.leases.has(c.lease), `${where}: a fresh lease token`)
          }
          // Fair: oldest due first within a target; round-robin across targets.
          const byTarget = new Map<string, { due: Array<MDelivery>; picked: Array<MDelivery> }>()
          for (const d of due) {
            const entry = byTarget.get(d.target) ?? { due: [], picked: [] }
            entry.due.push(d)
            byTarget.set(d.target, entry)
          }
          for (const c of got) byTarget.get(c.target)!.picked.push(m.deliveries.get(c.id)!)
          for (const [target, { due: dueT, picked }] of byTarget) {
            const latestPicked = Math.max(...picked.map((d) => d.availableAt!))
            const earliestLeft = Math.min(...dueT.filter((d) => !picked.includes(d)).map((d) => d.availableAt!))
            if (picked.length > 0) {
              assert.isAtMost(latestPicked, earliestLeft, `${where}: oldest due first within ${target}`)
            }
            if (picked.length < dueT.length) {
              for (const [other, entry] of byTarget) {
                assert.isAtMost(
                  entry.picked.length,
                  picked.length + 1,
                  `${where}: round-robin: ${other} vs ${target} (left due)`
                )
              }
            }
          }
          seen(
            got.length === 0
              ? `claim: none (${
                m.sorted().some((d) => m.claimable(d))
                  ? "filtered"
                  : Array.from(m.deliveries.values()).some((d) => m.active(d))
                  ? "active, none due"
                  : "none active"
              })`
              : got.length < due.length
              ? "claim: limited"
              : "claim: all due"
          )
          if (
            due.some((d) => d.status === "in_flight")
          ) seen("claim: an expired lease was due")
          if (got.some((c) => m.deliveries.get(c.id)!.status === "in_flight")) seen("claim: retook an expired lease")
          if (new Set(got.map((c) => c.target)).size > 1) seen("claim: several targets")
          for (const c of got) {
            const d = m.deliveries.get(c.id)!
            d.status = "in_flight"
            d.lease = c.lease
            d.workerId = workerId(cmd.worker)
            d.availableAt = m.now + cmd.leaseMs
            m.leases.add(c.lease)
            m.claims.push({ worker: cmd.worker, claim: { id: c.id, lease: c.lease } })
            touched.add(c.eventId)
          }
          break
        }
        case "Extend": {
          const held = pick(claimsOf(m, cmd.live), cmd.claim)
          if (held === undefined) break
          const d = m.fenced(held.claim)
          const applied = yield* storeOf(held.worker).extendLease(held.claim, cmd.leaseMs)
          seen(d !== undefined ? "extend: applied" : "extend: stale")
          assert.strictEqual(applied, d !== undefined, `${where}: extendLease applies only with the current lease`)
          if (d !== undefined) {
            d.availableAt = m.now + cmd.leaseMs
            touched.add(d.eventId)
          }
          break
        }
        case "Finish": {
          const held = pick(claimsOf(m, cmd.live), cmd.claim)
          if (held === undefined) break
          const d = m.fenced(held.claim)
          const at = m.now + cmd.retryInMs
          const applied = yield* storeOf(held.worker).finish(
            held.claim,
            attemptOf(m.now, cmd.outcome),
            nextOf(cmd.next, at)
          )
          seen(
            d !== undefined
              ? `finish: ${cmd.next}${d.availableAt! <= m.now ? " (lease expired, not retaken)" : ""}`
              : "finish: stale"
          )
          if (d === undefined && m.deliveries.get(held.claim.id)?.status === "in_flight") {
            seen("finish: stale, retaken by another claim")
          }
          assert.strictEqual(applied, d !== undefined, `${where}: finish applies only with the current lease`)
          if (d !== undefined) applyFinish(m, d, held.claim, cmd.outcome, cmd.next, at)
          const stored = m.deliveries.get(held.claim.id)
          if (stored !== undefined) touched.add(stored.eventId)
          break
        }
        case "Release": {
          const chosen = Array.from(
            new Set(cmd.claims.map((i) => pick(claimsOf(m, cmd.live), i)).filter((x) => x !== undefined))
          )
          if (chosen.length === 0) break
          // A release names one worker's claims; take the first one's and keep the rest that are its too.
          const by = chosen[0]!.worker
          const mine = chosen.filter((x) => x.worker === by)
          const live = Array.from(new Set(mine.map((x) => m.fenced(x.claim)).filter((d) => d !== undefined)))
          const n = yield* storeOf(by).release(mine.map((x) => x.claim))
          seen(`release: ${live.length} of ${mine.length}`)
          assert.strictEqual(n, live.length, `${where}: released only the claims with the current lease`)
          for (const d of live) {
            d.status = "pending"
            d.lease = undefined
            d.availableAt = m.now
          }
          for (const x of mine) {
            const stored = m.deliveries.get(x.claim.id)
            if (stored !== undefined) touched.add(stored.eventId)
          }
          break
        }
        case "Forge": {
          const id = pick(m.known, cmd.delivery)
          if (id === undefined) break
          const forged: Store.Claim = { id, lease: `forged-${step}` }
          const answer = cmd.op === "finish"
            ? yield* w.a.finish(forged, attemptOf(m.now, "success"), Store.Next.Delivered())
            : cmd.op === "extend"
            ? yield* w.b.extendLease(forged, 1_000)
            : (yield* w.a.release([forged])) > 0
          assert.isFalse(answer, `${where}: a forged lease changes nothing`)
          const stored = m.deliveries.get(id)
          if (stored !== undefined) touched.add(stored.eventId)
          break
        }
        case "Advance": {
          const upcoming = Array.from(m.deliveries.values())
            .filter((d) => m.active(d) && d.availableAt !== undefined && d.availableAt > m.now)
            .map((d) => d.availableAt!)
          const leases = Array.from(m.deliveries.values()).filter((d) => d.status === "in_flight").map((d) =>
            d.availableAt!
          )
          const by = cmd.by === "nextDeadline"
            ? (upcoming.length > 0 ? Math.min(...upcoming) - m.now : 1)
            : cmd.by === "pastLeases"
            ? Math.max(1, ...leases.map((t) => t - m.now + 1))
            : cmd.by
          seen(`advance: ${typeof cmd.by === "number" ? "fixed" : cmd.by}`)
          yield* TestClock.adjust(by)
          m.now += by
          assert.strictEqual(yield* Effect.clockWith((clock) => clock.currentTimeMillis), m.now, where)
          all = true
          break
        }
        case "Replay": {
          const id = pick(deliveriesOf(m, cmd.dead), cmd.delivery)
          if (id === undefined) break
          const d = m.deliveries.get(id)
          const expected = d !== undefined && d.status === "dead"
          seen(expected ? "replay: dead" : "replay: not dead")
          assert.strictEqual(yield* storeOf(cmd.via).replay(id), expected, `${where}: replay only of a dead letter`)
          if (d !== undefined) {
            if (expected) m.replay(d)
            touched.add(d.eventId)
          }
          break
        }
        case "ReplayMany": {
          const selected = m.dead(cmd.filter)
          seen(selected.length > 0 ? "replayMany: some" : "replayMany: none")
          assert.strictEqual(
            yield* storeOf(cmd.via).replayMany(cmd.filter),
            selected.length,
            `${where}: replayMany count`
          )
          for (const d of selected) m.replay(d)
          all = true
          break
        }
        case "Purge": {
          const id = pick(deliveriesOf(m, cmd.dead), cmd.delivery)
          if (id === undefined) break
          const d = m.deliveries.get(id)
          const expected = d !== undefined && d.status === "dead" ? 1 : 0
          seen(expected === 1 ? "purge: dead" : "purge: not dead")
          assert.strictEqual(yield* storeOf(cmd.via).purge(id), expected, `${where}: purge only of a dead letter`)
          if (d !== undefined) {
            touched.add(d.eventId)
            if (expected === 1) m.remove(d)
          }
          break
        }
        case "PurgeMany": {
          const selected = m.dead(cmd.filter)
          seen(selected.length > 0 ? "purgeMany: some" : "purgeMany: none")
          assert.strictEqual(yield* storeOf(cmd.via).purge(cmd.filter), selected.length, `${where}: purge count`)
          for (const d of selected) m.remove(d)
          all = true
          break
        }
        case "Retention": {
          const finished = m.sorted().filter((d) => d.status === "delivered" || d.status === "compensated")
          const olderThanMs = typeof cmd.olderThanMs === "number"
            ? cmd.olderThanMs
            : m.now - (pick(finished, cmd.olderThanMs.finished)?.finishedAt ?? m.now)
          const cutoff = m.now - olderThanMs
          const selected = m.sorted().filter((d) =>
            (d.status === "delivered" || d.status === "compensated") && d.finishedAt! < cutoff
          )
          let events = 0
          for (const d of selected) if (m.remove(d)) events++
          seen(
            selected.length > 0
              ? (events > 0 ? "retention: deliveries and events" : "retention: deliveries")
              : "retention: none"
          )
          const removed = yield* storeOf(cmd.via).retention(olderThanMs)
          assert.deepStrictEqual(removed, { deliveries: selected.length, events }, `${where}: retention`)
          all = true
          break
        }
      }
      yield* checkAll(m, w, all ? "all" : touched, where)
    }
    yield* checkAll(m, w, "all", "end of run")
    yield* checkPaging(m, w.b)
  }))

// ---- the suite -----------------------------------------------------------------------------

const envInt = (name: string): number | undefined => {
  const value = process.env[name]
  if (value === undefined || value === "") return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${value}`)
  return n
}

export interface SuiteOptions {
  /** When set, the property is skipped with this reason. */
  readonly skip?: string | undefined
  /** Runs (default 50; `FANOUT_MODEL_RUNS` overrides). */
  readonly runs?: number | undefined
  /** Most commands per run (default 30; `FANOUT_MODEL_COMMANDS` overrides). */
  readonly maxCommands?: number | undefined
  readonly timeout?: number | undefined
}

/**
 * Registers the model-based property for one store. fast-check's seed: `FANOUT_PROP_SEED` (through
 * test/setup/seed.ts), else random, printed on failure.
 */
export const suite = (name: string, factory: Factory, options: SuiteOptions = {}) => {
  const runs = envInt("FANOUT_MODEL_RUNS") ?? options.runs ?? 50
  const maxCommands = envInt("FANOUT_MODEL_COMMANDS") ?? options.maxCommands ?? 30
  const d = options.skip !== undefined ? describe.skip : describe
  d(`DeliveryStore model: ${name}${options.skip !== undefined ? ` (skipped: ${options.skip})` : ""}`, () => {
    if (process.env.FANOUT_MODEL_STATS === "1") {
      afterAll(() => {
        const lines = Array.from(tally).sort(([x], [y]) => x.localeCompare(y)).map(([what, n]) => `  ${what}: ${n}`)
        console.log(`[model ${name}] cases seen:\n${lines.join("\n")}`)
        tally.clear()
      })
    }
    it.effect.prop(
      `random command sequences agree with the reference model (${runs} runs, ≤ ${maxCommands} commands)`,
      [commands(maxCommands)],
      ([cmds]) => run(factory, cmds),
      { timeout: options.timeout ?? 120_000, fastCheck: { numRuns: runs } }
    )
  })
}
