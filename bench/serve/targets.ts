/**
 * The two targets of the serve benchmark, in a process of their own: `node:http` on two ports (A and
 * B) of 127.0.0.1, keep-alive. Each request's JSON body is read, its event id (`<run tag>-<seq>`, at
 * `id`) and offered instant (`payload.t`, process.hrtime in ms: CLOCK_MONOTONIC, the same clock in
 * every process of the machine) are taken, the instant the body was fully received is recorded for
 * (event, target) the first time only, and the answer `200 {"ok":true}` is sent `--delay` ms later
 * (20 by default). So receipt − offered is the latency the system under test adds; the targets' own
 * 20 ms come after it.
 *
 * Run by bench/serve.ts (IPC): `node --import tsx bench/serve/targets.ts --delay=20`.
 * Messages: `begin` (a new run: tag and event count), `expect` (which events were acknowledged),
 * `poll` (counts so far), `report` (the run's figures), `stop`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

export type ToTargets =
  | { readonly _tag: "begin"; readonly tag: string; readonly n: number }
  | { readonly _tag: "expect"; readonly unacked: ReadonlyArray<number> }
  | { readonly _tag: "poll" }
  | { readonly _tag: "report"; readonly t0: number; readonly tEnd: number }
  | { readonly _tag: "stop" }

export interface Polled {
  readonly receivedA: number
  readonly receivedB: number
  /** Events received by both targets. */
  readonly both: number
  /** Acknowledged events not yet received by both targets (after `expect`; else −1). */
  readonly ackedMissing: number
  readonly requests: number
  readonly duplicates: number
  readonly stray: number
  readonly bad: number
}

export interface TargetReport extends Polled {
  /** Events received by both targets by the end of the offered window (t0 + duration). */
  readonly deliveredByEnd: number
  /** … by 1 s after it. */
  readonly deliveredByEndPlus1s: number
  /** The instant the last event completed (both received), ms after the end of the window. */
  readonly lastCompletionAfterEndMs: number | undefined
  /** Receipt − offered over every (event, target) first receipt, ms. */
  readonly latency: {
    readonly count: number
    readonly p50: number
    readonly p90: number
    readonly p99: number
    readonly max: number
  }
  /** Per event: the later of its two receipts − offered, ms. */
  readonly eventLatency: { readonly p50: number; readonly p99: number; readonly max: number }
  /** Events received by both targets that the load generator did not see acknowledged. */
  readonly deliveredUnacked: number
  /** Target process CPU in the run (since `begin`), ms. */
  readonly cpuMs: number
  /** Events completed (both received) per 100 ms from t0 (at most 3,000 buckets; later ones in the last). */
  readonly timeline: ReadonlyArray<number>
}

export type FromTargets =
  | { readonly _tag: "ready"; readonly portA: number; readonly portB: number }
  | { readonly _tag: "polled"; readonly polled: Polled }
  | { readonly _tag: "report"; readonly report: TargetReport }

const now = () => Number(process.hrtime.bigint()) / 1e6

