/**
 * Benchmark runner: `npm run bench -- <name> [options]` runs `bench/<name>.ts`, whose module
 * exports `main(args)`. Run with no name (or an unknown one) for the list.
 *
 * Fanout's own code runs compiled, as a user runs it: the runner first builds the package
 * (`npm run build`, the dist/ that `npm pack` ships) and registers a resolve hook
 * (bench/lib/built.mjs) that answers every import of this checkout's src/ from dist/, in this
 * process and in every process it starts (through NODE_OPTIONS). Under tsx the sources pay for
 * its transform: every named closure is wrapped in `__name(...)` each time it is created, about
 * 10 % of the CPU of a direct delivery. `--code=src` runs the sources under tsx instead;
 * `--no-build` reuses dist/ as it is.
 */
import { execFileSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { register } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((file) => file.endsWith(".ts") && file !== "run.ts")
  .map((file) => file.slice(0, -3))
  .sort()

const [name, ...rest] = process.argv.slice(2)
const code = rest.find((a) => a.startsWith("--code="))?.slice("--code=".length) ?? "built"
const build = !rest.includes("--no-build")
const args = rest.filter((a) => !a.startsWith("--code=") && a !== "--no-build")

if (name === undefined || !available.includes(name)) {
  if (name !== undefined) process.stderr.write(`unknown benchmark: ${name}\n`)
  process.stderr.write(
    `usage: npm run bench -- <name> [options]\n\nbenchmarks:\n${available.map((b) => `  ${b}`).join("\n")}\n` +
      `\nexample: npm run bench -- direct --events=20000 --concurrency=64 --reps=3\n`
  )
  process.exit(1)
}

if (code !== "built" && code !== "src") {
  process.stderr.write(`--code=${code}: use built (the default) or src\n`)
  process.exit(1)
}
if (code === "built") {
  const root = join(here, "..")
  if (build) {
    process.stderr.write("building the package (npm run build) …\n")
    execFileSync("npm", ["run", "build", "--silent"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] })
  }
  const hook = join(here, "lib", "built.mjs")
  process.env.FANOUT_BENCH_BUILT = root
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --import=${pathToFileURL(hook).href}`.trim()
  register(pathToFileURL(join(here, "lib", "built-resolve.mjs")).href, import.meta.url)
}

const module = (await import(join(here, `${name}.ts`))) as {
  readonly main?: (args: ReadonlyArray<string>) => Promise<void>
}
if (typeof module.main !== "function") {
  process.stderr.write(`bench/${name}.ts does not export main(args)\n`)
  process.exit(1)
}
await module.main(args)
