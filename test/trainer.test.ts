/**
 * The one training loop: η = 0 is exactly the synchronous loop; with overlap (made deterministic by a
 * trainer that lets generation run a fixed number of decode steps before it answers) no trained
 * token is more than η versions stale and tokens of sequences interrupted by weight updates carry the
 * version whose logprob they report; the worker trainer computes what an in-process trainer computes;
 * minibatches split by trajectory; MAGE trials train through the same loop, synchronously and not.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { selectBackend } from '../src/engine/backends.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { InProcessTrainer, type PolicyTrainer } from '../src/train/policy-trainer.ts';
import { WorkerTrainer } from '../src/train/worker-trainer.ts';
import { Trainer, parseTrainerConfig, splitMinibatches, versionSpread } from '../src/train/trainer.ts';
import { GROUP_KEY } from '../src/rl/stages.ts';
import { groupAdvantages } from '../src/rl/advantages.ts';
import type { RolloutContext } from '../src/core/workflow.ts';
import { toyToolMaxTokens, toyToolTasks, toyToolTokenizer, toyToolWorkflow, type ToyToolAgentConfigInput } from '../src/agents/toy-tool-agent.ts';
import type { Sample, Trajectory } from '../src/core/types.ts';
import { TokenSource } from '../src/core/types.ts';
import { recording } from './helpers/recording-trainer.ts';

const V = 24;
const AGENT: ToyToolAgentConfigInput = { vocabSize: V, tokensPerTurn: 3, longFraction: 0.25, shortTurns: [0, 2], longTurns: [5, 7], latencyMedianSeconds: 0, latencyP99Seconds: 0 };
/** Longer generations, no tool waits: weight updates land in the middle of generations. */
const AGENT_OVERLAP: ToyToolAgentConfigInput = { ...AGENT, tokensPerTurn: 10, longTurns: [3, 5] };
const MODEL: ModelConfigInput = { vocabSize: V, contextLength: Math.max(toyToolMaxTokens(AGENT), toyToolMaxTokens(AGENT_OVERLAP)) + 1, nLayer: 2, nHead: 2, nEmbd: 32, initStd: 0.1 };
const OPT = { lr: 3e-3, weightDecay: 0 };
const backend = selectBackend();

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

function newEngine(seed: number): BuiltinEngine {
  return new BuiltinEngine(new Transformer(MODEL, backend, seed), toyToolTokenizer(V), { maxBatch: 64, seed });
}

function inProcess(seed: number): InProcessTrainer {
  return new InProcessTrainer(new BuiltinTrainer(new Transformer(MODEL, backend, seed), OPT));
}

async function workerTrainer(seed: number): Promise<WorkerTrainer> {
  const wt = new WorkerTrainer({ model: MODEL, optimizer: OPT, seed });
  closers.push(() => wt.close());
  await wt.ready();
  return wt;
}

