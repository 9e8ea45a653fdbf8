/**
 * Reading run directories (src/run/run.ts) for the dashboard, tolerant of everything a live or
 * damaged run can hold: a metrics.jsonl being appended to (its last line may be half written), lines
 * that do not parse, a missing checkpoint, a config that is gone, trajectory files too large to
 * load. Nothing here throws for a bad run: problems become warnings that the page shows.
 *
 * metrics.jsonl is read incrementally (from the byte offset of the last complete line), so a live
 * run costs one small read per poll; a file that shrank or was replaced (a resumed run rewrites it)
 * starts a new generation and is read again from the start.
 */
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { isPopulationRows, lastRound } from './population-series.ts';
import { stepOfTrajectoryFile, TRAJECTORY_DIR, type LoggedSample, type LoggedTrajectory } from '../run/trajectory-log.ts';

export interface Warning {
  /** The file (relative to the run directory) the problem is in. */
  file: string;
  message: string;
}

export type RunStatus = 'training' | 'finished' | 'stopped' | 'empty';

export interface ReaderLimits {
  /** A run counts as training while a file of it changed within this many seconds. */
  staleAfterSeconds: number;
  /** Trajectory files larger than this are listed with a warning but not parsed. */
  maxTrajectoryFileBytes: number;
  /** Tokens of a trajectory past which the page says it is shown in pages. */
  largeTrajectoryTokens: number;
}

export const DEFAULT_LIMITS: ReaderLimits = { staleAfterSeconds: 60, maxTrajectoryFileBytes: 256 << 20, largeTrajectoryTokens: 20_000 };

// ── run discovery ──────────────────────────────────────────────────────────────────────────────

function isRunDir(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) || existsSync(join(dir, 'metrics.jsonl'));
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => join(dir, d.name));
  } catch {
    return [];
  }
}

/**
 * Run directories under `root`, by id (the path relative to root with '/' separators; '.' when root
 * itself is a run): root, its subdirectories and theirs (runs/<group>/<run>). Only these directories
 * are ever read: request parameters select among them, never name a path.
 */
export function findRuns(root: string): Map<string, string> {
  const runs = new Map<string, string>();
  const add = (dir: string) => runs.set(relative(root, dir).split(sep).join('/') || '.', dir);
  if (isRunDir(root)) add(root);
  for (const d of subdirs(root)) {
    if (d.endsWith(`${sep}${TRAJECTORY_DIR}`) || d.endsWith(`${sep}checkpoint`)) continue;
    if (isRunDir(d)) add(d);
    else for (const dd of subdirs(d)) if (isRunDir(dd)) add(dd);
  }
  return runs;
}

// ── metrics.jsonl ──────────────────────────────────────────────────────────────────────────────

export interface MetricsRow {
  /** 0-based line of metrics.jsonl (= the step for runs of agentrl train). */
  line: number;
  data: Record<string, unknown>;
}

interface MetricsState {
  generation: number;
  ino: number;
  offset: number;
  lines: number;
  rows: MetricsRow[];
  badLines: { line: number; error: string }[];
  /** Bytes after the last newline (a half-written or truncated last line). */
  partialBytes: number;
  mtimeMs: number;
}

let generations = 0;

/** Incremental, tolerant reader of one run's metrics.jsonl. */
export class MetricsReader {
  private s: MetricsState | null = null;

  constructor(readonly path: string) {}

  /** Read what was appended since the last call; returns the current state (null when the file is missing). */
  refresh(): MetricsState | null {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      this.s = null;
      return null;
    }
    try {
      const st = fstatSync(fd);
      if (!this.s || st.ino !== this.s.ino || st.size < this.s.offset + this.s.partialBytes) {
        this.s = { generation: ++generations, ino: st.ino, offset: 0, lines: 0, rows: [], badLines: [], partialBytes: 0, mtimeMs: st.mtimeMs };
      }
      const s = this.s;
      s.mtimeMs = st.mtimeMs;
      const length = st.size - s.offset;
      if (length <= 0) return s;
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, buf, got, length - got, s.offset + got);
        if (n === 0) break;
        got += n;
      }
      const end = buf.lastIndexOf(0x0a, got - 1);
      s.partialBytes = got - (end + 1);
      if (end < 0) return s;
      for (const text of buf.subarray(0, end).toString('utf8').split('\n')) {
        const line = s.lines++;
        if (text.trim() === '') continue;
        try {
          const data = JSON.parse(text) as unknown;
          if (!data || typeof data !== 'object' || Array.isArray(data)) throw new Error('not a JSON object');
          s.rows.push({ line, data: data as Record<string, unknown> });
        } catch (e) {
          s.badLines.push({ line, error: (e as Error).message });
        }
      }
      s.offset += end + 1;
      return s;
    } finally {
      closeSync(fd);
    }
  }

  warnings(): Warning[] {
    const s = this.s;
    if (!s) return [];
    const w: Warning[] = [];
    for (const b of s.badLines.slice(0, 5)) w.push({ file: 'metrics.jsonl', message: `line ${b.line + 1} does not parse (${b.error}); skipped` });
    if (s.badLines.length > 5) w.push({ file: 'metrics.jsonl', message: `${s.badLines.length - 5} more lines do not parse; skipped` });
    if (s.partialBytes > 0) w.push({ file: 'metrics.jsonl', message: `the last line is incomplete (${s.partialBytes} bytes without a newline: truncated, or being written); skipped` });
    return w;
  }
}

