/**
 * Tic-tac-toe rules as pure functions. A board is 9 cells, row-major (cell = 3·(row−1) + (col−1)),
 * each 0 (empty), 1 (X) or 2 (O). X moves first.
 */
export type Mark = 1 | 2;
export type Cell = 0 | Mark;
export type Board = readonly Cell[];

export const EMPTY_BOARD: Board = [0, 0, 0, 0, 0, 0, 0, 0, 0];
export const LINES: readonly (readonly [number, number, number])[] = [
  [0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6],
];
export const MARK_NAMES = ['_', 'X', 'O'] as const;

export function other(m: Mark): Mark {
  return m === 1 ? 2 : 1;
}

/** The mark with three in a row, or 0. */
export function winner(b: Board): Cell {
  for (const [a, c, d] of LINES) if (b[a] !== 0 && b[a] === b[c] && b[a] === b[d]) return b[a];
  return 0;
}

export function emptyCells(b: Board): number[] {
  const out: number[] = [];
  for (let i = 0; i < 9; i++) if (b[i] === 0) out.push(i);
  return out;
}

export function isFull(b: Board): boolean {
  return b.every((c) => c !== 0);
}

export function isOver(b: Board): boolean {
  return winner(b) !== 0 || isFull(b);
}

/** Whose turn it is (X when the counts are equal). */
export function toMove(b: Board): Mark {
  let x = 0, o = 0;
  for (const c of b) { if (c === 1) x++; else if (c === 2) o++; }
  return x === o ? 1 : 2;
}

export function play(b: Board, cell: number, m: Mark): Cell[] {
  if (b[cell] !== 0) throw new Error(`tic-tac-toe: cell ${cell} is taken`);
  const next = b.slice() as Cell[];
  next[cell] = m;
  return next;
}

export function boardKey(b: Board): string {
  return b.join('');
}

/** `(row, col)` with 1-based row and column. */
export function cellToAction(cell: number): string {
  return `(${Math.floor(cell / 3) + 1}, ${(cell % 3) + 1})`;
}

/** Board as words: `X _ O / _ X _ / _ _ _`. */
export function renderBoard(b: Board): string {
  const rows: string[] = [];
  for (let r = 0; r < 3; r++) rows.push([0, 1, 2].map((c) => MARK_NAMES[b[3 * r + c]!]).join(' '));
  return rows.join(' / ');
}
