import { useEffect, useRef, useState } from "preact/hooks"
import * as Api from "./api.js"
import { Chart, type Series } from "./Chart.js"
import { duration, localTime, rate, relative, stateLabel } from "./format.js"

/** How often the overview reads `GET /v1/targets:live`, and how much history the charts keep. */
const pollMs = 1000
const keepSeconds = 300

const emptySeries = (): Series => ({ t: [], delivered: [], failed: [], p99: [] })

const push = (series: Series, at: number, target: Api.TargetView): Series => {
  const w = target.recent.windowSeconds > 0 ? target.recent.windowSeconds : 1
  const next: Series = {
    t: [...series.t, at],
    delivered: [...series.delivered, target.recent.successes / w],
    failed: [...series.failed, (target.recent.attempts - target.recent.successes) / w],
    p99: [...series.p99, target.recent.latencyMs?.p99 ?? null]
  }
  const drop = next.t.findIndex((t) => t >= at - keepSeconds)
  return drop > 0
    ? { t: next.t.slice(drop), delivered: next.delivered.slice(drop), failed: next.failed.slice(drop), p99: next.p99.slice(drop) }
    : next
}

const Circuit = (props: { readonly circuit: Api.TargetView["circuit"]; readonly now: number }) => {
  const { circuit } = props
  return (
    <span class={`badge circuit-${circuit.state}`} data-circuit={circuit.state}>
      {stateLabel(circuit.state)}
      {circuit.state === "open" && circuit.openUntil !== undefined && (
        <span class="hint">, next probe {relative(circuit.openUntil, props.now)}</span>
      )}
      {circuit.state === "closed" && (circuit.consecutiveFailures ?? 0) > 0 && (
        <span class="hint">, {circuit.consecutiveFailures} failing in a row</span>
      )}
    </span>
  )
}

const TargetCard = (props: { readonly target: Api.TargetView; readonly series: Series; readonly now: number }) => {
  const { target } = props
  const w = target.recent.windowSeconds > 0 ? target.recent.windowSeconds : 1
  const id = `target-${target.name.replace(/[^A-Za-z0-9_-]/g, "_")}`
  return (
    <article class="card target" aria-labelledby={id} data-target={target.name}>
      <header>
        <h2 id={id}>{target.name}</h2>
        <Circuit circuit={target.circuit} now={props.now} />
      </header>
      <dl class="figures">
        <div><dt>In flight</dt><dd data-figure="inFlight">{target.inFlight}</dd></div>
        <div><dt>Waiting</dt><dd data-figure="waiting">{target.waiting}</dd></div>
        <div><dt>Pending</dt><dd data-figure="pending">{target.queue?.pending ?? "—"}</dd></div>
        <div>
          <dt>Dead</dt>
          <dd data-figure="dead">
            {target.queue !== undefined && target.queue.dead > 0
              ? <a href={`#/dead-letters?target=${encodeURIComponent(target.name)}`}>{target.queue.dead}</a>
              : target.queue?.dead ?? "—"}
          </dd>
        </div>
        <div><dt>Delivered/s</dt><dd data-figure="deliveredPerSecond">{rate(target.recent.successes / w)}</dd></div>
        <div>
          <dt>Latency p50 / p99</dt>
          <dd data-figure="latency">
            {target.recent.latencyMs === undefined
              ? "—"
              : `${duration(target.recent.latencyMs.p50)} / ${duration(target.recent.latencyMs.p99)}`}
          </dd>
        </div>
      </dl>
      <Chart series={props.series} label={`${target.name}: delivered and failed per second, p99 latency, since this page opened`} />
    </article>
  )
}

/** The operator events' types (src/OperatorEvents.ts), with their labels. */
const operatorTypes: ReadonlyArray<readonly [string, string]> = [
  ["fanout.target.circuit_opened", "circuit opened"],
  ["fanout.target.circuit_closed", "circuit closed"],
  ["fanout.delivery.dead", "delivery dead"],
  ["fanout.target.dlq_threshold", "dead letters over threshold"]
]

