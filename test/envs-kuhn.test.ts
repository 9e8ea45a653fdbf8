import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KuhnEnv, parseKuhnAction } from '../src/envs/kuhn.ts';
import { DEALS, payoffP0, TERMINAL_HISTORIES, type KuhnCard, type KuhnSeat } from '../src/envs/kuhn-game.ts';
import { KUHN_GAME_VALUE_P0, kuhnCfrSolution, solveKuhnCfr } from '../src/envs/kuhn-cfr.ts';
import { KUHN_OPPONENT_NAMES, kuhnOpponent, type KuhnOpponent } from '../src/envs/kuhn-opponents.ts';
import { bestResponseValue, nonAdaptiveCeiling, winnability, winnabilityByDeal } from '../src/envs/kuhn-oracles.ts';
import { splitWords } from '../src/envs/text.ts';
import { mulberry32 } from '../src/envs/rng.ts';

/** Chips to P0, written out by hand: [P0 card, P1 card] → terminal history → payoff. */
const PAYOFF_TABLE: Record<string, Record<string, number>> = {
  'J,Q': { PP: -1, BP: 1, BB: -2, PBP: -1, PBB: -2 },
  'J,K': { PP: -1, BP: 1, BB: -2, PBP: -1, PBB: -2 },
  'Q,J': { PP: 1, BP: 1, BB: 2, PBP: -1, PBB: 2 },
  'Q,K': { PP: -1, BP: 1, BB: -2, PBP: -1, PBB: -2 },
  'K,J': { PP: 1, BP: 1, BB: 2, PBP: -1, PBB: 2 },
  'K,Q': { PP: 1, BP: 1, BB: 2, PBP: -1, PBB: 2 },
};
const NAMES = ['J', 'Q', 'K'];
const dealKey = (d: readonly [KuhnCard, KuhnCard]) => `${NAMES[d[0]]},${NAMES[d[1]]}`;

/** An opponent that plays the letters of a fixed terminal history. */
function scripted(terminal: string): KuhnOpponent {
  const act = (v: { history: string }) => (terminal[v.history.length] === 'B' ? 'BET' : 'PASS') as 'BET' | 'PASS';
  return { name: 'scripted', betProbability: (v) => (act(v) === 'BET' ? 1 : 0), act: (v) => act(v) };
}

/** A seed whose reset gives this seat (seat 'random') and deal. */
function seedFor(seat: KuhnSeat, deal: readonly [KuhnCard, KuhnCard]): number {
  const env = new KuhnEnv({ seat: 'random' });
  for (let s = 0; s < 10_000; s++) {
    env.reset(s);
    if (env.seat === seat && env.dealCards[0] === deal[0] && env.dealCards[1] === deal[1]) return s;
  }
  throw new Error('no seed found');
}

