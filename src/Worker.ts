/**
 * Durable delivery workers: a worker claims due deliveries from the {@link Store.DeliveryStore}
 * under a lease, sends each through the very same target and policy code as direct mode
 * (`Target.Runtime.attempt`: breaker, bulkhead, rate limit, per-attempt timeout), records every
 * attempt with `store.finish`, and decides what follows with `Delivery.decide` (delivered, retry at a
 * time, or dead-letter).
 *
 * - **Isolation.** Claims are made per target, only for targets with free capacity. Each target holds
 *   at most its share of the worker — `concurrency` split evenly across the targets, and no more than
 *   its bulkhead permits — so a target that hangs ties up its own share only. Targets whose breaker is
 *   open, or whose rate limiter has no token yet, are not claimed for until then. A target that hangs
 *   or fails therefore never slows another target's deliveries.
 * - **Wake-ups.** Idle targets wake on `store.wakeups` (PostgreSQL `LISTEN/NOTIFY`, in-process for
 *   SQLite), on retries this worker scheduled itself, and on a poll interval as a fallback.
 * - **Leases.** Longer than the attempt timeout by default, and extended while an attempt runs. A
 *   worker that loses a lease (it was paused past it and another worker took the delivery over) has
 *   its late result rejected by the store's fencing: the newer outcome stands.
 * - **Failures of the store.** Claim, finish and extend errors are logged and retried with backoff;
 *   the worker never exits because the database went away. A finish is retried until it is written
 *   (at worst the lease expires first and the delivery is sent again: at-least-once).
 * - **Graceful stop.** On scope close the worker stops claiming, lets in-flight attempts finish for
 *   up to `shutdownGrace`, then interrupts the rest and releases their leases.
 *
 * What is per process: a target's breaker, bulkhead and rate limiter live in its runtime (its
 * `Layer`), shared by every worker fiber and every direct `send` of this process, not across
 * processes. What is shared across processes: the store (queue, leases, attempt history).
 *
 * @since 0.1.0
 */
import { hostname } from "node:os"
import { Headers, HttpTraceContext } from "@effect/platform"
import type { MetricLabel, Scope, Tracer } from "effect"
import { Cause, Clock, Context, Data, Duration, Effect, Fiber, FiberRef, FiberSet, Layer, Metric, Queue, Random, Schedule, Stream } from "effect"
import * as Delivery from "./Delivery.js"
import type * as Event from "./Event.js"
import * as Metrics from "./Metrics.js"
import * as Pipeline from "./Pipeline.js"
import type * as Router from "./Router.js"
import * as Store from "./Store.js"
import type * as Target from "./Target.js"
import * as TargetError from "./TargetError.js"
import { onIoScheduler } from "./internal/scheduler.js"
import { spanTrace } from "./internal/spanTrace.js"

/**
 * What the worker serves: the targets themselves, or a router (every target it names).
 *
 * @since 0.1.0
 * @category models
 */
export type Source<T extends Target.Any> =
  | { readonly targets: ReadonlyArray<T>; readonly router?: undefined }
  | { readonly router: Router.Router<any, T>; readonly targets?: undefined }

/**
 * @since 0.1.0
 * @category models
 */
