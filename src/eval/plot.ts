/**
 * A dependency-free SVG line chart (return by episode index, one line per policy), so a run
 * directory carries a picture without a browser or a native canvas.
 */
export interface Series {
  name: string;
  values: number[];
  errors?: number[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#7f7f7f'];

export function lineChartSvg(title: string, xLabel: string, yLabel: string, series: Series[], refLines: { name: string; y: number }[] = []): string {
  const W = 640, H = 400, L = 60, R = 170, T = 40, B = 50;
  const all = series.flatMap((s) => s.values.map((v, i) => [v - (s.errors?.[i] ?? 0), v + (s.errors?.[i] ?? 0)]).flat()).concat(refLines.map((r) => r.y)).filter(Number.isFinite);
  let lo = Math.min(0, ...all), hi = Math.max(...all);
  if (hi - lo < 1e-9) hi = lo + 1;
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const n = Math.max(...series.map((s) => s.values.length));
  const x = (i: number) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v: number) => T + ((hi - v) * (H - T - B)) / (hi - lo);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  out.push(`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`);
  for (let t = 0; t <= 4; t++) {
    const v = lo + ((hi - lo) * t) / 4;
    out.push(`<line x1="${L - 4}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#eee"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`);
  }
  for (let i = 0; i < n; i++) out.push(`<text x="${x(i)}" y="${H - B + 16}" text-anchor="middle">${i}</text>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(yLabel)}</text>`);
  refLines.forEach((r, j) => {
    out.push(`<line x1="${L}" y1="${y(r.y)}" x2="${W - R}" y2="${y(r.y)}" stroke="#555" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${W - R + 8}" y="${y(r.y) + 4 + j * 0}" fill="#555">${esc(r.name)}</text>`);
  });
  series.forEach((s, j) => {
    const c = COLORS[j % COLORS.length]!;
    const pts = s.values.map((v, i) => `${x(i)},${y(v)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="2"/>`);
    s.values.forEach((v, i) => {
      const e = s.errors?.[i];
      if (e && Number.isFinite(e)) out.push(`<line x1="${x(i)}" y1="${y(v - e)}" x2="${x(i)}" y2="${y(v + e)}" stroke="${c}"/>`);
      out.push(`<circle cx="${x(i)}" cy="${y(v)}" r="3" fill="${c}"/>`);
    });
    out.push(`<rect x="${W - R + 8}" y="${T + j * 18}" width="12" height="3" fill="${c}"/><text x="${W - R + 24}" y="${T + j * 18 + 5}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
