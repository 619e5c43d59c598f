/**
 * The `fanout` executable (bin/fanout.js loads it through tsx): the command line under
 * `NodeRuntime.runMain`, which interrupts the program on SIGINT/SIGTERM so every layer shuts down
 * gracefully; exit codes come from {@link Cli.teardown}.
 *
 * @since 0.1.0
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as Cli from "./Cli.js"

Cli.run(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true, teardown: Cli.teardown })
)
