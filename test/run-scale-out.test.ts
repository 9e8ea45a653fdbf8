/**
 * `agentrl train`'s scale-out sections, through `trainRun` itself: `trainerService` (a Tinker-
 * compatible service, here `agentrl serve trainer`'s server in-process) gives the built-in
 * trainer's weights and rewards with the same seed, and `rollout: {kind: redis}` trains on rollouts
 * run by RolloutWorkers over a real Redis.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultBackend } from '../src/engine/backends.ts';
import { loadTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { toolParts, trainRun } from '../src/run/run.ts';
import { startTrainerServer } from '../src/serve/trainer-server.ts';
import { startInferenceServer } from '../src/serve/inference-server.ts';
import { RolloutWorker } from '../src/train/redis/worker.ts';
import { startRedis, uniqueKey, type TestRedis } from './fixtures/redis/redis-server.ts';

/** A toy-tool run (raw token ids, no constrained decoding), PPO without entropy bonus or dual clip: what a Tinker loss expresses exactly. */
function toyConfig(extra: Record<string, unknown> = {}) {
  return {
    name: 'scale-out', task: 'toy-tool', seed: 5,
    toolAgent: { vocabSize: 32, tokensPerTurn: 4, longFraction: 0, shortTurns: [1, 2], longTurns: [2, 3], latencyMedianSeconds: 0.002, latencyP99Seconds: 0.005 },
    model: { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 },
    optimizer: { lr: 3e-3, weightDecay: 0 },
    trainer: { steps: 3, batchSize: 4, groupSize: 4, maxStaleness: 0, loss: { kind: 'ppo', entropyCoef: 0, dualClip: null } },
    eval: { trials: 0 },
    checkpointEvery: 0,
    ...extra,
  };
}

const rewards = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { meanReward: number }).meanReward);

describe('agentrl train with trainerService (Tinker API)', () => {
  it('trains to the built-in trainer\'s weights and rewards with the same seed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-tinker-'));
    const builtin = await trainRun(toyConfig(), { out: join(dir, 'builtin') });
    // The service's base model: the run's own starting weights (the same config and seed build them).
    const start = toolParts(parseRunConfig(toyConfig()), defaultBackend());
    const server = await startTrainerServer({ model: start.trainer.model, tokenizer: null, baseModel: 'toy', port: 0, longPollMs: 50 });
    try {
      const remote = await trainRun(toyConfig({ trainerService: { kind: 'tinker', url: server.url } }), { out: join(dir, 'remote') });
      expect(remote.steps).toBe(3);
      expect(rewards(join(dir, 'remote'))).toEqual(rewards(join(dir, 'builtin')));
      expect(builtin.history.map((m) => m.trainedTokens)).toEqual(remote.history.map((m) => m.trainedTokens));
      const a = (await loadTrainerCheckpoint(join(dir, 'builtin', 'checkpoint'), defaultBackend())).trainer.model.params;
      const b = (await loadTrainerCheckpoint(join(dir, 'remote', 'checkpoint'), defaultBackend())).trainer.model.params;
      // Learning happened, and the service's weights are the built-in trainer's.
      let moved = 0, worst = 0;
      for (let i = 0; i < a.length; i++) {
        if (a[i] !== start.trainer.model.params[i]) moved++;
        worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      expect(moved).toBeGreaterThan(a.length / 2);
      expect(worst).toBeLessThan(1e-6);
    } finally {
      await server.close();
    }
  }, 120_000);

  it('refuses settings a Tinker loss cannot express, naming the field', () => {
    expect(() => parseRunConfig(toyConfig({ trainerService: { kind: 'tinker', url: 'http://127.0.0.1:1' }, trainer: { steps: 1, batchSize: 1, groupSize: 2, loss: { kind: 'ppo', entropyCoef: 0.01 } } }))).toThrow(/trainer\.loss.*entropyCoef/s);
  });
});

