/**
 * Breadth-first Sokoban solver over (player, boxes) states: returns an optimal solution in moves
 * (every step counts, pushes and walks alike), or null when the position has no solution.
 * States with a box cornered off target are pruned (they can never be solved).
 */
import {
  DIRECTIONS, applyMove, isCornered, isSolved,
  type Direction, type SokobanLevel, type SokobanPosition,
} from './sokoban-level.ts';

export interface SokobanSolution {
  steps: number;
  moves: Direction[];
}

export interface SolveOptions {
  /** Give up (throw) after expanding this many states. Default 2,000,000. */
  maxStates?: number;
}

function encode(pos: SokobanPosition, cells: number): number {
  let key = pos.player;
  for (const b of pos.boxes) key = key * cells + b;
  return key;
}

export function solveSokoban(level: SokobanLevel, from: SokobanPosition = level, opts: SolveOptions = {}): SokobanSolution | null {
  const maxStates = opts.maxStates ?? 2_000_000;
  const cells = level.width * level.height;
  if (Math.pow(cells, from.boxes.length + 1) > Number.MAX_SAFE_INTEGER) throw new Error('solveSokoban: level too large to encode states exactly');
  const start: SokobanPosition = { player: from.player, boxes: from.boxes.slice().sort((a, b) => a - b) };
  if (isSolved(level, start.boxes)) return { steps: 0, moves: [] };
  if (start.boxes.some((b) => isCornered(level, b))) return null;

  const parent = new Map<number, { prev: number; dir: Direction }>();
  const startKey = encode(start, cells);
  parent.set(startKey, { prev: -1, dir: 'up' });
  let frontier: { key: number; pos: SokobanPosition }[] = [{ key: startKey, pos: start }];
  while (frontier.length > 0) {
    const next: typeof frontier = [];
    for (const { key, pos } of frontier) {
      for (const dir of DIRECTIONS) {
        const moved = applyMove(level, pos, dir);
        if (moved === null) continue;
        if (moved.push && isCornered(level, moved.push.to)) continue;
        const k = encode(moved.position, cells);
        if (parent.has(k)) continue;
        parent.set(k, { prev: key, dir });
        if (parent.size > maxStates) throw new Error(`solveSokoban: more than ${maxStates} states; raise maxStates or use a smaller level`);
        if (moved.push && isSolved(level, moved.position.boxes)) return reconstruct(parent, k);
        next.push({ key: k, pos: moved.position });
      }
    }
    frontier = next;
  }
  return null;
}

function reconstruct(parent: Map<number, { prev: number; dir: Direction }>, end: number): SokobanSolution {
  const moves: Direction[] = [];
  for (let k = end; ; ) {
    const p = parent.get(k)!;
    if (p.prev < 0) break;
    moves.push(p.dir);
    k = p.prev;
  }
  moves.reverse();
  return { steps: moves.length, moves };
}
