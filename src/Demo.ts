/**
 * The demo behind `npm start` (`fanout demo`): two mock APIs served by this very process on
 * loopback ports — an inventory service and a notification service that fails one request in five
 * with a `503` — and a configuration that routes `order.placed` to both, so a newcomer sees a real
 * fan-out (with retries) within a minute of cloning.
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Effect, Random, Runtime } from "effect"
import type { Scope } from "effect"
import type * as Config from "./Config.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface MockApis {
  /** `http://127.0.0.1:<port>/reservations` */
  readonly inventoryUrl: string
  /** `http://127.0.0.1:<port>/notifications` */
  readonly notificationUrl: string
  /** Requests each mock received so far (duplicates included). */
  readonly received: Effect.Effect<{ readonly inventory: number; readonly notification: number }>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Share of notification requests answered `503` (default 0.2). */
  readonly failureRate?: number
  /** The host the mocks listen on (default 127.0.0.1). */
  readonly host?: string
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", () => resolve(""))
  })

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

const listen = (
  host: string,
  handler: (req: IncomingMessage, res: ServerResponse) => void
): Effect.Effect<number, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.async<ReturnType<typeof createServer>>((resume) => {
        const server = createServer(handler)
        server.once("error", (error) => resume(Effect.die(error)))
        server.listen(0, host, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    ),
    (server) => (server.address() as AddressInfo).port
  )

const describe = (body: string): { readonly type: string; readonly summary: string } => {
  try {
    const envelope = JSON.parse(body) as { type?: unknown; payload?: unknown }
    return {
      type: typeof envelope.type === "string" ? envelope.type : "?",
      summary: JSON.stringify(envelope.payload ?? null).slice(0, 120)
    }
  } catch {
    return { type: "?", summary: body.slice(0, 120) }
  }
}

/**
 * Starts the two mock APIs until the scope closes. Each request is logged (target, event type,
 * idempotency key, answer). The inventory mock remembers idempotency keys and answers a repeat with
 * the first result, as a real API honouring `Idempotency-Key` would.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mockApis = (options: Options = {}): Effect.Effect<MockApis, never, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const failureRate = options.failureRate ?? 0.2
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string, idempotencyKey: string) =>
      Runtime.runFork(runtime)(Effect.logInfo(`${message}  [idempotency-key ${idempotencyKey}]`))
    const random = (): number => Runtime.runSync(runtime)(Random.next)
    const counts = { inventory: 0, notification: 0 }
    const reservations = new Map<string, number>()

    const inventoryPort = yield* listen(host, (req, res) => {
      void readBody(req).then((body) => {
        counts.inventory++
        const key = String(req.headers["idempotency-key"] ?? "")
        const { summary, type } = describe(body)
        const first = reservations.get(key)
        if (first !== undefined) {
          log(`inventory ← ${type} (repeat: already reserved, answered as before)`, key)
          return json(res, 200, { reservation: first, repeated: true })
        }
        const reservation = reservations.size + 1
        reservations.set(key, reservation)
        log(`inventory ← ${type} ${summary} → 200 reserved #${reservation}`, key)
        json(res, 200, { reservation })
      })
    })

    const notificationPort = yield* listen(host, (req, res) => {
      void readBody(req).then((body) => {
        counts.notification++
        const key = String(req.headers["idempotency-key"] ?? "")
        const { summary, type } = describe(body)
        if (random() < failureRate) {
          log(`notification ← ${type} → 503 (flaky on purpose: Fanout will retry)`, key)
          return json(res, 503, { error: "temporarily unavailable" }, { "retry-after": "1" })
        }
        log(`notification ← ${type} ${summary} → 202 sent`, key)
        json(res, 202, { queued: true })
      })
    })

    return {
      inventoryUrl: `http://${host}:${inventoryPort}/reservations`,
      notificationUrl: `http://${host}:${notificationPort}/notifications`,
      received: Effect.sync(() => ({ ...counts }))
    }
  })

/**
 * The demo store file (relative to the working directory).
 *
 * @since 0.1.0
 * @category configuration
 */
export const defaultDatabase = ".fanout/demo.db"

/**
 * The demo configuration over the mock APIs: `order.placed` (and any `order.*`) goes to both.
 *
 * @since 0.1.0
 * @category configuration
 */
export const config = (
  apis: Pick<MockApis, "inventoryUrl" | "notificationUrl">,
  options: { readonly database?: string; readonly port?: number; readonly apiKeyEnv?: string | undefined } = {}
): typeof Config.FanoutConfig.Encoded => ({
  server: {
    host: "127.0.0.1",
    port: options.port ?? 8080,
    ...(options.apiKeyEnv !== undefined ? { apiKeys: [{ env: options.apiKeyEnv }] } : {})
  },
  store: { sqlite: options.database ?? defaultDatabase },
  targets: {
    inventory: { url: apis.inventoryUrl, timeout: "2 seconds" },
    notification: {
      url: apis.notificationUrl,
      timeout: "2 seconds",
      retry: { maxAttempts: 6, initialDelay: "200 millis", maxDelay: "2 seconds" }
    }
  },
  routes: { "order.*": ["inventory", "notification"] }
})

/**
 * A sample event for the banner's `curl` line.
 *
 * @since 0.1.0
 * @category configuration
 */
export const sampleEvent = { type: "order.placed", payload: { orderId: "o-1001", sku: "tea-pot", qty: 2 } }
