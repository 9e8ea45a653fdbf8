/**
 * Tic-tac-toe opponents: six cell-priority players, random, one-ply greedy, MCTS (UCT, random
 * rollouts) with a configurable number of simulations (`mcts-<N>`), and a perfect memoised minimax
 * player, and players that are perfect except against one hidden opening (`weak-c<N>`).
 * Every opponent draws its randomness only from the rng it is given.
 */
import type { Opponent } from './types.ts';
import { pick, type RandomSource } from './rng.ts';
import { boardKey, emptyCells, isFull, other, play, winner, type Board, type Cell, type Mark } from './ttt-game.ts';

/** One mark placed on the board. */
export interface TttPlacement {
  cell: number;
  mark: Mark;
}

/** What an opponent sees: the board and the mark it plays. */
export interface TttState {
  board: Board;
  toMove: Mark;
  /**
   * The marks placed this game so far, in order (TicTacToeEnv passes them; after a forfeited move
   * one side has placed twice in a row). Players that read only the board ignore it; a frozen
   * policy needs it to rebuild its own earlier moves (src/train/population/ttt-snapshot.ts).
   */
  moves?: readonly TttPlacement[];
}

/** A tic-tac-toe opponent; `move` returns a cell index 0..8, `act` its `(row, col)` form. */
export interface TttOpponent extends Opponent<TttState> {
  move(state: TttState, rng: RandomSource): number;
}

function withAct(name: string, move: (s: TttState, rng: RandomSource) => number): TttOpponent {
  return {
    name,
    move,
    act: (s, rng) => {
      const c = move(s, rng);
      return `(${Math.floor(c / 3) + 1}, ${(c % 3) + 1})`;
    },
  };
}

function assertPlayable(s: TttState, who: string): number[] {
  const free = emptyCells(s.board);
  if (free.length === 0 || winner(s.board) !== 0) throw new Error(`${who}: asked to move on a finished board ${boardKey(s.board)}`);
  return free;
}

/** Cell orders (0..8, row-major); each covers all 9 cells. */
export const PRIORITY_LISTS: Readonly<Record<string, readonly number[]>> = {
  'center-first': [4, 0, 2, 6, 8, 1, 3, 5, 7],
  'corners-first': [0, 2, 6, 8, 4, 1, 3, 5, 7],
  'edges-first': [1, 3, 5, 7, 4, 0, 2, 6, 8],
  'main-diagonal': [0, 4, 8, 2, 6, 1, 3, 5, 7],
  'anti-diagonal': [2, 4, 6, 0, 8, 1, 3, 5, 7],
  'bottom-right-first': [8, 7, 6, 5, 4, 3, 2, 1, 0],
};

/** Plays the first free cell of `order`; random among free cells only if the list misses them all. */
export function priorityPlayer(name: string, order: readonly number[]): TttOpponent {
  if (order.some((c) => !Number.isInteger(c) || c < 0 || c > 8)) throw new Error(`priorityPlayer '${name}': cells must be integers 0..8`);
  return withAct(name, (s, rng) => {
    const free = assertPlayable(s, name);
    for (const c of order) if (s.board[c] === 0) return c;
    return pick(rng, free);
  });
}

export function randomPlayer(): TttOpponent {
  return withAct('random', (s, rng) => pick(rng, assertPlayable(s, 'random')));
}

/**
 * One-ply greedy player: completes its own line when it can, else blocks the other side's
 * immediate win, else plays a random free cell. It punishes exactly a missed block: a probe (and a
 * training opponent) for whether a policy reads the board or plays a fixed move order
 * (docs/results/meta-rl-ttt-tuning.md).
 */
export function greedyPlayer(): TttOpponent {
  return withAct('greedy', (s, rng) => {
    const free = assertPlayable(s, 'greedy');
    const completes = (m: Mark) => free.filter((c) => winner(play(s.board, c, m)) === m);
    const win = completes(s.toMove);
    if (win.length > 0) return pick(rng, win);
    const block = completes(other(s.toMove));
    return pick(rng, block.length > 0 ? block : free);
  });
}

// ---------- minimax ----------

