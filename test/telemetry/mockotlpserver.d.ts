/** The part of `@elastic/mockotlpserver` (0.10, plain JS without declarations) the telemetry tests use. */
declare module "@elastic/mockotlpserver" {
  export interface MockOtlpServerOptions {
    readonly logLevel?: "trace" | "debug" | "info" | "warn" | "error" | "fatal"
    readonly services?: ReadonlyArray<"http" | "grpc" | "ui">
    readonly httpHostname?: string
    readonly httpPort?: number
    readonly onTrace?: (trace: unknown) => void
  }
  export class MockOtlpServer {
    constructor(options?: MockOtlpServerOptions)
    /** `http://host:port/` once started (a `URL`). */
    httpUrl: URL | null
    start(): Promise<void>
    close(): Promise<void>
  }
  /** A received trace request as JSON: hex ids, `kind` as `SPAN_KIND_*`, attributes as an object. */
  export function normalizeTrace(trace: unknown): {
    readonly resourceSpans: ReadonlyArray<{
      readonly resource?: { readonly attributes?: Readonly<Record<string, unknown>> }
      readonly scopeSpans: ReadonlyArray<{
        readonly spans: ReadonlyArray<{
          readonly traceId: string
          readonly spanId: string
          readonly parentSpanId?: string
          readonly name: string
          readonly kind: string
          readonly attributes?: Readonly<Record<string, unknown>>
        }>
      }>
    }>
  }
}
