/**
 * A dependency-free SVG line chart, so a run directory carries a picture without a browser or a
 * native canvas: `lineChartSvg` (one chart, e.g. return by episode index with one line per policy)
 * and `panelSvg` (one chart inside a larger figure: the panels of src/eval/run-plots.ts). Axes get
 * "nice" round ticks (src/eval/ticks.ts); gaps (NaN) in a series break its line.
 */
import { niceTicks } from './ticks.ts';

export interface Series {
  name: string;
  values: number[];
  errors?: number[];
  /** x of each value (default: its index). */
  x?: number[];
  color?: string;
  /** Line width (default 2). */
  width?: number;
  /** SVG stroke-dasharray, e.g. '4,3'. */
  dash?: string;
  opacity?: number;
  /** Draw a dot at each point (default: when a series has at most 20 points). */
  markers?: boolean;
  /** Leave the series out of the legend. */
  noLegend?: boolean;
}

export interface PanelSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  refLines?: { name: string; y: number }[];
  /** Integer x ticks (steps, episode indices). Default true. */
  integerX?: boolean;
  /** Keep 0 inside the y range (rewards). Default false. */
  includeZero?: boolean;
  /** Width reserved right of the plot for the legend (default 150). */
  legendWidth?: number;
  /** Title font size (default 14). */
  titleSize?: number;
}

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#7f7f7f', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];

/** The SVG elements of one chart drawn inside `box` (title, axes with round ticks, lines, legend). */
export function panelSvg(box: Box, spec: PanelSpec): string[] {
  const R = spec.legendWidth ?? 150;
  const L = box.x + 62, T = box.y + 34, B = box.y + box.h - 44, Rx = box.x + box.w - R;
  const out: string[] = [];
  out.push(`<text x="${r((box.x + Rx) / 2 + 30)}" y="${box.y + 20}" text-anchor="middle" font-size="${spec.titleSize ?? 14}">${esc(spec.title)}</text>`);
  const xsOf = (s: Series) => s.values.map((_, i) => s.x?.[i] ?? i);
  const ys = spec.series.flatMap((s) => s.values.flatMap((v, i) => [v - (s.errors?.[i] ?? 0), v + (s.errors?.[i] ?? 0)])).concat((spec.refLines ?? []).map((l) => l.y)).filter(Number.isFinite);
  const xs = spec.series.flatMap((s) => xsOf(s).filter((_, i) => Number.isFinite(s.values[i]))).filter(Number.isFinite);
  if (ys.length === 0 || xs.length === 0) {
    out.push(`<text x="${r((L + Rx) / 2)}" y="${r((T + B) / 2)}" text-anchor="middle" fill="#777">no data</text>`);
    return out;
  }
  const yt = niceTicks(Math.min(...ys, ...(spec.includeZero ? [0] : [])), Math.max(...ys, ...(spec.includeZero ? [0] : [])), { maxTicks: 6 });
  const xt = niceTicks(Math.min(...xs), Math.max(...xs), { maxTicks: 7, integer: spec.integerX ?? true });
  const x = (v: number) => L + ((v - xt.lo) * (Rx - L)) / (xt.hi - xt.lo);
  const y = (v: number) => T + ((yt.hi - v) * (B - T)) / (yt.hi - yt.lo);
  yt.values.forEach((v, i) => out.push(`<line x1="${L - 4}" y1="${r(y(v))}" x2="${Rx}" y2="${r(y(v))}" stroke="#e6e6e6"/><text x="${L - 7}" y="${r(y(v) + 4)}" text-anchor="end">${yt.labels[i]}</text>`));
  xt.values.forEach((v, i) => out.push(`<line x1="${r(x(v))}" y1="${B}" x2="${r(x(v))}" y2="${B + 4}" stroke="black"/><text x="${r(x(v))}" y="${B + 17}" text-anchor="middle">${xt.labels[i]}</text>`));
  out.push(`<line x1="${L}" y1="${B}" x2="${Rx}" y2="${B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${B}" stroke="black"/>`);
  out.push(`<text x="${r((L + Rx) / 2)}" y="${B + 36}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  const my = r((T + B) / 2), lx = box.x + 14;
  out.push(`<text x="${lx}" y="${my}" text-anchor="middle" transform="rotate(-90 ${lx} ${my})">${esc(spec.yLabel)}</text>`);
  let legendRow = 0;
  const legend = (color: string, name: string, dash?: string) => {
    const ly = T + legendRow++ * 17;
    if (ly > B) return;
    out.push(`<line x1="${Rx + 10}" y1="${ly}" x2="${Rx + 26}" y2="${ly}" stroke="${color}" stroke-width="3"${dash ? ` stroke-dasharray="${dash}"` : ''}/><text x="${Rx + 31}" y="${ly + 4}">${esc(clip(name, Math.floor((R - 36) / 6.5)))}</text>`);
  };
  for (const l of spec.refLines ?? []) {
    out.push(`<line x1="${L}" y1="${r(y(l.y))}" x2="${Rx}" y2="${r(y(l.y))}" stroke="#555" stroke-dasharray="5,4"/>`);
    legend('#555', l.name, '5,4');
  }
  spec.series.forEach((s, j) => {
    const c = s.color ?? COLORS[j % COLORS.length]!;
    const sx = xsOf(s);
    const style = `fill="none" stroke="${c}" stroke-width="${s.width ?? 2}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}${s.opacity !== undefined ? ` stroke-opacity="${s.opacity}"` : ''}`;
    // One polyline per run of finite values: a NaN is a gap, not a drop to 0.
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) out.push(`<polyline points="${run.join(' ')}" ${style}/>`);
      run = [];
    };
    s.values.forEach((v, i) => (Number.isFinite(v) && Number.isFinite(sx[i]) ? run.push(`${r(x(sx[i]!))},${r(y(v))}`) : flush()));
    flush();
    const markers = s.markers ?? s.values.length <= 20;
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      const e = s.errors?.[i];
      if (e && Number.isFinite(e)) out.push(`<line x1="${r(x(sx[i]!))}" y1="${r(y(v - e))}" x2="${r(x(sx[i]!))}" y2="${r(y(v + e))}" stroke="${c}"/>`);
      if (markers) out.push(`<circle cx="${r(x(sx[i]!))}" cy="${r(y(v))}" r="3" fill="${c}"/>`);
    });
    if (!s.noLegend) legend(c, s.name, s.dash);
  });
  return out;
}

/** One chart as a complete SVG document (640 × 400; x = the value's index, y includes 0). */
export function lineChartSvg(title: string, xLabel: string, yLabel: string, series: Series[], refLines: { name: string; y: number }[] = []): string {
  const W = 640, H = 400;
  return svgDocument(W, H, panelSvg({ x: 0, y: 4, w: W, h: H - 4 }, { title, xLabel, yLabel, series, refLines, includeZero: true, legendWidth: 170, titleSize: 15 }));
}

/** An SVG document of the given size on a white background. */
export function svgDocument(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

/** Coordinates rounded to 0.1 px: smaller files, identical pictures. */
function r(v: number): number {
  return Math.round(v * 10) / 10;
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(1, n - 1))}…`;
}

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