describe('agentrl train with rollout: {kind: redis}', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  }, 20_000);
  afterAll(async () => {
    await redis?.stop();
  });

  it('trains on trajectories that two workers ran; every task trained once', async () => {
    const key = uniqueKey('run');
    const cfg = toyConfig({ rollout: { kind: 'redis', url: redis.url, key, visibilityMs: 5000 } });
    const parsed = parseRunConfig(cfg);
    const workers = await Promise.all([0, 1].map(async (i) => {
      const parts = toolParts(parsed, defaultBackend());
      return RolloutWorker.open<unknown>({ url: redis.url, key, name: `w${i}`, workflow: parts.workflow as never, engine: parts.engine, concurrency: 4, visibilityMs: 5000, tickMs: 100 });
    }));
    const runs = workers.map((w) => w.run());
    const dir = mkdtempSync(join(tmpdir(), 'run-redis-'));
    const ids: string[] = [];
    const result = await trainRun(cfg, { out: dir });
    const stats = await Promise.all(runs);
    expect(result.steps).toBe(3);
    for (const m of result.history) expect(m.trajectories).toBe(16);
    // Both workers ran rollouts, and together exactly the 48 tasks the run trained on.
    expect(stats.every((s) => s.completed > 0)).toBe(true);
    expect(stats.reduce((a, s) => a + s.completed, 0)).toBe(48);
    // The trajectories logged at step 0 came from the workers (task ids in their info).
    const logged = readFileSync(join(dir, 'trajectories', 'step-000000.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { info: { taskId?: string; worker?: string } });
    for (const t of logged) {
      expect(t.info.taskId).toMatch(/:g\d+\.m\d+\.a\d+$/);
      expect(['w0', 'w1']).toContain(t.info.worker);
      ids.push(t.info.taskId!);
    }
    expect(new Set(ids).size).toBe(ids.length);
  }, 120_000);
});

describe('agentrl train with engine: {kind: vllm|sglang} (remote inference servers)', () => {
  for (const kind of ['vllm', 'sglang'] as const) {
    it(`${kind}: rollouts on two agentrl serve inference servers, which load every new version's weights`, async () => {
      const dir = mkdtempSync(join(tmpdir(), `run-remote-${kind}-`));
      // Two servers of the run's own starting model (same config and seed), as a fleet would be started.
      const servers = await Promise.all([0, 1].map(async (i) => {
        const p = toolParts(parseRunConfig(toyConfig()), defaultBackend());
        const srv = await startInferenceServer({ engine: p.engine, model: p.engine.model, tokenizer: p.engine.tokenizer, port: 0, modelName: `s${i}` });
        return { srv, engine: p.engine };
      }));
      try {
        const cfg = toyConfig({ engine: { kind, urls: servers.map((s) => s.srv.url), weightSyncDir: join(dir, 'weights') }, eval: { trials: 8, seed: 7 } });
        const result = await trainRun(cfg, { out: join(dir, 'run') });
        expect(result.steps).toBe(3);
        for (const m of result.history) expect(m.trajectories).toBe(16);
        // Both servers sampled, and both hold the final weights (version 3), equal to the checkpoint's.
        const trained = (await loadTrainerCheckpoint(join(dir, 'run', 'checkpoint'), defaultBackend())).trainer.model.params;
        for (const { engine } of servers) {
          expect(engine.stats.tokensSampled).toBeGreaterThan(0);
          expect(engine.version()).toBe(3);
          let worst = 0;
          for (let i = 0; i < trained.length; i++) worst = Math.max(worst, Math.abs(engine.model.params[i]! - trained[i]!));
          expect(worst).toBe(0);
        }
        // The trained tokens carry the versions the servers reported (synchronous: the step's own).
        const logged = readFileSync(join(dir, 'run', 'trajectories', 'step-000000.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { samples: { tokens: { versions: number[]; source: number[] } }[] });
        const modelVersions = logged.flatMap((t) => t.samples.flatMap((s) => s.tokens.versions.filter((_, i) => s.tokens.source[i] === 1)));
        expect(modelVersions.length).toBeGreaterThan(0);
        expect(new Set(modelVersions)).toEqual(new Set([0]));
        expect(result.toolEval?.trained).toBeTypeOf('number');
      } finally {
        for (const s of servers) await s.srv.close();
      }
    }, 120_000);
  }

  it('refuses constrained trials with a remote engine, naming the field', () => {
    expect(() => parseRunConfig({ ...toyConfig(), task: 'bandit', toolAgent: undefined, engine: { kind: 'vllm', urls: ['http://127.0.0.1:1'] } })).toThrow(/trial\.constrained/);
  });
});
