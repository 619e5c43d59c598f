/**
 * The in-memory {@link Store.DeliveryStore}: the same contract as the SQL stores, held in this process
 * only (nothing survives a restart). For tests, and for direct mode when no durability is wanted.
 *
 * Every operation is one synchronous step on the JavaScript thread, so each is atomic.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Layer, Option } from "effect"
import * as Event from "../Event.js"
import * as Store from "../Store.js"
import {
  checkDependencies,
  checkPositiveInt,
  checkTargets,
  dependentCounts,
  encodeEnvelope,
  invalid,
  makeSignal,
  newLeaseToken,
  roundRobin
} from "./internal.js"

interface Row {
  readonly id: string
  readonly seq: number
  readonly eventId: string
  readonly target: string
  status: Store.Status
  attempts: number
  availableAt: number | undefined
  firstAttemptAt: number | undefined
  lease: string | undefined
  workerId: string | undefined
  lastError: string | undefined
  lastErrorMessage: string | undefined
  deadReason: string | undefined
  readonly enqueuedAt: number
  replayedAt: number | undefined
  finishedAt: number | undefined
  readonly history: Array<Store.Attempt>
  /** Its inputs (durable pipelines). */
  readonly after: ReadonlyArray<string>
  /** Inputs not delivered yet: a pending row is claimable only at 0. */
  waiting: number
  /** How many rows of the event list this one as an input. */
  readonly dependents: number
  /** The answer stored for the dependents. */
  response: string | undefined
  /** How many times it was resent (its idempotency key: `Store.resendKey`). */
  resends: number
}

interface EventRow {
  readonly event: Event.Any
  /** `Event.fingerprint` of the event: a second enqueue of its id with another one is a conflict. */
  readonly fingerprint: string
  readonly enqueuedAt: number
  readonly deliveries: Array<string>
}

const isActive = (row: Row) => row.status === "pending" || row.status === "in_flight"

const matches = (row: Row, filter: Store.DeadLetterFilter): boolean =>
  row.status === "dead" &&
  (filter.target === undefined || row.target === filter.target) &&
  (filter.errorLabel === undefined || row.lastError === filter.errorLabel) &&
  (filter.from === undefined || (row.finishedAt ?? 0) >= filter.from) &&
  (filter.to === undefined || (row.finishedAt ?? 0) <= filter.to)

const emptyCounts = (): { -readonly [K in keyof Store.Counts]: number } => ({
  pending: 0,
  inFlight: 0,
  delivered: 0,
  dead: 0,
  compensated: 0
})

const countKey = (status: Store.Status): keyof Store.Counts => status === "in_flight" ? "inFlight" : status

