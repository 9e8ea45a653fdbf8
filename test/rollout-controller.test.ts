import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Trajectory } from '../src/core/types.ts';
import { TokenSource } from '../src/core/types.ts';
import {
  RolloutController,
  RolloutSourceExhaustedError,
  parseRolloutControllerConfig,
  type ConsumedGroup,
  type RolloutControllerConfigInput,
} from '../src/train/rollout-controller.ts';
import type { RolloutContext, RolloutWorkflow } from '../src/core/workflow.ts';
import {
  addTokenStaleness,
  admissionCapacity,
  fifoBatchIndex,
  histogramStats,
  pickBatch,
  stalenessCapacity,
} from '../src/train/staleness.ts';

// ── a deterministic simulated clock ─────────────────────────────────────────────────────────────
// Rollouts "take time" by awaiting clock.sleep(ms). The driver advances virtual time only when every
// promise chain is idle (after setImmediate, the microtask queue is empty), firing one event at a
// time in (time, insertion) order. So a run is exactly reproducible, fast, and a deadlock (the
// trainer waits and nothing is pending) is detected instead of hanging.
class SimClock {
  now = 0;
  private events: { t: number; seq: number; fire: () => void }[] = [];
  private seq = 0;
  private fired = 0;

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('aborted'));
      this.events.push({ t: this.now + ms, seq: this.seq++, fire: resolve });
      signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
    });
  }

  async run<T>(main: () => Promise<T>): Promise<T> {
    let done = false;
    let value: T | undefined;
    let error: unknown;
    let failed = false;
    main().then(
      (v) => ((done = true), (value = v)),
      (e) => ((done = true), (failed = true), (error = e)),
    );
    for (;;) {
      await new Promise((r) => setImmediate(r));
      if (done) break;
      if (this.events.length === 0) throw new Error(`deadlock at t=${this.now}: the trainer waits and no rollout is pending`);
      if (++this.fired > 100_000) throw new Error('runaway simulation: 100k events without the trainer finishing');
      let best = 0;
      for (let i = 1; i < this.events.length; i++) {
        const a = this.events[i]!;
        const b = this.events[best]!;
        if (a.t < b.t || (a.t === b.t && a.seq < b.seq)) best = i;
      }
      const ev = this.events.splice(best, 1)[0]!;
      this.now = Math.max(this.now, ev.t);
      ev.fire();
    }
    if (failed) throw error;
    return value as T;
  }
}

/** A trajectory of one sample with one policy token sampled at `version`. */
function makeTrajectory(item: number, member: number, version: number, reward: number): Trajectory {
  return {
    id: `i${item}m${member}`,
    groupId: `i${item}`,
    samples: [
      {
        seq: { ids: [1, 2], logprobs: [0, -0.5], versions: [-1, version], mask: [0, 1], source: [TokenSource.prompt, TokenSource.model] },
        reward,
        keys: { item: String(item) },
      },
    ],
    reward,
    info: { item, member, version },
  };
}

function* naturals(): Generator<number> {
  for (let i = 0; ; i++) yield i;
}

type Mode = 'ok' | 'filtered' | 'transient' | 'permanent';

interface Scenario {
  batchSize: number;
  groupSize: number;
  maxConcurrent: number;
  maxStaleness: number;
  maxRetries: number;
  steps: number;
  trainTime: number;
  useSetVersion: boolean;
  delays: number[];
  modes: Mode[];
}

interface Outcome {
  batches: { version: number; groups: ConsumedGroup<number>[] }[];
  /** Items in the order their first run started, with the trainer version at that moment. */
  admissions: { item: number; version: number }[];
  left: { ready: number[]; aborted: number[] };
  maxRunningSeen: number;
  rc: RolloutController<number>;
}