// ── one run ──────────────────────────────────────────────────────────────────────────────────

function mtimeOf(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function readJson(dir: string, file: string, warnings: Warning[]): unknown {
  const path = join(dir, file);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (e) {
    warnings.push({ file, message: `does not parse (${(e as Error).message})` });
    return undefined;
  }
}

export interface RunSummary {
  id: string;
  name: string;
  task: string;
  status: RunStatus;
  /** Steps in metrics.jsonl, and the config's trainer.steps (null when unknown); rounds for a population run. */
  steps: number;
  unit: 'steps' | 'rounds';
  totalSteps: number | null;
  updatedMs: number;
  warnings: Warning[];
}

export interface RunDetail extends RunSummary {
  config: Record<string, unknown> | null;
  eval: unknown;
  evalMarkdown: string | null;
  evalUntrained: unknown;
  sft: unknown;
  hasCheckpoint: boolean;
}

/** Reads runs under one root, keeping a metrics reader per run between requests. */
export class RunReader {
  private readonly metrics = new Map<string, MetricsReader>();
  private readonly trajIndex = new Map<string, { key: string; index: TrajectoryFileIndex }>();

  constructor(readonly root: string, readonly limits: ReaderLimits = DEFAULT_LIMITS, private readonly now: () => number = Date.now) {}

  runs(): Map<string, string> {
    return findRuns(this.root);
  }

  metricsOf(dir: string): MetricsReader {
    let r = this.metrics.get(dir);
    if (!r) this.metrics.set(dir, (r = new MetricsReader(join(dir, 'metrics.jsonl'))));
    return r;
  }

  detail(id: string, dir: string): RunDetail {
    const warnings: Warning[] = [];
    const config = readJson(dir, 'config.json', warnings) as Record<string, unknown> | undefined;
    if (config === undefined && !warnings.length) warnings.push({ file: 'config.json', message: 'missing: the run\'s settings are unknown' });
    const m = this.metricsOf(dir);
    const ms = m.refresh();
    if (!ms) warnings.push({ file: 'metrics.jsonl', message: 'missing: no step has been logged' });
    warnings.push(...m.warnings());
    const evalJson = readJson(dir, 'eval.json', warnings);
    const trainer = (config?.trainer ?? {}) as { steps?: unknown };
    const totalSteps = typeof trainer.steps === 'number' ? trainer.steps : null;
    // A population run logs a line per member and round; its trainer.steps counts rounds.
    const population = config?.population !== undefined || isPopulationRows(ms?.rows ?? []);
    const steps = population ? lastRound(ms?.rows ?? []) : ms?.rows.length ?? 0;
    const updatedMs = Math.max(mtimeOf(join(dir, 'metrics.jsonl')), mtimeOf(join(dir, 'config.json')), mtimeOf(join(dir, TRAJECTORY_DIR)), mtimeOf(join(dir, 'checkpoint')));
    const finished = evalJson !== undefined || (totalSteps !== null && steps >= totalSteps);
    const live = this.now() - updatedMs < this.limits.staleAfterSeconds * 1000;
    const status: RunStatus = finished ? 'finished' : live ? 'training' : steps === 0 ? 'empty' : 'stopped';
    if (status === 'stopped') warnings.push({ file: 'metrics.jsonl', message: `no update for ${Math.round((this.now() - updatedMs) / 1000)} s after ${steps}${totalSteps !== null ? ` of ${totalSteps}` : ''} ${population ? 'rounds' : 'steps'}: the run stopped (continue it with agentrl train --resume)` });
    const checkpointFile = population ? 'population/population.json' : 'checkpoint/manifest.json';
    const hasCheckpoint = existsSync(join(dir, checkpointFile));
    const every = typeof config?.checkpointEvery === 'number' ? config.checkpointEvery : 0;
    const expected = finished || (every > 0 && steps >= every) || (status === 'stopped' && steps > 0);
    if (!hasCheckpoint && expected) warnings.push({ file: `${dirname(checkpointFile)}/`, message: `missing (no ${checkpointFile} after ${steps} ${population ? 'rounds' : 'steps'}): this run cannot be resumed or evaluated` });
    const evalMd = join(dir, 'eval.md');
    return {
      id, name: typeof config?.name === 'string' ? config.name : id, task: typeof config?.task === 'string' ? config.task : '?',
      status, steps, unit: population ? 'rounds' : 'steps', totalSteps, updatedMs, warnings,
      config: config ?? null,
      eval: evalJson === undefined ? null : stripConfig(evalJson),
      evalMarkdown: existsSync(evalMd) ? readFileSync(evalMd, 'utf8') : null,
      evalUntrained: readJson(dir, 'eval-untrained.json', warnings) ?? null,
      sft: readJson(dir, 'sft.json', warnings) ?? null,
      hasCheckpoint,
    };
  }

  summary(id: string, dir: string): RunSummary {
    const { config: _c, eval: _e, evalMarkdown: _m, evalUntrained: _u, sft: _s, hasCheckpoint: _h, ...rest } = this.detail(id, dir);
    return rest;
  }

  /** The trajectory files of a run with one summary line per logged trajectory. */
  trajectories(dir: string): { files: TrajectoryFileIndex[]; warnings: Warning[] } {
    const tdir = join(dir, TRAJECTORY_DIR);
    let names: string[] = [];
    try {
      names = readdirSync(tdir);
    } catch {
      return { files: [], warnings: [] };
    }
    const files: TrajectoryFileIndex[] = [];
    const warnings: Warning[] = [];
    for (const name of names.sort()) {
      const step = stepOfTrajectoryFile(name);
      if (step === null) continue;
      const path = join(tdir, name);
      let st: Stats;
      try {
        st = statSync(path);
      } catch {
        continue;
      }
      const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
      const cached = this.trajIndex.get(path);
      const index = cached?.key === key ? cached.index : indexTrajectoryFile(path, `${TRAJECTORY_DIR}/${name}`, step, st.size, this.limits);
      this.trajIndex.set(path, { key, index });
      files.push(index);
      warnings.push(...index.warnings);
    }
    return { files, warnings };
  }

  /** One logged trajectory, its samples and tokens paged (null when there is no such line). */
  trajectory(dir: string, step: number, index: number, page: TrajectoryPage): TrajectoryView | null {
    const file = this.trajectories(dir).files.find((f) => f.step === step);
    if (!file || file.tooLarge || !file.trajectories.some((t) => t.index === index)) return null;
    const t = readTrajectoryLine(join(dir, TRAJECTORY_DIR, file.name.slice(TRAJECTORY_DIR.length + 1)), index);
    if (!t) return null;
    return pageTrajectory(t, page, this.limits);
  }
}

function stripConfig(x: unknown): unknown {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return x;
  const { config: _, ...rest } = x as Record<string, unknown>;
  return rest;
}

// ── trajectory files ─────────────────────────────────────────────────────────────────────────

export interface TrajectorySummary {
  step: number;
  /** Line of the file. */
  index: number;
  id: string;
  opponent: string;
  reward: number;
  episodes: { reward: number; won: boolean }[];
  samples: number;
  tokens: number;
  droppedTokens: number;
  minVersion: number | null;
  maxVersion: number | null;
  trainerVersion: number | null;
  /** trainerVersion − the oldest model token's version (null when unknown). */
  staleness: number | null;
}

export interface TrajectoryFileIndex {
  step: number;
  /** Path relative to the run directory. */
  name: string;
  bytes: number;
  tooLarge: boolean;
  trajectories: TrajectorySummary[];
  warnings: Warning[];
}

function versionRange(samples: LoggedSample[]): [number | null, number | null] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of samples) {
    const { versions, source } = s.tokens;
    for (let i = 0; i < versions.length; i++) {
      if (source[i] !== 1 || versions[i]! < 0) continue;
      lo = Math.min(lo, versions[i]!);
      hi = Math.max(hi, versions[i]!);
    }
  }
  return hi >= lo ? [lo, hi] : [null, null];
}