describe('kuhn rules', () => {
  it('payoffP0 matches the hand-written table for every deal and terminal history', () => {
    for (const d of DEALS) for (const h of TERMINAL_HISTORIES) expect(payoffP0(d, h)).toBe(PAYOFF_TABLE[dealKey(d)]![h]);
  });

  it('the env pays 5 × chips for every deal, action sequence and seat', () => {
    for (const seat of [0, 1] as KuhnSeat[]) {
      for (const d of DEALS) {
        const seed = seedFor(seat, d);
        for (const h of TERMINAL_HISTORIES) {
          const env = new KuhnEnv({ seat: 'random', opponent: scripted(h) });
          env.reset(seed);
          let last = null as ReturnType<KuhnEnv['step']> | null;
          let guard = 0;
          while (!env.done && guard++ < 5) {
            const mine = h[env.history.length];
            last = env.step(`<action>${mine === 'B' ? 'BET' : 'PASS'}</action>`);
            expect(last.valid).toBe(true);
          }
          const chips = (seat === 0 ? 1 : -1) * PAYOFF_TABLE[dealKey(d)]![h]!;
          expect(last!.done).toBe(true);
          expect(last!.reward).toBe(5 * chips);
          expect(env.episodeReturn()).toBe(5 * chips);
          expect(env.won()).toBe(chips > 0);
          expect(last!.info.history).toBe(h);
        }
      }
    }
  });

  it('observations have the documented format and the seat-1 agent sees the opening move', () => {
    const seed = seedFor(1, [2, 0]);
    const env = new KuhnEnv({ seat: 'random', opponent: 'aggressive' });
    expect(env.reset(seed)).toBe('card J | history P0 BET | you are P1 | actions PASS BET');
    const r = env.step('<action>PASS</action>');
    expect(r).toMatchObject({ done: true, valid: true, reward: -5, observation: '' });
    expect(env.observe()).toBe('card J | history P0 BET P1 PASS | you are P1 | P1 folds | result lose 1 chips');
    expect(r.info.opponentCard).toBeUndefined(); // no showdown, the card stays private
  });

  it('token observation: one information-set token per decision, the public hand record at the end', () => {
    const seed = seedFor(1, [2, 0]);
    const env = new KuhnEnv({ seat: 'random', opponent: 'aggressive', observation: 'token' });
    expect(env.reset(seed)).toBe('i1_J_B'); // P1 holding J faces the opening bet
    env.step('PASS');
    expect(env.observe()).toBe('h1_BP_X'); // folded: the opponent's K stays private
    const p0 = new KuhnEnv({ seat: 'random', opponent: scripted('PBB'), observation: 'token' });
    expect(p0.reset(seedFor(0, [1, 2]))).toBe('i0_Q_');
    p0.step('PASS');
    expect(p0.observe()).toBe('i0_Q_PB');
    p0.step('BET');
    expect(p0.episodeToken()).toBe('h0_PBB_K'); // showdown: the card is public
    expect(() => new KuhnEnv({ observation: 'words' as 'text' })).toThrow(/observation must be 'text' or 'token'/);
  });

  it('every token a hand can produce is in the vocabulary (both observation modes), and abandoned hands record none', () => {
    for (const observation of ['text', 'token'] as const) {
      const seen = new Set<string>();
      for (let seed = 0; seed < 300; seed++) {
        const env = new KuhnEnv({ opponent: 'random', observation });
        const rng = mulberry32(seed);
        seen.add(env.reset(seed));
        while (!env.done) { const o = env.step(rng() < 0.5 ? 'PASS' : 'BET').observation; if (o) seen.add(o); }
        seen.add(env.observe());
        seen.add(env.episodeToken());
      }
      const env = new KuhnEnv({ observation });
      const vocab = new Set([...env.vocabulary(), ...env.episodeTokenVocabulary()]);
      for (const text of seen) for (const w of splitWords(text)) expect(vocab.has(w), `${w} (${observation})`).toBe(true);
    }
    const env = new KuhnEnv({ seat: 1, maxInvalid: 1 });
    env.reset(3);
    env.step('garbage');
    expect(env.episodeToken()).toBe('h1_none');
  });

  it('restart replays the same deal, seat and opponent replies', () => {
    for (let seed = 0; seed < 30; seed++) {
      const env = new KuhnEnv({ opponent: 'random' });
      const first = env.reset(seed);
      const cards = env.dealCards, seat = env.seat;
      const r1 = [env.step('BET'), env.step('BET')];
      expect(env.restart()).toBe(first);
      expect(env.dealCards).toEqual(cards);
      expect(env.seat).toBe(seat);
      const r2 = [env.step('BET'), env.step('BET')];
      expect(r2.map((r) => [r.reward, r.info.history])).toEqual(r1.map((r) => [r.reward, r.info.history]));
    }
  });

  it('invalid turns: reward 0, state unchanged, and the hand is abandoned after maxInvalid', () => {
    const env = new KuhnEnv({ seat: 0, opponent: 'conservative', maxInvalid: 3 });
    const obs = env.reset(7);
    for (let i = 1; i <= 2; i++) {
      const r = env.step('I think I will raise');
      expect(r).toMatchObject({ reward: 0, done: false, valid: false, observation: obs });
      expect(r.info.invalidCount).toBe(i);
    }
    const r = env.step('<action>FOLD</action>');
    expect(r).toMatchObject({ reward: 0, done: true, valid: false });
    expect(env.won()).toBe(false);
    expect(env.episodeReturn()).toBe(0);
    expect(env.observe()).toMatch(/result none$/);
    expect(env.step('BET').valid).toBe(false); // after the end: flagged, no throw
  });

  it('parser: last <action> tag wins, bare words work, garbage is null and never throws', () => {
    expect(parseKuhnAction('<action>PASS</action> hmm <action> bet </action>')).toBe('BET');
    expect(parseKuhnAction('pass')).toBe('PASS');
    expect(parseKuhnAction('BET.')).toBe('BET');
    expect(parseKuhnAction('I BET')).toBeNull();
    expect(parseKuhnAction('')).toBeNull();
    expect(parseKuhnAction(undefined)).toBeNull();
    const env = new KuhnEnv({ seat: 0 });
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => {
      env.reset(1);
      const r = env.step(s);
      const parsed = parseKuhnAction(s);
      expect(r.valid).toBe(parsed !== null);
    }), { numRuns: 300 });
  });

  it('every word of rules and observations is in the vocabulary', () => {
    const env = new KuhnEnv({ opponent: 'random' });
    const vocab = new Set(env.vocabulary());
    const check = (t: string) => { for (const w of splitWords(t)) expect(vocab.has(w), `missing word '${w}'`).toBe(true); };
    check(env.rules());
    for (const a of env.legalActions()) check(a);
    for (let seed = 0; seed < 60; seed++) {
      check(env.reset(seed));
      const moves = ['BET', 'PASS', 'xx', 'xx', 'xx'];
      for (let i = 0; !env.done; i++) check(env.step(moves[(seed + i) % moves.length]!).observation);
      check(env.observe());
    }
  });
});

