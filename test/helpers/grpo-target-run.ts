/**
 * The GRPO learning run the learning tests share: target-sequence tasks, outcome reward, GRPO
 * advantages per prompt, PPO loss, through the one training loop, until the batch reward reaches
 * 0.97 or 250 steps; then 32 fresh samples per task. The tests assert on what it returns.
 */
import { Trainer } from '../../src/train/trainer.ts';
import { InProcessTrainer } from '../../src/train/policy-trainer.ts';
import { cycle, singleTurnWorkflow } from '../../src/agents/single-turn.ts';
import { targetSequenceReward } from '../../src/envs/target-sequence.ts';
import type { BuiltinEngine } from '../../src/engine/builtin-engine.ts';
import type { BuiltinTrainer } from '../../src/train/builtin-trainer.ts';
import type { SamplingParams } from '../../src/engine/types.ts';

export async function grpoTargetRun(o: {
  engine: BuiltinEngine; trainer: BuiltinTrainer; prompts: number[][]; targets: number[][];
  sampling: SamplingParams; evalSampling: SamplingParams;
}): Promise<{ firstReward: number; steps: number; meanEval: number }> {
  const tasks = o.targets.map((target, i) => ({ id: `t${i}`, prompt: o.prompts[i]!, reward: (c: { ids: number[] }) => targetSequenceReward(c.ids, target) }));
  const loop = new Trainer({
    config: { steps: 250, batchSize: 2, groupSize: 32, maxStaleness: 0, credit: { kind: 'outcome' }, advantage: { estimator: 'grpo', groupBy: ['prompt'] }, loss: { kind: 'ppo' } },
    engine: o.engine, trainer: new InProcessTrainer(o.trainer), source: cycle(tasks), workflow: singleTurnWorkflow(o.engine, o.sampling),
  });
  const firstReward = (await loop.step()).meanReward;
  let last = firstReward;
  let steps = 1;
  for (; steps < 250 && last < 0.97; steps++) last = (await loop.step()).meanReward;
  await loop.finish();
  const evalTasks = tasks.flatMap((t) => Array.from({ length: 32 }, () => t));
  const outs = await Promise.all(evalTasks.map((t) => o.engine.generate(t.prompt, o.evalSampling)));
  const meanEval = outs.reduce((a, out, i) => a + evalTasks[i]!.reward(out), 0) / outs.length;
  return { firstReward, steps, meanEval };
}
