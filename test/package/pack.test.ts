/**
 * The published package (issue 13, item 1): `npm pack` (its `prepack` cleans dist/ and builds it),
 * the tarball installed into a fresh `"type": "module"` project in a temporary directory, and
 * there, with plain `node` (no tsx, NODE_OPTIONS cleared):
 *
 * - `fanout` and `fanout/testing` import, and a two-target fan-out (README's direct mode:
 *   `Fanout.make(router)`, `fanout.send(event)`) reaches two loopback node:http servers;
 * - `npx fanout --help` exits 0 (the bin, run from node_modules/, uses dist/bin.js);
 * - a consumer .ts file type-checks with this repository's TypeScript (`module` and
 *   `moduleResolution` NodeNext, `strict`, `exactOptionalPropertyTypes`), resolving `fanout` and
 *   `fanout/testing` through the `types` conditions of `exports`; an `@ts-expect-error` line
 *   proves the types are the real ones, not `any`.
 *
 * Installing needs the registry (for the dependencies; better-sqlite3 may compile, about a
 * minute). When `npm install` fails the test is skipped with a SKIPPED line saying why, unless
 * FANOUT_REQUIRE_PACK=1, in which case it fails.
 */
import { execFile } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, expect, it } from "vitest"

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..")
const required = process.env["FANOUT_REQUIRE_PACK"] === "1"

/** npm settings given by environment that the child npm keeps (where the registry and the cache are). */
const keptNpmSettings = new Set([
  "npm_config_registry",
  "npm_config_cache",
  "npm_config_userconfig",
  "npm_config_cafile",
  "npm_config_strict_ssl",
  "npm_config_proxy",
  "npm_config_https_proxy",
  "npm_config_noproxy"
])

/**
 * The environment of the child processes: no npm lifecycle variables of an outer `npm test` (its
 * npm_config_local_prefix would point the inner npm at this repository), no loaders.
 */
const childEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    const npmVariable = key.toLowerCase().startsWith("npm_") && !keptNpmSettings.has(key.toLowerCase())
    if (npmVariable || key === "NODE_OPTIONS" || key === "VITEST" || key.startsWith("VITEST_")) continue
    env[key] = value
  }
  env["NO_COLOR"] = "1"
  return env
}

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const run = (file: string, args: ReadonlyArray<string>, cwd: string, timeoutMs = 240_000): Promise<Ran> =>
  new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd, env: childEnv(), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr) + (error !== null && code === 1 ? `\n${error.message}` : "")
        })
      }
    )
  })

const npm = process.platform === "win32" ? "npm.cmd" : "npm"
const npx = process.platform === "win32" ? "npx.cmd" : "npx"

const expectOk = (what: string, ran: Ran) => {
  if (ran.code !== 0) {
    throw new Error(`${what} exited with ${ran.code}\n--- stdout\n${ran.stdout}\n--- stderr\n${ran.stderr}`)
  }
}

const tail = (text: string, lines = 15) => text.trim().split("\n").slice(-lines).join("\n")

let temp: string | undefined
afterAll(async () => {
  if (temp !== undefined) await rm(temp, { recursive: true, force: true })
})

