/**
 * Does knowing which cell-priority player you face (what past games can teach in tic-tac-toe's
 * `new_state` trials) win more than one policy that does not know it? Exact, by game-tree search.
 *
 * The opponents are deterministic, so a policy that reacts to the moves of the current game can
 * tell them apart as soon as their moves differ. `jointValue` is the best such policy's total over
 * the family (it maximises once per position for every opponent still consistent with the game so
 * far); the sum of `jointValue` over single opponents is what a policy that knows the opponent gets.
 * Memory across games can only help where the first is smaller than the second.
 *
 *   node --import tsx examples/ttt-priority-value.ts
 */
import { PRIORITY_LISTS, minimaxSolver, type MinimaxSolver } from '../src/envs/ttt-opponents.ts';
import { LINES, emptyCells, isFull, other, play, winner, type Board, type Cell, type Mark } from '../src/envs/ttt-game.ts';

type Policy = (b: Board, me: Mark) => number;

/** The cell that completes a line of `m` (two marks and an empty cell), or null. */
function completing(b: Board, m: Mark): number | null {
  for (const line of LINES) {
    const cells = line.map((c) => b[c]);
    if (cells.filter((x) => x === m).length === 2 && cells.includes(0)) return line[cells.indexOf(0)]!;
  }
  return null;
}

const plain = (order: readonly number[]): Policy => (b) => order.find((c) => b[c] === 0)!;
/** Takes a win, else blocks the agent's win, else plays its priority order. */
const tactical = (order: readonly number[]): Policy => (b, me) => completing(b, me) ?? completing(b, other(me)) ?? plain(order)(b, me);

/** Who has won, except that `agent`'s three on line `blind` does not count. */
function winnerIgnoring(b: Board, agent: Mark, blind: number): Cell {
  for (let i = 0; i < LINES.length; i++) {
    const [a, c, d] = LINES[i]!;
    if (b[a] !== 0 && b[a] === b[c] && b[a] === b[d] && !(b[a] === agent && i === blind)) return b[a];
  }
  return 0;
}

/**
 * Perfect play (lowest cell among equal moves) in a game where the other side's three on line
 * `blind` does not count: the player never sees that line's threats, so it never blocks them.
 */
function blindSpot(blind: number): Policy {
  const solvers = new Map<Mark, MinimaxSolver>(); // one per agent seat: the rule depends on it
  return (b, me) => {
    const agent = other(me);
    let solver = solvers.get(agent);
    if (!solver) solvers.set(agent, (solver = minimaxSolver((x) => winnerIgnoring(x, agent, blind))));
    return solver.moves(b, me)[0]!;
  };
}

/** Best total score over `family` members `alive` of one policy that sees only the current game. */
function jointValue(family: Policy[], b: Board, agent: Mark, toMove: Mark, alive: number[], score: (result: number) => number): number {
  const w = winner(b);
  if (w !== 0 || isFull(b)) return alive.length * score(w === 0 ? 0 : w === agent ? 1 : -1);
  if (toMove !== agent) {
    const byReply = new Map<number, number[]>();
    for (const i of alive) {
      const c = family[i]!(b, toMove);
      byReply.set(c, [...(byReply.get(c) ?? []), i]);
    }
    let total = 0;
    for (const [c, group] of byReply) total += jointValue(family, play(b, c, toMove), agent, agent, group, score);
    return total;
  }
  return Math.max(...emptyCells(b).map((c) => jointValue(family, play(b, c, agent), agent, other(agent), alive, score)));
}

const EMPTY: Board = Array(9).fill(0) as Board;
const lists = Object.values(PRIORITY_LISTS);
const families: [string, Policy[]][] = [
  ['cell-priority (the new_state opponents)', lists.map(plain)],
  ['cell-priority that also wins and blocks', lists.map(tactical)],
  ['perfect players blind to one of the agent\'s lines', LINES.map((_, i) => blindSpot(i))],
];
for (const [familyName, family] of families) {
  console.log(`\n${familyName}, ${family.length} players`);
  for (const agent of [1, 2] as Mark[])
    for (const [what, score] of [['wins', (r: number) => (r > 0 ? 1 : 0)], ['wins + draws', (r: number) => (r >= 0 ? 1 : 0)]] as const) {
      const all = family.map((_, i) => i);
      const oneForAll = jointValue(family, EMPTY, agent, 1, all, score);
      const knowing = all.map((i) => jointValue(family, EMPTY, agent, 1, [i], score));
      console.log(`  agent ${agent === 1 ? 'X (moves first)' : 'O (moves second)'}, ${what}: one policy ${oneForAll}/${family.length}, knowing the opponent ${knowing.reduce((a, b) => a + b, 0)}/${family.length}`);
    }
}
