/**
 * The machine's PostgreSQL for the serve benchmark (127.0.0.1:5432, user postgres, trust auth):
 * a database of its own per measured run (`bench_serve_<pid>_<n>`, created from the `test`
 * database's connection and dropped after with `WITH (FORCE)`), the backends serving it (for CPU
 * accounting and pinning), and the server's durability settings.
 */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
// pg ships no types here (it comes with @effect/sql-pg).
const { Client } = require("pg") as {
  Client: new(options: { connectionString: string }) => {
    connect: () => Promise<void>
    query: (text: string, values?: Array<unknown>) => Promise<{ rows: Array<Record<string, unknown>> }>
    end: () => Promise<void>
  }
}

export const adminUrl = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

const withClient = async <A>(f: (client: InstanceType<typeof Client>) => Promise<A>): Promise<A> => {
  const client = new Client({ connectionString: adminUrl })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/** Whether PostgreSQL answers at {@link adminUrl} (within 3 s). */
export const available = async (): Promise<boolean> => {
  try {
    return await Promise.race([
      withClient(async (c) => (await c.query("SELECT 1 AS one")).rows.length === 1),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3_000))
    ])
  } catch {
    return false
  }
}

/** The URL of `database` on the same server. */
export const urlOf = (database: string): string => {
  const url = new URL(adminUrl)
  url.pathname = `/${database}`
  return url.toString()
}

export const createDatabase = (name: string): Promise<string> =>
  withClient(async (c) => {
    if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`)
    await c.query(`CREATE DATABASE ${name}`)
    return urlOf(name)
  })

export const dropDatabase = (name: string): Promise<void> =>
  withClient(async (c) => {
    if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`)
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  })

/** Drops the `bench_serve_<pid>_*` databases whose creating process no longer runs. */
export const dropStale = (): Promise<ReadonlyArray<string>> =>
  withClient(async (c) => {
    const rows = (await c.query("SELECT datname FROM pg_database WHERE datname LIKE 'bench_serve_%'")).rows
    const dropped: Array<string> = []
    for (const row of rows) {
      const name = String(row.datname)
      const pid = Number(name.split("_")[2])
      let alive = pid !== process.pid
      try {
        process.kill(pid, 0)
      } catch {
        alive = false
      }
      if (!alive && /^bench_serve_\d+_\d+$/.test(name)) {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
        dropped.push(name)
      }
    }
    return dropped
  })

/** The pids of the backends connected to `database`. */
export const backends = (database: string): Promise<ReadonlyArray<number>> =>
  withClient(async (c) =>
    (await c.query("SELECT pid FROM pg_stat_activity WHERE datname = $1", [database])).rows.map((r) => Number(r.pid))
  )

/** e.g. `PostgreSQL 15.20, fsync=on, synchronous_commit=on`. */
export const describe = (): Promise<string> =>
  withClient(async (c) => {
    const one = async (sql: string) => {
      const row = (await c.query(sql)).rows[0] ?? {}
      return String(Object.values(row)[0] ?? "?")
    }
    const version = await one("SHOW server_version")
    return `PostgreSQL ${version.split(" ")[0]}, fsync=${await one("SHOW fsync")}, synchronous_commit=${await one(
      "SHOW synchronous_commit"
    )}`
  })
