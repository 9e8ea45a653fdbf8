/**
 * `agentrl train`: a run directory from a config; a killed synchronous run resumed from its checkpoint
 * ends with exactly the weights and metrics of an uninterrupted run; config errors name the field;
 * MAGE trials and the tool agent train asynchronously through the same loop.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { trainRun } from '../src/run/run.ts';
import { applyOverrides, parseRunConfig } from '../src/run/run-config.ts';
import { readConfigFile } from '../src/cli/config-file.ts';
import { loadCheckpoint } from '../src/engine/checkpoint.ts';

const TINY = { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 };
const bandit = (steps: number) =>
  applyOverrides(readConfigFile('examples/configs/bandit-meta-rl.yaml'), [
    `trainer.steps=${steps}`, 'trainer.batchSize=4', 'trainer.groupSize=4', 'checkpointEvery=2', 'eval.trials=16', `model=${JSON.stringify(TINY)}`,
  ]);
const tmp = () => mkdtempSync(join(tmpdir(), 'agentrl-run-'));

describe('agentrl train', () => {
  it('writes the run directory; a killed run resumes exactly (weights, optimizer, metrics)', async () => {
    const full = tmp();
    const a = await trainRun(bandit(5), { out: full });
    expect(a.steps).toBe(5);
    for (const f of ['config.json', 'metrics.jsonl', 'eval.json', 'eval.md', 'plot.svg', 'checkpoint/manifest.json']) expect(existsSync(join(full, f)), f).toBe(true);
    const metricsA = readFileSync(join(full, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { meanReward: number; loss: number; version: number });
    expect(metricsA.map((m) => m.version)).toEqual([0, 1, 2, 3, 4]);

    // Killed after step 3: the last checkpoint is at step 2, and step 3's metrics line is replayed.
    const killed = tmp();
    const b1 = await trainRun(bandit(5), { out: killed, stopAfter: 3 });
    expect(b1.steps).toBe(3);
    expect(readFileSync(join(killed, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
    const b2 = await trainRun(bandit(5), { out: killed, resume: true });
    expect(b2.steps).toBe(5);
    const metricsB = readFileSync(join(killed, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { meanReward: number; loss: number });
    expect(metricsB.map((m) => [m.meanReward, m.loss])).toEqual(metricsA.map((m) => [m.meanReward, m.loss]));
    const ca = await loadCheckpoint(join(full, 'checkpoint'));
    const cb = await loadCheckpoint(join(killed, 'checkpoint'));
    for (const name of Object.keys(ca.model)) expect(cb.model[name]!.data, name).toEqual(ca.model[name]!.data);
    for (const name of Object.keys(ca.optimizer!.m)) expect(cb.optimizer!.m[name]!.data, name).toEqual(ca.optimizer!.m[name]!.data);
    expect(cb.step).toBe(ca.step);
    // Resuming with another config is refused.
    await expect(trainRun(applyOverrides(bandit(5), ['optimizer.lr=0.1']), { out: killed, resume: true })).rejects.toThrow(/config differs/);
  }, 120_000);

  it('config errors name the field by its path', () => {
    const base = bandit(2);
    expect(() => parseRunConfig(applyOverrides(base, ['trainer.loss.kind=nope']))).toThrow(/trainer\.loss\.kind/);
    expect(() => parseRunConfig(applyOverrides(base, ['trainer.credit.gammaTrail=0.5']))).toThrow(/trainer\.credit.*gammaTrail/);
    expect(() => parseRunConfig(applyOverrides(base, ['task=chess']))).toThrow(/task/);
    expect(() => parseRunConfig(applyOverrides(base, ['trial.episodes=0']))).toThrow(/trial\.episodes/);
    expect(() => parseRunConfig(applyOverrides(base, ['trainer.steps=-1']))).toThrow(/trainer\.steps/);
    expect(() => parseRunConfig({ ...base, iterations: 3 })).toThrow(/iterations/);
    expect(() => applyOverrides(base, ['trainer.steps'])).toThrow(/key=value/);
    expect(parseRunConfig(applyOverrides(base, ['trainer.steps=7'])).trainer.steps).toBe(7);
  });

  it('MAGE trials train asynchronously (η = 1, worker trainer) through the same loop', async () => {
    const out = tmp();
    const r = await trainRun(applyOverrides(bandit(4), ['trainer.maxStaleness=1', 'eval.trials=0', 'checkpointEvery=0']), { out });
    expect(r.steps).toBe(4);
    expect(r.history.every((m) => m.maxStaleness <= 1)).toBe(true);
    expect(r.history.every((m) => m.episodeReward.length === 3)).toBe(true);
    expect(existsSync(join(out, 'checkpoint/manifest.json'))).toBe(true);
  }, 120_000);

  it('the toy tool agent trains with outcome credit and GRPO', async () => {
    const out = tmp();
    const cfg = applyOverrides(readConfigFile('examples/configs/toy-tool-async.yaml'), ['trainer.steps=3', 'trainer.maxStaleness=0', 'eval.trials=8', 'toolAgent.latencyMedianSeconds=0', 'toolAgent.latencyP99Seconds=0']);
    const r = await trainRun(cfg, { out });
    expect(r.steps).toBe(3);
    expect(r.toolEval?.trained).toBeGreaterThanOrEqual(0);
    expect(() => parseRunConfig(applyOverrides(cfg, ['trainer.credit.kind=mage']))).toThrow(/credit/);
  }, 60_000);

  it('the CLI: --version, help with no command, and a bad config naming the field', () => {
    const cli = (args: string[]) => {
      try {
        return { out: execFileSync(process.execPath, ['bin/agentrl.mjs', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), code: 0 };
      } catch (e) {
        const err = e as { stdout: string; stderr: string; status: number };
        return { out: err.stdout + err.stderr, code: err.status };
      }
    };
    expect(cli(['--version']).out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const help = cli([]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/train/);
    expect(help.out).toMatch(/quickstart/);
    const bad = cli(['train', 'examples/configs/bandit-meta-rl.yaml', '--set', 'trainer.batchSize=0', '--out', tmp()]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/trainer\.batchSize/);
  }, 60_000);
});

describe('example configs', () => {
  it('every shipped config is valid', async () => {
    const { readdirSync } = await import('node:fs');
    const files = readdirSync('examples/configs').filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(9);
    for (const f of files) expect(() => parseRunConfig(readConfigFile(join('examples/configs', f))), f).not.toThrow();
  });
});

describe('every trial task trains through agentrl train', () => {
  it('tic-tac-toe and Sokoban: one tiny step, evaluation with undefined standard errors, checkpoint', async () => {
    const tiny = ['trainer.steps=1', 'trainer.batchSize=2', 'trainer.groupSize=2', 'eval.trials=1', `model=${JSON.stringify({ ...TINY, contextLength: 192 })}`];
    const ttt = applyOverrides(readConfigFile('examples/configs/ttt-meta-rl.yaml'), tiny);
    const sokoban = applyOverrides(readConfigFile('examples/configs/bandit-meta-rl.yaml'), [...tiny, 'task=sokoban', 'trial.maxTurns=4']);
    for (const cfg of [ttt, sokoban]) {
      const out = tmp();
      const r = await trainRun(cfg, { out });
      expect(r.steps).toBe(1);
      expect(existsSync(join(out, 'checkpoint/manifest.json'))).toBe(true);
      expect(r.eval!.map((x) => x.policy)).toEqual(['untrained', 'meta-rl', 'random']);
    }
  }, 60_000);
});