function lineTexts(path: string): { lines: string[]; partialBytes: number } {
  const text = readFileSync(path, 'utf8');
  const end = text.lastIndexOf('\n');
  return { lines: end < 0 ? [] : text.slice(0, end).split('\n'), partialBytes: Buffer.byteLength(text.slice(end + 1)) };
}

function indexTrajectoryFile(path: string, name: string, step: number, bytes: number, limits: ReaderLimits): TrajectoryFileIndex {
  const out: TrajectoryFileIndex = { step, name, bytes, tooLarge: false, trajectories: [], warnings: [] };
  if (bytes > limits.maxTrajectoryFileBytes) {
    out.tooLarge = true;
    out.warnings.push({ file: name, message: `${(bytes / 2 ** 20).toFixed(0)} MiB, over the dashboard's limit of ${(limits.maxTrajectoryFileBytes / 2 ** 20).toFixed(0)} MiB: not shown (lower log.trajectories.maxTokens or perStep)` });
    return out;
  }
  const { lines, partialBytes } = lineTexts(path);
  if (partialBytes > 0) out.warnings.push({ file: name, message: `the last line is incomplete (${partialBytes} bytes); skipped` });
  lines.forEach((text, index) => {
    if (text.trim() === '') return;
    try {
      const t = JSON.parse(text) as LoggedTrajectory;
      if (!Array.isArray(t.samples)) throw new Error('no samples array');
      const [minVersion, maxVersion] = versionRange(t.samples);
      const trainerVersion = typeof t.trainerVersion === 'number' ? t.trainerVersion : null;
      out.trajectories.push({
        step, index, id: String(t.id), opponent: t.opponent ?? '', reward: t.reward,
        episodes: (t.episodes ?? []).map((e) => ({ reward: e.reward, won: e.won })),
        samples: t.samples.length,
        tokens: t.totalTokens ?? t.samples.reduce((a, s) => a + s.tokens.ids.length, 0),
        droppedTokens: t.droppedTokens ?? 0,
        minVersion, maxVersion, trainerVersion,
        staleness: trainerVersion !== null && minVersion !== null ? trainerVersion - minVersion : null,
      });
    } catch (e) {
      out.warnings.push({ file: name, message: `line ${index + 1} does not parse (${(e as Error).message}); skipped` });
    }
  });
  return out;
}

