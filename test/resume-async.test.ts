/**
 * Resuming an asynchronous run (η > 0) loses no finished trajectories: the rollout controller's
 * snapshot of the groups admitted but not consumed (finished ones token by token, running ones as
 * their item) survives the checkpoint's JSON, and a controller built from it trains the finished
 * groups as they were, re-runs the running ones first, and continues the source after the last
 * admitted index. End to end, a killed `agentrl train` run with η = 2, resumed twice, trains every
 * group admitted before its first checkpoint exactly once.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Trajectory } from '../src/core/types.ts';
import { TokenSource } from '../src/core/types.ts';
import type { RolloutContext } from '../src/core/workflow.ts';
import { loadCheckpoint } from '../src/engine/checkpoint.ts';
import { mixSeed } from '../src/envs/rng.ts';
import { readConfigFile } from '../src/cli/config-file.ts';
import { trainRun } from '../src/run/run.ts';
import { applyOverrides } from '../src/run/run-config.ts';
import { trajectoryFileName, type LoggedTrajectory } from '../src/run/trajectory-log.ts';
import { decodePendingGroups, encodePendingGroups, RolloutController, type PendingGroups } from '../src/train/rollout-controller.ts';
import { trialItem } from '../src/train/trial-source.ts';

// ── controller level ────────────────────────────────────────────────────────────────────────────

/** Workflow runs that finish only when the test says so (or fail when aborted). */
class Gates {
  readonly calls: { item: number; member: number; groupIndex: number; admitVersion: number }[] = [];
  /** Every trajectory a workflow returned, by `item/member`. */
  readonly returned = new Map<string, Trajectory>();
  private readonly open = new Map<string, () => void>();
  private readonly waiting = new Map<string, Promise<void>>();

  private gate(key: string): Promise<void> {
    let p = this.waiting.get(key);
    if (!p) {
      p = new Promise<void>((resolve) => this.open.set(key, resolve));
      this.waiting.set(key, p);
    }
    return p;
  }

  /** Let run `member` of `item` finish (also before it started). */
  finish(item: number, member: number): void {
    void this.gate(`${item}/${member}`);
    this.open.get(`${item}/${member}`)!();
  }

  workflow = async (item: number, ctx: RolloutContext): Promise<Trajectory> => {
    this.calls.push({ item, member: ctx.member, groupIndex: ctx.groupIndex, admitVersion: ctx.admitVersion });
    const aborted = new Promise<never>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    await Promise.race([this.gate(`${item}/${ctx.member}`), aborted]);
    const t = trajectoryOf(item, ctx.member, ctx.version, ctx.groupId);
    this.returned.set(`${item}/${ctx.member}`, t);
    return t;
  };
}

/**
 * A trajectory whose tokens are unique to (item, member, version); member 0 of item 2 has a −∞
 * behaviour logprob and a constraint mask, the two things plain JSON would corrupt.
 */
