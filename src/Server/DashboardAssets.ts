/**
 * The dashboard's two assets (one script, one style sheet), bundled with esbuild from the sources
 * in `dashboard/src` (Preact components and uPlot, all from npm; nothing from a CDN).
 *
 * - From a clone (this module runs as `src/Server/DashboardAssets.ts` under tsx): the bundle is
 *   built in memory on the first request for the dashboard, once per process.
 * - From the published package (`dist/Server/DashboardAssets.js`): the files `npm run build`
 *   wrote to `dist/dashboard/` (`scripts/build-dashboard.ts`, run by `prepack` through `build`).
 *
 * @since 0.1.0
 */
import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"

/**
 * @since 0.1.0
 * @category models
 */
export interface Assets {
  readonly js: string
  readonly css: string
}

/** Where the front-end sources are (the same path from `src/Server` and `dist/Server`). */
export const sourceDir: string = fileURLToPath(new URL("../../dashboard/", import.meta.url))

/** Where `scripts/build-dashboard.ts` writes the bundle (from `src/Server` and `dist/Server` alike: `dist/dashboard`). */
export const builtDir: string = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "../../dist/dashboard/" : "../dashboard/", import.meta.url)
)

/**
 * Bundles the sources with esbuild (a development dependency: present in a clone after
 * `npm install`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const build = async (): Promise<Assets> => {
  const esbuild = await import("esbuild")
  const result = await esbuild.build({
    absWorkingDir: sourceDir,
    entryPoints: { app: "src/main.tsx" },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
    write: false,
    outdir: "out",
    logLevel: "silent"
  })
  const js = result.outputFiles.find((f) => f.path.endsWith(".js"))
  const css = result.outputFiles.find((f) => f.path.endsWith(".css"))
  if (js === undefined || css === undefined) throw new Error("the dashboard bundle has no script or no style sheet")
  return { js: js.text, css: css.text }
}

/** The bundle `npm run build` wrote. */
const readBuilt = async (): Promise<Assets> => ({
  js: await readFile(new URL("app.js", `file://${builtDir}`), "utf8"),
  css: await readFile(new URL("app.css", `file://${builtDir}`), "utf8")
})

let loading: Promise<Assets> | undefined

/**
 * The assets, loaded once per process: built from the sources when this module runs from them,
 * else read from `dist/dashboard/`.
 *
 * @since 0.1.0
 * @category accessors
 */
export const load = (): Promise<Assets> => {
  if (loading === undefined) {
    loading = import.meta.url.endsWith(".ts") ? build() : readBuilt()
    // A failure is not remembered: the next request tries again.
    loading.catch(() => {
      loading = undefined
    })
  }
  return loading
}
