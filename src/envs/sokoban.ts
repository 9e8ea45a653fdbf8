/**
 * Sokoban as a text environment (6 × 6, 2 boxes by default, levels from the seeded reverse-play
 * generator). Up to `maxActionsPerTurn` (3) moves per turn, e.g. `<action>up, left</action>`;
 * every move is rewarded (unlike MAGE's released code, which kept only the last move's reward):
 * −0.1 per move, +1 box onto a target, −1 box off a target, +10 when solved. A blocked move (into
 * a wall, or pushing a box into a wall or box) costs −0.1, leaves the state unchanged and flags the
 * turn `valid: false`; unparseable text (or more than the allowed moves) is one invalid move
 * (−0.1, nothing applied). Moves after the episode ends in a turn are ignored.
 *
 * The episode ends when solved, when a push makes the level unsolvable (a box cornered off target,
 * or the BFS solver finds no solution: `info.dead`), or after `maxTurns` (7) turns.
 *
 * `observation: 'token'` (for tiny built-in models, as Kuhn's information-set token): the position
 * as a few fused tokens instead of a grid of symbols — where the player, each box, each target and
 * each interior wall is (`p_2_3`, `b_3_3`, `t_4_3`, `w_2_2`), then each box relative to the player
 * and each target relative to its nearest box (`pb_s1e0`: one row south, zero columns east). A
 * grid of symbols only says where a cell is by its place in the prompt, which moves with every
 * line of history; these tokens say it in the token itself, and the relative ones carry the push
 * geometry a move depends on. Border walls are not listed (every level has them).
 */
import type { StepResult, TextEnv } from './types.ts';
import { assertSeed, mixSeed } from './rng.ts';
import { extractActionText, vocabularyOf } from './text.ts';
import {
  DIRECTIONS, SYMBOLS, applyMove, boxesOnTargets, isCornered, isSolved, renderGrid,
  type Direction, type SokobanLevel, type SokobanPosition,
} from './sokoban-level.ts';
import { generateSokoban, type SokobanGenOptions } from './sokoban-gen.ts';
import { solveSokoban } from './sokoban-solver.ts';

export interface SokobanEnvOptions extends SokobanGenOptions {
  /** Play this level for every seed instead of generating one. */
  level?: SokobanLevel;
  /** Moves accepted per turn (1 = one move per turn). Default 3. */
  maxActionsPerTurn?: number;
  /** Turns per episode. Default 7. */
  maxTurns?: number;
  /** 'text' (a grid of symbols, default) or 'token' (fused position tokens; see the module comment). */
  observation?: 'text' | 'token';
}

export const SOKOBAN_REWARDS = { step: -0.1, boxOn: 1, boxOff: -1, solved: 10 } as const;

type End = 'solved' | 'stuck' | 'out of turns';

/** Rewards are sums of tenths; rounding keeps logs and comparisons free of float dust. */
const round = (x: number) => Math.round(x * 1e9) / 1e9;

export class SokobanEnv implements TextEnv {
  readonly name = 'sokoban';
  private readonly genOptions: SokobanGenOptions;
  private readonly fixedLevel: SokobanLevel | null;
  private readonly maxActions: number;
  private readonly maxTurns: number;
  private readonly observation: 'text' | 'token';

  private seed: number | null = null;
  private levelValue: SokobanLevel | null = null;
  private optimal = 0;
  private pos: SokobanPosition = { player: 0, boxes: [] };
  private turns = 0;
  private moves = 0;
  private end: End | null = null;
  private returnSum = 0;

  constructor(opts: SokobanEnvOptions = {}) {
    const { level, maxActionsPerTurn, maxTurns, observation, ...gen } = opts;
    this.genOptions = gen;
    this.fixedLevel = level ?? null;
    this.maxActions = maxActionsPerTurn ?? 3;
    this.maxTurns = maxTurns ?? 7;
    this.observation = observation ?? 'text';
    if (this.observation !== 'text' && this.observation !== 'token') throw new Error(`sokoban: observation must be 'text' or 'token', got '${String(observation)}'`);
    if (!Number.isInteger(this.maxActions) || this.maxActions < 1) throw new Error(`sokoban: maxActionsPerTurn must be an integer ≥ 1, got ${maxActionsPerTurn}`);
    if (!Number.isInteger(this.maxTurns) || this.maxTurns < 1) throw new Error(`sokoban: maxTurns must be an integer ≥ 1, got ${maxTurns}`);
  }

