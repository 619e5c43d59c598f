/**
 * `simulateDurable`: the durable mode in virtual time. An in-memory store, the outbox's
 * `enqueue` and one or more workers run against TestTargets on the simulated client; workers
 * can be crashed (their leases are not released) and restarted at chosen instants. The result
 * holds every delivery's end state and attempt history, every request each TestTarget received,
 * the requests that came after their delivery was dead-lettered (there should be none), and the
 * crashes performed. Same inputs, same result.
 *
 * @since 0.1.0
 */
import { HttpClient } from "@effect/platform"
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Random,
  Scope
} from "effect"
import type { Scheduler, TestClock } from "effect"
import type * as Event from "../Event.js"
import type { NoRouteError } from "../Fanout.js"
import * as Outbox from "../Outbox.js"
import type * as Router from "../Router.js"
import * as Memory from "../Store/Memory.js"
import * as Store from "../Store.js"
import * as Worker from "../Worker.js"
import type * as Fault from "./Fault.js"
import { SimulationError } from "./simulate.js"
import * as TestTarget from "./TestTarget.js"
import * as VirtualTime from "./VirtualTime.js"

/**
 * A crash of worker `worker` (its index, from 0) at `at` (virtual time since the start of the
 * simulation): from that instant none of its fibers runs again, as when its process is killed.
 * Its leases are not released (they expire, and another worker or its restart claims the
 * deliveries again); its requests still waiting for an answer are aborted (the TestTarget
 * records them as `aborted` at the crash instant). With `restartAfter`, a new worker with the
 * same index starts that long after the crash (a new process: fresh target runtimes, a new
 * worker id `worker-<index>#<restarts>`). A crash point for a worker that is not running at `at`
 * is skipped.
 *
 * @since 0.1.0
 * @category models
 */
export interface CrashPoint {
  readonly worker: number
  readonly at: Duration.DurationInput
  readonly restartAfter?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E extends Event.Any> {
  /** The routes: events are enqueued for every target they name, and the workers serve them. */
  readonly router: Router.Router<E, any>
  /**
   * The fake APIs: TestTargets, or a record of name → faults (fresh TestTargets are made).
   * Targets reach them at `http://<name>.test` ({@link TestTarget.urlOf}). A fault script
   * applies per idempotency key, so it follows a delivery across workers and crashes.
   */
  readonly testTargets: ReadonlyArray<TestTarget.TestTarget> | Readonly<Record<string, Fault.Faults | undefined>>
  /** The events, enqueued in this order at the start (before the workers start). */
  readonly events: Iterable<E>
  /** How many workers run at once (each as its own process would). Default 1. */
  readonly workers?: number
  /** Crashes (and restarts) of workers. Default none. */
  readonly crashes?: ReadonlyArray<CrashPoint>
  /** Each worker's `concurrency` (see `Worker.Tuning`). Default: the worker's. */
  readonly concurrency?: number
  /** Each worker's `batchSize`. Default: the worker's. */
  readonly batchSize?: number
  /** Each worker's `leaseMs`. Default: the worker's (the larger of 30 s and twice the longest attempt timeout). */
  readonly leaseMs?: number
  /** Each worker's `pollInterval`: how soon an idle worker sees a lease that expired. Default: the worker's (1 second). */
  readonly pollInterval?: Duration.DurationInput
  /** Each worker's `shutdownGrace`, used when the simulation stops the workers still running at the end. Default: the worker's. */
  readonly shutdownGrace?: Duration.DurationInput
  /**
   * Most virtual time the simulation may take. When it passes before every delivery is
   * delivered or dead, the report says so (`settled: false`) with each delivery's state then.
   * Default 1 hour.
   */
  readonly horizon?: Duration.DurationInput
  /** Seed of the `Random` services inside the simulation (retry jitter; one per worker run, derived from it). Default 0. */
  readonly seed?: number
  /**
   * The virtual clock's start (epoch milliseconds). Default 0, whatever the current clock says:
   * the instants of the report (and `Retry-After` HTTP-dates, which round to whole seconds)
   * then repeat exactly from run to run.
   */
  readonly start?: number
  /** Record spans (and so send `traceparent` headers), as in production. Default true. */
  readonly tracing?: boolean
  /** The least level of the log lines the store, outbox and workers print. Default `"None"` (silent). */
  readonly logLevel?: LogLevel.Literal
}

/**
 * One request a TestTarget received during the simulation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  /** The TestTarget that received it. */
  readonly target: string
  /** Arrival order at that TestTarget, from 1. */
  readonly seq: number
  /** The id of the worker (run) that sent it. */
  readonly worker: string
  /** Its `idempotency-key` header. */
  readonly key: string | undefined
  /** The TestTarget's count of requests with this key, from 1. */
  readonly attempt: number
  readonly method: string
  readonly path: string
  readonly receivedAt: number
  /** The step the TestTarget chose for it. */
  readonly step: Fault.Step
  /** `aborted` for a request whose worker crashed before the answer. */
  readonly result: TestTarget.Result
  readonly status: number | undefined
  readonly completedAt: number | undefined
}

