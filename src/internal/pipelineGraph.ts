/**
 * The pure part of pipelines: graph validation (duplicates, unknown references, cycles) and
 * a stable topological order. No Effect here, so the config loader and the durable mode can
 * use it as is.
 *
 * @internal
 */

/** @internal */
export interface NodeInput {
  readonly name: string
  readonly after?: ReadonlyArray<string> | undefined
}

/** @internal */
export type GraphProblem =
  | { readonly _tag: "DuplicateStep"; readonly step: string }
  | { readonly _tag: "UnknownStep"; readonly step: string; readonly reference: string }
  | { readonly _tag: "Cycle"; readonly cycle: ReadonlyArray<string> }

/** @internal */
export interface Checked {
  /** Each step with its `after` list, duplicates inside a list removed, in declaration order. */
  readonly steps: ReadonlyArray<{ readonly name: string; readonly after: ReadonlyArray<string> }>
  /** Every step once, each after all of its inputs (ties in declaration order). */
  readonly order: ReadonlyArray<string>
}

/**
 * Checks a graph: enrich stages and steps have distinct names, every `after` names a step, and
 * there is no cycle. The first problem found is returned, in this order of checks; a cycle is
 * given as the path of `after` links that closes it (`["a", "b", "a"]`: a runs after b, which
 * runs after a), found by a depth-first walk in declaration order (so the answer is stable).
 *
 * @internal
 */
export const check = (
  enrich: ReadonlyArray<string>,
  input: ReadonlyArray<NodeInput>
): { readonly _tag: "Left"; readonly left: GraphProblem } | { readonly _tag: "Right"; readonly right: Checked } => {
  const fail = (left: GraphProblem) => ({ _tag: "Left" as const, left })
  const seen = new Set<string>()
  for (const name of [...enrich, ...input.map((s) => s.name)]) {
    if (seen.has(name)) return fail({ _tag: "DuplicateStep", step: name })
    seen.add(name)
  }
  const stepNames = new Set(input.map((s) => s.name))
  const steps = input.map((s) => ({ name: s.name, after: [...new Set(s.after ?? [])] }))
  for (const step of steps) {
    for (const reference of step.after) {
      if (!stepNames.has(reference)) return fail({ _tag: "UnknownStep", step: step.name, reference })
    }
  }
  const afterOf = new Map(steps.map((s) => [s.name, s.after] as const))

  // Cycles: iterative DFS along `after` links (white / grey = on the path / black).
  const state = new Map<string, 1 | 2>()
  for (const root of steps) {
    if (state.has(root.name)) continue
    const path: Array<string> = [root.name]
    const cursor: Array<number> = [0]
    state.set(root.name, 1)
    while (path.length > 0) {
      const node = path[path.length - 1]!
      const links = afterOf.get(node)!
      const i = cursor[cursor.length - 1]!
      if (i >= links.length) {
        state.set(node, 2)
        path.pop()
        cursor.pop()
        continue
      }
      cursor[cursor.length - 1] = i + 1
      const next = links[i]!
      const mark = state.get(next)
      if (mark === 1) return fail({ _tag: "Cycle", cycle: [...path.slice(path.indexOf(next)), next] })
      if (mark === undefined) {
        state.set(next, 1)
        path.push(next)
        cursor.push(0)
      }
    }
  }

  // Kahn's algorithm, always taking the earliest declared ready step.
  const order: Array<string> = []
  const done = new Set<string>()
  while (order.length < steps.length) {
    const ready = steps.find((s) => !done.has(s.name) && s.after.every((a) => done.has(a)))!
    done.add(ready.name)
    order.push(ready.name)
  }
  return { _tag: "Right", right: { steps, order } }
}
