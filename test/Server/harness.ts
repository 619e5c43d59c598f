/**
 * Test harness for the HTTP server: a real server on 127.0.0.1 (port 0), a real store, real
 * loopback targets (TestTarget over node:http), optionally a real worker; plus a raw-socket
 * HTTP/1.1 client for what fetch refuses to send.
 */
import * as net from "node:net"
import { type HttpClient, HttpClientRequest } from "@effect/platform"
import * as Transport from "../../src/Transport.js"
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import type { Scope, Tracer } from "effect"
import * as Outbox from "../../src/Outbox.js"
import * as Registry from "../../src/Registry.js"
import type * as Policy from "../../src/Resilience/Policy.js"
import * as Router from "../../src/Router.js"
import * as Http from "../../src/Server/Http.js"
import type * as Metrics from "../../src/Server/Metrics.js"
import * as ServerOptions from "../../src/Server/Options.js"
import * as Store from "../../src/Store.js"
import * as MemoryStore from "../../src/Store/Memory.js"
import * as Target from "../../src/Target.js"
import type * as Fault from "../../src/testing/Fault.js"
import * as TestTarget from "../../src/testing/TestTarget.js"
import * as Worker from "../../src/Worker.js"

export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly body: any
}

export interface Harness {
  readonly url: string
  readonly port: number
  readonly store: Store.DeliveryStore
  readonly targets: Readonly<Record<string, TestTarget.Loopback>>
  readonly request: (path: string, init?: RequestInit & { readonly json?: unknown }) => Promise<Reply>
}

export interface Setup {
  /** Target name → its faults (default: always 200). Default: `a` and `b`. */
  readonly targets?: Readonly<Record<string, Fault.Faults | undefined>>
  /** Pattern → target names (and, third, shadow target names). Default: `order.*` → every target. */
  readonly routes?: ReadonlyArray<
    readonly [string, ReadonlyArray<string>] | readonly [string, ReadonlyArray<string>, ReadonlyArray<string>]
  >
  readonly server?: ServerOptions.Input
  readonly store?: Layer.Layer<Store.DeliveryStore, Store.StoreError>
  /** Wraps the store the server sees (fault injection). */
  readonly wrapStore?: (store: Store.DeliveryStore) => Store.DeliveryStore
  readonly worker?: boolean
  readonly policy?: Policy.Input
  /** Extra headers every target request carries (secrets, to check they never leak). */
  readonly targetHeaders?: Readonly<Record<string, string>>
  readonly signingSecret?: string
  readonly renderer?: Layer.Layer<Metrics.MetricsRenderer>
  /** Durable pipelines: target → the targets it runs after (given to the outbox). */
  readonly after?: Store.Dependencies
  /** Event type → its aggregate (given to the outbox). */
  readonly aggregates?: Outbox.Options["aggregates"]
  /** `false`: Effect's tracer switched off (no spans), as `fanout serve` runs without an exporter. */
  readonly tracing?: boolean
  /** A tracer of the test's own (to read the spans). */
  readonly tracer?: Tracer.Tracer
  /** Collects the server's log lines of level Warning and above (`LEVEL message`), instead of dropping them. */
  readonly logs?: Array<string>
}

const fastPolicy: Policy.Input = {
  timeout: "2 seconds",
  retry: { maxAttempts: 2, initialDelay: "20 millis", maxDelay: "50 millis" }
}