/**
 * One claim of a delivery by a worker, and the lease it took (as last extended by that worker).
 *
 * @since 0.1.0
 * @category models
 */
export interface ClaimRecord {
  readonly worker: string
  readonly at: number
  /** When the lease runs out, after the last extension this worker made. */
  readonly leaseExpiresAt: number
  /** Attempts counted before this claim. */
  readonly attempts: number
}

/**
 * One recorded attempt of a delivery (from the store's history).
 *
 * @since 0.1.0
 * @category models
 */
export interface AttemptRecord {
  readonly number: number
  readonly worker: string | undefined
  readonly startedAt: number
  readonly durationMs: number
  /** `"success"` or the error label (`"http_503"`, `"timeout"`, …). */
  readonly outcome: string
  readonly status: number | undefined
}

/**
 * One delivery (an event to one target) at the end of the simulation.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeliveryReport<E extends Event.Any> {
  readonly event: E
  readonly target: string
  readonly deliveryId: string
  /** `<event id>:<target>`: what each of its requests should carry. */
  readonly idempotencyKey: string
  /** `delivered` or `dead` once settled; `pending` or `in_flight` when the horizon came first. */
  readonly status: Store.Status
  /** Attempts recorded (the store's history length). */
  readonly attempts: number
  readonly history: ReadonlyArray<AttemptRecord>
  readonly deadReason: string | undefined
  /** When it was delivered or dead-lettered. */
  readonly finishedAt: number | undefined
  /** Every claim of it, in order. */
  readonly claims: ReadonlyArray<ClaimRecord>
  /** Every request any TestTarget received with its idempotency key, in arrival order. */
  readonly requests: ReadonlyArray<Request>
  /** Of those, the ones received after the delivery was dead-lettered (should be none). */
  readonly afterDead: ReadonlyArray<Request>
}

/**
 * A crash performed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Crash {
  readonly worker: number
  readonly workerId: string
  readonly at: number
  /** The leases it held at the crash (not released). */
  readonly leases: ReadonlyArray<{
    readonly deliveryId: string
    readonly eventId: string
    readonly target: string
    readonly leaseExpiresAt: number
  }>
  /** Its requests that were waiting for an answer (now `aborted`). */
  readonly aborted: number
  /** The worker id of its restart, and when it started (undefined: not restarted before the end). */
  readonly restartedAs: string | undefined
  readonly restartedAt: number | undefined
}

/**
 * One run of a worker, from its start to its crash or to the end of the simulation.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerRun {
  readonly worker: number
  readonly workerId: string
  readonly startedAt: number
  readonly endedAt: number
  readonly end: "crashed" | "stopped"
  /** Its `Worker.state` at the crash, or just before it was stopped. */
  readonly state: Worker.State
}

/**
 * An event the outbox did not take (no route, a conflicting duplicate id, a store error).
 *
 * @since 0.1.0
 * @category models
 */
