/**
 * Per-trial measures read from an EvalReport's trialRewards (trial i = the same deal / opening for
 * every policy evaluated with the same seed, so the arrays of two policies can be paired index by
 * index). Win / draw / loss is the sign of an episode's reward (tic-tac-toe: ±rewardScale, 0 draw).
 * In trials that stop once won, trialRewards[i] holds only the episodes played: the won episode is
 * the last one.
 */
import type { EvalReport, OpponentEval } from './trials.ts';

export function opponentEval(r: EvalReport, name: string): OpponentEval {
  const x = r.opponents.find((p) => p.opponent === name);
  if (!x) throw new Error(`report ${r.policy} has no opponent ${name}`);
  return x;
}

/** Per trial: 1 if won in some episode ≤ k (trials stop once won, so a shorter trial that ended won counts). */
export function successAt(r: EvalReport, name: string, k: number): number[] {
  return opponentEval(r, name).trialRewards.map((eps) => (eps.slice(0, k + 1).some((x) => x > 0) ? 1 : 0));
}

/** Per trial that played episode k (not index-aligned across policies): 1 if it was not lost (a draw or a win). */
export function notLostAt(r: EvalReport, name: string, k: number): number[] {
  return opponentEval(r, name).trialRewards.filter((eps) => eps.length > k).map((eps) => (eps[k]! >= 0 ? 1 : 0));
}

/** Per trial that played episode k (not index-aligned across policies): its reward. */
export function rewardAt(r: EvalReport, name: string, k: number): number[] {
  return opponentEval(r, name).trialRewards.filter((eps) => eps.length > k).map((eps) => eps[k]!);
}

/** Per trial: the reward of the last episode it played (the meta-RL objective; index-aligned). */
export function finalRewards(r: EvalReport, name: string): number[] {
  return opponentEval(r, name).trialRewards.map((eps) => eps[eps.length - 1]!);
}
