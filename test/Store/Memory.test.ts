import * as MemoryStore from "../../src/Store/Memory.js"
import { suite } from "./StoreSuite.js"

suite("memory", MemoryStore.layer)
