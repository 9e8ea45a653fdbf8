import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SokobanEnv, parseSokobanActions } from '../src/envs/sokoban.ts';
import { generateSokoban } from '../src/envs/sokoban-gen.ts';
import { solveSokoban } from '../src/envs/sokoban-solver.ts';
import { applyMove, isSolved, parseLevel, renderGrid, type SokobanPosition } from '../src/envs/sokoban-level.ts';
import { splitWords } from '../src/envs/text.ts';

// Box (1,2) → target (1,3) with one push right; box (3,2) → target (4,2) with down, down.
const TWO_PUSHES = parseLevel(['######', '#PBT_#', '#____#', '#_B__#', '#_T__#', '######']);
// Pushing the box right puts it against the right wall, on a column with no target: unsolvable, no corner.
const EDGE_TRAP = parseLevel(['######', '#____#', '#TPB_#', '#____#', '#*___#', '######']);

describe('sokoban solver and generator', () => {
  it('solves hand-made levels optimally', () => {
    expect(solveSokoban(TWO_PUSHES)).toEqual({ steps: 3, moves: ['right', 'down', 'down'] });
    expect(solveSokoban(EDGE_TRAP)!.steps).toBe(6); // up, right, right, down to get behind the box, then left, left
    const moved = applyMove(EDGE_TRAP, EDGE_TRAP, 'right')!;
    expect(solveSokoban(EDGE_TRAP, moved.position)).toBeNull();
  });

  it('emits only solvable levels within the step bounds, deterministically per seed (50 seeds)', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 50; seed++) {
      const g = generateSokoban(seed);
      const l = g.level;
      expect(l.width * l.height).toBe(36);
      expect(l.boxes).toHaveLength(2);
      expect(l.targets).toHaveLength(2);
      for (let i = 0; i < 36; i++) if (i < 6 || i >= 30 || i % 6 === 0 || i % 6 === 5) expect(l.walls[i]).toBe(true);
      expect(isSolved(l, l.boxes)).toBe(false);
      const sol = solveSokoban(l)!;
      expect(sol.steps).toBe(g.solutionSteps);
      expect(sol.steps).toBeGreaterThanOrEqual(5);
      expect(sol.steps).toBeLessThanOrEqual(21);
      // The reported solution really solves the level.
      let pos: SokobanPosition = l;
      for (const d of g.solution) pos = applyMove(l, pos, d)!.position;
      expect(isSolved(l, pos.boxes)).toBe(true);
      expect(renderGrid(generateSokoban(seed).level, l)).toBe(renderGrid(l, l));
      seen.add(renderGrid(l, l));
    }
    expect(seen.size).toBeGreaterThan(45);
  });

  it('honours minSolutionSteps and fails clearly on impossible bounds', () => {
    for (let seed = 0; seed < 10; seed++) expect(generateSokoban(seed, { minSolutionSteps: 9, reverseSteps: 60 }).solutionSteps).toBeGreaterThanOrEqual(9);
    expect(() => generateSokoban(1, { minSolutionSteps: 30, maxSolutionSteps: 40, maxAttempts: 20 })).toThrow(/loosen the bounds/);
  });
});