export const start = (setup: Setup = {}): Effect.Effect<Harness, never, Scope.Scope> =>
  Effect.gen(function*() {
    const targetSpecs = setup.targets ?? { a: undefined, b: undefined }
    const loopbacks: Record<string, TestTarget.Loopback> = {}
    const targets: Array<Target.Any> = []
    for (const [name, faults] of Object.entries(targetSpecs)) {
      const test = TestTarget.make(name, faults === undefined ? {} : { faults })
      const loopback = yield* TestTarget.serve(test)
      loopbacks[name] = loopback
      targets.push(Target.make(name, {
        request: (event) =>
          HttpClientRequest.post(`${loopback.url}/events/${encodeURIComponent(event.id)}`).pipe(
            HttpClientRequest.setHeaders(setup.targetHeaders ?? {}),
            HttpClientRequest.bodyUnsafeJson(event.payload ?? null)
          ),
        policy: setup.policy ?? fastPolicy,
        ...(setup.signingSecret !== undefined ? { signingSecret: Target.secret(setup.signingSecret) } : {})
      }) as unknown as Target.Any)
    }
    let router: Router.Router<any, any> = Router.make()
    const byName = new Map(targets.map((t) => [t.name, t]))
    for (const [pattern, names, shadow] of setup.routes ?? [["order.*", Object.keys(targetSpecs)] as const]) {
      router = router.route(
        pattern,
        names.map((n) => byName.get(n)!),
        shadow === undefined ? {} : { shadow: shadow.map((n) => byName.get(n)!) }
      )
    }

    const storeContext = yield* Layer.build(setup.store ?? MemoryStore.layer).pipe(Effect.orDie)
    const rawStore = Context.get(storeContext, Store.DeliveryStore)
    const store = setup.wrapStore ? setup.wrapStore(rawStore) : rawStore
    const storeLayer = Layer.succeed(Store.DeliveryStore, store)
    const targetsLayer = Registry.layerTargets(targets).pipe(Layer.provide(Transport.layer()))
    const deps = Layer.mergeAll(
      Outbox.layer(router, { after: setup.after, aggregates: setup.aggregates }),
      targetsLayer
    ).pipe(Layer.provideMerge(storeLayer))
    // The worker shares the target runtimes (breakers, bulkheads) with the registry: same layers, one build.
    const targetLayers = targets.map((t) => t.layer as unknown as Layer.Layer<never, never, HttpClient.HttpClient>)
    const worker = Worker.layer({ router, pollInterval: "50 millis", workerId: "test-worker" }).pipe(
      Layer.provide(Layer.mergeAll(Layer.empty, ...targetLayers)),
      Layer.provide(Transport.layer()),
      Layer.provide(storeLayer)
    ) as unknown as Layer.Layer<never>
    const withWorker = setup.worker === true ? Layer.merge(deps, worker) : deps
    const server = Http.layer(ServerOptions.make({ port: 0, host: "127.0.0.1", ...setup.server })).pipe(
      Layer.provide(withWorker),
      Layer.provide(setup.renderer ?? Layer.empty),
      Layer.provide(setup.tracing === false ? Layer.setTracerEnabled(false) : Layer.empty),
      Layer.provide(setup.tracer !== undefined ? Layer.setTracer(setup.tracer) : Layer.empty)
    )
    // Quiet (the open-API warning of every test server); errors still show.
    const logs = setup.logs
    const context = yield* (logs === undefined
      ? Layer.build(server).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.Error))
      : Layer.build(server).pipe(
        Effect.orDie,
        Logger.withMinimumLogLevel(LogLevel.Warning),
        Effect.provide(Logger.replace(
          Logger.defaultLogger,
          Logger.make(({ logLevel, message }) =>
            void logs.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
          )
        ))
      ))
    const url = yield* Http.url.pipe(Effect.provide(context))
    const port = Number(new URL(url).port)

    const request = async (path: string, init: RequestInit & { readonly json?: unknown } = {}): Promise<Reply> => {
      const { json, ...rest } = init
      const headers = new Headers(rest.headers)
      if (json !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json")
      const response = await fetch(url + path, {
        ...rest,
        headers,
        ...(json !== undefined ? { method: rest.method ?? "POST", body: JSON.stringify(json) } : {})
      })
      const text = await response.text()
      let body: any = undefined
      try {
        body = text === "" ? undefined : JSON.parse(text)
      } catch {
        body = undefined
      }
      return { status: response.status, headers: response.headers, text, body }
    }
    return { url, port, store, targets: loopbacks, request }
  })

/** Is this the one error shape, with this status? */
export const isErrorShape = (body: any, status: number): boolean =>
  typeof body === "object" && body !== null &&
  typeof body.error === "object" && body.error !== null &&
  typeof body.error.code === "string" && body.error.code.length > 0 &&
  typeof body.error.message === "string" &&
  body.error.status === status &&
  (body.error.issues === undefined ||
    (Array.isArray(body.error.issues) &&
      body.error.issues.every((i: any) => typeof i.path === "string" && typeof i.message === "string")))

