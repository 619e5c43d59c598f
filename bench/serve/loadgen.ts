/**
 * The open-loop load generator of the serve benchmark, in a process of its own: for a run it sends
 * `rate × seconds` events `POST /v1/events` on a fixed schedule (event i is offered at
 * t0 + i / rate), through an undici `Pool` with keep-alive, never waiting for answers before the
 * next send. Each event carries its offered instant (`payload.t`, process.hrtime in ms, the
 * machine-wide monotonic clock) and its id `<tag>-<i>`.
 *
 * A send is late when it leaves more than `lateMs` after its offered instant (the event loop of this
 * process fell behind); it is dropped (not sent, counted as failed) when `maxInFlight` requests are
 * already unanswered, or when the schedule is more than 10 s behind. Answers are awaited for at most
 * `answerTimeoutMs` after the last send.
 *
 * Run by bench/serve.ts (IPC): `node --import tsx bench/serve/loadgen.ts`.
 */
import { Pool } from "undici"

export interface RunSpec {
  readonly _tag: "run"
  readonly url: string
  readonly tag: string
  readonly rate: number
  readonly seconds: number
  readonly connections: number
  readonly maxInFlight: number
  readonly lateMs: number
  readonly answerTimeoutMs: number
}

export interface LoadResult {
  readonly tag: string
  readonly offered: number
  /** Requests sent (offered − dropped). */
  readonly sent: number
  readonly dropped: number
  readonly late: number
  readonly lateness: { readonly p99: number; readonly max: number }
  /** Answered 2xx. */
  readonly acked: number
  readonly non2xx: number
  readonly statuses: Record<string, number>
  /** Transport errors (refused, reset, timeout) and answers still missing at the end. */
  readonly errors: number
  readonly unanswered: number
  readonly errorSample: ReadonlyArray<string>
  /** Answer instant − offered instant of the 2xx answers, ms. */
  readonly ack: { readonly p50: number; readonly p99: number; readonly max: number }
  /** Offered instant of event 0, and end of the window (t0 + n / rate), monotonic ms. */
  readonly t0: number
  readonly tEnd: number
  /** When the last answer arrived, ms after tEnd. */
  readonly lastAnswerAfterEndMs: number
  /** Event indexes not acknowledged (non-2xx, error, dropped, unanswered). */
  readonly unacked: ReadonlyArray<number>
  readonly cpuMs: number
}

export type FromLoadgen = { readonly _tag: "ready" } | { readonly _tag: "result"; readonly result: LoadResult }

const now = () => Number(process.hrtime.bigint()) / 1e6

