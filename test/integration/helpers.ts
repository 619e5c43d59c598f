/**
 * Helpers for the integration tests: real `node:http` servers on 127.0.0.1 (port 0), and a
 * fan-out built over Fanout's own transport (`Transport.layer`, real HTTP on undici). Everything is scoped:
 * the client (undici Agent) is destroyed, then the server closed, when the test's scope ends.
 */
import { createServer } from "node:http"
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { performance } from "node:perf_hooks"
import type { HttpClient } from "@effect/platform"
import * as Transport from "../../src/Transport.js"
import { Effect, Layer, Schedule } from "effect"
import type { Duration } from "effect"
import type { Scope } from "effect"
import type { Event, Router, Target } from "../../src/index.js"
import { Fanout } from "../../src/index.js"

/** One request as the server saw it. */
export interface Received {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly key: string | undefined
  readonly body: string
  /** 1-based count of requests on this path so far (this one included). */
  readonly nth: number
  /** `performance.now()` when the request's body had been read (monotonic, for gaps). */
  readonly at: number
  /** `Date.now()` at the same moment (wall clock, for HTTP-dates). */
  readonly wallAt: number
}

export type Handler = (req: IncomingMessage, res: ServerResponse, received: Received) => void

export interface TestServer {
  readonly url: string
  readonly received: Array<Received>
  /** Requests seen on one path. */
  readonly on: (path: string) => ReadonlyArray<Received>
  /** TCP connections the server accepted so far. */
  readonly connections: () => number
  /** Waits (polling, real time) until `predicate` holds; dies after `timeout`. */
  readonly until: (predicate: () => boolean, timeout?: Duration.DurationInput) => Effect.Effect<void>
}

/** Starts a server whose handler runs once each request's body has been read. */
export const startServer = (handler: Handler): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: ReturnType<typeof createServer>; state: TestServer }>((resume) => {
      const received: Array<Received> = []
      const perPath = new Map<string, number>()
      let connections = 0
      const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.on("end", () => {
          const path = req.url ?? "/"
          const nth = (perPath.get(path) ?? 0) + 1
          perPath.set(path, nth)
          const key = req.headers["idempotency-key"]
          const entry: Received = {
            method: req.method ?? "GET",
            path,
            headers: req.headers,
            key: typeof key === "string" ? key : undefined,
            body: Buffer.concat(chunks).toString("utf8"),
            nth,
            at: performance.now(),
            wallAt: Date.now()
          }
          received.push(entry)
          handler(req, res, entry)
        })
      })
      server.on("connection", () => connections++)
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        const state: TestServer = {
          url: `http://127.0.0.1:${port}`,
          received,
          on: (path) => received.filter((r) => r.path === path),
          connections: () => connections,
          until: (predicate, timeout = "5 seconds") =>
            Effect.suspend(() => (predicate() ? Effect.void : Effect.fail("not yet" as const))).pipe(
              Effect.retry(Schedule.spaced("5 millis")),
              Effect.timeoutFail({ duration: timeout, onTimeout: () => "timed out" as const }),
              Effect.orDie
            )
        }
        resume(Effect.succeed({ server, state }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ state }) => state))

/** Answers `status` with a JSON body (and optional extra headers). */
export const reply = (
  res: ServerResponse,
  status: number,
  body: unknown = { ok: status < 400 },
  headers: Record<string, string> = {}
): void => {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}

/**
 * A fan-out for `router` over one real undici client. The client and the targets live in
 * the caller's scope (built with `Layer.build`, not `Effect.provide`, which would close the
 * client as soon as `Fanout.make` returned).
 */
export const makeSender = <E extends Event.Any, T extends Target.Any>(
  router: Router.Router<E, T>
): Effect.Effect<Fanout.Sender<E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const targets = router.targets.map((t) => t.layer) as ReadonlyArray<
      Layer.Layer<never, never, HttpClient.HttpClient>
    >
    const merged = targets.reduce((acc, layer) => Layer.merge(acc, layer), Layer.empty) as Layer.Layer<
      Target.Requirements<T>,
      never,
      HttpClient.HttpClient
    >
    const context = yield* Layer.build(merged.pipe(Layer.provide(Transport.layer())))
    return yield* Fanout.make(router).pipe(Effect.provide(context))
  })

/** Milliseconds of real time an effect took, with its result. */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<readonly [A, number], E, R> =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.map(effect, (a) => [a, performance.now() - start] as const)
  })
