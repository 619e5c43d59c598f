import { randomFillSync } from "node:crypto"

/** Random bytes for 256 ids at a time: one `randomFillSync` per 256 ids, not one `randomBytes` each. */
const pool = Buffer.allocUnsafe(16 * 256)
let offset = pool.length

/** @internal A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits. Sortable by creation time. */
export const uuidv7 = (unixMillis: number): string => {
  if (offset === pool.length) {
    randomFillSync(pool)
    offset = 0
  }
  const bytes = pool.subarray(offset, offset + 16)
  offset += 16
  let ms = Math.max(0, Math.floor(unixMillis))
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256
    ms = Math.floor(ms / 256)
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = bytes.toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
