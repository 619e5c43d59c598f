/**
 * A Redis Streams source (`ioredis`): a consumer group read with `XREADGROUP`, `XACK` after store.
 *
 * - The group is created when missing (`XGROUP CREATE … MKSTREAM`, from `start`, default `0`: the
 *   entries already in the stream too); an existing one is used as it is.
 * - The entry's `body` field holds the message (`field` names another); an entry without it, or
 *   one that can never become an event, is dead-lettered: copied to the `deadLetter` stream
 *   (default `<stream>:dead`, fields `id`, `body`, `reason`) and `XACK`ed, in one `MULTI`.
 * - A transient store failure leaves the entry pending; it is read again (from this consumer's
 *   pending list) after the delay.
 * - This consumer's own pending entries (a previous run under the same `consumer` name) are read
 *   first; those of a dead consumer are reclaimed with `XAUTOCLAIM` once idle for `minIdle`.
 * - Event id: `<stream>:<entry id>`. Lag: the group's `lag` (entries not yet delivered to it).
 * - Two connections: one for the blocking reads, one for acks and the rest. A lost connection
 *   fails the stream and {@link Source.run} reconnects with backoff.
 *
 * @since 0.1.0
 */
import { hostname } from "node:os"
import { Chunk, Clock, Duration, Effect, Redacted, Stream } from "effect"
import { Redis } from "ioredis"
import * as Source from "../Source.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly name: string
  /** `redis://[:password@]host:port[/db]` (redacted: it may hold a password). */
  readonly url: Redacted.Redacted<string>
  readonly stream: string
  readonly group: string
  /** This consumer's name in the group (default: the host name). Keep it stable across restarts. */
  readonly consumer?: string | undefined
  /** The entry field holding the message (default `body`). */
  readonly field?: string | undefined
  /** Where a new group starts: `0` (default, every entry) or `$` (new entries only). */
  readonly start?: string | undefined
  /** Entries read at once (default 100). */
  readonly count?: number | undefined
  /** A dead consumer's entries are reclaimed once idle this long (default 60 s). */
  readonly minIdle?: Duration.DurationInput | undefined
  /** The dead-letter stream (default `<stream>:dead`). */
  readonly deadLetter?: string | undefined
}

const errorMessage = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const text = (value: unknown): string => (Buffer.isBuffer(value) ? value.toString("utf8") : String(value))

interface Entry {
  readonly id: string
  readonly fields: ReadonlyArray<unknown> | null
}

/** `[[id, [field, value, …]], …]` (a deleted pending entry has `null` fields). */
const entriesOf = (raw: unknown): Array<Entry> =>
  Array.isArray(raw)
    ? raw.flatMap((e): Array<Entry> =>
      Array.isArray(e) && e.length >= 2 ? [{ id: text(e[0]), fields: Array.isArray(e[1]) ? e[1] : null }] : []
    )
    : []

/** An `XREADGROUP` reply: `[[stream, entries]]` or `null`. */
const readReply = (raw: unknown): Array<Entry> =>
  Array.isArray(raw) && Array.isArray(raw[0]) ? entriesOf((raw[0] as Array<unknown>)[1]) : []

const fieldOf = (fields: ReadonlyArray<unknown>, name: string): Buffer | undefined => {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (text(fields[i]) === name) {
      const value = fields[i + 1]
      return Buffer.isBuffer(value) ? value : Buffer.from(String(value))
    }
  }
  return undefined
}

