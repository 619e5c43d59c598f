/**
 * `fanout/server`: Fanout's service parts, for an Effect application that serves Fanout's HTTP API
 * from its own `HttpServer`, runs the whole server in its own process, or calls a Fanout server.
 *
 * - {@link FanoutApi}: the `HttpApi` definition (groups `events`, `deadLetters`, `targets`, `ops`);
 *   `FanoutApi.add(MyGroup)` puts an application's own groups beside Fanout's.
 * - {@link Server}: `Server.layerHandlers(options)`, the handlers of every group as a Layer (for
 *   `HttpApiBuilder.api(FanoutApi)` in the application's own server, under its own middleware);
 *   `Server.layerErrors` (the one error shape); `Server.layer(options)`, the standalone Node
 *   server (with the lean ingest listener) as a Layer; `Server.makeApp`, the `HttpApp`.
 * - {@link FanoutClient} / {@link Client}: the typed client (`HttpApiClient.make(FanoutApi)`).
 * - {@link Main}: the whole application (configuration → store, targets, workers, API,
 *   telemetry) as a Layer (`Main.layer(app)`), and {@link Telemetry} (tracing, metrics, logs).
 *
 * @since 0.1.0
 */

/**
 * The HTTP API's definition: its schemas, groups and middleware.
 *
 * @since 0.1.0
 */
export * as ServerApi from "./Server/Api.js"

/**
 * The `HttpApi` of Fanout's server.
 *
 * @since 0.1.0
 */
export { Api as FanoutApi } from "./Server/Api.js"

/**
 * The server: handlers, error shape, standalone server, `HttpApp`.
 *
 * @since 0.1.0
 */
export * as Server from "./Server/Http.js"

/**
 * The server's options (`ServerOptions.make`).
 *
 * @since 0.1.0
 */
export * as ServerOptions from "./Server/Options.js"

/**
 * The typed client.
 *
 * @since 0.1.0
 */
export * as Client from "./Client.js"

/**
 * The typed client as a service (`FanoutClient.make`, `FanoutClient.layer`).
 *
 * @since 0.1.0
 */
export { FanoutClient } from "./Client.js"

/**
 * The composition root: the whole application as one Layer.
 *
 * @since 0.1.0
 */
export * as Main from "./Main.js"

/**
 * Tracing, metrics and logs.
 *
 * @since 0.1.0
 */
export * as Telemetry from "./Telemetry.js"
