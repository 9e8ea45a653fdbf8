/**
 * The figure of a run directory (written at the end of `agentrl train` and by `agentrl plot RUN`):
 * one panel per metric group found in metrics.jsonl — reward with the per-episode and final-episode
 * rewards, win rate per opponent (`byOpponent`), loss, KL and entropy, clip fraction, staleness, samples/s,
 * tokens/s — plus the held-out win rate per opponent from eval.json when the run has one; as SVG
 * (the hand-written charts of src/eval/plot.ts, round ticks from src/eval/ticks.ts) and as PNG
 * (the same SVG rendered by resvg with the system fonts; Debian: fonts-dejavu-core).
 *
 * Groups whose metrics a run does not have are skipped. Population runs (lines with `member` and
 * `round`) get one line per member over rounds, and their per-opponent scores as win rates.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { COLORS, panelSvg, svgDocument, type PanelSpec, type Series } from './plot.ts';

export type MetricsRow = Record<string, unknown>;

/**
 * The lines of a metrics.jsonl. A last line that does not parse is a write cut short (the run was
 * killed mid-append, or is still writing): it is skipped with a warning. A bad line before the last
 * is an error naming the file and line.
 */
export function readMetricsRows(path: string, warn: (msg: string) => void = console.warn): MetricsRow[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  while (lines.length > 0 && lines.at(-1)!.trim() === '') lines.pop();
  const rows: MetricsRow[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() === '') continue;
    try {
      const v = JSON.parse(lines[i]!) as unknown;
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      rows.push(v as MetricsRow);
    } catch (e) {
      if (i === lines.length - 1) {
        warn(`${path}: skipping the last line (${lines.length}), which is incomplete: ${(e as Error).message}`);
        break;
      }
      throw new Error(`${path}: line ${i + 1} is not a JSON object (${(e as Error).message}); only the last line may be incomplete`);
    }
  }
  return rows;
}

/** RUN/metrics.jsonl's rows (see readMetricsRows); an error naming the fix when the file is missing. */
export function readRunMetrics(runDir: string, warn?: (msg: string) => void): { metricsPath: string; rows: MetricsRow[] } {
  const metricsPath = join(runDir, 'metrics.jsonl');
  if (!existsSync(metricsPath)) throw new Error(`${metricsPath} does not exist: give a run directory written by agentrl train`);
  return { metricsPath, rows: readMetricsRows(metricsPath, warn) };
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : Number.NaN);
const has = (rows: MetricsRow[], key: string) => rows.some((r) => typeof r[key] === 'number' && Number.isFinite(r[key]));

/** Trailing mean over `w` values (NaNs ignored; NaN where the window holds none). */
export function movingMean(xs: number[], w: number): number[] {
  return xs.map((_, i) => {
    const win = xs.slice(Math.max(0, i - w + 1), i + 1).filter(Number.isFinite);
    return win.length ? win.reduce((a, b) => a + b, 0) / win.length : Number.NaN;
  });
}

/** Mean of a histogram {value: count} (staleness by version). */
export function histogramMean(h: unknown): number {
  if (h === null || typeof h !== 'object') return Number.NaN;
  let n = 0, s = 0;
  for (const [k, c] of Object.entries(h as Record<string, number>)) {
    n += c;
    s += Number(k) * c;
  }
  return n > 0 ? s / n : Number.NaN;
}

interface EvalEpisode { winRate: number; meanReturn: number }
interface EvalReportLike { policy: string; opponents: { opponent: string; episodes: EvalEpisode[] }[] }

export interface RunPanelsInput {
  rows: MetricsRow[];
  /** eval.json's `reports` (trial tasks), if any. */
  evalReports?: EvalReportLike[];
}

