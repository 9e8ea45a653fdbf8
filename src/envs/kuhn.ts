/**
 * Kuhn poker as a text environment. The agent plays one hand per episode from seat P0 or P1
 * against a named opponent; reward = rewardScale (5) × chips won, given on the final turn.
 *
 * Invalid turns (unparseable text): reward 0, state unchanged, the turn is spent and counted;
 * after `maxInvalid` (3) invalid turns in one episode the hand is abandoned: done, reward 0, no
 * chips change hands, not won.
 *
 * Replay: `reset(seed)` draws the seat (when 'random') and the deal from the seed. The opponent's
 * choice at a history is drawn from a stream keyed by (seed, history), so `restart()` replays the
 * same deal and seat, and the opponent answers the same position the same way in every episode.
 */
import type { StepResult, TextEnv } from './types.ts';
import { assertSeed, hashString, mixSeed, mulberry32 } from './rng.ts';
import { extractActionText, vocabularyOf } from './text.ts';
import {
  CARD_NAMES, DEALS, KUHN_ACTIONS, TERMINAL_HISTORIES, actionLetter, isTerminal, letterAction, payoffFor, playerToAct,
  type DecisionHistory, type KuhnAction, type KuhnCard, type KuhnSeat,
} from './kuhn-game.ts';
import { resolveKuhnOpponent, type KuhnOpponent } from './kuhn-opponents.ts';

export interface KuhnEnvOptions {
  /** Opponent name (see KUHN_OPPONENT_NAMES) or object. Default 'random'. */
  opponent?: string | KuhnOpponent;
  /** Agent seat; 'random' draws it from the reset seed. Default 'random'. */
  seat?: KuhnSeat | 'random';
  /** Invalid turns allowed before the hand is abandoned with reward 0. Default 3. */
  maxInvalid?: number;
  /** Reward per chip. Default 5. */
  rewardScale?: number;
  /**
   * 'text' (default): `card Q | history P0 BET | you are P1 | actions PASS BET`. 'token': the
   * decision's information set as one token, e.g. `i1_Q_B` (seat, card, betting line) — for tiny
   * built-in models, which otherwise must learn to find three facts scattered over a sentence.
   */
  observation?: 'text' | 'token';
}

const STREAM_SETUP = 1;
const STREAM_OPPONENT = 2;

type Outcome = 'showdown' | 'fold' | 'abandoned';

export class KuhnEnv implements TextEnv {
  readonly name = 'kuhn';
  readonly opponent: KuhnOpponent;
  private readonly seatOption: KuhnSeat | 'random';
  private readonly maxInvalid: number;
  private readonly rewardScale: number;
  private readonly observation: 'text' | 'token';

  private seed: number | null = null;
  private seatValue: KuhnSeat = 0;
  private cards: readonly [KuhnCard, KuhnCard] = DEALS[0]!;
  private hist = '';
  private invalidCount = 0;
  private finished = false;
  private outcome: Outcome | null = null;
  private payoff = 0;
  private returnSum = 0;

  constructor(opts: KuhnEnvOptions = {}) {
    this.opponent = resolveKuhnOpponent(opts.opponent ?? 'random');
    this.seatOption = opts.seat ?? 'random';
    this.maxInvalid = opts.maxInvalid ?? 3;
    this.rewardScale = opts.rewardScale ?? 5;
    this.observation = opts.observation ?? 'text';
    if (this.observation !== 'text' && this.observation !== 'token') throw new Error(`kuhn: observation must be 'text' or 'token', got '${String(opts.observation)}'`);
    if (!Number.isInteger(this.maxInvalid) || this.maxInvalid < 1) throw new Error(`kuhn: maxInvalid must be an integer ≥ 1, got ${opts.maxInvalid}`);
  }

  get opponentName(): string { return this.opponent.name; }
  /** The agent's seat in the current episode. */
  get seat(): KuhnSeat { return this.seatValue; }
  /** The agent's card (for logging; the opponent's card is private). */
  get agentCard(): KuhnCard { return this.cards[this.seatValue]; }
  get dealCards(): readonly [KuhnCard, KuhnCard] { return this.cards; }
  get done(): boolean { return this.finished; }
  /** Public betting history as `P`/`B` letters, P0 first (e.g. `PB`). */
  get history(): string { return this.hist; }

