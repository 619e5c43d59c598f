import { useEffect, useState } from "preact/hooks"
import * as Api from "./api.js"
import { fromLocalInput, localTime, stateLabel } from "./format.js"

const statuses: ReadonlyArray<Api.DeliveryState> = ["pending", "in_flight", "delivered", "dead", "compensated"]

/** A `datetime-local` value (browser time zone) for an ISO instant. */
const toLocalInput = (iso: string | undefined): string => {
  if (iso === undefined) return ""
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ""
  const pad = (n: number) => String(n).padStart(2, "0")
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}

/**
 * The two buttons of a cursor-paged list: back to the previous page, on to the next one. `cursors`
 * holds the cursor of every page seen so far (the first page's is undefined).
 */
export const Pager = <C,>(props: {
  readonly cursors: ReadonlyArray<C>
  readonly setCursors: (cursors: Array<C>) => void
  readonly next: C | undefined
  readonly back: string
  readonly forward: string
}) => {
  const { cursors, next, setCursors } = props
  return (
    <div class="pager">
      <button type="button" class="secondary" disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>
        {props.back}
      </button>
      <button
        type="button"
        class="secondary"
        disabled={next === undefined}
        onClick={() => next !== undefined && setCursors([...cursors, next])}
      >
        {props.forward}
      </button>
    </div>
  )
}

export const StatusBadge = (props: { readonly status: string }) => (
  <span class={`badge status-${props.status}`}>{stateLabel(props.status)}</span>
)

export const useTargetNames = (): ReadonlyArray<string> => {
  const [names, setNames] = useState<ReadonlyArray<string>>([])
  useEffect(() => {
    Api.request<Api.TargetsView>(Api.livePath).then(
      (view) => setNames([...view.targets.map((t) => t.name), ...view.orphans.map((o) => o.name)]),
      () => setNames([])
    )
  }, [])
  return names
}

export const Events = (props: { readonly search: string }) => {
  const params = new URLSearchParams(props.search)
  const filter = {
    type: params.get("type") ?? "",
    status: params.get("status") ?? "",
    target: params.get("target") ?? "",
    since: params.get("since") ?? undefined,
    until: params.get("until") ?? undefined
  }
  const targets = useTargetNames()
  const [cursors, setCursors] = useState<ReadonlyArray<string | undefined>>([undefined])
  const [page, setPage] = useState<Api.EventPage | undefined>(undefined)
  const [error, setError] = useState<string | undefined>(undefined)
  const cursor = cursors[cursors.length - 1]

  useEffect(() => setCursors([undefined]), [props.search])
  useEffect(() => {
    let live = true
    setError(undefined)
    Api.request<Api.EventPage>(`/v1/events${Api.query({ ...filter, limit: 50, cursor })}`).then(
      (p) => live && setPage(p),
      (err) => live && setError(String(err.message))
    )
    return () => {
      live = false
    }
  }, [props.search, cursor])

  const submit = (e: Event) => {
    e.preventDefault()
    const form = new FormData(e.target as HTMLFormElement)
    const value = (name: string) => String(form.get(name) ?? "")
    location.hash = `#/events${
      Api.query({
        type: value("type").trim(),
        status: value("status"),
        target: value("target"),
        since: fromLocalInput(value("since")),
        until: fromLocalInput(value("until"))
      })
    }`
  }

  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      <form class="filters" onSubmit={submit} role="search" aria-label="Find events">
        <label>
          Type
          <input name="type" type="text" value={filter.type} placeholder="order.placed" />
        </label>
        <label>
          Status
          <select name="status" value={filter.status}>
            <option value="">any</option>
            {statuses.map((s) => <option key={s} value={s}>{stateLabel(s)}</option>)}
          </select>
        </label>
        <label>
          Target
          <select name="target" value={filter.target}>
            <option value="">any</option>
            {[...new Set([...targets, ...(filter.target !== "" ? [filter.target] : [])])].map((t) => (
              <option key={t} value={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          Since
          <input name="since" type="datetime-local" value={toLocalInput(filter.since)} />
        </label>
        <label>
          Until
          <input name="until" type="datetime-local" value={toLocalInput(filter.until)} />
        </label>
        <button type="submit">Search</button>
      </form>
      {error !== undefined && <p role="alert" class="error">{error}</p>}
      {page === undefined
        ? <p aria-busy="true">Loading…</p>
        : page.items.length === 0
        ? <p>No event matches.</p>
        : (
          <div class="table-wrap">
            <table class="events">
              <caption class="visually-hidden">Events, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col">Type</th>
                  <th scope="col">Enqueued</th>
                  <th scope="col">Deliveries</th>
                </tr>
              </thead>
              <tbody>
                {page.items.map((item) => (
                  <tr key={item.id} data-event={item.id}>
                    <td><a href={`#/events/${encodeURIComponent(item.id)}`}>{item.id}</a></td>
                    <td>{item.type}</td>
                    <td><time dateTime={item.enqueuedAt}>{localTime(item.enqueuedAt)}</time></td>
                    <td>
                      <ul class="inline">
                        {item.deliveries.map((d) => (
                          <li key={d.id}>{d.target} <StatusBadge status={d.status} /></li>
                        ))}
                      </ul>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      <Pager cursors={cursors} setCursors={setCursors} next={page?.next} back="Newer" forward="Older" />
    </section>
  )
}
