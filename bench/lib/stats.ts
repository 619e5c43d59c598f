/**
 * Small helpers for the benchmarks: summary statistics, a forced GC between runs, a description
 * of the machine, and pinning a process to a CPU.
 */
import { execFileSync } from "node:child_process"
import { cpus, loadavg, totalmem } from "node:os"
import { runInNewContext } from "node:vm"
import { setFlagsFromString } from "node:v8"

export const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The q-quantile (0..1) of a sample, nearest rank. */
export const quantile = (xs: Float64Array | ReadonlyArray<number>, q: number): number => {
  const sorted = Float64Array.from(xs).sort()
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

export const min = (xs: ReadonlyArray<number>): number => Math.min(...xs)
export const max = (xs: ReadonlyArray<number>): number => Math.max(...xs)

/** `1234.5` → `"1,235"`; ratios get two decimals. */
export const fmt = (x: number, digits = 0): string =>
  x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** `median (min–max)` */
export const spread = (xs: ReadonlyArray<number>, digits = 0): string =>
  `${fmt(median(xs), digits)} (${fmt(min(xs), digits)}–${fmt(max(xs), digits)})`

let gcFn: (() => void) | undefined
/** Runs a full GC (enables `--expose-gc` at run time if the process was not started with it). */
export const gc = (): void => {
  if (gcFn === undefined) {
    const global = globalThis as { gc?: () => void }
    if (typeof global.gc === "function") {
      gcFn = global.gc
    } else {
      setFlagsFromString("--expose-gc")
      gcFn = runInNewContext("gc") as () => void
    }
  }
  gcFn()
}

/** One line about the machine: CPUs, model, memory, Node, load. */
export const machine = (): string => {
  const cpu = cpus()
  let nproc = String(cpu.length)
  try {
    nproc = execFileSync("nproc", { encoding: "utf8" }).trim()
  } catch {
    // nproc is optional
  }
  const load = loadavg().map((x) => x.toFixed(2)).join(" ")
  return `nproc ${nproc}, ${cpu[0]?.model ?? "unknown CPU"}, ${
    Math.round(totalmem() / 2 ** 30)
  } GiB, Node ${process.version}, load average ${load}; Fanout ${
    process.env.FANOUT_BENCH_BUILT ? "compiled (dist/, npm run build)" : "from source under tsx"
  }`
}

/** Pins process `pid` to CPU `cpu` (`taskset`); false where that is not possible. */
export const pin = (pid: number, cpu: number): boolean => {
  try {
    execFileSync("taskset", ["-pc", String(cpu), String(pid)], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