/** Run with plain node in the consumer project: the two-target fan-out and both entry points. */
const runtimeScript = `
import { createServer } from "node:http"
import { HttpClientRequest } from "@effect/platform"
import { Effect, Layer, Schema } from "effect"
import { Event, Fanout, Router, Target, Transport } from "fanout"
import { Fault, TestTarget, keyOf, simulate } from "fanout/testing"
import { FanoutApi, FanoutClient, Main, Server, Telemetry } from "fanout/server"

const api = (name, status) =>
  new Promise((resolve) => {
    const seen = []
    const server = createServer((req, res) => {
      let text = ""
      req.on("data", (chunk) => (text += chunk))
      req.on("end", () => {
        seen.push({ method: req.method, url: req.url, key: req.headers["idempotency-key"], body: JSON.parse(text) })
        res.writeHead(status, { "content-type": "application/json" })
        res.end(JSON.stringify({ id: name + "-" + seen.length }))
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resolve({
        seen,
        url: "http://127.0.0.1:" + server.address().port,
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(() => done()) })
      }))
  })

const inventory = await api("reservation", 201)
const notification = await api("message", 202)

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, sku: Schema.String, qty: Schema.Int }))
const Inventory = Target.make("inventory", {
  accepts: Schema.Struct({ sku: Schema.String, qty: Schema.Int }),
  request: (event) => HttpClientRequest.post(inventory.url + "/reservations").pipe(
    HttpClientRequest.bodyUnsafeJson({ sku: event.payload.sku, quantity: event.payload.qty })),
  response: Schema.Struct({ id: Schema.String })
})
const Notification = Target.make("notification", {
  request: (event) => HttpClientRequest.post(notification.url + "/notify").pipe(
    HttpClientRequest.bodyUnsafeJson({ text: "order " + event.payload.orderId + " placed" }))
})
const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory, Notification])

const program = Effect.gen(function*() {
  const fanout = yield* Fanout.make(router)
  const event = yield* OrderPlaced.make({ orderId: "o-1", sku: "sku-42", qty: 2 })
  const settled = yield* fanout.send(event)
  return { event, settled }
})

const { event, settled } = await program.pipe(
  Effect.scoped,
  Effect.provide(Layer.mergeAll(Inventory.layer, Notification.layer)),
  Effect.provide(Transport.layer()),
  Effect.runPromise
)
await inventory.close()
await notification.close()

console.log(JSON.stringify({
  outcomes: Object.fromEntries(Object.entries(settled.outcomes).map(([name, outcome]) => [name, outcome._tag])),
  inventory: inventory.seen,
  notification: notification.seen,
  inventoryKey: keyOf(event, "inventory"),
  testing: [typeof TestTarget.make, typeof Fault.script, typeof simulate],
  server: [typeof Server.layerHandlers, typeof Server.layer, typeof FanoutClient.make, typeof Main.layer, typeof Telemetry.layer, Object.keys(FanoutApi.groups).sort()]
}))
`

/** Type-checked with tsc in the consumer project. */
const consumerSource = `
import { HttpClientRequest } from "@effect/platform"
import { Effect, Layer, Schema } from "effect"
import { Event, Fanout, Router, Target } from "fanout"
import type { Outcome } from "fanout"
import { Fault, TestTarget, keyOf } from "fanout/testing"
import { FanoutApi, FanoutClient, Server } from "fanout/server"
import { HttpApiBuilder } from "@effect/platform"

const OrderPlaced = Event.define("order.placed", Schema.Struct({ orderId: Schema.String, qty: Schema.Int }))

const Inventory = Target.make("inventory", {
  accepts: Schema.Struct({ qty: Schema.Int }),
  request: (event) => HttpClientRequest.post("http://127.0.0.1:9001/r").pipe(
    HttpClientRequest.bodyUnsafeJson({ quantity: event.payload.qty })),
  response: Schema.Struct({ reservationId: Schema.String })
})

const Warehouse = Target.make("warehouse", {
  accepts: Schema.Struct({ sku: Schema.String }),
  request: (event) => HttpClientRequest.post("http://127.0.0.1:9002/w").pipe(
    HttpClientRequest.bodyUnsafeJson({ sku: event.payload.sku }))
})

export const router = Router.make(OrderPlaced).route(OrderPlaced, [Inventory])

// @ts-expect-error Warehouse needs \`sku\`; order.placed has none (the types are real, not any)
export const bad = Router.make(OrderPlaced).route(OrderPlaced, [Warehouse])

export const program = Effect.gen(function*() {
  const fanout = yield* Fanout.make(router)
  const event = yield* OrderPlaced.make({ orderId: "o-1", qty: 2 })
  const settled = yield* fanout.send(event)
  const outcome: Outcome.Outcome<unknown> | undefined = settled.outcomes["inventory"]
  return [outcome?._tag, keyOf(event, "inventory")] as const
})

export const target = TestTarget.make("inventory", { faults: Fault.script([Fault.status(503), Fault.ok()]) })

// The server as a library: Fanout's handlers under an application's own HttpApiBuilder.api, and the typed client.
export const api = HttpApiBuilder.api(FanoutApi).pipe(Layer.provide(Server.layerHandlers()))
export const sent = Effect.flatMap(FanoutClient.make({ baseUrl: "http://127.0.0.1:8080" }), (client) =>
  client.events.send({ payload: { type: "order.placed", payload: {} }, urlParams: {}, headers: {} }))
export const accepted: Effect.Effect.Success<typeof sent>["deliveries"] = []
`

