/**
 * Tic-tac-toe reference players, played on the same evaluation trials as the trained policies (so
 * every comparison with them is paired per trial):
 * - `minimax`: a perfect player, ties among optimal moves broken at random — it never loses, and
 *   what it wins against MCTS-100 in one game is what flawless play without memory gets;
 * - `minimax-retry`: the same, but in a same_state trial it remembers the cells it played from each
 *   position in earlier episodes and prefers an optimal cell it has not tried there yet — perfect
 *   play plus the simplest use of the past, a reference for what adaptation across retries can add;
 * - `opening-search` (for the `weak-c<N>` players): perfect play after an opening chosen by
 *   win-stay / lose-shift over the candidate weak cells — replay an opening that won earlier in the
 *   trial, else open on a candidate not yet tried; what memory of past games can get there;
 * - `told-opening`: opens on the opponent's weak cell, read from its name — the ceiling of knowing
 *   the opponent.
 */
import type { TextEnv } from '../envs/types.ts';
import type { Rng } from '../core/rng.ts';
import { TicTacToeEnv, parseTttAction } from '../envs/tictactoe.ts';
import { boardKey, play as playCell, winner } from '../envs/ttt-game.ts';
import { minimaxMoves, weakOpeningCell } from '../envs/ttt-opponents.ts';
import type { ScriptedPlayer } from './trials.ts';

function tttEnv(env: TextEnv): TicTacToeEnv {
  if (!(env instanceof TicTacToeEnv)) throw new Error('tic-tac-toe oracle players play tic-tac-toe only');
  return env;
}

/** The env's own spelling of `cell` (`(2, 2)` or `c5`, per its observation mode). */
function actionFor(env: TicTacToeEnv, cell: number): string {
  const a = env.legalActions().find((x) => parseTttAction(x) === cell);
  if (a === undefined) throw new Error(`tic-tac-toe oracle: cell ${cell} is not legal on ${boardKey(env.cells)}`);
  return a;
}

function optimal(env: TicTacToeEnv): number[] {
  return minimaxMoves(env.cells, env.seat === 'X' ? 1 : 2);
}

/** One optimal cell, at random among them. */
function randomOptimal(env: TicTacToeEnv, rng: Rng): number {
  const moves = optimal(env);
  return moves[rng.int(moves.length)]!;
}

/** Perfect play, random among optimal moves. */
export function minimaxOraclePlayer(): ScriptedPlayer {
  return (e, _opponent, rng) => {
    const env = tttEnv(e);
    return actionFor(env, randomOptimal(env, rng));
  };
}

/**
 * Perfect play that, within one trial (one env), prefers an optimal cell not yet played from the
 * current position; among those (or, when all were tried, among all optimal cells) it picks at random.
 */
export function minimaxRetryPlayer(): ScriptedPlayer {
  const triedByEnv = new WeakMap<TextEnv, Map<string, Set<number>>>();
  return (e, _opponent, rng: Rng) => {
    const env = tttEnv(e);
    let tried = triedByEnv.get(e);
    if (!tried) triedByEnv.set(e, (tried = new Map()));
    const key = `${boardKey(env.cells)}|${env.seat}`;
    const here = tried.get(key) ?? new Set<number>();
    tried.set(key, here);
    const moves = optimal(env);
    const fresh = moves.filter((c) => !here.has(c));
    const pool = fresh.length > 0 ? fresh : moves;
    const cell = pool[rng.int(pool.length)]!;
    here.add(cell);
    return actionFor(env, cell);
  };
}

/** The agent's mark: 1 for X, 2 for O. */
function myMark(env: TicTacToeEnv): 1 | 2 {
  return env.seat === 'X' ? 1 : 2;
}
/** Whether the agent has not placed a mark yet this game. */
function isMyOpening(env: TicTacToeEnv): boolean {
  const me = myMark(env);
  return !env.cells.some((c) => c === me);
}

/**
 * Win-stay / lose-shift over the opening cells `candidates`, perfect play after the opening. Within
 * one trial (one env) it replays an opening whose game it won (it wins only on its own move, so it
 * sees the win), else opens on a candidate not yet tried (at random), else on any candidate.
 */
export function openingSearchPlayer(candidates: readonly number[]): ScriptedPlayer {
  if (candidates.length === 0) throw new Error('openingSearchPlayer: needs at least one candidate cell');
  const memory = new WeakMap<TextEnv, { tried: Set<number>; won: Set<number>; current: number | null }>();
  return (e, _opponent, rng) => {
    const env = tttEnv(e);
    let m = memory.get(e);
    if (!m) memory.set(e, (m = { tried: new Set(), won: new Set(), current: null }));
    let cell: number;
    if (isMyOpening(env)) {
      const free = candidates.filter((c) => env.cells[c] === 0);
      const won = free.filter((c) => m.won.has(c));
      const fresh = free.filter((c) => !m.tried.has(c));
      const pool = won.length > 0 ? won : fresh.length > 0 ? fresh : free.length > 0 ? free : optimal(env);
      cell = pool[rng.int(pool.length)]!;
      m.current = cell;
      m.tried.add(cell);
    } else {
      cell = randomOptimal(env, rng);
    }
    if (m.current !== null && winner(playCell(env.cells, cell, myMark(env))) === myMark(env)) m.won.add(m.current);
    return actionFor(env, cell);
  };
}

/** Opens on the weak cell named by a `weak-c<N>` opponent (perfect play otherwise): knowing the opponent. */
export function toldOpeningPlayer(): ScriptedPlayer {
  return (e, opponent, rng) => {
    const env = tttEnv(e);
    const weak = weakOpeningCell(opponent);
    if (weak !== null && isMyOpening(env) && env.cells[weak] === 0) return actionFor(env, weak);
    return actionFor(env, randomOptimal(env, rng));
  };
}
