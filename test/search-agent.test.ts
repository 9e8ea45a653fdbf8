import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenSource, type Trajectory } from '../src/core/types.ts';
import type { RolloutContext } from '../src/core/workflow.ts';
import { ScriptedEngine, type ScriptedPolicy } from '../src/engine/scripted-engine.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { searchWorkflow, type SearchInfo } from '../src/agents/search/workflow.ts';
import { kbOraclePolicy, parseChainQuestion } from '../src/agents/search/kb-oracle.ts';
import { heldoutQuestions, SearchTaskSchema, searchTokenizer, searchTools, searchWorlds } from '../src/run/search-task.ts';
import { prepareBatch } from '../src/rl/stages.ts';
import { ToolError, type PageReader, type SearchBackend, type SearchHit } from '../src/tools/types.ts';

const WORDS = '>>>> Page … zorbpage question : what is the capital of zorb ? alpha beta gamma delta note page read on failed search was'.split(' ');
const tok = WordTokenizer.fromVocabulary([...WORDS, ...Array.from({ length: 200 }, (_, i) => `w${i}`), '1', '2', '3', 'of', 'doc', 'No', 'results', 'are', 'found'], { specials: ['<access>', '</access>'] });

function ctx(member = 0): RolloutContext {
  return { version: 0, admitVersion: 0, signal: new AbortController().signal, groupIndex: 0, groupId: 'g0', member, attempt: 0 };
}

/** A search backend over fixed hits that counts its calls. */
function fixedSearch(hits: SearchHit[]): SearchBackend & { calls: string[] } {
  const calls: string[] = [];
  return { name: 'fixed', calls, search: async (q) => (calls.push(q), hits) };
}

const item = { id: 'q1', question: 'what is the capital of zorb ?', golds: ['alpha beta'] };
const bare = { prompt: 'bare' as const, allowAccess: false, maxNewTokens: 8, maxTotalTokens: 100_000, docTemplate: 'doc {i} : {contents}' };

/** Every model token of the trajectory, in order, once (trained tokens over all its sequences). */
function trainedIds(t: Trajectory): number[] {
  return t.samples.flatMap((s) => s.seq.ids.filter((_, i) => s.seq.mask[i] === 1));
}

