/**
 * Writes the dashboard's bundle to dist/dashboard/ (app.js, app.css), for the published package.
 * `npm run build` (and so `prepack`) runs it; a clone builds the same bundle in memory instead.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { build, builtDir } from "../src/Server/DashboardAssets.js"

const assets = await build()
mkdirSync(builtDir, { recursive: true })
writeFileSync(join(builtDir, "app.js"), assets.js)
writeFileSync(join(builtDir, "app.css"), assets.css)
console.log(
  `dashboard: wrote ${join(builtDir, "app.js")} (${assets.js.length} bytes), app.css (${assets.css.length} bytes)`
)