describe('kuhn opponents', () => {
  const views = (fn: (card: KuhnCard, history: '' | 'P' | 'B' | 'PB') => number) =>
    (['', 'P', 'B', 'PB'] as const).map((h) => [0, 1, 2].map((c) => fn(c as KuhnCard, h)).join(''));
  const probs = (name: string) => views((card, history) => kuhnOpponent(name).betProbability({ card, history, seat: history.length % 2 === 0 ? 0 : 1 }));

  it('scripted opponents follow their rules at all 12 information sets (rows: "", P, B, PB; columns J Q K)', () => {
    expect(probs('conservative')).toEqual(['001', '001', '001', '001']);
    expect(probs('aggressive')).toEqual(['111', '111', '011', '011']);
    expect(probs('intermediate')).toEqual(['011', '011', '001', '001']);
    expect(probs('random')).toEqual(['0.50.50.5', '0.50.50.5', '0.50.50.5', '0.50.50.5']);
  });

  it('act samples the probability with the given rng', () => {
    const v = { card: 1 as KuhnCard, history: '' as const, seat: 0 as const };
    expect(kuhnOpponent('random').act(v, () => 0.49)).toBe('BET');
    expect(kuhnOpponent('random').act(v, () => 0.51)).toBe('PASS');
    expect(kuhnOpponent('aggressive').act(v, () => 0.99)).toBe('BET');
    expect(() => kuhnOpponent('nobody')).toThrow(/unknown opponent/);
    expect(KUHN_OPPONENT_NAMES).toEqual(['conservative', 'aggressive', 'intermediate', 'random', 'cfr-mixed', 'cfr-argmax']);
  });
});

