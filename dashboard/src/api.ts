/**
 * The dashboard's one way to the server: the same `/v1` API as every client, with the operator's
 * key (kept in this module's memory only: never in a URL, a cookie or storage) as `Authorization`.
 */

/** `scheduled`: pending, not due yet (a later delivery, `deliverAt`); the others as the store keeps them. */
export type DeliveryState = "pending" | "scheduled" | "in_flight" | "delivered" | "dead" | "compensated"

export interface Recent {
  readonly windowSeconds: number
  readonly attempts: number
  readonly successes: number
  readonly perSecond: number
  readonly latencyMs?: { readonly p50: number; readonly p90: number; readonly p99: number }
}

export interface TargetView {
  readonly name: string
  readonly circuit: {
    readonly state: "closed" | "open" | "half_open"
    readonly consecutiveFailures?: number
    readonly openUntil?: string
  }
  readonly inFlight: number
  readonly waiting: number
  readonly queue?: QueueGauges
  readonly recent: Recent
}

export interface TargetsView {
  readonly targets: ReadonlyArray<TargetView>
  readonly orphans: ReadonlyArray<{ readonly name: string; readonly queue: QueueGauges }>
}

/** `GET /v1/targets:live`: the queue as gauges (pending, in flight, dead), read cheaply by the server. */
export interface QueueGauges {
  readonly pending: number
  readonly inFlight: number
  readonly dead: number
}

/** The path a live view polls. */
export const livePath = "/v1/targets:live"

export interface EventListItem {
  readonly id: string
  readonly type: string
  readonly enqueuedAt: string
  readonly deliveries: ReadonlyArray<{ readonly id: string; readonly target: string; readonly status: DeliveryState }>
}

export interface EventPage {
  readonly items: ReadonlyArray<EventListItem>
  readonly next?: string
}

export interface Attempt {
  readonly number: number
  readonly startedAt: string
  readonly durationMs: number
  readonly outcome: string
  readonly status?: number
  readonly errorTag?: string
  readonly message?: string
  readonly retryAfterMs?: number
  readonly workerId?: string
}

export interface Delivery {
  readonly id: string
  readonly target: string
  readonly idempotencyKey: string
  readonly status: DeliveryState
  readonly attempts: number
  readonly totalAttempts: number
  readonly nextAttemptAt?: string
  readonly leaseExpiresAt?: string
  readonly lastError?: string
  readonly lastErrorMessage?: string
  readonly deadReason?: string
  readonly finishedAt?: string
  readonly after: ReadonlyArray<string>
  readonly waiting: number
  readonly heldBy?: { readonly target: string; readonly reason: string }
  readonly unconfigured?: true
  readonly history: ReadonlyArray<Attempt>
}

export interface EventView {
  readonly id: string
  readonly type: string
  readonly key?: string
  readonly payload: unknown
  readonly headers: Readonly<Record<string, string>>
  readonly createdAt: string
  readonly enqueuedAt: string
  readonly deliveries: ReadonlyArray<Delivery>
}

export interface DeadLetter {
  readonly id: string
  readonly eventId: string
  readonly eventType: string
  readonly target: string
  readonly idempotencyKey: string
  readonly reason: string
  readonly lastError?: string
  readonly lastErrorMessage?: string
  readonly attempts: number
  readonly totalAttempts: number
  readonly deadAt: string
  readonly enqueuedAt: string
  readonly shadow?: true
}

export interface DeadLetterPage {
  readonly items: ReadonlyArray<DeadLetter>
  readonly next?: string
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

let key: string | undefined
const unauthorizedListeners = new Set<() => void>()

export const setKey = (value: string | undefined): void => {
  key = value
}
export const hasKey = (): boolean => key !== undefined

/** Called when the server answers 401 (no key, or the key stopped working). */
export const onUnauthorized = (listener: () => void): () => void => {
  unauthorizedListeners.add(listener)
  return () => unauthorizedListeners.delete(listener)
}

export const request = async <A>(path: string, init: { method?: string; json?: unknown } = {}): Promise<A> => {
  const headers: Record<string, string> = { accept: "application/json" }
  if (key !== undefined) headers["authorization"] = `Bearer ${key}`
  if (init.json !== undefined) headers["content-type"] = "application/json"
  const response = await fetch(path, {
    method: init.method ?? "GET",
    headers,
    credentials: "omit",
    cache: "no-store",
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {})
  })
  const text = await response.text()
  let body: any = undefined
  try {
    body = text === "" ? undefined : JSON.parse(text)
  } catch {
    body = undefined
  }
  if (!response.ok) {
    if (response.status === 401) { for (const listener of unauthorizedListeners) listener() }
    const error = body?.error
    throw new ApiError(
      response.status,
      typeof error?.code === "string" ? error.code : "http_error",
      typeof error?.message === "string" ? error.message : `HTTP ${response.status}`
    )
  }
  return body as A
}

/** Query string of the defined, non-empty values. */
export const query = (params: Record<string, string | number | undefined>): string => {
  const entries = Object.entries(params).filter((e): e is [string, string | number] =>
    e[1] !== undefined && e[1] !== ""
  )
  return entries.length === 0 ? "" : `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString()}`
}
