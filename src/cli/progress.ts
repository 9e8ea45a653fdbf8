/**
 * Progress of a long job (training steps, synthesised QAs …), one reporter for every command:
 *
 *   tty    a cli-progress bar on stderr: count, percentage, elapsed, ETA and the job's live numbers
 *   plain  (not a terminal: CI logs, pipes) one line per ~10 % of the job or per 30 s, and the last
 *   json   (`--json`) one JSON object per update on stdout — {"event": "progress", label, value,
 *          total, elapsedSeconds, etaSeconds, ...live} — for scripts; the command then prints its
 *          other output as JSON lines too ({"event": "start"|"summary", ...})
 *
 * The ETA is the job's own rate since it started (elapsed / items done × items left): items done
 * before a resume are not counted in the rate.
 */
import cliProgress from 'cli-progress';

export type ProgressMode = 'tty' | 'plain' | 'json';

/** `--json` wins; otherwise a bar when the stream is a terminal, plain lines when it is not. */
export function progressMode(o: { json?: boolean; stream?: { isTTY?: boolean } } = {}): ProgressMode {
  if (o.json) return 'json';
  return (o.stream ?? process.stderr).isTTY === true ? 'tty' : 'plain';
}

/** A live number: a value, a list (per episode), or text. */
export type LiveValue = number | string | number[] | null | undefined;

export interface ProgressOptions {
  label: string;
  /** What is counted, plural ('steps', 'QAs'). */
  unit: string;
  total: number;
  mode: ProgressMode;
  /** Plain lines and JSON lines (default process.stdout). */
  out?: { write(s: string): unknown };
  /** The bar's stream (default process.stderr). */
  barStream?: NodeJS.WritableStream;
  /** Clock in ms (tests). Default performance.now. */
  now?: () => number;
  /** How a live number's key is shown on the bar and plain lines (JSON keeps the key), e.g. { tokensPerSecond: 'tok/s' }. */
  labels?: Record<string, string>;
  /** Plain mode: the most seconds between two lines (default 30). */
  plainEverySeconds?: number;
}

/** Seconds as '45s', '3m 05s', '2h 07m'. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

/** A live number for people: about three significant digits, lists joined by '/'. */
export function formatLive(v: LiveValue): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.length ? v.map((x) => formatLive(x)).join('/') : '-';
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  return v.toFixed(a >= 100 || Number.isInteger(v) ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
}

export class Progress {
  private readonly o: ProgressOptions;
  private readonly now: () => number;
  private readonly out: { write(s: string): unknown };
  private bar: cliProgress.SingleBar | null = null;
  private t0 = 0;
  private v0 = 0;
  private value = 0;
  private live: Record<string, LiveValue> = {};
  private lastLineAt = -Infinity;
  private lastLineValue = -Infinity;
  private started = false;

  constructor(o: ProgressOptions) {
    this.o = o;
    this.now = o.now ?? (() => performance.now());
    this.out = o.out ?? process.stdout;
  }

  /** Start counting at `value` (items already done, e.g. before a resume). */
  start(value = 0, live: Record<string, LiveValue> = {}): void {
    this.started = true;
    this.t0 = this.now();
    this.v0 = this.value = value;
    this.live = live;
  }

  /**
   * Count the rate from `value` on (a resumed job learns how much was done before only at its first
   * update); the clock keeps its start.
   */
  rebase(value: number): void {
    this.v0 = value;
  }

  update(value: number, live: Record<string, LiveValue> = {}): void {
    if (!this.started) this.start(0);
    this.value = value;
    this.live = live;
    const t = this.now();
    if (this.o.mode === 'tty') {
      // Drawn from the first update on, so what the job prints while it sets up is not interleaved with the bar.
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar({
          format: `${this.o.label} |{bar}| {value}/{total} ${this.o.unit} | {elapsedText} elapsed | ETA {etaText} | {live}`,
          hideCursor: true,
          stream: this.o.barStream ?? process.stderr,
        }, cliProgress.Presets.shades_classic);
        this.bar.start(this.o.total, value, this.payload());
      } else this.bar.update(value, this.payload());
    } else if (this.o.mode === 'json') this.event({ event: 'progress', ...this.snapshot() });
    else {
      // About ten lines per job, one at least every plainEverySeconds, and always the last.
      const due = value >= this.o.total || value - this.lastLineValue >= Math.max(1, Math.ceil(this.o.total / 10)) || (t - this.lastLineAt) / 1000 >= (this.o.plainEverySeconds ?? 30);
      if (due) {
        this.lastLineAt = t;
        this.lastLineValue = value;
        this.out.write(this.line() + '\n');
      }
    }
  }

  /** Stop the bar (a no-op in the other modes). */
  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }

  /** A JSON line on stdout (json mode's start and summary events). */
  event(obj: Record<string, unknown>): void {
    this.out.write(JSON.stringify(obj, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
  }

  /** Elapsed and ETA in seconds (ETA NaN until an item is done). */
  timing(): { elapsedSeconds: number; etaSeconds: number } {
    const elapsed = (this.now() - this.t0) / 1000;
    const done = this.value - this.v0;
    return { elapsedSeconds: elapsed, etaSeconds: done > 0 ? (elapsed / done) * Math.max(0, this.o.total - this.value) : Number.NaN };
  }

  private snapshot(): Record<string, unknown> {
    const { elapsedSeconds, etaSeconds } = this.timing();
    return { label: this.o.label, value: this.value, total: this.o.total, elapsedSeconds: round3(elapsedSeconds), etaSeconds: Number.isFinite(etaSeconds) ? round3(etaSeconds) : null, ...this.live };
  }

  private liveText(): string {
    return Object.entries(this.live).map(([k, v]) => `${this.o.labels?.[k] ?? k} ${formatLive(v)}`).join(' | ');
  }

  private payload(): Record<string, string> {
    const { elapsedSeconds, etaSeconds } = this.timing();
    // Our own ETA (the job's rate since start) in the payload: cli-progress's {eta} is a moving window
    // and its built-in names override payload keys, hence the *Text names.
    return { elapsedText: formatDuration(elapsedSeconds), etaText: formatDuration(etaSeconds), live: this.liveText() };
  }

  /** The plain line: 'training 30/100 steps (30%) | 12s elapsed | ETA 28s | reward 0.512 | …'. */
  line(): string {
    const { elapsedSeconds, etaSeconds } = this.timing();
    const pct = this.o.total > 0 ? Math.floor((100 * this.value) / this.o.total) : 100;
    const live = this.liveText();
    return `${this.o.label} ${this.value}/${this.o.total} ${this.o.unit} (${pct}%) | ${formatDuration(elapsedSeconds)} elapsed | ETA ${formatDuration(etaSeconds)}${live ? ` | ${live}` : ''}`;
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * Run `fn` with console.log sent to stderr: in --json mode stdout carries JSON lines only, and
 * the code a command calls may print progress notes of its own (e.g. the SFT warm start's line).
 */
export async function withStdoutForJson<T>(json: boolean, fn: () => Promise<T>): Promise<T> {
  if (!json) return fn();
  const log = console.log;
  console.log = (...args: unknown[]) => console.error(...args);
  try {
    return await fn();
  } finally {
    console.log = log;
  }
}
