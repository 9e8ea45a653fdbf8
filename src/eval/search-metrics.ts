/**
 * Aggregation for `agentrl eval search`: k sampled answers per question, scored by EM, F1 and
 * (optionally) an LLM judge, become per-benchmark (and per-hop-count) Avg@k and Pass@k, as ASearcher
 * reports them:
 * - Avg@k: the mean over questions of the question's mean over its k samples;
 * - Pass@k: the mean over questions of the question's best sample (max F1, any EM, any judge-correct);
 * each with its standard error across questions (sample SD / √n; NaN for a single question).
 * Every question must have the same number k of samples, so that Avg@k and Pass@k mean one thing.
 */
import { z } from 'zod';

export const SearchEvalRecordSchema = z
  .object({
    questionId: z.string().min(1),
    benchmark: z.string().min(1),
    /** Reasoning hops of the question (e.g. MuSiQue's 2/3/4), when the data set says. */
    hops: z.number().int().positive().optional(),
    /** Which of the k samples this is (distinct per question). */
    sample: z.number().int().min(0),
    em: z.number().min(0).max(1),
    f1: z.number().min(0).max(1),
    /** The LLM judge's verdict, when judged. */
    judge: z.boolean().optional(),
  })
  .strict();

export type SearchEvalRecord = z.input<typeof SearchEvalRecordSchema>;

export interface MeanSe {
  mean: number;
  /** Standard error of the mean across questions; NaN with fewer than two questions. */
  se: number;
}

export interface MetricSet {
  em: MeanSe;
  f1: MeanSe;
  /** Present when every sample of the group was judged. */
  judge?: MeanSe;
}

export interface SearchGroupMetrics {
  /** The benchmark, or null for a group pooled across benchmarks. */
  benchmark: string | null;
  /** The hop count, or null for all questions of the benchmark. */
  hops: number | null;
  /** Questions. */
  n: number;
  avg: MetricSet;
  pass: MetricSet;
}

export interface SearchMetricsReport {
  /** Samples per question. */
  k: number;
  /** One per benchmark, in order of first appearance. */
  benchmarks: SearchGroupMetrics[];
  /** One per benchmark and hop count (questions with `hops` only), benchmarks as above, hops ascending. */
  benchmarkHops: SearchGroupMetrics[];
  /** One per hop count, pooled across benchmarks. */
  hops: SearchGroupMetrics[];
  /** The unweighted mean over benchmarks (as papers average data sets), SE √(Σ SE²)/B; judge only when every benchmark has it. */
  average: { benchmarks: number; avg: MetricSet; pass: MetricSet };
}

/** Mean and its standard error (sample SD / √n). */
export function meanSe(xs: readonly number[]): MeanSe {
  const n = xs.length;
  if (n === 0) return { mean: Number.NaN, se: Number.NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, se: Number.NaN };
  const variance = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(variance / n) };
}

interface Question {
  id: string;
  benchmark: string;
  hops: number | undefined;
  samples: z.output<typeof SearchEvalRecordSchema>[];
}

/** One question's sample mean (Avg) and best sample (Pass) per metric; judge as 0/1. */
function questionScores(q: Question) {
  const k = q.samples.length;
  const sum = (f: (s: Question['samples'][number]) => number) => q.samples.reduce((a, s) => a + f(s), 0);
  const judged = q.samples.every((s) => s.judge !== undefined);
  return {
    judged,
    avg: { em: sum((s) => s.em) / k, f1: sum((s) => s.f1) / k, judge: judged ? sum((s) => (s.judge ? 1 : 0)) / k : Number.NaN },
    pass: {
      em: Math.max(...q.samples.map((s) => s.em)),
      f1: Math.max(...q.samples.map((s) => s.f1)),
      judge: judged ? (q.samples.some((s) => s.judge) ? 1 : 0) : Number.NaN,
    },
  };
}

function groupMetrics(benchmark: string | null, hops: number | null, questions: Question[]): SearchGroupMetrics {
  const scores = questions.map(questionScores);
  const judged = scores.every((s) => s.judged);
  const set = (which: 'avg' | 'pass'): MetricSet => ({
    em: meanSe(scores.map((s) => s[which].em)),
    f1: meanSe(scores.map((s) => s[which].f1)),
    ...(judged ? { judge: meanSe(scores.map((s) => s[which].judge)) } : {}),
  });
  return { benchmark, hops, n: questions.length, avg: set('avg'), pass: set('pass') };
}

function macro(groups: SearchGroupMetrics[], which: 'avg' | 'pass'): MetricSet {
  const combine = (pick: (m: MetricSet) => MeanSe | undefined): MeanSe => {
    const xs = groups.map((g) => pick(g[which])!);
    const b = xs.length;
    return { mean: xs.reduce((a, x) => a + x.mean, 0) / b, se: Math.sqrt(xs.reduce((a, x) => a + x.se ** 2, 0)) / b };
  };
  return {
    em: combine((m) => m.em),
    f1: combine((m) => m.f1),
    ...(groups.every((g) => g[which].judge) ? { judge: combine((m) => m.judge) } : {}),
  };
}