const at = (sorted: Float64Array, q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

const wait = (ms: number) => new Promise<void>((resolve) => (ms >= 1 ? setTimeout(resolve, ms) : setImmediate(resolve)))

/** One pool per server, kept from the warm-up to the measured run (its connections stay open). */
let current: { readonly origin: string; readonly pool: Pool } | undefined

const poolFor = async (spec: RunSpec): Promise<Pool> => {
  const origin = new URL(spec.url).origin
  if (current?.origin === origin) return current.pool
  await current?.pool.destroy().catch(() => {})
  const pool = new Pool(origin, {
    connections: spec.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: spec.answerTimeoutMs,
    bodyTimeout: spec.answerTimeoutMs
  })
  current = { origin, pool }
  return pool
}

// Status per event: 0 waiting, 1 2xx, 2 non-2xx, 3 error, 4 dropped.
const run = async (spec: RunSpec): Promise<LoadResult> => {
  const cpu0 = process.cpuUsage()
  const pool = await poolFor(spec)
  const n = Math.max(1, Math.round(spec.rate * spec.seconds))
  const interval = 1000 / spec.rate
  const status = new Uint8Array(n)
  const ackLatency = new Float64Array(n).fill(Number.NaN)
  const lateness = new Float64Array(n)
  const statuses: Record<string, number> = {}
  const errorSample: Array<string> = []
  let inFlight = 0
  let late = 0
  let dropped = 0
  let lastAnswer = 0
  let allAnswered: (() => void) | undefined

  const fire = (i: number, offered: number, sentAt: number) => {
    lateness[i] = sentAt - offered
    if (sentAt - offered > spec.lateMs) late++
    if (inFlight >= spec.maxInFlight) {
      status[i] = 4
      dropped++
      return
    }
    inFlight++
    const body = JSON.stringify({
      id: `${spec.tag}-${i}`,
      type: "order.placed",
      key: `customer-${i % 100}`,
      payload: {
        t: offered,
        seq: i,
        orderId: `o-${i}`,
        sku: `sku-${i % 100}`,
        qty: 1 + (i % 5),
        email: `c${i % 1000}@example.com`
      }
    })
    pool.request({ path: "/v1/events", method: "POST", headers: { "content-type": "application/json" }, body }).then(
      async (response) => {
        await response.body.dump()
        const t = now()
        lastAnswer = t
        if (response.statusCode >= 200 && response.statusCode < 300) {
          status[i] = 1
          ackLatency[i] = t - offered
        } else {
          status[i] = 2
          statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1
        }
      },
      (error: unknown) => {
        lastAnswer = now()
        status[i] = 3
        if (errorSample.length < 5) errorSample.push(String((error as { code?: string }).code ?? error))
      }
    ).finally(() => {
      inFlight--
      if (inFlight === 0) allAnswered?.()
    })
  }

  const t0 = now() + 100
  const tEnd = t0 + n * interval
  let i = 0
  while (i < n) {
    const t = now()
    if (t > tEnd + 10_000) break
    while (i < n && t0 + i * interval <= t) {
      fire(i, t0 + i * interval, t)
      i++
    }
    if (i < n) await wait(t0 + i * interval - now())
  }
  for (; i < n; i++) {
    status[i] = 4
    dropped++
  }
  if (inFlight > 0) {
    await Promise.race([new Promise<void>((resolve) => (allAnswered = resolve)), wait(spec.answerTimeoutMs + 1_000)])
  }
  const unanswered = inFlight
  if (unanswered > 0) {
    // Answers still missing: this pool's requests are abandoned, the next run gets a new one.
    current = undefined
    await pool.destroy().catch(() => {})
  }

  const unacked: Array<number> = []
  let acked = 0
  let non2xx = 0
  let errors = 0
  for (let k = 0; k < n; k++) {
    if (status[k] === 1) acked++
    else {
      unacked.push(k)
      if (status[k] === 2) non2xx++
      else if (status[k] !== 4) errors++
    }
  }
  const sortedAck = Float64Array.from(ackLatency.filter((x) => !Number.isNaN(x))).sort()
  const sortedLate = Float64Array.from(lateness).sort()
  const cpu = process.cpuUsage(cpu0)
  return {
    tag: spec.tag,
    offered: n,
    sent: n - dropped,
    dropped,
    late,
    lateness: { p99: at(sortedLate, 0.99), max: sortedLate[sortedLate.length - 1] ?? Number.NaN },
    acked,
    non2xx,
    statuses,
    errors,
    unanswered,
    errorSample,
    ack: { p50: at(sortedAck, 0.5), p99: at(sortedAck, 0.99), max: sortedAck[sortedAck.length - 1] ?? Number.NaN },
    t0,
    tEnd,
    lastAnswerAfterEndMs: lastAnswer - tEnd,
    unacked,
    cpuMs: (cpu.user + cpu.system) / 1000
  }
}

if (process.argv[1]?.endsWith("loadgen.ts") && process.send !== undefined) {
  process.on("message", (message: RunSpec | { _tag: "stop" }) => {
    if (message._tag === "stop") process.exit(0)
    if (message._tag === "run") {
      void run(message).then((result) => process.send!({ _tag: "result", result } satisfies FromLoadgen))
    }
  })
  process.on("disconnect", () => process.exit(0))
  process.send({ _tag: "ready" } satisfies FromLoadgen)
}
