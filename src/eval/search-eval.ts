/**
 * Evaluation of a search agent: k independent samples of every question through the same workflow
 * and rollout controller as training (nothing trained), one record per sample for Avg@k / Pass@k
 * (src/eval/search-metrics.ts; `toMetricRecord` gives its record shape).
 */
import type { RolloutWorkflow } from '../core/workflow.ts';
import type { SearchItem } from '../agents/search/config.ts';
import type { SearchInfo } from '../agents/search/workflow.ts';
import { collectRollouts } from '../train/rollout-controller.ts';

export interface SearchSampleRecord {
  questionId: string;
  benchmark: string;
  hops?: number;
  sample: number;
  em: number;
  f1: number;
  /** Reward the trainer would have given (format × F1 …). */
  score: number;
  judge?: boolean;
  turns: number;
  searches: number;
  stop: string;
  prediction: string | null;
}

/** Run k samples of each item (each sample its own rollout seed) and record its scores. */
export async function evaluateSearchItems(workflow: RolloutWorkflow<SearchItem>, items: readonly SearchItem[], k: number, opts: { maxConcurrent?: number } = {}): Promise<SearchSampleRecord[]> {
  if (!(Number.isInteger(k) && k >= 1)) throw new Error(`evaluateSearchItems: k must be an integer ≥ 1 (got ${k})`);
  // Distinct ids per sample: the workflow seeds its sampling from the item id.
  const runs = items.flatMap((item) => Array.from({ length: k }, (_, s) => ({ ...item, id: `${item.id}#${s}` })));
  const trajs = await collectRollouts(runs, workflow, { maxConcurrent: opts.maxConcurrent ?? 64 });
  return trajs.map((t, i) => {
    const item = items[Math.floor(i / k)]!;
    const info = t.info as unknown as SearchInfo;
    return {
      questionId: item.id, benchmark: item.benchmark ?? 'default', ...(item.hops !== undefined ? { hops: item.hops } : {}), sample: i % k,
      em: info.em, f1: info.f1, score: t.reward, turns: info.turns, searches: info.searches, stop: info.stop, prediction: info.prediction,
    };
  });
}

/** The fields src/eval/search-metrics.ts aggregates. */
export function toMetricRecord(r: SearchSampleRecord): { questionId: string; benchmark: string; hops?: number; sample: number; em: number; f1: number; judge?: boolean } {
  return { questionId: r.questionId, benchmark: r.benchmark, ...(r.hops !== undefined ? { hops: r.hops } : {}), sample: r.sample, em: r.em, f1: r.f1, ...(r.judge !== undefined ? { judge: r.judge } : {}) };
}
