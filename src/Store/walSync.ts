/**
 * `synchronous = FULL` without blocking the event loop (internal).
 *
 * better-sqlite3 is synchronous: with SQLite's own `FULL`, every `COMMIT` calls `fdatasync` on the
 * WAL file inside the call, and the event loop stands still for the whole disk flush (0.6 ms on
 * this project's machines, several ms on slower disks). Group commit cannot grow meanwhile either:
 * no request is read while the loop is blocked.
 *
 * So a store that owns its connection runs it at `synchronous = NORMAL` (in WAL mode: the WAL is
 * written at each commit, synced only at checkpoints, and its header is synced when it is reused)
 * and makes each commit durable itself: after `COMMIT` returns, the WAL file is `fdatasync`'d on
 * libuv's thread pool, and the commit's callers are answered only when that flush has completed.
 * The acknowledged commits are then exactly as durable as with SQLite's `FULL` (the same flush of
 * the same file, after the commit's frames were written), while the loop reads, parses and commits
 * the next batch. One flush covers every commit written before it began, so commits that end while
 * a flush runs share the next one.
 *
 * @internal
 */
import * as fs from "node:fs"

/** The part of `node:fs` the syncer uses (a test may hold a flush to observe the ordering). */
export interface Fs {
  readonly open: (
    path: string,
    flags: string,
    callback: (error: NodeJS.ErrnoException | null, fd: number) => void
  ) => void
  readonly fdatasync: (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void
  readonly closeSync: (fd: number) => void
}

/** Runs `done` once everything committed before the call is on disk (or with the flush's error). */
export interface WalSync {
  readonly sync: (done: (error: Error | undefined) => void) => void
  /** Flushes completed (each may cover several commits). */
  readonly flushes: () => number
  readonly close: () => void
}

export const make = (walFile: string, io: Fs = fs): WalSync => {
  let fd: number | undefined
  let running = false
  let closed = false
  let waiting: Array<(error: Error | undefined) => void> = []
  let flushes = 0

  const closeFd = () => {
    if (fd === undefined) return
    const handle = fd
    fd = undefined
    try {
      io.closeSync(handle)
    } catch {
      // Nothing is waiting on this descriptor any more.
    }
  }

  const finish = (batch: ReadonlyArray<(error: Error | undefined) => void>, error: Error | undefined) => {
    running = false
    if (error === undefined) flushes++
    // A failed flush may leave a bad descriptor: the next one opens the file again.
    else closeFd()
    for (const done of batch) done(error)
    if (waiting.length > 0) start()
    else if (closed) closeFd()
  }

  const start = () => {
    running = true
    // Everything committed before this point is covered by the flush that starts now.
    const batch = waiting
    waiting = []
    if (fd !== undefined) return io.fdatasync(fd, (error) => finish(batch, error ?? undefined))
    io.open(walFile, "r", (error, handle) => {
      if (error !== null) return finish(batch, error)
      fd = handle
      io.fdatasync(handle, (error) => finish(batch, error ?? undefined))
    })
  }

  return {
    sync: (done) => {
      waiting.push(done)
      if (!running) start()
    },
    flushes: () => flushes,
    // Flushes already asked for still complete; the descriptor is closed once none is running.
    close: () => {
      closed = true
      if (!running) closeFd()
    }
  }
}
