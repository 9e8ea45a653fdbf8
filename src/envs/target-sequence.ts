/**
 * The engine's toy RL task: after a prompt, emit a fixed target sequence. Reward = fraction of
 * target positions the completion gets right, so chance level is 1/|vocabulary| per position.
 */
export function targetSequenceReward(completion: readonly number[], target: readonly number[]): number {
  if (target.length === 0) throw new Error('targetSequenceReward: empty target');
  let hits = 0;
  for (let i = 0; i < target.length; i++) if (completion[i] === target[i]) hits++;
  return hits / target.length;
}
