/**
 * The `captureStackTrace` option for the spans opened at one place: the stack line of the caller
 * of `spanTrace` is taken once, where `Effect.withSpan` would otherwise create an `Error` on every
 * call to find its caller. Call it where the spans are set up (not per span).
 *
 * @internal
 */
export const spanTrace = (): () => string | undefined => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 2
  const error = new Error()
  Error.stackTraceLimit = limit
  let line: string | undefined | null = null
  return () => {
    if (line === null) line = error.stack?.split("\n")[2]?.trim()
    return line
  }
}
