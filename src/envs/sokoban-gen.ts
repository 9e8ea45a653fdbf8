/**
 * Seeded Sokoban level generator by reverse play: boxes start on their targets and the player
 * walks backwards, pulling boxes; every reverse step is a legal forward step, so the resulting
 * level is solvable by construction. The BFS solver then measures the optimal solution length and
 * levels outside [minSolutionSteps, maxSolutionSteps] (or already solved) are redrawn.
 */
import { mulberry32, randInt, type RandomSource } from './rng.ts';
import { DIRECTIONS, isBlocked, isSolved, neighbour, type Direction, type SokobanLevel } from './sokoban-level.ts';
import { solveSokoban } from './sokoban-solver.ts';

export interface SokobanGenOptions {
  /** Grid size including the border walls. Default 6 × 6. */
  width?: number;
  height?: number;
  boxes?: number;
  /** Extra interior walls, drawn uniformly from [min, max]. Default [0, 3]. */
  internalWalls?: readonly [number, number];
  /** Reverse-play steps. Default 30. */
  reverseSteps?: number;
  /** Probability of pulling a box when one is behind the player. Default 0.8. */
  pullProbability?: number;
  minSolutionSteps?: number;
  maxSolutionSteps?: number;
  maxAttempts?: number;
}

export interface GeneratedLevel {
  level: SokobanLevel;
  /** An optimal solution (BFS). */
  solution: Direction[];
  solutionSteps: number;
  attempts: number;
}

export function generateSokoban(seed: number, opts: SokobanGenOptions = {}): GeneratedLevel {
  const o = {
    width: opts.width ?? 6, height: opts.height ?? 6, boxes: opts.boxes ?? 2,
    internalWalls: opts.internalWalls ?? [0, 3], reverseSteps: opts.reverseSteps ?? 30,
    pullProbability: opts.pullProbability ?? 0.8, minSolutionSteps: opts.minSolutionSteps ?? 5,
    maxSolutionSteps: opts.maxSolutionSteps ?? 21, maxAttempts: opts.maxAttempts ?? 1000,
  };
  if (o.width < 3 || o.height < 3) throw new Error('generateSokoban: width and height must be at least 3 (border walls included)');
  if (o.boxes < 1) throw new Error('generateSokoban: need at least one box');
  if (o.minSolutionSteps > o.maxSolutionSteps) throw new Error('generateSokoban: minSolutionSteps exceeds maxSolutionSteps');
  const rng = mulberry32(seed);
  for (let attempt = 1; attempt <= o.maxAttempts; attempt++) {
    const walls = drawRoom(rng, o.width, o.height, o.internalWalls);
    if (walls === null) continue;
    const level = reversePlay(rng, walls, o);
    if (level === null || isSolved(level, level.boxes)) continue;
    const sol = solveSokoban(level);
    if (sol === null) throw new Error('generateSokoban: reverse play produced an unsolvable level (bug)');
    if (sol.steps < o.minSolutionSteps || sol.steps > o.maxSolutionSteps) continue;
    return { level, solution: sol.moves, solutionSteps: sol.steps, attempts: attempt };
  }
  throw new Error(`generateSokoban: no level with ${o.minSolutionSteps}..${o.maxSolutionSteps} solution steps in ${o.maxAttempts} attempts; loosen the bounds or raise reverseSteps`);
}

/** Border walls plus a few interior walls that keep the floor connected; null if they split it. */
function drawRoom(rng: RandomSource, width: number, height: number, range: readonly [number, number]): boolean[] | null {
  const walls: boolean[] = [];
  for (let r = 0; r < height; r++) for (let c = 0; c < width; c++) walls.push(r === 0 || c === 0 || r === height - 1 || c === width - 1);
  const interior = walls.map((w, i) => (w ? -1 : i)).filter((i) => i >= 0);
  const k = range[0] + randInt(rng, range[1] - range[0] + 1);
  for (let n = 0; n < k; n++) walls[interior[randInt(rng, interior.length)]!] = true;
  return connected(walls, width, height) ? walls : null;
}

function connected(walls: readonly boolean[], width: number, height: number): boolean {
  const floor = walls.map((w, i) => (w ? -1 : i)).filter((i) => i >= 0);
  if (floor.length === 0) return false;
  const seen = new Set<number>([floor[0]!]);
  const stack = [floor[0]!];
  const dims = { width, height };
  while (stack.length > 0) {
    const c = stack.pop()!;
    for (const d of DIRECTIONS) {
      const n = neighbour(dims, c, d);
      if (n >= 0 && !walls[n] && !seen.has(n)) { seen.add(n); stack.push(n); }
    }
  }
  return seen.size === floor.length;
}

function reversePlay(
  rng: RandomSource, walls: boolean[],
  o: { width: number; height: number; boxes: number; reverseSteps: number; pullProbability: number },
): SokobanLevel | null {
  const floor = walls.map((w, i) => (w ? -1 : i)).filter((i) => i >= 0);
  if (floor.length < o.boxes + 1) return null;
  // Distinct targets (boxes start on them) and a player cell, by a partial shuffle.
  const cells = floor.slice();
  for (let i = 0; i <= o.boxes; i++) {
    const j = i + randInt(rng, cells.length - i);
    [cells[i], cells[j]] = [cells[j]!, cells[i]!];
  }
  const targets = cells.slice(0, o.boxes).sort((a, b) => a - b);
  const boxes = targets.slice();
  let player = cells[o.boxes]!;
  const base: SokobanLevel = { width: o.width, height: o.height, walls, targets, boxes: [], player: 0 };
  for (let s = 0; s < o.reverseSteps; s++) {
    const dir = DIRECTIONS[randInt(rng, DIRECTIONS.length)]!;
    const next = neighbour(base, player, dir);
    if (isBlocked(base, next) || boxes.includes(next)) continue;
    // Pull the box behind the player (the forward move pushes it back).
    const behind = neighbour(base, player, oppositeOf(dir));
    const bi = behind >= 0 ? boxes.indexOf(behind) : -1;
    if (bi >= 0 && rng() < o.pullProbability) boxes[bi] = player;
    player = next;
  }
  return { ...base, boxes: boxes.sort((a, b) => a - b), player };
}

function oppositeOf(d: Direction): Direction {
  return d === 'up' ? 'down' : d === 'down' ? 'up' : d === 'left' ? 'right' : 'left';
}
