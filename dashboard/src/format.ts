/** Timestamps in the browser's time zone; durations for people. */

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit"
})

export const localTime = (iso: string | undefined): string => {
  if (iso === undefined) return "—"
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? iso : dateTime.format(date)
}

export const duration = (ms: number): string => {
  if (!Number.isFinite(ms)) return "—"
  const abs = Math.abs(ms)
  if (abs < 1000) return `${Math.round(ms)} ms`
  if (abs < 60_000) return `${(ms / 1000).toFixed(abs < 10_000 ? 1 : 0)} s`
  if (abs < 3_600_000) {
    const m = Math.floor(abs / 60_000)
    const s = Math.round((abs % 60_000) / 1000)
    return `${m} min${s > 0 ? ` ${s} s` : ""}`
  }
  const h = Math.floor(abs / 3_600_000)
  const m = Math.round((abs % 3_600_000) / 60_000)
  return `${h} h${m > 0 ? ` ${m} min` : ""}`
}

/** "in 3.2 s" / "4 min ago". */
export const relative = (iso: string | undefined, now: number): string => {
  if (iso === undefined) return "—"
  const delta = new Date(iso).getTime() - now
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`
}

export const rate = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2))

/** A `datetime-local` input's value as an ISO instant (in the browser's time zone), or undefined. */
export const fromLocalInput = (value: string): string | undefined => {
  if (value === "") return undefined
  const date = new Date(value)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

export const stateLabel = (state: string): string => state.replace("_", " ")