  rules(): string {
    return [
      'kuhn poker . the deck has three cards J Q K and K beats Q and Q beats J .',
      'each player puts 1 chip in the pot and gets one card . P0 acts first .',
      'PASS means check or fold . BET means bet 1 chip or call a bet .',
      'if both players PASS or a BET is called the higher card wins the pot .',
      'if a player folds to a BET the other player wins the pot .',
      `your reward is ${this.rewardScale} times the chips you win or lose .`,
      'answer with <action> PASS </action> or <action> BET </action>',
    ].join(' ');
  }

  reset(seed: number): string {
    assertSeed(seed, 'kuhn');
    this.seed = seed;
    const rng = mulberry32(mixSeed(seed, STREAM_SETUP));
    this.seatValue = this.seatOption === 'random' ? (rng() < 0.5 ? 0 : 1) : this.seatOption;
    this.cards = DEALS[Math.min(DEALS.length - 1, Math.floor(rng() * DEALS.length))]!;
    return this.start();
  }

  restart(): string {
    if (this.seed === null) throw new Error('kuhn.restart: call reset(seed) first');
    return this.start();
  }

  private start(): string {
    this.hist = '';
    this.invalidCount = 0;
    this.finished = false;
    this.outcome = null;
    this.payoff = 0;
    this.returnSum = 0;
    if (this.seatValue === 1) this.opponentMove();
    return this.observe();
  }

  private opponentMove(): void {
    const h = this.hist as DecisionHistory;
    const oppSeat = playerToAct(h);
    const rng = mulberry32(mixSeed(this.seed!, STREAM_OPPONENT, hashString(h)));
    const a = this.opponent.act({ card: this.cards[oppSeat], history: h, seat: oppSeat }, rng);
    if (a !== 'PASS' && a !== 'BET') throw new Error(`kuhn: opponent '${this.opponent.name}' returned '${String(a)}', expected PASS or BET`);
    this.hist += actionLetter(a);
  }

  observe(): string {
    if (this.seed === null) throw new Error('kuhn.observe: call reset(seed) first');
    if (this.observation === 'token') return this.finished ? this.episodeToken() : infoSetToken(this.seatValue, this.agentCard, this.hist);
    const parts = [`card ${CARD_NAMES[this.agentCard]}`, `history ${this.renderHistory()}`, `you are P${this.seatValue}`];
    if (!this.finished) return [...parts, `actions ${KUHN_ACTIONS.join(' ')}`].join(' | ');
    if (this.outcome === 'abandoned') return [...parts, 'too many invalid actions', 'result none'].join(' | ');
    if (this.outcome === 'showdown') parts.push(`showdown opponent card ${CARD_NAMES[this.cards[1 - this.seatValue]!]}`);
    else parts.push(`P${(this.hist.length - 1) % 2} folds`); // the last actor folded
    parts.push(this.payoff > 0 ? `result win ${this.payoff} chips` : `result lose ${-this.payoff} chips`);
    return parts.join(' | ');
  }

  private renderHistory(): string {
    if (this.hist.length === 0) return 'none';
    return [...this.hist].map((l, i) => `P${i % 2} ${letterAction(l)}`).join(' ');
  }

  legalActions(): string[] {
    return this.finished || this.seed === null ? [] : [...KUHN_ACTIONS];
  }