/** Exact game-tree search under one rule for who has won a position (`winner`, or a variant of it). */
export interface MinimaxSolver {
  /** Game-theoretic value of a position for the side to move (>0 win, 0 draw, <0 loss). */
  value(b: Board, m: Mark): number;
  /** All optimal cells for the side to move, lowest first. */
  moves(b: Board, m: Mark): number[];
}

/**
 * Negamax with its own memo. A win scores 1 + the number of empty cells left after the winning
 * move (so quicker wins score higher and slower losses are preferred), a draw 0. `result` decides
 * who has won a position; analysis players with a changed rule (examples/ttt-priority-value.ts)
 * pass their own.
 */
export function minimaxSolver(result: (b: Board) => Cell = winner): MinimaxSolver {
  const memo = new Map<string, number>();
  const negamax = (b: Board, m: Mark): number => {
    // The side to move is part of the key: after a forfeited move (tic-tac-toe env) the same board
    // can come up with either side to move, so the board alone does not determine it.
    const key = `${boardKey(b)}|${m}`;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    let best = -Infinity;
    for (const c of emptyCells(b)) best = Math.max(best, moveValue(b, c, m));
    memo.set(key, best);
    return best;
  };
  /** Value for `m` of playing cell `c` on `b`. */
  const moveValue = (b: Board, c: number, m: Mark): number => {
    const next = play(b, c, m);
    if (result(next) === m) return 1 + emptyCells(next).length;
    if (isFull(next)) return 0;
    return 0 - negamax(next, other(m)) || 0; // `|| 0` turns −0 into 0
  };
  return {
    value(b, m) {
      if (result(b) !== 0 || isFull(b)) throw new Error('minimaxValue: the game is over');
      return negamax(b, m);
    },
    moves(b, m) {
      const free = emptyCells(b);
      const values = free.map((c) => moveValue(b, c, m));
      const best = Math.max(...values);
      return free.filter((_, i) => values[i] === best);
    },
  };
}

const perfect = minimaxSolver();

/** Game-theoretic value of a position for the side to move (>0 win, 0 draw, <0 loss). */
export function minimaxValue(b: Board, m: Mark): number {
  return perfect.value(b, m);
}

/** All optimal cells for the side to move. */
export function minimaxMoves(b: Board, m: Mark): number[] {
  return perfect.moves(b, m);
}

/** Perfect player; ties among optimal moves are broken with the rng ('random') or by lowest cell ('first'). */
export function minimaxPlayer(tieBreak: 'random' | 'first' = 'random'): TttOpponent {
  return withAct('minimax', (s, rng) => {
    assertPlayable(s, 'minimax');
    const moves = minimaxMoves(s.board, s.toMove);
    return tieBreak === 'first' ? moves[0]! : pick(rng, moves);
  });
}

/** The weak cell (0..8) named by `weak-c<N>`, or null for any other name. */
export function weakOpeningCell(name: string): number | null {
  const w = /^weak-c([1-9])$/.exec(name);
  return w ? Number(w[1]) - 1 : null;
}

/**
 * `weak-c<N>`: perfect play (minimax, random ties) except in a game where the other side's first
 * mark is on cell N (1..9), where it plays at random. Which opening is the weak one is hidden from
 * the agent and, in a trial, fixed across its games: a test of adaptation in `new_state` (MAGE's
 * hidden-opponent variant) where one game's play cannot reveal the weakness before the opening is
 * committed, so only past games can (meta-rl.md §3″ shows the cell-priority players are beaten by
 * one reactive policy). Needs `state.moves` (TicTacToeEnv passes them) to know the opening.
 */
export function weakOpeningPlayer(cell: number): TttOpponent {
  if (!Number.isInteger(cell) || cell < 0 || cell > 8) throw new Error(`weakOpeningPlayer: cell must be an integer 0..8, got ${cell}`);
  const name = `weak-c${cell + 1}`;
  return withAct(name, (s, rng) => {
    const free = assertPlayable(s, name);
    if (s.moves === undefined) throw new Error(`${name}: needs the game's moves (state.moves) to know the opening`);
    const opening = s.moves.find((m) => m.mark !== s.toMove);
    if (opening?.cell === cell) return pick(rng, free);
    return pick(rng, minimaxMoves(s.board, s.toMove));
  });
}

// ---------- MCTS ----------

