/**
 * Exact Kuhn poker oracles, by enumeration over the 6 deals and the opponent's mixed strategy.
 * Values are in chips (the env's reward is 5 × chips by default). `seat` is the agent's seat.
 *
 * - winnability: probability that some agent action line wins chips (> 0), given the deal and the
 *   opponent's realised choice at each of its information sets:
 *     E_{deal, realisation}[ ∃ agent line with payoff > 0 ].
 *   The env draws the opponent's choice at an information set from a stream keyed by (reset seed,
 *   history), so within a MAGE trial (restart replays the seed) the realisation is fixed: this is
 *   the exact upper bound on a trial's success rate for an agent that could read the opponent.
 * - bestResponseValue: expected chips of the best response to the opponent (a fixed strategy that
 *   knows which opponent it faces but not the opponent's card).
 * - nonAdaptiveCeiling: expected chips of the best single fixed strategy against a weighted
 *   mixture of opponents (opponent drawn per hand, unknown to the agent): the ceiling of any
 *   agent that does not adapt to the opponent it faces.
 */
import {
  DEALS, decisionHistoriesOf, isTerminal, payoffFor, playerToAct,
  type DecisionHistory, type KuhnCard, type KuhnSeat,
} from './kuhn-game.ts';
import { bestResponseToMixture, type BestResponse } from './kuhn-eval.ts';
import { opponentPolicy, type KuhnOpponent } from './kuhn-opponents.ts';

export type SeatSpec = KuhnSeat | 'mixed';
type OpponentRef = string | KuhnOpponent;

export interface DealWinnability {
  agentCard: KuhnCard;
  opponentCard: KuhnCard;
  /** Probability (over the opponent's realised choices) that a winning line exists. */
  probability: number;
}

/** Per-deal winnability for one seat (3 deals per agent card… 6 deals in all). */
export function winnabilityByDeal(opponent: OpponentRef, seat: KuhnSeat): DealWinnability[] {
  const policy = opponentPolicy(opponent);
  const oppSeat: KuhnSeat = seat === 0 ? 1 : 0;
  const oppHistories = decisionHistoriesOf(oppSeat);
  const out: DealWinnability[] = [];
  for (const cards of DEALS) {
    const oppCard = cards[oppSeat];
    let probability = 0;
    // Enumerate the opponent's pure choice at each of its two information sets for this card.
    for (let mask = 0; mask < 1 << oppHistories.length; mask++) {
      let p = 1;
      const choice = new Map<string, 'P' | 'B'>();
      oppHistories.forEach((h, i) => {
        const bet = ((mask >> i) & 1) === 1;
        const pBet = policy(oppCard, h);
        p *= bet ? pBet : 1 - pBet;
        choice.set(h, bet ? 'B' : 'P');
      });
      if (p > 0 && existsWinningLine(cards, '', seat, choice)) probability += p;
    }
    out.push({ agentCard: cards[seat], opponentCard: oppCard, probability });
  }
  return out;
}

function existsWinningLine(cards: readonly [KuhnCard, KuhnCard], history: string, seat: KuhnSeat, oppChoice: Map<string, 'P' | 'B'>): boolean {
  if (isTerminal(history)) return payoffFor(seat, cards, history) > 0;
  const h = history as DecisionHistory;
  if (playerToAct(h) !== seat) return existsWinningLine(cards, h + oppChoice.get(h)!, seat, oppChoice);
  return existsWinningLine(cards, h + 'P', seat, oppChoice) || existsWinningLine(cards, h + 'B', seat, oppChoice);
}

/** Fraction of deals (probability-weighted, see module doc) on which some line wins chips. */
export function winnability(opponent: OpponentRef, seat: SeatSpec): number {
  if (seat === 'mixed') return (winnability(opponent, 0) + winnability(opponent, 1)) / 2;
  const rows = winnabilityByDeal(opponent, seat);
  return rows.reduce((s, r) => s + r.probability, 0) / rows.length;
}

/** Best response to one opponent for a seat (value in chips and the pure strategy). */
export function bestResponseTo(opponent: OpponentRef, seat: KuhnSeat): BestResponse {
  return bestResponseToMixture([{ policy: opponentPolicy(opponent), weight: 1 }], seat);
}

/** Expected chips of the best response; 'mixed' averages the two seats (seat drawn 50/50). */
export function bestResponseValue(opponent: OpponentRef, seat: SeatSpec): number {
  if (seat === 'mixed') return (bestResponseValue(opponent, 0) + bestResponseValue(opponent, 1)) / 2;
  return bestResponseTo(opponent, seat).value;
}

export interface MixtureEntry {
  name: OpponentRef;
  weight: number;
}

/**
 * Value (chips) of the best single fixed strategy against a weighted opponent mixture — a best
 * response to the mixture, computed exactly. With 'mixed' the seat is drawn 50/50 and the strategy
 * may depend on the seat (the agent sees it), so the two seats are maximised separately.
 */
export function nonAdaptiveCeiling(mixture: readonly MixtureEntry[], seat: SeatSpec): number {
  if (seat === 'mixed') return (nonAdaptiveCeiling(mixture, 0) + nonAdaptiveCeiling(mixture, 1)) / 2;
  return nonAdaptiveBestResponse(mixture, seat).value;
}

export function nonAdaptiveBestResponse(mixture: readonly MixtureEntry[], seat: KuhnSeat): BestResponse {
  if (mixture.length === 0) throw new Error('nonAdaptiveCeiling: the opponent mixture is empty; pass at least one {name, weight}');
  return bestResponseToMixture(mixture.map((m) => ({ policy: opponentPolicy(m.name), weight: m.weight })), seat);
}