export interface Rejected<E extends Event.Any> {
  readonly event: E
  readonly error: NoRouteError | Store.ConflictError | Store.StoreError
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DurableSimulation<E extends Event.Any> {
  /** Every delivery, in enqueue order (event, then its targets). */
  readonly deliveries: ReadonlyArray<DeliveryReport<E>>
  readonly rejected: ReadonlyArray<Rejected<E>>
  /** Every request every TestTarget received, in global arrival order. */
  readonly requests: ReadonlyArray<Request>
  /** Every request received after its delivery was dead-lettered (should be empty). */
  readonly afterDead: ReadonlyArray<Request>
  readonly crashes: ReadonlyArray<Crash>
  readonly workers: ReadonlyArray<WorkerRun>
  /** The TestTargets by name (their full `ledger`, headers included). */
  readonly testTargets: Readonly<Record<string, TestTarget.TestTarget>>
  /** Every delivery was delivered or dead before the horizon. */
  readonly settled: boolean
  readonly startedAt: number
  /** When the last delivery settled (or the horizon), before the workers still running were stopped. */
  readonly finishedAt: number
}

interface Holder {
  readonly lease: string
  readonly worker: string
  readonly record: { -readonly [K in keyof ClaimRecord]: ClaimRecord[K] }
  readonly eventId: string
  readonly target: string
}

interface Incarnation {
  readonly index: number
  readonly workerId: string
  readonly startedAt: number
  readonly scope: Scope.CloseableScope
  readonly service: Worker.Service
  readonly freeze: () => void
  readonly exchanges: Array<TestTarget.Exchange>
}

/**
 * A worker's scheduler: runs its tasks on `base` until it is frozen (the crash), then drops them,
 * and those already queued. Its fibers never yield on their own (only when they wait), so a crash,
 * which runs on another fiber, falls between two waits of the worker, never between a store
 * operation (one synchronous step of the memory store) and what the simulation records of it.
 */
const freezable = (
  base: Scheduler.Scheduler
): { readonly scheduler: Scheduler.Scheduler; readonly freeze: () => void } => {
  let alive = true
  return {
    scheduler: {
      scheduleTask: (task, priority) => {
        if (alive) base.scheduleTask(() => alive && task(), priority)
      },
      shouldYield: () => false
    },
    freeze: () => {
      alive = false
    }
  }
}

const isTestClock = (clock: Clock.Clock): clock is TestClock.TestClock =>
  typeof (clock as Partial<TestClock.TestClock>).adjust === "function" &&
  (clock as Partial<TestClock.TestClock>).sleeps !== undefined

const checkInt = (name: string, value: number, min: number): number => {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`simulateDurable: ${name} must be an integer >= ${min}, got ${value}`)
  }
  return value
}

/**
 * Runs the durable mode against fake APIs, deterministically, in virtual time: a fresh
 * in-memory store, `Outbox.enqueue` of every event, then `workers` workers (each with its own
 * target runtimes over the simulated client, as separate processes would have), crashed and
 * restarted at the given {@link CrashPoint}s. Time jumps from one timer to the next as soon as
 * every simulated fiber waits, so minutes of retries and lease expiries pass without any real
 * wait. It ends when every delivery is delivered or dead (or at the horizon); the
 * workers still running are then stopped gracefully.
 *
 * Under `TestClock` (`it.effect`), the TestClock is moved forward by the simulated time at the
 * end; under the live clock no real time passes.
 *
 * @example
 * ```ts
 * const sim = yield* simulateDurable({
 *   router,
 *   testTargets: { inventory: Fault.script([Fault.unavailable(), Fault.ok()]), email: undefined },
 *   events,
 *   workers: 2,
 *   leaseMs: 5_000,
 *   crashes: [{ worker: 0, at: "10 millis", restartAfter: "1 minute" }]
 * })
 * assert.isTrue(sim.settled)
 * assert.deepStrictEqual(sim.afterDead, [])
 * ```
 *
 * @since 0.1.0
 * @category simulation
 */