describe('kuhn CFR+', () => {
  it('converges: exploitability < 1e-3 and game value ≈ −1/18', () => {
    const s = kuhnCfrSolution();
    expect(s.exploitability).toBeLessThan(1e-3);
    expect(Math.abs(s.gameValueP0 - KUHN_GAME_VALUE_P0)).toBeLessThan(1e-3);
    // Known equilibrium structure: K always calls, J always folds to a bet, P1 bluffs J at 1/3.
    expect(s.averagePolicy['K:B']).toBeGreaterThan(0.99);
    expect(s.averagePolicy['J:PB']).toBeLessThan(0.01);
    expect(s.averagePolicy['J:P']).toBeCloseTo(1 / 3, 2);
    expect(s.averagePolicy['K:']).toBeCloseTo(3 * s.averagePolicy['J:']!, 2);
  });

  it('a short run is measurably exploitable (the stopping rule is real)', () => {
    const s = solveKuhnCfr({ maxIterations: 5, checkEvery: 5, targetExploitability: 0 });
    expect(s.iterations).toBe(5);
    expect(s.exploitability).toBeGreaterThan(1e-3);
  });

  it('best response to cfr-mixed earns the game value from each seat', () => {
    expect(bestResponseValue('cfr-mixed', 0)).toBeCloseTo(-1 / 18, 3);
    expect(bestResponseValue('cfr-mixed', 1)).toBeCloseTo(1 / 18, 3);
  });
});

describe('kuhn oracles (hand-checked)', () => {
  it('aggressive: half the deals are winnable from either seat; best response earns 1/3', () => {
    expect(winnability('aggressive', 0)).toBeCloseTo(0.5, 12);
    expect(winnability('aggressive', 1)).toBeCloseTo(0.5, 12);
    expect(bestResponseValue('aggressive', 0)).toBeCloseTo(1 / 3, 12);
    expect(bestResponseValue('aggressive', 1)).toBeCloseTo(1 / 3, 12);
    // From seat 1 exactly the deals where the agent holds the higher card.
    for (const r of winnabilityByDeal('aggressive', 1)) expect(r.probability).toBe(r.agentCard > r.opponentCard ? 1 : 0);
  });

  it('conservative: 2/3 winnable (bet into J/Q folds); best response 1/6 as P0 and 1/3 as P1', () => {
    expect(winnability('conservative', 0)).toBeCloseTo(2 / 3, 12);
    expect(winnability('conservative', 1)).toBeCloseTo(2 / 3, 12);
    expect(bestResponseValue('conservative', 0)).toBeCloseTo(1 / 6, 12);
    expect(bestResponseValue('conservative', 1)).toBeCloseTo(1 / 3, 12);
    expect(bestResponseValue('conservative', 'mixed')).toBeCloseTo(1 / 4, 12);
  });

  it('random from seat 1: higher card always winnable, lower card 1/4 (opponent checks then folds)', () => {
    expect(winnability('random', 1)).toBeCloseTo((3 * 1 + 3 * 0.25) / 6, 12);
  });

  it('cfr-argmax from the second seat: half the deals are winnable', () => {
    expect(winnability('cfr-argmax', 1)).toBeCloseTo(0.5, 12);
  });

  it('non-adaptive ceiling: equals the best response for one opponent, and is lower for a mixture', () => {
    expect(nonAdaptiveCeiling([{ name: 'aggressive', weight: 1 }], 1)).toBeCloseTo(1 / 3, 12);
    // Hand-computed: P1 vs ½ conservative + ½ aggressive: J −1/2, Q −1/4, K 3/2 → 1/4 (< 1/3 each alone).
    const mix = [{ name: 'conservative', weight: 1 }, { name: 'aggressive', weight: 1 }];
    expect(nonAdaptiveCeiling(mix, 1)).toBeCloseTo(0.25, 12);
    expect(nonAdaptiveCeiling(mix, 'mixed')).toBeCloseTo((nonAdaptiveCeiling(mix, 0) + 0.25) / 2, 12);
    expect(() => nonAdaptiveCeiling([], 0)).toThrow(/empty/);
  });
});