/**
 * A new, empty in-memory store.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Store.DeliveryStore> = Effect.gen(function*() {
  const events = new Map<string, EventRow>()
  const rows = new Map<string, Row>()
  /** Ids of pending/in-flight rows per target, so claims do not scan finished rows. */
  const active = new Map<string, Set<string>>()
  const signal = yield* makeSignal
  let seq = 0
  let rotation = 0
  let writes = 0

  const activate = (row: Row) => {
    let set = active.get(row.target)
    if (set === undefined) {
      set = new Set()
      active.set(row.target, set)
    }
    set.add(row.id)
  }
  const deactivate = (row: Row) => active.get(row.target)?.delete(row.id)

  const write = <A>(f: (now: number) => A): Effect.Effect<A> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        writes++
        return f(now)
      }))

  const fenced = (claim: Store.Claim): Row | undefined => {
    const row = rows.get(claim.id)
    return row !== undefined && row.status === "in_flight" && row.lease === claim.lease ? row : undefined
  }

  const remove = (row: Row) => {
    rows.delete(row.id)
    deactivate(row)
    const owner = events.get(row.eventId)
    if (owner === undefined) return false
    const i = owner.deliveries.indexOf(row.id)
    if (i >= 0) owner.deliveries.splice(i, 1)
    if (owner.deliveries.length === 0) {
      events.delete(row.eventId)
      return true
    }
    return false
  }

  const deadRows = (filter: Store.DeadLetterFilter): Array<Row> => {
    const out: Array<Row> = []
    for (const row of rows.values()) if (matches(row, filter)) out.push(row)
    return out
  }

  const replayRow = (row: Row, now: number) => {
    row.status = "pending"
    row.attempts = 0
    row.firstAttemptAt = undefined
    row.replayedAt = now
    row.availableAt = now
    row.lease = undefined
    row.deadReason = undefined
    row.finishedAt = undefined
    activate(row)
  }

  const enqueue: Store.DeliveryStore["enqueue"] = (event, targets, options) =>
    Effect.gen(function*() {
      const unique = yield* checkTargets(targets)
      const dependencies = yield* checkDependencies(unique, options?.after)
      const dependents = dependentCounts(dependencies, unique, options?.keepAnswers === true)
      yield* encodeEnvelope(event)
      const fingerprint = yield* Effect.try({
        try: () => Event.fingerprint(event),
        catch: (cause) => invalid("enqueue", `event ${event.id} cannot be fingerprinted: ${String(cause)}`)
      })
      const result = yield* write((now): Store.Enqueued | Store.ConflictError | Store.StoreError => {
        const due = Store.dueAt(options, now)
        if (typeof due !== "number") return due
        const existing = events.get(event.id)
        if (existing !== undefined) {
          if (Store.conflicts(fingerprint, existing.fingerprint)) {
            return Store.conflict(event.id, fingerprint, existing.fingerprint)
          }
          return {
            eventId: event.id,
            created: false,
            deliveries: existing.deliveries.map((id) => {
              const row = rows.get(id)!
              return { id, target: row.target, status: row.status }
            })
          }
        }
        const ids: Array<string> = []
        for (const target of unique) {
          const id = String(++seq)
          const row: Row = {
            id,
            seq,
            eventId: event.id,
            target,
            status: "pending",
            attempts: 0,
            availableAt: due,
            firstAttemptAt: undefined,
            lease: undefined,
            workerId: undefined,
            lastError: undefined,
            lastErrorMessage: undefined,
            deadReason: undefined,
            enqueuedAt: now,
            replayedAt: undefined,
            finishedAt: undefined,
            history: [],
            after: dependencies.get(target) ?? [],
            waiting: dependencies.get(target)?.length ?? 0,
            dependents: dependents.get(target) ?? 0,
            response: undefined,
            resends: 0
          }
          rows.set(id, row)
          activate(row)
          ids.push(id)
        }
        events.set(event.id, { event, fingerprint, enqueuedAt: now, deliveries: ids })
        return {
          eventId: event.id,
          created: true,
          deliveries: ids.map((id) => ({ id, target: rows.get(id)!.target, status: "pending" as const }))
        }
      })
      if (result instanceof Store.ConflictError || result instanceof Store.StoreError) return yield* result
      if (result.created) yield* signal.notify
      return result
    })

  const nextDue: NonNullable<Store.DeliveryStore["nextDue"]> = (target) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      let earliest: number | undefined
      for (const id of active.get(target) ?? []) {
        const row = rows.get(id)!
        if (
          row.status === "pending" && row.waiting === 0 && row.availableAt !== undefined && row.availableAt > now &&
          (earliest === undefined || row.availableAt < earliest)
        ) earliest = row.availableAt
      }
      return Option.fromNullable(earliest)
    })

  const claim: Store.DeliveryStore["claim"] = (options) =>
    Effect.gen(function*() {
      yield* checkPositiveInt("claim", "limit", options.limit)
      yield* checkPositiveInt("claim", "leaseMs", options.leaseMs)
      return yield* write((now) => {
        const targets = options.targets ?? Array.from(active.keys())
        const groups: Array<Array<Row>> = []
        for (const target of targets) {
          const ids = active.get(target)
          if (ids === undefined) continue
          const due: Array<Row> = []
          for (const id of ids) {
            const row = rows.get(id)!
            if (isActive(row) && row.waiting === 0 && row.availableAt !== undefined && row.availableAt <= now) {
              due.push(row)
            }
          }
          due.sort((a, b) => a.availableAt! - b.availableAt! || a.seq - b.seq)
          if (due.length > 0) groups.push(due.slice(0, options.limit))
        }
        const picked = roundRobin(groups, options.limit, rotation++)
        const token = newLeaseToken()
        return picked.map((row): Store.Claimed => {
          row.status = "in_flight"
          row.lease = `${token}:${row.id}`
          row.availableAt = now + options.leaseMs
          row.workerId = options.workerId
          return {
            id: row.id,
            lease: row.lease,
            eventId: row.eventId,
            target: row.target,
            idempotencyKey: Store.resendKey(row.eventId, row.target, row.resends),
            event: events.get(row.eventId)!.event,
            attempts: row.attempts,
            firstAttemptAt: row.firstAttemptAt,
            leaseExpiresAt: row.availableAt,
            enqueuedAt: row.enqueuedAt,
            replayedAt: row.replayedAt,
            workerId: options.workerId,
            after: row.after,
            inputs: row.after.length === 0 ? {} : inputsOf(row),
            dependents: row.dependents
          }
        })
      })
    })

  /** The stored answers of a row's inputs. */
  const inputsOf = (row: Row): Record<string, string | undefined> => {
    const out: Record<string, string | undefined> = {}
    for (const input of row.after) out[input] = undefined
    for (const id of events.get(row.eventId)?.deliveries ?? []) {
      const input = rows.get(id)!
      if (row.after.includes(input.target)) out[input.target] = input.response
    }
    return out
  }

  /** A delivered input releases its dependents' wait on it; answers whether one became due. */
  const release1 = (row: Row, now: number): boolean => {
    if (row.dependents === 0) return false
    let due = false
    for (const id of events.get(row.eventId)?.deliveries ?? []) {
      const dependent = rows.get(id)!
      if (dependent.status !== "pending" || dependent.waiting === 0 || !dependent.after.includes(row.target)) continue
      dependent.waiting--
      dependent.availableAt = now
      if (dependent.waiting === 0) due = true
    }
    return due
  }

  const finish: Store.DeliveryStore["finish"] = (claim, attempt, next) =>
    Effect.tap(
      write((now) => finish1(claim, attempt, next, now)),
      (result) => result === "due" ? signal.notify : Effect.void
    )
      .pipe(Effect.map((result) => result !== false))

  const finish1 = (claim: Store.Claim, attempt: Store.AttemptInput, next: Store.Next, now: number): boolean | "due" => {
    {
      const row = fenced(claim)
      if (row === undefined) return false
      row.attempts++
      row.firstAttemptAt ??= attempt.startedAt
      row.history.push({ ...attempt, number: row.history.length + 1, lease: claim.lease, workerId: row.workerId })
      if (attempt.outcome !== "success") {
        row.lastError = attempt.outcome
        row.lastErrorMessage = attempt.message
      }
      row.lease = undefined
      switch (next._tag) {
        case "Retry":
          row.status = "pending"
          row.availableAt = next.at
          return true
        case "Dead":
          row.deadReason = next.reason
          row.status = "dead"
          break
        case "Delivered":
          row.status = "delivered"
          if (row.dependents > 0) row.response = next.response
          break
        case "Compensated":
          row.status = "compensated"
          break
      }
      row.availableAt = undefined
      row.finishedAt = now
      deactivate(row)
      return next._tag === "Delivered" && release1(row, now) ? "due" : true
    }
  }

  const extendLease: Store.DeliveryStore["extendLease"] = (claim, leaseMs) =>
    Effect.zipRight(
      checkPositiveInt("extendLease", "leaseMs", leaseMs),
      write((now) => {
        const row = fenced(claim)
        if (row === undefined) return false
        row.availableAt = now + leaseMs
        return true
      })
    )

  const release: Store.DeliveryStore["release"] = (claims) =>
    Effect.tap(
      write((now) => {
        let n = 0
        for (const claim of claims) {
          const row = fenced(claim)
          if (row === undefined) continue
          row.status = "pending"
          row.lease = undefined
          row.availableAt = now
          n++
        }
        return n
      }),
      (n) => n > 0 ? signal.notify : Effect.void
    )

  const toDeadLetter = (row: Row): Store.DeadLetter => ({
    id: row.id,
    eventId: row.eventId,
    eventType: events.get(row.eventId)!.event.type,
    target: row.target,
    idempotencyKey: Store.resendKey(row.eventId, row.target, row.resends),
    reason: row.deadReason ?? "",
    lastError: row.lastError,
    lastErrorMessage: row.lastErrorMessage,
    attempts: row.attempts,
    totalAttempts: row.history.length,
    deadAt: row.finishedAt ?? 0,
    enqueuedAt: row.enqueuedAt
  })

  const deadLetters: Store.DeliveryStore["deadLetters"] = (query) =>
    Effect.zipRight(
      checkPositiveInt("deadLetters", "limit", query.limit),
      query.cursor !== undefined && !/^[0-9]{1,15}$/.test(query.cursor)
        ? Effect.fail(invalid("deadLetters", `bad cursor ${JSON.stringify(query.cursor)}`))
        : Effect.void
    ).pipe(
      Effect.zipRight(Effect.sync(() => {
        const after = query.cursor !== undefined ? Number(query.cursor) : 0
        const items: Array<Store.DeadLetter> = []
        let more = false
        for (const row of rows.values()) {
          if (row.seq <= after || !matches(row, query)) continue
          if (items.length === query.limit) {
            more = true
            break
          }
          items.push(toDeadLetter(row))
        }
        return { items, next: more ? items[items.length - 1]!.id : undefined }
      }))
    )

  const events_: Store.DeliveryStore["events"] = (query) =>
    Effect.gen(function*() {
      yield* checkPositiveInt("events", "limit", query.limit)
      const after = query.cursor !== undefined ? Store.eventCursor.decode(query.cursor) : undefined
      if (query.cursor !== undefined && after === undefined) {
        return yield* Effect.fail(invalid("events", `bad cursor ${JSON.stringify(query.cursor)}`))
      }
      const before = (e: EventRow) =>
        after === undefined || e.enqueuedAt < after[0] || (e.enqueuedAt === after[0] && e.event.id < after[1])
      const found: Array<EventRow> = []
      for (const e of events.values()) {
        if (query.type !== undefined && e.event.type !== query.type) continue
        if (query.since !== undefined && e.enqueuedAt < query.since) continue
        if (query.until !== undefined && e.enqueuedAt > query.until) continue
        if (!before(e)) continue
        if (query.status !== undefined || query.target !== undefined) {
          const hit = e.deliveries.some((id) => {
            const row = rows.get(id)!
            return (query.target === undefined || row.target === query.target) &&
              (query.status === undefined || row.status === query.status)
          })
          if (!hit) continue
        }
        found.push(e)
      }
      found.sort((a, b) =>
        b.enqueuedAt - a.enqueuedAt || (a.event.id < b.event.id ? 1 : a.event.id > b.event.id ? -1 : 0)
      )
      const page = found.slice(0, query.limit)
      const items = page.map((e): Store.EventSummary => ({
        id: e.event.id,
        type: e.event.type,
        enqueuedAt: e.enqueuedAt,
        deliveries: e.deliveries.map((id) => {
          const row = rows.get(id)!
          return { id, target: row.target, status: row.status }
        })
      }))
      const last = page[page.length - 1]
      return {
        items,
        next: found.length > query.limit && last !== undefined
          ? Store.eventCursor.encode(last.enqueuedAt, last.event.id)
          : undefined
      }
    })

  const replay: Store.DeliveryStore["replay"] = (id) =>
    Effect.tap(
      write((now) => {
        const row = rows.get(id)
        if (row === undefined || row.status !== "dead") return false
        replayRow(row, now)
        return true
      }),
      (done) => done ? signal.notify : Effect.void
    )

  const resend: Store.DeliveryStore["resend"] = (eventId, target) =>
    Effect.tap(
      write((now): Store.ResendResult => {
        const stored = events.get(eventId)
        if (stored === undefined) return { _tag: "UnknownEvent" }
        const row = stored.deliveries.map((id) => rows.get(id)!).find((r) => r.target === target)
        if (row === undefined) return { _tag: "NoDelivery" }
        if (row.status === "pending" || row.status === "in_flight") {
          return { _tag: "Open", id: row.id, status: row.status }
        }
        if (row.status === "dead") {
          return { _tag: "Dead", id: row.id }
        }
        row.resends++
        replayRow(row, now)
        return {
          _tag: "Resent",
          id: row.id,
          target,
          idempotencyKey: Store.resendKey(eventId, target, row.resends),
          resends: row.resends
        }
      }),
      (result) => result._tag === "Resent" ? signal.notify : Effect.void
    )

  const replayMany: Store.DeliveryStore["replayMany"] = (filter) =>
    Effect.tap(
      write((now) => {
        const selected = deadRows(filter)
        for (const row of selected) replayRow(row, now)
        return selected.length
      }),
      (n) => n > 0 ? signal.notify : Effect.void
    )

  const purge: Store.DeliveryStore["purge"] = (selection) =>
    write(() => {
      const selected = typeof selection === "string"
        ? Option.match(Option.fromNullable(rows.get(selection)), {
          onNone: () => [],
          onSome: (row) => row.status === "dead" ? [row] : []
        })
        : deadRows(selection)
      for (const row of selected) remove(row)
      return selected.length + purgeHeld(selected)
    })

  const purgeTarget: Store.DeliveryStore["purgeTarget"] = (target) =>
    write(() => {
      const selected = Array.from(rows.values()).filter((row) =>
        row.target === target && (row.status === "pending" || row.status === "dead")
      )
      const eventIds = new Set(selected.map((row) => row.eventId))
      for (const row of selected) remove(row)
      // Held dependents (in the same events) go with their inputs.
      const held = purgeHeld(selected)
      const removedEvents = Array.from(eventIds).filter((id) => !events.has(id)).length
      return { deliveries: selected.length + held, events: removedEvents }
    })

  /** Removes the held dependents of removed inputs, transitively (they could never run); answers how many. */
  const purgeHeld = (removed: ReadonlyArray<Row>): number => {
    let n = 0
    let frontier = removed.filter((row) => row.dependents > 0)
    while (frontier.length > 0) {
      const next: Array<Row> = []
      for (const input of frontier) {
        for (const id of events.get(input.eventId)?.deliveries.slice() ?? []) {
          const row = rows.get(id)!
          if (row.status === "pending" && row.waiting > 0 && row.after.includes(input.target)) {
            remove(row)
            next.push(row)
            n++
          }
        }
      }
      frontier = next
    }
    return n
  }

  /** Whether a delivered input's answer may still be needed (a sibling is pending, in flight or dead). */
  const needed = (row: Row): boolean =>
    row.dependents > 0 &&
    (events.get(row.eventId)?.deliveries ?? []).some((id) => {
      const sibling = rows.get(id)!
      return isActive(sibling) || sibling.status === "dead"
    })

  const status: Store.DeliveryStore["status"] = (eventId) =>
    Effect.sync(() => {
      const stored = events.get(eventId)
      if (stored === undefined) return Option.none()
      return Option.some<Store.EventStatus>({
        event: stored.event,
        enqueuedAt: stored.enqueuedAt,
        deliveries: stored.deliveries.map((id) => {
          const row = rows.get(id)!
          return {
            id: row.id,
            target: row.target,
            idempotencyKey: Store.resendKey(row.eventId, row.target, row.resends),
            status: row.status,
            attempts: row.attempts,
            totalAttempts: row.history.length,
            nextAttemptAt: row.status === "pending" ? row.availableAt : undefined,
            leaseExpiresAt: row.status === "in_flight" ? row.availableAt : undefined,
            lastError: row.lastError,
            lastErrorMessage: row.lastErrorMessage,
            deadReason: row.deadReason,
            finishedAt: row.finishedAt,
            after: row.after,
            waiting: row.waiting,
            response: row.response,
            history: row.history.slice()
          }
        })
      })
    })

  const stats: Store.DeliveryStore["stats"] = Effect.flatMap(
    Clock.currentTimeMillis,
    (now) =>
      Effect.sync((): Store.Stats => {
        const total = emptyCounts()
        const targets: Record<string, ReturnType<typeof emptyCounts>> = {}
        let oldest: number | undefined
        for (const row of rows.values()) {
          const key = countKey(row.status)
          total[key]++
          ;(targets[row.target] ??= emptyCounts())[key]++
          if (isActive(row) && (oldest === undefined || row.enqueuedAt < oldest)) oldest = row.enqueuedAt
        }
        return {
          ...total,
          depth: total.pending + total.inFlight,
          oldestPendingAgeMs: oldest === undefined ? 0 : Math.max(0, now - oldest),
          targets
        }
      })
  )

  const gauges: Store.DeliveryStore["gauges"] = Effect.map(stats, (s): Store.Gauges => {
    const targets: Record<string, { pending: number; inFlight: number; dead: number }> = {}
    for (const [name, c] of Object.entries(s.targets)) {
      if (c.pending + c.inFlight + c.dead > 0) {
        targets[name] = { pending: c.pending, inFlight: c.inFlight, dead: c.dead }
      }
    }
    return {
      pending: s.pending,
      inFlight: s.inFlight,
      dead: s.dead,
      depth: s.depth,
      oldestPendingAgeMs: s.oldestPendingAgeMs,
      targets
    }
  })

  const retention: Store.DeliveryStore["retention"] = (olderThan) =>
    write((now) => {
      const cutoff = now - Duration.toMillis(Duration.decode(olderThan))
      let deliveries = 0
      let removedEvents = 0
      for (const row of Array.from(rows.values())) {
        if (
          (row.status === "delivered" || row.status === "compensated") && (row.finishedAt ?? now) < cutoff &&
          !needed(row)
        ) {
          deliveries++
          if (remove(row)) removedEvents++
        }
      }
      return { deliveries, events: removedEvents }
    })

  return {
    enqueue,
    claim,
    finish,
    extendLease,
    release,
    deadLetters,
    replay,
    replayMany,
    resend,
    purgeTarget,
    purge,
    status,
    events: events_,
    stats,
    gauges,
    retention,
    wakeups: signal.stream,
    nextDue,
    diagnostics: Effect.sync(() => ({
      writeTransactions: writes,
      writeOperations: writes,
      largestBatch: writes > 0 ? 1 : 0
    }))
  }
})

/**
 * A fresh in-memory store per build of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Store.DeliveryStore> = Layer.effect(Store.DeliveryStore, make)
