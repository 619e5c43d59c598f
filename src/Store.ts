/**
 * The durable outbox: one contract ({@link DeliveryStore}) with three implementations —
 * `MemoryStore` (tests, direct mode), `SqliteStore` (the embedded default) and
 * `PostgresStore` (several processes on several machines share one database).
 *
 * An event is enqueued once with one *delivery* row per target; workers {@link DeliveryStore.claim claim}
 * due deliveries under a lease, try them, and {@link DeliveryStore.finish finish} each one with the
 * attempt record and what comes next (delivered, retry at a time, dead-letter). Every state change
 * a worker makes is fenced by its lease token: a worker whose lease expired (and whose delivery
 * was claimed again by someone else) cannot overwrite the newer outcome.
 *
 * Times are epoch milliseconds read from the Effect `Clock` (so `TestClock` drives them in tests).
 *
 * @since 0.1.0
 */
import { Context, Data, type Duration, type Effect, type Option, Schema, type Stream } from "effect"
import type * as Event from "./Event.js"

/**
 * The state of one delivery (one event to one target).
 *
 * - `pending`: waiting for its next attempt (due at `nextAttemptAt`);
 * - `in_flight`: claimed by a worker whose lease runs until `leaseExpiresAt` (then it is claimable again);
 * - `delivered`: the target accepted it;
 * - `dead`: given up (permanent error, attempts or age exhausted) — a dead letter, replayable;
 * - `compensated`: delivered, then undone by the target's `compensate` (saga).
 *
 * @since 0.1.0
 * @category models
 */
export type Status = "pending" | "in_flight" | "delivered" | "dead" | "compensated"

/**
 * Why a store operation failed.
 *
 * - `Busy`: the database was locked or a serialization conflict happened; retrying is safe;
 * - `Unavailable`: the database could not be reached or answered with an error;
 * - `InvalidInput`: the caller passed something the store cannot hold (e.g. a payload that is not JSON);
 * - `Corrupt`: a stored row could not be decoded;
 * - `Migration`: the schema could not be created or upgraded;
 * - `Closed`: the store was shut down while the operation waited;
 * - `Unsupported`: the SQL client's dialect is not SQLite or PostgreSQL.
 *
 * @since 0.1.0
 * @category errors
 */
export type StoreErrorReason =
  | "Busy"
  | "Unavailable"
  | "InvalidInput"
  | "Corrupt"
  | "Migration"
  | "Closed"
  | "Unsupported"

/**
 * The one error every store operation can fail with. Expected failures never become defects.
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  operation: Schema.String,
  reason: Schema.Literal("Busy", "Unavailable", "InvalidInput", "Corrupt", "Migration", "Closed", "Unsupported"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * {@link DeliveryStore.enqueue} of an id that is already stored with other content: another
 * `type`, `key` or `payload` (see `Event.fingerprint`). Nothing was written; the stored event is
 * unchanged. Not retryable: the same call fails the same way. (A second enqueue of the same
 * content is no error: it answers `created: false`.)
 *
 * An error rather than a third kind of success, because the caller asked for *this* event to be
 * stored and it was not: an answer that looks like a duplicate would let a producer believe its
 * event is on its way.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConflictError extends Schema.TaggedError<ConflictError>()("ConflictError", {
  /** The id, under which the other event is stored. */
  eventId: Schema.String,
  /** The fingerprint of the event given to enqueue. */
  fingerprint: Schema.String,
  /** The fingerprint of the stored event. */
  storedFingerprint: Schema.String,
  message: Schema.String
}) {}

/**
 * @internal
 */
export const conflict = (eventId: string, fingerprint: string, storedFingerprint: string): ConflictError =>
  new ConflictError({
    eventId,
    fingerprint,
    storedFingerprint,
    message: `enqueue: an event with id ${JSON.stringify(eventId)} is already stored with other content ` +
      "(type, key or payload); nothing was stored"
  })

/**
 * Whether a second enqueue of an id is a conflict: both fingerprints known and different. An event
 * stored before fingerprints were (migration 0003) has none and counts as the same.
 *
 * @internal
 */
export const conflicts = (fingerprint: string, stored: string | null | undefined): boolean =>
  stored !== null && stored !== undefined && stored !== fingerprint

/**
 * Whether retrying the failed operation may succeed (`Busy` or `Unavailable`).
 *
 * @since 0.1.0
 * @category errors
 */