function trajectoryOf(item: number, member: number, version: number, groupId: string): Trajectory {
  const odd = item === 2 && member === 0;
  return {
    id: `${groupId}/${member}`,
    groupId,
    samples: [{
      seq: {
        ids: [5, 100 + item, 200 + member],
        logprobs: [0, -0.125 * (item + 1), odd ? -Infinity : -0.5 - member / 16],
        versions: [-1, version, version],
        mask: [0, 1, 1],
        source: [TokenSource.prompt, TokenSource.model, TokenSource.model],
        ...(odd ? { constraintMasks: [null, Uint8Array.from([1, 0, 1, 1]), null] } : {}),
      },
      reward: member,
      keys: { item: String(item) },
    }],
    reward: member,
    info: { item, member, version },
  };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

function* from(start: number): Generator<number> {
  for (let i = start; ; i++) yield i;
}

const CONFIG = { batchSize: 2, groupSize: 2, maxConcurrent: 100, maxStaleness: 1 };

describe('RolloutController: pending groups across a checkpoint', () => {
  it('finished groups come back as they were, running ones are re-run first, the source continues after the last index', async () => {
    // The run before the checkpoint. Version 0 admits (η + 1)·B = 4 groups (items 0–3).
    const a = new Gates();
    const rcA = new RolloutController<number>({ config: CONFIG, source: from(0), workflow: a.workflow });
    rcA.start();
    await flush();
    expect(new Set(a.calls.map((c) => c.item))).toEqual(new Set([0, 1, 2, 3]));
    for (const item of [0, 1]) for (const m of [0, 1]) a.finish(item, m);
    expect((await rcA.nextBatchGroups(0)).map((g) => g.index)).toEqual([0, 1]);
    rcA.setVersion(1); // admits items 4 and 5
    await flush();
    for (const [item, m] of [[2, 0], [2, 1], [4, 0], [4, 1], [3, 0]] as const) a.finish(item, m); // 3 half done, 5 not started
    await flush();

    // The checkpoint, through the same text the run's manifest stores.
    const snapshot = rcA.pendingGroups();
    expect(snapshot.nextIndex).toBe(6);
    expect(snapshot.finished.map((g) => [g.index, g.admitVersion])).toEqual([[2, 0], [4, 1]]);
    expect(snapshot.running).toEqual([{ index: 3, item: 3 }, { index: 5, item: 5 }]);
    const saved = decodePendingGroups<number>(JSON.parse(JSON.stringify({ s: encodePendingGroups(snapshot) })).s as string);
    await rcA.stop();

    // The resumed run: version 1, source positioned at nextIndex.
    const b = new Gates();
    const rcB = new RolloutController<number>({ config: { ...CONFIG, initialVersion: 1 }, source: from(saved.nextIndex), workflow: b.workflow, pending: saved });
    rcB.start();
    await flush();
    // Only the running groups are re-run, under their own indices; no new item yet (the staleness rule is full).
    expect(b.calls.map((c) => [c.item, c.member, c.groupIndex, c.admitVersion])).toEqual([[3, 0, 3, 1], [3, 1, 3, 1], [5, 0, 5, 1], [5, 1, 5, 1]]);

    // The next batch is the finished groups, without a workflow call, token for token.
    const first = await rcB.nextBatchGroups(1);
    expect(first.map((g) => [g.index, g.item, g.admitVersion, g.staleness])).toEqual([[2, 2, 0, 1], [4, 4, 1, 0]]);
    for (const g of first) {
      g.trajectories.forEach((t, m) => {
        const original = a.returned.get(`${g.item}/${m}`)!;
        expect(t).not.toBe(original); // a copy that went through the text
        expect(t).toEqual(original);
        expect(t.samples[0]!.seq.ids).toEqual([5, 100 + g.item, 200 + m]);
      });
    }
    const odd = first[0]!.trajectories[0]!.samples[0]!.seq;
    expect(odd.logprobs[2]).toBe(-Infinity);
    expect(odd.constraintMasks![1]).toBeInstanceOf(Uint8Array);
    expect([...odd.constraintMasks![1]!]).toEqual([1, 0, 1, 1]);
    expect(b.calls.some((c) => c.item === 2 || c.item === 4)).toBe(false);

    // Version 2 opens admission: the source continues at item 6, index 6.
    rcB.setVersion(2);
    await flush();
    expect(b.calls.filter((c) => c.member === 0).map((c) => [c.item, c.groupIndex, c.admitVersion])).toEqual([[3, 3, 1], [5, 5, 1], [6, 6, 2], [7, 7, 2]]);
    for (const item of [3, 5]) for (const m of [0, 1]) b.finish(item, m);
    const second = await rcB.nextBatchGroups(2);
    expect(second.map((g) => [g.index, g.admitVersion, g.staleness])).toEqual([[3, 1, 1], [5, 1, 1]]);
    expect(second[0]!.trajectories.map((t) => t.samples[0]!.seq.versions[1])).toEqual([1, 1]); // re-run at the resumed version

    const t = rcB.metrics().totals;
    expect([t.restoredGroups, t.rerunGroups, t.admittedGroups, t.acceptedGroups, t.consumedGroups, t.stalenessViolations]).toEqual([2, 2, 4, 2, 4, 0]);
    expect(rcB.pendingGroups()).toEqual({ nextIndex: 8, finished: [], running: [{ index: 6, item: 6 }, { index: 7, item: 7 }] });
    await rcB.stop();
    expect(() => rcB.pendingGroups()).toThrow(/stopped/);
  });

  it('a finished group the batches can no longer take by its deadline is re-run; re-runs stay pending until admitted', async () => {
    const pending: PendingGroups<number> = {
      nextIndex: 10,
      finished: [
        { index: 7, item: 7, admitVersion: 3, trajectories: [trajectoryOf(7, 0, 3, 'g7'), trajectoryOf(7, 1, 3, 'g7')] }, // deadline 4 < 5
        { index: 8, item: 8, admitVersion: 4, trajectories: [trajectoryOf(8, 0, 4, 'g8'), trajectoryOf(8, 1, 4, 'g8')] },
      ],
      running: [{ index: 9, item: 9 }],
    };
    // maxConcurrent 2 runs: one group at a time, so re-run 9 waits in the queue behind re-run 7.
    const g = new Gates();
    const rc = new RolloutController<number>({ config: { ...CONFIG, maxConcurrent: 2, initialVersion: 5 }, source: from(10), workflow: g.workflow, pending });
    rc.start();
    await flush();
    expect(g.calls.map((c) => [c.item, c.groupIndex, c.admitVersion])).toEqual([[7, 7, 5], [7, 7, 5]]);
    expect(rc.pendingGroups()).toEqual({ nextIndex: 10, finished: [pending.finished[1]], running: [{ index: 7, item: 7 }, { index: 9, item: 9 }] });
    for (const m of [0, 1]) g.finish(7, m);
    const batch = await rc.nextBatchGroups(5);
    expect(batch.map((x) => [x.index, x.admitVersion, x.staleness])).toEqual([[8, 4, 1], [7, 5, 0]]);
    expect(batch[0]!.trajectories).toEqual(pending.finished[1]!.trajectories);
    expect(batch[1]!.trajectories[0]!.samples[0]!.seq.versions[1]).toBe(5);
    const t = rc.metrics().totals;
    expect([t.restoredGroups, t.rerunGroups, t.admittedGroups, t.stalenessViolations]).toEqual([1, 2, 2, 0]);
    await rc.stop();
  });

  it('refuses pending groups that no controller could have exported, naming the problem', () => {
    const make = (pending: PendingGroups<number>, initialVersion = 2) => () => new RolloutController<number>({ config: { ...CONFIG, initialVersion }, source: from(0), workflow: new Gates().workflow, pending });
    const fin = (index: number, admitVersion = 1) => ({ index, item: index, admitVersion, trajectories: [trajectoryOf(index, 0, admitVersion, `g${index}`)] });
    expect(make({ nextIndex: 3, finished: [fin(1)], running: [{ index: 1, item: 1 }] })).toThrow(/index 1 appears twice/);
    expect(make({ nextIndex: 3, finished: [], running: [{ index: 3, item: 3 }] })).toThrow(/index 3 is not an integer in \[0, nextIndex 3\)/);
    expect(make({ nextIndex: 3, finished: [fin(1, 3)], running: [] })).toThrow(/admit version 3.*initialVersion 2/);
    expect(make({ nextIndex: 3, finished: [{ ...fin(1), trajectories: [] }], running: [] })).toThrow(/group 1: .*empty list/);
    expect(() => decodePendingGroups('{"nextIndex":1,"finished":[{"index":0}],"running":[]}')).toThrow(/finished\.0\.admitVersion/);
  });
});

// ── end to end: agentrl train, η = 2, killed twice ─────────────────────────────────────────────

const TINY = { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 };
const STEPS = 6;
const asyncBandit = () =>
  applyOverrides(readConfigFile('examples/configs/bandit-meta-rl.yaml'), [
    `trainer.steps=${STEPS}`, 'trainer.batchSize=4', 'trainer.groupSize=4', 'trainer.maxStaleness=2', 'checkpointEvery=2', 'eval.trials=0',
    'log.trajectories.every=1', 'log.trajectories.perStep=64', `model=${JSON.stringify(TINY)}`,
  ]);

interface Saved {
  version: number;
  admittedGroups: number;
  pending: PendingGroups<{ opponent: string; seed: number }>;
}

async function savedLoop(out: string): Promise<Saved> {
  const ck = await loadCheckpoint(join(out, 'checkpoint'));
  const loop = (ck.trainerState as { loop: { version: number; admittedGroups: number; pendingGroups?: string } }).loop;
  expect(loop.pendingGroups, 'an asynchronous checkpoint holds its pending groups').toBeTypeOf('string');
  return { version: loop.version, admittedGroups: loop.admittedGroups, pending: decodePendingGroups(loop.pendingGroups!) };
}

/** The logged (= trained) trajectories of one step. */
function loggedStep(out: string, step: number): LoggedTrajectory[] {
  return readFileSync(join(out, 'trajectories', trajectoryFileName(step)), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LoggedTrajectory);
}

const indexOf = (groupId: string) => Number(/^g(\d+)$/.exec(groupId)![1]);

describe('agentrl train --resume with η > 0', () => {
  it('trains every group admitted before the checkpoint exactly once; saved finished groups token for token', async () => {
    const out = mkdtempSync(join(tmpdir(), 'agentrl-resume-async-'));
    const cfg = asyncBandit();

    // Killed after step 3: the checkpoint is at step 2; step 3 (index 2) is replayed.
    expect((await trainRun(cfg, { out, stopAfter: 3 })).steps).toBe(3);
    const first = await savedLoop(out);
    expect(first.version).toBe(2);
    expect(first.pending.nextIndex).toBe(first.admittedGroups);
    expect(first.pending.finished.length + first.pending.running.length).toBeLessThanOrEqual((2 + 1) * 4);
    expect(first.pending.finished.length, 'rollouts finished while step 2 trained').toBeGreaterThan(0);

    // Killed again after two more steps (checkpoint at step 4), then run to the end.
    expect((await trainRun(cfg, { out, resume: true, stopAfter: 2 })).steps).toBe(4);
    const second = await savedLoop(out);
    expect(second.version).toBe(4);
    expect(second.admittedGroups).toBeGreaterThan(first.admittedGroups);
    const end = await trainRun(cfg, { out, resume: true });
    expect(end.steps).toBe(STEPS);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { version: number; maxStaleness: number });
    expect(metrics.map((m) => m.version)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(metrics.every((m) => m.maxStaleness <= 2)).toBe(true);

    // What the finished run trained on: steps 0–1 of the first part, 2–3 of the second, 4–5 of the third.
    const steps = Array.from({ length: STEPS }, (_, s) => loggedStep(out, s));
    const trainedAt = new Map<number, number>();
    const cfgSeed = mixSeed(0, 0x50c);
    for (const [s, trajs] of steps.entries()) {
      expect(trajs).toHaveLength(16);
      for (const index of new Set(trajs.map((t) => indexOf(t.groupId)))) {
        expect(trainedAt.has(index), `group ${index} trained at steps ${trainedAt.get(index)} and ${s}`).toBe(false);
        trainedAt.set(index, s);
      }
      // Each group is the source's item of its index (trajectory ids are g<index>/<seed>).
      for (const t of trajs) expect(t.id).toBe(`${t.groupId}/${trialItem(cfgSeed, indexOf(t.groupId), [{ name: 'none', weight: 1 }]).seed}`);
    }
    for (let i = 0; i < first.admittedGroups; i++) expect(trainedAt.has(i), `group ${i}, admitted before the first checkpoint, was never trained`).toBe(true);
    // No index skipped: every group the whole run admitted was trained once or is pending at its end.
    const last = await savedLoop(out);
    const pendingAtEnd = [...last.pending.finished, ...last.pending.running].map((g) => g.index);
    expect(pendingAtEnd.filter((i) => trainedAt.has(i))).toEqual([]);
    expect([...trainedAt.keys(), ...pendingAtEnd].sort((x, y) => x - y)).toEqual(Array.from({ length: last.admittedGroups }, (_, i) => i));

    // Finished groups of the checkpoint: trained after it, exactly the saved tokens.
    const after = steps.slice(2).flat();
    for (const g of first.pending.finished) {
      expect(trainedAt.get(g.index)).toBeGreaterThanOrEqual(2);
      const logged = after.filter((t) => t.groupId === `g${g.index}`);
      expect(logged.map((t) => t.id)).toEqual(g.trajectories.map((t) => t.id));
      logged.forEach((t, j) => {
        const saved = g.trajectories[j]!.samples;
        expect(t.samples.map((s) => s.tokens.ids)).toEqual(saved.map((s) => s.seq.ids));
        expect(t.samples.map((s) => s.tokens.logprobs)).toEqual(saved.map((s) => s.seq.logprobs.map((x) => (Number.isFinite(x) ? x : 0))));
        expect(t.samples.map((s) => s.tokens.versions)).toEqual(saved.map((s) => s.seq.versions));
        expect(Math.max(...t.samples.flatMap((s) => s.tokens.versions))).toBeLessThanOrEqual(first.version);
      });
    }
    // Running groups of the checkpoint: re-run from scratch by the resumed run (sampled at version ≥ 2).
    for (const g of first.pending.running) {
      const logged = after.filter((t) => t.groupId === `g${g.index}`);
      expect(logged).toHaveLength(4);
      for (const t of logged) {
        const policy = t.samples.flatMap((s) => s.tokens.versions.filter((v, k) => s.tokens.source[k] === TokenSource.model && v >= 0));
        expect(policy.length).toBeGreaterThan(0);
        expect(Math.min(...policy)).toBeGreaterThanOrEqual(first.version);
      }
    }
    expect(existsSync(join(out, 'checkpoint', 'manifest.json'))).toBe(true);
  }, 120_000);
});
