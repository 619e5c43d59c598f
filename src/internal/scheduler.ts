/**
 * The scheduler Fanout runs its deliveries on.
 *
 * Effect's default scheduler (`MixedScheduler(2048)`) drains its queue in microtasks and
 * yields to the event loop (a `setTimeout(0)`) only after 2,048 consecutive drains. Under a
 * steady stream of deliveries the microtask queue hardly ever empties, so undici's socket
 * callbacks (the answers the fibers wait for) are handled late and in bursts: measured with
 * `npm run bench -- direct --pin` (targets answer at once, 64 events in flight), Fanout's
 * `send` reached 1,200–2,200 events/s at about 0.45 ms CPU per event, the core half idle; with
 * this scheduler, 3,000–3,100 events/s at the same CPU per event. This one runs each batch of
 * tasks in a `setImmediate`, after the I/O callbacks of that turn of the event loop.
 *
 * @internal
 */
import { Effect, Scheduler } from "effect"
import { isLive } from "./liveClock.js"

export const ioScheduler: Scheduler.Scheduler = Scheduler.makeBatched((run) => setImmediate(run))

/**
 * Runs `effect` (and the fibers it forks) on {@link ioScheduler}, under Effect's live clock. Under
 * any other clock (`TestClock`: the test kit's simulations, the project's property tests) it
 * keeps the fiber's scheduler: virtual time advances by letting every fiber run until it
 * suspends, which a scheduler that waits for the event loop would not do.
 */
export const onIoScheduler = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.clockWith((clock) => isLive(clock) ? Effect.withScheduler(effect, ioScheduler) : effect)
