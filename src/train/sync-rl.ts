/**
 * One synchronous RL step for single-turn tasks (prompt → completion → reward): generate a group of
 * completions per prompt on the inference engine, compute group advantages, take one optimizer
 * step, publish the new weights. The plainest loop there is; the asynchronous trainer generalises it.
 */
import type { Sample } from '../core/types.ts';
import { appendCompletion, appendContext, emptySeq } from '../core/types.ts';
import type { SampledCompletion, SamplingParams } from '../engine/types.ts';
import type { BuiltinEngine } from '../engine/builtin-engine.ts';
import { groupAdvantages, type GroupAdvantageConfigInput } from '../rl/advantages.ts';
import type { BuiltinTrainer, LossFn } from './builtin-trainer.ts';

export interface SingleTurnTask {
  id: string;
  prompt: number[];
  reward: (c: SampledCompletion) => number;
}

export interface SyncStepOptions {
  groupSize: number;
  sampling: SamplingParams;
  advantage: GroupAdvantageConfigInput;
  loss: LossFn;
}

export interface SyncStepResult {
  meanReward: number;
  loss: number;
  gradNorm: number;
  samples: number;
}

export async function syncRlStep(engine: BuiltinEngine, trainer: BuiltinTrainer, tasks: SingleTurnTask[], o: SyncStepOptions): Promise<SyncStepResult> {
  const runs = tasks.flatMap((t) => Array.from({ length: o.groupSize }, () => t));
  const completions = await Promise.all(runs.map((t) => engine.generate(t.prompt, o.sampling)));
  const samples: Sample[] = runs.map((t, i) => {
    const seq = emptySeq();
    appendContext(seq, t.prompt);
    appendCompletion(seq, completions[i]!);
    return { seq, reward: t.reward(completions[i]!), keys: { prompt: t.id }, temperature: completions[i]!.temperature };
  });
  const { advantages } = groupAdvantages(samples.map((s) => s.reward), samples.map((s) => s.keys), o.advantage);
  samples.forEach((s, i) => (s.advantage = advantages[i]!));
  const m = trainer.trainStep(samples, o.loss);
  engine.setWeights(trainer.model.params, trainer.version());
  return { meanReward: samples.reduce((a, s) => a + s.reward, 0) / samples.length, loss: m.loss, gradNorm: m.gradNorm, samples: samples.length };
}
