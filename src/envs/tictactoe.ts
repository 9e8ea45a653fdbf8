/**
 * Tic-tac-toe as a text environment. The agent plays X (first) or O against a named opponent and
 * answers `<action>(row, col)</action>` (1-based). Reward on the final turn: +10 win, −10 loss,
 * 0 draw. An invalid move (unparseable, off the board or an occupied cell) is flagged
 * `valid: false` and forfeits the agent's move: no mark is placed and the opponent plays on (so it
 * can win). The turn passing matters: when the opponent waited instead, a policy learned to stall
 * with invalid moves until the turn cap declared a draw, rather than lose (docs/results/meta-rl.md).
 * After `maxTurns` (8) agent turns an unfinished game ends as a draw (reward 0, `info.truncated`).
 *
 * Replay: the seat ('random') is drawn from the reset seed; the opponent's reply to a board is
 * drawn from a stream keyed by (seed, board), so `restart()` replays the same opening and the
 * opponent answers the same position the same way in every episode of a trial.
 *
 * Observation 'token' (for tiny built-in models, as Kuhn's one-token information sets): the board
 * is 9 words, each fusing a cell and whose mark is on it *from the agent's side* — `c1_me`,
 * `c5_op`, `c9_no` (cells 1..9 row-major) — so the model reads a bag of cell states instead of
 * finding marks by position in a sentence, and X and O play the same board the same way. Actions
 * are one word per cell, `<action> c5 </action>`; the trial's constrained decoding then allows
 * exactly the empty cells (a `(row, col)` answer is decoded in slots, row then column, and a legal
 * row with a legal column can still name a taken cell).
 */
import type { StepResult, TextEnv } from './types.ts';
import { assertSeed, hashString, mixSeed, mulberry32 } from './rng.ts';
import { extractActionText, vocabularyOf } from './text.ts';
import {
  EMPTY_BOARD, MARK_NAMES, boardKey, cellToAction, emptyCells, isFull, other, play, renderBoard, winner,
  type Board, type Mark,
} from './ttt-game.ts';
import { resolveTttOpponent, type TttOpponent, type TttPlacement } from './ttt-opponents.ts';

export interface TicTacToeEnvOptions {
  /** Opponent name (see TTT_OPPONENT_NAMES, or mcts-<N>) or object. Default 'random'. */
  opponent?: string | TttOpponent;
  /** The agent's mark; 'random' draws it from the reset seed. Default 'random'. */
  seat?: 'X' | 'O' | 'random';
  /** Agent turns (valid or not) before an unfinished game is called a draw. Default 8. */
  maxTurns?: number;
  /** 'text' (default): `board X _ O / … | you are X | …`, actions `(row, col)`. 'token': see the header. */
  observation?: 'text' | 'token';
  /** Reward of a win (a loss gives minus this, a draw 0). Default 10. */
  rewardScale?: number;
}

export type TttResult = 'win' | 'loss' | 'draw';

const STREAM_SETUP = 1;
const STREAM_OPPONENT = 2;
const DEFAULT_WIN_REWARD = 10;

/** The word of cell `cell` (0..8) in token observations and actions: `c1`..`c9`. */
export function cellWord(cell: number): string {
  return `c${cell + 1}`;
}

/** Board as 9 words from `me`'s side: `c1_me c2_no … c9_op`. */
export function renderBoardTokens(b: Board, me: Mark): string {
  return b.map((c, i) => `${cellWord(i)}_${c === 0 ? 'no' : c === me ? 'me' : 'op'}`).join(' ');
}

export class TicTacToeEnv implements TextEnv {
  readonly name = 'tictactoe';
  readonly opponent: TttOpponent;
  private readonly seatOption: 'X' | 'O' | 'random';
  private readonly maxTurns: number;
  private readonly observation: 'text' | 'token';
  private readonly winReward: number;

  private seed: number | null = null;
  private mark: Mark = 1;
  private board: Board = EMPTY_BOARD;
  /** Every mark placed this episode, in order (passed to the opponent, see TttState.moves). */
  private placements: TttPlacement[] = [];
  private turns = 0;
  private invalidCount = 0;
  private result: TttResult | null = null;
  private truncated = false;
  private returnSum = 0;

