/**
 * Replaying property tests (vitest `setupFiles`, runs in every test file's process).
 *
 * Properties that name no seed of their own run with fast-check's random seed; when one fails,
 * fast-check prints `{ seed: N, path: "…" }`. `FANOUT_PROP_SEED=N npx vitest run <file>` then
 * runs every property of the file with seed N (and the properties that default to a fixed seed,
 * test/properties/* and test/pipeline/properties.test.ts, read the same variable), so the failure
 * comes back. `FANOUT_PROP_PATH` (the printed `path`) goes straight to the shrunk counterexample.
 * The process-level crash tests take `FANOUT_SEED` instead (docs/testing.md).
 */
import * as fc from "fast-check"

const seed = process.env.FANOUT_PROP_SEED
if (seed !== undefined && seed !== "") {
  const value = Number(seed)
  if (!Number.isInteger(value)) throw new Error(`FANOUT_PROP_SEED must be an integer, got ${seed}`)
  const path = process.env.FANOUT_PROP_PATH
  fc.configureGlobal({
    ...fc.readConfigureGlobal(),
    seed: value,
    ...(path !== undefined && path !== "" ? { path } : {})
  })
}