/** Aggregate k-sample evaluation records; throws on malformed records, duplicate samples, unequal k, or judge verdicts on only some samples of a benchmark. */
export function aggregateSearchMetrics(input: readonly SearchEvalRecord[]): SearchMetricsReport {
  const parsed = z.array(SearchEvalRecordSchema).safeParse(input);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new Error(`search metrics: record ${i.path[0]}: ${i.path.slice(1).join('.') || '(record)'}: ${i.message}`);
  }
  const records = parsed.data;
  if (records.length === 0) throw new Error('search metrics: no records to aggregate');

  const questions = new Map<string, Question>();
  for (const r of records) {
    const key = JSON.stringify([r.benchmark, r.questionId]);
    let q = questions.get(key);
    if (!q) questions.set(key, (q = { id: r.questionId, benchmark: r.benchmark, hops: r.hops, samples: [] }));
    const where = `question ${JSON.stringify(r.questionId)} of ${JSON.stringify(r.benchmark)}`;
    if (q.samples.some((s) => s.sample === r.sample)) throw new Error(`search metrics: ${where} has sample ${r.sample} twice`);
    if (q.hops !== r.hops) throw new Error(`search metrics: ${where} has samples with different hops (${q.hops} and ${r.hops})`);
    q.samples.push(r);
  }

  const all = [...questions.values()];
  const k = all[0]!.samples.length;
  const odd = all.find((q) => q.samples.length !== k);
  if (odd) {
    throw new Error(
      `search metrics: every question needs the same number of samples k, but question ${JSON.stringify(all[0]!.id)} of ${JSON.stringify(all[0]!.benchmark)} has ${k} ` +
        `and question ${JSON.stringify(odd.id)} of ${JSON.stringify(odd.benchmark)} has ${odd.samples.length}; re-run the missing samples or drop the incomplete questions`,
    );
  }

  const benchmarkNames = [...new Set(all.map((q) => q.benchmark))];
  for (const b of benchmarkNames) {
    const samples = all.filter((q) => q.benchmark === b).flatMap((q) => q.samples);
    const judged = samples.filter((s) => s.judge !== undefined).length;
    if (judged > 0 && judged < samples.length) {
      throw new Error(`search metrics: benchmark ${JSON.stringify(b)} has judge verdicts for ${judged} of ${samples.length} samples; judge all of them or none`);
    }
  }

  const hopValues = [...new Set(all.flatMap((q) => (q.hops === undefined ? [] : [q.hops])))].sort((a, b) => a - b);
  const benchmarks = benchmarkNames.map((b) => groupMetrics(b, null, all.filter((q) => q.benchmark === b)));
  const benchmarkHops = benchmarkNames.flatMap((b) =>
    hopValues.flatMap((h) => {
      const qs = all.filter((q) => q.benchmark === b && q.hops === h);
      return qs.length > 0 ? [groupMetrics(b, h, qs)] : [];
    }),
  );
  const hops = hopValues.map((h) => groupMetrics(null, h, all.filter((q) => q.hops === h)));
  return { k, benchmarks, benchmarkHops, hops, average: { benchmarks: benchmarks.length, avg: macro(benchmarks, 'avg'), pass: macro(benchmarks, 'pass') } };
}

export interface RenderOptions {
  /** Scores as percentages (default true, as the papers print them). */
  percent?: boolean;
  /** Decimals (default 1). */
  digits?: number;
}

function cell(m: MeanSe | undefined, scale: number, digits: number): string {
  if (!m) return '—';
  const mean = (m.mean * scale).toFixed(digits);
  return Number.isNaN(m.se) ? mean : `${mean} ± ${(m.se * scale).toFixed(digits)}`;
}

/** A Markdown table: one row per benchmark followed by its hop counts, then the hop counts pooled (when several benchmarks have them), then the average over benchmarks (when several). A ± part is the standard error; none with one question. */
export function renderSearchMetricsMarkdown(report: SearchMetricsReport, options: RenderOptions = {}): string {
  const scale = (options.percent ?? true) ? 100 : 1;
  const digits = options.digits ?? 1;
  const k = report.k;
  const groups = [...report.benchmarks, ...report.benchmarkHops, ...report.hops];
  const withJudge = groups.some((g) => g.avg.judge);
  const metrics: (keyof MetricSet)[] = withJudge ? ['f1', 'em', 'judge'] : ['f1', 'em'];
  const label = { f1: 'F1', em: 'EM', judge: 'Judge' } as const;
  const header = ['Benchmark', 'n', ...metrics.map((m) => `Avg@${k} ${label[m]}`), ...metrics.map((m) => `Pass@${k} ${label[m]}`)];
  const row = (name: string, n: number | string, avg: MetricSet, pass: MetricSet) =>
    `| ${[name, String(n), ...metrics.map((m) => cell(avg[m], scale, digits)), ...metrics.map((m) => cell(pass[m], scale, digits))].join(' | ')} |`;
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const b of report.benchmarks) {
    lines.push(row(b.benchmark!, b.n, b.avg, b.pass));
    for (const h of report.benchmarkHops.filter((g) => g.benchmark === b.benchmark)) lines.push(row(`${b.benchmark} · ${h.hops} hops`, h.n, h.avg, h.pass));
  }
  // Pooled hop rows add something only when several benchmarks have hop counts.
  if (new Set(report.benchmarkHops.map((g) => g.benchmark)).size > 1) {
    for (const h of report.hops) lines.push(row(`all · ${h.hops} hops`, h.n, h.avg, h.pass));
  }
  if (report.benchmarks.length > 1) lines.push(row(`**Average (${report.average.benchmarks} benchmarks)**`, '', report.average.avg, report.average.pass));
  return lines.join('\n') + '\n';
}
