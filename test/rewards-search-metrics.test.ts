import { describe, expect, it } from 'vitest';
import { aggregateSearchMetrics, meanSe, renderSearchMetricsMarkdown, type SearchEvalRecord } from '../src/eval/search-metrics.ts';

/** Records of one question: f1/em/judge per sample. */
function q(benchmark: string, questionId: string, hops: number | undefined, f1: number[], em: number[], judge?: boolean[]): SearchEvalRecord[] {
  return f1.map((f, sample) => ({ benchmark, questionId, sample, f1: f, em: em[sample]!, ...(hops !== undefined ? { hops } : {}), ...(judge ? { judge: judge[sample]! } : {}) }));
}

// Benchmark A (k = 2), worked out by hand:
//   q1 (2 hops): F1 [1, 0]     EM [1, 0] judge [T, F] → avg F1 .5,  pass F1 1;  avg EM .5, pass EM 1; avg J .5, pass J 1
//   q2 (2 hops): F1 [.5, .5]   EM [0, 0] judge [F, T] → avg F1 .5,  pass F1 .5; avg EM 0,  pass EM 0; avg J .5, pass J 1
//   q3 (3 hops): F1 [0, 0]     EM [0, 0] judge [F, F] → avg F1 0,   pass F1 0;  avg EM 0,  pass EM 0; avg J 0,  pass J 0
// Benchmark B (no hops, no judge): b1 F1 [.2, .4] EM [0, 0] → avg F1 .3, pass F1 .4
const records: SearchEvalRecord[] = [
  ...q('A', 'q1', 2, [1, 0], [1, 0], [true, false]),
  ...q('B', 'b1', undefined, [0.2, 0.4], [0, 0]),
  ...q('A', 'q2', 2, [0.5, 0.5], [0, 0], [false, true]),
  ...q('A', 'q3', 3, [0, 0], [0, 0], [false, false]),
];

describe('meanSe', () => {
  it('is the mean and sample SD / √n', () => {
    expect(meanSe([1, 2, 3, 4])).toEqual({ mean: 2.5, se: Math.sqrt(5 / 3 / 4) });
    expect(meanSe([7])).toEqual({ mean: 7, se: NaN });
    expect(meanSe([])).toEqual({ mean: NaN, se: NaN });
  });
});