function readTrajectoryLine(path: string, index: number): LoggedTrajectory | null {
  try {
    const text = lineTexts(path).lines[index];
    return text ? (JSON.parse(text) as LoggedTrajectory) : null;
  } catch {
    return null;
  }
}

export interface TrajectoryPage {
  /** Samples [sampleOffset, sampleOffset + sampleLimit). */
  sampleOffset: number;
  sampleLimit: number;
  /** Tokens [tokenOffset, tokenOffset + tokenLimit) of each sample returned. */
  tokenOffset: number;
  tokenLimit: number;
}

export const DEFAULT_PAGE: TrajectoryPage = { sampleOffset: 0, sampleLimit: 100, tokenOffset: 0, tokenLimit: 2000 };

export interface TrajectoryView extends Omit<LoggedTrajectory, 'samples'> {
  sampleTotal: number;
  sampleOffset: number;
  samples: (LoggedSample & { index: number; tokenTotal: number; tokenOffset: number })[];
  notes: string[];
}

/** The page of a trajectory a request asks for (pure). */
export function pageTrajectory(t: LoggedTrajectory, p: TrajectoryPage, limits: ReaderLimits = DEFAULT_LIMITS): TrajectoryView {
  const { samples, ...rest } = t;
  const notes: string[] = [];
  const tokens = t.totalTokens ?? samples.reduce((a, s) => a + s.tokens.ids.length, 0);
  if (tokens > limits.largeTrajectoryTokens || samples.length > p.sampleLimit) {
    notes.push(`large trajectory: ${tokens.toLocaleString('en')} tokens in ${samples.length.toLocaleString('en')} sample${samples.length === 1 ? '' : 's'}, shown ${p.sampleLimit} samples and ${p.tokenLimit} tokens per sample at a time`);
  }
  if (t.droppedTokens > 0) notes.push(`${t.droppedTokens.toLocaleString('en')} token${t.droppedTokens === 1 ? ' was' : 's were'} not logged (log.trajectories.maxTokens)`);
  const page = samples.slice(p.sampleOffset, p.sampleOffset + p.sampleLimit).map((s, i) => {
    const a = p.tokenOffset;
    const b = p.tokenOffset + p.tokenLimit;
    const k = s.tokens;
    return {
      ...s,
      index: p.sampleOffset + i,
      tokenTotal: k.ids.length,
      tokenOffset: a,
      advantage: Array.isArray(s.advantage) ? s.advantage.slice(a, b) : s.advantage,
      tokens: { ids: k.ids.slice(a, b), text: k.text.slice(a, b), logprobs: k.logprobs.slice(a, b), versions: k.versions.slice(a, b), mask: k.mask.slice(a, b), source: k.source.slice(a, b) },
    };
  });
  return { ...rest, sampleTotal: samples.length, sampleOffset: p.sampleOffset, samples: page, notes };
}
