import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  color: string;
  /** Dashed line (e.g. a secondary measure). */
  dash?: boolean;
  fill?: boolean;
}

/**
 * A uPlot time chart that follows its container's width. `data[0]` is time in epoch seconds, the
 * others one array per series (null = no data). Data changes call setData, never a rebuild.
 */
export function TimeChart(props: {
  title: string;
  series: ChartSeries[];
  data: (number | null)[][];
  format?: (value: number) => string;
  height?: number;
  xRange?: [number, number];
  testid?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const xRange = useRef(props.xRange);
  xRange.current = props.xRange;
  const format = useRef(props.format);
  format.current = props.format;
  const seriesKey = props.series.map((s) => s.label + s.color).join('|');

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const muted = getComputedStyle(document.documentElement).getPropertyValue('--muted').trim() || '#64748b';
    const fmt = (v: number | null | undefined) =>
      v === null || v === undefined ? '–' : format.current ? format.current(v) : String(v);
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 200,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { live: true },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => xRange.current ?? [min, max],
        },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { stroke: muted, grid: { stroke: 'rgba(128,128,128,0.12)' }, ticks: { stroke: 'rgba(128,128,128,0.2)' } },
        {
          stroke: muted,
          size: 66,
          grid: { stroke: 'rgba(128,128,128,0.12)' },
          ticks: { stroke: 'rgba(128,128,128,0.2)' },
          values: (_u, ticks) => ticks.map((t) => fmt(t)),
        },
      ],
      series: [
        {},
        ...props.series.map((s): uPlot.Series => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          spanGaps: false,
          points: { show: false },
          value: (_u, v) => fmt(v),
          ...(s.dash ? { dash: [4, 4] } : {}),
          ...(s.fill ? { fill: `${s.color}22` } : {}),
        })),
      ],
    };
    const u = new uPlot(opts, props.data as uPlot.AlignedData, el);
    plot.current = u;
    const observer = new ResizeObserver(() => {
      const width = Math.max(200, el.clientWidth);
      if (Math.abs(width - u.width) > 1) u.setSize({ width, height: u.height });
    });
    observer.observe(el);
    return () => {
      observer.disconnect();
      u.destroy();
      plot.current = undefined;
    };
  }, [seriesKey, props.height]);

  useEffect(() => {
    plot.current?.setData(props.data as uPlot.AlignedData);
  }, [props.data]);

  return (
    <div class="chart" data-testid={props.testid}>
      <div class="chart-title">{props.title}</div>
      <div ref={box} class="chart-box" />
    </div>
  );
}