/** The panels of a run's figure, in order; groups without data are left out. Pure. */
export function runPanels({ rows, evalReports }: RunPanelsInput): PanelSpec[] {
  const panels: PanelSpec[] = [];
  const population = rows.some((r) => typeof r.member === 'string');
  // Single runs: x = the line's index (the global step; a resumed run rewrites the lines after its checkpoint).
  const members = population ? [...new Set(rows.map((r) => String(r.member)))] : [''];
  const rowsOf = (m: string) => (population ? rows.filter((r) => r.member === m) : rows);
  const xOf = (rs: MetricsRow[]) => (population ? rs.map((r) => num(r.round)) : rs.map((_, i) => i));
  const xLabel = population ? 'round' : 'step';
  const n = Math.max(...members.map((m) => rowsOf(m).length));
  const w = Math.min(10, Math.max(1, Math.floor(n / 10)));
  const smoothNote = w > 1 ? ` (${w}-${population ? 'round' : 'step'} avg)` : ''; // short: legends are ~20 characters wide
  const prefix = (m: string) => (population ? `${m}: ` : '');

  // Reward, the per-episode rewards and the final episode's (the meta-RL objective).
  if (has(rows, 'meanReward')) {
    const series: Series[] = [];
    for (const [j, m] of members.entries()) {
      const rs = rowsOf(m), x = xOf(rs);
      const raw = rs.map((r) => num(r.meanReward));
      const c = COLORS[j % COLORS.length]!;
      if (w > 1) series.push({ name: `${prefix(m)}per step`, x, values: raw, color: c, width: 1, opacity: 0.3, noLegend: true });
      series.push({ name: `${prefix(m)}reward${smoothNote}`, x, values: movingMean(raw, w), color: c });
      const K = population ? 0 : Math.max(0, ...rs.map((r) => (Array.isArray(r.episodeReward) ? r.episodeReward.length : 0)));
      if (K > 1) {
        for (let k = 0; k < K; k++) {
          const final = k === K - 1;
          const values = movingMean(rs.map((r) => num((r.episodeReward as unknown[] | undefined)?.[k])), w);
          series.push({ name: final ? `final episode (${k})` : `episode ${k}`, x, values, color: COLORS[(k + 1) % COLORS.length], width: final ? 2.5 : 1.5, dash: final ? undefined : '5,3' });
        }
      }
    }
    panels.push({ title: 'reward', xLabel, yLabel: 'mean reward', series, includeZero: true });
  }

  // Win rate per opponent: a population's per-opponent scores (win 1, draw ½) summed over members each round.
  const opponents = [...new Set(rows.flatMap((r) => (r.opponents && typeof r.opponents === 'object' ? Object.keys(r.opponents) : [])))];
  if (opponents.length > 0) {
    const rounds = [...new Set(rows.map((r) => num(r.round ?? r.step)))].sort((a, b) => a - b);
    const series = opponents.map((o) => ({
      name: o, x: rounds,
      values: rounds.map((rd) => {
        let trials = 0, score = 0;
        for (const r of rows) {
          const s = (r.opponents as Record<string, { trials: number; score: number }> | undefined)?.[o];
          if (s && num(r.round ?? r.step) === rd) { trials += s.trials; score += s.score; }
        }
        return trials > 0 ? score / trials : Number.NaN;
      }),
    }));
    panels.push({ title: 'win rate per opponent (draw = ½)', xLabel, yLabel: 'win rate', series, includeZero: true });
  } else if (!population && namedOpponents(rows).length > 0) {
    // A trial run's `byOpponent` (per-opponent batch statistics): the final episode's win rate, the meta-RL objective.
    const x = xOf(rows);
    const series = namedOpponents(rows).map((o) => ({
      name: o, x,
      values: movingMean(rows.map((r) => {
        const byEpisode = (r.byOpponent as Record<string, { winRate?: unknown[] }> | undefined)?.[o]?.winRate;
        return Array.isArray(byEpisode) && byEpisode.length > 0 ? num(byEpisode.at(-1)) : Number.NaN;
      }), w),
    }));
    panels.push({ title: `win rate per opponent, final episode${smoothNote}`, xLabel, yLabel: 'win rate', series, includeZero: true });
  } else if (!population) {
    const K = Math.max(0, ...rows.map((r) => (Array.isArray(r.winRate) ? r.winRate.length : 0)));
    if (K > 0) {
      const x = xOf(rows);
      const series = Array.from({ length: K }, (_, k) => ({ name: K > 1 ? (k === K - 1 ? `final episode (${k})` : `episode ${k}`) : 'win rate', x, values: movingMean(rows.map((r) => num((r.winRate as unknown[])[k])), w) }));
      panels.push({ title: `training win rate by episode${smoothNote}`, xLabel, yLabel: 'win rate', series, includeZero: true });
    }
  }

  const scalarPanel = (title: string, yLabel: string, defs: { name: string; value: (r: MetricsRow) => number; dash?: string }[]) => {
    const live = defs.filter((d) => rows.some((r) => Number.isFinite(d.value(r))));
    if (live.length === 0) return;
    const series: Series[] = [];
    members.forEach((m, j) => live.forEach((d, i) => {
      const rs = rowsOf(m);
      series.push({ name: `${prefix(m)}${d.name}`, x: xOf(rs), values: rs.map(d.value), color: COLORS[(population ? j : i) % COLORS.length], dash: population ? d.dash : undefined });
    }));
    panels.push({ title, xLabel, yLabel, series });
  };
  scalarPanel('policy loss', 'loss', [{ name: 'loss', value: (r) => num(r.loss) }]);
  scalarPanel('KL and entropy', 'nats per token', [{ name: 'entropy', value: (r) => num(r.entropy) }, { name: 'KL', value: (r) => num(r.kl), dash: '5,3' }]);
  scalarPanel('clip fraction', 'fraction of tokens', [{ name: 'mean', value: (r) => num(r.clipFrac) }, { name: 'max of minibatches', value: (r) => num(r.clipFracMax), dash: '5,3' }]);
  scalarPanel('staleness', 'versions', [
    { name: 'groups, mean', value: (r) => histogramMean(r.staleness) },
    { name: 'groups, max', value: (r) => num(r.maxStaleness), dash: '5,3' },
    { name: 'tokens, mean', value: (r) => histogramMean(r.tokenStaleness), dash: '2,2' },
  ]);
  scalarPanel('samples per second', 'samples/s', [{ name: 'samples/s', value: (r) => num(r.samplesPerSecond) }]);
  const perSecond = (key: string) => (r: MetricsRow) => (num(r.seconds) > 0 ? num(r[key]) / num(r.seconds) : Number.NaN);
  scalarPanel('tokens per second', 'tokens/s', [{ name: 'processed', value: perSecond('processedTokens') }, { name: 'trained', value: perSecond('trainedTokens'), dash: '5,3' }]);

  // Held-out evaluation (eval.json): win rate by episode index per opponent, for the trained policies.
  const trained = (evalReports ?? []).filter((r) => r.policy !== 'untrained' && r.policy !== 'random');
  const evalSeries: Series[] = trained.flatMap((r) => r.opponents.map((o) => ({
    name: `${trained.length > 1 ? `${r.policy}: ` : ''}${o.opponent === 'none' ? 'all trials' : o.opponent}`,
    values: o.episodes.map((e) => num(e.winRate)),
  }))).filter((s) => s.values.some(Number.isFinite)).slice(0, COLORS.length);
  if (evalSeries.length > 0) panels.push({ title: `evaluation: win rate per opponent (${trained.map((r) => r.policy).join(', ')})`, xLabel: 'episode index in trial', yLabel: 'win rate', series: evalSeries, includeZero: true });
  return panels;
}