/** Run a fake trainer loop for `steps` batches over the simulated clock, then stop. */
async function simulate(s: Scenario): Promise<Outcome> {
  const clock = new SimClock();
  let trainerVersion = 0;
  let running = 0;
  let maxRunningSeen = 0;
  const admissions: Outcome['admissions'] = [];
  const mode = (item: number) => s.modes[item % s.modes.length]!;
  const workflow: RolloutWorkflow<number> = async (item, ctx) => {
    if (ctx.member === 0 && ctx.attempt === 0) admissions.push({ item, version: trainerVersion });
    running++;
    maxRunningSeen = Math.max(maxRunningSeen, running);
    try {
      await clock.sleep(s.delays[(item * 7 + ctx.member * 3 + ctx.attempt) % s.delays.length]!, ctx.signal);
    } finally {
      running--;
    }
    const m = mode(item);
    if (m === 'permanent' && ctx.member === 0) throw new Error(`item ${item} always fails`);
    if (m === 'transient' && ctx.member === 0 && ctx.attempt === 0) throw new Error(`item ${item} fails once`);
    return makeTrajectory(item, ctx.member, ctx.version, m === 'filtered' ? 1 : ctx.member);
  };
  const rc = new RolloutController<number>({
    config: {
      batchSize: s.batchSize,
      groupSize: s.groupSize,
      maxConcurrent: s.maxConcurrent,
      maxStaleness: s.maxStaleness,
      maxRetries: s.maxRetries,
      dynamicFilter: true,
    },
    source: naturals(),
    workflow,
    now: () => clock.now,
  });
  return clock.run(async () => {
    const batches: Outcome['batches'] = [];
    rc.start();
    for (let i = 0; i < s.steps; i++) {
      trainerVersion = i;
      batches.push({ version: i, groups: await rc.nextBatchGroups(i) });
      await clock.sleep(s.trainTime);
      if (s.useSetVersion) {
        trainerVersion = i + 1;
        rc.setVersion(i + 1);
      }
    }
    const left = await rc.stop();
    return { batches, admissions, left: { ready: left.ready.map((g) => g.item), aborted: left.aborted.map((g) => g.item) }, maxRunningSeen, rc };
  });
}

const scenarioArb = (opts: { equalDelays?: boolean; modes?: Mode[]; maxStaleness?: fc.Arbitrary<number> } = {}) =>
  fc.record({
    batchSize: fc.integer({ min: 1, max: 4 }),
    groupSize: fc.integer({ min: 1, max: 3 }),
    maxConcurrent: fc.integer({ min: 1, max: 12 }),
    maxStaleness: opts.maxStaleness ?? fc.integer({ min: 0, max: 4 }),
    maxRetries: fc.integer({ min: 0, max: 2 }),
    steps: fc.integer({ min: 1, max: 7 }),
    trainTime: fc.integer({ min: 0, max: 8 }),
    useSetVersion: fc.boolean(),
    delays: opts.equalDelays
      ? fc.integer({ min: 0, max: 5 }).map((d) => [d])
      : fc.array(fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 10, max: 60 })), { minLength: 1, maxLength: 24 }),
    // Always some kept work (an all-dropped source is covered by the maxConsecutiveDrops test).
    modes: fc
      .array(fc.constantFrom<Mode>(...(opts.modes ?? ['ok', 'ok', 'filtered', 'transient', 'permanent'])), { minLength: 0, maxLength: 11 })
      .chain((m) => fc.integer({ min: 0, max: m.length }).map((at) => [...m.slice(0, at), 'ok' as Mode, ...m.slice(at)])),
  });

/** Whether a group of `item` is dropped when nothing interrupts it. */
function dropped(s: Scenario, item: number): boolean {
  const m = s.modes[item % s.modes.length]!;
  return (m === 'filtered' && s.groupSize >= 2) || m === 'permanent' || (m === 'transient' && s.maxRetries === 0);
}

