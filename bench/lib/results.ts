/**
 * bench/RESULTS.md: each benchmark owns one "## <title>" section of it.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const file = fileURLToPath(new URL("../RESULTS.md", import.meta.url))

/**
 * Replaces the "## `title`" section of bench/RESULTS.md with `section` (which starts with that
 * heading), or appends it; the file is re-read right before, so other sections written meanwhile
 * stay. Returns the file's path.
 */
export const writeSection = (title: string, section: string): string => {
  let text = ""
  try {
    text = readFileSync(file, "utf8")
  } catch {
    text = "# Benchmark results\n"
  }
  const body = section.trimEnd()
  const start = text.search(new RegExp(`^## ${title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`, "m"))
  if (start < 0) {
    text = `${text.trimEnd()}\n\n${body}\n`
  } else {
    const rest = text.slice(start + 1)
    const next = rest.search(/^## /m)
    const end = next < 0 ? text.length : start + 1 + next
    text = `${text.slice(0, start)}${body}\n${next < 0 ? "" : "\n"}${text.slice(end)}`
  }
  writeFileSync(file, text)
  return file
}
