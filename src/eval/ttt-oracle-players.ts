/**
 * Tic-tac-toe reference players, played on the same evaluation trials as the trained policies (so
 * every comparison with them is paired per trial):
 * - `minimax`: a perfect player, ties among optimal moves broken at random — it never loses, and
 *   what it wins against MCTS-100 in one game is what flawless play without memory gets;
 * - `minimax-retry`: the same, but in a same_state trial it remembers the cells it played from each
 *   position in earlier episodes and prefers an optimal cell it has not tried there yet — perfect
 *   play plus the simplest use of the past, a reference for what adaptation across retries can add.
 */
import type { TextEnv } from '../envs/types.ts';
import type { Rng } from '../core/rng.ts';
import { TicTacToeEnv, parseTttAction } from '../envs/tictactoe.ts';
import { boardKey } from '../envs/ttt-game.ts';
import { minimaxMoves } from '../envs/ttt-opponents.ts';
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

/** Perfect play, random among optimal moves. */
export function minimaxOraclePlayer(): ScriptedPlayer {
  return (e, _opponent, rng) => {
    const env = tttEnv(e);
    const moves = optimal(env);
    return actionFor(env, moves[rng.int(moves.length)]!);
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