  constructor(opts: TicTacToeEnvOptions = {}) {
    this.opponent = resolveTttOpponent(opts.opponent ?? 'random');
    this.seatOption = opts.seat ?? 'random';
    this.maxTurns = opts.maxTurns ?? 8;
    this.observation = opts.observation ?? 'text';
    this.winReward = opts.rewardScale ?? DEFAULT_WIN_REWARD;
    if (this.observation !== 'text' && this.observation !== 'token') throw new Error(`tictactoe: observation must be 'text' or 'token', got '${String(opts.observation)}'`);
    if (!(this.winReward > 0 && Number.isFinite(this.winReward))) throw new Error(`tictactoe: rewardScale must be a finite number > 0, got ${opts.rewardScale}`);
    if (!Number.isInteger(this.maxTurns) || this.maxTurns < 1) throw new Error(`tictactoe: maxTurns must be an integer ≥ 1, got ${opts.maxTurns}`);
  }

  get opponentName(): string { return this.opponent.name; }
  /** The agent's mark in the current episode. */
  get seat(): 'X' | 'O' { return this.mark === 1 ? 'X' : 'O'; }
  get cells(): Board { return this.board; }
  get done(): boolean { return this.result !== null; }
  get outcome(): TttResult | null { return this.result; }

  rules(): string {
    const answer = this.observation === 'token'
      ? 'the board is shown cell by cell , c1 to c9 row by row , me for your mark , op for the opponent and no for an empty cell . answer with <action> c5 </action> naming an empty cell'
      : 'the board is shown row by row , _ is an empty cell . answer with <action> (row, col) </action> where row and col are 1 2 or 3';
    return [
      'tic tac toe on a 3 by 3 board . X moves first and the players take turns .',
      'three of your marks in a row , column or diagonal wins .',
      `a win gives ${this.winReward} , a loss gives -${this.winReward} and a draw gives 0 .`,
      'an illegal move wastes your turn .',
      `after ${this.maxTurns} of your turns an unfinished game is a draw .`,
      answer,
    ].join(' ');
  }

  reset(seed: number): string {
    assertSeed(seed, 'tictactoe');
    this.seed = seed;
    const rng = mulberry32(mixSeed(seed, STREAM_SETUP));
    this.mark = this.seatOption === 'random' ? (rng() < 0.5 ? 1 : 2) : this.seatOption === 'X' ? 1 : 2;
    return this.start();
  }

  restart(): string {
    if (this.seed === null) throw new Error('tictactoe.restart: call reset(seed) first');
    return this.start();
  }

  private start(): string {
    this.board = EMPTY_BOARD;
    this.placements = [];
    this.turns = 0;
    this.invalidCount = 0;
    this.result = null;
    this.truncated = false;
    this.returnSum = 0;
    if (this.mark === 2) this.opponentMove();
    return this.observe();
  }

  private opponentMove(): void {
    const oppMark = other(this.mark);
    const rng = mulberry32(mixSeed(this.seed!, STREAM_OPPONENT, hashString(boardKey(this.board))));
    const cell = this.opponent.move({ board: this.board, toMove: oppMark, moves: this.placements.slice() }, rng);
    if (!Number.isInteger(cell) || cell < 0 || cell > 8 || this.board[cell] !== 0) {
      throw new Error(`tictactoe: opponent '${this.opponent.name}' chose illegal cell ${cell} on ${boardKey(this.board)}`);
    }
    this.board = play(this.board, cell, oppMark);
    this.placements.push({ cell, mark: oppMark });
  }

  /** The opponent's cells this episode, in order. */
  private opponentCells(): number[] {
    const theirs = other(this.mark);
    return this.placements.filter((p) => p.mark === theirs).map((p) => p.cell);
  }

  observe(): string {
    if (this.seed === null) throw new Error('tictactoe.observe: call reset(seed) first');
    if (this.observation === 'token') return this.result === null ? renderBoardTokens(this.board, this.mark) : `result_${this.result}`;
    const parts = [`board ${renderBoard(this.board)}`, `you are ${this.seat}`];
    const lastOpponentCell = this.opponentCells().at(-1);
    if (lastOpponentCell !== undefined) parts.push(`opponent played ${cellToAction(lastOpponentCell)}`);
    if (this.result === null) parts.push('your move');
    else parts.push(this.truncated ? 'out of turns | result draw' : `result ${this.result}`);
    return parts.join(' | ');
  }

  legalActions(): string[] {
    if (this.result !== null || this.seed === null) return [];
    return emptyCells(this.board).map(this.observation === 'token' ? cellWord : cellToAction);
  }