  /** The current level (initial boxes and player). */
  get level(): SokobanLevel {
    if (!this.levelValue) throw new Error('sokoban: call reset(seed) first');
    return this.levelValue;
  }
  get position(): SokobanPosition { return this.pos; }
  /** Optimal solution length of the level, in moves. */
  get optimalSteps(): number { return this.optimal; }
  get done(): boolean { return this.end !== null; }

  rules(): string {
    const r = SOKOBAN_REWARDS;
    return [
      'sokoban . you are P . push every box B onto a target T .',
      'walls # block you and the boxes . you can push one box at a time and can not pull boxes .',
      '_ is floor , * is a box on a target and + is you on a target . the grid is shown row by row .',
      `each move costs ${-r.step} , a box onto a target gives ${r.boxOn} , a box off a target costs ${-r.boxOff} and solving gives ${r.solved} .`,
      'a box stuck in a corner or an unsolvable position ends the game .',
      `you have ${this.maxTurns} turns .`,
      this.maxActions === 1
        ? 'answer with one move like <action> up </action> using up down left right'
        : `answer with up to ${this.maxActions} moves like <action> up , left </action> using up down left right`,
    ].join(' ');
  }

  reset(seed: number): string {
    assertSeed(seed, 'sokoban');
    this.seed = seed;
    if (this.fixedLevel) {
      const sol = solveSokoban(this.fixedLevel);
      if (sol === null) throw new Error('sokoban: the fixed level has no solution');
      this.levelValue = this.fixedLevel;
      this.optimal = sol.steps;
    } else {
      const g = generateSokoban(mixSeed(seed, 1), this.genOptions);
      this.levelValue = g.level;
      this.optimal = g.solutionSteps;
    }
    return this.start();
  }

  restart(): string {
    if (this.seed === null) throw new Error('sokoban.restart: call reset(seed) first');
    return this.start();
  }

  private start(): string {
    const l = this.level;
    this.pos = { player: l.player, boxes: l.boxes.slice().sort((a, b) => a - b) };
    this.turns = 0;
    this.moves = 0;
    this.end = null;
    this.returnSum = 0;
    return this.observe();
  }

  observe(): string {
    const l = this.level;
    const parts = [this.observation === 'token' ? positionTokens(l, this.pos).join(' ') : `grid ${renderGrid(l, this.pos)}`, `boxes on target ${boxesOnTargets(l, this.pos.boxes)} of ${l.targets.length}`];
    if (this.end !== null) parts.push(`result ${this.end}`);
    return parts.join(' | ');
  }

  legalActions(): string[] {
    if (this.end !== null || this.levelValue === null) return [];
    return DIRECTIONS.filter((d) => applyMove(this.levelValue!, this.pos, d) !== null);
  }

  step(actionText: string): StepResult {
    if (this.levelValue === null || this.end !== null) {
      return { reward: 0, done: true, valid: false, observation: '', info: { error: this.levelValue === null ? 'call reset(seed) first' : 'episode is over' } };
    }
    this.turns++;
    const parsed = parseSokobanActions(actionText, this.maxActions);
    let reward = 0;
    let valid = true;
    const applied: string[] = [];
    if (parsed === null) {
      valid = false;
      reward += SOKOBAN_REWARDS.step;
      this.moves++;
    } else {
      for (const dir of parsed) {
        if (this.end !== null) break;
        reward += this.move(dir, applied);
        if (applied.at(-1) === 'blocked') valid = false;
      }
    }
    if (this.end === null && this.turns >= this.maxTurns) this.end = 'out of turns';
    reward = round(reward);
    this.returnSum = round(this.returnSum + reward);
    const end = this.end as End | null; // set inside move(); TypeScript's narrowing cannot see that
    const done = end !== null;
    return {
      reward, done, valid, observation: done ? '' : this.observe(),
      info: {
        moves: applied, turns: this.turns, totalMoves: this.moves, optimalSteps: this.optimal,
        ...(parsed === null ? { reason: 'unparseable action' } : {}),
        ...(done ? { result: end, solved: end === 'solved', dead: end === 'stuck' } : {}),
      },
    };
  }

  /** One move; records what happened in `log` and returns its reward. */
  private move(dir: Direction, log: string[]): number {
    const l = this.levelValue!;
    this.moves++;
    const res = applyMove(l, this.pos, dir);
    if (res === null) { log.push('blocked'); return SOKOBAN_REWARDS.step; }
    let r = SOKOBAN_REWARDS.step;
    this.pos = res.position;
    if (res.push) {
      const wasOn = l.targets.includes(res.push.from), isOn = l.targets.includes(res.push.to);
      if (!wasOn && isOn) r += SOKOBAN_REWARDS.boxOn;
      if (wasOn && !isOn) r += SOKOBAN_REWARDS.boxOff;
      if (isSolved(l, this.pos.boxes)) {
        this.end = 'solved';
        r += SOKOBAN_REWARDS.solved;
      } else if (isCornered(l, res.push.to) || solveSokoban(l, this.pos) === null) {
        this.end = 'stuck';
      }
    }
    log.push(dir);
    return r;
  }