describe('search agent loop', () => {
  it('runs 128 turns with a policy that never answers and records why it stopped', async () => {
    const search = fixedSearch([{ url: 'u', title: 't', contents: 'gamma delta', score: 1 }]);
    const engine = new ScriptedEngine(tok, () => '<search> zorb </search>');
    const t = (await searchWorkflow(engine, { search }, { ...bare, maxTurns: 128 })(item, ctx())) as Trajectory;
    const info = t.info as unknown as SearchInfo;
    expect(info.stop).toBe('max-turns');
    expect(info.turns).toBe(128);
    expect(info.searches).toBe(128);
    expect(search.calls).toHaveLength(128);
    expect(info.prediction).toBeNull();
    expect(t.reward).toBe(0);
    // One growing sequence: 128 turns of 3 model tokens each, each followed by its information block.
    expect(t.samples).toHaveLength(1);
    expect(trainedIds(t)).toHaveLength(128 * 3);
  });

  it('stops at the token budget before a call that could not fit, and says so', async () => {
    const search = fixedSearch([{ url: 'u', title: 't', contents: 'gamma delta '.repeat(10), score: 1 }]);
    const engine = new ScriptedEngine(tok, () => '<search> zorb </search>');
    const t = (await searchWorkflow(engine, { search }, { ...bare, maxTurns: 128, maxTotalTokens: 200 })(item, ctx())) as Trajectory;
    const info = t.info as unknown as SearchInfo;
    expect(info.stop).toBe('token-budget');
    expect(info.turns).toBeLessThan(128);
    for (const s of t.samples) expect(s.seq.ids.length).toBeLessThanOrEqual(200);
    // Any information block that did not fit whole was cut, and the cut is in the log.
    expect(info.truncatedInformation).toBe(info.log.filter((l) => l.note?.includes('information cut')).length);
  });

  it('answers: reward is format × F1; token-in-token-out (model tokens trained, tool tokens context)', async () => {
    const search = fixedSearch([{ url: 'u', title: 't', contents: 'the capital of zorb is alpha beta .', score: 1 }]);
    const texts = ['<search> zorb </search>', '<answer> alpha gamma </answer>'];
    let k = 0;
    const engine = new ScriptedEngine(tok, () => texts[k++]!);
    const t = (await searchWorkflow(engine, { search }, bare)(item, ctx())) as Trajectory;
    const info = t.info as unknown as SearchInfo;
    expect(info.stop).toBe('answer');
    expect(info.prediction).toBe('alpha gamma');
    expect(info.f1).toBeCloseTo(0.5, 12); // 1 of 2 tokens right on each side
    expect(t.reward).toBeCloseTo(0.5, 12);
    const seq = t.samples[0]!.seq;
    expect(trainedIds(t)).toEqual([...tok.encode(texts[0]!), ...tok.encode(texts[1]!)]);
    for (let i = 0; i < seq.ids.length; i++) {
      expect(seq.mask[i]).toBe(seq.source[i] === TokenSource.model ? 1 : 0);
      if (seq.source[i] !== TokenSource.model) expect(seq.versions[i]).toBe(-1);
    }
    expect(seq.source).toContain(TokenSource.tool);
    expect(tok.decode(seq.ids)).toContain('<information> doc 1 : the capital of zorb is alpha beta . </information>');
  });

  it('records malformed turns (no tag, two tool tags, unbalanced tags) as penalised format failures, never a crash', async () => {
    const search = fixedSearch([]);
    const texts = ['alpha beta', '<search> a </search> <answer> b </answer>', '<search> zorb', '<search> zorb </search>', '<answer> alpha beta </answer>'];
    let k = 0;
    const engine = new ScriptedEngine(tok, () => texts[k++]!);
    const t = (await searchWorkflow(engine, { search }, bare)(item, ctx())) as Trajectory;
    const info = t.info as unknown as SearchInfo;
    expect(info.stop).toBe('answer');
    expect(info.formatFailures).toBe(3);
    expect(info.log.map((l) => l.action)).toEqual(['invalid', 'invalid', 'invalid', 'search', 'answer']);
    expect(info.log[1]!.note).toMatch(/two different tool tags/);
    expect(info.f1).toBe(1);
    expect(t.reward).toBe(0); // format 0 × F1 1
    expect(tok.decode(t.samples[0]!.seq.ids)).toContain('No search results are found');
  });

  it('reports a failing tool to the model and in the trajectory, and goes on', async () => {
    let n = 0;
    const search: SearchBackend = { name: 'flaky', search: async () => { if (n++ === 0) throw new ToolError('flaky: failed after 4 attempts: HTTP 500', 'flaky', 4); return []; } };
    const texts = ['<search> zorb </search>', '<search> zorb </search>', '<answer> alpha beta </answer>'];
    let k = 0;
    const t = (await searchWorkflow(new ScriptedEngine(tok, () => texts[k++]!), { search }, bare)(item, ctx())) as Trajectory;
    const info = t.info as unknown as SearchInfo;
    expect(info.toolErrors).toBe(1);
    expect(info.log[0]!.note).toMatch(/search failed: flaky: failed after 4 attempts/);
    expect(tok.decode(t.samples[0]!.seq.ids)).toContain('search failed');
    expect(t.reward).toBe(1);
  });

  it('reads a long page chunk by chunk, shrinks each read chunk, and splits the trajectory where the context was rewritten', async () => {
    const page = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' '); // 60 words, ~239 chars
    const access: PageReader = { name: 'pages', access: async (url) => (url === 'zorbpage' ? { url, title: 'zorb', contents: page } : null) };
    const texts = ['<access> zorbpage </access>', 'note alpha', 'note beta', '<answer> alpha beta </answer>'];
    let k = 0;
    const engine = new ScriptedEngine(tok, () => texts[k++]!);
    const wf = searchWorkflow(engine, { search: fixedSearch([]), access }, { ...bare, allowAccess: true, chunkChars: 100, shrinkChars: 10 });
    const t = (await wf(item, ctx())) as Trajectory;
    const info = t.info as unknown as SearchInfo;
    expect(info.log.map((l) => l.action)).toEqual(['access', 'read-on', 'read-on', 'answer']);
    expect(info.formatFailures).toBe(0);
    // Three chunks were shown; the first two were read before the last call, so two rewrites.
    expect(info.splits.map((s) => s.atTurn)).toEqual([2, 3]);
    expect(t.samples).toHaveLength(3);
    for (const s of t.samples) expect(s.reward).toBe(t.reward);
    // Each model token is trained exactly once, in the sequence that sampled it.
    expect(trainedIds(t)).toEqual(texts.flatMap((x) => tok.encode(x)));
    // Later sequences hold the shrunk chunk, and earlier model tokens only as context.
    const last = t.samples[2]!.seq;
    const lastText = tok.decode(last.ids);
    expect(lastText).toContain('>>>> Page 1 of 3 >>>> w0 w1 w2 …');
    expect(lastText).not.toContain('w20');
    const firstModel = last.source.indexOf(TokenSource.model);
    expect(last.mask[firstModel]).toBe(0);
    expect(t.samples[0]!.seq.ids.length).toBeGreaterThan(last.ids.length - tok.encode(texts[3]!).length);
  });

  it('trains a split trajectory once per group member (advantage unit: trajectory)', async () => {
    const mk = (id: string, reward: number, parts: number): Trajectory => ({
      id, groupId: 'g', reward, info: {},
      samples: Array.from({ length: parts }, () => ({ seq: { ids: [1, 2], logprobs: [0, -1], versions: [-1, 0], mask: [0, 1], source: [0, 1] }, reward, keys: {} })),
    });
    const groups = [{ groupId: 'g', trajectories: [mk('a', 1, 3), mk('b', 0, 1)] }];
    const perTraj = prepareBatch(groups, { kind: 'outcome' }, { estimator: 'grpo', groupBy: ['group'], unit: 'trajectory', normalizeStd: true, stdUnbiased: true, eps: 0, singleton: 'zero', baseline: 0 });
    // Two members, rewards 1 and 0: mean 0.5, unbiased std √0.5 → ±0.7071, broadcast over each trajectory's samples.
    expect(perTraj.map((s) => s.advantage)).toEqual([1, 1, 1, -1].map((x) => x * 0.5 / Math.sqrt(0.5)));
    const perSample = prepareBatch(groups, { kind: 'outcome' }, { estimator: 'grpo', groupBy: ['group'], unit: 'sample', normalizeStd: true, stdUnbiased: true, eps: 0, singleton: 'zero', baseline: 0 });
    expect(perSample[3]!.advantage).toBeCloseTo(-0.75 / 0.5, 12); // mean 0.75, std 0.5 over four samples
  });
});

