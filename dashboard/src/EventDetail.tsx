import { useEffect, useState } from "preact/hooks"
import * as Api from "./api.js"
import { StatusBadge } from "./Events.js"
import { duration, localTime, relative } from "./format.js"

/** The trace id of the span the event was enqueued under (its W3C `traceparent` header), if any. */
const traceIdOf = (headers: Readonly<Record<string, string>>): string | undefined => {
  const value = Object.entries(headers).find(([k]) => k.toLowerCase() === "traceparent")?.[1]
  const match = value === undefined ? null : /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(value.trim())
  return match?.[1]
}

const Timeline = (props: { readonly delivery: Api.Delivery; readonly now: number }) => {
  const { delivery } = props
  const history = delivery.history
  const t0 = history.length > 0 ? new Date(history[0]!.startedAt).getTime() : 0
  const ends = history.map((a) => new Date(a.startedAt).getTime() + a.durationMs)
  const next = delivery.status === "pending" && delivery.nextAttemptAt !== undefined
    ? new Date(delivery.nextAttemptAt).getTime()
    : undefined
  // At least a second wide, so a short attempt is a short bar.
  const t1 = Math.max(t0 + 1000, ...ends, next ?? 0)
  const pct = (t: number) => `${(((t - t0) / (t1 - t0)) * 100).toFixed(2)}%`
  return (
    <div class="timeline-wrap">
      {history.length > 0 && (
        <div class="timeline-bars" aria-hidden="true">
          {history.map((a) => (
            <span
              key={a.number}
              class={`bar ${a.outcome === "success" ? "ok" : "bad"}`}
              style={{
                left: pct(new Date(a.startedAt).getTime()),
                width: `max(3px, ${(a.durationMs / (t1 - t0)) * 100}%)`
              }}
            />
          ))}
          {next !== undefined && <span class="bar next" style={{ left: pct(next) }} />}
        </div>
      )}
      <ol class="timeline" aria-label={`Attempts to ${delivery.target}`}>
        {history.map((a) => (
          <li key={a.number} class={a.outcome === "success" ? "ok" : "bad"} data-attempt={a.number}>
            <span class="n">#{a.number}</span>
            <time dateTime={a.startedAt}>{localTime(a.startedAt)}</time>
            <span>took {duration(a.durationMs)}</span>
            <span>{a.status !== undefined ? `HTTP ${a.status}` : "no response"}</span>
            <span class="outcome">{a.outcome}</span>
            {a.errorTag !== undefined && <span class="muted">{a.errorTag}</span>}
            {a.message !== undefined && <span class="message">{a.message}</span>}
            {a.retryAfterMs !== undefined && <span class="muted">Retry-After {duration(a.retryAfterMs)}</span>}
          </li>
        ))}
        {history.length === 0 && <li class="muted">No attempt yet.</li>}
        {next !== undefined && (
          <li class="next" data-attempt="next">
            <span class="n">next</span>
            <time dateTime={delivery.nextAttemptAt}>{localTime(delivery.nextAttemptAt)}</time>
            <span>({relative(delivery.nextAttemptAt, props.now)})</span>
          </li>
        )}
      </ol>
    </div>
  )
}

/** The pipeline's graph: a column per level (a step runs after every step to its left that it lists). */
const PipelineGraph = (props: { readonly deliveries: ReadonlyArray<Api.Delivery> }) => {
  const byTarget = new Map(props.deliveries.map((d) => [d.target, d]))
  const level = new Map<string, number>()
  const levelOf = (t: string, seen: ReadonlySet<string> = new Set()): number => {
    const known = level.get(t)
    if (known !== undefined) return known
    const after = (byTarget.get(t)?.after ?? []).filter((a) => byTarget.has(a) && !seen.has(a))
    const l = after.length === 0 ? 0 : 1 + Math.max(...after.map((a) => levelOf(a, new Set([...seen, t]))))
    level.set(t, l)
    return l
  }
  props.deliveries.forEach((d) => levelOf(d.target))
  const columns: Array<Array<Api.Delivery>> = []
  for (const d of props.deliveries) (columns[level.get(d.target)!] ??= []).push(d)
  const W = 170, H = 56, GX = 60, GY = 18
  const pos = new Map<string, { x: number; y: number }>()
  columns.forEach((col, i) => col.forEach((d, j) => pos.set(d.target, { x: i * (W + GX) + 4, y: j * (H + GY) + 4 })))
  const width = columns.length * (W + GX) - GX + 8
  const height = Math.max(...columns.map((c) => c.length)) * (H + GY) - GY + 8
  return (
    <figure class="pipeline">
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label="Pipeline graph">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="edge-head" />
          </marker>
        </defs>
        {props.deliveries.flatMap((d) =>
          d.after.filter((a) => pos.has(a)).map((a) => {
            const from = pos.get(a)!, to = pos.get(d.target)!
            return (
              <line
                key={`${a}->${d.target}`}
                class="edge"
                x1={from.x + W}
                y1={from.y + H / 2}
                x2={to.x}
                y2={to.y + H / 2}
                marker-end="url(#arrow)"
              />
            )
          })
        )}
        {props.deliveries.map((d) => {
          const p = pos.get(d.target)!
          return (
            <g key={d.target} class={`node status-${d.status}`} transform={`translate(${p.x},${p.y})`}>
              <rect width={W} height={H} rx="8" />
              <text x="10" y="22" class="node-name">{d.target}</text>
              <text x="10" y="42" class="node-state">
                {d.status.replace("_", " ")}
                {d.waiting > 0 ? ` · waiting for ${d.waiting}` : ""}
                {d.heldBy !== undefined ? ` · held by ${d.heldBy.target}` : ""}
              </text>
            </g>
          )
        })}
      </svg>
      <figcaption class="muted">
        Each step runs after the steps with an arrow to it. A step waiting for inputs is held; a step held by a dead
        input runs once that input is replayed and delivered.
      </figcaption>
    </figure>
  )
}

