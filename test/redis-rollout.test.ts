/**
 * Rollouts over Redis Streams, piece by piece, against a real redis-server: admission under the
 * staleness bound, acknowledgements, a dead worker's tasks taken over, a duplicate result dropped,
 * a worker's failure retried, a stopped worker handing its task back, weights published to disk.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Trajectory } from '../src/core/types.ts';
import type { RolloutWorkflow } from '../src/core/workflow.ts';
import type { Tokenizer } from '../src/engine/types.ts';
import { RolloutController } from '../src/train/rollout-controller.ts';
import { decodeMessage, encodeMessage } from '../src/core/tagged-json.ts';
import { parseRolloutSection } from '../src/train/redis/config.ts';
import { openRedisRollout, type RedisRollout } from '../src/train/redis/redis-rollout.ts';
import { parseMessage, resultFields, type TaskMessage } from '../src/train/redis/messages.ts';
import { ack, connectRedis, pending, readGroup, runKeys, WORKERS_GROUP, xadd } from '../src/train/redis/streams.ts';
import { publishedWeights, readWeightsFile } from '../src/train/redis/weights.ts';
import { RolloutWorker } from '../src/train/redis/worker.ts';
import { startRedis, uniqueKey, type TestRedis } from './fixtures/redis/redis-server.ts';

let redis: TestRedis;
let r: Redis;
beforeAll(async () => {
  redis = await startRedis();
  r = await connectRedis(redis.url, 'test');
}, 20_000);
afterAll(async () => {
  await r?.quit();
  await redis?.stop();
});

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A stand-in for the engine: four weights, a version, setWeights. */
function fakeEngine() {
  let v = 0;
  const params = Float32Array.from([1, 2, 3, 4]);
  return {
    model: { layout: [{ name: 'w', offset: 0, shape: [4], size: 4, decay: true }], params },
    tokenizer: { vocabSize: 4, eosId: 0 } as Tokenizer,
    version: () => v,
    generate: () => Promise.reject(new Error('not used')),
    setWeights(p: Float32Array, version: number) {
      params.set(p);
      v = version;
    },
  };
}

/** A trajectory whose sample carries a constraint mask and a −∞ logprob (both must survive JSON). */
function traj(groupId: string, reward: number, tag: string): Trajectory {
  return {
    id: tag, groupId, reward, info: { tag },
    samples: [{ seq: { ids: [1, 2], logprobs: [0, -Infinity], versions: [-1, 0], mask: [0, 1], source: [0, 1], constraintMasks: [null, Uint8Array.from([1, 0, 1, 1])] }, reward, keys: {} }],
  };
}

let n = 0;
const counter = () => ({ next: () => ({ done: false as const, value: { n: n++ } }) });

async function open(key: string): Promise<RedisRollout<{ n: number }>> {
  return openRedisRollout<{ n: number }>({ url: redis.url, key, engine: fakeEngine(), weightsDir: mkdtempSync(join(tmpdir(), 'redis-w-')) });
}

describe('the message codec and the config section', () => {
  it('keeps constraint masks and non-finite logprobs; refuses other typed arrays', () => {
    const t = traj('g0', 0.5, 'x');
    const back = decodeMessage<Trajectory>(encodeMessage(t));
    expect(back.samples[0]!.seq.logprobs).toEqual([0, -Infinity]);
    expect(back.samples[0]!.seq.constraintMasks![1]).toBeInstanceOf(Uint8Array);
    expect([...back.samples[0]!.seq.constraintMasks![1]!]).toEqual([1, 0, 1, 1]);
    expect(back.samples[0]!.seq.constraintMasks![0]).toBeNull();
    expect(decodeMessage(encodeMessage({ a: NaN, b: Infinity }))).toEqual({ a: NaN, b: Infinity });
    expect(() => encodeMessage({ w: new Float32Array(2) })).toThrow(/Float32Array/);
  });

  it('rollout: defaults to in-process; redis needs url and key; errors name the field', () => {
    expect(parseRolloutSection(undefined)).toMatchObject({ kind: 'inprocess', visibilityMs: 30_000 });
    expect(parseRolloutSection({ kind: 'redis', url: 'redis://h:1', key: 'k' })).toMatchObject({ kind: 'redis', url: 'redis://h:1', key: 'k', keepWeights: 2 });
    expect(() => parseRolloutSection({ kind: 'redis', key: 'k' })).toThrow(/rollout\.url: required with kind: redis/);
    expect(() => parseRolloutSection({ kind: 'redis', url: 'http://h', key: 'k' })).toThrow(/rollout\.url: expected a Redis URL/);
    expect(() => parseRolloutSection({ kind: 'redis', url: 'redis://h:1', key: 'k', visibilityMs: 5 })).toThrow(/rollout\.visibilityMs/);
    expect(() => parseRolloutSection({ kind: 'redis', url: 'redis://h:1', key: 'k', visibiltyMs: 500 })).toThrow(/rollout\.visibiltyMs: unknown key \(did you mean 'visibilityMs'\?\)/);
    expect(() => parseRolloutSection({ url: 'redis://h:1' })).toThrow(/rollout\.url: only used with kind: redis/);
  });

  it('an unreachable Redis is an error naming the URL and the fix', async () => {
    await expect(connectRedis('redis://127.0.0.1:1', 'x')).rejects.toThrow(/cannot connect to Redis at redis:\/\/127\.0\.0\.1:1 .*start redis-server there or fix rollout\.url/);
  });
});