export const isRetryable = (error: StoreError): boolean => error.reason === "Busy" || error.reason === "Unavailable"

/**
 * The idempotency key every request of a delivery carries: `<event id>:<target>`. Derived, never
 * stored, so it survives retries, reclaims and replays unchanged.
 *
 * @since 0.1.0
 * @category models
 */
export const idempotencyKey = (eventId: string, target: string): string => `${eventId}:${target}`

/**
 * The idempotency key of a delivery that was resent `resends` times ({@link DeliveryStore.resend}):
 * `<event id>:<target>` before any resend, `<event id>:<target>:resend-<n>` after the n-th, so the
 * target can tell a resend from the original (and from another resend) while retries of one
 * resend share one key.
 *
 * @since 0.1.0
 * @category models
 */
export const resendKey = (eventId: string, target: string, resends: number): string =>
  resends > 0 ? `${eventId}:${target}:resend-${resends}` : idempotencyKey(eventId, target)

/**
 * The answer to {@link DeliveryStore.resend}:
 * - `Resent`: the delivery is pending again, due now, under its new idempotency key;
 * - `UnknownEvent`: no event with this id;
 * - `NoDelivery`: the event has no delivery to this target (it was never routed there);
 * - `Open`: the delivery is still `pending` or `in_flight` (nothing changed: it will be sent anyway);
 * - `Dead`: the delivery is dead (nothing changed: replay it, with its key, instead).
 *
 * @since 0.1.0
 * @category models
 */
export type ResendResult =
  | {
    readonly _tag: "Resent"
    readonly id: string
    readonly target: string
    readonly idempotencyKey: string
    /** How many times it has been resent, this one included. */
    readonly resends: number
  }
  | { readonly _tag: "UnknownEvent" }
  | { readonly _tag: "NoDelivery" }
  | { readonly _tag: "Open"; readonly id: string; readonly status: Status }
  | { readonly _tag: "Dead"; readonly id: string }

/**
 * The answer to {@link DeliveryStore.enqueue}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Enqueued {
  readonly eventId: string
  /**
   * `false` when an event with this id and the same content was already stored (a duplicate):
   * nothing was written. (The same id with other content is a {@link ConflictError}.)
   */
  readonly created: boolean
  /** The event's deliveries (for a duplicate: those of the first enqueue, with their current status). */
  readonly deliveries: ReadonlyArray<{ readonly id: string; readonly target: string; readonly status: Status }>
}

/**
 * The dependencies of an event's deliveries (durable pipelines): target name → the targets it runs
 * after. A delivery with inputs is held (not claimable) until every input is delivered; then it is
 * due at once and its claim carries the inputs' stored answers. Every name must be one of the
 * enqueued targets, no target may list itself, and the relation must be acyclic (else `InvalidInput`).
 *
 * @since 0.1.0
 * @category models
 */
export type Dependencies = Readonly<Record<string, ReadonlyArray<string>>>

/**
 * What {@link DeliveryStore.enqueue} takes besides the event and its targets.
 *
 * @since 0.1.0
 * @category models
 */
export interface EnqueueOptions {
  /** Which targets run after which (durable pipelines). Default: none, every delivery is due at once. */
  readonly after?: Dependencies | undefined
  /**
   * Store every delivery's answer (for an aggregate computed from them, e.g. the server's
   * `?wait=all`), not only the answers of inputs. Each delivery then counts one more dependent.
   */
  readonly keepAnswers?: boolean | undefined
  /**
   * Later delivery: no delivery of the event is due before this instant (epoch ms). The deliveries
   * are stored at once, pending with this due time, so the schedule survives restarts. A time not
   * after now is due now. Must be a finite number (else `InvalidInput`); bounding it (a horizon) is
   * the caller's business.
   */
  readonly availableAt?: number | undefined
}

/**
 * The due time of an enqueue's deliveries: `now`, or `options.availableAt` when it is later; a
 * value that is not a finite number is `InvalidInput`.
 *
 * @internal
 */
export const dueAt = (options: EnqueueOptions | undefined, now: number): StoreError | number => {
  const at = options?.availableAt
  if (at === undefined) return now
  if (typeof at !== "number" || !Number.isFinite(at)) {
    return new StoreError({
      operation: "enqueue",
      reason: "InvalidInput",
      message: `enqueue: availableAt must be a finite epoch-millisecond time, got ${String(at)}`
    })
  }
  return at > now ? Math.ceil(at) : now
}