describe('the knowledge-base search task', () => {
  it.each(['entity', 'fact'] as const)('the scripted searcher answers held-out chain questions of 1–8 hops through BM25 search (%s documents)', async (docs) => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-search-'));
    try {
      const task = SearchTaskSchema.parse({ kb: { seed: 3, perType: 12, docs }, agent: { prompt: 'bare', topK: 2, allowAccess: false, maxNewTokens: 12, maxTotalTokens: 4096, maxTurns: 10, docTemplate: 'doc {i} : {contents}' } });
      const worlds = searchWorlds(task);
      const tokenizer = searchTokenizer(worlds, task.agent);
      const tools = await searchTools(task, worlds, dir);
      const items = heldoutQuestions(worlds.heldout, 0, [1, 2, 3, 5, 8], 6);
      const wf = searchWorkflow(new ScriptedEngine(tokenizer, kbOraclePolicy), tools, task.agent);
      for (const it of items) {
        const t = (await wf(it, ctx())) as Trajectory;
        const info = t.info as unknown as SearchInfo;
        expect(info.stop).toBe('answer');
        expect(info.searches).toBe(it.hops);
        expect(info.em).toBe(1);
      }
      tools.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parses chain questions (first hop innermost)', () => {
    expect(parseChainQuestion('question : what is the mayor of the twin of ka lo ?')).toEqual({ relations: ['twin', 'mayor'], start: 'ka lo' });
    expect(parseChainQuestion('no question here')).toBeNull();
    expect(kbOraclePolicy('garbage', 0)).toBe('<answer> unknown </answer>');
  });
});
