/**
 * The evaluation report of a search run: held-out Avg@k / Pass@k per hop count for the starting point
 * and the trained policy, and F1 against the turn budget on the ≥ 3-hop questions.
 */
import { aggregateSearchMetrics, renderSearchMetricsMarkdown, type SearchMetricsReport } from '../eval/search-metrics.ts';
import { toMetricRecord } from '../eval/search-eval.ts';
import type { SearchEvalSection } from './search-task.ts';

export interface SearchEvalReport {
  k: number;
  policies: {
    label: string;
    metrics: SearchMetricsReport;
    /** Mean F1 (Avg@k) and its standard error on ≥ 3-hop questions at each maxTurns. */
    turnBudgets: { maxTurns: number; f1: number; se: number; n: number }[];
    /** Why trajectories ended, counted. */
    stops: Record<string, number>;
    meanTurns: number;
  }[];
  markdown: string;
}

export function searchEvalReport(sections: readonly SearchEvalSection[], k: number): SearchEvalReport {
  const policies = sections.map((s) => {
    const metrics = aggregateSearchMetrics(s.records.map(toMetricRecord));
    const turnBudgets = s.turnBudgets.map((b) => {
      const pass = aggregateSearchMetrics(b.records.map(toMetricRecord)).benchmarks[0]!;
      return { maxTurns: b.maxTurns, f1: pass.avg.f1.mean, se: pass.avg.f1.se, n: pass.n };
    });
    const stops: Record<string, number> = {};
    for (const r of s.records) stops[r.stop] = (stops[r.stop] ?? 0) + 1;
    const meanTurns = s.records.reduce((a, r) => a + r.turns, 0) / Math.max(1, s.records.length);
    return { label: s.label, metrics, turnBudgets, stops, meanTurns };
  });
  const parts: string[] = [];
  for (const p of policies) {
    parts.push(`## ${p.label}\n\n${renderSearchMetricsMarkdown(p.metrics)}\n\nMean turns ${p.meanTurns.toFixed(2)}; stops: ${Object.entries(p.stops).map(([k, v]) => `${k} ${v}`).join(', ')}.`);
  }
  const budgets = [...new Set(policies.flatMap((p) => p.turnBudgets.map((b) => b.maxTurns)))].sort((a, b) => a - b);
  if (budgets.length > 0) {
    const head = `| maxTurns | ${policies.map((p) => `${p.label}: Avg@${k} F1 (≥ 3 hops)`).join(' | ')} |`;
    const rows = budgets.map((m) => `| ${m} | ${policies.map((p) => {
      const b = p.turnBudgets.find((x) => x.maxTurns === m);
      return b ? `${(100 * b.f1).toFixed(1)} ± ${(100 * b.se).toFixed(1)}` : '—';
    }).join(' | ')} |`);
    parts.push(`## F1 against the turn budget\n\n${head}\n|---|${policies.map(() => '---:').join('|')}|\n${rows.join('\n')}`);
  }
  return { k, policies, markdown: parts.join('\n\n') };
}
