/**
 * The generic HTTP (webhook) target: a URL, a method, headers, and by default the event
 * envelope as the JSON body. Configuration files build their targets with it; code can too.
 *
 * @since 0.1.0
 */
import { HttpClientRequest } from "@effect/platform"
import { Redacted } from "effect"
import * as Event from "../Event.js"
import type * as Policy from "../Resilience/Policy.js"
import type * as Signing from "../Signing.js"
import * as Target from "../Target.js"
import { maskUrl } from "../internal/maskUrl.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly url: string
  /** Default "POST". */
  readonly method?: "POST" | "PUT" | "PATCH" | "DELETE" | "GET"
  /** Extra headers; `Redacted` values are revealed only on the wire. */
  readonly headers?: Readonly<Record<string, string | Redacted.Redacted<string>>>
  /** The JSON body for an event. Default: the encoded envelope `{ id, type, key?, payload, headers, createdAt }`. */
  readonly body?: (event: Event.Any) => unknown
  readonly policy?: Policy.Input
  /** One secret, or a list newest first (see `Target.Options.signingSecret`). */
  readonly signingSecret?: Signing.Secrets
  readonly classify?: Target.Options<unknown, unknown>["classify"]
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = <const Name extends string>(
  name: Name,
  options: Options
): Target.Target<Name, unknown, unknown> => {
  if (!URL.canParse(options.url)) {
    // Never the URL as given: it may hold a secret (userinfo, a query token).
    throw new TypeError(`${name}: expected an http(s) URL, got ${maskUrl(options.url)}`)
  }
  const url = new URL(options.url).toString()
  const method = options.method ?? "POST"
  const headerEntries = Object.entries(options.headers ?? {})
  const body = options.body ?? ((event: Event.Any) => Event.encode(event))
  return Target.make(name, {
    request: (event) => {
      let request = HttpClientRequest.make(method)(url).pipe(
        HttpClientRequest.setHeaders({
          "x-fanout-event-id": event.id,
          "x-fanout-event-type": event.type
        })
      )
      for (const [key, value] of headerEntries) {
        request = HttpClientRequest.setHeader(request, key, Redacted.isRedacted(value) ? Redacted.value(value) : value)
      }
      return method === "GET" ? request : HttpClientRequest.bodyUnsafeJson(request, body(event))
    },
    ...(options.policy !== undefined ? { policy: options.policy } : {}),
    ...(options.signingSecret !== undefined ? { signingSecret: options.signingSecret } : {}),
    ...(options.classify !== undefined ? { classify: options.classify } : {})
  })
}