it("npm pack installs into a fresh ESM project and works there with plain node", async (ctx) => {
  const started = Date.now()
  const version = (JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string }).version
  temp = await mkdtemp(join(tmpdir(), "fanout-pack-"))

  // 1. npm pack (prepack: clean + build)
  const packed = await run(npm, ["pack", "--json", "--pack-destination", temp], root)
  expectOk("npm pack", packed)
  const manifest = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as Array<{
    filename: string
    files: Array<{ path: string }>
  }>
  const tarball = join(temp, manifest[0]!.filename)
  const files = manifest[0]!.files.map((f) => f.path)
  expect(files).toEqual(expect.arrayContaining([
    "package.json",
    "README.md",
    "bin/fanout.js",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/index.d.ts.map",
    "dist/testing.js",
    "dist/testing.d.ts",
    "dist/server.js",
    "dist/server.d.ts",
    "dist/Client.js",
    "dist/bin.js",
    "LICENSE"
  ]))
  expect(files.filter((f) => /^(test|bench|examples|node_modules)\//.test(f) || f.startsWith("tsconfig"))).toEqual([])

  // 2. a fresh ESM project, the tarball installed
  const project = join(temp, "consumer")
  await run("mkdir", ["-p", project], temp)
  expectOk("npm init", await run(npm, ["init", "-y"], project))
  expectOk("npm pkg set type=module", await run(npm, ["pkg", "set", "type=module"], project))
  const installed = await run(
    npm,
    ["install", tarball, "--no-audit", "--no-fund", "--prefer-offline"],
    project,
    420_000
  )
  if (installed.code !== 0) {
    const reason = `npm install of the packed tarball failed (exit ${installed.code}; no registry access?):\n${
      tail(installed.stderr)
    }`
    if (required) throw new Error(reason)
    console.warn(`SKIPPED test/package/pack.test.ts: ${reason}\nSet FANOUT_REQUIRE_PACK=1 to fail instead.`)
    ctx.skip()
    return
  }
  const installSeconds = (Date.now() - started) / 1000

  // 3. plain node: both entry points, a two-target fan-out over loopback
  await writeFile(join(project, "run.mjs"), runtimeScript)
  const ran = await run(process.execPath, ["run.mjs"], project, 60_000)
  expectOk("node run.mjs", ran)
  const result = JSON.parse(ran.stdout.trim().split("\n").at(-1)!) as {
    outcomes: Record<string, string>
    inventory: Array<{ method: string; url: string; key: string; body: unknown }>
    notification: Array<{ method: string; url: string; key: string; body: unknown }>
    inventoryKey: string
    testing: Array<string>
    server: Array<unknown>
  }
  expect(result.outcomes).toEqual({ inventory: "Delivered", notification: "Delivered" })
  expect(result.inventory).toEqual([
    { method: "POST", url: "/reservations", key: result.inventoryKey, body: { sku: "sku-42", quantity: 2 } }
  ])
  expect(result.notification).toHaveLength(1)
  expect(result.notification[0]).toMatchObject({ method: "POST", url: "/notify", body: { text: "order o-1 placed" } })
  expect(result.testing).toEqual(["function", "function", "function"])
  expect(result.server).toEqual([
    "function",
    "function",
    "function",
    "function",
    "function",
    ["deadLetters", "events", "ops", "sources", "targets"]
  ])

  // 4. the bin
  const help = await run(npx, ["fanout", "--help"], project, 60_000)
  expectOk("npx fanout --help", help)
  expect(help.stdout).toContain(`fanout ${version}`)

  // 5. a consumer .ts file, type-checked with this repository's TypeScript
  await writeFile(join(project, "consumer.ts"), consumerSource)
  await writeFile(
    join(project, "tsconfig.json"),
    JSON.stringify(
      {
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2022"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          // as in most projects: the dependencies' own .d.ts files are not re-checked (with
          // `false`, @effect/platform's need the DOM lib and @effect/sql-pg's need @types/pg)
          skipLibCheck: true,
          // @types/node from this repository (the consumer project does not install it)
          typeRoots: [join(root, "node_modules", "@types")],
          types: ["node"]
        },
        files: ["consumer.ts"]
      },
      null,
      2
    )
  )
  const tsc = await run(
    process.execPath,
    [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"],
    project,
    120_000
  )
  expectOk("tsc --noEmit (consumer)", tsc)

  console.log(
    `pack.test: packed ${files.length} files, packed and installed in ${installSeconds.toFixed(0)} s, all done in ${
      ((Date.now() - started) / 1000).toFixed(0)
    } s`
  )
}, 600_000)
