/**
 * Rock-paper-scissors against patterned opponents: a small adaptation environment. One episode is
 * `rounds` (3) rounds; each round pays +1 win, 0 tie, −1 loss. The opponent is a name or a pool of
 * names; with a pool, the reset seed draws one member, which `restart()` keeps — so across the
 * episodes of a trial the pattern is fixed and can be learned, while across trials it varies.
 * Invalid answers: reward 0, round not played, turn spent; after `maxInvalid` (3) the episode ends.
 *
 * Exact oracles (`rpsCeilings`): the adaptive value (the agent knows the opponent: Σ w·best
 * response) and the non-adaptive ceiling (the best single strategy — which may still react to the
 * opponent's moves within the episode — against the weighted pool), by expectimax over histories.
 */
import type { Opponent, StepResult, TextEnv } from './types.ts';
import { assertSeed, hashString, mixSeed, mulberry32, randInt } from './rng.ts';
import { extractActionText, vocabularyOf } from './text.ts';

export type RpsMove = 0 | 1 | 2; // ROCK, PAPER, SCISSORS
export const RPS_MOVES = ['ROCK', 'PAPER', 'SCISSORS'] as const;
const MOVES: readonly RpsMove[] = [0, 1, 2];

/** +1 if a beats b, −1 if b beats a, 0 on a tie. */
export function rpsPayoff(a: RpsMove, b: RpsMove): number {
  return a === b ? 0 : (a - b + 3) % 3 === 1 ? 1 : -1;
}
const beats = (m: RpsMove): RpsMove => ((m + 1) % 3) as RpsMove;

/** What the opponent sees: both players' earlier moves in this episode. */
export interface RpsView {
  agentMoves: readonly RpsMove[];
  opponentMoves: readonly RpsMove[];
}

export interface RpsOpponent extends Opponent<RpsView> {
  /** Probability of ROCK, PAPER, SCISSORS this round. */
  distribution(view: RpsView): readonly [number, number, number];
}

const pure = (m: RpsMove): [number, number, number] => [m === 0 ? 1 : 0, m === 1 ? 1 : 0, m === 2 ? 1 : 0];

const PATTERNS: Record<string, (v: RpsView) => readonly [number, number, number]> = {
  /** Always ROCK. */
  rock: () => pure(0),
  /** ROCK, PAPER, SCISSORS, ROCK … */
  cycle: (v) => pure((v.opponentMoves.length % 3) as RpsMove),
  /** Repeats the agent's previous move (ROCK first). */
  copy: (v) => pure(v.agentMoves.at(-1) ?? 0),
  /** Plays what beats the agent's previous move (PAPER first). */
  counter: (v) => pure(beats(v.agentMoves.at(-1) ?? 0)),
  random: () => [1 / 3, 1 / 3, 1 / 3],
};

export const RPS_OPPONENT_NAMES: readonly string[] = Object.keys(PATTERNS);

export function rpsOpponent(name: string): RpsOpponent {
  const dist = PATTERNS[name];
  if (!dist) throw new Error(`rps: unknown opponent '${name}'; choose one of ${RPS_OPPONENT_NAMES.join(', ')}`);
  return {
    name,
    distribution: dist,
    act: (v, rng) => {
      const p = dist(v), u = rng();
      return RPS_MOVES[u < p[0] ? 0 : u < p[0] + p[1] ? 1 : 2];
    },
  };
}

export interface RpsEnvOptions {
  /** An opponent name, or a pool of names one of which the reset seed draws. Default the four patterns. */
  opponent?: string | readonly string[];
  rounds?: number;
  maxInvalid?: number;
}

export class RpsEnv implements TextEnv {
  readonly name = 'rps';
  readonly pool: readonly string[];
  private readonly rounds: number;
  private readonly maxInvalid: number;
  private seed: number | null = null;
  private opponent: RpsOpponent | null = null;
  private agentMoves: RpsMove[] = [];
  private opponentMoves: RpsMove[] = [];
  private invalidCount = 0;
  private finished = false;
  private returnSum = 0;

  constructor(opts: RpsEnvOptions = {}) {
    const o = opts.opponent ?? ['rock', 'cycle', 'copy', 'counter'];
    this.pool = typeof o === 'string' ? [o] : [...o];
    if (this.pool.length === 0) throw new Error('rps: the opponent pool is empty');
    this.pool.forEach(rpsOpponent); // fail early on unknown names
    this.rounds = opts.rounds ?? 3;
    this.maxInvalid = opts.maxInvalid ?? 3;
    if (!Number.isInteger(this.rounds) || this.rounds < 1) throw new Error(`rps: rounds must be an integer ≥ 1, got ${opts.rounds}`);
    if (!Number.isInteger(this.maxInvalid) || this.maxInvalid < 1) throw new Error(`rps: maxInvalid must be an integer ≥ 1, got ${opts.maxInvalid}`);
  }

  /** The opponent drawn for the current trial. */
  get opponentName(): string {
    if (!this.opponent) throw new Error('rps: call reset(seed) first');
    return this.opponent.name;
  }
  get done(): boolean { return this.finished; }

  rules(): string {
    return [
      `rock paper scissors for ${this.rounds} rounds . PAPER beats ROCK , SCISSORS beats PAPER and ROCK beats SCISSORS .`,
      'a win gives 1 , a tie 0 and a loss -1 . the opponent follows the same habit in every episode of a trial .',
      'answer with <action> ROCK </action> or <action> PAPER </action> or <action> SCISSORS </action>',
    ].join(' ');
  }

  reset(seed: number): string {
    assertSeed(seed, 'rps');
    this.seed = seed;
    this.opponent = rpsOpponent(this.pool[randInt(mulberry32(mixSeed(seed, 1)), this.pool.length)]!);
    return this.start();
  }

