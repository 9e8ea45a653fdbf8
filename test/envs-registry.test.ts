import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ENV_NAMES, listOpponents, makeEnv } from '../src/envs/registry.ts';
import { splitWords } from '../src/envs/text.ts';

describe('env registry', () => {
  it('builds every env by name with opponents by name', () => {
    expect(ENV_NAMES).toEqual(['kuhn', 'tictactoe', 'sokoban', 'bandit', 'rps']);
    for (const name of listOpponents('kuhn')) expect(makeEnv('kuhn', { opponent: name, seat: 1 }).opponentName).toBe(name);
    for (const name of listOpponents('tictactoe')) expect(makeEnv('tictactoe', { opponent: name }).opponentName).toBe(name);
    expect(makeEnv('tictactoe', { opponent: 'mcts-1000' }).opponentName).toBe('mcts-1000');
    expect(listOpponents('sokoban')).toEqual([]);
    expect(makeEnv('bandit', { arms: 4 }).arms).toEqual(['A', 'B', 'C', 'D']);
    expect(makeEnv('rps', { opponent: ['rock', 'copy'] }).pool).toEqual(['rock', 'copy']);
    expect(listOpponents('rps')).toContain('counter');
  });

  it('rejects unknown envs, opponents and option keys with a message that names them', () => {
    expect(() => makeEnv('chess')).toThrow(/unknown environment 'chess'.*kuhn/);
    expect(() => makeEnv('kuhn', { opponent: 'shark' })).toThrow(/unknown opponent 'shark'/);
    expect(() => makeEnv('sokoban', { maxTurn: 3 })).toThrow(/invalid options.*maxTurn/);
    expect(() => makeEnv('tictactoe', { seat: 'Y' })).toThrow(/seat/);
    expect(() => listOpponents('go')).toThrow(/unknown environment/);
  });

  it('every env: step never throws on arbitrary text, flags garbage, and restart replays the first observation', () => {
    for (const name of ENV_NAMES) {
      const env = makeEnv(name);
      fc.assert(fc.property(fc.integer({ min: 0, max: 1e9 }), fc.array(fc.string({ maxLength: 60 }), { maxLength: 6 }), (seed, outputs) => {
        const first = env.reset(seed);
        for (const out of outputs) {
          const r = env.step(out);
          expect(typeof r.reward).toBe('number');
          expect(Number.isFinite(r.reward)).toBe(true);
          if (r.done) expect(r.observation).toBe('');
        }
        expect(env.restart()).toBe(first);
      }), { numRuns: 60 });
      env.reset(0);
      expect(env.step('%%% not an action %%%').valid, name).toBe(false);
      const vocab = new Set(env.vocabulary());
      for (const w of splitWords(env.rules())) expect(vocab.has(w)).toBe(true);
    }
  });

  it('step before reset and after the end is flagged, not thrown', () => {
    for (const name of ENV_NAMES) {
      const env = makeEnv(name);
      expect(env.step('anything')).toMatchObject({ valid: false, done: true });
      expect(() => env.restart()).toThrow(/reset/);
      expect(() => env.observe()).toThrow(/reset/);
    }
  });
});