/** Total deliveries the store holds (any status). */
export const totalDeliveries = (store: Store.DeliveryStore): Promise<number> =>
  Effect.runPromise(
    Effect.map(store.stats, (s) => s.pending + s.inFlight + s.delivered + s.dead + s.compensated)
  )

export interface RawReply {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
  /** The server closed the connection after the answer. */
  readonly closed: boolean
}

/**
 * Sends raw bytes on a fresh TCP connection and reads one HTTP/1.1 response (by Content-Length,
 * chunked, or until close). Rejects when the connection closes with no response at all.
 */
export const raw = (
  port: number,
  data: string | Buffer | ((socket: net.Socket) => void),
  options: { readonly timeoutMs?: number } = {}
): Promise<RawReply> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    let buffer = Buffer.alloc(0)
    let settled = false
    let parsed: { status: number; headers: Record<string, string>; bodyStart: number } | undefined
    const timer = setTimeout(
      () => finish(new Error(`no response within ${options.timeoutMs ?? 10_000} ms`)),
      options.timeoutMs ?? 10_000
    )
    const finish = (result: RawReply | Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (result instanceof Error) reject(result)
      else resolve(result)
    }
    const tryParse = (closed: boolean) => {
      if (parsed === undefined) {
        const end = buffer.indexOf("\r\n\r\n")
        if (end < 0) {
          if (closed) finish(new Error(`connection closed without a response (${buffer.length} bytes)`))
          return
        }
        const lines = buffer.subarray(0, end).toString("latin1").split("\r\n")
        const status = Number(lines[0]!.split(" ")[1])
        const headers: Record<string, string> = {}
        for (const line of lines.slice(1)) {
          const i = line.indexOf(":")
          headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
        }
        parsed = { status, headers, bodyStart: end + 4 }
      }
      const body = buffer.subarray(parsed.bodyStart)
      const length = parsed.headers["content-length"]
      if (length !== undefined) {
        if (body.length >= Number(length)) {
          finish({
            status: parsed.status,
            headers: parsed.headers,
            body: body.subarray(0, Number(length)).toString("utf8"),
            closed
          })
        } else if (closed) finish(new Error("connection closed mid-body"))
        return
      }
      if (parsed.headers["transfer-encoding"] === "chunked") {
        let offset = 0
        const chunks: Array<Buffer> = []
        while (true) {
          const lineEnd = body.indexOf("\r\n", offset)
          if (lineEnd < 0) break
          const size = parseInt(body.subarray(offset, lineEnd).toString("latin1"), 16)
          if (size === 0) {
            return finish({
              status: parsed.status,
              headers: parsed.headers,
              body: Buffer.concat(chunks).toString("utf8"),
              closed
            })
          }
          if (body.length < lineEnd + 2 + size + 2) break
          chunks.push(body.subarray(lineEnd + 2, lineEnd + 2 + size))
          offset = lineEnd + 2 + size + 2
        }
        if (closed) finish(new Error("connection closed mid-chunked-body"))
        return
      }
      if (closed || parsed.status === 204 || parsed.status === 304) {
        finish({ status: parsed.status, headers: parsed.headers, body: body.toString("utf8"), closed })
      }
    }
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      tryParse(false)
    })
    socket.on("end", () => tryParse(true))
    socket.on("close", () => tryParse(true))
    socket.on("error", () => tryParse(true))
    socket.on("connect", () => {
      if (typeof data === "function") data(socket)
      else socket.write(data)
    })
  })

export const promise = <A>(f: () => Promise<A>) => Effect.promise(f)

/** Polls `f` until `until` holds (real time; generous deadline for a loaded 2-core machine). */
export const eventually = <A>(f: () => Promise<A>, until: (a: A) => boolean, ms = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + ms
    let last = await f()
    while (!until(last) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25))
      last = await f()
    }
    return last
  })
