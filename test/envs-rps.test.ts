import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RpsEnv, parseRpsAction, rpsCeilings, rpsOpponent, rpsPayoff } from '../src/envs/rps.ts';
import { splitWords } from '../src/envs/text.ts';

describe('rock-paper-scissors', () => {
  it('payoffs and patterned opponents', () => {
    expect([rpsPayoff(1, 0), rpsPayoff(0, 1), rpsPayoff(2, 2), rpsPayoff(0, 2), rpsPayoff(2, 1)]).toEqual([1, -1, 0, 1, 1]);
    const rng = () => 0.5;
    const v = { agentMoves: [2, 1] as const, opponentMoves: [0, 0] as const };
    expect(rpsOpponent('rock').act(v, rng)).toBe('ROCK');
    expect(rpsOpponent('cycle').act(v, rng)).toBe('SCISSORS'); // third move of R, P, S
    expect(rpsOpponent('copy').act(v, rng)).toBe('PAPER'); // the agent's last move
    expect(rpsOpponent('counter').act(v, rng)).toBe('SCISSORS'); // beats PAPER
    expect(rpsOpponent('counter').act({ agentMoves: [], opponentMoves: [] }, rng)).toBe('PAPER');
  });

  it('a 3-round episode against copy: play what beats your own last move to win every round after the first', () => {
    const env = new RpsEnv({ opponent: 'copy' });
    expect(env.reset(0)).toBe('round 1 of 3 | history none | score 0 | actions ROCK PAPER SCISSORS');
    expect(env.step('<action>PAPER</action>').reward).toBe(1); // copy opens ROCK
    expect(env.step('SCISSORS').reward).toBe(1); // copy plays PAPER
    const r = env.step('<action>rock</action>'); // copy plays SCISSORS
    expect(r).toMatchObject({ reward: 1, done: true, observation: '' });
    expect(env.won()).toBe(true);
    expect(env.observe()).toBe('game over | history you PAPER opponent ROCK , you SCISSORS opponent PAPER , you ROCK opponent SCISSORS | score 3');
  });

  it('a pool member is drawn per seed and kept by restart; random replays exactly', () => {
    const env = new RpsEnv();
    const names = new Set<string>();
    for (let s = 0; s < 40; s++) {
      env.reset(s);
      const name = env.opponentName;
      names.add(name);
      env.step('ROCK');
      env.restart();
      expect(env.opponentName).toBe(name);
    }
    expect(names).toEqual(new Set(['rock', 'cycle', 'copy', 'counter']));
    const rnd = new RpsEnv({ opponent: 'random' });
    rnd.reset(9);
    const a = ['ROCK', 'PAPER', 'ROCK'].map((m) => rnd.step(m).info.opponentMove);
    rnd.restart();
    expect(['ROCK', 'PAPER', 'ROCK'].map((m) => rnd.step(m).info.opponentMove)).toEqual(a);
  });

  it('invalid answers: reward 0, round not played; the episode ends after maxInvalid; never throws', () => {
    const env = new RpsEnv({ opponent: 'rock', maxInvalid: 2 });
    const obs = env.reset(0);
    expect(env.step('lizard')).toMatchObject({ reward: 0, valid: false, done: false, observation: obs });
    expect(env.step('<action>spock</action>')).toMatchObject({ reward: 0, valid: false, done: true });
    fc.assert(fc.property(fc.string({ maxLength: 60 }), (s) => {
      env.reset(1);
      expect(env.step(s).valid).toBe(parseRpsAction(s) !== null);
    }), { numRuns: 200 });
  });

  it('ceilings: knowing the pattern wins every round; one fixed strategy cannot (hand-checked 1-round value 3/4)', () => {
    const pool = ['rock', 'cycle', 'copy', 'counter'].map((name) => ({ name, weight: 1 }));
    expect(rpsCeilings(pool, 1)).toEqual({ adaptive: 1, nonAdaptive: 0.75 }); // PAPER beats three ROCK openers, ties counter's PAPER
    const c3 = rpsCeilings(pool, 3);
    expect(c3.adaptive).toBe(3);
    expect(c3.nonAdaptive).toBeLessThan(3);
    expect(c3.nonAdaptive).toBeGreaterThan(0.75);
    expect(rpsCeilings([{ name: 'random', weight: 1 }], 3)).toEqual({ adaptive: 0, nonAdaptive: 0 });
  });

  it('every word is in the vocabulary', () => {
    const env = new RpsEnv({ opponent: 'counter' });
    const vocab = new Set(env.vocabulary());
    const check = (t: string) => { for (const w of splitWords(t)) expect(vocab.has(w), `missing '${w}'`).toBe(true); };
    check(env.rules());
    for (let s = 0; s < 10; s++) {
      check(env.reset(s));
      const moves = ['ROCK', 'PAPER', 'SCISSORS', 'x'];
      for (let i = 0; !env.done; i++) check(env.step(moves[(s + i) % 4]!).observation);
      check(env.observe());
    }
  });
});
