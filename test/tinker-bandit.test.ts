/**
 * Must-show of the Tinker-compatible client: the bandit task (MAGE trials, the run loop `Trainer`)
 * trained for a few steps twice from the same seed — once with the built-in trainer in process,
 * once with `TinkerTrainer` against a real `agentrl serve trainer` child process — reaches the same
 * weights, rewards and losses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trialWorkflow } from '../src/agents/trial.ts';
import { mixSeed } from '../src/envs/rng.ts';
import type { LossConfigInput } from '../src/rl/losses.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { collectRollouts } from '../src/train/rollout-controller.ts';
import { LoraAdapter } from '../src/train/lora.ts';
import { buildMetaSetup } from '../src/train/meta-setup.ts';
import { InProcessTrainer, type PolicyTrainer } from '../src/train/policy-trainer.ts';
import { createTinkerTrainer } from '../src/train/remote/tinker-trainer.ts';
import { saveTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import { Trainer, type StepMetrics } from '../src/train/trainer.ts';
import { trialSource } from '../src/train/trial-source.ts';

const ROOT = join(import.meta.dirname, '..');
const SEED = 0;
const MODEL = { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 };
const OPTIMIZER = { lr: 3e-3, weightDecay: 0.01 };
/** examples/configs/bandit-meta-rl.yaml's trial, unconstrained (Tinker cannot apply token masks). */
const TRIAL = { episodes: 3, contextMode: 'history_only', reflect: false, stateMode: 'same_state', maxTurns: 1, rules: 'none', pastEpisodes: 'outcome', constrained: false } as const;
const LORA = { rank: 4, seed: 3 };

/** The starting policy of both runs (the warm-started weights, once computed). */
let start: Float32Array | null = null;

function setup() {
  const s = buildMetaSetup({ env: 'bandit', opponents: ['none'], model: MODEL, optimizer: OPTIMIZER, seed: SEED, maxBatch: 64, outcomeTokens: true });
  if (start) {
    s.trainer.model.params.set(start);
    s.engine.setWeights(Float32Array.from(start), 0);
  }
  return s;
}

/**
 * Unconstrained, the untrained tiny model never writes a well-formed action (every reward and
 * advantage would be 0): imitate the well-formed answers of constrained rollouts first, so that the
 * RL steps below have a signal.
 */
async function warmStart(s: ReturnType<typeof setup>): Promise<Float32Array> {
  const items = [...Array(24).keys()].map((i) => ({ opponent: 'none', seed: 1000 + i }));
  const trajs = await collectRollouts(items, trialWorkflow(s.engine, s.makeEnv, { ...TRIAL, constrained: true }));
  const samples = trajs.flatMap((t) => t.samples).map((x) => ({ ...x, seq: { ...x.seq, constraintMasks: undefined } }));
  const sft = new BuiltinTrainer(s.trainer.model, { lr: 1e-2, weightDecay: 0 });
  for (let i = 0; i < 30; i++) sft.trainStep(samples, sftLoss);
  return Float32Array.from(s.trainer.model.params);
}

function loopConfig(loss: LossConfigInput, minibatches: number) {
  return {
    steps: 3, batchSize: 4, groupSize: 4, maxStaleness: 0, minibatches,
    credit: { kind: 'mage', gammaStep: 0.95, gammaTrial: 0.6, invalidCoef: 0.5 }, advantage: { estimator: 'gigpo', mode: 'mean_norm' }, loss,
  } as const;
}

async function runLoop(s: ReturnType<typeof setup>, policy: PolicyTrainer, loss: LossConfigInput, minibatches: number): Promise<StepMetrics[]> {
  const loop = new Trainer({
    config: loopConfig(loss, minibatches) as never, engine: s.engine, trainer: policy,
    source: trialSource(mixSeed(SEED, 0x50c), [{ name: 'none', weight: 1 }]), workflow: trialWorkflow(s.engine, s.makeEnv, TRIAL),
  });
  return (await loop.run()).steps;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1e-3, Math.abs(a[i]!)));
  return worst;
}

