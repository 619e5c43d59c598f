/**
 * Whether a clock is Effect's live one (`TestClock` is another): the fast paths that use a real
 * timer or the event loop (Delivery's timeouts, the I/O scheduler) apply only under it.
 *
 * @internal
 */
import { Clock } from "effect"

const LiveClock = Clock.make().constructor

export const isLive = (clock: Clock.Clock): boolean => clock.constructor === LiveClock
