/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`,
 * `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
 * Receivers verify them with the stock `standardwebhooks` package.
 *
 * @since 0.1.0
 */
import { createHmac } from "node:crypto"
import { Redacted } from "effect"

/**
 * A signing secret: `whsec_<base64>` (the Standard Webhooks form) or any other string,
 * whose UTF-8 bytes are then the key.
 *
 * @since 0.1.0
 * @category models
 */
export type Secret = string | Redacted.Redacted<string>

/**
 * The HMAC key of a secret.
 *
 * @since 0.1.0
 * @category keys
 */
export const keyOf = (secret: Secret): Buffer => {
  const value = Redacted.isRedacted(secret) ? Redacted.value(secret) : secret
  return value.startsWith("whsec_") ? Buffer.from(value.slice("whsec_".length), "base64") : Buffer.from(value, "utf8")
}

/**
 * The three headers for one message (`id`), sent at `timestampSeconds`, with this body.
 *
 * @since 0.1.0
 * @category signing
 */
export const sign = (
  key: Buffer,
  id: string,
  timestampSeconds: number,
  body: Uint8Array | string
): { readonly "webhook-id": string; readonly "webhook-timestamp": string; readonly "webhook-signature": string } => {
  const hmac = createHmac("sha256", key)
  hmac.update(`${id}.${timestampSeconds}.`)
  hmac.update(body)
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": `v1,${hmac.digest("base64")}`
  }
}
