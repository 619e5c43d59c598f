/**
 * The stored envelope text of an event, built without the schema interpreter when its fields are
 * plainly valid (the enqueue hot path). Re-exported by `Sql.ts`.
 *
 * @internal
 */
import { DateTime } from "effect"
import * as Event from "../../Event.js"

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype

const isName = (value: unknown): value is string =>
  typeof value === "string" && value.length >= 1 && value.length <= 200

/**
 * The stored envelope JSON of an event, without the schema interpreter, when its fields are
 * plainly valid: the very text `JSON.stringify(Event.encode(event))` gives (the envelope's
 * properties in its order, `createdAt` as ISO). `undefined` whenever the schema has to look (then
 * the store encodes with it, and reports what it finds).
 *
 * @internal
 */
export const envelopeJson = (event: Event.Any): string | undefined => envelopeParts(event)?.json

/**
 * {@link envelopeJson}, and the event's content text (`Event.contentJson`: type, key, payload) it
 * is built around, for the fingerprint: the payload is serialised once for both.
 *
 * @internal
 */
export const envelopeParts = (event: Event.Any): { readonly json: string; readonly content: string } | undefined => {
  const { createdAt, headers, id, key, type } = event
  if (!Event.isId(id) || !isName(type) || (key !== undefined && !Event.isId(key))) return undefined
  if (!isPlainObject(headers) || !DateTime.isDateTime(createdAt) || !DateTime.isUtc(createdAt)) return undefined
  for (const name in headers) if (name === "__proto__" || typeof headers[name] !== "string") return undefined
  let content: string
  let json: string
  try {
    // `{"type":…,"key":…,"payload":…}`; the envelope puts `id` before and `headers`, `createdAt` after.
    content = Event.contentJson(event)
    json = `{"id":${JSON.stringify(id)},${content.slice(1, -1)},"headers":${JSON.stringify(headers)},"createdAt":${
      JSON.stringify(DateTime.formatIso(createdAt))
    }}`
  } catch {
    return undefined
  }
  return { json, content }
}
