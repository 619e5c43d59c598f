import { useEffect, useRef, useState } from "preact/hooks"
import * as Api from "./api.js"
import { Pager, useTargetNames } from "./Events.js"
import { fromLocalInput, localTime } from "./format.js"

interface Filter {
  readonly target?: string
  readonly error?: string
  readonly from?: string
  readonly to?: string
}

interface Pending {
  readonly title: string
  readonly body: string
  readonly confirm: string
  readonly run: () => Promise<string>
}

/** Counts the dead letters matching a filter by paging through them (1000 a page). */
const countMatching = async (filter: Filter): Promise<number> => {
  let n = 0
  let cursor: string | undefined
  do {
    const page = await Api.request<Api.DeadLetterPage>(`/v1/dead-letters${Api.query({ ...filter, limit: 1000, cursor })}`)
    n += page.items.length
    cursor = page.next
  } while (cursor !== undefined)
  return n
}

const describeFilter = (filter: Filter): string => {
  const parts = [
    filter.target !== undefined ? `target ${filter.target}` : undefined,
    filter.error !== undefined ? `last error ${filter.error}` : undefined,
    filter.from !== undefined ? `dead since ${localTime(filter.from)}` : undefined,
    filter.to !== undefined ? `dead until ${localTime(filter.to)}` : undefined
  ].filter((p) => p !== undefined)
  return parts.length === 0 ? "no filter: every dead letter" : `matching ${parts.join(", ")}`
}

const initialFilter = (): Filter => {
  const params = new URLSearchParams(location.hash.split("?")[1] ?? "")
  const target = params.get("target")
  return target !== null && target !== "" ? { target } : {}
}