/**
 * What {@link DeliveryStore.claim} takes.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClaimOptions {
  /** Who claims (recorded on the row and in the attempt history). */
  readonly workerId: string
  /** At most this many deliveries in the batch. */
  readonly limit: number
  /** The lease: the claimed rows become claimable again this long after the claim unless finished or extended. */
  readonly leaseMs: number
  /** Only deliveries to these targets (default: all). */
  readonly targets?: ReadonlyArray<string> | undefined
}

/**
 * The fencing token of a claimed delivery: its id and the lease token of the claim.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claim {
  readonly id: string
  readonly lease: string
}

/**
 * A claimed delivery, with everything a worker needs to attempt it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claimed extends Claim {
  readonly eventId: string
  readonly target: string
  /** `<event id>:<target>`, see {@link idempotencyKey}. */
  readonly idempotencyKey: string
  readonly event: Event.Any
  /** Attempts made so far, for scheduling (reset by a replay). */
  readonly attempts: number
  /** When the first attempt (since the last replay) started, if one was recorded. */
  readonly firstAttemptAt: number | undefined
  readonly leaseExpiresAt: number
  readonly enqueuedAt: number
  /**
   * When the delivery was last replayed, if ever: its retry budget (`retry.maxAge`) counts from
   * then instead of from `enqueuedAt`, as its attempts count from the replay.
   */
  readonly replayedAt: number | undefined
  readonly workerId: string
  /** The targets this delivery runs after (empty for a plain delivery), in enqueue order. */
  readonly after: ReadonlyArray<string>
  /**
   * The stored answers of the inputs (target → the JSON text given to `finish` when each was
   * delivered; `undefined` when none was stored). Only set when `after` is not empty.
   */
  readonly inputs: Readonly<Record<string, string | undefined>>
  /**
   * How many consumers its answer has (the deliveries of the event that run after this one, plus one
   * when the event's answers are kept for an aggregate): when > 0, pass the answer to `finish`.
   */
  readonly dependents: number
}

/**
 * One try of a delivery, as the worker reports it to {@link DeliveryStore.finish}.
 *
 * @since 0.1.0
 * @category models
 */
export interface AttemptInput {
  readonly startedAt: number
  readonly durationMs: number
  /** `"success"`, or the error label (`TargetError.label`: `"http_503"`, `"timeout"`, …). */
  readonly outcome: string
  /** The HTTP status, when a response came back. */
  readonly status?: number | undefined
  /** The tag of the typed error (`"TransientError"`, …). */
  readonly errorTag?: string | undefined
  readonly message?: string | undefined
  /** What the target asked for (`Retry-After`), in milliseconds. */
  readonly retryAfterMs?: number | undefined
}

/**
 * One entry of a delivery's attempt history.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempt extends AttemptInput {
  /** 1 for the first attempt ever; never reset (a replay continues the count). */
  readonly number: number
  readonly lease: string
  readonly workerId: string | undefined
}

/**
 * What follows an attempt:
 * - `Delivered`: done;
 * - `Retry`: back to pending, due at `at` (computed by the caller, e.g. from `Retry.decide`);
 * - `Dead`: dead-lettered with a reason;
 * - `Compensated`: done, and undone (saga).
 *
 * @since 0.1.0
 * @category models
 */
export type Next = Data.TaggedEnum<{
  /**
   * `response`: the target's answer as JSON text, stored for the deliveries that run after this
   * one (ignored when there are none); delivering also makes every dependent whose inputs are now
   * all delivered due at once.
   */
  Delivered: { readonly response?: string | undefined }
  Retry: { readonly at: number }
  Dead: { readonly reason: string }
  Compensated: {}
}>

/**
 * Constructors and matchers for {@link Next}: `Next.Delivered()`, `Next.Retry({ at })`,
 * `Next.Dead({ reason })`, `Next.Compensated()`.
 *
 * @since 0.1.0
 * @category models
 */
export const Next: {
  readonly Delivered: (args?: { readonly response?: string | undefined }) => Next
  readonly Retry: (args: { readonly at: number }) => Next
  readonly Dead: (args: { readonly reason: string }) => Next
  readonly Compensated: () => Next
} = (() => {
  const base = Data.taggedEnum<Next>()
  return {
    Delivered: (args = {}) => base.Delivered(args),
    Retry: base.Retry,
    Dead: base.Dead,
    Compensated: () => base.Compensated()
  }
})()

