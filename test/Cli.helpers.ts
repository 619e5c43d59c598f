/**
 * Running the CLI in the test's process (`Cli.run`, as `bin.ts` does): what it printed, and the exit
 * code `Cli.teardown` would leave with.
 */
import { NodeContext } from "@effect/platform-node"
import { vi } from "@effect/vitest"
import { Effect } from "effect"
import * as Cli from "../src/Cli.js"
import * as Config from "../src/Config.js"

export interface Outcome {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `fanout ...args` in this process: its output, and the exit code `bin.ts` would leave with. */
export const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Effect.Effect<Outcome> =>
  Effect.gen(function*() {
    let stdout = ""
    let stderr = ""
    const log = vi.spyOn(console, "log").mockImplementation((...xs: Array<unknown>) => {
      stdout += xs.map(String).join(" ") + "\n"
    })
    const error = vi.spyOn(console, "error").mockImplementation((...xs: Array<unknown>) => {
      stderr += xs.map(String).join(" ") + "\n"
    })
    const exit = yield* Cli.run(["node", "fanout", ...args]).pipe(
      Effect.provide(NodeContext.layer),
      // Shaped like the process environment (`FANOUT_PORT`: nested configs joined with `_`).
      Effect.withConfigProvider(Config.environmentProvider(env)),
      Effect.exit,
      Effect.ensuring(Effect.sync(() => {
        log.mockRestore()
        error.mockRestore()
      }))
    )
    let code = -1
    Cli.teardown(exit, (c) => (code = c))
    return { code, stdout, stderr }
  })
