#!/usr/bin/env node
// The `fanout` command.
//
// - Installed from npm (this file under node_modules/, or a package without src/): runs the
//   compiled entry point, dist/bin.js, with plain Node.
// - In a clone of the repository: runs the sources, src/bin.ts, through tsx, so the command is
//   never a stale dist/ left by an earlier `npm run build`; without src/ it falls back to dist/.
//
// tsx (a dependency) is registered only when it is needed: for the sources, or when a
// configuration given on the command line or in $FANOUT_CONFIG is a .ts/.mts/.cts module (plain
// Node 20 cannot import TypeScript). Registering it always would double the start-up time.
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

const compiled = new URL("../dist/bin.js", import.meta.url)
const source = new URL("../src/bin.ts", import.meta.url)

const installed = fileURLToPath(import.meta.url).split(/[\\/]/).includes("node_modules")
const fromSource = !existsSync(compiled) || (!installed && existsSync(source))

const typescriptFile = /\.[cm]?ts$/i
const needsTsx = fromSource ||
  process.argv.slice(2).some((arg) => typescriptFile.test(arg)) ||
  typescriptFile.test(process.env["FANOUT_CONFIG"] ?? "")

if (needsTsx) {
  const { register } = await import("tsx/esm/api")
  register()
}
await import(fromSource ? source.href : compiled.href)