  won(): boolean { return this.end === 'solved'; }
  episodeReturn(): number { return this.returnSum; }

  vocabulary(): string[] {
    return vocabularyOf([this.rules()], [
      '|', '/', 'grid', ...SYMBOLS, 'boxes', 'on', 'target', 'of', 'result', 'solved', 'stuck', 'out', 'turns',
      ...DIRECTIONS, ',', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
      // Token observations are for tiny models that also read past moves as fused tokens
      // (trial pastEpisodes 'outcome', triedActions): `up_lost` etc. for every direction.
      ...(this.observation === 'token'
        ? [...positionVocabulary(this.genOptions.width ?? this.fixedLevel?.width ?? 6, this.genOptions.height ?? this.fixedLevel?.height ?? 6), ...DIRECTIONS.flatMap((d) => [`${d}_won`, `${d}_lost`, `${d}_drew`])]
        : []),
    ]);
  }
}

/**
 * Directions from `<action>up, left</action>` (commas and/or spaces, case-insensitive) or bare
 * text; null when empty, when a word is not a direction, or with more than `maxMoves` moves.
 */
export function parseSokobanActions(raw: unknown, maxMoves = 3): Direction[] | null {
  const text = extractActionText(raw);
  if (text === null) return null;
  const words = text.toLowerCase().replace(/\.$/, '').split(/[\s,;]+/).filter((w) => w.length > 0);
  if (words.length === 0 || words.length > maxMoves) return null;
  if (!words.every((w) => (DIRECTIONS as readonly string[]).includes(w))) return null;
  return words as Direction[];
}

const cellToken = (kind: string, level: Pick<SokobanLevel, 'width'>, cell: number) => `${kind}_${Math.floor(cell / level.width)}_${cell % level.width}`;

/** An offset as one word: rows south (s) or north (n), then columns east (e) or west (w), e.g. `s1e0`. */
function offsetWord(dr: number, dc: number): string {
  return `${dr >= 0 ? 's' : 'n'}${Math.abs(dr)}${dc >= 0 ? 'e' : 'w'}${Math.abs(dc)}`;
}

/**
 * The `observation: 'token'` rendering of a position: player, boxes, targets and interior walls as
 * cell tokens, then each box relative to the player (`pb_…`) and each target relative to its
 * nearest box (`bt_…`, ties to the lower cell index).
 */
export function positionTokens(level: SokobanLevel, pos: SokobanPosition): string[] {
  const rc = (cell: number) => [Math.floor(cell / level.width), cell % level.width] as const;
  const out = [cellToken('p', level, pos.player)];
  for (const b of pos.boxes) out.push(cellToken('b', level, b));
  for (const t of level.targets) out.push(cellToken('t', level, t));
  for (let i = 0; i < level.walls.length; i++) {
    const [r, c] = rc(i);
    const border = r === 0 || c === 0 || r === level.height - 1 || c === level.width - 1;
    if (level.walls[i] && !border) out.push(cellToken('w', level, i));
  }
  const [pr, pc] = rc(pos.player);
  for (const b of pos.boxes) {
    const [br, bc] = rc(b);
    out.push(`pb_${offsetWord(br - pr, bc - pc)}`);
  }
  for (const t of level.targets) {
    const [tr, tc] = rc(t);
    let best = pos.boxes[0]!, bestD = Infinity;
    for (const b of pos.boxes) {
      const [br, bc] = rc(b);
      const d = Math.abs(br - tr) + Math.abs(bc - tc);
      if (d < bestD) { best = b; bestD = d; }
    }
    const [br, bc] = rc(best);
    out.push(`bt_${offsetWord(tr - br, tc - bc)}`);
  }
  return out;
}

/** Every token `positionTokens` can produce on a width × height level. */
export function positionVocabulary(width: number, height: number): string[] {
  const words: string[] = [];
  for (let r = 0; r < height; r++) for (let c = 0; c < width; c++) for (const k of ['p', 'b', 't', 'w']) words.push(`${k}_${r}_${c}`);
  for (let dr = -(height - 1); dr <= height - 1; dr++) for (let dc = -(width - 1); dc <= width - 1; dc++) words.push(`pb_${offsetWord(dr, dc)}`, `bt_${offsetWord(dr, dc)}`);
  return [...new Set(words)];
}
