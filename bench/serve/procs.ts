/**
 * Child processes of the serve benchmark: each started in a process group of its own (detached),
 * optionally through `taskset -c <cpu>` (which execs, so every thread of the child is pinned), with
 * its stdout/stderr in a log file; killed by group (`kill -<pgid>`). Every group started here is
 * killed when this process exits, however it exits.
 *
 * CPU accounting: {@link cpuMsOf} sums utime + stime (/proc/<pid>/stat) of every live process in the
 * given process groups plus the given single pids (Redis, PostgreSQL backends).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { closeSync, openSync, readdirSync, readFileSync } from "node:fs"
import { createServer } from "node:net"

export interface Proc {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  readonly log: string
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<string>
  /** SIGTERM to the group, SIGKILL after `graceMs`. */
  readonly stop: (graceMs?: number) => Promise<string>
}

const groups = new Set<number>()
const singles = new Set<number>()

const killAll = () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  for (const pid of singles) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
}

const cleanups = new Set<() => Promise<unknown>>()

/** Async cleanup (dropping a database) run on SIGINT/SIGTERM/SIGHUP after the kill, for at most 5 s. */
export const onSignal = (cleanup: () => Promise<unknown>): () => void => {
  cleanups.add(cleanup)
  return () => void cleanups.delete(cleanup)
}

let installed = false
/** Kills every child on exit (however it comes), and on SIGINT/SIGTERM/SIGHUP (then runs {@link onSignal}'s cleanups). */
export const installCleanup = (): void => {
  if (installed) return
  installed = true
  process.on("exit", killAll)
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      process.stderr.write(`serve bench: ${signal}, killing children\n`)
      killAll()
      const timer = setTimeout(() => process.exit(130), 5_000)
      void Promise.allSettled([...cleanups].map((f) => f())).then(() => {
        clearTimeout(timer)
        process.exit(130)
      })
    })
  }
}

/** A process not started here (Redis started by bench/durable/redis.ts) that must die with us. */
export const track = (pid: number): void => void singles.add(pid)
export const untrack = (pid: number): void => void singles.delete(pid)

/** Starts `command args` detached (own process group), pinned to `cpu` when given. */
export const start = (
  name: string,
  command: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cpu?: number | undefined
    readonly log: string
    readonly env?: NodeJS.ProcessEnv
    readonly ipc?: boolean
  }
): Proc => {
  const out = openSync(options.log, "a")
  const [cmd, argv] = options.cpu === undefined
    ? [command, [...args]]
    : ["taskset", ["-c", String(options.cpu), command, ...args]]
  const child = spawn(cmd, argv, {
    detached: true,
    // "advanced": NaN and Infinity survive the IPC messages.
    serialization: "advanced",
    stdio: options.ipc === true ? ["ignore", out, out, "ipc"] : ["ignore", out, out],
    env: { ...process.env, ...options.env }
  })
  closeSync(out)
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name}: could not start ${command}`)
  groups.add(pid)
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => {
      groups.delete(pid)
      resolve(signal ?? String(code))
    })
  )
  const stop = async (graceMs = 5_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return exited
    try {
      process.kill(-pid, "SIGTERM")
    } catch {
      // gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, "SIGKILL")
      } catch {
        // gone
      }
    }, graceMs)
    const how = await exited
    clearTimeout(timer)
    // Anything left in the group (a grandchild) goes too.
    try {
      process.kill(-pid, "SIGKILL")
    } catch {
      // gone
    }
    return how
  }
  return { name, pid, child, log: options.log, exited, stop }
}

/** Pins every thread of a running process (`taskset -a -pc`); false where not possible. */
export const pinAll = (pid: number, cpu: number): boolean => {
  try {
    execFileSync("taskset", ["-a", "-pc", String(cpu), String(pid)], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

interface Stat {
  readonly pgid: number
  readonly cpuMs: number
}

const stat = (pid: number): Stat | undefined => {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    // After "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    return { pgid: Number(fields[2]), cpuMs: ((Number(fields[11]) + Number(fields[12])) / clockTicks) * 1000 }
  } catch {
    return undefined
  }
}

/** CPU ms so far of every process in `pgids` (scanned in /proc) plus `pids`, by pid. */
export const cpuMsOf = (pgids: ReadonlyArray<number>, pids: ReadonlyArray<number> = []): Map<number, number> => {
  const out = new Map<number, number>()
  const wanted = new Set(pgids)
  if (wanted.size > 0) {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      const s = stat(Number(entry))
      if (s !== undefined && wanted.has(s.pgid)) out.set(Number(entry), s.cpuMs)
    }
  }
  for (const pid of pids) {
    const s = stat(pid)
    if (s !== undefined) out.set(pid, s.cpuMs)
  }
  return out
}

/** CPU ms spent between two {@link cpuMsOf} samples (a process new in `after` counts whole). */
export const cpuDelta = (before: Map<number, number>, after: Map<number, number>): number => {
  let total = 0
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0)
  return total
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Polls `check` every `everyMs` until it returns true, for at most `timeoutMs`; false on timeout
 * (a `check` that throws counts as "not yet"). Stops at once, with an error, when `dead()` is true.
 */
export const until = async (
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  everyMs = 100,
  dead: () => string | undefined = () => undefined
): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const why = dead()
    if (why !== undefined) throw new Error(why)
    try {
      if (await check()) return true
    } catch {
      // not yet
    }
    if (Date.now() >= deadline) return false
    await sleep(everyMs)
  }
}

/** "<name> exited (<code>)" for the first of `procs` that has exited, else undefined. */
export const exitedOf = (procs: ReadonlyArray<Proc>): string | undefined => {
  const gone = procs.find((p) => p.child.exitCode !== null || p.child.signalCode !== null)
  return gone === undefined
    ? undefined
    : `${gone.name} exited (${gone.child.signalCode ?? gone.child.exitCode}):\n${tail(gone.log)}`
}

/** GET `url` answers 2xx (a bounded wait of 2 s per try). */
export const answers = async (url: string): Promise<boolean> => {
  const response = await fetch(url, { signal: AbortSignal.timeout(2_000) })
  await response.arrayBuffer()
  return response.ok
}

/** The last `lines` lines of a log file, for error messages. */
export const tail = (file: string, lines = 20): string => {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
  } catch {
    return "(no log)"
  }
}

/** Resident memory (VmRSS) of every process in `pgids` (scanned in /proc), MiB. */
export const rssMbOf = (pgids: ReadonlyArray<number>): number => {
  const wanted = new Set(pgids)
  let kb = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const s = stat(Number(entry))
    if (s === undefined || !wanted.has(s.pgid)) continue
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${entry}/status`, "utf8"))
      if (match !== null) kb += Number(match[1])
    } catch {
      // the process exited meanwhile
    }
  }
  return kb / 1024
}
