/**
 * The plainest agent: one prompt, one completion, a verifiable reward (prompt → tokens → reward).
 * One sample per rollout; credit kind 'outcome' gives it the trajectory's reward.
 */
import type { Trajectory } from '../core/types.ts';
import { appendCompletion, appendContext, emptySeq } from '../core/types.ts';
import type { RolloutWorkflow } from '../core/workflow.ts';
import type { InferenceEngine, SampledCompletion, SamplingParams } from '../engine/types.ts';

export interface SingleTurnTask {
  id: string;
  prompt: number[];
  reward: (c: SampledCompletion) => number;
}

export function singleTurnWorkflow(engine: InferenceEngine, sampling: Omit<SamplingParams, 'signal'>): RolloutWorkflow<SingleTurnTask> {
  return async (task, ctx): Promise<Trajectory> => {
    const c = await engine.generate(task.prompt, { ...sampling, signal: ctx.signal });
    const seq = emptySeq();
    appendContext(seq, task.prompt);
    appendCompletion(seq, c);
    const reward = task.reward(c);
    return { id: `${ctx.groupId}/${ctx.member}`, groupId: ctx.groupId, samples: [{ seq, reward, keys: { prompt: task.id }, temperature: c.temperature }], reward, info: {} };
  };
}

/** The tasks repeated forever, in order. */
export function* cycle<T>(items: readonly T[]): Generator<T> {
  if (items.length === 0) throw new Error('cycle: no items');
  for (let i = 0; ; i++) yield items[i % items.length]!;
}
