/**
 * Progress of long jobs (src/cli/progress.ts): plain lines when not on a terminal (about ten per
 * job, one at least every 30 s, always the last; ETA from the job's own rate), JSON lines with
 * --json, and the modes chosen from --json and the stream; then `agentrl train` and `agentrl synth
 * qa` run as a user runs them with a pipe for stdout: plain lines, or parseable JSON lines ending
 * in one summary object.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { formatDuration, formatLive, Progress, progressMode } from '../src/cli/progress.ts';
import { tempDirs } from './helpers/temp-dirs.ts';

const ROOT = join(import.meta.dirname, '..');
const tmp = tempDirs('agentrl-progress-');

/** A Progress writing to an array, on a clock the test moves. */
function harness(mode: 'plain' | 'json', total: number) {
  const lines: string[] = [];
  let t = 0;
  const p = new Progress({ label: 'training', unit: 'steps', total, mode, out: { write: (s: string) => lines.push(s) }, now: () => t, labels: { tokensPerSecond: 'tok/s' } });
  return { p, lines, tick: (ms: number) => (t += ms) };
}

describe('Progress', () => {
  it('plain: one line per tenth of the job and the last, with percentage, elapsed, ETA and live numbers', () => {
    const { p, lines, tick } = harness('plain', 20);
    p.start(0);
    for (let i = 1; i <= 20; i++) {
      tick(1000);
      p.update(i, { reward: i / 20, episodes: [0.25, 0.5], tokensPerSecond: 2345.6 });
    }
    // Total 20: a line every 2 steps (1, 3, 5, …, 19) and the last (20).
    expect(lines.map((l) => Number(l.match(/^training (\d+)\/20 steps/)![1]))).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 20]);
    // 3 steps in 3 s, 17 left: ETA 17 s.
    expect(lines[1]).toBe('training 3/20 steps (15%) | 3s elapsed | ETA 17s | reward 0.150 | episodes 0.250/0.500 | tok/s 2346\n');
    expect(lines.at(-1)).toBe('training 20/20 steps (100%) | 20s elapsed | ETA 0s | reward 1 | episodes 0.250/0.500 | tok/s 2346\n');
    for (const l of lines) expect(() => JSON.parse(l)).toThrow();
  });

  it('plain: a slow job still prints at least every 30 s; a resumed one counts its rate from where it resumed', () => {
    const { p, lines, tick } = harness('plain', 1000);
    p.start(0);
    tick(5000);
    p.rebase(500); // the first update of a run resumed after step 500
    p.update(501);
    tick(10_000);
    p.update(502); // 10 s later, 1 step: not due
    tick(25_000);
    p.update(503); // 35 s after the last line: due
    expect(lines.map((l) => l.split(' | ')[0])).toEqual(['training 501/1000 steps (50%)', 'training 503/1000 steps (50%)']);
    // 3 steps since the resume in 40 s → 497 left take 497 × 40/3 s = 6626.7 s = 1h 50m.
    expect(lines[1]).toMatch(/\| 40s elapsed \| ETA 1h 50m$/m);
  });

  it('json: one parseable object per update, numbers kept as numbers, unknown ETA as null', () => {
    const { p, lines, tick } = harness('json', 4);
    p.start(0);
    p.update(0, { reward: Number.NaN });
    tick(2000);
    p.update(1, { reward: 0.5, episodes: [0.25, 0.75], tokensPerSecond: 1000 });
    p.event({ event: 'summary', steps: 4, loss: Number.POSITIVE_INFINITY });
    const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs[0]).toEqual({ event: 'progress', label: 'training', value: 0, total: 4, elapsedSeconds: 0, etaSeconds: null, reward: null });
    expect(objs[1]).toEqual({ event: 'progress', label: 'training', value: 1, total: 4, elapsedSeconds: 2, etaSeconds: 6, reward: 0.5, episodes: [0.25, 0.75], tokensPerSecond: 1000 });
    expect(objs[2]).toEqual({ event: 'summary', steps: 4, loss: null });
  });

  it('mode: --json wins, else a bar on a terminal and plain lines elsewhere', () => {
    expect(progressMode({ json: true, stream: { isTTY: true } })).toBe('json');
    expect(progressMode({ stream: { isTTY: true } })).toBe('tty');
    expect(progressMode({ stream: { isTTY: false } })).toBe('plain');
    expect(progressMode({ stream: {} })).toBe('plain');
  });

  it('formatting: durations and live numbers', () => {
    expect([formatDuration(0), formatDuration(59.4), formatDuration(185), formatDuration(7620), formatDuration(Number.NaN)]).toEqual(['0s', '59s', '3m 05s', '2h 07m', '-']);
    expect([formatLive(0.12345), formatLive(12.345), formatLive(1234.5), formatLive(3), formatLive(-0.5), formatLive([1, 0.5]), formatLive([]), formatLive(null), formatLive('x')]).toEqual(['0.123', '12.3', '1235', '3', '-0.500', '1/0.500', '-', '-', 'x']);
  });
});

