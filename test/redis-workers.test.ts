/**
 * The must-show of rollouts over Redis: three `agentrl worker` processes and one trainer (this
 * process) train the toy tool agent over a real redis-server; one worker is SIGKILLed while it holds
 * unacknowledged tasks; those tasks are taken over by the others, and every task of the run is
 * trained exactly once (checked by task id), none lost. And: a worker exits cleanly on SIGTERM,
 * handing its running task back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultBackend } from '../src/engine/backends.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { toolParts } from '../src/run/run.ts';
import { InProcessTrainer } from '../src/train/policy-trainer.ts';
import { RolloutController } from '../src/train/rollout-controller.ts';
import { Trainer } from '../src/train/trainer.ts';
import { parseMessage, type TaskMessage } from '../src/train/redis/messages.ts';
import { openRedisRollout } from '../src/train/redis/redis-rollout.ts';
import { connectRedis, pending, range, runKeys, WORKERS_GROUP } from '../src/train/redis/streams.ts';
import { startRedis, uniqueKey, type TestRedis } from './fixtures/redis/redis-server.ts';

let redis: TestRedis;
let r: Redis;
const children: ChildProcess[] = [];
beforeAll(async () => {
  redis = await startRedis();
  r = await connectRedis(redis.url, 'test');
}, 20_000);
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await r?.quit();
  await redis?.stop();
});

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** A small toy-tool run: 4 groups × 2 runs per step, synchronous (η = 0), short tool latencies. */
function runConfig(key: string, visibilityMs: number) {
  return {
    name: 'redis-workers', task: 'toy-tool', seed: 3,
    toolAgent: { vocabSize: 32, tokensPerTurn: 4, longFraction: 0, shortTurns: [1, 2], longTurns: [2, 3], latencyMedianSeconds: 0.15, latencyP99Seconds: 0.3 },
    model: { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 },
    optimizer: { lr: 1e-3, weightDecay: 0 },
    trainer: { steps: 3, batchSize: 4, groupSize: 2, maxStaleness: 0 },
    eval: { trials: 0 },
    rollout: { kind: 'redis', url: redis.url, key, visibilityMs },
  };
}

/**
 * A run over Redis in a fresh directory: its config written for the workers, parsed for this
 * process (the trainer side), its parts, and the trainer's end of the Redis rollout.
 */
async function openRun(prefix: string, visibilityMs: number) {
  const key = uniqueKey(prefix);
  const keys = runKeys(key);
  const dir = mkdtempSync(join(tmpdir(), `redis-${prefix}-`));
  const raw = runConfig(key, visibilityMs);
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(raw));
  const { rollout, ...rest } = raw;
  const cfg = parseRunConfig(rest);
  const parts = toolParts(cfg, defaultBackend());
  const rr = await openRedisRollout<unknown>({ url: rollout.url, key, engine: parts.engine, weightsDir: join(dir, 'weights') });
  return { keys, configPath, cfg, parts, rr };
}

interface Worker {
  name: string;
  proc: ChildProcess;
  out: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnWorker(configPath: string, name: string, extra: string[] = []): Worker {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--config', configPath, '--name', name, '--concurrency', '3', ...extra], {
    env: { ...process.env, AGENTRL_THREADS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  const w: Worker = { name, proc, out: '', exited: new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal }))) };
  proc.stdout!.on('data', (d: Buffer) => (w.out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (w.out += d.toString()));
  return w;
}

async function ready(ws: Worker[]): Promise<void> {
  const end = Date.now() + 40_000;
  while (!ws.every((w) => w.out.includes(': ready'))) {
    const dead = ws.find((w) => w.proc.exitCode !== null);
    if (dead) throw new Error(`worker ${dead.name} exited: ${dead.out}`);
    if (Date.now() > end) throw new Error(`workers not ready within 40 s: ${ws.map((w) => `${w.name}: ${w.out}`).join('\n')}`);
    await sleep(50);
  }
}

