/**
 * `agentrl eval` refuses what cannot be right with a message naming the flag (issue 16, item 10):
 * --trials 0 / -4, --episodes 0, an empty --opponents list, --opponents on a task without opponents
 * (the bandit), unknown opponent names and a --top-p outside (0, 1] — before any trial is played, exit
 * code 1; the sampling flags reach the trials. Small real
 * checkpoints are trained once (one step, a tiny model) and the CLI is run as a user runs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'agentrl.mjs');
const TINY_MODEL = 'model={"contextLength":64,"nLayer":1,"nHead":2,"nEmbd":16}';

let dir = '';

function agentrl(args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    return { code: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status: number | null; stdout: string; stderr: string };
    return { code: err.status ?? -1, stdout: err.stdout, stderr: err.stderr };
  }
}

function train(config: string, out: string, extra: string[] = []): string {
  const r = agentrl(['train', config, '--set', 'trainer.steps=1', '--set', 'eval.trials=4', '--set', TINY_MODEL, ...extra, '--out', out]);
  expect(r.code, r.stderr).toBe(0);
  return join(out, 'checkpoint');
}

let bandit = '';
let kuhn = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentrl-cli-eval-'));
  bandit = train('examples/configs/bandit-meta-rl.yaml', join(dir, 'bandit'));
  kuhn = train('examples/configs/kuhn-meta-rl.yaml', join(dir, 'kuhn'), ['--set', 'trainer.batchSize=2', '--set', 'trainer.groupSize=2', '--set', 'eval.untrained=false', '--set', 'eval.opponents=["random"]']);
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs `agentrl eval` and expects exit code 1 with `message` on stderr and no table written. */
function refused(args: string[], message: RegExp): string {
  const out = join(dir, `refused-${Math.random().toString(36).slice(2)}`);
  const r = agentrl(['eval', ...args, '--out', out]);
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(1);
  expect(r.stderr).toMatch(message);
  expect(existsSync(join(out, 'eval-checkpoint.json'))).toBe(false);
  return r.stderr;
}

describe('agentrl eval: bad flags are refused, naming the flag', () => {
  it('--trials 0 and --trials -4', () => {
    refused(['--checkpoint', bandit, '--trials', '0'], /--trials must be ≥ 1 \(got 0\)/);
    refused(['--checkpoint', bandit, '--trials', '-4'], /--trials must be ≥ 1 \(got -4\)/);
  });

  it('--episodes 0', () => {
    refused(['--checkpoint', bandit, '--trials', '2', '--episodes', '0'], /--episodes must be ≥ 1 \(got 0\)/);
  });

  it('--opponents on the bandit says the task has no opponents (not "Unrecognized key(s) in object: \'opponent\'")', () => {
    const stderr = refused(['--checkpoint', bandit, '--trials', '2', '--opponents', 'X'], /--opponents: task 'bandit' has no opponents \(a single-agent environment\)/);
    expect(stderr).not.toMatch(/Unrecognized key/);
    expect(stderr).not.toMatch(/RolloutController/);
  });

  it('an empty --opponents list', () => {
    refused(['--checkpoint', kuhn, '--trials', '2', '--opponents', ','], /--opponents: no opponent given/);
  });

  it('an unknown opponent is named with the valid ones, before any trial is played', () => {
    const stderr = refused(['--checkpoint', kuhn, '--trials', '2', '--opponents', 'random,shark'], /--opponents: kuhn: unknown opponent 'shark'; choose one of .*conservative/);
    expect(stderr).not.toMatch(/RolloutController/);
  });
});

describe('agentrl eval: valid flags are honoured', () => {
  it('--episodes and --trials set the table; the bandit evaluates without --opponents (or with its one pseudo-opponent, none)', () => {
    for (const extra of [[], ['--opponents', 'none']]) {
      const out = join(dir, `ok-${extra.length}`);
      const r = agentrl(['eval', '--checkpoint', bandit, '--trials', '3', '--episodes', '2', '--out', out, ...extra]);
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(readFileSync(join(out, 'eval-checkpoint.json'), 'utf8')) as { reports: { opponents: { opponent: string; trials: number; episodes: unknown[] }[] }[] };
      for (const rep of report.reports) {
        expect(rep.opponents.map((o) => o.opponent)).toEqual(['none']);
        expect(rep.opponents[0]!.trials).toBe(3);
        expect(rep.opponents[0]!.episodes).toHaveLength(2);
      }
    }
  });

  it('--temperature, --top-p and --top-k reach the trials (recorded in the report and the table); a bad --top-p names trial.topP', () => {
    const out = join(dir, 'ok-sampling');
    const r = agentrl(['eval', '--checkpoint', kuhn, '--trials', '2', '--episodes', '1', '--temperature', '0.7', '--top-p', '0.8', '--top-k', '20', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'eval-checkpoint.json'), 'utf8')) as { reports: { trialConfig: { temperature: number; topP?: number; topK?: number } }[] };
    expect(report.reports[0]!.trialConfig).toMatchObject({ temperature: 0.7, topP: 0.8, topK: 20 });
    expect(readFileSync(join(out, 'eval-checkpoint.md'), 'utf8')).toContain('sampling temperature 0.7, top-p 0.8, top-k 20');
    refused(['--checkpoint', kuhn, '--trials', '2', '--top-p', '0'], /trial\.topP/);
  });

  it('named opponents on kuhn', () => {
    const out = join(dir, 'ok-kuhn');
    const r = agentrl(['eval', '--checkpoint', kuhn, '--trials', '2', '--episodes', '1', '--opponents', 'random,cfr-mixed', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'eval-checkpoint.json'), 'utf8')) as { reports: { opponents: { opponent: string }[] }[] };
    expect(report.reports[0]!.opponents.map((o) => o.opponent)).toEqual(['random', 'cfr-mixed']);
  });
});
