import { useEffect, useRef } from "preact/hooks"
import uPlot from "uplot"

export interface Series {
  /** Seconds since the epoch. */
  readonly t: Array<number>
  readonly delivered: Array<number>
  readonly failed: Array<number>
  readonly p99: Array<number | null>
}

const css = (name: string, fallback: string) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback

/** Delivered/s and failed/s (left axis) and p99 latency in ms (right axis), over the samples taken. */
export const Chart = (props: { readonly series: Series; readonly label: string }) => {
  const box = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)

  useEffect(() => {
    const el = box.current
    if (el === null) return
    const text = css("--fg-muted", "#666")
    const grid = css("--grid", "rgba(128,128,128,0.2)")
    const axis = { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } }
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: 150,
      legend: { show: true, live: false },
      cursor: { show: true, drag: { x: false, y: false } },
      scales: { x: { time: true }, rate: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max)] }, ms: { auto: true } },
      axes: [
        { ...axis },
        { ...axis, scale: "rate", label: "per s", size: 50 },
        { ...axis, scale: "ms", side: 1, label: "p99 ms", size: 50, grid: { show: false } }
      ],
      series: [
        {},
        { label: "delivered/s", scale: "rate", stroke: css("--ok", "#1a7f37"), width: 2, points: { show: false } },
        { label: "failed/s", scale: "rate", stroke: css("--bad", "#cf222e"), width: 2, points: { show: false } },
        { label: "p99 ms", scale: "ms", stroke: css("--accent", "#0969da"), width: 1, dash: [4, 4], points: { show: false } }
      ]
    }
    const p = new uPlot(opts, [[], [], [], []], el)
    plot.current = p
    const observer = new ResizeObserver(() => p.setSize({ width: Math.max(200, el.clientWidth), height: 150 }))
    observer.observe(el)
    return () => {
      observer.disconnect()
      p.destroy()
      plot.current = null
    }
  }, [])

  useEffect(() => {
    const s = props.series
    plot.current?.setData([s.t, s.delivered, s.failed, s.p99] as uPlot.AlignedData)
  }, [props.series])

  return <div class="chart" ref={box} role="img" aria-label={props.label} />
}