export const DeadLetters = () => {
  const targets = useTargetNames()
  const [filter, setFilter] = useState<Filter>(initialFilter)
  const [cursors, setCursors] = useState<ReadonlyArray<string | undefined>>([undefined])
  const [page, setPage] = useState<Api.DeadLetterPage | undefined>(undefined)
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set())
  const [error, setError] = useState<string | undefined>(undefined)
  const [notice, setNotice] = useState<string | undefined>(undefined)
  const [pending, setPending] = useState<Pending | undefined>(undefined)
  const [busy, setBusy] = useState(false)
  const [reload, setReload] = useState(0)
  const dialog = useRef<HTMLDialogElement>(null)
  const cursor = cursors[cursors.length - 1]

  useEffect(() => {
    let live = true
    Api.request<Api.DeadLetterPage>(`/v1/dead-letters${Api.query({ ...filter, limit: 100, cursor })}`).then(
      (p) => {
        if (!live) return
        setPage(p)
        setError(undefined)
        setSelected((s) => new Set([...s].filter((id) => p.items.some((d) => d.id === id))))
      },
      (err) => live && setError(String(err.message))
    )
    return () => {
      live = false
    }
  }, [filter, cursor, reload])

  useEffect(() => {
    if (pending !== undefined && dialog.current !== null && !dialog.current.open) dialog.current.showModal()
    if (pending === undefined && dialog.current?.open === true) dialog.current.close()
  }, [pending])

  const ask = (p: Pending) => {
    setNotice(undefined)
    setPending(p)
  }
  const confirm = async () => {
    if (pending === undefined) return
    setBusy(true)
    try {
      setNotice(await pending.run())
    } catch (err) {
      setNotice(`Failed: ${String((err as Error).message)}`)
    } finally {
      setBusy(false)
      setPending(undefined)
      setReload((n) => n + 1)
    }
  }

  const plural = (n: number) => `${n} dead letter${n === 1 ? "" : "s"}`
  const replayIds = (ids: ReadonlyArray<string>) => async () => {
    let n = 0
    for (const id of ids) {
      await Api.request<{ replayed: number }>(`/v1/dead-letters/${encodeURIComponent(id)}/replay`, { method: "POST" })
      n++
    }
    setSelected(new Set())
    return `Replayed ${plural(n)}.`
  }
  const purgeIds = (ids: ReadonlyArray<string>) => async () => {
    let n = 0
    for (const id of ids) {
      await Api.request<void>(`/v1/dead-letters/${encodeURIComponent(id)}`, { method: "DELETE" })
      n++
    }
    setSelected(new Set())
    return `Purged ${plural(n)}.`
  }
  const replayAll = async () => {
    setBusy(true)
    try {
      const n = await countMatching(filter)
      ask({
        title: "Replay all matching",
        body: `Replay ${plural(n)} (${describeFilter(filter)})? Each goes back to pending with the same idempotency key.`,
        confirm: `Replay ${n}`,
        run: async () => {
          const r = await Api.request<{ replayed: number }>("/v1/dead-letters:replay", { method: "POST", json: filter })
          setSelected(new Set())
          return `Replayed ${plural(r.replayed)}.`
        }
      })
    } catch (err) {
      setError(String((err as Error).message))
    } finally {
      setBusy(false)
    }
  }

  const submit = (e: Event) => {
    e.preventDefault()
    const form = new FormData(e.target as HTMLFormElement)
    const value = (name: string) => {
      const v = String(form.get(name) ?? "").trim()
      return v === "" ? undefined : v
    }
    const from = fromLocalInput(value("from") ?? "")
    const to = fromLocalInput(value("to") ?? "")
    const target = value("target")
    const errorLabel = value("error")
    setFilter({
      ...(target !== undefined ? { target } : {}),
      ...(errorLabel !== undefined ? { error: errorLabel } : {}),
      ...(from !== undefined ? { from } : {}),
      ...(to !== undefined ? { to } : {})
    })
    setCursors([undefined])
    setSelected(new Set())
  }

  const items = page?.items ?? []
  const allSelected = items.length > 0 && items.every((d) => selected.has(d.id))
  const toggle = (id: string) =>
    setSelected((s) => {
      const next = new Set(s)
      if (next.has(id)) next.delete(id)
      else next.add(id)
      return next
    })

  return (
    <section aria-labelledby="dlq-title">
      <h1 id="dlq-title">Dead letters</h1>
      <form class="filters" onSubmit={submit} role="search" aria-label="Filter dead letters">
        <label>
          Target
          <select name="target" value={filter.target ?? ""}>
            <option value="">any</option>
            {[...new Set([...targets, ...(filter.target !== undefined ? [filter.target] : [])])].map((t) => (
              <option key={t} value={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          Last error
          <input name="error" type="text" placeholder="http_422, timeout, …" value={filter.error ?? ""} />
        </label>
        <label>
          Dead since
          <input name="from" type="datetime-local" />
        </label>
        <label>
          Dead until
          <input name="to" type="datetime-local" />
        </label>
        <button type="submit">Filter</button>
      </form>
      <div class="actions" role="toolbar" aria-label="Dead letter actions">
        <button
          type="button"
          disabled={selected.size === 0 || busy}
          onClick={() =>
            ask({
              title: "Replay selected",
              body: `Replay the ${plural(selected.size)} selected?`,
              confirm: `Replay ${selected.size}`,
              run: replayIds([...selected])
            })}
        >
          Replay selected…
        </button>
        <button type="button" disabled={busy || items.length === 0} onClick={replayAll}>Replay all matching…</button>
        <button
          type="button"
          class="danger"
          disabled={selected.size === 0 || busy}
          onClick={() =>
            ask({
              title: "Purge selected",
              body: `Delete the ${plural(selected.size)} selected and their attempt history? This cannot be undone.`,
              confirm: `Purge ${selected.size}`,
              run: purgeIds([...selected])
            })}
        >
          Purge selected…
        </button>
      </div>
      {notice !== undefined && <p role="status" class="notice">{notice}</p>}
      {error !== undefined && <p role="alert" class="error">{error}</p>}
      {page === undefined
        ? <p aria-busy="true">Loading…</p>
        : items.length === 0
        ? <p>No dead letter matches.</p>
        : (
          <div class="table-wrap">
            <table class="dead-letters">
              <caption class="visually-hidden">Dead letters, oldest first</caption>
              <thead>
                <tr>
                  <th scope="col">
                    <input
                      type="checkbox"
                      aria-label="Select every dead letter on this page"
                      checked={allSelected}
                      onChange={() => setSelected(allSelected ? new Set() : new Set(items.map((d) => d.id)))}
                    />
                  </th>
                  <th scope="col">Target</th>
                  <th scope="col">Event</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Died</th>
                  <th scope="col"><span class="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {items.map((d) => (
                  <tr key={d.id} data-dead-letter={d.id}>
                    <td>
                      <input
                        type="checkbox"
                        aria-label={`Select dead letter ${d.id} (${d.target}, event ${d.eventId})`}
                        checked={selected.has(d.id)}
                        onChange={() => toggle(d.id)}
                      />
                    </td>
                    <td>{d.target}{d.shadow === true && <span class="badge">shadow</span>}</td>
                    <td>
                      <a href={`#/events/${encodeURIComponent(d.eventId)}`}>{d.eventId}</a>
                      <div class="muted">{d.eventType}</div>
                    </td>
                    <td>
                      {d.reason}
                      {d.lastErrorMessage !== undefined && <div class="muted">{d.lastErrorMessage}</div>}
                    </td>
                    <td>{d.totalAttempts}</td>
                    <td><time dateTime={d.deadAt}>{localTime(d.deadAt)}</time></td>
                    <td>
                      <div class="row-actions">
                      <button
                        type="button"
                        aria-label={`Replay… dead letter ${d.id} (${d.target}, event ${d.eventId})`}
                        onClick={() =>
                          ask({
                            title: "Replay",
                            body: `Replay the delivery of event ${d.eventId} to ${d.target}?`,
                            confirm: "Replay 1",
                            run: replayIds([d.id])
                          })}
                      >
                        Replay…
                      </button>
                      <button
                        type="button"
                        class="danger"
                        aria-label={`Purge… dead letter ${d.id} (${d.target}, event ${d.eventId})`}
                        onClick={() =>
                          ask({
                            title: "Purge",
                            body: `Delete the dead delivery of event ${d.eventId} to ${d.target} and its history?`,
                            confirm: "Purge 1",
                            run: purgeIds([d.id])
                          })}
                      >
                        Purge…
                      </button>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      <Pager cursors={cursors} setCursors={setCursors} next={page?.next} back="Previous" forward="Next" />
      <dialog ref={dialog} aria-labelledby="confirm-title" onClose={() => setPending(undefined)}>
        {pending !== undefined && (
          <form method="dialog" onSubmit={(e) => {
            e.preventDefault()
            confirm()
          }}>
            <h2 id="confirm-title">{pending.title}</h2>
            <p>{pending.body}</p>
            <div class="dialog-actions">
              <button type="button" class="secondary" onClick={() => setPending(undefined)}>Cancel</button>
              <button type="submit" disabled={busy}>{pending.confirm}</button>
            </div>
          </form>
        )}
      </dialog>
    </section>
  )
}
