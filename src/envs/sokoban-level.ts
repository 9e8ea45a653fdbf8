/**
 * Sokoban positions and moves as pure functions. Cells are row-major indices; a position is the
 * static level (walls, targets) plus the movable part (player, boxes).
 *
 * Symbols (rendering and parsing): `#` wall, `_` floor, `T` target, `P` player, `+` player on a
 * target, `B` box, `*` box on a target.
 */

export type Direction = 'up' | 'down' | 'left' | 'right';
export const DIRECTIONS: readonly Direction[] = ['up', 'down', 'left', 'right'];

export interface SokobanLevel {
  width: number;
  height: number;
  walls: readonly boolean[];
  targets: readonly number[];
  boxes: readonly number[];
  player: number;
}

export interface SokobanPosition {
  player: number;
  /** Box cells, sorted ascending. */
  boxes: readonly number[];
}

export const SYMBOLS = ['#', '_', 'T', 'P', '+', 'B', '*'] as const;

/** Neighbouring cell in a direction, or −1 off the grid. */
export function neighbour(level: Pick<SokobanLevel, 'width' | 'height'>, cell: number, dir: Direction): number {
  const r = Math.floor(cell / level.width), c = cell % level.width;
  const [dr, dc] = dir === 'up' ? [-1, 0] : dir === 'down' ? [1, 0] : dir === 'left' ? [0, -1] : [0, 1];
  const nr = r + dr, nc = c + dc;
  if (nr < 0 || nr >= level.height || nc < 0 || nc >= level.width) return -1;
  return nr * level.width + nc;
}

export const OPPOSITE: Readonly<Record<Direction, Direction>> = { up: 'down', down: 'up', left: 'right', right: 'left' };

export function isBlocked(level: SokobanLevel, cell: number): boolean {
  return cell < 0 || level.walls[cell] === true;
}

export interface MoveResult {
  position: SokobanPosition;
  /** The box that was pushed, if any. */
  push: { from: number; to: number } | null;
}

/** Apply a move; null when it is blocked (wall, or a box that cannot be pushed). */
export function applyMove(level: SokobanLevel, pos: SokobanPosition, dir: Direction): MoveResult | null {
  const next = neighbour(level, pos.player, dir);
  if (isBlocked(level, next)) return null;
  const boxIndex = pos.boxes.indexOf(next);
  if (boxIndex < 0) return { position: { player: next, boxes: pos.boxes }, push: null };
  const beyond = neighbour(level, next, dir);
  if (isBlocked(level, beyond) || pos.boxes.includes(beyond)) return null;
  const boxes = pos.boxes.slice();
  boxes[boxIndex] = beyond;
  boxes.sort((a, b) => a - b);
  return { position: { player: next, boxes }, push: { from: next, to: beyond } };
}

export function boxesOnTargets(level: SokobanLevel, boxes: readonly number[]): number {
  return boxes.filter((b) => level.targets.includes(b)).length;
}

export function isSolved(level: SokobanLevel, boxes: readonly number[]): boolean {
  return boxesOnTargets(level, boxes) === level.targets.length;
}

/** A box off target with walls on two adjacent sides can never move again. */
export function isCornered(level: SokobanLevel, box: number): boolean {
  if (level.targets.includes(box)) return false;
  const vertical = isBlocked(level, neighbour(level, box, 'up')) || isBlocked(level, neighbour(level, box, 'down'));
  const horizontal = isBlocked(level, neighbour(level, box, 'left')) || isBlocked(level, neighbour(level, box, 'right'));
  return vertical && horizontal;
}

/** Rows of space-separated symbols joined by ` / `. */
export function renderGrid(level: SokobanLevel, pos: SokobanPosition): string {
  const rows: string[] = [];
  for (let r = 0; r < level.height; r++) {
    const row: string[] = [];
    for (let c = 0; c < level.width; c++) {
      const i = r * level.width + c;
      const target = level.targets.includes(i);
      if (level.walls[i]) row.push('#');
      else if (pos.boxes.includes(i)) row.push(target ? '*' : 'B');
      else if (pos.player === i) row.push(target ? '+' : 'P');
      else row.push(target ? 'T' : '_');
    }
    rows.push(row.join(' '));
  }
  return rows.join(' / ');
}

/** Parse rows of symbols (spaces optional), e.g. `['######', '#P_B_#', …]`. */
export function parseLevel(rows: readonly string[]): SokobanLevel {
  const grid = rows.map((r) => r.replace(/\s+/g, ''));
  const height = grid.length, width = grid[0]?.length ?? 0;
  if (height === 0 || width === 0 || grid.some((r) => r.length !== width)) throw new Error('parseLevel: rows must be non-empty and of equal length');
  const walls: boolean[] = [], targets: number[] = [], boxes: number[] = [];
  let player = -1;
  grid.forEach((row, r) => [...row].forEach((ch, c) => {
    const i = r * width + c;
    walls.push(ch === '#');
    if (ch === 'T' || ch === '+' || ch === '*') targets.push(i);
    if (ch === 'B' || ch === '*') boxes.push(i);
    if (ch === 'P' || ch === '+') { if (player >= 0) throw new Error('parseLevel: more than one player'); player = i; }
    if (!(SYMBOLS as readonly string[]).includes(ch)) throw new Error(`parseLevel: unknown symbol '${ch}' (use ${SYMBOLS.join(' ')})`);
  }));
  if (player < 0) throw new Error('parseLevel: no player (P or +)');
  if (boxes.length !== targets.length) throw new Error(`parseLevel: ${boxes.length} boxes but ${targets.length} targets`);
  return { width, height, walls, targets, boxes: boxes.sort((a, b) => a - b), player };
}