/**
 * Which dead letters an operation applies to. Every field narrows; `from`/`to` bound the time
 * the delivery died (inclusive, epoch ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadLetterFilter {
  readonly target?: string | undefined
  /** The outcome label of the last attempt (`"http_400"`, `"timeout"`, …). */
  readonly errorLabel?: string | undefined
  readonly from?: number | undefined
  readonly to?: number | undefined
}

/**
 * A page request over dead letters (oldest delivery first).
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadLetterQuery extends DeadLetterFilter {
  readonly limit: number
  /** The `next` of the previous page. */
  readonly cursor?: string | undefined
}

/**
 * A dead delivery.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadLetter {
  readonly id: string
  readonly eventId: string
  readonly eventType: string
  readonly target: string
  readonly idempotencyKey: string
  readonly reason: string
  readonly lastError: string | undefined
  readonly lastErrorMessage: string | undefined
  readonly attempts: number
  readonly totalAttempts: number
  readonly deadAt: number
  readonly enqueuedAt: number
}

/**
 * One page of dead letters; `next` is set when more may follow.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadLetterPage {
  readonly items: ReadonlyArray<DeadLetter>
  readonly next: string | undefined
}

/**
 * A search over stored events (newest first: by enqueue time, then id, both descending). Every
 * field narrows; `since`/`until` bound the enqueue time (inclusive, epoch ms).
 *
 * @since 0.1.0
 * @category models
 */
export interface EventQuery {
  /** The event type (exact). */
  readonly type?: string | undefined
  /** Events with a delivery in this status (to `target`, when it is set too). */
  readonly status?: Status | undefined
  /** Events with a delivery to this target. */
  readonly target?: string | undefined
  readonly since?: number | undefined
  readonly until?: number | undefined
  readonly limit: number
  /** The `next` of the previous page: opaque. */
  readonly cursor?: string | undefined
}

/**
 * One event of an {@link EventPage}: its envelope's type and id, and each delivery's state.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventSummary {
  readonly id: string
  readonly type: string
  readonly enqueuedAt: number
  readonly deliveries: ReadonlyArray<{ readonly id: string; readonly target: string; readonly status: Status }>
}

/**
 * One page of {@link DeliveryStore.events}; `next` is set when more may follow.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventPage {
  readonly items: ReadonlyArray<EventSummary>
  readonly next: string | undefined
}

/**
 * The opaque cursor of an event page: the enqueue time and id of the page's last event.
 *
 * @internal
 */
export const eventCursor = {
  encode: (enqueuedAt: number, id: string): string =>
    Buffer.from(JSON.stringify([enqueuedAt, id]), "utf8").toString("base64url"),
  decode: (cursor: string): readonly [number, string] | undefined => {
    if (!/^[A-Za-z0-9_-]{1,600}$/.test(cursor)) return undefined
    try {
      const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
      return Array.isArray(parsed) && parsed.length === 2 && Number.isSafeInteger(parsed[0]) &&
          typeof parsed[1] === "string"
        ? [parsed[0] as number, parsed[1] as string]
        : undefined
    } catch {
      return undefined
    }
  }
}

/**
 * The state of one delivery, with its full attempt history (oldest first).
 *
 * @since 0.1.0
 * @category models
 */
export interface DeliveryStatus {
  readonly id: string
  readonly target: string
  readonly idempotencyKey: string
  readonly status: Status
  /** Attempts counted for scheduling (reset by a replay). */
  readonly attempts: number
  /** Every attempt ever made (equals `history.length`). */
  readonly totalAttempts: number
  /** When a `pending` delivery is due. */
  readonly nextAttemptAt: number | undefined
  /** When the lease of an `in_flight` delivery runs out. */
  readonly leaseExpiresAt: number | undefined
  readonly lastError: string | undefined
  readonly lastErrorMessage: string | undefined
  readonly deadReason: string | undefined
  /** When it was delivered, dead-lettered or compensated. */
  readonly finishedAt: number | undefined
  /** The targets it runs after (durable pipelines); empty for a plain delivery. */
  readonly after: ReadonlyArray<string>
  /** Inputs not delivered yet: while > 0 a `pending` delivery is held (not due). */
  readonly waiting: number
  /** The stored answer (JSON text) of a delivered delivery that has dependents or whose answers are kept. */
  readonly response: string | undefined
  readonly history: ReadonlyArray<Attempt>
}