  restart(): string {
    if (this.seed === null) throw new Error('rps.restart: call reset(seed) first');
    return this.start();
  }

  private start(): string {
    this.agentMoves = [];
    this.opponentMoves = [];
    this.invalidCount = 0;
    this.finished = false;
    this.returnSum = 0;
    return this.observe();
  }

  observe(): string {
    if (this.seed === null) throw new Error('rps.observe: call reset(seed) first');
    const played = this.agentMoves.map((m, i) => `you ${RPS_MOVES[m]} opponent ${RPS_MOVES[this.opponentMoves[i]!]}`);
    const parts = [
      this.finished ? 'game over' : `round ${this.agentMoves.length + 1} of ${this.rounds}`,
      `history ${played.length > 0 ? played.join(' , ') : 'none'}`,
      `score ${this.returnSum}`,
    ];
    if (!this.finished) parts.push(`actions ${RPS_MOVES.join(' ')}`);
    return parts.join(' | ');
  }

  legalActions(): string[] {
    return this.finished || this.seed === null ? [] : [...RPS_MOVES];
  }

  step(actionText: string): StepResult {
    if (this.seed === null || this.finished) {
      return { reward: 0, done: true, valid: false, observation: '', info: { error: this.seed === null ? 'call reset(seed) first' : 'episode is over' } };
    }
    const move = parseRpsAction(actionText);
    if (move === null) {
      this.invalidCount++;
      if (this.invalidCount >= this.maxInvalid) this.finished = true;
      return { reward: 0, done: this.finished, valid: false, observation: this.finished ? '' : this.observe(), info: this.info({ reason: 'unparseable action' }) };
    }
    // The opponent's stream is keyed by (seed, history), so restart() replays it exactly.
    const key = this.agentMoves.join('') + '/' + this.opponentMoves.join('');
    const word = this.opponent!.act({ agentMoves: this.agentMoves, opponentMoves: this.opponentMoves }, mulberry32(mixSeed(this.seed, 2, hashString(key))));
    const opp = RPS_MOVES.indexOf(word as (typeof RPS_MOVES)[number]) as RpsMove;
    const reward = rpsPayoff(move, opp);
    this.agentMoves.push(move);
    this.opponentMoves.push(opp);
    this.returnSum += reward;
    if (this.agentMoves.length >= this.rounds) this.finished = true;
    return { reward, done: this.finished, valid: true, observation: this.finished ? '' : this.observe(), info: this.info({ opponentMove: RPS_MOVES[opp] }) };
  }

  private info(extra: Record<string, unknown>): Record<string, unknown> {
    return { ...extra, opponent: this.opponent!.name, round: this.agentMoves.length, invalidCount: this.invalidCount };
  }

  won(): boolean { return this.finished && this.returnSum > 0; }
  episodeReturn(): number { return this.returnSum; }

  vocabulary(): string[] {
    const numbers = Array.from({ length: 2 * this.rounds + 1 }, (_, i) => String(i - this.rounds));
    return vocabularyOf([this.rules()], ['round', 'of', 'game', 'over', 'history', 'none', 'you', 'opponent', ',', 'score', '|', 'actions', ...RPS_MOVES, ...numbers, String(this.rounds)]);
  }
}

/** ROCK / PAPER / SCISSORS (case-insensitive) from `<action>…</action>` or a bare word. */
export function parseRpsAction(raw: unknown): RpsMove | null {
  const text = extractActionText(raw);
  if (text === null) return null;
  const i = RPS_MOVES.indexOf(text.replace(/\.$/, '').trim().toUpperCase() as (typeof RPS_MOVES)[number]);
  return i >= 0 ? (i as RpsMove) : null;
}

// ---------- oracles ----------

/**
 * Best expected episode return against opponent types with (unnormalised) weights, for a strategy
 * that sees the history but not the type: expectimax with Bayesian weights (weight × likelihood).
 */
function expectimax(types: readonly { opp: RpsOpponent; w: number }[], agent: RpsMove[], opp: RpsMove[], roundsLeft: number): number {
  if (roundsLeft === 0 || types.length === 0) return 0;
  const view = { agentMoves: agent, opponentMoves: opp };
  const dists = types.map((t) => t.opp.distribution(view));
  let best = -Infinity;
  for (const a of MOVES) {
    let v = 0;
    for (const o of MOVES) {
      const next = types.map((t, i) => ({ opp: t.opp, w: t.w * dists[i]![o] })).filter((t) => t.w > 0);
      const mass = next.reduce((s, t) => s + t.w, 0);
      if (mass === 0) continue;
      v += mass * rpsPayoff(a, o) + expectimax(next, [...agent, a], [...opp, o], roundsLeft - 1);
    }
    best = Math.max(best, v);
  }
  return best;
}

export interface RpsCeilings {
  /** Expected episode return when the agent knows which opponent it faces (Σ w · best response). */
  adaptive: number;
  /** Best single strategy against the weighted pool (it may react to moves within the episode). */
  nonAdaptive: number;
}

export function rpsCeilings(pool: readonly { name: string; weight: number }[], rounds = 3): RpsCeilings {
  const total = pool.reduce((s, p) => s + p.weight, 0);
  if (pool.length === 0 || !(total > 0) || pool.some((p) => p.weight < 0)) throw new Error('rpsCeilings: need a non-empty pool with non-negative weights summing to more than 0');
  const types = pool.filter((p) => p.weight > 0).map((p) => ({ opp: rpsOpponent(p.name), w: p.weight / total }));
  const adaptive = types.reduce((s, t) => s + t.w * expectimax([{ opp: t.opp, w: 1 }], [], [], rounds), 0);
  return { adaptive, nonAdaptive: expectimax(types, [], [], rounds) };
}
