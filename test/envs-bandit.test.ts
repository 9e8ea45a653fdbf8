import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BanditEnv, banditCeilings, parseBanditAction } from '../src/envs/bandit.ts';
import { splitWords } from '../src/envs/text.ts';

/** One seed per paying arm, so averages over arms are exact expectations. */
function seedsPerArm(arms: number): number[] {
  const env = new BanditEnv({ arms });
  const seeds: number[] = new Array(arms).fill(-1);
  for (let s = 0; seeds.includes(-1); s++) {
    env.reset(s);
    if (seeds[env.bestArm] === -1) seeds[env.bestArm] = s;
    if (s > 10_000) throw new Error('no seed found');
  }
  return seeds;
}

describe('bandit env', () => {
  it('pays 1 for the paying arm only, one pull per episode; restart keeps the paying arm', () => {
    const env = new BanditEnv({ arms: 3 });
    expect(env.reset(4)).toBe('choose one arm | arms A B C');
    const best = env.bestArm;
    const wrong = (best + 1) % 3;
    let r = env.step(`<action>${'ABC'[wrong]}</action>`);
    expect(r).toMatchObject({ reward: 0, done: true, valid: true, observation: '' });
    expect(env.won()).toBe(false);
    expect(env.observe()).toBe(`choose one arm | arms A B C | you pulled ${'ABC'[wrong]} | reward 0`);
    env.restart();
    expect(env.bestArm).toBe(best);
    r = env.step('ABC'[best]!.toLowerCase());
    expect(r.reward).toBe(1);
    expect(env.won()).toBe(true);
    expect(env.step('A').valid).toBe(false);
  });

  it('the paying arm is uniform across seeds', () => {
    const env = new BanditEnv({ arms: 3 });
    const counts = [0, 0, 0];
    for (let s = 0; s < 3000; s++) { env.reset(s); counts[env.bestArm]!++; }
    for (const c of counts) expect(Math.abs(c / 3000 - 1 / 3)).toBeLessThan(0.04);
  });

  it('invalid answers end the episode with reward 0; the parser never throws', () => {
    const env = new BanditEnv({ arms: 4 });
    env.reset(0);
    expect(env.step('<action>E</action>')).toMatchObject({ reward: 0, done: true, valid: false });
    expect(env.observe()).toMatch(/invalid answer \| reward 0$/);
    expect(parseBanditAction('<action>A</action><action>d</action>', 4)).toBe(3);
    expect(parseBanditAction('AB', 4)).toBeNull();
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
      env.reset(1);
      expect(env.step(s).valid).toBe(parseBanditAction(s, 4) !== null);
    }), { numRuns: 300 });
  });

  it('every word is in the vocabulary', () => {
    const env = new BanditEnv({ arms: 5 });
    const vocab = new Set(env.vocabulary());
    const check = (t: string) => { for (const w of splitWords(t)) expect(vocab.has(w), `missing '${w}'`).toBe(true); };
    check(env.rules());
    for (const a of ['A', 'E', 'zz']) { check(env.reset(3)); env.legalActions().forEach(check); check(env.step(a).observation); check(env.observe()); }
  });
});

describe('bandit ceilings', () => {
  it('closed forms for K = 3, N = 3', () => {
    const c = banditCeilings(3, 3);
    expect(c.adaptive.rewardPerEpisode).toEqual([1 / 3, 2 / 3, 1]);
    expect(c.adaptive.totalReward).toBeCloseTo(2, 12);
    expect(c.memoryless.totalReward).toBeCloseTo(1, 12);
    expect(c.memoryless.successByEpisode[2]).toBeCloseTo(19 / 27, 12);
    expect(c.openLoop.successByEpisode).toEqual(c.adaptive.successByEpisode);
  });

  it('an eliminating agent played in the env achieves the adaptive ceiling exactly', () => {
    for (const [arms, episodes] of [[3, 3], [4, 6], [2, 3]] as const) {
      const perEpisode = new Array(episodes).fill(0);
      for (const seed of seedsPerArm(arms)) {
        const env = new BanditEnv({ arms });
        env.reset(seed);
        const tried = new Set<number>();
        let known: number | null = null;
        for (let e = 0; e < episodes; e++) {
          if (e > 0) env.restart();
          const arm: number = known ?? [...Array(arms).keys()].find((a) => !tried.has(a))!;
          const r = env.step(`<action>${'ABCDEFGH'[arm]}</action>`).reward;
          tried.add(arm);
          if (r === 1) known = arm;
          perEpisode[e] += r / arms;
        }
      }
      const c = banditCeilings(arms, episodes).adaptive.rewardPerEpisode;
      perEpisode.forEach((v, e) => expect(v).toBeCloseTo(c[e]!, 12));
    }
  });

  it('memoryless: uniform pulls reach the success ceiling (exact enumeration) and a fixed arm gets 1/K', () => {
    const arms = 3, episodes = 3;
    const c = banditCeilings(arms, episodes).memoryless;
    for (let k = 0; k < episodes; k++) {
      let wins = 0, total = 0;
      // All pull sequences of length k+1, each equally likely under uniform pulls, for every paying arm.
      for (let best = 0; best < arms; best++) {
        for (let code = 0; code < arms ** (k + 1); code++) {
          const pulls = Array.from({ length: k + 1 }, (_, i) => Math.floor(code / arms ** i) % arms);
          total++;
          if (pulls.includes(best)) wins++;
        }
      }
      expect(wins / total).toBeCloseTo(c.successByEpisode[k]!, 12);
    }
    expect(c.rewardPerEpisode.every((r) => Math.abs(r - 1 / 3) < 1e-12)).toBe(true);
  });
});