export interface Tuning {
  /** Recorded on every claim and attempt. Default `<hostname>:<pid>:<random>`. */
  readonly workerId?: string
  /**
   * Deliveries this worker holds (claimed or in flight) at once, across targets. Split evenly: each
   * target gets `concurrency / targets` (at most its bulkhead permits). Default 100.
   */
  readonly concurrency?: number
  /** Most deliveries one claim takes. Default 50. */
  readonly batchSize?: number
  /**
   * Serve only these targets (by name) of the ones given. Processes that split the targets between
   * them (`fanout worker --targets a`, `fanout serve --worker-targets b,c`) isolate each group's CPU:
   * one process's hung or slow targets then cost the others nothing but their shared database.
   * Every name must be one of the targets given. Default: all of them.
   */
  readonly only?: ReadonlyArray<string>
  /**
   * The lease of a claim, in milliseconds, extended while an attempt runs (every third of it). Keep it
   * longer than every target's attempt timeout (a warning is logged otherwise). Default: the larger of
   * 30 seconds and twice the longest attempt timeout.
   */
  readonly leaseMs?: number
  /** Idle targets look for due work at least this often (wake-ups usually come sooner). Default 1 second. */
  readonly pollInterval?: Duration.DurationInput
  /** On scope close, how long in-flight attempts may run before they are interrupted. Default 10 seconds. */
  readonly shutdownGrace?: Duration.DurationInput
  /** How often the queue gauges (depth, oldest pending age, dead letters) are sampled; `false` turns it off. Default 10 seconds. */
  readonly metricsInterval?: Duration.DurationInput | false
  /**
   * Durable pipelines by event type (the same ones given to `Outbox.make`): a step's delivery sends
   * what the pipeline builds from the event and its inputs' stored answers. Their targets are served
   * too. Without a pipeline, a delivery with inputs (a configured `after`) sends `{ event, inputs }`.
   */
  readonly pipelines?: ReadonlyArray<Pipeline.Any>
  /**
   * The largest answer stored for the deliveries that run after it, in bytes (JSON text). A larger
   * answer is delivered, but its dependents are dead-lettered with a clear reason. Default 64 KiB.
   */
  readonly maxStoredResponseBytes?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export type Options<T extends Target.Any> = Source<T> & Tuning

/**
 * The worker's options ask for something impossible: a count that is not an integer >= 1, no
 * targets to serve, or an `only` that is empty or names targets the worker was not given.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerOptionsError extends Data.TaggedError("WorkerOptionsError")<{ readonly message: string }> {}

/**
 * A target's view inside the worker.
 *
 * @since 0.1.0
 * @category models
 */
export interface TargetState {
  /** Deliveries held: claimed (lease taken) and not yet finished or released. */
  readonly claimed: number
  /** Of those, attempts running now. */
  readonly inFlight: number
  /** The most this worker holds for the target (its share of `concurrency`, at most its bulkhead permits). */
  readonly limit: number
  /** Its last claim found less due work than asked for: waiting for a wake-up. */
  readonly idle: boolean
}

/**
 * What a worker is doing, for metrics, health checks and tests.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  readonly workerId: string
  /** False once the worker is stopping (no new claims). */
  readonly running: boolean
  readonly claimed: number
  readonly inFlight: number
  readonly targets: Readonly<Record<string, TargetState>>
  /** Claims made (store round trips), and deliveries they returned. */
  readonly claims: number
  readonly claimedTotal: number
  /** Finished deliveries by what followed. */
  readonly delivered: number
  readonly retried: number
  readonly dead: number
  /** Results the store rejected because the lease had been lost (another worker owns the delivery now). */
  readonly lostLeases: number
  /** Leases extended during long attempts. */
  readonly extended: number
  /** Deliveries handed back on shutdown. */
  readonly released: number
  /** Store operations that failed (each is retried). */
  readonly storeErrors: number
  readonly lastError: { readonly operation: string; readonly message: string; readonly at: number } | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly workerId: string
  readonly leaseMs: number
  readonly state: Effect.Effect<State>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Worker extends Context.Tag("fanout/Worker")<Worker, Service>() {}

interface Lane {
  readonly name: string
  readonly runtime: Target.Runtime<unknown>
  readonly limit: number
  readonly timeoutMs: number
  held: number
  inFlight: number
  idle: boolean
  /** Bumped by every wake-up: a claim that started before one must not mark the lane idle. */
  generation: number
  claiming: boolean
  /** Earliest retry this worker scheduled for the lane and a timer is set for. */
  timerAt: number | undefined
  timer: Fiber.RuntimeFiber<void> | undefined
  /** Min-heap of times (epoch ms, 10 ms buckets) at which work this worker scheduled falls due. */
  readonly wakeTimes: Array<number>
  /** Not before this time (breaker open, no rate-limit token). */
  blockedUntil: number
  /** Counts one attempt (or delivery) of the target by outcome and role, with the fiber's metric labels (plain calls). */
  readonly attemptCounter: (outcome: string, labels: ReadonlyArray<MetricLabel.MetricLabel>, role: Target.Role) => void
  readonly deliveryCounter: (outcome: string, labels: ReadonlyArray<MetricLabel.MetricLabel>, role: Target.Role) => void
  /** Whether this target only mirrors events of a type (a shadow in the router), by event type. */
  readonly roles: Map<string, Target.Role>
  /** Increments the retries counter of the target. */
  readonly retriesMetric: Metrics.Labelled<number>
}

interface Entry {
  readonly claim: Store.Claim
  readonly lane: Lane
  leaseExpiresAt: number
  phase: "attempt" | "finish" | "done"
  /** The store answered finish (written or fenced off). */
  settled: boolean
  /** The store told us the lease is gone. */
  lost: boolean
}

/** The span the event was enqueued under (its W3C `traceparent` header): its attempts join that trace. */
const enqueuedUnder = (event: Event.Any): { readonly parent?: Tracer.ExternalSpan } => {
  const parent = HttpTraceContext.w3c(Headers.fromInput(event.headers))
  return parent._tag === "Some" ? { parent: parent.value } : {}
}

const positiveInt = (name: string, value: number): Effect.Effect<number, WorkerOptionsError> =>
  Number.isSafeInteger(value) && value >= 1
    ? Effect.succeed(value)
    : Effect.fail(new WorkerOptionsError({ message: `Worker: ${name} must be an integer >= 1, got ${value}` }))

/**
 * A counter by outcome with its labels fixed once (`Metrics.labelled`: no `MetricKey` built, hashed
 * and looked up per update, as `Metric.tagged` would); the caller passes the fiber's metric labels.
 */
const counterBy = (metric: Metric.Metric.Counter<number>, target: string) => {
  const byTarget = Metrics.labelled(metric, "target", target)
  const byRole = { primary: byTarget.tagged("role", "primary"), shadow: byTarget.tagged("role", "shadow") }
  const counters = { primary: new Map<string, Metrics.Labelled<number>>(), shadow: new Map<string, Metrics.Labelled<number>>() }
  return (outcome: string, labels: ReadonlyArray<MetricLabel.MetricLabel>, role: Target.Role): void => {
    let counter = counters[role].get(outcome)
    if (counter === undefined) {
      counter = byRole[role].tagged("outcome", outcome)
      counters[role].set(outcome, counter)
    }
    counter.unsafeUpdate(1, labels)
  }
}

const heapPush = (heap: Array<number>, value: number): void => {
  heap.push(value)
  let i = heap.length - 1
  while (i > 0) {
    const parent = (i - 1) >> 1
    if (heap[parent]! <= heap[i]!) break
    ;[heap[parent], heap[i]] = [heap[i]!, heap[parent]!]
    i = parent
  }
}

const heapPop = (heap: Array<number>): number | undefined => {
  const top = heap[0]
  const last = heap.pop()
  if (heap.length > 0 && last !== undefined) {
    heap[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < heap.length && heap[l]! < heap[m]!) m = l
      if (r < heap.length && heap[r]! < heap[m]!) m = r
      if (m === i) break
      ;[heap[m], heap[i]] = [heap[i]!, heap[m]!]
      i = m
    }
  }
  return top
}

