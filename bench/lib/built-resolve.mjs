// Module resolve hook for benchmarks (bench/run.ts registers it): an import that resolves into
// this checkout's src/ is answered from the compiled package in dist/ instead (`npm run build`,
// the files `npm pack` ships), so the benchmarks measure the code a user runs, not tsx's
// on-the-fly transform (which wraps every named closure in `__name(...)` each time it is created).
// Plain JavaScript: hooks run on the loader thread, before tsx could transform them.
import { existsSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = process.env.FANOUT_BENCH_BUILT || undefined
const src = root === undefined ? undefined : pathToFileURL(root + "/src/").href
const dist = root === undefined ? undefined : pathToFileURL(root + "/dist/").href

export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context)
  if (src !== undefined && resolved.url.startsWith(src)) {
    const url = dist + resolved.url.slice(src.length).replace(/\.ts$/, ".js")
    if (existsSync(fileURLToPath(url))) return { url, format: "module", shortCircuit: true }
  }
  return resolved
}