describe('RolloutController: property test over random schedules (simulated clock)', () => {
  it('staleness ≤ η, full batches, FIFO within batches, no group lost or duplicated, concurrency respected', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(), async (s) => {
        const out = await simulate(s);
        const admitVersion = new Map(out.admissions.map((a) => [a.item, a.version]));
        // Items are admitted in source order, each once.
        expect(out.admissions.map((a) => a.item)).toEqual(out.admissions.map((_, i) => i));
        expect(out.maxRunningSeen).toBeLessThanOrEqual(s.maxConcurrent);

        const consumed: number[] = [];
        for (const b of out.batches) {
          expect(b.groups).toHaveLength(s.batchSize);
          const idx = b.groups.map((g) => g.index);
          expect(idx).toEqual([...idx].sort((x, y) => x - y)); // oldest first
          for (const g of b.groups) {
            consumed.push(g.item);
            const started = admitVersion.get(g.item)!;
            expect(g.admitVersion).toBe(started);
            expect(b.version - started).toBe(g.staleness);
            expect(g.staleness).toBeGreaterThanOrEqual(0);
            expect(g.staleness).toBeLessThanOrEqual(s.maxStaleness);
            expect(dropped(s, g.item)).toBe(false);
            expect(g.trajectories.map((t) => t.info.member)).toEqual([...Array(s.groupSize).keys()]);
            for (const t of g.trajectories) {
              expect(t.info.item).toBe(g.item);
              // Runs start no earlier than admission and no later than consumption.
              expect(t.info.version as number).toBeGreaterThanOrEqual(started);
              expect(t.info.version as number).toBeLessThanOrEqual(b.version);
            }
          }
        }
        // Every admitted group is consumed, dropped (filtered/failed), finished-but-unconsumed, or aborted — exactly one.
        const fate = new Map<number, string>();
        const mark = (item: number, what: string) => {
          expect(fate.get(item), `item ${item} is both ${fate.get(item)} and ${what}`).toBeUndefined();
          fate.set(item, what);
        };
        consumed.forEach((i) => mark(i, 'consumed'));
        out.left.ready.forEach((i) => mark(i, 'ready'));
        out.left.aborted.forEach((i) => mark(i, 'aborted'));
        let droppedCount = 0;
        for (const { item } of out.admissions) {
          if (fate.has(item)) continue;
          expect(dropped(s, item), `item ${item} vanished`).toBe(true);
          droppedCount++;
        }
        for (const i of out.left.ready) expect(dropped(s, i)).toBe(false);
        const t = out.rc.metrics().totals;
        expect(t.filteredGroups + t.failedGroups).toBe(droppedCount);
        expect(t.admittedGroups).toBe(out.admissions.length);
        expect(t.consumedGroups).toBe(consumed.length);
        expect(t.abortedGroups).toBe(out.left.aborted.length);
        expect(t.stalenessViolations).toBe(0);
        expect(out.rc.metrics().window!.tokenStaleness).toBeDefined();
        expect(histogramStats(out.rc.metrics().window!.tokenStaleness).max).toBeLessThanOrEqual(s.maxStaleness);
      }),
      { numRuns: 150, seed: 20240601 },
    );
  });

  it('with equal completion times, groups are consumed in admission order', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb({ equalDelays: true, modes: ['ok', 'ok', 'filtered', 'permanent'] }), async (s) => {
        const out = await simulate(s);
        const order = out.batches.flatMap((b) => b.groups.map((g) => g.index));
        expect(order).toEqual([...order].sort((x, y) => x - y));
        // …and nothing admitted earlier is skipped: the consumed groups are a prefix of the kept ones.
        const kept = out.admissions.map((a) => a.item).filter((i) => !dropped(s, i));
        expect(out.batches.flatMap((b) => b.groups.map((g) => g.item))).toEqual(kept.slice(0, order.length));
      }),
      { numRuns: 100, seed: 7 },
    );
  });

  it('η = 0 reproduces the synchronous loop exactly (same items, order, versions)', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb({ modes: ['ok'], maxStaleness: fc.constant(0) }), async (s) => {
        const out = await simulate(s);
        // The plain loop: for each step, B items, each run groupSize times at version = step.
        const source = naturals();
        const expected: { version: number; groups: { item: number; trajectories: { member: number; version: number }[] }[] }[] = [];
        for (let step = 0; step < s.steps; step++) {
          const items = Array.from({ length: s.batchSize }, () => source.next().value as number);
          const groups = await Promise.all(
            items.map(async (item) => ({ item, trajectories: await Promise.all([...Array(s.groupSize).keys()].map(async (member) => ({ member, version: step }))) })),
          );
          expected.push({ version: step, groups });
        }
        const got = out.batches.map((b) => ({
          version: b.version,
          groups: b.groups.map((g) => ({ item: g.item, trajectories: g.trajectories.map((t) => ({ member: t.info.member as number, version: t.info.version as number })) })),
        }));
        expect(got).toEqual(expected);
        expect(out.batches.every((b) => b.groups.every((g) => g.staleness === 0))).toBe(true);
      }),
      { numRuns: 60, seed: 11 },
    );
  });
});