describe('rollout workers over Redis', () => {
  it('three workers and a trainer; a worker SIGKILLed mid-run: its tasks are re-delivered, every task trained exactly once', async () => {
    const { keys, configPath, cfg, parts, rr } = await openRun('workers', 1500);
    const workers = ['w0', 'w1', 'w2'].map((n) => spawnWorker(configPath, n));
    try {
      await ready(workers);
      const consumedPerStep: string[][] = [];
      const loop = new Trainer<unknown>({
        config: cfg.trainer, engine: rr.engine, trainer: new InProcessTrainer(parts.trainer), source: parts.source(0), workflow: rr.workflow,
        onBatch: (_samples, groups) => consumedPerStep.push(groups.flatMap((g) => g.trajectories.map((t) => t.info.taskId as string))),
      });

      // Kill the first worker seen holding unacknowledged tasks, then list what it left behind.
      let killed: Worker | null = null;
      let orphans: { streamId: string; taskId: string | null }[] = [];
      const killer = (async () => {
        while (!killed) {
          const held = await pending(r, keys.tasks, WORKERS_GROUP);
          const owner = workers.find((w) => held.some((p) => p.consumer === w.name));
          if (owner) {
            owner.proc.kill('SIGKILL');
            killed = owner;
            await owner.exited;
            const left = await pending(r, keys.tasks, WORKERS_GROUP, { consumer: owner.name });
            orphans = await Promise.all(left.map(async (p) => {
              const [e] = await range(r, keys.tasks, p.id, p.id);
              return { streamId: p.id, taskId: e ? parseMessage<TaskMessage>(e.fields, 'task', e.id).taskId : null };
            }));
            return;
          }
          await sleep(10);
        }
      })();
      const result = await loop.run();
      await killer;
      await rr.close(); // marks the run done: the surviving workers exit

      // The run finished, synchronously: every token sampled with the weights of its step.
      expect(result.steps).toHaveLength(3);
      for (const m of result.steps) {
        expect(m.trajectories).toBe(8);
        expect(Object.keys(m.tokenStaleness)).toEqual(['0']);
      }
      // Every task of the run (12 groups × 2 runs, first attempts) trained exactly once: none lost, none twice.
      const consumed = consumedPerStep.flat();
      const expected = Array.from({ length: 12 }, (_, g) => [0, 1].map((m) => `${rr.session}:g${g}.m${m}.a0`)).flat();
      expect(consumed.length).toBe(24);
      expect(new Set(consumed).size).toBe(24);
      expect([...consumed].sort()).toEqual([...expected].sort());
      expect(consumedPerStep.map((ids) => ids.length)).toEqual([8, 8, 8]);
      const stats = rr.stats();
      expect(stats.tasksSent).toBe(24);
      expect(stats.results).toBe(24);

      // The killed worker held tasks unacknowledged; they were delivered again and trained once.
      expect(killed).not.toBeNull();
      const victim = killed!;
      expect(victim.proc.signalCode).toBe('SIGKILL');
      const orphanIds = orphans.map((o) => o.taskId).filter((t): t is string => t !== null);
      expect(orphanIds.length).toBeGreaterThanOrEqual(1);
      for (const id of orphanIds) expect(consumed.filter((c) => c === id)).toHaveLength(1);
      expect(stats.redelivered).toBeGreaterThanOrEqual(1);
      const byOthers = Object.entries(stats.byWorker).filter(([w]) => w !== victim.name).reduce((a, [, n]) => a + n, 0);
      expect(byOthers).toBeGreaterThanOrEqual(orphanIds.length);
      // Nothing is left pending: the dead worker's entries moved to the others and were acknowledged.
      expect(await pending(r, keys.tasks, WORKERS_GROUP)).toEqual([]);

      // The two survivors saw the run finish and exited cleanly, having taken over the orphans.
      const survivors = workers.filter((w) => w !== victim);
      for (const w of survivors) expect(await w.exited).toEqual({ code: 0, signal: null });
      const reclaimed = survivors.map((w) => Number(/"reclaimed":(\d+)/.exec(w.out)?.[1] ?? 'NaN'));
      expect(reclaimed.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(orphanIds.length);
    } finally {
      await rr.close();
    }
  }, 120_000);

  it('a worker exits with 0 on SIGTERM and hands its running task back for others to take at once', async () => {
    const { keys, configPath, parts, rr } = await openRun('sigterm', 60_000);
    const rc = new RolloutController<unknown>({ config: { batchSize: 1, groupSize: 1 }, source: parts.source(0), workflow: rr.workflow, engine: rr.engine });
    // Tool calls of 5 s: the task is surely still running when SIGTERM comes.
    const w = spawnWorker(configPath, 'slow', ['--set', 'toolAgent.latencyMedianSeconds=5', '--set', 'toolAgent.latencyP99Seconds=5']);
    try {
      await ready([w]);
      rc.start();
      const end = Date.now() + 20_000;
      while ((await pending(r, keys.tasks, WORKERS_GROUP, { consumer: 'slow' })).length === 0) {
        if (Date.now() > end) throw new Error(`the worker took no task: ${w.out}`);
        await sleep(20);
      }
      await sleep(300);
      w.proc.kill('SIGTERM');
      expect(await w.exited).toEqual({ code: 0, signal: null });
      expect(w.out).toMatch(/slow: SIGTERM, handing back running tasks/);
      expect(w.out).toMatch(/"released":1/);
      const [p] = await pending(r, keys.tasks, WORKERS_GROUP);
      expect(p).toMatchObject({ consumer: 'slow', deliveries: 1 });
      expect(p!.idleMs).toBeGreaterThan(60_000); // reclaimable now, though the visibility timeout is a minute
    } finally {
      await rc.stop();
      await rr.close();
    }
  }, 60_000);
});
