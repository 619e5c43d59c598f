/**
 * The runnable examples run as a user runs them (`npx tsx examples/<name>.ts`, here
 * `node --import tsx`): each must exit 0 and print what its header promises.
 */
import { spawn } from "node:child_process"
import { describe, expect, it } from "vitest"

const run = (file: string): Promise<{ code: number | null; out: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_OPTIONS: "" }
    })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")))
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })

describe("examples", () => {
  it("two-apis.ts: both APIs get the order; the flaky one is retried with the same idempotency key", {
    timeout: 70_000
  }, async () => {
    const { code, out } = await run("examples/two-apis.ts")
    expect(code, out).toBe(0)
    expect(out).toMatch(/same idempotency key/)
  })

  it("saga.ts: the failed order is rolled back", { timeout: 70_000 }, async () => {
    const { code, out } = await run("examples/saga.ts")
    expect(code, out).toBe(0)
    expect(out).toMatch(/rolled back/)
    expect(out).toMatch(/0 still held/)
  })

  it("pipeline.ts: the critical path, the blocked step, and the durable run", { timeout: 70_000 }, async () => {
    const { code, out } = await run("examples/pipeline.ts")
    expect(code, out).toBe(0)
    expect(out).toMatch(/critical path: customer → payment → shipping/)
    expect(out).toMatch(/shipping\s+Blocked\s+blocked by payment/)
    expect(out).toMatch(/shipping\s+after \[customer, inventory, payment\]\s+sent at/)
  })

  it("embed-server.ts: one HttpServer serves the app's own route and Fanout's API; the typed client sends and reads", {
    timeout: 70_000
  }, async () => {
    const { code, out } = await run("examples/embed-server.ts")
    expect(code, out).toBe(0)
    expect(out).toMatch(/GET \/hello -> 200 \{"hello":"world"\} \(x-served-by: embed-example\)/)
    expect(out).toMatch(/POST \/v1\/events\?wait=settled -> order-1: orders delivered/)
    expect(out).toMatch(/the downstream API received 1 event\(s\): \["order-1"\]/)
  })
})
