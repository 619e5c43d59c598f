/**
 * The baselines' HTTP: a JSON POST with an idempotency key through a raw undici `Agent` (keep-alive),
 * as a hand-rolled Node client does it. A non-2xx answer throws.
 */
import type { Agent } from "undici"

export const poster =
  (agent: Agent) => async (origin: string, path: string, body: unknown, key: string): Promise<string> => {
    const response = await agent.request({
      origin,
      path,
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": key },
      body: JSON.stringify(body)
    })
    const text = await response.body.text()
    if (response.statusCode < 200 || response.statusCode >= 300) throw new Error(`HTTP ${response.statusCode}: ${text}`)
    return text
  }
