/**
 * The state of an event's delivery graph (durable pipelines), as the API and the CLI show it:
 * which held deliveries can make no progress because an input (or an input's input) is dead.
 *
 * @since 0.1.0
 */
import type * as Store from "../Store.js"

/**
 * Why a delivery is held for good (until a replay): `target` is the dead input at the root of the
 * chain, `reason` why it died (its dead reason and last outcome, e.g. `permanent (http_400)`), or
 * `purged` when an input's row is gone while the delivery still waits on it (a store that did not
 * delete a purged input's dependents: nothing will ever release the delivery then).
 *
 * @since 0.1.0
 * @category models
 */
export interface HeldBy {
  readonly target: string
  readonly reason: string
}

const delivered = (status: Store.Status): boolean => status === "delivered" || status === "compensated"

/** Why a delivery died: its dead reason, with the last attempt's outcome (`permanent (http_400)`). */
const reasonOf = (d: Store.DeliveryStatus): string => {
  const reason = d.deadReason ?? "dead"
  return d.lastError !== undefined && d.lastError !== reason ? `${reason} (${d.lastError})` : reason
}

/**
 * For each delivery (by target) that is pending with inputs not yet delivered, and that waits,
 * directly or through other held deliveries, on a dead one: that dead input. A delivery absent from
 * the map is not blocked (it is plain, due, in flight, finished, or waiting on inputs that may still
 * be delivered).
 *
 * @since 0.1.0
 * @category graph
 */
export const heldBy = (deliveries: ReadonlyArray<Store.DeliveryStatus>): ReadonlyMap<string, HeldBy> => {
  const byTarget = new Map(deliveries.map((d) => [d.target, d]))
  const memo = new Map<string, HeldBy | undefined>()
  const visit = (d: Store.DeliveryStatus, path: ReadonlySet<string>): HeldBy | undefined => {
    if (memo.has(d.target)) return memo.get(d.target)
    let found: HeldBy | undefined
    if (d.status === "pending" && d.waiting > 0 && !path.has(d.target)) {
      const next = new Set(path).add(d.target)
      for (const name of d.after ?? []) {
        const input = byTarget.get(name)
        if (input === undefined) continue
        found = input.status === "dead"
          ? { target: input.target, reason: reasonOf(input) }
          : visit(input, next)
        if (found !== undefined) break
      }
      if (found === undefined) {
        // An input whose row is gone while still counted as waiting (purged without its dependents,
        // which the store contract forbids): nothing will ever deliver it. Defensive only.
        const present = (d.after ?? []).filter((name) => byTarget.has(name))
        const undelivered = present.filter((name) => !delivered(byTarget.get(name)!.status)).length
        const missing = (d.after ?? []).find((name) => !byTarget.has(name))
        if (missing !== undefined && d.waiting > undelivered) found = { target: missing, reason: "purged" }
      }
    }
    memo.set(d.target, found)
    return found
  }
  const out = new Map<string, HeldBy>()
  for (const d of deliveries) {
    const held = visit(d, new Set())
    if (held !== undefined) out.set(d.target, held)
  }
  return out
}

/**
 * Finished (`delivered`, `dead`, `compensated`).
 *
 * @since 0.1.0
 * @category graph
 */
export const isTerminal = (status: Store.Status): boolean =>
  status === "delivered" || status === "dead" || status === "compensated"

/**
 * Nothing more will happen to the event without an operator: every delivery is finished, or held
 * by a dead input (blocked until that input is replayed and delivered).
 *
 * @since 0.1.0
 * @category graph
 */
export const isSettled = (deliveries: ReadonlyArray<Store.DeliveryStatus>): boolean => {
  const held = heldBy(deliveries)
  return deliveries.every((d) => isTerminal(d.status) || held.has(d.target))
}
