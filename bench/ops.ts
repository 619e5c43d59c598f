/**
 * Benchmark "ops": what one durable event costs in Effect's terms — the Effect instructions its
 * fibers evaluate, the fibers started, the suspensions, and the bytes allocated on the JS heap —
 * over the measured window of the durable end-to-end side (bench/durable/side.ts with
 * `FANOUT_BENCH_COUNT=1`: SQLite FULL, producer and worker in one process, two loopback targets
 * answering at once in a process of their own).
 *
 * These are counts, not timings: they do not depend on what else the machine is doing (the
 * instruction count varies only with how the group commit happened to batch), so they compare two
 * versions of the hot path on a noisy machine where CPU time per event cannot. `--base=DIR` runs
 * the same side from another checkout of the project too (e.g. `git worktree add /tmp/base HEAD~3`
 * with `node_modules` linked), alternating, and prints both; both then run from source under tsx
 * (the compiled-code hook of bench/run.ts maps only this checkout).
 *
 * Prints only (no RESULTS.md section): the figures are quoted, with the command, where used.
 *
 * Run: npm run bench -- ops [--events=3000] [--warmup=1000] [--rounds=2] [--base=DIR]
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { median } from "./lib/stats.js"
import * as MockTargets from "./lib/targets.js"

const root = resolve(fileURLToPath(new URL("..", import.meta.url)))

const option = (args: ReadonlyArray<string>, name: string): string | undefined =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)

interface Counts {
  readonly effectsPerEvent: number
  readonly fibersPerEvent: number
  readonly suspendsPerEvent: number
  readonly allocatedKiBPerEvent: number
}

export const main = async (args: ReadonlyArray<string>): Promise<void> => {
  const events = Number(option(args, "events") ?? 3000)
  const warmup = Number(option(args, "warmup") ?? 1000)
  const rounds = Number(option(args, "rounds") ?? 2)
  const base = option(args, "base")
  const trees: Array<readonly [string, string]> = [
    ["this", root],
    ...(base !== undefined ? [["base", resolve(base)] as const] : [])
  ]
  // Two trees compare from source (tsx) alike: bench/run.ts's compiled-code hook maps only this checkout.
  const sourceEnv = base === undefined ? {} : {
    NODE_OPTIONS: (process.env.NODE_OPTIONS ?? "").replace(/--import=\S*built\.mjs/, "").trim(),
    FANOUT_BENCH_BUILT: ""
  }
  const targets = await MockTargets.start(0)
  const results = new Map<string, Array<Counts>>(trees.map(([name]) => [name, []]))
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [name, dir] of round % 2 === 0 ? trees : [...trees].reverse()) {
        const tmp = mkdtempSync(join(tmpdir(), "fanout-ops-"))
        const side = {
          kind: "fanout",
          store: { kind: "sqlite", filename: join(tmp, "fanout.db"), synchronous: "FULL" },
          events,
          warmup,
          producers: 32,
          concurrency: 100,
          urlA: targets.urlA,
          urlB: targets.urlB
        }
        const out = spawnSync("node", ["--import", "tsx", join(dir, "bench/durable/side.ts"), JSON.stringify(side)], {
          cwd: dir,
          encoding: "utf8",
          env: { ...process.env, ...sourceEnv, FANOUT_BENCH_COUNT: "1" }
        })
        rmSync(tmp, { recursive: true, force: true })
        if (out.status !== 0) throw new Error(`side (${name}) failed: ${out.stderr.slice(-2000)}`)
        const extra = (JSON.parse(out.stdout.trim().split("\n").pop()!) as { extra: Counts }).extra
        results.get(name)!.push(extra)
        process.stdout.write(
          `round ${round + 1} ${name}: ${extra.effectsPerEvent.toFixed(1)} Effect instructions, ${
            extra.fibersPerEvent.toFixed(2)
          } fibers, ${extra.suspendsPerEvent.toFixed(1)} suspensions, ${
            extra.allocatedKiBPerEvent.toFixed(1)
          } KiB allocated per event\n`
        )
      }
    }
  } finally {
    await targets.stop()
  }
  process.stdout.write(`\nmedians over ${rounds} rounds of ${events} events (two deliveries each), SQLite FULL:\n`)
  process.stdout.write(
    "| tree | Effect instructions / event | fibers / event | suspensions / event | KiB allocated / event |\n|---|---:|---:|---:|---:|\n"
  )
  for (const [name, list] of results) {
    const m = (f: (c: Counts) => number) => median(list.map(f))
    process.stdout.write(
      `| ${name} | ${m((c) => c.effectsPerEvent).toFixed(1)} | ${m((c) => c.fibersPerEvent).toFixed(2)} | ${
        m((c) => c.suspendsPerEvent).toFixed(1)
      } | ${m((c) => c.allocatedKiBPerEvent).toFixed(1)} |\n`
    )
  }
}