/** q-quantile of a sorted array, nearest rank. */
const at = (sorted: Float64Array, q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!

const child = () => {
  const delay = Number(process.argv.find((a) => a.startsWith("--delay="))?.slice(8) ?? 20)
  let tag = ""
  let prefix = ""
  let n = 0
  let recv = [new Float64Array(0), new Float64Array(0)] as [Float64Array, Float64Array]
  let offered = new Float64Array(0)
  let acked: Uint8Array | undefined
  let counts = { requests: 0, duplicates: 0, stray: 0, bad: 0 }
  let cpu0 = process.cpuUsage()

  const body = JSON.stringify({ ok: true })
  const length = String(Buffer.byteLength(body))

  const handler = (which: 0 | 1) => (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const t = now()
      counts.requests++
      try {
        const event = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id?: unknown; payload?: { t?: unknown } }
        const id = typeof event.id === "string" ? event.id : ""
        if (tag !== "" && id.startsWith(prefix)) {
          const seq = Number(id.slice(prefix.length))
          if (Number.isInteger(seq) && seq >= 0 && seq < n) {
            const r = recv[which]
            if (Number.isNaN(r[seq]!)) {
              r[seq] = t
              if (typeof event.payload?.t === "number") offered[seq] = event.payload.t
            } else {
              counts.duplicates++
            }
          } else counts.bad++
        } else counts.stray++
      } catch {
        counts.bad++
      }
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json", "content-length": length })
        res.end(body)
      }, delay)
    })
  }

  const listen = (which: 0 | 1): Promise<number> =>
    new Promise((resolve) => {
      const server = createServer({ keepAlive: true, keepAliveTimeout: 60_000 }, handler(which))
      server.headersTimeout = 65_000
      server.requestTimeout = 0
      server.maxRequestsPerSocket = 0
      server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port))
    })

  const polled = (): Polled => {
    const [a, b] = recv
    let receivedA = 0
    let receivedB = 0
    let both = 0
    let ackedMissing = acked === undefined ? -1 : 0
    for (let i = 0; i < n; i++) {
      const hasA = !Number.isNaN(a[i]!)
      const hasB = !Number.isNaN(b[i]!)
      if (hasA) receivedA++
      if (hasB) receivedB++
      if (hasA && hasB) both++
      else if (acked !== undefined && acked[i] === 1) ackedMissing++
    }
    return { receivedA, receivedB, both, ackedMissing, ...counts }
  }

  const report = (t0: number, tEnd: number): TargetReport => {
    const [a, b] = recv
    const latencies: Array<number> = []
    const completions: Array<number> = []
    let deliveredByEnd = 0
    let deliveredByEndPlus1s = 0
    let last = Number.NEGATIVE_INFINITY
    let deliveredUnacked = 0
    const timeline: Array<number> = []
    for (let i = 0; i < n; i++) {
      const o = offered[i]!
      for (const r of [a[i]!, b[i]!]) if (!Number.isNaN(r) && !Number.isNaN(o)) latencies.push(r - o)
      if (!Number.isNaN(a[i]!) && !Number.isNaN(b[i]!)) {
        const done = Math.max(a[i]!, b[i]!)
        if (!Number.isNaN(o)) completions.push(done - o)
        if (done <= tEnd) deliveredByEnd++
        if (done <= tEnd + 1000) deliveredByEndPlus1s++
        if (done > last) last = done
        const bucket = Math.min(2_999, Math.max(0, Math.floor((done - t0) / 100)))
        while (timeline.length <= bucket) timeline.push(0)
        timeline[bucket]!++
        if (acked !== undefined && acked[i] !== 1) deliveredUnacked++
      }
    }
    const sorted = Float64Array.from(latencies).sort()
    const sortedEvents = Float64Array.from(completions).sort()
    const cpu = process.cpuUsage(cpu0)
    return {
      ...polled(),
      deliveredByEnd,
      deliveredByEndPlus1s,
      lastCompletionAfterEndMs: Number.isFinite(last) ? last - tEnd : undefined,
      latency: {
        count: sorted.length,
        p50: at(sorted, 0.5),
        p90: at(sorted, 0.9),
        p99: at(sorted, 0.99),
        max: sorted.length > 0 ? sorted[sorted.length - 1]! : Number.NaN
      },
      eventLatency: {
        p50: at(sortedEvents, 0.5),
        p99: at(sortedEvents, 0.99),
        max: sortedEvents.length > 0 ? sortedEvents[sortedEvents.length - 1]! : Number.NaN
      },
      deliveredUnacked,
      cpuMs: (cpu.user + cpu.system) / 1000,
      timeline
    }
  }

  void Promise.all([listen(0), listen(1)]).then(([portA, portB]) => {
    process.on("message", (message: ToTargets) => {
      switch (message._tag) {
        case "begin":
          tag = message.tag
          prefix = `${tag}-`
          n = message.n
          recv = [new Float64Array(n).fill(Number.NaN), new Float64Array(n).fill(Number.NaN)]
          offered = new Float64Array(n).fill(Number.NaN)
          acked = undefined
          counts = { requests: 0, duplicates: 0, stray: 0, bad: 0 }
          cpu0 = process.cpuUsage()
          process.send!({ _tag: "polled", polled: polled() } satisfies FromTargets)
          break
        case "expect":
          acked = new Uint8Array(n).fill(1)
          for (const i of message.unacked) if (i >= 0 && i < n) acked[i] = 0
          process.send!({ _tag: "polled", polled: polled() } satisfies FromTargets)
          break
        case "poll":
          process.send!({ _tag: "polled", polled: polled() } satisfies FromTargets)
          break
        case "report":
          process.send!({ _tag: "report", report: report(message.t0, message.tEnd) } satisfies FromTargets)
          break
        case "stop":
          process.exit(0)
      }
    })
    process.on("disconnect", () => process.exit(0))
    process.send!({ _tag: "ready", portA, portB } satisfies FromTargets)
  })
}

if (process.argv[1]?.endsWith("targets.ts") && process.send !== undefined) child()
