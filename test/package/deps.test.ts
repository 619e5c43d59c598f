/**
 * Every package the sources, tests, benchmarks, examples and scripts import is declared in
 * package.json (issue 13, item 5): nothing resolves only through hoisting (a dependency of a
 * dependency). What `src/` imports at run time must be in `dependencies` (the published package
 * runs `dist/`, built from it, where devDependencies are not installed); type-only imports in `src/`
 * must be declared too (the published `.d.ts` files name them). Node's built-ins are exempt.
 *
 * Also: `allowScripts` covers every installed package that has an install script, and approves
 * (`true`) exactly the ones Fanout needs to run: better-sqlite3 (its native addon) and esbuild
 * (its binary's check); the others are denied (`false`), their prebuilt or JS fallbacks suffice.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { builtinModules } from "node:module"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  readonly name: string
  readonly dependencies?: Record<string, string>
  readonly devDependencies?: Record<string, string>
  readonly peerDependencies?: Record<string, string>
  readonly optionalDependencies?: Record<string, string>
  readonly allowScripts?: Record<string, boolean>
}

const folders = ["src", "test", "bench", "examples", "scripts", "bin", "dashboard"]
const sourceFile = /\.(?:[cm]?[jt]sx?)$/

const filesUnder = (dir: string): Array<string> => {
  let entries: Array<string>
  try {
    entries = readdirSync(dir)
  } catch {
    return []
  }
  return entries.flatMap((name) => {
    if (name === "node_modules" || name === "dist" || name.startsWith(".")) return []
    const path = join(dir, name)
    return statSync(path).isDirectory() ? filesUnder(path) : sourceFile.test(name) ? [path] : []
  })
}

/** A specifier's package: `@scope/name` or `name` (no subpath); undefined for relative, absolute, built-in or URL ones. */
const packageOf = (specifier: string): string | undefined => {
  if (/^(?:\.|\/|node:|[a-z]+:)/.test(specifier) && !specifier.startsWith("@")) return undefined
  const parts = specifier.split("/")
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!
  return builtinModules.includes(name) ? undefined : name
}

interface Use {
  readonly file: string
  readonly pkg: string
  readonly typeOnly: boolean
}

const importsOf = (file: string): Array<Use> => {
  // Comments out (an example in a doc comment is no import); strings stay.
  const text = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
  const uses: Array<Use> = []
  const add = (specifier: string, typeOnly: boolean) => {
    const pkg = packageOf(specifier)
    if (pkg !== undefined) uses.push({ file: relative(root, file), pkg, typeOnly })
  }
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?["']([^"']+)["']/gm)) {
    add(m[3]!, m[2] !== undefined)
  }
  for (const m of text.matchAll(/\b(?:import|require)\s*\(\s*["']([^"']+)["']\s*\)/g)) add(m[1]!, false)
  // `declare module "x"` in a .d.ts describes x; it is no import of it.
  return uses.filter((u) => !new RegExp(`declare module ["']${u.pkg}["']`).test(text) || !file.endsWith(".d.ts"))
}

const declared = (kinds: ReadonlyArray<Record<string, string> | undefined>) =>
  new Set(kinds.flatMap((k) => Object.keys(k ?? {})))

describe("package.json declares what the code imports", () => {
  const uses = folders.flatMap((f) => filesUnder(join(root, f))).flatMap(importsOf)
    .filter((u) => u.pkg !== manifest.name)

  it("finds the imports (the scan works)", () => {
    const pkgs = new Set(uses.map((u) => u.pkg))
    for (const known of ["effect", "@effect/platform", "vitest", "@effect/vitest"]) expect(pkgs).toContain(known)
    // A planted use is caught: a package nobody declares.
    expect(packageOf("left-pad/index.js")).toBe("left-pad")
    expect(packageOf("@scope/pkg/sub")).toBe("@scope/pkg")
    expect(packageOf("node:fs")).toBeUndefined()
    expect(packageOf("fs/promises")).toBeUndefined()
    expect(packageOf("./x.js")).toBeUndefined()
  })

  it("every imported package is declared in dependencies or devDependencies", () => {
    const all = declared([
      manifest.dependencies,
      manifest.devDependencies,
      manifest.peerDependencies,
      manifest.optionalDependencies
    ])
    const missing = uses.filter((u) => !all.has(u.pkg)).map((u) => `${u.pkg} (${u.file})`)
    expect([...new Set(missing)]).toEqual([])
  })

  /**
   * Development packages that `src/` imports on purpose, only on a path the published package does
   * not take (each names the file and why).
   */
  const devOnlyInSrc: Readonly<Record<string, string>> = {
    // builds the dashboard from its sources in a clone; the published package ships dist/dashboard
    "esbuild": "src/Server/DashboardAssets.ts"
  }

  it("what src/ imports at run time is in dependencies (the published package has no devDependencies)", () => {
    const runtime = declared([manifest.dependencies, manifest.peerDependencies, manifest.optionalDependencies])
    const missing = uses
      .filter((u) => u.file.startsWith("src/") && !u.typeOnly && !runtime.has(u.pkg))
      .filter((u) => devOnlyInSrc[u.pkg] !== u.file)
      .map((u) => `${u.pkg} (${u.file})`)
    expect([...new Set(missing)]).toEqual([])
  })
})

describe("allowScripts", () => {
  /** Installed packages (one level of scopes) whose package.json has an install-time script. */
  const withInstallScripts = (): Array<string> => {
    const found = new Set<string>()
    const visit = (modules: string) => {
      let names: Array<string>
      try {
        names = readdirSync(modules)
      } catch {
        return
      }
      for (const name of names) {
        if (name.startsWith(".")) continue
        const dir = join(modules, name)
        if (name.startsWith("@")) {
          for (const inner of readdirSync(dir)) check(join(dir, inner), `${name}/${inner}`)
        } else check(dir, name)
      }
    }
    const check = (dir: string, name: string) => {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
          scripts?: Record<string, string>
          gypfile?: boolean
        }
        const scripts = pkg.scripts ?? {}
        let gyp = false
        try {
          gyp = statSync(join(dir, "binding.gyp")).isFile()
        } catch {
          gyp = false
        }
        if (scripts["preinstall"] || scripts["install"] || scripts["postinstall"] || (gyp && pkg.gypfile !== false)) {
          found.add(name)
        }
      } catch {
        // not a package
      }
      visit(join(dir, "node_modules"))
    }
    visit(join(root, "node_modules"))
    return [...found].sort()
  }

  it("covers every installed package with an install script, and approves exactly better-sqlite3 and esbuild", () => {
    const policy = manifest.allowScripts ?? {}
    const approved = Object.entries(policy).filter(([, allowed]) => allowed).map(([name]) => name).sort()
    expect(approved).toEqual(["better-sqlite3", "esbuild"])
    const uncovered = withInstallScripts().filter((name) => !(name in policy))
    expect(uncovered).toEqual([])
  })
})
