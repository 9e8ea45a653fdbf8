/**
 * The Kuhn oracles as players, so "above the ceiling" is measured on the same evaluation deals as the
 * trained policies (a paired comparison, not a trained number next to an expectation):
 * - `best-fixed`: the best single fixed strategy against the training mixture (per seat; it does not
 *   know which opponent it faces) — the non-adaptive ceiling played out;
 * - `best-response`: the best response to the opponent actually faced — a perfect opponent model.
 */
import type { TextEnv } from '../envs/types.ts';
import { KuhnEnv } from '../envs/kuhn.ts';
import { infoSetKey, type DecisionHistory, type KuhnSeat } from '../envs/kuhn-game.ts';
import { bestResponseTo, nonAdaptiveBestResponse, type MixtureEntry } from '../envs/kuhn-oracles.ts';
import type { PureStrategy } from '../envs/kuhn-eval.ts';
import type { ScriptedPlayer } from './trials.ts';

function kuhnEnv(env: TextEnv): KuhnEnv {
  if (!(env instanceof KuhnEnv)) throw new Error('Kuhn oracle players play Kuhn poker only');
  return env;
}

function play(env: KuhnEnv, strategy: PureStrategy): string {
  return strategy[infoSetKey(env.agentCard, env.history as DecisionHistory)] ?? 'PASS';
}

/** The best fixed strategy against `mixture` (chosen per seat). */
export function bestFixedPlayer(mixture: readonly MixtureEntry[]): ScriptedPlayer {
  const bySeat = [0, 1].map((s) => nonAdaptiveBestResponse(mixture, s as KuhnSeat).strategy);
  return (e) => {
    const env = kuhnEnv(e);
    return play(env, bySeat[env.seat]!);
  };
}

/** The best response to the opponent faced (it knows the opponent, not the opponent's card). */
export function bestResponsePlayer(): ScriptedPlayer {
  const cache = new Map<string, PureStrategy>();
  return (e, opponent) => {
    const env = kuhnEnv(e);
    const key = `${opponent}/${env.seat}`;
    let s = cache.get(key);
    if (!s) cache.set(key, (s = bestResponseTo(opponent, env.seat).strategy));
    return play(env, s);
  };
}