interface MctsNode {
  board: Board;
  /** The mark that moved into this node. */
  justMoved: Mark;
  move: number;
  parent: MctsNode | null;
  children: MctsNode[];
  untried: number[];
  visits: number;
  /** Sum of results for `justMoved` (win 1, draw 0.5, loss 0). */
  score: number;
}

function newNode(board: Board, justMoved: Mark, move: number, parent: MctsNode | null): MctsNode {
  const over = winner(board) !== 0 || isFull(board);
  return { board, justMoved, move, parent, children: [], untried: over ? [] : emptyCells(board), visits: 0, score: 0 };
}

/** UCT search from `state` with `simulations` playouts (one random rollout each); returns a cell. */
export function mctsMove(state: TttState, simulations: number, rng: RandomSource, c = 1.4): number {
  const root = newNode(state.board, other(state.toMove), -1, null);
  for (let i = 0; i < simulations; i++) {
    let node = root;
    // Selection: descend fully expanded nodes by UCT.
    while (node.untried.length === 0 && node.children.length > 0) {
      const logN = Math.log(node.visits);
      let best = node.children[0]!, bestU = -Infinity;
      for (const ch of node.children) {
        const u = ch.score / ch.visits + c * Math.sqrt(logN / ch.visits);
        if (u > bestU) { bestU = u; best = ch; }
      }
      node = best;
    }
    // Expansion: one untried move, chosen at random.
    if (node.untried.length > 0) {
      const k = Math.min(node.untried.length - 1, Math.floor(rng() * node.untried.length));
      const cell = node.untried.splice(k, 1)[0]!;
      const mover = other(node.justMoved);
      const child = newNode(play(node.board, cell, mover), mover, cell, node);
      node.children.push(child);
      node = child;
    }
    // Rollout: random moves to the end.
    let b = node.board as Board;
    let mover = other(node.justMoved);
    while (winner(b) === 0 && !isFull(b)) {
      b = play(b, pick(rng, emptyCells(b)), mover);
      mover = other(mover);
    }
    const w = winner(b);
    // Backpropagation, scored for the mark that moved into each node.
    for (let n: MctsNode | null = node; n !== null; n = n.parent) {
      n.visits++;
      n.score += w === 0 ? 0.5 : w === n.justMoved ? 1 : 0;
    }
  }
  if (root.children.length === 0) throw new Error('mcts: no legal move (is the game over?)');
  // Most visited child; ties go to the higher mean score, then the earlier expansion.
  let best = root.children[0]!;
  for (const ch of root.children) {
    if (ch.visits > best.visits || (ch.visits === best.visits && ch.score / ch.visits > best.score / best.visits)) best = ch;
  }
  return best.move;
}

export function mctsPlayer(simulations: number, c = 1.4): TttOpponent {
  if (!Number.isInteger(simulations) || simulations < 1) throw new Error(`mcts: simulations must be a positive integer, got ${simulations}`);
  return withAct(`mcts-${simulations}`, (s, rng) => {
    assertPlayable(s, `mcts-${simulations}`);
    return mctsMove(s, simulations, rng, c);
  });
}

// ---------- registry ----------

/** Fixed names; any `mcts-<N>` (N ≥ 1) and `weak-c<N>` (N in 1..9) are accepted too. */
export const TTT_OPPONENT_NAMES: readonly string[] = [...Object.keys(PRIORITY_LISTS), 'random', 'greedy', 'mcts-100', 'minimax', 'weak-c1'];

export function tttOpponent(name: string): TttOpponent {
  const order = PRIORITY_LISTS[name];
  if (order) return priorityPlayer(name, order);
  if (name === 'random') return randomPlayer();
  if (name === 'greedy') return greedyPlayer();
  if (name === 'minimax') return minimaxPlayer('random');
  const m = /^mcts-(\d+)$/.exec(name);
  if (m) return mctsPlayer(Number(m[1]));
  const weak = weakOpeningCell(name);
  if (weak !== null) return weakOpeningPlayer(weak);
  throw new Error(`tictactoe: unknown opponent '${name}'; choose one of ${TTT_OPPONENT_NAMES.join(', ')}, mcts-<simulations> or weak-c<1..9>`);
}

export function resolveTttOpponent(o: string | TttOpponent): TttOpponent {
  return typeof o === 'string' ? tttOpponent(o) : o;
}