describe('the trainer side over a real Redis', () => {
  it('admits at most (v + η + 1)·B groups, acknowledges results, publishes weights before tasks, withdraws aborted tasks', async () => {
    const key = uniqueKey('admit');
    const keys = runKeys(key);
    const rr = await open(key);
    const rc = new RolloutController<{ n: number }>({ config: { batchSize: 2, groupSize: 1, maxStaleness: 1, maxConcurrent: 100 }, source: counter(), workflow: rr.workflow, engine: rr.engine });
    try {
      rc.start();
      // η = 1, B = 2, version 0: (0 + 1 + 1)·2 = 4 groups, and no more however long we wait.
      await until('4 tasks', () => rr.stats().tasksSent === 4);
      await sleep(300);
      expect(rr.stats().tasksSent).toBe(4);
      expect(await r.xlen(keys.tasks)).toBe(4);
      const w0 = await publishedWeights(r, keys.weights);
      expect(w0?.version).toBe(0);

      const got = await readGroup(r, keys.tasks, WORKERS_GROUP, 'fake', 10, 100);
      expect(got).toHaveLength(4);
      const tasks = got.map((e) => parseMessage<TaskMessage<{ n: number }>>(e.fields, 'task', e.id));
      expect(tasks.map((t) => [t.groupIndex, t.member, t.attempt, t.admitVersion])).toEqual([[0, 0, 0, 0], [1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0]]);
      expect((await pending(r, keys.tasks, WORKERS_GROUP, { consumer: 'fake' })).length).toBe(4);
      for (const [i, t] of tasks.entries()) {
        await xadd(r, keys.results, resultFields({ taskId: t.taskId, worker: 'fake', ok: true, trajectories: [traj(t.groupId, i, t.taskId)], deliveries: 1, seconds: 0 }));
      }
      await ack(r, keys.tasks, WORKERS_GROUP, got.map((e) => e.id));
      expect(await pending(r, keys.tasks, WORKERS_GROUP, { consumer: 'fake' })).toEqual([]);

      const b0 = await rc.nextBatchGroups(0);
      expect(b0.map((g) => g.index)).toEqual([0, 1]);
      const t0 = b0[0]!.trajectories[0]!;
      expect(t0.info).toMatchObject({ taskId: tasks[0]!.taskId, worker: 'fake', deliveries: 1, tag: tasks[0]!.taskId });
      expect([...t0.samples[0]!.seq.constraintMasks![1]!]).toEqual([1, 0, 1, 1]);
      // Four accepted, version still 0: nothing new until the trainer publishes version 1.
      await sleep(200);
      expect(rr.stats().tasksSent).toBe(4);
      // The trainer processed the results: acknowledged and deleted them, and the finished tasks.
      await until('streams emptied', async () => (await r.xlen(keys.results)) === 0 && (await r.xlen(keys.tasks)) === 0);

      rr.engine.setWeights(Float32Array.from([5, 6, 7, 8]), 1);
      rc.setVersion(1);
      await until('6 tasks', () => rr.stats().tasksSent === 6);
      await sleep(300);
      expect(rr.stats().tasksSent).toBe(6); // (1 + 1 + 1)·2
      const w1 = await publishedWeights(r, keys.weights);
      expect(w1?.version).toBe(1);
      expect([...(await readWeightsFile(w1!.path, fakeEngine().model))]).toEqual([5, 6, 7, 8]);
      const next = (await r.xrange(keys.tasks, '-', '+')).map(([id, f]) => parseMessage<TaskMessage>({ [f[0]!]: f[1]!, [f[2]!]: f[3]! }, 'task', id));
      expect(next.map((t) => [t.groupIndex, t.admitVersion])).toEqual([[4, 1], [5, 1]]);

      const b1 = await rc.nextBatchGroups(1);
      expect(b1.map((g) => g.index)).toEqual([2, 3]);
      expect(b1.map((g) => g.staleness)).toEqual([1, 1]);

      const left = await rc.stop();
      // Groups 4 and 5 were running: withdrawn from the stream and listed as cancelled for workers.
      expect(left.aborted.map((g) => g.index)).toEqual([4, 5]);
      expect(rr.stats().cancelled).toBe(2);
      await until('withdrawn', async () => (await r.xlen(keys.tasks)) === 0 && (await r.scard(keys.cancelled)) === 2);
      await rr.close();
      expect(await r.get(keys.done)).toBe('1');
    } finally {
      await rc.stop();
      await rr.close();
    }
  }, 30_000);

  it('a dead worker\'s tasks are taken over after visibilityMs; a late second result of a task is dropped', async () => {
    const key = uniqueKey('reclaim');
    const keys = runKeys(key);
    const rr = await open(key);
    const rc = new RolloutController<{ n: number }>({ config: { batchSize: 1, groupSize: 2 }, source: counter(), workflow: rr.workflow, engine: rr.engine });
    let live: RolloutWorker<{ n: number }> | null = null;
    try {
      rc.start();
      await until('2 tasks', () => rr.stats().tasksSent === 2);
      // 'dead' takes both runs of the group and goes silent.
      const taken = await readGroup(r, keys.tasks, WORKERS_GROUP, 'dead', 10, 100);
      // Redis counts a task's idle time from this delivery to 'dead'.
      const t0 = Date.now();
      expect(taken).toHaveLength(2);
      const [a, b] = taken.map((e) => parseMessage<TaskMessage>(e.fields, 'task', e.id));
      const ran: string[] = [];
      const workflow: RolloutWorkflow<{ n: number }> = async (_item, ctx) => {
        ran.push(`${ctx.groupId}/${ctx.member}`);
        await sleep(400);
        return traj(ctx.groupId, 10 + ctx.member, 'live');
      };
      live = await RolloutWorker.open({ url: redis.url, key, name: 'live', workflow, engine: fakeEngine(), concurrency: 4, visibilityMs: 300 });
      const running = live.run();
      // The live worker takes both over once they have been idle 300 ms (not before, however slowly it started).
      await until('taken over', async () => (await pending(r, keys.tasks, WORKERS_GROUP, { consumer: 'live' })).length === 2);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      const owned = await pending(r, keys.tasks, WORKERS_GROUP);
      expect(owned.map((p) => [p.consumer, p.deliveries])).toEqual([['live', 2], ['live', 2]]);
      // 'dead' was only slow: its result of task a arrives first (while live re-runs a) and wins.
      await xadd(r, keys.results, resultFields({ taskId: a!.taskId, worker: 'dead', ok: true, trajectories: [traj(a!.groupId, 99, 'dead')], deliveries: 1, seconds: 0 }));
      const [g] = await rc.nextBatchGroups(0);
      expect(g!.trajectories.map((t) => [t.reward, t.info.worker, t.info.deliveries])).toEqual([[99, 'dead', 1], [11, 'live', 2]]);
      expect(g!.trajectories[1]!.info.taskId).toBe(b!.taskId);
      expect(ran.sort()).toEqual(['g0/0', 'g0/1']);
      // live's own result of a comes second: a duplicate, dropped.
      await until('duplicate counted', () => rr.stats().duplicates === 1);
      expect(rr.stats()).toMatchObject({ results: 2, duplicates: 1, redelivered: 1, byWorker: { dead: 1, live: 1 } });
      // Everything acknowledged: nobody holds a pending task.
      await until('acknowledged', async () => (await pending(r, keys.tasks, WORKERS_GROUP)).length === 0);
    } finally {
      live?.stop();
      await rc.stop();
      await rr.close();
    }
  }, 30_000);

  it('a workflow error on a worker comes back as a failure and the controller retries it as a new task', async () => {
    const key = uniqueKey('retry');
    const rr = await open(key);
    const rc = new RolloutController<{ n: number }>({ config: { batchSize: 1, groupSize: 1, maxRetries: 1 }, source: counter(), workflow: rr.workflow, engine: rr.engine });
    const workflow: RolloutWorkflow<{ n: number }> = async (_item, ctx) => {
      if (ctx.attempt === 0) throw new Error('tool server down');
      return traj(ctx.groupId, 1, 'ok');
    };
    const w = await RolloutWorker.open({ url: redis.url, key, name: 'w', workflow, engine: fakeEngine(), concurrency: 2, visibilityMs: 5000 });
    const running = w.run();
    try {
      rc.start();
      const [g] = await rc.nextBatchGroups(0);
      expect(g!.trajectories[0]!.info.taskId).toMatch(/:g0\.m0\.a1$/);
      expect(rr.stats()).toMatchObject({ tasksSent: 2, results: 2, failures: 1 });
      expect(rc.metrics().totals).toMatchObject({ runErrors: 1, retries: 1 });
      expect(rc.metrics().totals.lastErrors[0]).toMatch(/worker w: tool server down/);
    } finally {
      await rc.stop();
      await rr.close(); // marks the run done: the worker exits on its next tick
      const stats = await running;
      expect(stats).toMatchObject({ started: 2, completed: 2, failed: 1 });
    }
  }, 30_000);

  it('a stopped worker hands its running task back at once; a fresh worker loads the published weights first', async () => {
    const key = uniqueKey('release');
    const keys = runKeys(key);
    const rr = await open(key);
    const rc = new RolloutController<{ n: number }>({ config: { batchSize: 1, groupSize: 1 }, source: counter(), workflow: rr.workflow, engine: rr.engine });
    const seen1: number[] = [];
    const hang: RolloutWorkflow<{ n: number }> = (_item, ctx) => {
      seen1.push(ctx.version);
      return new Promise((_res, rej) => ctx.signal.addEventListener('abort', () => rej(ctx.signal.reason)));
    };
    const w1 = await RolloutWorker.open({ url: redis.url, key, name: 'w1', workflow: hang, engine: fakeEngine(), concurrency: 1, visibilityMs: 10_000 });
    const run1 = w1.run();
    try {
      rr.engine.setWeights(Float32Array.from([9, 9, 9, 9]), 3);
      rc.setVersion(3);
      rc.start();
      await until('w1 runs the task', () => seen1.length === 1);
      expect(seen1).toEqual([3]); // it loaded version 3 before starting a task admitted at 3
      expect((await pending(r, keys.tasks, WORKERS_GROUP, { consumer: 'w1' })).length).toBe(1);
      w1.stop();
      expect(await run1).toMatchObject({ released: 1, completed: 0 });
      const [p] = await pending(r, keys.tasks, WORKERS_GROUP);
      expect(p!.idleMs).toBeGreaterThan(10_000); // marked long idle: reclaimable now, not in 10 s
      expect(p!.deliveries).toBe(1);
      const eng2 = fakeEngine();
      const seen: number[] = [];
      const w2 = await RolloutWorker.open({ url: redis.url, key, name: 'w2', workflow: async (_i, ctx) => (seen.push(ctx.version, ctx.admitVersion), traj(ctx.groupId, 1, 'w2')), engine: eng2, concurrency: 1, visibilityMs: 10_000 });
      const run2 = w2.run();
      const t0 = Date.now();
      const [g] = await rc.nextBatchGroups(3);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(g!.trajectories[0]!.info).toMatchObject({ worker: 'w2', deliveries: 2 });
      expect(seen).toEqual([3, 3]); // sampled with version 3, admitted at 3
      expect([...eng2.model.params]).toEqual([9, 9, 9, 9]);
      w2.stop();
      await run2;
    } finally {
      await rc.stop();
      await rr.close();
    }
  }, 30_000);
});