export const simulateDurable = <E extends Event.Any>(
  options: Options<E>
): Effect.Effect<DurableSimulation<E>, SimulationError> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const fakes: ReadonlyArray<TestTarget.TestTarget> = Array.isArray(options.testTargets)
      ? options.testTargets as ReadonlyArray<TestTarget.TestTarget>
      : Object.entries(options.testTargets as Record<string, Fault.Faults | undefined>).map(([name, faults]) =>
        TestTarget.make(name, faults === undefined ? {} : { faults })
      )
    const byName: Record<string, TestTarget.TestTarget> = {}
    for (const fake of fakes) byName[fake.name] = fake
    const horizon = Duration.toMillis(Duration.decode(options.horizon ?? "1 hour"))
    const workerCount = checkInt("workers", options.workers ?? 1, 1)
    const crashPoints = (options.crashes ?? []).map((c) => {
      checkInt("crash worker", c.worker, 0)
      if (c.worker >= workerCount) {
        throw new RangeError(`simulateDurable: crash of worker ${c.worker}, but there are ${workerCount} workers`)
      }
      return {
        worker: c.worker,
        at: Duration.toMillis(Duration.decode(c.at)),
        restartAfter: c.restartAfter === undefined ? undefined : Duration.toMillis(Duration.decode(c.restartAfter))
      }
    })
    const events = Array.from(options.events)
    const router = options.router
    const seed = options.seed ?? 0
    const start = options.start ?? 0
    const time = VirtualTime.make(start)

    // ---- what the simulation records -----------------------------------------------------------
    /** Who sent each request: `<target>#<seq>` → worker id. */
    const senders = new Map<string, string>()
    /** Current lease holder of each delivery. */
    const holders = new Map<string, Holder>()
    const claims = new Map<string, Array<Holder["record"]>>()
    /** For a dead delivery: how many requests with its key had been received when it died. */
    const deadAfter = new Map<string, number>()
    const open = new Set<string>()
    const keyOfDelivery = new Map<string, string>()
    const requestsWithKey = (key: string) => fakes.reduce((n, fake) => n + fake.requestsFor(key).length, 0)

    const run = Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      const allSettled = yield* Deferred.make<void>()
      const base = yield* Memory.make
      const settle = (id: string) => {
        if (open.delete(id) && open.size === 0) Deferred.unsafeDone(allSettled, Exit.void)
      }
      const store: Store.DeliveryStore = {
        ...base,
        claim: (claimOptions) =>
          Effect.tap(base.claim(claimOptions), (claimed) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.sync(() => {
                for (const c of claimed) {
                  const record = {
                    worker: claimOptions.workerId,
                    at: now,
                    leaseExpiresAt: c.leaseExpiresAt,
                    attempts: c.attempts
                  }
                  holders.set(c.id, {
                    lease: c.lease,
                    worker: claimOptions.workerId,
                    record,
                    eventId: c.eventId,
                    target: c.target
                  })
                  let list = claims.get(c.id)
                  if (list === undefined) {
                    claims.set(c.id, list = [])
                  }
                  list.push(record)
                }
              }))),
        extendLease: (claim, leaseMs) =>
          Effect.tap(base.extendLease(claim, leaseMs), (extended) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) =>
              Effect.sync(() => {
                const holder = holders.get(claim.id)
                if (extended && holder !== undefined && holder.lease === claim.lease) {
                  holder.record.leaseExpiresAt = now + leaseMs
                }
              }))),
        release: (released) =>
          Effect.tap(base.release(released), () =>
            Effect.sync(() => {
              for (const claim of released) {
                if (holders.get(claim.id)?.lease === claim.lease) {
                  holders.delete(claim.id)
                }
              }
            })),
        finish: (claim, attempt, next) =>
          Effect.tap(base.finish(claim, attempt, next), (written) =>
            Effect.sync(() => {
              if (!written) {
                return
              }
              if (holders.get(claim.id)?.lease === claim.lease) {
                holders.delete(claim.id)
              }
              if (next._tag === "Retry") {
                return
              }
              if (next._tag === "Dead") {
                const key = keyOfDelivery.get(claim.id)
                if (key !== undefined) {
                  deadAfter.set(claim.id, requestsWithKey(key))
                }
              }
              settle(claim.id)
            }))
      }

      // ---- enqueue -----------------------------------------------------------------------------
      const outbox = yield* Outbox.make(router).pipe(Effect.provideService(Store.DeliveryStore, store))
      const rejected: Array<Rejected<E>> = []
      const enqueued: Array<
        { readonly event: E; readonly deliveries: ReadonlyArray<{ readonly id: string; readonly target: string }> }
      > = []
      const seen = new Set<string>()
      for (const event of events) {
        const result = yield* Effect.either(outbox.enqueue(event))
        if (result._tag === "Left") {
          rejected.push({ event, error: result.left })
          continue
        }
        const fresh = result.right.deliveries.filter((d) =>
          !seen.has(d.id)
        )
        for (const d of fresh) {
          seen.add(d.id)
          keyOfDelivery.set(d.id, Store.idempotencyKey(event.id, d.target))
          if (d.status === "pending" || d.status === "in_flight") {
            open.add(d.id)
          }
        }
        if (fresh.length > 0) {
          enqueued.push({ event, deliveries: fresh })
        }
      }
      if (open.size === 0) {
        Deferred.unsafeDone(allSettled, Exit.void)
      }

      // ---- workers -----------------------------------------------------------------------------
      const running: Array<Incarnation | undefined> = []
      const restarts: Array<number> = []
      const runs: Array<WorkerRun> = []
      const crashes: Array<Crash> = []
      const layers = router.targets.map((t) =>
        t.layer as Layer.Layer<unknown, never, HttpClient.HttpClient>
      )

      const startWorker = (index: number): Effect.Effect<Incarnation> =>
        Effect.gen(function*() {
          const restart = restarts[index] ?? 0
          restarts[index] = restart + 1
          const workerId = restart === 0 ? `worker-${index}` : `worker-${index}#${restart}`
          const exchanges: Array<TestTarget.Exchange> = []
          // The worker's own view of the TestTargets: the same targets, each request noted as its own.
          const proxies = fakes.map((fake): TestTarget.TestTarget => ({
            name: fake.name,
            url: fake.url,
            get ledger() {
              return fake.ledger
            },
            get stats() {
              return fake.stats
            },
            get keys() {
              return fake.keys
            },
            requestsFor: fake.requestsFor,
            receive: (request) => {
              const exchange = fake.receive(request)
              senders.set(`${fake.name}#${exchange.received.seq}`, workerId)
              exchanges.push(exchange)
              return exchange
            }
          }))
          const { freeze, scheduler } = freezable(time.scheduler)
          const scope = yield* Scope.make()
          const startedAt = yield* Clock.currentTimeMillis
          const service = yield* Effect.gen(function*() {
            const targets = yield* Layer.buildWithScope(
              (layers.length === 0 ? Layer.empty : Layer.mergeAll(...(layers as [Layer.Layer<unknown>]))).pipe(
                Layer.provide(Layer.succeed(HttpClient.HttpClient, TestTarget.client(proxies)))
              ),
              scope
            )
            const context = Context.add(targets as Context.Context<never>, Store.DeliveryStore, store)
            return yield* (Worker.make({
              router,
              workerId,
              metricsInterval: false,
              ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
              ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
              ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
              ...(options.pollInterval !== undefined ? { pollInterval: options.pollInterval } : {}),
              ...(options.shutdownGrace !== undefined ? { shutdownGrace: options.shutdownGrace } : {})
            }).pipe(
              Scope.extend(scope),
              Effect.provide(context)
            ) as Effect.Effect<Worker.Service>)
          }).pipe(
            Effect.withRandom(Random.make(`fanout-simulateDurable:${seed}:${index}:${restart}`)),
            Effect.withScheduler(scheduler)
          )
          const incarnation: Incarnation = { index, workerId, startedAt, scope, service, freeze, exchanges }
          running[index] = incarnation
          return incarnation
        })

      const crash = (point: (typeof crashPoints)[number]) =>
        Effect.gen(function*() {
          yield* Effect.sleep(Duration.millis(point.at))
          const incarnation = running[point.worker]
          if (incarnation === undefined) {
            return
          }
          const now = yield* Clock.currentTimeMillis
          const state = yield* incarnation.service.state
          incarnation.freeze()
          running[point.worker] = undefined
          const abortedBefore = fakes.reduce((n, fake) =>
            n + fake.stats.aborted, 0)
          for (const exchange of incarnation.exchanges) exchange.abort(now)
          const aborted = fakes.reduce((n, fake) => n + fake.stats.aborted, 0) - abortedBefore
          incarnation.exchanges.length = 0
          const leases = [...holders.entries()]
            .filter(([, h]) => h.worker === incarnation.workerId)
            .map(([deliveryId, h]) => ({
              deliveryId,
              eventId: h.eventId,
              target: h.target,
              leaseExpiresAt: h.record.leaseExpiresAt
            }))
            .sort((a, b) => Number(a.deliveryId) - Number(b.deliveryId) || (a.deliveryId < b.deliveryId ? -1 : 1))
          runs.push({
            worker: point.worker,
            workerId: incarnation.workerId,
            startedAt: incarnation.startedAt,
            endedAt: now,
            end: "crashed",
            state
          })
          const record: { -readonly [K in keyof Crash]: Crash[K] } = {
            worker: point.worker,
            workerId: incarnation.workerId,
            at: now,
            leases,
            aborted,
            restartedAs: undefined,
            restartedAt: undefined
          }
          crashes.push(record)
          if (point.restartAfter === undefined) return
          yield* Effect.sleep(Duration.millis(point.restartAfter))
          if (running[point.worker] !== undefined) return
          const restarted = yield* startWorker(point.worker)
          record.restartedAs = restarted.workerId
          record.restartedAt = restarted.startedAt
        })

      for (let i = 0; i < workerCount; i++) yield* startWorker(i)
      const crashFibers = yield* Effect.forEach(crashPoints, (point) => Effect.fork(crash(point)))

      const settled = yield* Deferred.await(allSettled).pipe(
        Effect.timeoutOption(Duration.millis(Math.max(0, horizon - ((yield* Clock.currentTimeMillis) - startedAt)))),
        Effect.map(Option.isSome)
      )
      const finishedAt = yield* Clock.currentTimeMillis
      yield* Fiber.interruptAll(crashFibers)

      // ---- stop the workers still running --------------------------------------------------------
      for (const incarnation of running) {
        if (incarnation === undefined) continue
        const state = yield* incarnation.service.state
        runs.push({
          worker: incarnation.index,
          workerId: incarnation.workerId,
          startedAt: incarnation.startedAt,
          endedAt: finishedAt,
          end: "stopped",
          state
        })
        yield* Scope.close(incarnation.scope, Exit.void)
      }
      runs.sort((a, b) => a.startedAt - b.startedAt || a.worker - b.worker)

      // ---- the report ----------------------------------------------------------------------------
      const requests: Array<Request> = fakes.flatMap((fake) => fake.ledger).sort((a, b) => a.order - b.order).map((
        r
      ) => ({
        target: r.target,
        seq: r.seq,
        worker: senders.get(`${r.target}#${r.seq}`) ?? "(outside the simulation)",
        key: r.key,
        attempt: r.attempt,
        method: r.method,
        path: r.path,
        receivedAt: r.receivedAt,
        step: r.step,
        result: r.result,
        status: r.status,
        completedAt: r.completedAt
      }))
      const byKey = new Map<string, Array<Request>>()
      for (const r of requests) {
        if (r.key === undefined) continue
        let list = byKey.get(r.key)
        if (list === undefined) byKey.set(r.key, list = [])
        list.push(r)
      }
      const deliveries: Array<DeliveryReport<E>> = []
      for (const { event, deliveries: ids } of enqueued) {
        const status = yield* base.status(event.id).pipe(Effect.orDie)
        const rows = Option.isSome(status) ? status.value.deliveries : []
        for (const { id, target } of ids) {
          const row = rows.find((d) => d.id === id)
          const key = Store.idempotencyKey(event.id, target)
          const received = byKey.get(key) ?? []
          const died = deadAfter.get(id)
          deliveries.push({
            event,
            target,
            deliveryId: id,
            idempotencyKey: key,
            status: row?.status ?? "pending",
            attempts: row?.history.length ?? 0,
            history: (row?.history ?? []).map((a) => ({
              number: a.number,
              worker: a.workerId,
              startedAt: a.startedAt,
              durationMs: a.durationMs,
              outcome: a.outcome,
              status: a.status
            })),
            deadReason: row?.deadReason,
            finishedAt: row?.finishedAt,
            claims: (claims.get(id) ?? []).map((c) => ({ ...c })),
            requests: received,
            afterDead: died === undefined ? [] : received.slice(died)
          })
        }
      }
      const result: DurableSimulation<E> = {
        deliveries,
        rejected,
        requests,
        afterDead: deliveries.flatMap((d) => d.afterDead),
        crashes,
        workers: runs,
        testTargets: byName,
        settled,
        startedAt,
        finishedAt
      }
      return result
    })

    const fiber = yield* Effect.fork(
      run.pipe(
        Logger.withMinimumLogLevel(LogLevel.fromLiteral(options.logLevel ?? "None")),
        Effect.withTracerEnabled(options.tracing ?? true),
        Effect.withRandom(Random.make(seed)),
        Effect.withClock(time.clock),
        Effect.withScheduler(time.scheduler)
      )
    )
    // The run ends itself at the horizon; what is left is the time the stopping workers take.
    const limit = horizon + Duration.toMillis(Duration.decode("1 day"))
    const exit = yield* time.drive(fiber, limit)
    if (!VirtualTime.isExit(exit)) {
      yield* Fiber.interruptFork(fiber)
      return yield* new SimulationError({
        reason: exit,
        message: exit === "Horizon"
          ? `durable simulation did not stop its workers within a day of virtual time after its horizon of ${horizon} ms`
          : `durable simulation stalled after ${
            time.now() - start
          } ms of virtual time: a fiber waits on something that is neither time nor a TestTarget`
      })
    }
    if (isTestClock(clock)) yield* clock.adjust(time.now() - start)
    return yield* exit
  })
