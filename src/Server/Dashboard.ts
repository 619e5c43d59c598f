/**
 * The dashboard, served by the same server as the API: `GET /` is a page shell (no data in it),
 * `/dashboard/app.js` and `/dashboard/app.css` its bundle (see {@link DashboardAssets}). Everything
 * the page shows or does goes through the authorised `/v1` API with the key the operator types in:
 * there is no other way in.
 *
 * Protection:
 * - `Content-Security-Policy` on the page: scripts and styles only from this origin (no inline
 *   script or style element), no framing, requests only to this origin;
 * - state-changing requests (anything but GET, HEAD, OPTIONS) that a browser marks as coming from
 *   another site (`Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` whose host is not this
 *   server's) are refused with `403 cross_site_request`, on every route, so a page elsewhere cannot
 *   replay or purge through an operator's browser (the dashboard keeps the key in memory and sends it
 *   as `Authorization`, which another site cannot make a browser send either).
 *
 * `server.dashboard: false` turns all of this off: `/` is a 404 again.
 *
 * @since 0.1.0
 */
import type { HttpApp } from "@effect/platform"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import * as DashboardAssets from "./DashboardAssets.js"
import * as Errors from "./Errors.js"
import type * as ServerOptions from "./Options.js"

/**
 * The page's `Content-Security-Policy`.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

const securityHeaders: Record<string, string> = {
  "content-security-policy": contentSecurityPolicy,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin"
}

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Fanout</title>
<link rel="stylesheet" href="/dashboard/app.css">
<script type="module" src="/dashboard/app.js"></script>
</head>
<body>
<noscript>The Fanout dashboard needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
`

const safeMethods = new Set(["GET", "HEAD", "OPTIONS"])

/** Whether a browser says this request comes from another site. */
const crossSite = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const site = request.headers["sec-fetch-site"]
  if (site === "cross-site" || site === "same-site") return true
  const origin = request.headers["origin"]
  if (origin === undefined || origin === "") return false
  if (origin === "null") return true
  try {
    return new URL(origin).host !== request.headers["host"]
  } catch {
    return true
  }
}

const asset = (body: string, contentType: string) =>
  HttpServerResponse.text(body, {
    contentType,
    headers: { ...securityHeaders, "cache-control": "no-cache" }
  })

const assetsFailed = (error: unknown) =>
  Effect.as(
    Effect.logError("fanout dashboard: its assets could not be built or read", String(error)),
    Errors.toResponse(
      Errors.make(500, "dashboard_unavailable", "The dashboard's assets could not be built or read; see the server log")
    )
  )

/**
 * Wraps the application: the dashboard's routes and the cross-site refusal in front of it (when
 * `options.dashboard`), else the application unchanged.
 *
 * @since 0.1.0
 * @category middleware
 */
export const wrap = (options: ServerOptions.Options) => <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> => {
  if (!options.dashboard) return app
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const method = request.method
    if (!safeMethods.has(method)) {
      return crossSite(request)
        ? Effect.succeed(Errors.toResponse(
          Errors.make(403, "cross_site_request", "A state-changing request from another site is refused")
        ))
        : app
    }
    if (method !== "GET" && method !== "HEAD") return app
    const path = request.url.split("?")[0]
    if (path === "/" || path === "/index.html") {
      return Effect.succeed(HttpServerResponse.text(page, {
        contentType: "text/html; charset=utf-8",
        headers: { ...securityHeaders, "cache-control": "no-store" }
      }))
    }
    if (path === "/dashboard/app.js" || path === "/dashboard/app.css") {
      return Effect.tryPromise(DashboardAssets.load).pipe(
        Effect.map((assets) =>
          path.endsWith(".js")
            ? asset(assets.js, "text/javascript; charset=utf-8")
            : asset(assets.css, "text/css; charset=utf-8")
        ),
        Effect.catchAll((error) => assetsFailed(error.cause))
      )
    }
    return app
  })
}
