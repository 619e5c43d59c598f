/**
 * Benchmark runner: `npm run bench -- <name> [options]` runs `bench/<name>.ts`, whose module
 * exports `main(args)`. Run with no name (or an unknown one) for the list.
 */
import { readdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((file) => file.endsWith(".ts") && file !== "run.ts")
  .map((file) => file.slice(0, -3))
  .sort()

const [name, ...args] = process.argv.slice(2)

if (name === undefined || !available.includes(name)) {
  if (name !== undefined) process.stderr.write(`unknown benchmark: ${name}\n`)
  process.stderr.write(
    `usage: npm run bench -- <name> [options]\n\nbenchmarks:\n${available.map((b) => `  ${b}`).join("\n")}\n` +
      `\nexample: npm run bench -- direct --events=20000 --concurrency=64 --reps=3\n`
  )
  process.exit(1)
}

const module = (await import(join(here, `${name}.ts`))) as {
  readonly main?: (args: ReadonlyArray<string>) => Promise<void>
}
if (typeof module.main !== "function") {
  process.stderr.write(`bench/${name}.ts does not export main(args)\n`)
  process.exit(1)
}
await module.main(args)