/** The latest operator events stored, newest first (a search per type, merged). */
const readActivity = async (): Promise<ReadonlyArray<Api.EventListItem>> => {
  const pages = await Promise.all(
    operatorTypes.map(([type]) => Api.request<Api.EventPage>(`/v1/events${Api.query({ type, limit: 10 })}`))
  )
  return pages.flatMap((p) => p.items).sort((a, b) => b.enqueuedAt.localeCompare(a.enqueuedAt)).slice(0, 15)
}

const Activity = (props: { readonly items: ReadonlyArray<Api.EventListItem> | undefined }) => (
  <section aria-labelledby="activity-title" class="activity">
    <h2 id="activity-title">Activity</h2>
    <p class="muted">
      Operator events stored on this server, newest first: empty unless the configuration's <code>operatorEvents</code>
      {" "}is set and a route takes their types.
    </p>
    {props.items === undefined
      ? <p aria-busy="true">Loading…</p>
      : props.items.length === 0
      ? <p>Nothing yet.</p>
      : (
        <ol class="feed">
          {props.items.map((e) => (
            <li key={e.id} data-activity={e.type}>
              <time dateTime={e.enqueuedAt}>{localTime(e.enqueuedAt)}</time>{" "}
              <a href={`#/events/${encodeURIComponent(e.id)}`}>
                {operatorTypes.find(([t]) => t === e.type)?.[1] ?? e.type}
              </a>
            </li>
          ))}
        </ol>
      )}
  </section>
)

export const Overview = () => {
  const [data, setData] = useState<Api.TargetsView | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const [now, setNow] = useState(Date.now())
  const history = useRef(new Map<string, Series>())
  const [activity, setActivity] = useState<ReadonlyArray<Api.EventListItem> | undefined>(undefined)

  useEffect(() => {
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    let ticks = 0
    const tick = async () => {
      // The activity feed every fifth reading (four small searches).
      if (ticks++ % 5 === 0) readActivity().then((items) => !stopped && setActivity(items), () => {})
      try {
        const view = await Api.request<Api.TargetsView>(Api.livePath)
        if (stopped) return
        const at = Date.now() / 1000
        for (const target of view.targets) {
          history.current.set(target.name, push(history.current.get(target.name) ?? emptySeries(), at, target))
        }
        setData(view)
        setError(undefined)
      } catch (err) {
        if (!stopped) setError(String((err as Error).message))
      }
      setNow(Date.now())
      if (!stopped) timer = setTimeout(tick, pollMs)
    }
    tick()
    return () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
    }
  }, [])

  return (
    <section aria-labelledby="overview-title">
      <h1 id="overview-title">Overview</h1>
      <p class="muted">
        Every target this server delivers to, read from <code>GET /v1/targets:live</code> every second. Rates and latency are
        this process's attempts over the last {Math.round(data?.targets[0]?.recent.windowSeconds ?? 60)} s; the charts show what
        was read since this page opened (up to {keepSeconds / 60} minutes).
      </p>
      {error !== undefined && <p role="alert" class="error">Could not read the targets: {error}</p>}
      {data === undefined
        ? <p aria-busy="true">Loading…</p>
        : (
          <div class="cards" aria-live="polite">
            {data.targets.map((target) => (
              <TargetCard
                key={target.name}
                target={target}
                series={history.current.get(target.name) ?? emptySeries()}
                now={now}
              />
            ))}
          </div>
        )}
      <Activity items={activity} />
      {data !== undefined && data.orphans.length > 0 && (
        <section aria-labelledby="orphans-title">
          <h2 id="orphans-title">Targets no longer configured</h2>
          <p class="muted">The store holds deliveries for these; no worker claims them until the target is configured again.</p>
          <table>
            <thead><tr><th scope="col">Target</th><th scope="col">Pending</th><th scope="col">Dead</th></tr></thead>
            <tbody>
              {data.orphans.map((o) => (
                <tr key={o.name}><td>{o.name}</td><td>{o.queue.pending}</td><td>{o.queue.dead}</td></tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </section>
  )
}
