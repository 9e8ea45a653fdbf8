/**
 * Kuhn poker opponents. Each is a behaviour strategy (probability of BET per information set), so
 * the oracles can enumerate them exactly; `act` samples it with the rng it is given.
 */
import type { Opponent } from './types.ts';
import { facingBet, infoSetKey, type KuhnAction, type KuhnPolicy, type KuhnView } from './kuhn-game.ts';
import { kuhnCfrSolution } from './kuhn-cfr.ts';

export interface KuhnOpponent extends Opponent<KuhnView> {
  /** Probability of BET (bet or call) at this information set. */
  betProbability(view: KuhnView): number;
  act(view: KuhnView, rng: () => number): KuhnAction;
}

/** Build an opponent from a behaviour strategy. */
export function policyOpponent(name: string, policy: KuhnPolicy): KuhnOpponent {
  return {
    name,
    betProbability: (v) => policy(v.card, v.history),
    // Always draw exactly one number, so the stream advances the same way for every opponent.
    act: (v, rng) => (rng() < policy(v.card, v.history) ? 'BET' : 'PASS'),
  };
}

const K = 2, J = 0;

/** Bets or calls only with K; otherwise checks or folds. */
const conservative: KuhnPolicy = (card) => (card === K ? 1 : 0);
/** Always bets when unopened; facing a bet folds J and calls Q or K. */
const aggressive: KuhnPolicy = (card, history) => (facingBet(history) ? (card === J ? 0 : 1) : 1);
/** K bets/calls, J checks/folds, Q bets when unopened and folds to a bet. */
const intermediate: KuhnPolicy = (card, history) => (card === K ? 1 : card === J ? 0 : facingBet(history) ? 0 : 1);
const uniform: KuhnPolicy = () => 0.5;

/** Average CFR+ policy, sampled. */
const cfrMixed: KuhnPolicy = (card, history) => kuhnCfrSolution().averagePolicy[infoSetKey(card, history)]!;
/** Argmax of the average CFR+ policy (ties → PASS). */
const cfrArgmax: KuhnPolicy = (card, history) => (cfrMixed(card, history) > 0.5 ? 1 : 0);

const POLICIES: Record<string, KuhnPolicy> = {
  conservative, aggressive, intermediate, random: uniform, 'cfr-mixed': cfrMixed, 'cfr-argmax': cfrArgmax,
};

export const KUHN_OPPONENT_NAMES: readonly string[] = Object.keys(POLICIES);

export function kuhnOpponent(name: string): KuhnOpponent {
  const policy = POLICIES[name];
  if (!policy) throw new Error(`kuhn: unknown opponent '${name}'; choose one of ${KUHN_OPPONENT_NAMES.join(', ')}`);
  return policyOpponent(name, policy);
}

/** Accept an opponent object or a name. */
export function resolveKuhnOpponent(o: string | KuhnOpponent): KuhnOpponent {
  return typeof o === 'string' ? kuhnOpponent(o) : o;
}

export function opponentPolicy(o: string | KuhnOpponent): KuhnPolicy {
  const opp = resolveKuhnOpponent(o);
  return (card, history) => opp.betProbability({ card, history, seat: history.length % 2 === 0 ? 0 : 1 });
}
