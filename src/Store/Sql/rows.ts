/**
 * The SQL store's rows and the small decoders shared by its query families: stored numbers and
 * texts, the dependency column, an attempt's history row, a finish's final state, a duplicate
 * enqueue's answer.
 *
 * @internal
 */
import * as Store from "../../Store.js"

export const num = (value: unknown): number => typeof value === "number" ? value : Number(value)
export const optNum = (value: unknown): number | undefined =>
  value === null || value === undefined ? undefined : num(value)
export const optStr = (value: unknown): string | undefined =>
  value === null || value === undefined ? undefined : String(value)
export const parseId = (id: string): number | undefined => /^[0-9]{1,15}$/.test(id) ? Number(id) : undefined
export const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

export interface ClaimRow {
  readonly id: unknown
  readonly event_id: string
  readonly target: string
  readonly attempts: unknown
  readonly first_attempt_at: unknown
  readonly replayed_at: unknown
  /** Migration 0007: how many times the delivery was resent. */
  readonly resends: unknown
  readonly enqueued_at: unknown
  readonly envelope: string
  readonly lease: string
  readonly available_at: unknown
  readonly after_targets: unknown
  readonly dependents: unknown
}

export interface DeliveryRow {
  readonly id: unknown
  readonly event_id: string
  readonly target: string
  readonly status: Store.Status
  readonly attempts: unknown
  readonly total_attempts: unknown
  readonly available_at: unknown
  readonly last_error: unknown
  readonly last_error_message: unknown
  readonly dead_reason: unknown
  readonly finished_at: unknown
  readonly enqueued_at: unknown
  readonly after_targets: unknown
  readonly waiting: unknown
  readonly response: unknown
  /** Migration 0007: how many times the delivery was resent. */
  readonly resends: unknown
}

export interface AttemptRow {
  readonly delivery_id: unknown
  readonly number: unknown
  readonly started_at: unknown
  readonly duration_ms: unknown
  readonly outcome: string
  readonly http_status: unknown
  readonly error_tag: unknown
  readonly message: unknown
  readonly retry_after_ms: unknown
  readonly lease: string
  readonly worker_id: unknown
}

/**
 * The stored `after_targets` (a JSON array of target names, NULL for a plain delivery); undefined
 * when the stored text is not such an array.
 */
export const parseAfter = (value: unknown): ReadonlyArray<string> | undefined => {
  if (value === null || value === undefined) return []
  try {
    const parsed: unknown = JSON.parse(String(value))
    return Array.isArray(parsed) && parsed.every((x) => typeof x === "string") ? parsed : undefined
  } catch {
    return undefined
  }
}

export const toAttempt = (row: AttemptRow): Store.Attempt => {
  const status = optNum(row.http_status)
  const errorTag = optStr(row.error_tag)
  const message = optStr(row.message)
  const retryAfterMs = optNum(row.retry_after_ms)
  return {
    number: num(row.number),
    startedAt: num(row.started_at),
    durationMs: num(row.duration_ms),
    outcome: row.outcome,
    lease: row.lease,
    workerId: optStr(row.worker_id),
    ...(status !== undefined ? { status } : {}),
    ...(errorTag !== undefined ? { errorTag } : {}),
    ...(message !== undefined ? { message } : {}),
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {})
  }
}

export const finalState = (next: Store.Next, now: number) => {
  switch (next._tag) {
    case "Retry":
      return { status: "pending" as const, availableAt: Math.round(next.at), deadReason: null, finishedAt: null }
    case "Dead":
      return { status: "dead" as const, availableAt: null, deadReason: next.reason, finishedAt: now }
    case "Delivered":
      return { status: "delivered" as const, availableAt: null, deadReason: null, finishedAt: now }
    case "Compensated":
      return { status: "compensated" as const, availableAt: null, deadReason: null, finishedAt: now }
  }
}

/**
 * An enqueue's answer inside the store: a conflict is a value here (nothing was written, so the
 * transaction and the group commit carry on), and becomes the caller's `ConflictError` outside.
 */
export type EnqueueResult = Store.Enqueued | Store.ConflictError

export interface ExistingRow {
  readonly fingerprint: string | null
  readonly id: unknown
  readonly target: string | null
  readonly status: Store.Status | null
}

/** A second enqueue of a stored id: its first enqueue's deliveries, or the conflict. */
export const duplicateOf = (eventId: string, fingerprint: string, rows: ReadonlyArray<ExistingRow>): EnqueueResult => {
  const stored = rows[0]?.fingerprint
  if (Store.conflicts(fingerprint, stored)) return Store.conflict(eventId, fingerprint, stored!)
  return {
    eventId,
    created: false,
    deliveries: rows.flatMap((row) =>
      row.id === null || row.id === undefined ? [] : [{ id: String(row.id), target: row.target!, status: row.status! }]
    )
  }
}
