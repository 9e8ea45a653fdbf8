/**
 * Kuhn poker rules as pure functions: cards J < Q < K, ante 1 each, one betting round with
 * actions PASS (check or fold) and BET (bet or call). Histories are strings of `P`/`B` letters.
 *
 *   ''   P0 to act        'P'  P1 to act (unopened)   'B' P1 to act facing a bet
 *   'PB' P0 to act facing a bet
 *   terminal: 'PP' showdown for 1, 'BP' P1 folds, 'BB' showdown for 2, 'PBP' P0 folds, 'PBB' showdown for 2
 */

export type KuhnCard = 0 | 1 | 2;
export type KuhnAction = 'PASS' | 'BET';
export type KuhnSeat = 0 | 1;

export const CARD_NAMES = ['J', 'Q', 'K'] as const;
export const KUHN_ACTIONS: readonly KuhnAction[] = ['PASS', 'BET'];

/** Histories at which someone must act (the four decision points). */
export const DECISION_HISTORIES = ['', 'P', 'B', 'PB'] as const;
export type DecisionHistory = (typeof DECISION_HISTORIES)[number];
export const TERMINAL_HISTORIES = ['PP', 'BP', 'BB', 'PBP', 'PBB'] as const;

/** The 6 equally likely deals as [P0 card, P1 card]. */
export const DEALS: readonly (readonly [KuhnCard, KuhnCard])[] = [
  [0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1],
];

export function actionLetter(a: KuhnAction): 'P' | 'B' {
  return a === 'PASS' ? 'P' : 'B';
}

export function letterAction(l: string): KuhnAction {
  return l === 'P' ? 'PASS' : 'BET';
}

export function isTerminal(history: string): boolean {
  return (TERMINAL_HISTORIES as readonly string[]).includes(history);
}

export function isDecision(history: string): history is DecisionHistory {
  return (DECISION_HISTORIES as readonly string[]).includes(history);
}

/** Who acts at a decision history. */
export function playerToAct(history: DecisionHistory): KuhnSeat {
  return history.length % 2 === 0 ? 0 : 1;
}

/** Whether the player to act faces a bet (so PASS means fold and BET means call). */
export function facingBet(history: string): boolean {
  return history.endsWith('B');
}

/** Decision histories at which a given seat acts. */
export function decisionHistoriesOf(seat: KuhnSeat): DecisionHistory[] {
  return DECISION_HISTORIES.filter((h) => playerToAct(h) === seat);
}

/** Chips won by player 0 at a terminal history (player 1 wins the negation). */
export function payoffP0(cards: readonly [KuhnCard, KuhnCard], history: string): number {
  const showdownSign = cards[0] > cards[1] ? 1 : -1;
  switch (history) {
    case 'PP': return showdownSign;
    case 'BP': return 1;
    case 'BB': return 2 * showdownSign;
    case 'PBP': return -1;
    case 'PBB': return 2 * showdownSign;
    default: throw new Error(`payoffP0: '${history}' is not a terminal Kuhn history (terminal: ${TERMINAL_HISTORIES.join(', ')})`);
  }
}

export function payoffFor(seat: KuhnSeat, cards: readonly [KuhnCard, KuhnCard], history: string): number {
  const p = payoffP0(cards, history);
  return seat === 0 ? p : -p;
}

/** What a player sees when acting: its own card, the public history and its seat. */
export interface KuhnView {
  card: KuhnCard;
  history: DecisionHistory;
  seat: KuhnSeat;
}

/** A behaviour strategy: probability of BET at the information set (card, history). */
export type KuhnPolicy = (card: KuhnCard, history: DecisionHistory) => number;

/** Key of an information set, e.g. `K:PB`. */
export function infoSetKey(card: KuhnCard, history: DecisionHistory): string {
  return `${CARD_NAMES[card]}:${history}`;
}

/** All 12 information sets. */
export function allInfoSets(): { card: KuhnCard; history: DecisionHistory; key: string }[] {
  const out: { card: KuhnCard; history: DecisionHistory; key: string }[] = [];
  for (const history of DECISION_HISTORIES) for (const card of [0, 1, 2] as KuhnCard[]) out.push({ card, history, key: infoSetKey(card, history) });
  return out;
}