/** A small harness for hand-written schedules: per-item delay and reward functions. */
function handController(config: RolloutControllerConfigInput, delayOf: (item: number, ctx: RolloutContext) => number, clock: SimClock, behave?: (item: number, ctx: RolloutContext) => Trajectory | Trajectory[] | undefined) {
  const calls: { item: number; member: number; attempt: number; version: number }[] = [];
  const rc = new RolloutController<number>({
    config,
    source: naturals(),
    now: () => clock.now,
    workflow: async (item, ctx) => {
      calls.push({ item, member: ctx.member, attempt: ctx.attempt, version: ctx.version });
      await clock.sleep(delayOf(item, ctx), ctx.signal);
      return behave?.(item, ctx) ?? makeTrajectory(item, ctx.member, ctx.version, ctx.member);
    },
  });
  return { rc, calls };
}

describe('RolloutController: consumption beyond strict FIFO keeps the bound', () => {
  it('B = 1, η = 2: a short later rollout is consumed ahead of long ones, but overdue groups are waited for', async () => {
    // Items 0 and 1 take 100 time units; every later item takes 1. Oldest-finished-first would consume
    // 2 at version 0, 3 at version 1, and then items 0 and 1 would both be due at version 2 (one fits).
    const clock = new SimClock();
    const { rc } = handController({ batchSize: 1, maxStaleness: 2, maxConcurrent: 8 }, (item) => (item < 2 ? 100 : 1), clock);
    const consumed = await clock.run(async () => {
      rc.start();
      const out: { v: number; item: number; staleness: number }[] = [];
      for (let v = 0; v < 6; v++) {
        const [g] = await rc.nextBatchGroups(v);
        out.push({ v, item: g!.item, staleness: g!.staleness });
      }
      await rc.stop();
      return out;
    });
    expect(consumed.every((c) => c.staleness <= 2)).toBe(true);
    expect(consumed[0]!.item).toBe(2); // out of order where the slack allows it
    expect(consumed.slice(0, 4).map((c) => c.item).sort()).toEqual([0, 1, 2, 3]);
    expect(consumed.find((c) => c.item === 0)!.v).toBeLessThanOrEqual(2);
    expect(consumed.find((c) => c.item === 1)!.v).toBeLessThanOrEqual(2);
  });
});

