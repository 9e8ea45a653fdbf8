/**
 * A frozen population member playing tic-tac-toe as an opponent.
 *
 * What the snapshot sees: the board from its own side and its own mark — exactly the observation
 * TicTacToeEnv shows an agent in that seat — inside the prompt the agent itself would get on the
 * first episode of a trial (runTrial's play prompt, no past episodes, no `tried` markers):
 *
 *   [rules] | trial 1 of K | now moves <its own earlier moves> | c1_me c2_no … c9_op ->
 *
 * The prompt is runTrial's own `playPrompt`. Its own earlier moves (`<board then> -> c5`, per
 * historyWindow/obsWindow) are rebuilt from the game's placements, which TicTacToeEnv passes in
 * `TttState.moves`: the board alone does not say in which order the marks were placed.
 *
 * Only the token observation (`envOptions.observation: token`) is supported. In the text one the
 * agent writes `(row, col)` in two constrained slots, row then column, so its answer can name a
 * taken cell (a forfeited move) — a move an opponent object cannot make.
 *
 * The action: the prompt (left-truncated as runTrial does) plus `<action>` is prefilled through a
 * frozen copy of the weights on a one-slot KV cache, and the move is drawn from the tempered
 * softmax of the logits of the EMPTY cells' words — the distribution the agent's constrained decoder
 * samples its move word from (its slot after `<action>` allows exactly the legal cells). A move
 * draws exactly one number from the rng it is given, so with the env's per-position stream it is
 * deterministic. Distributions are memoised per prompt (the weights never change): with
 * historyWindow 0, as the shipped configs, that is one per (board, mark) position.
 */
import type { Tokenizer } from '../../engine/types.ts';
import type { KVCache, Transformer } from '../../engine/model.ts';
import { samplingDistribution, type SamplingShape } from '../../engine/sampling.ts';
import { tokenIds } from '../../agents/constraints.ts';
import { playPrompt } from '../../agents/trial.ts';
import { cellWord, renderBoardTokens } from '../../envs/tictactoe.ts';
import { EMPTY_BOARD, boardKey, cellToAction, emptyCells, isOver, play, type Board } from '../../envs/ttt-game.ts';
import type { TttOpponent, TttState } from '../../envs/ttt-opponents.ts';
import { snapshotInputIds, snapshotSamplingShape, type SnapshotPromptConfig } from './kuhn-snapshot.ts';


/** The snapshot's own moves this game before `state`, each with the observation it moved from (as runTrial records them). */
export function tttOwnMoves(state: TttState): { obs: string; action: string }[] {
  const me = state.toMove;
  const moves: { obs: string; action: string }[] = [];
  let board: Board = EMPTY_BOARD;
  for (const p of state.moves ?? []) {
    if (p.mark === me) moves.push({ obs: renderBoardTokens(board, me), action: cellWord(p.cell) });
    board = play(board, p.cell, p.mark);
  }
  if (boardKey(board) !== boardKey(state.board)) {
    throw new Error(`TttSnapshotOpponent: the placements in state.moves give board ${boardKey(board)}, the state says ${boardKey(state.board)}`);
  }
  return moves;
}

/**
 * runTrial's first-episode play prompt for the player to move in `state` (see the file comment).
 * `rulesText` is TicTacToeEnv.rules() (used when `cfg.rules` is 'full').
 */
export function tttSnapshotPrompt(state: TttState, cfg: SnapshotPromptConfig, rulesText: string): string {
  let moves: { obs: string; action: string }[] = [];
  if (cfg.historyWindow > 0) {
    if (state.moves === undefined) throw new Error('TttSnapshotOpponent: the state has no move history (state.moves), which the prompt needs with trial.historyWindow > 0; play it through TicTacToeEnv');
    moves = tttOwnMoves(state);
  }
  return playPrompt(cfg, { rules: cfg.rules === 'full' ? rulesText : '', k: 0, moves, obs: renderBoardTokens(state.board, state.toMove) });
}