describe('sokoban env', () => {
  it('rewards every move of a 3-move turn: −0.1 each, +1 per box on target, +10 solved', () => {
    const env = new SokobanEnv({ level: TWO_PUSHES });
    expect(env.reset(0)).toBe('grid # # # # # # / # P B T _ # / # _ _ _ _ # / # _ B _ _ # / # _ T _ _ # / # # # # # # | boxes on target 0 of 2');
    const r = env.step('<action>right, down, down</action>');
    expect(r.reward).toBeCloseTo(-0.3 + 1 + 1 + 10, 9);
    expect(r).toMatchObject({ done: true, valid: true, observation: '' });
    expect(r.info).toMatchObject({ solved: true, moves: ['right', 'down', 'down'], optimalSteps: 3 });
    expect(env.won()).toBe(true);
    expect(env.episodeReturn()).toBeCloseTo(11.7, 9);
  });

  it('one move per turn gives the same total', () => {
    const env = new SokobanEnv({ level: TWO_PUSHES, maxActionsPerTurn: 1 });
    env.reset(0);
    const rewards = ['right', 'down', 'down'].map((d) => env.step(`<action>${d}</action>`).reward);
    expect(rewards).toEqual([0.9, -0.1, 10.9]);
    expect(env.episodeReturn()).toBeCloseTo(11.7, 9);
    env.reset(0);
    expect(env.step('<action>right, down</action>')).toMatchObject({ valid: false, reward: -0.1 }); // too many moves
  });

  it('pushing a box off its target into a corner: −1.1 and the episode ends stuck', () => {
    const env = new SokobanEnv({ level: TWO_PUSHES });
    env.reset(0);
    expect(env.step('right').reward).toBeCloseTo(0.9, 9);
    const r = env.step('right');
    expect(r.reward).toBeCloseTo(-1.1, 9);
    expect(r).toMatchObject({ done: true, valid: true });
    expect(r.info).toMatchObject({ dead: true, result: 'stuck' });
    expect(env.won()).toBe(false);
    expect(env.observe()).toMatch(/result stuck$/);
  });

  it('an unsolvable push that is not a corner is caught by the solver; later moves of the turn are ignored', () => {
    const env = new SokobanEnv({ level: EDGE_TRAP });
    env.reset(0);
    const r = env.step('<action>right, up, up</action>');
    expect(r.info).toMatchObject({ dead: true, moves: ['right'] });
    expect(r.reward).toBeCloseTo(-0.1, 9);
  });

  it('blocked and unparseable moves cost −0.1, change nothing and flag the turn; turns run out', () => {
    const env = new SokobanEnv({ level: TWO_PUSHES, maxTurns: 3 });
    const start = env.reset(0);
    let r = env.step('<action>up</action>'); // wall
    expect(r).toMatchObject({ reward: -0.1, valid: false, done: false, observation: start });
    r = env.step('<action>up, left</action>'); // both blocked
    expect(r).toMatchObject({ reward: -0.2, valid: false, observation: start });
    r = env.step('teleport');
    expect(r).toMatchObject({ reward: -0.1, valid: false, done: true });
    expect(r.info).toMatchObject({ result: 'out of turns', reason: 'unparseable action' });
    expect(env.episodeReturn()).toBeCloseTo(-0.4, 9);
    expect(env.step('right').valid).toBe(false);
  });

  it('restart replays the same generated level; seeds give different levels', () => {
    const env = new SokobanEnv();
    const first = env.reset(11);
    env.step('<action>left, left, up</action>');
    expect(env.restart()).toBe(first);
    expect(env.reset(12)).not.toBe(first);
    expect(env.reset(11)).toBe(first);
  });

  it('a solver-driven agent solves every generated level within the turn budget', () => {
    const env = new SokobanEnv();
    for (let seed = 0; seed < 20; seed++) {
      env.reset(seed);
      const moves = solveSokoban(env.level)!.moves;
      for (let i = 0; i < moves.length; i += 3) env.step(`<action>${moves.slice(i, i + 3).join(', ')}</action>`);
      expect(env.won()).toBe(true);
      // 10 + 2 boxes placed (minus any later lifted off and replaced) − 0.1 per move.
      expect(env.episodeReturn()).toBeGreaterThan(10);
    }
  });

  it('parser: commas or spaces, case-insensitive, last tag; never throws on garbage', () => {
    expect(parseSokobanActions('<action>Up, LEFT</action>')).toEqual(['up', 'left']);
    expect(parseSokobanActions('<action>down</action> then <action>right right</action>')).toEqual(['right', 'right']);
    expect(parseSokobanActions('up, up, up, up')).toBeNull();
    expect(parseSokobanActions('<action>north</action>')).toBeNull();
    const env = new SokobanEnv({ level: TWO_PUSHES });
    fc.assert(fc.property(fc.string({ maxLength: 120 }), (s) => {
      env.reset(0);
      const r = env.step(s);
      if (parseSokobanActions(s) === null) expect(r).toMatchObject({ valid: false, reward: -0.1 });
    }), { numRuns: 300 });
  });

  it('every word of rules, observations and actions is in the vocabulary', () => {
    const env = new SokobanEnv();
    const vocab = new Set(env.vocabulary());
    const check = (t: string) => { for (const w of splitWords(t)) expect(vocab.has(w), `missing word '${w}'`).toBe(true); };
    check(env.rules());
    check(new SokobanEnv({ maxActionsPerTurn: 1 }).rules());
    const dirs = ['up', 'down', 'left', 'right'];
    for (let seed = 0; seed < 30; seed++) {
      check(env.reset(seed));
      for (let i = 0; !env.done; i++) {
        env.legalActions().forEach(check);
        check(env.step(`<action>${dirs[(seed + i) % 4]}, ${dirs[(seed * 7 + i) % 4]}</action>`).observation);
      }
      check(env.observe());
    }
  });
});