/**
 * The answer to {@link DeliveryStore.status}.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventStatus {
  readonly event: Event.Any
  readonly enqueuedAt: number
  readonly deliveries: ReadonlyArray<DeliveryStatus>
}

/**
 * Delivery counts by status.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counts {
  readonly pending: number
  readonly inFlight: number
  readonly delivered: number
  readonly dead: number
  readonly compensated: number
}

/**
 * The answer to {@link DeliveryStore.stats}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats extends Counts {
  /** pending + in_flight. */
  readonly depth: number
  /** Age of the oldest pending or in-flight delivery (since it was enqueued); 0 when none. */
  readonly oldestPendingAgeMs: number
  readonly targets: Readonly<Record<string, Counts>>
}

/**
 * The answer to {@link DeliveryStore.gauges}: the queue's depth and dead letters, without the
 * finished deliveries' counts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Gauges {
  readonly pending: number
  readonly inFlight: number
  readonly dead: number
  /** pending + in_flight. */
  readonly depth: number
  /** Age of the oldest pending or in-flight delivery (since it was enqueued); 0 when none. */
  readonly oldestPendingAgeMs: number
  readonly targets: Readonly<
    Record<string, { readonly pending: number; readonly inFlight: number; readonly dead: number }>
  >
}

/**
 * The answer to {@link DeliveryStore.retention}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Removed {
  readonly deliveries: number
  readonly events: number
}

/**
 * Counters of this store instance (this process), for tests and metrics.
 *
 * @since 0.1.0
 * @category models
 */
export interface Diagnostics {
  /** Write transactions this instance committed (a group commit counts once). */
  readonly writeTransactions: number
  /** Write operations (enqueue, claim, finish, …) those transactions carried. */
  readonly writeOperations: number
  /** The most operations one transaction carried. */
  readonly largestBatch: number
  /**
   * SQLite `FULL` on the store's own connection: flushes of the WAL file made off the event loop
   * (each covers every commit written before it began; see docs/store.md).
   */
  readonly flushes?: number
}