describe('RolloutController: dynamic filtering and errors', () => {
  it('drops groups whose rewards are all equal and admits new work so batches stay full', async () => {
    const clock = new SimClock();
    const { rc, calls } = handController(
      { batchSize: 2, groupSize: 3, maxConcurrent: 6, maxStaleness: 0, dynamicFilter: true },
      () => 2,
      clock,
      (item, ctx) => makeTrajectory(item, ctx.member, ctx.version, item % 2 === 0 ? 0.5 : ctx.member),
    );
    const batches = await clock.run(async () => {
      rc.start();
      const got = [await rc.nextBatchGroups(0), await rc.nextBatchGroups(1), await rc.nextBatchGroups(2)];
      await rc.stop();
      return got;
    });
    expect(batches.map((b) => b.map((g) => g.item))).toEqual([[1, 3], [5, 7], [9, 11]]);
    expect(batches.flat().every((g) => g.trajectories.length === 3 && g.staleness === 0)).toBe(true);
    const t = rc.metrics().totals;
    expect(t.filteredGroups).toBe(6);
    expect(t.acceptedGroups).toBe(6);
    // Re-admission of filtered work happened at the same version (η = 0 still holds).
    expect(calls.filter((c) => c.item === 2).every((c) => c.version === 0)).toBe(true);
  });

  it('workflow errors are retried, counted and reported, never thrown to the trainer', async () => {
    const clock = new SimClock();
    const attempts = new Map<string, number>();
    const rc = new RolloutController<number>({
      config: { batchSize: 2, groupSize: 2, maxConcurrent: 4, maxStaleness: 1, maxRetries: 1 },
      source: naturals(),
      now: () => clock.now,
      workflow: async (item, ctx) => {
        const key = `${item}/${ctx.member}`;
        attempts.set(key, (attempts.get(key) ?? 0) + 1);
        await clock.sleep(1, ctx.signal);
        if (item === 1 && ctx.member === 1) throw new Error('tool server down');
        if (item === 2 && ctx.member === 0 && ctx.attempt === 0) throw new Error('transient timeout');
        if (item === 4) return [] as Trajectory[]; // not a trajectory: an error too
        return makeTrajectory(item, ctx.member, ctx.version, ctx.member);
      },
    });
    const batches = await clock.run(async () => {
      rc.start();
      const got = [await rc.nextBatchGroups(0), await rc.nextBatchGroups(1)];
      await rc.stop();
      return got;
    });
    expect(batches.map((b) => b.map((g) => g.item))).toEqual([[0, 2], [3, 5]]);
    expect(attempts.get('1/1')).toBe(2); // one try + maxRetries = 1
    expect(attempts.get('2/0')).toBe(2);
    const t = rc.metrics().totals;
    expect(t.failedGroups).toBe(2); // items 1 and 4
    // Item 1 member 1: two tries. Item 2 member 0: one failure, then success. Item 4: both members fail
    // and are retried; member 0's retry fails first, which fails the group and aborts member 1's retry.
    expect(t.runErrors).toBe(2 + 1 + 3);
    expect(t.retries).toBe(1 + 1 + 2);
    expect(t.lastErrors.some((e) => e.includes('tool server down'))).toBe(true);
    expect(t.lastErrors.some((e) => e.includes('empty list'))).toBe(true);
  });

  it('gives up with a clear error when every group is dropped', async () => {
    const clock = new SimClock();
    const rc = new RolloutController<number>({
      config: { batchSize: 2, groupSize: 2, maxConcurrent: 4, maxStaleness: 1, maxConsecutiveDrops: 5 },
      source: naturals(),
      now: () => clock.now,
      workflow: async (_item, ctx) => {
        await clock.sleep(1, ctx.signal);
        throw new Error('reward server unreachable');
      },
    });
    const error = await clock.run(async () => {
      rc.start();
      const e = await rc.nextBatch(0).catch((x: Error) => x);
      await rc.stop();
      return e;
    });
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/5 groups in a row were dropped.*reward server unreachable.*maxConsecutiveDrops/);
    expect(rc.metrics().totals.failedGroups).toBe(5);
  });

  it('a workflow may return several trajectories per run; the group holds them all in member order', async () => {
    const clock = new SimClock();
    const { rc } = handController({ batchSize: 1, groupSize: 2 }, () => 1, clock, (item, ctx) => [
      makeTrajectory(item, ctx.member, ctx.version, 0),
      makeTrajectory(item, ctx.member, ctx.version, 1),
    ]);
    const [g] = await clock.run(async () => {
      rc.start();
      const b = await rc.nextBatchGroups(0);
      await rc.stop();
      return b;
    });
    expect(g!.trajectories.map((t) => t.info.member)).toEqual([0, 0, 1, 1]);
  });
});

