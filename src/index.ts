/**
 * Fanout: send one event to several HTTP APIs at once, reliably.
 *
 * @since 0.1.0
 */
export * as Bulkhead from "./Resilience/Bulkhead.js"
export * as CircuitBreaker from "./Resilience/CircuitBreaker.js"
export * as Event from "./Event.js"
export * as Fanout from "./Fanout.js"
export * as Outcome from "./Outcome.js"
export * as Policy from "./Resilience/Policy.js"
export * as RateLimit from "./Resilience/RateLimit.js"
export * as Retry from "./Resilience/Retry.js"
export * as Router from "./Router.js"
export * as Signing from "./Signing.js"
export * as Target from "./Target.js"
export * as TargetError from "./TargetError.js"
export * as Worker from "./Worker.js"
export * as Store from "./Store.js"
export * as MemoryStore from "./Store/Memory.js"
export * as SqlStore from "./Store/Sql.js"
export * as SqliteStore from "./Store/Sqlite.js"
export * as PostgresStore from "./Store/Postgres.js"
export * as Pipeline from "./Pipeline.js"
export * as Outbox from "./Outbox.js"
export * as Registry from "./Registry.js"
export * as Config from "./Config.js"
export * as HttpTarget from "./Targets/Http.js"