describe('long commands with stdout on a pipe', () => {
  const TINY = ['--set', 'trainer.steps=3', '--set', 'trainer.batchSize=2', '--set', 'trainer.groupSize=2', '--set', 'eval.trials=2', '--set', 'model={"contextLength":64,"nLayer":1,"nHead":2,"nEmbd":16}'];
  const agentrl = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'agentrl.mjs'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: { ...process.env, AGENTRL_THREADS: '1' } });

  it('agentrl train prints plain progress lines, then the table and the files written', () => {
    const out = join(tmp(), 'run');
    const r = agentrl(['train', 'examples/configs/bandit-meta-rl.yaml', ...TINY, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const progress = r.stdout.split('\n').filter((l) => l.startsWith('training '));
    expect(progress.map((l) => l.split(' | ')[0])).toEqual(['training 1/3 steps (33%)', 'training 2/3 steps (66%)', 'training 3/3 steps (100%)']);
    expect(progress[0]).toMatch(/\| ETA \d+s \| reward [\d.]+ \| episodes [\d.]+\/[\d.]+\/[\d.]+ \| loss -?[\d.]+ \| tok\/s \d+$/);
    expect(r.stdout).toMatch(/^wrote .*config\.json, metrics\.jsonl, checkpoint\/, eval\.json, eval\.md, plot\.svg, plot\.png, tb\/ \(\d+ s\)$/m);
    expect(r.stdout).not.toMatch(/\x1b\[/); // no terminal escape codes in a log
    for (const f of ['plot.svg', 'plot.png', 'tb']) expect(existsSync(join(out, f)), f).toBe(true);
  }, 120_000);

  it('agentrl train --json: only JSON lines on stdout — start, one per step, one summary', () => {
    const out = join(tmp(), 'run');
    const r = agentrl(['train', 'examples/configs/bandit-meta-rl.yaml', ...TINY, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const objs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.map((o) => o.event)).toEqual(['start', 'progress', 'progress', 'progress', 'summary']);
    expect(objs[0]).toMatchObject({ command: 'train', task: 'bandit', steps: 3, out });
    expect(objs.slice(1, 4).map((o) => [o.value, o.total])).toEqual([[1, 3], [2, 3], [3, 3]]);
    for (const o of objs.slice(1, 4)) {
      expect(typeof o.reward).toBe('number');
      expect(o.episodes).toHaveLength(3);
      expect(typeof o.elapsedSeconds).toBe('number');
    }
    const summary = objs[4]!;
    expect(summary).toMatchObject({ out, steps: 3, files: ['config.json', 'metrics.jsonl', 'checkpoint/', 'eval.json', 'eval.md', 'plot.svg', 'plot.png', 'tb/'] });
    expect((summary.eval as { policy: string }[]).map((e) => e.policy)).toEqual(['untrained', 'meta-rl', 'random']);
  }, 120_000);

  it('agentrl synth qa: plain lines, or JSON lines with --json', () => {
    const dir = tmp();
    const args = ['synth', 'qa', '--seed', '0', '--per-type', '20', '--world', 'heldout', '--count', '3', '--min-hops', '1', '--max-hops', '2'];
    const plain = agentrl([...args, '--out', join(dir, 'a.jsonl')]);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout.split('\n').filter((l) => l.startsWith('synthesising ')).map((l) => l.split(' | ')[0])).toEqual(['synthesising 1/3 QAs (33%)', 'synthesising 2/3 QAs (66%)', 'synthesising 3/3 QAs (100%)']);
    expect(plain.stdout).toMatch(/^wrote 3 QAs over world 'heldout'/m);
    const json = agentrl([...args, '--out', join(dir, 'b.jsonl'), '--json']);
    expect(json.status, json.stderr).toBe(0);
    const objs = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.map((o) => [o.event, o.value])).toEqual([['progress', 1], ['progress', 2], ['progress', 3], ['summary', undefined]]);
    expect(objs[3]).toMatchObject({ qas: 3, world: 'heldout', byHops: { 1: 2, 2: 1 } });
  }, 120_000);
});
