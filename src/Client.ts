/**
 * The typed client of Fanout's HTTP API: `HttpApiClient.make(FanoutApi)`, so every call is
 * checked against the same schemas the server answers with (`client.events.send`,
 * `client.events.status`, `client.deadLetters.list`, `client.targets.list`, …), and a refusal is
 * a typed failure carrying the server's error body (`{ error: { code, message, status, issues? } }`).
 *
 * ```ts
 * const client = yield* FanoutClient.make({ baseUrl: "http://127.0.0.1:8080", apiKey })
 * const accepted = yield* client.events.send({ payload: { type: "order.placed", payload: { orderId: "o-1" } }, urlParams: {}, headers: {} })
 * ```
 *
 * It needs an `HttpClient.HttpClient` (Fanout's `Transport.layer()`, `NodeHttpClient.layerUndici`,
 * `FetchHttpClient.layer`, …).
 *
 * @since 0.1.0
 */
import { HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Context, Effect, Layer, Redacted } from "effect"
import * as Api from "./Server/Api.js"
import type * as Errors from "./Server/Errors.js"

/**
 * Where the server is, and the producer API key to send (as `Authorization: Bearer`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The server's base URL, e.g. `http://127.0.0.1:8080` (default: the `HttpClient`'s own, as `NodeHttpServer.layerTest` sets). */
  readonly baseUrl?: string | URL | undefined
  readonly apiKey?: string | Redacted.Redacted<string> | undefined
  /** Changes the underlying client (retries, timeouts, more headers). */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
}

/**
 * The path of a request with the router's `::` (a literal `:`, as in `/v1/events::batch`) written
 * as the `:` it stands for; the scheme and authority (an IPv6 literal such as `[::1]`) untouched.
 */
const literalColons = (url: string): string => {
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(url)?.[0] ?? ""
  return authority + url.slice(authority.length).replaceAll("::", ":")
}

/**
 * Makes the client.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}) => {
  const key = options.apiKey === undefined
    ? undefined
    : Redacted.isRedacted(options.apiKey)
    ? options.apiKey
    : Redacted.make(options.apiKey)
  const transform = options.transformClient
  return HttpApiClient.make(Api.Api, {
    ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}),
    transformClient: (client) => {
      const literal = HttpClient.mapRequest(
        client,
        (request) =>
          request.url.includes("::") ? HttpClientRequest.setUrl(request, literalColons(request.url)) : request
      )
      const keyed = key === undefined
        ? literal
        : HttpClient.mapRequest(literal, HttpClientRequest.bearerToken(Redacted.value(key)))
      return transform === undefined ? keyed : transform(keyed)
    }
  })
}

/**
 * The client's type: one method per endpoint, by group.
 *
 * @since 0.1.0
 * @category models
 */
export type Client = Effect.Effect.Success<ReturnType<typeof make>>

/**
 * The client as a service.
 *
 * @since 0.1.0
 * @category services
 */
export class FanoutClient extends Context.Tag("fanout/FanoutClient")<FanoutClient, Client>() {
  /**
   * @since 0.1.0
   */
  static readonly make = make
  /**
   * The client as a layer (it needs an `HttpClient.HttpClient`).
   *
   * @since 0.1.0
   */
  static readonly layer = (options: Options = {}): Layer.Layer<FanoutClient, never, HttpClient.HttpClient> =>
    Layer.effect(FanoutClient, make(options))
}

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = FanoutClient.layer

/**
 * The body of a refusal, whatever endpoint answered it: every error the API declares has
 * `error: { code, message, status, issues? }`.
 *
 * @since 0.1.0
 * @category errors
 */
export type Refusal = Errors.ErrorBody

/**
 * Whether a failure of a client call is a refusal the server answered (a declared error body), as
 * opposed to a transport or decoding failure of the client.
 *
 * @since 0.1.0
 * @category errors
 */
export const isRefusal = (u: unknown): u is Refusal =>
  typeof u === "object" && u !== null && "error" in u && typeof u.error === "object" && u.error !== null &&
  "code" in u.error && "message" in u.error && "status" in u.error