export const EventDetail = (props: { readonly id: string }) => {
  const [view, setView] = useState<Api.EventView | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const [now, setNow] = useState(Date.now())

  useEffect(() => {
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const load = async () => {
      try {
        const v = await Api.request<Api.EventView>(`/v1/events/${encodeURIComponent(props.id)}`)
        if (stopped) return
        setView(v)
        setError(undefined)
        setNow(Date.now())
        // Follow an event whose deliveries are still moving.
        if (v.deliveries.some((d) => d.status === "pending" || d.status === "scheduled" || d.status === "in_flight")) {
          timer = setTimeout(load, 1000)
        }
      } catch (err) {
        if (!stopped) setError(String((err as Error).message))
      }
    }
    load()
    return () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
    }
  }, [props.id])

  if (error !== undefined) {
    return (
      <section>
        <h1>Event {props.id}</h1>
        <p role="alert" class="error">{error}</p>
        <p><a href="#/events">All events</a></p>
      </section>
    )
  }
  if (view === undefined) return <p aria-busy="true">Loading…</p>
  const traceId = traceIdOf(view.headers)
  const pipeline = view.deliveries.some((d) => d.after.length > 0)
  const envelope = {
    id: view.id,
    type: view.type,
    ...(view.key !== undefined ? { key: view.key } : {}),
    createdAt: view.createdAt,
    headers: view.headers,
    payload: view.payload
  }
  return (
    <section aria-labelledby="event-title">
      <p><a href="#/events">← All events</a></p>
      <h1 id="event-title">Event <code>{view.id}</code></h1>
      <dl class="facts">
        <div><dt>Type</dt><dd>{view.type}</dd></div>
        {view.key !== undefined && <div><dt>Key</dt><dd>{view.key}</dd></div>}
        <div><dt>Created</dt><dd><time dateTime={view.createdAt}>{localTime(view.createdAt)}</time></dd></div>
        <div><dt>Enqueued</dt><dd><time dateTime={view.enqueuedAt}>{localTime(view.enqueuedAt)}</time></dd></div>
        <div><dt>Trace id</dt><dd data-figure="traceId">{traceId ?? <span class="muted">none (enqueued without a traceparent)</span>}</dd></div>
      </dl>
      {pipeline && (
        <section aria-labelledby="pipeline-title">
          <h2 id="pipeline-title">Pipeline</h2>
          <PipelineGraph deliveries={view.deliveries} />
        </section>
      )}
      <section aria-labelledby="deliveries-title">
        <h2 id="deliveries-title">Deliveries</h2>
        {view.deliveries.map((d) => (
          <article class="card delivery" key={d.id} data-delivery={d.target} aria-labelledby={`delivery-${d.id}`}>
            <header>
              <h3 id={`delivery-${d.id}`}>{d.target}</h3>
              <StatusBadge status={d.status} />
              {d.unconfigured === true && <span class="badge">not configured</span>}
            </header>
            <dl class="facts">
              <div><dt>Attempts</dt><dd>{d.totalAttempts}{d.attempts !== d.totalAttempts ? ` (${d.attempts} since the last replay)` : ""}</dd></div>
              <div><dt>Idempotency key</dt><dd><code>{d.idempotencyKey}</code></dd></div>
              {d.after.length > 0 && <div><dt>Runs after</dt><dd>{d.after.join(", ")}</dd></div>}
              {d.waiting > 0 && <div><dt>Waiting for</dt><dd>{d.waiting} input{d.waiting > 1 ? "s" : ""}</dd></div>}
              {d.heldBy !== undefined && <div><dt>Held by</dt><dd>{d.heldBy.target}: {d.heldBy.reason}</dd></div>}
              {d.deadReason !== undefined && <div><dt>Dead because</dt><dd>{d.deadReason}</dd></div>}
              {d.finishedAt !== undefined && <div><dt>Finished</dt><dd><time dateTime={d.finishedAt}>{localTime(d.finishedAt)}</time></dd></div>}
            </dl>
            <h4>Attempts</h4>
            <Timeline delivery={d} now={now} />
          </article>
        ))}
      </section>
      <section aria-labelledby="envelope-title">
        <h2 id="envelope-title">Envelope</h2>
        <pre class="json" tabIndex={0}>{JSON.stringify(envelope, null, 2)}</pre>
      </section>
    </section>
  )
}
