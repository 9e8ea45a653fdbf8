import { describe, expect, it } from 'vitest';
import { SokobanEnv, positionTokens, positionVocabulary } from '../src/envs/sokoban.ts';
import { parseLevel } from '../src/envs/sokoban-level.ts';
import { makeEnv } from '../src/envs/registry.ts';

const LEVEL = parseLevel([
  '######',
  '#P_BT#',
  '#____#',
  '#_#__#',
  '#____#',
  '######',
]);

describe("sokoban observation 'token'", () => {
  it('names player, box, target and interior walls by cell, then the box from the player and the target from the box', () => {
    const env = new SokobanEnv({ level: LEVEL, observation: 'token', maxActionsPerTurn: 1 });
    expect(env.reset(1)).toBe('p_1_1 b_1_3 t_1_4 w_3_2 pb_s0e2 bt_s0e1 | boxes on target 0 of 1');
    expect(env.step('<action> right </action>').observation).toBe('p_1_2 b_1_3 t_1_4 w_3_2 pb_s0e1 bt_s0e1 | boxes on target 0 of 1');
    const r = env.step('<action> right </action>');
    expect(r.done).toBe(true);
    expect(env.won()).toBe(true);
    expect(env.observe()).toBe('p_1_3 b_1_4 t_1_4 w_3_2 pb_s0e1 bt_s0e0 | boxes on target 1 of 1 | result solved');
  });

  it('relates each target to its nearest box (north and west offsets included)', () => {
    const level = parseLevel([
      '######',
      '#TB__#',
      '#____#',
      '#__BT#',
      '#P___#',
      '######',
    ]);
    // Boxes (1,2) and (3,3); player (4,1). Target (1,1) is nearest (1,2), target (3,4) nearest (3,3).
    expect(positionTokens(level, level)).toEqual(['p_4_1', 'b_1_2', 'b_3_3', 't_1_1', 't_3_4', 'pb_n3e1', 'pb_n1e2', 'bt_s0w1', 'bt_s0e1']);
  });

  it("the text observation is unchanged by default", () => {
    const env = new SokobanEnv({ level: LEVEL });
    expect(env.reset(1)).toBe('grid # # # # # # / # P _ B T # / # _ _ _ _ # / # _ # _ _ # / # _ _ _ _ # / # # # # # # | boxes on target 0 of 1');
  });

  it('every token of every generated position is in the vocabulary (with the fused move outcomes)', () => {
    const env = makeEnv('sokoban', { width: 6, height: 6, boxes: 1, internalWalls: [0, 2], minSolutionSteps: 3, maxSolutionSteps: 10, maxActionsPerTurn: 1, maxTurns: 12, observation: 'token' });
    const vocab = new Set(env.vocabulary());
    for (const w of ['up_lost', 'down_won', 'left_drew', 'right_lost']) expect(vocab.has(w)).toBe(true);
    for (let seed = 0; seed < 60; seed++) {
      let obs = env.reset(seed);
      for (let t = 0; t < 12; t++) {
        for (const w of obs.split(' ')) expect(vocab.has(w), `${w} (seed ${seed})`).toBe(true);
        const legal = env.legalActions();
        if (legal.length === 0) break;
        const r = env.step(legal[(seed + t) % legal.length]!);
        if (r.done) break;
        obs = r.observation;
      }
    }
    expect(positionVocabulary(6, 6)).toContain('pb_n5w5');
  });

  it('rejects an unknown observation kind, naming the option', () => {
    expect(() => new SokobanEnv({ observation: 'grid' as never })).toThrow(/observation must be 'text' or 'token'/);
    expect(() => makeEnv('sokoban', { observation: 'grid' })).toThrow(/observation/);
  });
});
