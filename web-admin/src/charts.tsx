// Charts drawn as SVG with a fixed aspect ratio, so the page does not move
// when data arrives. Each chart carries a text summary for screen readers and
// its numbers in a table one can open.
import type { RefObject } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { formatNumber, t } from "./i18n";

export interface Series {
  name: string;
  values: number[];
  tone: "primary" | "accent" | "muted" | "warn";
}

const W = 560;
const H = 240;
const PAD = { top: 14, right: 14, bottom: 34, left: 72 };
/** Axis text, in CSS pixels as drawn, whatever the chart's width. */
const TICK_PX = 13;

/**
 * The axis text's size in the drawing's own units: the SVG scales with its
 * width, so a fixed size would grow past the page's headings on a wide chart.
 * Kept between 9 and 18 units so labels still fit the margins.
 */
function useTickSize(): [RefObject<SVGSVGElement | null>, number] {
  const ref = useRef<SVGSVGElement>(null);
  const [size, setSize] = useState(15);
  useEffect(() => {
    const svg = ref.current;
    if (!svg || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(([entry]) => {
      const width = entry?.contentRect.width ?? 0;
      if (width > 0) setSize(Math.min(18, Math.max(9, (TICK_PX * W) / width)));
    });
    observer.observe(svg);
    return () => observer.disconnect();
  }, []);
  return [ref, size];
}

function scale(max: number): { top: number; ticks: number[] } {
  if (max <= 0) return { top: 1, ticks: [0, 1] };
  const magnitude = 10 ** Math.floor(Math.log10(max));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => max / s <= 4) ?? magnitude * 10;
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks };
}

interface ChartProps {
  title: string;
  labels: string[];
  series: Series[];
  kind: "bars" | "lines";
  format?: (n: number) => string;
  loading?: boolean;
}

export function Chart({ title, labels, series, kind, format = formatNumber, loading }: ChartProps) {
  const [svgRef, tickSize] = useTickSize();
  const max = Math.max(0, ...series.flatMap((s) => s.values));
  const { top, ticks } = scale(max);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const n = Math.max(1, labels.length);
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  const slot = plotW / n;
  const every = Math.ceil(n / 6);
  const summary = series
    .map((s) => `${s.name}: ${t("chart.total")} ${format(s.values.reduce((a, b) => a + b, 0))}, ${t("chart.latest")} ${format(s.values.at(-1) ?? 0)}`)
    .join("; ");
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div class="legend" aria-hidden="true">
        {series.map((s) => (
          <span key={s.name}><i class={`swatch ${s.tone}`} />{s.name}</span>
        ))}
      </div>
      <svg ref={svgRef} style={{ "--tick-size": `${tickSize.toFixed(1)}px` }} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={loading ? t("common.loading") : `${title}. ${summary}`}>
        {ticks.map((v) => (
          <g key={v}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(v)} y2={y(v)} class="grid" />
            <text x={PAD.left - 6} y={y(v) + 4} class="tick" text-anchor="end">{format(v)}</text>
          </g>
        ))}
        {labels.map((label, i) =>
          i % every === 0 ? (
            <text key={label} x={PAD.left + slot * i + slot / 2} y={H - 8} class="tick" text-anchor="middle">{label}</text>
          ) : null,
        )}
        {kind === "bars" &&
          series.map((s, si) =>
            s.values.map((v, i) => {
              const bw = Math.max(1, (slot * 0.8) / series.length);
              const x = PAD.left + slot * i + slot * 0.1 + bw * si;
              return <rect key={`${s.name}${i}`} x={x} y={y(v)} width={bw} height={Math.max(0, PAD.top + plotH - y(v))} class={`fill ${s.tone}`} />;
            }),
          )}
        {kind === "lines" &&
          series.map((s) => (
            <g key={s.name}>
              <polyline class={`stroke ${s.tone}`} fill="none" points={s.values.map((v, i) => `${PAD.left + slot * i + slot / 2},${y(v)}`).join(" ")} />
              {s.values.map((v, i) => (
                <circle key={i} class={`fill ${s.tone}`} cx={PAD.left + slot * i + slot / 2} cy={y(v)} r={n > 24 ? 2 : 4} />
              ))}
            </g>
          ))}
      </svg>
      <details>
        <summary>{t("chart.show_numbers")}</summary>
        <div class="table-wrap" tabIndex={0} role="region" aria-label={title}>
          <table>
            <thead>
              <tr>
                <th scope="col">{t("chart.period")}</th>
                {series.map((s) => <th scope="col" key={s.name}>{s.name}</th>)}
              </tr>
            </thead>
            <tbody>
              {labels.map((label, i) => (
                <tr key={label}>
                  <th scope="row">{label}</th>
                  {series.map((s) => <td key={s.name}>{format(s.values[i] ?? 0)}</td>)}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}