/** A `redis://` URL without its credentials, for logs. */
const describeUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`
  } catch {
    return "redis://?"
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Source.Source => {
  const consumer = options.consumer ?? hostname()
  const field = options.field ?? "body"
  const count = options.count ?? 100
  const minIdleMs = Duration.toMillis(Duration.decode(options.minIdle ?? "60 seconds"))
  const deadLetter = options.deadLetter ?? `${options.stream}:dead`
  const fail = (operation: string) => (cause: unknown) =>
    new Source.SourceError({ source: options.name, operation, message: errorMessage(cause) })
  const attempt = <A>(operation: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: fail(operation) })

  const client = (role: string, close: (r: Redis) => Promise<unknown>) =>
    Effect.acquireRelease(
      attempt("connect", async () => {
        const r = new Redis(Redacted.value(options.url), {
          lazyConnect: true,
          // No reconnects inside the client: a lost connection fails the stream, `Source.run` reconnects.
          retryStrategy: () => null,
          maxRetriesPerRequest: 0,
          enableOfflineQueue: false,
          connectionName: `fanout-source-${options.name}-${role}`
        })
        r.on("error", () => {})
        try {
          await r.connect()
        } catch (error) {
          r.disconnect()
          throw error
        }
        return r
      }),
      (r) => Effect.promise(() => close(r).catch(() => r.disconnect()))
    )

  const connect_ = Effect.gen(function*() {
    const control = yield* client("control", (r) => r.quit())
    // The reader may be blocked in XREADGROUP: closed at once.
    const reader = yield* client("reader", async (r) => r.disconnect())
    yield* attempt(
      "setup",
      () =>
        control.call("XGROUP", "CREATE", options.stream, options.group, options.start ?? "0", "MKSTREAM").catch(
          (error: unknown) => (/BUSYGROUP/.test(errorMessage(error)) ? "OK" : Promise.reject(error))
        )
    )

    const inFlight = new Set<string>()
    let ownCursor = "0"
    let readOwn = true
    let lastClaim = 0
    let claimCursor = "0-0"

    const done = (id: string) => inFlight.delete(id)
    const toMessage = (entry: Entry, redelivered: boolean): Source.Message => {
      const body = entry.fields === null ? undefined : fieldOf(entry.fields, field)
      const ack = attempt("ack", () => control.xack(options.stream, options.group, entry.id)).pipe(
        Effect.ensuring(Effect.sync(() => done(entry.id))),
        Effect.asVoid
      )
      const reject = (reason: string) =>
        attempt("dead-letter", () =>
          control.multi()
            .xadd(deadLetter, "*", "id", entry.id, "body", body ?? "", "reason", reason)
            .xack(options.stream, options.group, entry.id)
            .exec()
            .then((replies) => {
              const failed = replies?.find(([error]) => error !== null)
              if (replies === null || failed !== undefined) throw failed?.[0] ?? new Error("MULTI aborted")
            })).pipe(Effect.ensuring(Effect.sync(() => done(entry.id))))
      return {
        id: `${options.stream}:${entry.id}`,
        // An entry without the field becomes "not JSON" (an empty body), hence a rejection.
        body: body ?? new Uint8Array(0),
        redelivered,
        ack,
        reject,
        // Left pending: read again from this consumer's pending list after the delay.
        retry: (delay) =>
          Effect.zipRight(
            Effect.sleep(delay),
            Effect.sync(() => {
              done(entry.id)
              readOwn = true
            })
          )
      }
    }

    const take = (entries: ReadonlyArray<Entry>, redelivered: boolean): Array<Source.Message> =>
      entries.flatMap((entry) => {
        if (inFlight.has(entry.id)) return []
        inFlight.add(entry.id)
        return [toMessage(entry, redelivered)]
      })

    const pull: Effect.Effect<Array<Source.Message>, Source.SourceError> = Effect.gen(function*() {
      if (readOwn) {
        const own = readReply(
          yield* attempt("read", () =>
            reader.callBuffer(
              "XREADGROUP",
              "GROUP",
              options.group,
              consumer,
              "COUNT",
              count,
              "STREAMS",
              options.stream,
              ownCursor
            ))
        )
        const last = own[own.length - 1]
        if (own.length >= count && last !== undefined) ownCursor = last.id
        else {
          ownCursor = "0"
          readOwn = false
        }
        const taken = take(own, true)
        if (taken.length > 0) return taken
      }
      const now = yield* Clock.currentTimeMillis
      if (now - lastClaim >= minIdleMs / 2) {
        lastClaim = now
        const reply = yield* attempt("reclaim", () =>
          control.callBuffer(
            "XAUTOCLAIM",
            options.stream,
            options.group,
            consumer,
            minIdleMs,
            claimCursor,
            "COUNT",
            count
          ))
        if (Array.isArray(reply)) {
          const next = text(reply[0])
          claimCursor = next
          if (next !== "0-0") lastClaim = 0
          const taken = take(entriesOf(reply[1]), true)
          if (taken.length > 0) return taken
        }
      }
      return take(
        readReply(
          yield* attempt("read", () =>
            reader.callBuffer(
              "XREADGROUP",
              "GROUP",
              options.group,
              consumer,
              "COUNT",
              count,
              "BLOCK",
              1000,
              "STREAMS",
              options.stream,
              ">"
            ))
        ),
        false
      )
    })

    const lag = Effect.map(attempt("lag", () => control.call("XINFO", "GROUPS", options.stream)), (groups) => {
      for (const g of Array.isArray(groups) ? groups : []) {
        if (!Array.isArray(g)) continue
        const info = new Map<string, unknown>()
        for (let i = 0; i + 1 < g.length; i += 2) info.set(text(g[i]), g[i + 1])
        if (text(info.get("name")) !== options.group) continue
        const value = info.get("lag")
        return typeof value === "number" ? value : Number(info.get("pending") ?? 0)
      }
      return 0
    })

    return {
      messages: Stream.repeatEffectChunk(Effect.map(pull, Chunk.unsafeFromArray)),
      lag
    } satisfies Source.Connection
  })

  return {
    name: options.name,
    kind: "redis",
    describe: `redis stream ${options.stream} group ${options.group} as ${consumer} at ${
      describeUrl(Redacted.value(options.url))
    }`,
    connect: connect_
  }
}