  step(actionText: string): StepResult {
    if (this.seed === null || this.finished) {
      return { reward: 0, done: true, valid: false, observation: '', info: { error: this.seed === null ? 'call reset(seed) first' : 'episode is over' } };
    }
    const action = parseKuhnAction(actionText);
    if (action === null) {
      this.invalidCount++;
      if (this.invalidCount >= this.maxInvalid) {
        this.finished = true;
        this.outcome = 'abandoned';
        return { reward: 0, done: true, valid: false, observation: '', info: this.info({ reason: 'too many invalid actions' }) };
      }
      return { reward: 0, done: false, valid: false, observation: this.observe(), info: this.info({ reason: 'unparseable action' }) };
    }
    this.hist += actionLetter(action);
    if (!isTerminal(this.hist)) this.opponentMove();
    if (!isTerminal(this.hist)) return { reward: 0, done: false, valid: true, observation: this.observe(), info: this.info({ action }) };

    this.finished = true;
    this.outcome = this.hist.endsWith('P') && this.hist !== 'PP' ? 'fold' : 'showdown';
    this.payoff = payoffFor(this.seatValue, this.cards, this.hist);
    const reward = this.rewardScale * this.payoff;
    this.returnSum += reward;
    return { reward, done: true, valid: true, observation: '', info: this.info({ action }) };
  }

  private info(extra: Record<string, unknown>): Record<string, unknown> {
    const info: Record<string, unknown> = {
      ...extra, opponent: this.opponent.name, seat: this.seatValue, history: this.hist, invalidCount: this.invalidCount,
    };
    if (this.finished) {
      info.payoff = this.payoff;
      info.outcome = this.outcome;
      // Cards are public only at a showdown.
      if (this.outcome === 'showdown') info.opponentCard = CARD_NAMES[this.cards[1 - this.seatValue]!];
    }
    return info;
  }

  /**
   * The finished hand's public record as one token: the agent's seat, the betting line and the
   * opponent's card if it was shown at a showdown (`X` if not), e.g. `h1_PBB_Q`; `h0_none` for a
   * hand abandoned or cut off unfinished. Only what both players saw — never a private card.
   */
  episodeToken(): string {
    if (this.seed === null) throw new Error('kuhn.episodeToken: call reset(seed) first');
    if (!this.finished || this.outcome === 'abandoned') return `h${this.seatValue}_none`;
    const shown = this.outcome === 'showdown' ? CARD_NAMES[this.cards[1 - this.seatValue]!] : 'X';
    return `h${this.seatValue}_${this.hist}_${shown}`;
  }

  episodeTokenVocabulary(): string[] {
    const out: string[] = [];
    for (const seat of [0, 1]) {
      out.push(`h${seat}_none`);
      for (const h of TERMINAL_HISTORIES) for (const c of [...CARD_NAMES, 'X']) out.push(`h${seat}_${h}_${c}`);
    }
    return out;
  }

  won(): boolean { return this.finished && this.payoff > 0; }
  episodeReturn(): number { return this.returnSum; }

  vocabulary(): string[] {
    const tokens = this.observation === 'token' ? [...INFO_SET_TOKENS, ...this.episodeTokenVocabulary()] : [];
    return vocabularyOf([this.rules(), ...tokens], [
      '|', 'card', 'history', 'none', 'P0', 'P1', 'you', 'are', 'actions', ...KUHN_ACTIONS, ...CARD_NAMES,
      'too', 'many', 'invalid', 'result', 'win', 'lose', 'chips', 'showdown', 'opponent', 'folds', '0', '1', '2',
    ]);
  }
}

/** One token for a decision point: seat, card and betting line so far, e.g. `i1_Q_B` (`i0_K_` opens). */
export function infoSetToken(seat: KuhnSeat, card: KuhnCard, history: string): string {
  return `i${seat}_${CARD_NAMES[card]}_${history}`;
}

const INFO_SET_TOKENS: readonly string[] = (['', 'P', 'B', 'PB'] as const).flatMap((h) =>
  ([0, 1, 2] as const).map((c) => infoSetToken(h.length % 2 === 0 ? 0 : 1, c, h)),
);

/** PASS or BET (case-insensitive) from `<action>…</action>` or a bare word; null otherwise. */
export function parseKuhnAction(raw: unknown): KuhnAction | null {
  const text = extractActionText(raw);
  if (text === null) return null;
  const word = text.replace(/[.!]+$/, '').trim().toUpperCase();
  return word === 'PASS' || word === 'BET' ? word : null;
}
