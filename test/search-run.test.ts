import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainRun } from '../src/run/run.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { runEvalSearch } from '../src/cli/eval-search.ts';
import { loadQaFile, parseQaLine } from '../src/eval/search-data.ts';

const config = {
  name: 'search-tiny',
  task: 'search',
  search: {
    kb: { seed: 1, perType: 8, docs: 'fact' },
    agent: { prompt: 'bare', allowAccess: false, topK: 2, docTemplate: 'doc {i} : {contents}', maxNewTokens: 8, maxTotalTokens: 256, maxTurns: 4 },
    trainHops: [1, 2],
    sft: { demos: 16, hops: [1], epochs: 1, batchSize: 8 },
    eval: { hops: [1, 3], k: 2, turnBudgets: [1, 3] },
  },
  model: { contextLength: 256, nLayer: 1, nHead: 2, nEmbd: 16 },
  trainer: { steps: 2, batchSize: 2, groupSize: 2, maxStaleness: 0, advantage: { estimator: 'grpo', unit: 'trajectory' } },
  eval: { trials: 3, seed: 5 },
};

describe('agentrl train with task: search', () => {
  it('warm-starts by SFT, trains, and evaluates the start and the trained policy on the held-out world; eval search reads its checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-search-run-'));
    try {
      const r = await trainRun(config, { out: dir });
      expect(r.steps).toBe(2);
      const sft = JSON.parse(readFileSync(join(dir, 'sft.json'), 'utf8'));
      expect(sft.demos).toBe(16);
      expect(sft.demoF1).toBe(1); // the scripted searcher is exact
      expect(sft.steps).toBe(2);
      const report = r.searchEval!;
      expect(report.policies.map((p) => p.label)).toEqual(['start', 'search-tiny']);
      for (const p of report.policies) {
        expect(p.metrics.k).toBe(2);
        expect(p.metrics.hops.map((h) => [h.hops, h.n])).toEqual([[1, 3], [3, 3]]);
        expect(p.turnBudgets.map((b) => [b.maxTurns, b.n])).toEqual([[1, 3], [3, 3]]);
        // One turn cannot both search and answer: a 3-hop question scores 0 at maxTurns 1.
        expect(p.turnBudgets[0]!.f1).toBe(0);
        expect(Object.values(p.stops).reduce((a, b) => a + b, 0)).toBe(2 * 3 * 2);
      }
      expect(readFileSync(join(dir, 'eval.md'), 'utf8')).toMatch(/F1 against the turn budget/);
      const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
      expect(lines).toHaveLength(2);

      // agentrl eval search on the run's checkpoint, with the run's own index.
      const data = join(dir, 'qa.jsonl');
      writeFileSync(data, [
        JSON.stringify({ id: 'a', question: 'what is the employer of zzz zzz ?', golden_answers: ['nobody'], hops: 1 }),
        JSON.stringify({ question: 'what is the mayor of qqq qqq ?', answer: 'x', data_source: 'other' }),
      ].join('\n') + '\n');
      await runEvalSearch({ checkpoint: join(dir, 'checkpoint'), data, k: 2, seed: 0 });
      const out = JSON.parse(readFileSync(join(dir, 'eval-search.json'), 'utf8'));
      expect(out.records).toHaveLength(4);
      expect(out.metrics.benchmarks.map((b: { benchmark: string }) => b.benchmark)).toEqual(['qa', 'other']);
      expect(existsSync(join(dir, 'eval-search.md'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('checks the config: a search section needs task search, and the search agent needs outcome credit', () => {
    expect(() => parseRunConfig({ ...config, task: 'bandit' })).toThrow(/search: a search section configures task 'search'/);
    expect(() => parseRunConfig({ ...config, trainer: { ...config.trainer, credit: { kind: 'discounted' } } })).toThrow(/trainer\.credit\.kind/);
    expect(() => parseRunConfig({ ...config, search: { ...config.search, agent: { ...config.search.agent, maxNewTokens: 300 } } })).toThrow(/search\.agent\.maxNewTokens: must be below maxTotalTokens/);
    expect(() => parseRunConfig({ ...config, search: { ...config.search, trainHops: [9] } })).toThrow(/search\.trainHops\.0/);
  });
});

describe('QA data files', () => {
  it('reads the common shapes and names the line and field of a bad one', () => {
    expect(parseQaLine('{"question":"q?","golden_answers":["a","b"],"hops":2}', 1, 'x.jsonl')).toEqual({ id: 'x.jsonl:1', question: 'q?', golds: ['a', 'b'], hops: 2, benchmark: 'x' });
    expect(parseQaLine('{"id":7,"question":"q?","answer":"a","source":"nq"}', 3, 'x.jsonl')).toEqual({ id: '7', question: 'q?', golds: ['a'], benchmark: 'nq' });
    expect(() => parseQaLine('{"question":"q?"}', 4, 'x.jsonl')).toThrow(/x\.jsonl:4: no gold answers/);
    expect(() => parseQaLine('{"question":"q?","golden_answers":[]}', 5, 'x.jsonl')).toThrow(/x\.jsonl:5: "golden_answers" must be/);
    expect(() => parseQaLine('{"question":"","answer":"a"}', 6, 'x.jsonl')).toThrow(/"question" must be a non-empty string/);
    expect(() => parseQaLine('not json', 7, 'x.jsonl')).toThrow(/x\.jsonl:7: not valid JSON/);
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-qa-'));
    try {
      const f = join(dir, 'd.jsonl');
      writeFileSync(f, '{"id":"a","question":"q","answer":"x"}\n\n{"id":"a","question":"r","answer":"y"}\n');
      expect(() => loadQaFile(f)).toThrow(/d\.jsonl:3: id "a" appears twice/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