describe('RolloutController: metrics, lifecycle and misuse', () => {
  it('reports busy fraction, mean running, throughput and staleness per batch window', async () => {
    // B = 1 group of 2 runs, each 10 units; training takes 10 units; η = 0.
    const clock = new SimClock();
    const { rc } = handController({ batchSize: 1, groupSize: 2, maxConcurrent: 2 }, () => 10, clock);
    const windows = await clock.run(async () => {
      rc.start();
      const w = [];
      for (let v = 0; v < 3; v++) {
        await rc.nextBatch(v);
        w.push(rc.metrics().window!);
        await clock.sleep(10);
      }
      await rc.stop();
      return w;
    });
    // Window 0: t 0→10, both runs busy the whole time.
    expect(windows[0]!.seconds).toBeCloseTo(0.01, 12);
    expect(windows[0]!.busyFraction).toBe(1);
    expect(windows[0]!.meanRunning).toBe(2);
    expect(windows[0]!.trajectoriesPerSecond).toBeCloseTo(200, 9);
    expect(windows[0]!.tokensPerSecond).toBeCloseTo(200, 9);
    // Window 1: t 10→30, generation idle while training (10 units), then busy (10 units).
    expect(windows[1]!.seconds).toBeCloseTo(0.02, 12);
    expect(windows[1]!.busyFraction).toBeCloseTo(0.5, 12);
    expect(windows[1]!.meanRunning).toBeCloseTo(1, 12);
    expect(windows[1]!.waitSeconds).toBeCloseTo(0.01, 12);
    expect(windows[1]!.staleness).toEqual({ 0: 1 });
    expect(windows[1]!.tokenStaleness).toEqual({ 0: 2 });
    expect(rc.metrics().totals.staleness).toEqual({ 0: 3 });
  });

  it('with η > 0 generation overlaps training: the trainer waits less than with η = 0', async () => {
    const waits: number[] = [];
    for (const eta of [0, 2]) {
      const clock = new SimClock();
      const { rc } = handController({ batchSize: 2, maxConcurrent: 4, maxStaleness: eta }, () => 10, clock);
      const total = await clock.run(async () => {
        rc.start();
        let wait = 0;
        for (let v = 0; v < 5; v++) {
          await rc.nextBatch(v);
          wait += rc.metrics().window!.waitSeconds;
          await clock.sleep(10);
        }
        await rc.stop();
        return wait;
      });
      waits.push(total);
    }
    expect(waits[0]).toBeCloseTo(0.05, 12); // synchronous: every step waits 10 units
    expect(waits[1]).toBeLessThan(waits[0]! / 2);
  });

  it('stop() aborts running rollouts, rejects a waiting nextBatch and returns leftovers', async () => {
    const clock = new SimClock();
    const signals: AbortSignal[] = [];
    const rc = new RolloutController<number>({
      config: { batchSize: 2, maxConcurrent: 3, maxStaleness: 1 },
      source: naturals(),
      now: () => clock.now,
      workflow: async (item, ctx) => {
        signals.push(ctx.signal);
        await clock.sleep(item === 0 ? 5 : 1000, ctx.signal);
        return makeTrajectory(item, 0, ctx.version, 0);
      },
    });
    const result = await clock.run(async () => {
      rc.start();
      const pending = rc.nextBatch(0);
      const caught = pending.catch((e: Error) => e.message);
      await clock.sleep(10);
      const left = await rc.stop();
      return { left, message: await caught };
    });
    expect(result.message).toMatch(/stopped while nextBatch was waiting/);
    expect(result.left.ready.map((g) => g.item)).toEqual([0]);
    // Item 0 finished at t = 5 and freed a slot, so item 3 was admitted (η = 1 allows 4 groups).
    expect(result.left.aborted.map((g) => g.item)).toEqual([1, 2, 3]);
    expect(signals[1]!.aborted && signals[2]!.aborted).toBe(true);
    await expect(rc.nextBatch(1)).rejects.toThrow(/stopped/);
  });

  it('a finite source ends with RolloutSourceExhaustedError; stop() returns the tail', async () => {
    const clock = new SimClock();
    const rc = new RolloutController<number>({
      config: { batchSize: 2, maxStaleness: 1 },
      source: [10, 11, 12, 13, 14],
      now: () => clock.now,
      workflow: async (item, ctx) => {
        await clock.sleep(1, ctx.signal);
        return makeTrajectory(item, 0, ctx.version, 0);
      },
    });
    const { items, error, left } = await clock.run(async () => {
      rc.start();
      const items = [(await rc.nextBatchGroups(0)).map((g) => g.item), (await rc.nextBatchGroups(1)).map((g) => g.item)];
      const error = await rc.nextBatch(2).catch((e: unknown) => e);
      return { items, error, left: await rc.stop() };
    });
    expect(items).toEqual([[10, 11], [12, 13]]);
    expect(error).toBeInstanceOf(RolloutSourceExhaustedError);
    expect(left.ready.map((g) => g.item)).toEqual([14]);
  });

  it('rejects misuse with errors that name the fix', async () => {
    expect(() => parseRolloutControllerConfig({ batchSize: 0 })).toThrow(/batchSize/);
    expect(() => parseRolloutControllerConfig({ batchSize: 2, maxStaleness: -1 })).toThrow(/maxStaleness/);
    expect(() => parseRolloutControllerConfig({ batchSize: 2, shuffle: true })).toThrow(/shuffle|Unrecognized/);
    expect(parseRolloutControllerConfig({ batchSize: 3, groupSize: 4 }).maxConcurrent).toBe(12);
    const clock = new SimClock();
    const { rc } = handController({ batchSize: 1 }, () => 1, clock);
    await expect(rc.nextBatch(0)).rejects.toThrow(/start\(\) first/);
    await clock.run(async () => {
      rc.start();
      await rc.nextBatch(0);
      await expect(rc.nextBatch(0)).rejects.toThrow(/one batch per version/);
      const first = rc.nextBatch(1);
      await expect(rc.nextBatch(2)).rejects.toThrow(/still waiting/);
      await first;
      expect(() => rc.setVersion(0)).toThrow(/≥ the current version 1/);
      await rc.stop();
    });
    expect(() => rc.start()).toThrow(/already started/);
  });

  it('works with real timers and an engine version (smoke test, a few ms)', async () => {
    let engineVersion = 0;
    const rc = new RolloutController<number>({
      config: { batchSize: 3, groupSize: 2, maxConcurrent: 5, maxStaleness: 2, dynamicFilter: true },
      source: naturals(),
      engine: { version: () => engineVersion },
      workflow: async (item, ctx) => {
        await new Promise((r) => setTimeout(r, (item * 5 + ctx.member) % 4));
        return makeTrajectory(item, ctx.member, ctx.version, item % 3 === 0 ? 1 : ctx.member);
      },
    });
    rc.start();
    for (let v = 0; v < 6; v++) {
      const batch = await rc.nextBatchGroups(v);
      expect(batch).toHaveLength(3);
      for (const g of batch) {
        expect(g.staleness).toBeLessThanOrEqual(2);
        expect(g.item % 3).not.toBe(0);
      }
      engineVersion = v + 1;
      rc.setVersion(v + 1);
    }
    await rc.stop();
    const m = rc.metrics();
    expect(m.totals.stalenessViolations).toBe(0);
    expect(m.window!.busyFraction).toBeGreaterThan(0);
    expect(m.window!.busyFraction).toBeLessThanOrEqual(1);
    expect(m.window!.meanRunning).toBeLessThanOrEqual(5);
  });
});