describe('Trainer', () => {
  it('η = 0 reproduces the synchronous loop exactly (same samples, same order, same losses, same weights)', async () => {
    const B = 3, G = 4, STEPS = 4, SEED = 11;
    const loss = { kind: 'decoupled_ppo' as const };

    // 1. The loop with η = 0 and an in-process trainer.
    const engineA = newEngine(SEED);
    const trainerA = inProcess(SEED);
    const batchesA: Sample[][] = [];
    const at = new Trainer({
      config: { steps: STEPS, batchSize: B, groupSize: G, maxStaleness: 0, loss },
      engine: engineA, trainer: trainerA, source: toyToolTasks(SEED, V), workflow: toyToolWorkflow(engineA, AGENT),
      onBatch: (s) => batchesA.push(s),
    });
    const res = await at.run();
    expect(at.config.maxConcurrent).toBe(B * G);

    // 2. An explicit synchronous loop from the same pieces.
    const engineS = newEngine(SEED);
    const trainerS = inProcess(SEED);
    const workflow = toyToolWorkflow(engineS, AGENT);
    const tasks = toyToolTasks(SEED, V);
    const lossesS: number[] = [];
    const batchesS: Sample[][] = [];
    let groupIndex = 0;
    for (let step = 0; step < STEPS; step++) {
      const items = Array.from({ length: B }, () => tasks.next().value!);
      const runs = items.flatMap((item) => {
        const gi = groupIndex++;
        return Array.from({ length: G }, (_, member) => {
          const ctx: RolloutContext = { version: step, admitVersion: step, signal: new AbortController().signal, groupIndex: gi, groupId: `g${gi}`, member, attempt: 0 };
          return workflow(item, ctx) as Promise<Trajectory>;
        });
      });
      const trajectories = await Promise.all(runs);
      const samples: Sample[] = trajectories.flatMap((t) => t.samples.map((s) => ({ ...s, ret: t.reward, keys: { ...s.keys, group: t.groupId } })));
      const { advantages } = groupAdvantages(samples.map((s) => s.reward), samples.map((s) => s.keys), { estimator: 'grpo', groupBy: ['group'] });
      samples.forEach((s, i) => (s.advantage = advantages[i]!));
      batchesS.push(samples);
      const r = await trainerS.train([samples], loss);
      lossesS.push(r.metrics.loss!);
      engineS.setWeights(r.weights, step + 1);
    }

    expect(batchesA.length).toBe(STEPS);
    for (let step = 0; step < STEPS; step++) {
      const a = batchesA[step]!, s = batchesS[step]!;
      expect(a.map((x) => x.seq.ids)).toEqual(s.map((x) => x.seq.ids));
      expect(a.map((x) => x.seq.logprobs)).toEqual(s.map((x) => x.seq.logprobs));
      expect(a.map((x) => x.seq.versions)).toEqual(s.map((x) => x.seq.versions));
      expect(a.map((x) => x.advantage)).toEqual(s.map((x) => x.advantage));
      expect(a.map((x) => x.keys[GROUP_KEY])).toEqual(s.map((x) => x.keys[GROUP_KEY]));
      // Synchronous: every token sampled by the version that trains on it.
      for (const x of a) for (let t = 0; t < x.seq.ids.length; t++) if (x.seq.source[t] === TokenSource.model) expect(x.seq.versions[t]).toBe(step);
    }
    expect(res.steps.map((m) => m.loss)).toEqual(lossesS);
    expect(res.steps.some((m) => m.loss !== 0)).toBe(true); // the batches carried signal
    expect(trainerA.trainer.model.params).toEqual(trainerS.trainer.model.params);
    expect(res.totals.maxStaleness).toBe(0);
    expect(res.totals.samples).toBe(STEPS * B * G);
  });

  it('with overlap, no trained token is more than η versions stale; interrupted tokens match their version', async () => {
    const ETA = 2, B = 2, G = 3, STEPS = 10, SEED = 5;
    const engine = newEngine(SEED);
    const inner = inProcess(SEED);
    // Deterministic overlap: the trainer answers only after generation ran 6 more decode steps (or
    // went idle), as a worker trainer would while the main thread keeps generating.
    const gated: PolicyTrainer = {
      version: () => inner.version(),
      close: () => inner.close(),
      train: async (mb, l) => {
        const r = await inner.train(mb, l);
        const start = engine.stats.decodeSteps;
        while (engine.stats.decodeSteps < start + 6 && engine.load().active + engine.load().queued > 0) await new Promise((res) => setImmediate(res));
        return r;
      },
    };
    const { trainer, weights } = recording(gated, Float32Array.from(engine.model.params));
    const seen: { version: number; samples: Sample[] }[] = [];
    let version = 0;
    const at = new Trainer({
      config: { steps: STEPS, batchSize: B, groupSize: G, maxStaleness: ETA, loss: { kind: 'decoupled_ppo' } },
      engine, trainer, source: toyToolTasks(SEED, V), workflow: toyToolWorkflow(engine, AGENT_OVERLAP),
      onBatch: (samples) => seen.push({ version: version++, samples }),
    });
    const res = await at.run();
    expect(res.steps).toHaveLength(STEPS);
    expect(engine.version()).toBe(STEPS);

    let maxTokenStaleness = 0;
    for (const { version: v, samples } of seen) {
      for (const s of samples) {
        for (let t = 0; t < s.seq.ids.length; t++) {
          if (s.seq.source[t] !== TokenSource.model) continue;
          const staleness = v - s.seq.versions[t]!;
          expect(staleness).toBeGreaterThanOrEqual(0);
          expect(staleness).toBeLessThanOrEqual(ETA);
          maxTokenStaleness = Math.max(maxTokenStaleness, staleness);
        }
      }
    }
    expect(maxTokenStaleness).toBeGreaterThan(0); // the run really was asynchronous
    expect(res.totals.maxStaleness).toBeLessThanOrEqual(ETA);
    expect(at.controller.metrics().totals.stalenessViolations).toBe(0);
    expect(res.totals.trainerBusyFraction).toBeGreaterThan(0);

    // Sequences spanning several versions: each token's logprob is what its version computes.
    const spanning = seen.flatMap((b) => b.samples).filter((s) => versionSpread({ id: '', groupId: '', samples: [s], reward: 0, info: {} }) > 0);
    expect(spanning.length).toBeGreaterThan(0);
    expect(engine.stats.interruptions).toBeGreaterThan(0); // some updates landed mid-generation
    const check = new BuiltinTrainer(new Transformer(MODEL, backend, 0));
    let compared = 0;
    for (const [v, w] of weights) {
      check.model.params.set(w);
      const lp = check.computeLogprobs(spanning);
      spanning.forEach((s, i) => {
        for (let t = 0; t < s.seq.ids.length; t++) {
          if (s.seq.source[t] !== TokenSource.model || s.seq.versions[t] !== v) continue;
          expect(Math.abs(s.seq.logprobs[t]! - lp[i]![t]!)).toBeLessThanOrEqual(2e-4);
          compared++;
        }
      });
    }
    expect(compared).toBeGreaterThan(0);
  });

  it('the worker trainer returns the weights an in-process trainer computes from the same seed and batch', async () => {
    const SEED = 3;
    const engine = newEngine(SEED);
    const workflow = toyToolWorkflow(engine, AGENT);
    const tasks = toyToolTasks(SEED, V);
    const trajs: Trajectory[] = [];
    for (let g = 0; g < 3; g++) {
      const item = tasks.next().value!;
      for (let m = 0; m < 4; m++) {
        trajs.push((await workflow(item, { version: 0, admitVersion: 0, signal: new AbortController().signal, groupIndex: g, groupId: `g${g}`, member: m, attempt: 0 })) as Trajectory);
      }
    }
    const samples = trajs.flatMap((t) => t.samples.map((s) => ({ ...s, keys: { group: t.groupId } })));
    const { advantages } = groupAdvantages(samples.map((s) => s.reward), samples.map((s) => s.keys), { groupBy: ['group'] });
    samples.forEach((s, i) => (s.advantage = advantages[i]! + 0.1 * (i % 3))); // never an all-zero batch
    const wt = await workerTrainer(SEED);
    const ip = inProcess(SEED);
    for (const kind of ['decoupled_ppo', 'ppo'] as const) {
      const a = await wt.train([samples], { kind });
      const b = await ip.train([samples], { kind });
      expect(a.version).toBe(b.version);
      expect(a.metrics.loss).toBe(b.metrics.loss);
      expect(a.weights).toEqual(b.weights);
      expect(a.busySeconds).toBeGreaterThan(0);
    }
    expect(wt.version()).toBe(2);
    // Two minibatches: two optimizer steps, same weights on both paths; the exported state matches.
    const a2 = await wt.train([samples.slice(0, 6), samples.slice(6)], { kind: 'ppo' });
    const b2 = await ip.train([samples.slice(0, 6), samples.slice(6)], { kind: 'ppo' });
    expect(a2.version).toBe(4);
    expect(a2.weights).toEqual(b2.weights);
    expect(a2.metrics.minibatches).toBe(2);
    const st = await wt.exportState();
    expect(st.step).toBe(4);
    expect(st.m).toEqual(ip.trainer.m);
    // A bad batch is a clear error, and the worker keeps serving.
    await expect(wt.train([], { kind: 'ppo' })).rejects.toThrow(/at least one sample/);
    const c = await wt.train([samples], { kind: 'ppo' });
    expect(c.version).toBe(5);
  });

  it('validates its config and the engine/trainer version match', () => {
    expect(() => parseTrainerConfig({ steps: 0, batchSize: 1 })).toThrow(/steps/);
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, loss: { kind: 'nope' } })).toThrow(/loss/);
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, credit: { kind: 'mage', gama: 1 } })).toThrow(/credit.*gama/);
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, advantage: { estimator: 'ppo' } })).toThrow(/advantage.estimator/);
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, batchsize: 2 })).toThrow(/batchsize/);
    const c = parseTrainerConfig({ steps: 1, batchSize: 2, groupSize: 3, maxStaleness: 4 });
    expect(c.maxConcurrent).toBe(30);
    expect(c.advantage.estimator === 'grpo' && c.advantage.groupBy).toEqual([GROUP_KEY]);
    expect(c.credit).toEqual({ kind: 'outcome' });
    const engine = newEngine(1);
    engine.setWeights(engine.model.params, 3);
    expect(() => new Trainer({ config: { steps: 1, batchSize: 1 }, engine, trainer: inProcess(1), source: [], workflow: async () => { throw new Error('unused'); } })).toThrow(/version 3.*version 0/);
  });
});

describe('aborted rollouts', () => {
  it('stopping the controller stops decoding at once: every row leaves the engine', async () => {
    const { RolloutController } = await import('../src/train/rollout-controller.ts');
    const { singleTurnWorkflow, cycle } = await import('../src/agents/single-turn.ts');
    const engine = newEngine(2);
    const tasks = [{ id: 'a', prompt: [3, 4], reward: () => 0 }];
    const rc = new RolloutController({ config: { batchSize: 2, groupSize: 4 }, source: cycle(tasks), workflow: singleTurnWorkflow(engine, { maxTokens: MODEL.contextLength - 4 }) });
    rc.start();
    while (engine.stats.decodeSteps < 3) await new Promise((r) => setImmediate(r));
    expect(engine.load().active).toBe(8);
    const stopped = rc.stop();
    const sampled = engine.stats.tokensSampled;
    const res = await stopped;
    expect(res.aborted).toHaveLength(2);
    expect(engine.load()).toEqual({ active: 0, queued: 0 });
    // At most the step in progress finished: no row decodes after the abort.
    expect(engine.stats.tokensSampled - sampled).toBeLessThanOrEqual(8);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(engine.stats.tokensSampled - sampled).toBeLessThanOrEqual(8);
  });
});