export interface TttSnapshotOptions {
  prompt: SnapshotPromptConfig;
  /** TicTacToeEnv.rules() of the env the snapshot was trained on (shown when prompt.rules is 'full'). */
  rulesText: string;
  /** Sampling temperature of the move word (the agent's trial temperature). Default 1. */
  temperature?: number;
  /** The agent's trial top-k / top-p (vLLM's top_k / top_p), applied to the legal cells. Default off. */
  topK?: number;
  topP?: number;
  /** The env's observation mode; only 'token' is supported (see the file comment). Default 'token'. */
  observation?: 'text' | 'token';
}

/** Memoised distributions kept at most (a few thousand positions, more with historyWindow > 0). */
const MAX_MEMO = 20_000;

export class TttSnapshotOpponent implements TttOpponent {
  private readonly cache: KVCache;
  private readonly memo = new Map<string, Float64Array>();
  private readonly openId: number;
  private readonly cellIds: number[];
  private readonly shape: SamplingShape;

  /** `model` must hold the frozen weights and must not be trained or shared with an engine. */
  constructor(readonly name: string, readonly model: Transformer, readonly tokenizer: Tokenizer, private readonly opts: TttSnapshotOptions) {
    if ((opts.observation ?? 'token') !== 'token') throw new Error(`TttSnapshotOpponent: only envOptions.observation 'token' is supported, got '${opts.observation}' (with 'text' the agent answers (row, col) in two slots and can name a taken cell, which an opponent cannot play)`);
    this.shape = snapshotSamplingShape('TttSnapshotOpponent', opts);
    this.openId = tokenIds(tokenizer, ['<action>'])[0]!;
    this.cellIds = tokenIds(tokenizer, Array.from({ length: 9 }, (_, c) => cellWord(c)));
    this.cache = model.newKVCache(1);
  }

  /** The text the snapshot reads at `state` (before the `<action>` token). */
  promptFor(state: TttState): string {
    return tttSnapshotPrompt(state, this.opts.prompt, this.opts.rulesText);
  }

  /** Token ids fed to the model: the prompt (left-truncated as runTrial does) then `<action>`. */
  inputIds(state: TttState): number[] {
    return snapshotInputIds(this.tokenizer.encode(this.promptFor(state)), this.model.config.contextLength, this.openId);
  }

  /**
   * Probability of each cell 0..8 (0 for taken cells): the distribution the agent's constrained
   * decoder samples from, i.e. the tempered softmax of the empty cells' logits, truncated by top-k /
   * top-p when the trial sets them.
   */
  cellProbabilities(state: TttState): Float64Array {
    if (isOver(state.board)) throw new Error(`${this.name}: asked to move on a finished board ${boardKey(state.board)}`);
    // The prompt fixes the distribution (it shows every cell's state), so it is the memo key.
    const key = this.promptFor(state);
    let p = this.memo.get(key);
    if (p === undefined) {
      const logits = this.model.prefill(this.cache, 0, this.inputIds(state));
      // In token-id order, so that ties at a top-k / top-p cut break as in the agent's sampler.
      const free = emptyCells(state.board).sort((a, b) => this.cellIds[a]! - this.cellIds[b]!);
      const q = samplingDistribution(free.map((c) => logits[this.cellIds[c]!]!), this.shape);
      p = new Float64Array(9);
      free.forEach((c, i) => (p![c] = q[i]!));
      if (this.memo.size >= MAX_MEMO) this.memo.delete(this.memo.keys().next().value!);
      this.memo.set(key, p);
    }
    return p;
  }

  /** Positions whose distribution is memoised. */
  get memoSize(): number {
    return this.memo.size;
  }

  move(state: TttState, rng: () => number): number {
    const p = this.cellProbabilities(state);
    const u = rng();
    let acc = 0, last = -1;
    for (let c = 0; c < 9; c++) {
      if (p[c]! <= 0) continue;
      acc += p[c]!;
      last = c;
      if (u < acc) return c;
    }
    return last; // u within rounding of 1
  }

  act(state: TttState, rng: () => number): string {
    return cellToAction(this.move(state, rng));
  }
}
