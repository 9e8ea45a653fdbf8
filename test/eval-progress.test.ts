/**
 * Evaluation reports its progress: `evaluatePolicy` and `evaluateScripted` call `onProgress(done,
 * total)` once per finished trial (total = opponents × trials); `agentrl eval`, run as a user runs it
 * with a pipe for stdout, prints plain progress lines then the table, and with --json only parseable
 * JSON lines: a start event, progress events counting up to the total, and one summary whose numbers
 * are those of the eval-checkpoint.json it wrote.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluatePolicy, evaluateRandom, type EvalReport } from '../src/eval/trials.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import { TRIAL_WORDS } from '../src/agents/trial.ts';
import { KuhnEnv } from '../src/envs/kuhn.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import type { InferenceEngine, SampledCompletion } from '../src/engine/types.ts';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'agentrl.mjs');
const trial = { episodes: 2, reflect: false, stateMode: 'new_state', rules: 'none', maxTurns: 2 } as const;

/** An engine that always checks, answering after a tick (so trials finish one by one, asynchronously). */
function alwaysCheck(): InferenceEngine {
  const tok = WordTokenizer.fromVocabulary([...new KuhnEnv().vocabulary(), ...TRIAL_WORDS]);
  return {
    tokenizer: tok,
    version: () => 0,
    async generate(): Promise<SampledCompletion> {
      await new Promise((r) => setImmediate(r));
      const text = '<action> CHECK </action>';
      const ids = tok.encode(text);
      return { ids, logprobs: ids.map(() => 0), versions: ids.map(() => 0), text, finishReason: 'stop', temperature: 1 };
    },
  };
}

describe('onProgress', () => {
  it('counts every finished trial, 1 … opponents × trials, for the policy and for a scripted player', async () => {
    const calls: [number, number][] = [];
    const opts = { opponents: ['conservative', 'aggressive', 'random'], trials: 4, seed: 2, makeEnv: envFactory('kuhn', { seat: 'random' }), trial, onProgress: (done: number, total: number) => calls.push([done, total]) };
    const policy = await evaluatePolicy('check', alwaysCheck(), opts);
    expect(calls).toEqual(Array.from({ length: 12 }, (_, i) => [i + 1, 12]));
    expect(policy.opponents.map((o) => o.trials)).toEqual([4, 4, 4]);
    calls.length = 0;
    evaluateRandom({ ...opts, opponents: ['random'], trials: 5 });
    expect(calls).toEqual([[1, 5], [2, 5], [3, 5], [4, 5], [5, 5]]);
  });

  it('is optional: the same reports without it', async () => {
    const opts = { opponents: ['aggressive'], trials: 6, seed: 4, makeEnv: envFactory('kuhn', { seat: 'random' }), trial };
    const a = await evaluatePolicy('check', alwaysCheck(), opts);
    const b = await evaluatePolicy('check', alwaysCheck(), { ...opts, onProgress: () => {} });
    expect(b).toEqual(a);
  });
});

describe('agentrl eval progress output', () => {
  let dir = '';
  let checkpoint = '';
  const agentrl = (args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, AGENTRL_THREADS: '1' }, timeout: 90_000 });
    expect(r.status, r.stderr).toBe(0);
    return r;
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentrl-eval-progress-'));
    agentrl(['train', 'examples/configs/kuhn-meta-rl.yaml', '--out', join(dir, 'run'), '--set', 'trainer.steps=1', '--set', 'trainer.batchSize=2', '--set', 'trainer.groupSize=2',
      '--set', 'model={"contextLength":64,"nLayer":1,"nHead":2,"nEmbd":16}', '--set', 'eval.trials=2', '--set', 'eval.untrained=false', '--set', 'eval.opponents=["random"]']);
    checkpoint = join(dir, 'run', 'checkpoint');
  }, 120_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('not a terminal: a header, plain progress lines ending at the total, then the table', () => {
    const out = join(dir, 'plain');
    const r = agentrl(['eval', '--checkpoint', checkpoint, '--trials', '20', '--episodes', '2', '--opponents', 'random,aggressive', '--out', out]);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(`agentrl eval ${checkpoint} → ${out} (kuhn, 20 trials of 2 episodes against each of random, aggressive)`);
    const progress = lines.filter((l) => l.startsWith('evaluating '));
    // About one line per tenth of the 40 trials (at least every 4), always the last.
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.length).toBeLessThanOrEqual(11);
    expect(progress.at(-1)).toMatch(/^evaluating 40\/40 trials \(100%\) \| \d+s elapsed \| ETA 0s$/);
    const counts = progress.map((l) => Number(/^evaluating (\d+)\/40 trials/.exec(l)![1]));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(lines.some((l) => l.startsWith('| opponent | episode | checkpoint@1 return ± se'))).toBe(true);
    expect(lines.at(-1)).toBe(`wrote ${join(out, 'eval-checkpoint.json')} and eval-checkpoint.md`);
    expect(r.stderr).not.toMatch(/\x1b\[/); // no bar drawn anywhere
  });

  it('--json: every stdout line parses; start, progress up to the total, and a summary matching eval-checkpoint.json', () => {
    const out = join(dir, 'json');
    const r = agentrl(['eval', '--checkpoint', checkpoint, '--trials', '6', '--episodes', '3', '--opponents', 'conservative,random', '--seed', '5', '--out', out, '--json']);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events[0]).toEqual({ event: 'start', command: 'eval', checkpoint, out, task: 'kuhn', policy: 'checkpoint@1', opponents: ['conservative', 'random'], trials: 6, episodes: 3, seed: 5 });
    const progress = events.filter((e) => e.event === 'progress');
    expect(progress.map((e) => e.value)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    for (const e of progress) {
      expect(e).toMatchObject({ label: 'evaluating', total: 12 });
      expect(e.elapsedSeconds).toBeGreaterThanOrEqual(0);
    }
    expect(progress.at(-1)!.etaSeconds).toBe(0);
    const summary = events.at(-1)!;
    expect(events.filter((e) => e.event === 'summary')).toEqual([summary]);
    expect(events).toHaveLength(1 + 12 + 1);
    const written = JSON.parse(readFileSync(join(out, 'eval-checkpoint.json'), 'utf8')) as { reports: EvalReport[] };
    expect(summary).toMatchObject({ event: 'summary', checkpoint, out, files: [join(out, 'eval-checkpoint.json'), join(out, 'eval-checkpoint.md')] });
    const reports = summary.reports as { policy: string; opponents: { opponent: string; trials: number; finalReturn: number; meanReturn: number[]; winRate: number[] }[] }[];
    expect(reports.map((p) => p.policy)).toEqual(['checkpoint@1', 'random']);
    reports.forEach((p, i) => {
      const w = written.reports[i]!;
      expect(p.opponents.map((o) => o.opponent)).toEqual(['conservative', 'random']);
      p.opponents.forEach((o, j) => {
        const x = w.opponents[j]!;
        expect(o.trials).toBe(6);
        expect(o.finalReturn).toBe(x.finalReturn);
        expect(o.meanReturn).toEqual(x.episodes.map((e) => e.meanReturn));
        expect(o.winRate).toEqual(x.episodes.map((e) => e.winRate));
        expect(o.meanReturn).toHaveLength(3);
      });
    });
  });
});