let child: ChildProcess;
let url: string;

beforeAll(async () => {
  // The service's base model: the bandit policy's untrained weights, as an agentrl trainer checkpoint.
  const dir = join(mkdtempSync(join(tmpdir(), 'agentrl-tinker-')), 'bandit');
  const s = setup();
  start = await warmStart(s);
  await saveTrainerCheckpoint(dir, s.trainer, { tokenizer: s.tokenizer, rng: {}, trainerState: null });
  child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', 'trainer', '--checkpoint', dir, '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agentrl serve trainer did not start: ${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`agentrl serve trainer exited with ${code}: ${out}`)));
  });
}, 40_000);

afterAll(() => {
  child?.kill('SIGTERM');
});

describe('TinkerTrainer against agentrl serve trainer', () => {
  it.each([
    { name: 'LoRA, ppo, 2 minibatches', lora: true, loss: { kind: 'ppo', dualClip: null, entropyCoef: 0 }, minibatches: 2 },
    { name: 'full fine-tuning, decoupled ppo (proximal logprobs by forward)', lora: false, loss: { kind: 'decoupled_ppo', dualClip: null, entropyCoef: 0, behavCap: 1.02 }, minibatches: 2 },
  ] as const)('bandit: $name — same weights, rewards and losses as the built-in trainer', async ({ lora, loss, minibatches }) => {
    // Built-in trainer in process.
    const a = setup();
    const builtin = lora ? new BuiltinTrainer(a.trainer.model, OPTIMIZER, { lora: new LoraAdapter(a.trainer.model, LORA) }) : a.trainer;
    const stepsA = await runLoop(a, new InProcessTrainer(builtin), loss, minibatches);

    // The same run with the service training.
    const b = setup();
    const tinker = await createTinkerTrainer({ kind: 'tinker', url, baseModel: 'bandit', ...(lora ? { lora: LORA } : {}) }, { model: b.engine.model, optimizer: OPTIMIZER });
    const initial = await tinker.initialWeights();
    expect(Array.from(initial)).toEqual(Array.from(b.engine.model.params));
    const stepsB = await runLoop(b, tinker, loss, minibatches);
    await tinker.close();

    // The runs learn something: valid actions, rewards and non-zero gradients.
    expect(stepsA.some((m) => m.gradNorm > 0 && m.invalidRate < 1)).toBe(true);
    expect(stepsB).toHaveLength(3);
    expect(stepsB.map((m) => m.meanReward)).toEqual(stepsA.map((m) => m.meanReward));
    expect(stepsB.map((m) => m.trainedTokens)).toEqual(stepsA.map((m) => m.trainedTokens));
    stepsB.forEach((m, i) => {
      const ref = stepsA[i]!;
      expect(m.loss).toBeCloseTo(ref.loss, 9);
      expect(m.gradNorm).toBeCloseTo(ref.gradNorm, 5);
      expect(m.trainer.clipFrac).toBeCloseTo(ref.trainer.clipFrac!, 9);
      expect(m.trainer.version).toBe(ref.trainer.version);
      if (loss.kind === 'decoupled_ppo') expect(m.trainer.cappedFrac).toBeCloseTo(ref.trainer.cappedFrac!, 9);
    });
    // The weights moved, and the service's weights (downloaded into the sampler) are the built-in's.
    expect(maxRelDiff(b.engine.model.params, initial)).toBeGreaterThan(0);
    // (The arithmetic order matches, so they are in fact bitwise equal on one machine.)
    expect(maxRelDiff(b.engine.model.params, a.engine.model.params)).toBeLessThan(1e-5);
    expect(maxRelDiff(b.engine.model.params, builtin.model.params)).toBeLessThan(1e-5);
  }, 60_000);
});
