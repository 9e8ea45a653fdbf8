/**
 * Exact evaluation of Kuhn strategies by enumeration: expected payoff of a strategy pair and the
 * best response to a behaviour strategy (maximum over the 64 pure strategies of a seat, which is
 * exact because expected payoff is linear in the responder's mixed strategy).
 */
import {
  DEALS, decisionHistoriesOf, isTerminal, letterAction, payoffFor, playerToAct,
  type DecisionHistory, type KuhnCard, type KuhnPolicy, type KuhnSeat, infoSetKey,
} from './kuhn-game.ts';

/** Expected chips for `seat` playing `agent` against `opponent` (both behaviour strategies), over the 6 deals. */
export function expectedPayoff(agent: KuhnPolicy, opponent: KuhnPolicy, seat: KuhnSeat): number {
  let total = 0;
  for (const cards of DEALS) total += subtreeValue(cards, '', agent, opponent, seat);
  return total / DEALS.length;
}

/** Expected chips for `seat` from `history` on, for one deal. */
export function subtreeValue(
  cards: readonly [KuhnCard, KuhnCard], history: string, agent: KuhnPolicy, opponent: KuhnPolicy, seat: KuhnSeat,
): number {
  if (isTerminal(history)) return payoffFor(seat, cards, history);
  const h = history as DecisionHistory;
  const actor = playerToAct(h);
  const pBet = actor === seat ? agent(cards[actor], h) : opponent(cards[actor], h);
  let v = 0;
  if (pBet > 0) v += pBet * subtreeValue(cards, h + 'B', agent, opponent, seat);
  if (pBet < 1) v += (1 - pBet) * subtreeValue(cards, h + 'P', agent, opponent, seat);
  return v;
}

/** A pure strategy of one seat: the action at each of its 6 information sets (key → action). */
export type PureStrategy = Record<string, 'PASS' | 'BET'>;

/** All 64 pure strategies of a seat. */
export function pureStrategies(seat: KuhnSeat): PureStrategy[] {
  const sets: string[] = [];
  for (const h of decisionHistoriesOf(seat)) for (const card of [0, 1, 2] as KuhnCard[]) sets.push(infoSetKey(card, h));
  const out: PureStrategy[] = [];
  for (let mask = 0; mask < 1 << sets.length; mask++) {
    const s: PureStrategy = {};
    sets.forEach((key, i) => { s[key] = letterAction((mask >> i) & 1 ? 'B' : 'P'); });
    out.push(s);
  }
  return out;
}

export function pureToPolicy(s: PureStrategy): KuhnPolicy {
  return (card, history) => (s[infoSetKey(card, history)] === 'BET' ? 1 : 0);
}

export interface BestResponse {
  /** Expected chips of the best response for its seat. */
  value: number;
  strategy: PureStrategy;
}

/**
 * Best response of `seat` to a weighted mixture of opponent behaviour strategies (one opponent is
 * drawn per hand with the given weights; the responder does not know which). Weights are normalised.
 */
export function bestResponseToMixture(opponents: readonly { policy: KuhnPolicy; weight: number }[], seat: KuhnSeat): BestResponse {
  const totalWeight = opponents.reduce((s, o) => s + o.weight, 0);
  if (!(totalWeight > 0) || opponents.some((o) => o.weight < 0 || !Number.isFinite(o.weight))) {
    throw new Error('bestResponseToMixture: weights must be finite, non-negative and sum to more than 0');
  }
  let best: BestResponse | null = null;
  for (const s of pureStrategies(seat)) {
    const policy = pureToPolicy(s);
    let v = 0;
    for (const o of opponents) if (o.weight > 0) v += (o.weight / totalWeight) * expectedPayoff(policy, o.policy, seat);
    // Strict improvement keeps the first (lowest-mask, most PASS-heavy) optimum: deterministic ties.
    if (best === null || v > best.value + 1e-12) best = { value: v, strategy: s };
  }
  return best!;
}

export function bestResponse(opponent: KuhnPolicy, seat: KuhnSeat): BestResponse {
  return bestResponseToMixture([{ policy: opponent, weight: 1 }], seat);
}