describe('staleness rule (pure functions)', () => {
  it('capacity = min(maxConcurrent − running, (η + version + 1)·B − (accepted + running))', () => {
    expect(stalenessCapacity({ accepted: 0, running: 0, version: 0 }, { batchSize: 4, maxStaleness: 0 })).toBe(4);
    expect(stalenessCapacity({ accepted: 3, running: 1, version: 0 }, { batchSize: 4, maxStaleness: 0 })).toBe(0);
    expect(stalenessCapacity({ accepted: 4, running: 0, version: 1 }, { batchSize: 4, maxStaleness: 0 })).toBe(4);
    expect(stalenessCapacity({ accepted: 10, running: 5, version: 2 }, { batchSize: 4, maxStaleness: 2 })).toBe(5);
    expect(stalenessCapacity({ accepted: 30, running: 5, version: 2 }, { batchSize: 4, maxStaleness: 2 })).toBe(0);
    expect(admissionCapacity({ accepted: 10, running: 5, version: 2 }, { batchSize: 4, maxStaleness: 2, maxConcurrent: 8 })).toBe(3);
    expect(admissionCapacity({ accepted: 0, running: 9, version: 0 }, { batchSize: 4, maxStaleness: 4, maxConcurrent: 8 })).toBe(0);
  });

  it('the N-th admitted group fills batch ⌊(N−1)/B⌋, which the rule keeps ≤ version + η', () => {
    expect([1, 4, 5, 8, 9].map((n) => fifoBatchIndex(n, 4))).toEqual([0, 0, 1, 1, 2]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 200 }), (B, eta, version, used) => {
        const cap = stalenessCapacity({ accepted: used, running: 0, version }, { batchSize: B, maxStaleness: eta });
        // Admitting every group the rule allows: the last one is number used + cap, and one more
        // would land in batch version + η + 1.
        if (cap > 0) {
          expect(fifoBatchIndex(used + cap, B)).toBeLessThanOrEqual(version + eta);
          expect(fifoBatchIndex(used + cap + 1, B)).toBe(version + eta + 1);
        }
      }),
    );
  });

  it('pickBatch takes the B oldest finished groups unless that would make an older group miss its deadline', () => {
    const g = (deadline: number, ready: boolean) => ({ deadline, ready });
    // Slack: two running groups due at 2, one finished at 2, version 0, B = 1 → may take it.
    expect(pickBatch([g(2, false), g(2, false), g(2, true)], 0, 1)).toEqual([2]);
    // No slack: at version 1 the two groups due by 2 need batches 1 and 2, so the ready one (due 3) must wait.
    expect(pickBatch([g(2, false), g(2, false), g(3, true)], 1, 1)).toBeNull();
    // The B oldest are ready: always allowed.
    expect(pickBatch([g(0, true), g(0, true), g(1, false)], 0, 2)).toEqual([0, 1]);
    // Not enough finished groups.
    expect(pickBatch([g(0, true), g(0, false)], 0, 2)).toBeNull();
    // An overdue group (deadline = version) still running must be waited for …
    expect(pickBatch([g(3, false), g(3, true), g(4, true)], 3, 2)).toBeNull();
    // … while a later-deadline group may overtake a running one when the slack allows.
    expect(pickBatch([g(3, true), g(4, false), g(4, true), g(4, true)], 3, 2)).toEqual([0, 2]);
  });

  it('token staleness counts only policy tokens', () => {
    const h = addTokenStaleness({}, { ids: [1, 2, 3, 4], logprobs: [0, 0, 0, 0], versions: [-1, 3, 5, -1], mask: [0, 1, 1, 0], source: [0, 1, 1, 2] }, 5);
    expect(h).toEqual({ 2: 1, 0: 1 });
    expect(histogramStats(h)).toEqual({ count: 2, mean: 1, max: 2 });
  });
});