/** Opponents named in metrics lines' `byOpponent` ('' = trajectories without an opponent, left out). */
function namedOpponents(rows: MetricsRow[]): string[] {
  return [...new Set(rows.flatMap((r) => (r.byOpponent && typeof r.byOpponent === 'object' ? Object.keys(r.byOpponent) : [])))].filter((o) => o !== '');
}

const PANEL_W = 560, PANEL_H = 300, COLUMNS = 2;

/** The panels laid out two per row under a title, as one SVG document. */
export function figureSvg(title: string, panels: PanelSpec[]): string {
  const cols = Math.min(COLUMNS, Math.max(1, panels.length));
  const rows = Math.ceil(panels.length / cols);
  const W = cols * PANEL_W, H = 40 + rows * PANEL_H;
  const body = [`<text x="${W / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">${title.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>`];
  panels.forEach((p, i) => body.push(...panelSvg({ x: (i % cols) * PANEL_W, y: 40 + Math.floor(i / cols) * PANEL_H, w: PANEL_W, h: PANEL_H }, { legendWidth: 170, ...p })));
  return svgDocument(W, H, body);
}

/** PNG of an SVG, rendered by resvg with the system fonts (DejaVu Sans preferred) at `zoom` × its size. */
export function svgToPng(svg: string, zoom = 2): Buffer {
  const resvg = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: zoom },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  });
  return resvg.render().asPng();
}

export type PlotFormat = 'svg' | 'png';

export interface RunPlotOptions {
  /** Directory to write to (default: the run directory). */
  outDir?: string;
  formats?: PlotFormat[];
  /** File name without extension (default 'plot'). */
  name?: string;
  /** Figure title (default: config.json's name or task, else the directory's name). */
  title?: string;
  warn?: (msg: string) => void;
}

/**
 * Write the run's figure (plot.svg, plot.png) from RUN/metrics.jsonl (and RUN/eval.json,
 * RUN/config.json for the title). Returns the paths written; none when the run has no metrics yet.
 */
export function writeRunPlots(runDir: string, o: RunPlotOptions = {}): string[] {
  const { rows } = readRunMetrics(runDir, o.warn);
  if (rows.length === 0) return [];
  const evalPath = join(runDir, 'eval.json');
  const evalReports = existsSync(evalPath) ? (JSON.parse(readFileSync(evalPath, 'utf8')) as { reports?: EvalReportLike[] }).reports : undefined;
  const configPath = join(runDir, 'config.json');
  const cfg = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as { name?: string; task?: string }) : {};
  const title = `${o.title ?? cfg.name ?? cfg.task ?? basename(resolve(runDir))}: ${rows.length} ${rows.some((r) => typeof r.member === 'string') ? 'member iterations' : 'steps'}`;
  const svg = figureSvg(title, runPanels({ rows, evalReports }));
  const outDir = o.outDir ?? runDir;
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  const name = o.name ?? 'plot';
  for (const f of o.formats ?? ['svg', 'png']) {
    const path = join(outDir, `${name}.${f}`);
    writeFileSync(path, f === 'svg' ? svg + '\n' : svgToPng(svg));
    written.push(path);
  }
  return written;
}