/**
 * The durable outbox.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeliveryStore {
  /**
   * Writes the event and one pending delivery per target (due now) in one transaction. Idempotent on
   * `event.id`: a second enqueue of the same id writes nothing and answers the first with `created: false`
   * when its content (type, key, payload: `Event.fingerprint`) is the same, and fails with
   * {@link ConflictError} when it differs (an event stored before fingerprints counts as the same).
   * The fingerprint is stored with the event.
   * Inside an open `SqlClient` transaction on the store's own client (the `layerClient` variants), it
   * joins that transaction (transactional outbox). With `options.after`, the dependencies are
   * stored with the deliveries (durable pipelines): a delivery with inputs is held until they are all
   * delivered; a dead input holds its dependents until it is replayed and delivered.
   */
  readonly enqueue: (
    event: Event.Any,
    targets: ReadonlyArray<string>,
    options?: EnqueueOptions
  ) => Effect.Effect<Enqueued, StoreError | ConflictError>
  /**
   * Claims up to `limit` due deliveries — pending ones whose time has come, and in-flight ones whose
   * lease expired (a crashed worker's) — under a fresh lease token per delivery. The batch is shared
   * fairly: round-robin across targets, oldest due first within a target.
   */
  readonly claim: (options: ClaimOptions) => Effect.Effect<ReadonlyArray<Claimed>, StoreError>
  /**
   * Records the attempt and applies `next`, in one transaction, fenced by the claim's lease: `false`
   * (and nothing written) when the lease was lost. `Delivered` also stores its `response` (when the
   * delivery has dependents) and, in the same transaction, releases each dependent's wait on it.
   */
  readonly finish: (claim: Claim, attempt: AttemptInput, next: Next) => Effect.Effect<boolean, StoreError>
  /** Moves the lease expiry to now + `leaseMs`; fenced, `false` when the lease was lost. */
  readonly extendLease: (claim: Claim, leaseMs: number) => Effect.Effect<boolean, StoreError>
  /** Hands claimed deliveries back (pending, due now, no attempt counted); fenced. Answers how many were released. */
  readonly release: (claims: ReadonlyArray<Claim>) => Effect.Effect<number, StoreError>
  /** A page of dead letters, oldest delivery first. */
  readonly deadLetters: (query: DeadLetterQuery) => Effect.Effect<DeadLetterPage, StoreError>
  /**
   * Puts one dead delivery back to pending, due now, with its scheduling attempts reset; the history and
   * the idempotency key stay. `false` when there is no dead delivery with this id.
   */
  readonly replay: (id: string) => Effect.Effect<boolean, StoreError>
  /** {@link replay} for every dead letter matching the filter; answers how many. */
  readonly replayMany: (filter: DeadLetterFilter) => Effect.Effect<number, StoreError>
  /**
   * Sends a finished (`delivered` or `compensated`) delivery of an event to its target again: one
   * atomic step puts it back to pending, due now, with its scheduling attempts and its age budget
   * reset (as a replay does), and counts one more resend, which gives it a new idempotency key
   * ({@link resendKey}). The history and the delivery id stay; its dependents (pipelines) are not
   * run again. See {@link ResendResult} for what it answers otherwise (nothing is changed then).
   */
  readonly resend: (eventId: string, target: string) => Effect.Effect<ResendResult, StoreError>
  /**
   * Deletes every `pending` and `dead` delivery to `target`, with its history, the held dependents
   * of those that were pipeline inputs, and events left with no delivery; answers how many went.
   * In-flight deliveries stay (a worker of another process may hold them). For the deliveries of a
   * target no longer configured (an orphan) that will never be sent.
   */
  readonly purgeTarget: (target: string) => Effect.Effect<Removed, StoreError>
  /** Deletes one dead letter (by id) or every dead letter matching a filter, with their history; answers how many. */
  readonly purge: (selection: string | DeadLetterFilter) => Effect.Effect<number, StoreError>
  /**
   * A page of events matching the query, newest first (enqueue time, then id), each with its
   * deliveries' states. SQL stores read indexes only: the events' `(enqueued_at, id)` and
   * `(type, enqueued_at, id)` indexes (migration 0006), or, with `status` pending, in_flight or dead,
   * the partial index of those rows; `target` and the other statuses are checked per event on its
   * `(event_id, target)` index. A bad cursor or limit is `InvalidInput`.
   */
  readonly events: (query: EventQuery) => Effect.Effect<EventPage, StoreError>
  /** The event with each delivery's state and attempt history; none when the id is unknown. */
  readonly status: (eventId: string) => Effect.Effect<Option.Option<EventStatus>, StoreError>
  /**
   * Queue depth, oldest pending age, counts by status overall and per target. Counting the delivered
   * rows reads all of them (SQL stores): for what is polled (health checks, gauges, back-pressure)
   * use {@link gauges}.
   */
  readonly stats: Effect.Effect<Stats, StoreError>
  /**
   * Pending, in-flight and dead counts (overall and per target), depth and oldest pending age: what
   * gauges, readiness and back-pressure poll. SQL stores read only those rows (the status index), so
   * its cost does not grow with the delivered history as {@link stats}'s does.
   */
  readonly gauges: Effect.Effect<Gauges, StoreError>
  /**
   * Deletes delivered and compensated deliveries that finished more than `olderThan` ago (with their
   * history), and events left with no delivery. Never touches pending, in-flight or dead rows.
   */
  readonly retention: (olderThan: Duration.DurationInput) => Effect.Effect<Removed, StoreError>
  /**
   * Emits when new work may be due (enqueue, replay, release). A hint, never a guarantee: workers
   * should also poll. PostgreSQL: `LISTEN/NOTIFY` across processes; SQLite and memory: this process.
   */
  readonly wakeups: Stream.Stream<void>
  /** This instance's counters. */
  readonly diagnostics: Effect.Effect<Diagnostics>
  /**
   * The earliest due time (epoch ms) later than now of a `pending` delivery to `target` that waits
   * for no input: a scheduled delivery (`EnqueueOptions.availableAt`) or a retry; none when there is
   * none. Workers ask it when a claim comes back short, to wake exactly then. Optional: a store
   * without it leaves such deliveries to the poll interval.
   */
  readonly nextDue?: (target: string) => Effect.Effect<Option.Option<number>, StoreError>
}

/**
 * The service tag.
 *
 * @since 0.1.0
 * @category tags
 */
export const DeliveryStore: Context.Tag<DeliveryStore, DeliveryStore> = Context.GenericTag<DeliveryStore>(
  "fanout/DeliveryStore"
)
