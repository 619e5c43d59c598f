/**
 * A TypeScript configuration: everything the JSON form has, plus functions — a body per target
 * and a classifier. Run it with `fanout serve --config examples/fanout.config.ts`.
 *
 * Secrets are `{ env: "NAME" }`: read from the environment at start, never logged.
 */
import { defineConfig } from "../src/Config.js"
import type * as Event from "../src/Event.js"

interface OrderPlaced {
  readonly orderId: string
  readonly sku: string
  readonly qty: number
  readonly email?: string
}

export default defineConfig({
  server: {
    port: 8080,
    apiKeys: [{ env: "FANOUT_API_KEY" }]
  },
  // Scale out: every `fanout serve --api-only` and `fanout worker` process points at one database.
  // FANOUT_STORE overrides this (e.g. FANOUT_STORE=postgres://fanout:...@db/fanout).
  store: { sqlite: "fanout.db" },
  targets: {
    inventory: {
      url: "http://inventory.internal:8081/reservations",
      headers: { authorization: { env: "INVENTORY_TOKEN" } },
      timeout: "2 seconds",
      retry: { maxAttempts: 10, initialDelay: "200 millis", maxDelay: "1 minute" },
      concurrency: 32,
      // The inventory API wants its own shape, not the envelope.
      body: (event: Event.Any) => {
        const order = event.payload as OrderPlaced
        return { reservationId: event.id, sku: order.sku, quantity: order.qty }
      },
      // 409 means "already reserved under this key": done, not an error.
      classify: (response: { readonly status: number }) => (response.status === 409 ? "success" : undefined)
    },
    notification: {
      url: "https://notify.example.com/hooks/orders",
      signingSecret: { env: "NOTIFY_SIGNING_SECRET" },
      timeout: "5 seconds",
      rateLimit: { limit: 50, interval: "1 second" }
    }
  },
  routes: {
    "order.placed": ["inventory", "notification"],
    "order.cancelled": ["inventory"]
  }
})