const deadReason = (reason: "Permanent" | "MaxAttempts" | "MaxElapsed"): string =>
  reason === "Permanent" ? "permanent" : reason === "MaxAttempts" ? "max_attempts" : "max_age"

const statusOf = (error: TargetError.DeliveryError): number | undefined =>
  error._tag === "TransientError" || error._tag === "PermanentError" ? error.status : undefined

/**
 * Retries of a store operation: 50 ms doubling, at most 5 s apart (`union` takes the shorter
 * delay), jittered; forever (a finish is retried until it is written or its lease runs out).
 */
const storeRetries = Schedule.exponential("50 millis", 2).pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered
)

/** Retry backoff for store operations: 50 ms doubling to 5 s, with jitter. */
const storeBackoff = (failures: number): Effect.Effect<void> =>
  Effect.flatMap(Random.next, (r) =>
    Effect.sleep(Duration.millis(Math.round(Math.min(5_000, 50 * 2 ** Math.min(failures, 10)) * (0.5 + r / 2)))))

/**
 * A worker over the targets (or router) given, until the scope closes. Needs the store and every
 * target's runtime (their layers), so the worker shares breakers, bulkheads and rate limiters with
 * everything else of this process that uses the same targets.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <T extends Target.Any>(
  options: Options<T>
): Effect.Effect<Service, WorkerOptionsError, Store.DeliveryStore | Target.Requirements<T> | Scope.Scope> =>
  Effect.gen(function*() {
    const store = yield* Store.DeliveryStore
    const pipelines = new Map<string, Pipeline.Any>()
    for (const pipeline of options.pipelines ?? []) {
      if (pipeline.graph.event !== undefined) pipelines.set(pipeline.graph.event, pipeline)
    }
    const maxStored = yield* positiveInt("maxStoredResponseBytes", options.maxStoredResponseBytes ?? 64 * 1024)
    const declared: ReadonlyArray<Target.Any> = [
      ...(options.router !== undefined ? options.router.targets : options.targets ?? []),
      ...(options.pipelines ?? []).flatMap((pipeline) => Pipeline.targets(pipeline))
    ]
    if (declared.length === 0) return yield* new WorkerOptionsError({ message: "Worker: no targets to serve" })

    const concurrency = yield* positiveInt("concurrency", options.concurrency ?? 100)
    const batchSize = yield* positiveInt("batchSize", options.batchSize ?? 50)
    const pollInterval = Duration.decode(options.pollInterval ?? "1 second")
    const shutdownGrace = Duration.decode(options.shutdownGrace ?? "10 seconds")
    const workerId = options.workerId ??
      `${hostname()}:${process.pid}:${globalThis.crypto.randomUUID().slice(0, 8)}`

    const all = [...new Map(declared.map((t) => [t.name, t] as const)).values()]
    if (options.only !== undefined) {
      const unknown = options.only.filter((name) => !all.some((t) => t.name === name))
      if (unknown.length > 0) {
        return yield* new WorkerOptionsError({
          message: `Worker: only names unknown targets: ${unknown.join(", ")} (known: ${all.map((t) => t.name).join(", ")})`
        })
      }
      if (options.only.length === 0) return yield* new WorkerOptionsError({ message: "Worker: only is empty" })
    }
    const unique = options.only === undefined ? all : all.filter((t) => options.only!.includes(t.name))
    // Each target's share of the worker: an even split of `concurrency`, at most its bulkhead permits.
    // Strict (no borrowing): a target that hangs holds at most its share, never another target's.
    const share = Math.max(1, Math.floor(concurrency / unique.length))
    const lanes: Array<Lane> = []
    for (const target of unique) {
      const runtime: Target.Runtime<unknown> = yield* target.tag
      const lane: Lane = {
        name: target.name,
        runtime,
        limit: Math.min(runtime.bulkhead.permits, share),
        timeoutMs: Duration.toMillis(runtime.policy.timeout),
        held: 0,
        inFlight: 0,
        idle: false,
        generation: 0,
        claiming: false,
        timerAt: undefined,
        timer: undefined,
        wakeTimes: [],
        blockedUntil: 0,
        attemptCounter: counterBy(Metrics.attempts, target.name),
        deliveryCounter: counterBy(Metrics.deliveries, target.name),
        roles: new Map(),
        retriesMetric: Metrics.labelled(Metrics.retries, "target", target.name)
      }
      lanes.push(lane)
    }
    const longestTimeout = Math.max(...lanes.map((lane) => lane.timeoutMs))
    const leaseMs = yield* positiveInt("leaseMs", options.leaseMs ?? Math.max(30_000, 2 * longestTimeout))
    if (leaseMs <= longestTimeout) {
      yield* Effect.logWarning(
        `worker: leaseMs (${leaseMs}) is not longer than the longest attempt timeout (${longestTimeout} ms): ` +
          "every attempt relies on lease extension, and a paused worker loses its deliveries sooner"
      )
    }
    /** Below this a lane that already holds work waits for more free slots before it claims (fewer, larger claims). */
    const minClaim = Math.max(1, Math.ceil(batchSize / 4))

    let running = true
    let held = 0
    let rotation = 0
    const entries = new Map<string, Entry>()
    const toRelease: Array<Store.Claim> = []
    const counts = {
      claims: 0,
      claimedTotal: 0,
      delivered: 0,
      retried: 0,
      dead: 0,
      lostLeases: 0,
      extended: 0,
      released: 0,
      storeErrors: 0
    }
    let lastError: State["lastError"] = undefined

    const kicks = yield* Queue.sliding<void>(1)
    const kick = Queue.offer(kicks, undefined)
    const control = yield* FiberSet.make<void, never>()
    const deliveries = yield* FiberSet.make<void, never>()

    const storeFailed = (operation: string, error: Store.StoreError, annotations: Record<string, unknown> = {}) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        counts.storeErrors++
        lastError = { operation, message: error.message, at }
        return Effect.logWarning(`worker: store ${operation} failed (${error.reason}), will retry`).pipe(
          Effect.annotateLogs({ workerId, operation, reason: error.reason, error: error.message, ...annotations })
        )
      })

    const wake = (lane: Lane) => {
      lane.idle = false
      lane.generation++
    }
    const wakeAll = Effect.zipRight(Effect.sync(() => lanes.forEach(wake)), kick)

    /**
     * Wakes the lane at `at` (a retry this worker scheduled, a breaker that reopens, a rate-limit
     * token). Times wait in a min-heap per lane; one timer runs for the earliest.
     */
    const wakeAt = (lane: Lane, at: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!running) return Effect.void
        heapPush(lane.wakeTimes, Math.ceil(at / 10) * 10)
        return armTimer(lane)
      })

    const armTimer = (lane: Lane): Effect.Effect<void> =>
      Effect.gen(function*() {
        const earliest = lane.wakeTimes[0]
        if (earliest === undefined || (lane.timerAt !== undefined && lane.timerAt <= earliest)) return
        if (lane.timer !== undefined) yield* Fiber.interruptFork(lane.timer)
        lane.timerAt = earliest
        const now = yield* Clock.currentTimeMillis
        lane.timer = yield* FiberSet.run(
          control,
          Effect.sleep(Duration.millis(Math.max(0, earliest - now) + 1)).pipe(
            Effect.zipRight(Clock.currentTimeMillis),
            Effect.flatMap((now) => {
              lane.timerAt = undefined
              lane.timer = undefined
              while (lane.wakeTimes.length > 0 && lane.wakeTimes[0]! <= now + 1) heapPop(lane.wakeTimes)
              wake(lane)
              return Effect.zipRight(kick, running ? armTimer(lane) : Effect.void)
            })
          )
        )
      })

    // ---- one delivery: attempt, decide, finish ----------------------------------------------------

    /** Writes the attempt, retrying store failures until it is written or fenced off; "abandoned" when the store refuses it. */
    const finishDurably = (
      entry: Entry,
      attempt: Store.AttemptInput,
      next: Store.Next,
      claimed: Store.Claimed
    ): Effect.Effect<"written" | "fenced" | "abandoned"> =>
      // The first try on its own (no generator): it nearly always succeeds.
      Effect.matchEffect(store.finish(entry.claim, attempt, next), {
        onSuccess: (written) => Effect.succeed(written ? "written" as const : "fenced" as const),
        onFailure: (error) => Effect.annotateLogs(finishFailed(entry, attempt, next, error), ofDelivery(claimed))
      })

    const finishFailed = (
      entry: Entry,
      attempt: Store.AttemptInput,
      next: Store.Next,
      firstError: Store.StoreError
    ): Effect.Effect<"written" | "fenced" | "abandoned"> =>
      {
        const annotations = { deliveryId: entry.claim.id, target: entry.lane.name }
        // The store refuses the record (or is closed): the lease expires and the delivery is sent again.
        const abandon = (error: Store.StoreError) =>
          Effect.as(
            Effect.logError("worker: the attempt could not be recorded; the delivery will be retried after its lease")
              .pipe(Effect.annotateLogs({ workerId, deliveryId: entry.claim.id, reason: error.reason })),
            "abandoned" as const
          )
        // The first retry waits the schedule's first delay too (`retry` would run it at once).
        const again = Effect.zipRight(
          Effect.sleep(Duration.millis(50)),
          // Asked again each time (a store may decide at the call, not when the effect runs).
          Effect.suspend(() => store.finish(entry.claim, attempt, next)).pipe(
            Effect.tapError((error) => storeFailed("finish", error, annotations)),
            Effect.retry({ schedule: storeRetries, while: Store.isRetryable })
          )
        ).pipe(Effect.matchEffect({
          onSuccess: (written) => Effect.succeed(written ? "written" as const : "fenced" as const),
          onFailure: abandon
        }))
        return Effect.zipRight(
          storeFailed("finish", firstError, annotations),
          Store.isRetryable(firstError) ? again : abandon(firstError)
        )
      }

    /**
     * What a delivery sends: the stored event, or — for a step of a durable pipeline, or a delivery
     * with inputs — the event built from it and its inputs' stored answers.
     */
    const eventOf = (claimed: Store.Claimed): Effect.Effect<Event.Any, TargetError.PermanentError> => {
      const pipeline = pipelines.get(claimed.event.type)
      if (pipeline !== undefined && (pipeline.graph.enrich.length > 0 || claimed.after.length > 0)) {
        return Pipeline.durableEvent(pipeline, claimed.target, claimed.event, claimed.inputs)
      }
      if (pipeline !== undefined || claimed.after.length === 0) return Effect.succeed(claimed.event)
      return Pipeline.defaultDependentEvent(claimed.target, claimed.event, claimed.inputs)
    }

    /** The answer stored for the dependents: JSON text, or a marker when over the bound. */
    const storedAnswer = (body: unknown): string | undefined => {
      if (body === undefined) return undefined
      const text = JSON.stringify(body)
      if (text === undefined) return undefined
      const bytes = Buffer.byteLength(text)
      return bytes > maxStored ? Pipeline.tooLargeMarker(bytes) : text
    }

    const attemptTrace = spanTrace()
    /**
     * Every log line of a delivery names its event, target and attempt. The annotations go on each
     * log call of the delivery (and on the pipeline code that builds its event), not around the
     * whole delivery: a fiber's log annotations are diffed and patched at every fork and join
     * below it (timeouts, the HTTP client), which cost about 0.05 ms per delivery.
     */
    const ofDelivery = (claimed: Store.Claimed) => ({
      eventId: claimed.eventId,
      target: claimed.target,
      attempt: claimed.attempts + 1
    })

    /**
     * One delivery: the attempt, then what follows it (`settle`). One fiber, one finalizer: the
     * clock, the tracer switch and the metric labels are read from the fiber once, the counters
     * are plain calls, and the lane's bookkeeping runs in the single uninterruptible exit below
     * (DESIGN §8).
     */
    const deliver = (lane: Lane, claimed: Store.Claimed, entry: Entry): Effect.Effect<void> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.withFiberRuntime<void>((fiber) => {
          const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
          const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
          const number = claimed.attempts + 1
          const startedAt = clock.unsafeCurrentTimeMillis()
          lane.inFlight++
          let counted = true
          const uncount = () => {
            if (counted) {
              counted = false
              lane.inFlight--
            }
          }
          // The stored delivery's idempotency key: `<event id>:<target>`, or its resend's (Store.resendKey).
          const send = claimed.after.length === 0 && pipelines.size === 0
            ? lane.runtime.attempt(claimed.event, number, claimed.idempotencyKey)
            : Effect.flatMap(
              Effect.annotateLogs(eventOf(claimed), ofDelivery(claimed)),
              (event) => lane.runtime.attempt(event, number, claimed.idempotencyKey)
            )
          // No span at all when tracing is off (see Delivery).
          const traced = fiber.getFiberRef(FiberRef.currentTracerEnabled)
            ? Effect.withSpan(send, "fanout.attempt", {
              captureStackTrace: attemptTrace,
              attributes: {
                "fanout.target": lane.name,
                "fanout.attempt": number,
                "fanout.delivery.id": claimed.id,
                "fanout.event.id": claimed.eventId,
                "fanout.idempotency_key": claimed.idempotencyKey,
                "fanout.worker.id": workerId
              },
              ...enqueuedUnder(claimed.event)
            })
            : send
          const attempted = Effect.matchEffect(traced, {
            onSuccess: (answer) => {
              uncount()
              return settle(lane, claimed, entry, labels, startedAt, clock.unsafeCurrentTimeMillis(), answer, undefined, 0)
            },
            onFailure: (error) => {
              uncount()
              return Effect.flatMap(Random.next, (random) =>
                settle(lane, claimed, entry, labels, startedAt, clock.unsafeCurrentTimeMillis(), undefined, error, random))
            }
          })
          const done = () => {
            uncount()
            entry.phase = "done"
            entries.delete(claimed.id)
            if (!entry.settled && !entry.lost && !running) toRelease.push(entry.claim)
            lane.held--
            held--
            return kick
          }
          return Effect.matchCauseEffect(restore(attempted), {
            onSuccess: done,
            onFailure: (cause) =>
              Cause.isInterruptedOnly(cause)
                ? Effect.zipRight(done(), Effect.failCause(cause))
                : Effect.zipRight(
                  Effect.logError("worker: delivery failed unexpectedly", cause).pipe(
                    Effect.annotateLogs({ workerId, deliveryId: claimed.id, ...ofDelivery(claimed) })
                  ),
                  done()
                )
          })
        })
      )

    /** A shadow of the router for events of this type, or one of their targets (cached per type). */
    const roleOf = (lane: Lane, type: string): Target.Role => {
      if (options.router === undefined) return "primary"
      let role = lane.roles.get(type)
      if (role === undefined) {
        role = options.router.isShadowOf(type, lane.name) ? "shadow" : "primary"
        if (lane.roles.size >= 1_000) lane.roles.clear()
        lane.roles.set(type, role)
      }
      return role
    }

    /** What follows an attempt: the record and what is next (delivered, retry at a time, dead), written durably. */
    const settle = (
      lane: Lane,
      claimed: Store.Claimed,
      entry: Entry,
      labels: ReadonlyArray<MetricLabel.MetricLabel>,
      startedAt: number,
      now: number,
      answer: Target.Answer<unknown> | undefined,
      error: TargetError.DeliveryError | undefined,
      random: number
    ): Effect.Effect<void> => {
      entry.phase = "finish"
      const role = roleOf(lane, claimed.event.type)
      const durationMs = now - startedAt
      let record: Store.AttemptInput
      let next: Store.Next
      if (error === undefined) {
        record = { startedAt, durationMs, outcome: "success", status: answer?.status }
        next = claimed.dependents > 0
          ? Store.Next.Delivered({ response: storedAnswer(answer?.body) })
          : Store.Next.Delivered()
        lane.attemptCounter("success", labels, role)
      } else {
        const label = TargetError.label(error)
        const retryAfterMs = TargetError.retryAfter(error)
        record = {
          startedAt,
          durationMs,
          outcome: label,
          status: statusOf(error),
          errorTag: error._tag,
          message: error.message,
          retryAfterMs
        }
        lane.attemptCounter(label, labels, role)
        const decision = Delivery.decide(lane.runtime.policy, {
          attempts: claimed.attempts + 1,
          // The budget counts from the last replay (which also reset the attempts), else from the enqueue.
          elapsed: now - (claimed.replayedAt ?? claimed.enqueuedAt),
          now,
          error,
          random,
          budget: Duration.toMillis(lane.runtime.policy.retry.maxAge)
        })
        next = decision._tag === "RetryAt"
          ? Store.Next.Retry({ at: decision.at })
          : Store.Next.Dead({ reason: deadReason(decision.reason) })
      }
      return Effect.flatMap(finishDurably(entry, record, next, claimed), (written): Effect.Effect<void> => {
        entry.settled = true
        if (written === "abandoned") return Effect.void
        if (written === "fenced") {
          entry.lost = true
          counts.lostLeases++
          return Effect.logWarning("worker: lease lost before the attempt was recorded; its result is discarded").pipe(
            Effect.annotateLogs({ workerId, deliveryId: claimed.id, ...ofDelivery(claimed) })
          )
        }
        if (next._tag === "Delivered") {
          counts.delivered++
          lane.deliveryCounter("delivered", labels, role)
          return Effect.void
        }
        if (next._tag === "Retry") {
          counts.retried++
          lane.retriesMetric.unsafeUpdate(1, labels)
          return wakeAt(lane, next.at)
        }
        if (next._tag !== "Dead") return Effect.void
        counts.dead++
        lane.deliveryCounter("dead", labels, role)
        return Effect.logInfo(`worker: delivery dead-lettered (${next.reason})`).pipe(
          Effect.annotateLogs({ workerId, deliveryId: claimed.id, ...ofDelivery(claimed), error: record.outcome })
        )
      })
    }

    // ---- claiming ----------------------------------------------------------------------------------

    /** Refreshes a lane's gate from its breaker and rate limiter; schedules a wake-up when it opens. */
    const gate = (lane: Lane, now: number): Effect.Effect<number> =>
      Effect.gen(function*() {
        const breaker = yield* lane.runtime.breaker.state
        if (breaker._tag === "Open" && breaker.until > now) {
          lane.blockedUntil = breaker.until
          yield* wakeAt(lane, breaker.until)
          return 0
        }
        const free = yield* lane.runtime.limiter.nextFreeAt
        if (free > now) {
          lane.blockedUntil = free
          yield* wakeAt(lane, free)
          return 0
        }
        lane.blockedUntil = 0
        let want = Math.min(lane.limit - lane.held, batchSize)
        if (breaker._tag === "HalfOpen") want = Math.min(want, Math.max(0, 1 - lane.inFlight))
        const rate = lane.runtime.policy.rateLimit
        if (rate !== undefined) want = Math.min(want, rate.limit)
        if (lane.held > 0 && want < Math.min(minClaim, lane.limit)) return 0
        return Math.max(0, want)
      })

    const plan = (now: number): Effect.Effect<Array<readonly [Lane, number]>> =>
      Effect.gen(function*() {
        const out: Array<readonly [Lane, number]> = []
        const start = rotation++ % lanes.length
        for (let k = 0; k < lanes.length; k++) {
          const lane = lanes[(start + k) % lanes.length]!
          if (lane.idle || lane.claiming || lane.held >= lane.limit || lane.blockedUntil > now) continue
          const want = yield* gate(lane, now)
          if (want > 0) out.push([lane, want])
        }
        return out
      })

    /**
     * Later delivery (scheduled events, `EnqueueOptions.availableAt`): after a short claim, asks the
     * store for the lane's earliest future due time (`store.nextDue`) and wakes the lane exactly then
     * with `wakeAt`, instead of at the next poll. At most one question per lane at a time (a short
     * claim meanwhile asks again once it is answered); an answer no earlier than a wake-up already
     * set adds nothing. A store failure is ignored: the poll interval still covers it.
     */
    const asking = new Set<Lane>()
    const askAgain = new Set<Lane>()
    const askNextDue = (lane: Lane): Effect.Effect<void> => {
      const nextDue = store.nextDue
      if (nextDue === undefined || !running) return Effect.void
      if (asking.has(lane)) {
        askAgain.add(lane)
        return Effect.void
      }
      asking.add(lane)
      const ask: Effect.Effect<void> = nextDue(lane.name).pipe(
        Effect.flatMap((at) => {
          if (at._tag === "None") return Effect.void
          const set = lane.wakeTimes[0]
          return set !== undefined && set <= Math.ceil(at.value / 10) * 10 ? Effect.void : wakeAt(lane, at.value)
        }),
        Effect.catchAll(() => Effect.void),
        Effect.zipRight(Effect.suspend(() => {
          if (!askAgain.delete(lane)) return Effect.void
          return ask
        }))
      )
      return Effect.asVoid(FiberSet.run(control, Effect.ensuring(ask, Effect.sync(() => asking.delete(lane)))))
    }

    const claimFor = (lane: Lane, n: number): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        const generation = lane.generation
        lane.claiming = true
        lane.held += n
        held += n
        const result = yield* store.claim({ workerId, limit: n, leaseMs, targets: [lane.name] }).pipe(
          Effect.either,
          Effect.ensuring(Effect.sync(() => {
            lane.claiming = false
          }))
        )
        if (result._tag === "Left") {
          lane.held -= n
          held -= n
          yield* storeFailed("claim", result.left, { target: lane.name })
          return false
        }
        const claimed = result.right
        counts.claims++
        counts.claimedTotal += claimed.length
        const unused = n - claimed.length
        lane.held -= unused
        held -= unused
        if (claimed.length < n && lane.generation === generation) lane.idle = true
        // Later delivery: a short claim asks the store when the lane's next delivery falls due.
        if (claimed.length < n) yield* askNextDue(lane)
        for (const c of claimed) {
          const entry: Entry = {
            claim: { id: c.id, lease: c.lease },
            lane,
            leaseExpiresAt: c.leaseExpiresAt,
            phase: "attempt",
            settled: false,
            lost: false
          }
          entries.set(c.id, entry)
          yield* FiberSet.run(deliveries, deliver(lane, c, entry))
        }
        return true
      })

    const dispatcher = Effect.gen(function*() {
      let failures = 0
      while (running) {
        const now = yield* Clock.currentTimeMillis
        const rounds = yield* plan(now)
        if (rounds.length === 0) {
          yield* Queue.take(kicks)
          continue
        }
        const ok = yield* Effect.forEach(rounds, ([lane, n]) => claimFor(lane, n), { concurrency: "unbounded" })
        if (ok.every(Boolean)) failures = 0
        else yield* storeBackoff(failures++)
      }
    }).pipe(
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.interrupt
          : Effect.logError("worker: dispatcher failed, restarting", cause).pipe(Effect.zipRight(Effect.sleep("1 second")))
      ),
      Effect.forever
    )

    // ---- leases of long attempts -------------------------------------------------------------------

    const extendOne = (entry: Entry) =>
      Effect.gen(function*() {
        const result = yield* Effect.either(store.extendLease(entry.claim, leaseMs))
        if (result._tag === "Left") return yield* storeFailed("extendLease", result.left, { deliveryId: entry.claim.id })
        if (result.right) {
          entry.leaseExpiresAt = (yield* Clock.currentTimeMillis) + leaseMs
          counts.extended++
          return
        }
        if (entry.phase !== "attempt" || entry.lost) return
        // Someone else owns the delivery now. The attempt is left to end (it is bounded by its timeout);
        // the store's fencing rejects its result and this worker does not hand the lease back.
        entry.lost = true
        yield* Effect.logWarning("worker: lease lost during an attempt; its result will be discarded").pipe(
          Effect.annotateLogs({ workerId, deliveryId: entry.claim.id, target: entry.lane.name })
        )
      })

    const keeper = Effect.gen(function*() {
      const period = Duration.millis(Math.max(10, Math.floor(leaseMs / 3)))
      while (true) {
        yield* Effect.sleep(period)
        const now = yield* Clock.currentTimeMillis
        const due = [...entries.values()].filter((e) => e.phase === "attempt" && !e.lost && e.leaseExpiresAt - now < leaseMs / 2)
        yield* Effect.forEach(due, extendOne, { concurrency: 8, discard: true })
      }
    })

    // ---- gauges ------------------------------------------------------------------------------------

    const claimedGauges = new Map(lanes.map((lane) => [lane, Metrics.workerClaimed.pipe(Metric.tagged("target", lane.name))]))
    const sampler = (every: Duration.Duration) =>
      Effect.gen(function*() {
        while (true) {
          for (const [lane, gauge] of claimedGauges) yield* Metric.set(gauge, lane.held)
          const stats = yield* Effect.either(store.gauges)
          if (stats._tag === "Right") {
            yield* Metric.set(Metrics.queueDepth, stats.right.depth)
            yield* Metric.set(Metrics.oldestPendingAge, stats.right.oldestPendingAgeMs / 1000)
            yield* Metric.set(Metrics.deadLetters, stats.right.dead)
            for (const [name, c] of Object.entries(stats.right.targets)) {
              yield* Metric.set(Metrics.queueDepth.pipe(Metric.tagged("target", name)), c.pending + c.inFlight)
              yield* Metric.set(Metrics.deadLetters.pipe(Metric.tagged("target", name)), c.dead)
            }
          } else {
            yield* storeFailed("gauges", stats.left)
          }
          yield* Effect.sleep(every)
        }
      })

    // ---- start and stop ----------------------------------------------------------------------------

    // The dispatcher (and so every delivery it forks) runs on the I/O-friendly scheduler (see internal/scheduler).
    yield* FiberSet.run(control, onIoScheduler(dispatcher))
    yield* FiberSet.run(control, Stream.runForEach(store.wakeups, () => wakeAll))
    yield* FiberSet.run(control, Effect.forever(Effect.zipRight(Effect.sleep(pollInterval), wakeAll)))
    const keeperFiber = yield* Effect.forkDaemon(keeper)
    if (options.metricsInterval !== false) {
      yield* FiberSet.run(control, sampler(Duration.decode(options.metricsInterval ?? "10 seconds")))
    }

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        running = false
        yield* FiberSet.clear(control)
        // Finalizers run uninterruptibly: the waits below must be made interruptible for their timeouts to work.
        const drained = yield* Effect.interruptible(FiberSet.awaitEmpty(deliveries)).pipe(Effect.timeoutOption(shutdownGrace))
        if (drained._tag === "None") {
          yield* Effect.logWarning(`worker: ${entries.size} attempts still running after the shutdown grace; interrupting`)
            .pipe(Effect.annotateLogs({ workerId }))
          yield* FiberSet.clear(deliveries)
        }
        yield* Fiber.interrupt(keeperFiber)
        const claims = toRelease.splice(0)
        if (claims.length > 0) {
          const released = yield* Effect.interruptible(store.release(claims)).pipe(
            Effect.timeoutOption("5 seconds"),
            Effect.either
          )
          if (released._tag === "Right" && released.right._tag === "Some") counts.released += released.right.value
          else {
            yield* Effect.logWarning(`worker: could not release ${claims.length} leases; they expire in ${leaseMs} ms`)
              .pipe(Effect.annotateLogs({ workerId }))
          }
        }
        yield* Effect.logDebug("worker: stopped").pipe(Effect.annotateLogs({ workerId, ...counts }))
      })
    )

    const state: Effect.Effect<State> = Effect.sync(() => {
      const targets: Record<string, TargetState> = {}
      let inFlight = 0
      for (const lane of lanes) {
        inFlight += lane.inFlight
        targets[lane.name] = { claimed: lane.held, inFlight: lane.inFlight, limit: lane.limit, idle: lane.idle }
      }
      return { workerId, running, claimed: held, inFlight, targets, ...counts, lastError }
    })

    yield* Effect.logDebug("worker: started").pipe(
      Effect.annotateLogs({ workerId, concurrency, batchSize, leaseMs, targets: lanes.map((l) => l.name).join(",") })
    )
    return { workerId, leaseMs, state } satisfies Service
  })

/**
 * The worker as a layer: it runs from when the layer is built until its scope closes.
 *
 * @example
 * ```ts
 * const WorkerLive = Worker.layer({ router, concurrency: 100 }).pipe(
 *   Layer.provide(Layer.mergeAll(Inventory.layer, Notification.layer)),
 *   Layer.provide(Transport.layer()),
 *   Layer.provide(Sqlite.layer({ filename: "fanout.db" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <T extends Target.Any>(
  options: Options<T>
): Layer.Layer<Worker, WorkerOptionsError, Store.DeliveryStore | Target.Requirements<T>> => Layer.scoped(Worker, make(options))
