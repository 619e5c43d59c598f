// `node --import bench/lib/built.mjs`: registers built-resolve.mjs (see there) in this process.
import { register } from "node:module"

register(new URL("./built-resolve.mjs", import.meta.url).href, import.meta.url)