describe('aggregateSearchMetrics', () => {
  const report = aggregateSearchMetrics(records);

  it('gives Avg@k and Pass@k per benchmark with standard errors across questions', () => {
    expect(report.k).toBe(2);
    expect(report.benchmarks.map((b) => [b.benchmark, b.hops, b.n])).toEqual([['A', null, 3], ['B', null, 1]]);
    const a = report.benchmarks[0]!;
    // avg F1 per question .5, .5, 0: mean 1/3; squared deviations 1/36 + 1/36 + 1/9 = 1/6, var 1/12, SE √(1/36) = 1/6
    expect(a.avg.f1.mean).toBeCloseTo(1 / 3, 12);
    expect(a.avg.f1.se).toBeCloseTo(1 / 6, 12);
    // pass F1 1, .5, 0: mean .5; var .25, SE √(.25/3)
    expect(a.pass.f1.mean).toBeCloseTo(0.5, 12);
    expect(a.pass.f1.se).toBeCloseTo(Math.sqrt(0.25 / 3), 12);
    // avg EM .5, 0, 0: mean 1/6, SE 1/6; pass EM 1, 0, 0: mean 1/3, var 1/3, SE 1/3
    expect(a.avg.em.mean).toBeCloseTo(1 / 6, 12);
    expect(a.avg.em.se).toBeCloseTo(1 / 6, 12);
    expect(a.pass.em.mean).toBeCloseTo(1 / 3, 12);
    expect(a.pass.em.se).toBeCloseTo(1 / 3, 12);
    // judge: avg .5, .5, 0 → 1/3 ± 1/6; pass (any correct) 1, 1, 0 → 2/3 ± 1/3
    expect(a.avg.judge!.mean).toBeCloseTo(1 / 3, 12);
    expect(a.avg.judge!.se).toBeCloseTo(1 / 6, 12);
    expect(a.pass.judge!.mean).toBeCloseTo(2 / 3, 12);
    expect(a.pass.judge!.se).toBeCloseTo(1 / 3, 12);

    const b = report.benchmarks[1]!;
    expect(b.avg.f1.mean).toBeCloseTo(0.3, 12);
    expect(b.pass.f1.mean).toBeCloseTo(0.4, 12);
    expect(b.avg.f1.se).toBeNaN(); // one question
    expect(b.avg.judge).toBeUndefined();
  });

  it('splits by hop count, per benchmark and pooled', () => {
    expect(report.benchmarkHops.map((g) => [g.benchmark, g.hops, g.n])).toEqual([['A', 2, 2], ['A', 3, 1]]);
    const two = report.benchmarkHops[0]!;
    // q1, q2: avg F1 .5, .5 → .5 ± 0; pass F1 1, .5 → .75, var .125, SE √(.125/2) = .25
    expect(two.avg.f1).toEqual({ mean: 0.5, se: 0 });
    expect(two.pass.f1.mean).toBeCloseTo(0.75, 12);
    expect(two.pass.f1.se).toBeCloseTo(0.25, 12);
    expect(two.pass.judge).toEqual({ mean: 1, se: 0 });
    expect(report.hops.map((g) => [g.benchmark, g.hops, g.n])).toEqual([[null, 2, 2], [null, 3, 1]]);
    expect(report.hops[0]!.pass.f1).toEqual(two.pass.f1);
  });

  it('averages benchmarks without weighting, judge only when every benchmark has it', () => {
    expect(report.average.benchmarks).toBe(2);
    expect(report.average.avg.f1.mean).toBeCloseTo((1 / 3 + 0.3) / 2, 12);
    expect(report.average.pass.em.mean).toBeCloseTo((1 / 3 + 0) / 2, 12);
    expect(report.average.avg.f1.se).toBeNaN(); // B's SE is undefined
    expect(report.average.avg.judge).toBeUndefined();
    const judgedOnly = aggregateSearchMetrics([...q('A', 'x', undefined, [1], [1], [true]), ...q('A', 'y', undefined, [0], [0], [false]), ...q('C', 'z', undefined, [0.5], [0], [true]), ...q('C', 'w', undefined, [0.5], [0], [true])]);
    // A: judge 1, 0 → .5 ± .5; C: 1, 1 → 1 ± 0; average .75 ± √(.25 + 0)/2
    expect(judgedOnly.average.avg.judge).toEqual({ mean: 0.75, se: 0.25 });
  });

  it('Pass@k is any EM / any judge-correct / max F1 over a question\'s samples', () => {
    const r = aggregateSearchMetrics(q('X', 'only', undefined, [0.1, 0.9, 0.3], [0, 1, 0], [false, false, true]));
    expect(r.k).toBe(3);
    expect(r.benchmarks[0]!.pass).toEqual({ f1: { mean: 0.9, se: NaN }, em: { mean: 1, se: NaN }, judge: { mean: 1, se: NaN } });
    expect(r.benchmarks[0]!.avg.f1.mean).toBeCloseTo(1.3 / 3, 12);
    expect(r.benchmarks[0]!.avg.judge!.mean).toBeCloseTo(1 / 3, 12);
  });

  it('rejects unequal k, duplicate samples, partial judging, inconsistent hops and malformed records', () => {
    expect(() => aggregateSearchMetrics([...q('A', 'q1', undefined, [1, 0], [1, 0]), ...q('A', 'q2', undefined, [1], [1])])).toThrow(
      /every question needs the same number of samples k, but question "q1" of "A" has 2 and question "q2" of "A" has 1/,
    );
    expect(() => aggregateSearchMetrics([...q('A', 'q1', undefined, [1], [1]), ...q('A', 'q1', undefined, [1], [1])])).toThrow(/question "q1" of "A" has sample 0 twice/);
    expect(() => aggregateSearchMetrics([...q('A', 'q1', undefined, [1], [1], [true]), ...q('A', 'q2', undefined, [1], [1])])).toThrow(/benchmark "A" has judge verdicts for 1 of 2 samples; judge all of them or none/);
    expect(() => aggregateSearchMetrics([{ benchmark: 'A', questionId: 'q', sample: 0, em: 1, f1: 1, hops: 2 }, { benchmark: 'A', questionId: 'q', sample: 1, em: 1, f1: 1 }])).toThrow(/different hops \(2 and undefined\)/);
    expect(() => aggregateSearchMetrics([{ benchmark: 'A', questionId: 'q', sample: 0, em: 1, f1: 1.5 }])).toThrow(/record 0: f1: Number must be less than or equal to 1/);
    expect(() => aggregateSearchMetrics([])).toThrow(/no records/);
  });

  it('keeps the same question id apart in different benchmarks', () => {
    const r = aggregateSearchMetrics([...q('A', '1', undefined, [1], [1]), ...q('B', '1', undefined, [0], [0])]);
    expect(r.benchmarks.map((b) => [b.benchmark, b.n, b.avg.f1.mean])).toEqual([['A', 1, 1], ['B', 1, 0]]);
  });
});

describe('renderSearchMetricsMarkdown', () => {
  it('prints percentages with standard errors, hop rows and the average', () => {
    expect(renderSearchMetricsMarkdown(aggregateSearchMetrics(records))).toBe(
      [
        '| Benchmark | n | Avg@2 F1 | Avg@2 EM | Avg@2 Judge | Pass@2 F1 | Pass@2 EM | Pass@2 Judge |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
        '| A | 3 | 33.3 ± 16.7 | 16.7 ± 16.7 | 33.3 ± 16.7 | 50.0 ± 28.9 | 33.3 ± 33.3 | 66.7 ± 33.3 |',
        '| A · 2 hops | 2 | 50.0 ± 0.0 | 25.0 ± 25.0 | 50.0 ± 0.0 | 75.0 ± 25.0 | 50.0 ± 50.0 | 100.0 ± 0.0 |',
        '| A · 3 hops | 1 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 |',
        '| B | 1 | 30.0 | 0.0 | — | 40.0 | 0.0 | — |',
        '| **Average (2 benchmarks)** |  | 31.7 | 8.3 | — | 45.0 | 16.7 | — |',
        '',
      ].join('\n'),
    );
  });

  it('drops the judge columns when nothing was judged, and can print fractions', () => {
    const md = renderSearchMetricsMarkdown(aggregateSearchMetrics(q('B', 'b1', undefined, [0.2, 0.4], [0, 0])), { percent: false, digits: 2 });
    expect(md).toBe('| Benchmark | n | Avg@2 F1 | Avg@2 EM | Pass@2 F1 | Pass@2 EM |\n| --- | ---: | ---: | ---: | ---: | ---: |\n| B | 1 | 0.30 | 0.00 | 0.40 | 0.00 |\n');
  });
});