  step(actionText: string): StepResult {
    if (this.seed === null || this.result !== null) {
      return { reward: 0, done: true, valid: false, observation: '', info: { error: this.seed === null ? 'call reset(seed) first' : 'episode is over' } };
    }
    this.turns++;
    const cell = parseTttAction(actionText);
    if (cell === null || this.board[cell] !== 0) {
      this.invalidCount++;
      const reason = cell === null ? 'unparseable action' : 'cell is taken';
      // The move is forfeited, not waited for: the opponent plays.
      this.opponentMove();
      if (winner(this.board) === other(this.mark)) return { ...this.finish('loss', -this.winReward, reason), valid: false };
      if (isFull(this.board)) return { ...this.finish('draw', 0, reason), valid: false };
      return this.afterTurn(0, false, reason);
    }
    this.board = play(this.board, cell, this.mark);
    this.placements.push({ cell, mark: this.mark });
    if (winner(this.board) === this.mark) return this.finish('win', this.winReward);
    if (isFull(this.board)) return this.finish('draw', 0);
    this.opponentMove();
    if (winner(this.board) === other(this.mark)) return this.finish('loss', -this.winReward);
    if (isFull(this.board)) return this.finish('draw', 0);
    return this.afterTurn(0, true, null);
  }

  /** A turn that did not end the game: end it as a draw if the agent is out of turns. */
  private afterTurn(reward: number, valid: boolean, reason: string | null): StepResult {
    if (this.turns >= this.maxTurns) {
      this.truncated = true;
      const r = this.finish('draw', reward, reason);
      return { ...r, valid };
    }
    return { reward, done: false, valid, observation: this.observe(), info: this.info(reason) };
  }

  private finish(result: TttResult, reward: number, reason: string | null = null): StepResult {
    this.result = result;
    this.returnSum += reward;
    return { reward, done: true, valid: true, observation: '', info: this.info(reason) };
  }

  private info(reason: string | null): Record<string, unknown> {
    const info: Record<string, unknown> = {
      opponent: this.opponent.name, seat: this.seat, turns: this.turns, invalidCount: this.invalidCount, board: renderBoard(this.board),
    };
    if (reason) info.reason = reason;
    if (this.result !== null) { info.result = this.result; info.truncated = this.truncated; }
    return info;
  }

  /**
   * The finished episode as one token for trials with pastEpisodes 'outcome': the opponent's first
   * two cells and the result, e.g. `o5_1_loss` (`x` for a cell it never played) — enough to tell
   * the cell-priority players apart from one game (their first cells differ), nothing private.
   */
  episodeToken(): string {
    if (this.seed === null) throw new Error('tictactoe.episodeToken: call reset(seed) first');
    const cells = this.opponentCells();
    const cell = (i: number) => (cells[i] === undefined ? 'x' : String(cells[i]! + 1));
    return `o${cell(0)}_${cell(1)}_${this.result ?? 'draw'}`;
  }

  episodeTokenVocabulary(): string[] {
    const cells = ['x', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
    return cells.flatMap((a) => cells.flatMap((b) => (['win', 'loss', 'draw'] as const).map((r) => `o${a}_${b}_${r}`)));
  }

  won(): boolean { return this.result === 'win'; }
  episodeReturn(): number { return this.returnSum; }

  vocabulary(): string[] {
    const tokens = this.observation === 'token'
      // Cell states, actions, and each action fused with a past episode's end as trials show it (`c5_lost`, agents/trial.ts triedToken).
      ? Array.from({ length: 9 }, (_, i) => [cellWord(i), ...['me', 'op', 'no', 'won', 'drew', 'lost'].map((w) => `${cellWord(i)}_${w}`)]).flat().concat(['result_win', 'result_loss', 'result_draw', 'tried'])
      : [];
    return vocabularyOf([this.rules()], [
      '|', '/', 'board', ...MARK_NAMES, 'you', 'are', 'opponent', 'played', 'your', 'move', '(', ')', ',', '1', '2', '3',
      'result', 'win', 'loss', 'draw', 'out', 'of', 'turns', ...tokens,
    ]);
  }
}

/** Cell index 0..8 from `(row, col)` (also `row,col` or `row col`), 1-based, or a cell word `c1`..`c9`; null if unparseable or off the board. */
export function parseTttAction(raw: unknown): number | null {
  const text = extractActionText(raw);
  if (text === null) return null;
  const word = /^c([1-9])$/.exec(text);
  if (word) return Number(word[1]) - 1;
  const m = /^\(?\s*(\d+)\s*[,\s]\s*(\d+)\s*\)?\s*\.?$/.exec(text);
  if (!m) return null;
  const row = Number(m[1]), col = Number(m[2]);
  if (row < 1 || row > 3 || col < 1 || col > 3) return null;
  return 3 * (row - 1) + (col - 1);
}
