import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CreditConfigSchema,
  assignTrialCredit,
  differentialRewards,
  invalidPenalty,
  lengthPenalty,
  stepAdvantages,
  trialReturns,
  type StepSample,
  type TrialStep,
  type CreditStep,
} from '../src/rl/index.ts';

const close = (got: ArrayLike<number>, want: number[], digits = 9) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(got[i]!, `index ${i}`).toBeCloseTo(w, digits));
};

describe('differentialRewards', () => {
  it('hand example', () => {
    expect(differentialRewards([2, 5, 4])).toEqual([2, 3, -1]);
    expect(differentialRewards([])).toEqual([]);
  });
  it('telescopes: Σ r̃ = R_last', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 8 }), (R) => {
        const sum = differentialRewards(R).reduce((a, b) => a + b, 0);
        expect(sum).toBe(R[R.length - 1]);
      }),
    );
  });
});

describe('trialReturns: 2-episode trial, γ_step 0.95, γ_trial 0.6, one reflection', () => {
  // ep0: a (reward 0), b (reward 1) → R0 = 1; reflection; ep1: c (0), d (3) → R1 = 3.  r̃ = [1, 2].
  // G_d = 2; G_c = 0.95·2 = 1.9; reflection inherits G_c = 1.9; G_b = 1 + 0.6·1.9 = 2.14; G_a = 0.95·2.14 = 2.033.
  const steps: TrialStep[] = [
    { kind: 'play', episode: 0, reward: 0 },
    { kind: 'play', episode: 0, reward: 1 },
    { kind: 'reflection', episode: 0 },
    { kind: 'play', episode: 1, reward: 0 },
    { kind: 'play', episode: 1, reward: 3 },
  ];
  const cfg = { gammaStep: 0.95, gammaTrial: 0.6 };

  it('returns, scores and step rewards', () => {
    const out = trialReturns(steps, cfg);
    close(out.returns, [2.033, 2.14, 1.9, 1.9, 2]);
    expect(out.scores).toEqual([1, 1, 0, 2, 2]);
    expect(out.stepRewards).toEqual([0, 1, 0, 0, 2]);
    expect(out.episodeReturns).toEqual([1, 3]);
    expect(out.differential).toEqual([1, 2]);
  });

  it("episodeReward 'raw': each episode enters with R_k itself (new_state trials)", () => {
    // r = R = [1, 3]: G_d = 3; G_c = 2.85; reflection 2.85; G_b = 1 + 0.6·2.85 = 2.71; G_a = 2.5745.
    const out = trialReturns(steps, { ...cfg, episodeReward: 'raw' });
    close(out.returns, [2.5745, 2.71, 2.85, 2.85, 3]);
    expect(out.scores).toEqual([1, 1, 0, 3, 3]);
    // γ_trial = 0: every episode is credited with its own reward only.
    close(trialReturns(steps, { gammaStep: 0.95, gammaTrial: 0, episodeReward: 'raw' }).returns, [0.95, 1, 2.85, 2.85, 3]);
  });

  it('a reflection after the final episode gets 0', () => {
    const out = trialReturns([...steps, { kind: 'reflection', episode: 1 }], cfg);
    close(out.returns, [2.033, 2.14, 1.9, 1.9, 2, 0]);
  });

  it('intermediate env rewards reach G only through R_k; explicit episodeReturns override the sums', () => {
    const out = trialReturns(steps, { ...cfg, episodeReturns: [0, 5] });
    // r̃ = [0, 5]: G_d = 5, G_c = 4.75, G_b = 0 + 0.6·4.75 = 2.85, G_a = 2.7075
    close(out.returns, [2.7075, 2.85, 4.75, 4.75, 5]);
  });

  it('penalties hit scores only by default, and returns too with penaltyInReturns', () => {
    const pen = steps.map((s, i) => ({ ...s, penalty: i === 1 ? 0.5 : i === 2 ? 0.5 : 0 }));
    const a = trialReturns(pen, cfg);
    expect(a.scores).toEqual([1, 0.5, -0.5, 2, 2]);
    close(a.returns, [2.033, 2.14, 1.9, 1.9, 2]);
    const b = trialReturns(pen, { ...cfg, penaltyInReturns: true });
    // r_b = 0.5; G_b = 0.5 + 0.6·1.9 = 1.64; G_a = 1.558; reflection 1.9 − 0.5 = 1.4
    close(b.returns, [1.558, 1.64, 1.4, 1.9, 2]);
  });

  it('rejects out-of-order steps, episodes without play steps, and rewarded reflections', () => {
    expect(() => trialReturns([steps[3]!, steps[0]!], cfg)).toThrow(/trial order/);
    expect(() => trialReturns([{ kind: 'reflection', episode: 0 }, { kind: 'play', episode: 1 }], cfg)).toThrow(/episode 0 has no play step/);
    expect(() => trialReturns([{ kind: 'play', episode: 0 }, { kind: 'reflection', episode: 0, reward: 1 }], cfg)).toThrow(/reflection step 1 has reward 1/);
    expect(() => trialReturns(steps, { ...cfg, episodeReturns: [1] })).toThrow(/covers? 2 episodes/);
  });
});

describe('penalties', () => {
  it('invalidPenalty = coef·(1 − valid)', () => {
    expect(invalidPenalty(false, 0.5)).toBe(0.5);
    expect(invalidPenalty(true, 0.5)).toBe(0);
    expect(invalidPenalty(false, 2)).toBe(2);
  });
  it('lengthPenalty = coef·min(1, max(0, len − L/2)/(L/2))', () => {
    expect(lengthPenalty(1000, 3072, 2)).toBe(0);
    expect(lengthPenalty(1536, 3072, 2)).toBe(0);
    expect(lengthPenalty(2304, 3072, 2)).toBe(1);
    expect(lengthPenalty(3072, 3072, 2)).toBe(2);
    expect(lengthPenalty(5000, 3072, 2)).toBe(2);
    expect(lengthPenalty(3000, 4096, 1)).toBeCloseTo((3000 - 2048) / 2048, 12);
  });
});

describe('assignTrialCredit (trial step records → scores and returns)', () => {
  const records: CreditStep[] = [
    { kind: 'play', episode: 0, reward: 0, valid: true, length: 10 },
    { kind: 'play', episode: 0, reward: 1, valid: false, length: 10 },
    { kind: 'reflection', episode: 0, reward: 0, valid: false, length: 10 },
    { kind: 'play', episode: 1, reward: 0, valid: true, length: 10 },
    { kind: 'play', episode: 1, reward: 3, valid: true, length: 90 },
  ];
  it('invalid and length penalties on scores, returns untouched (MAGE)', () => {
    const out = assignTrialCredit(records, { gammaStep: 0.95, gammaTrial: 0.6, invalidCoef: 0.5, lengthCoef: 2, maxLength: 100 });
    // last step: length 90 with L = 100 → 2·(40/50) = 1.6
    close(out.scores, [1, 0.5, -0.5, 2, 0.4]);
    close(out.returns, [2.033, 2.14, 1.9, 1.9, 2]);
  });
  it('config defaults and validation', () => {
    expect(CreditConfigSchema.parse({})).toMatchObject({ gammaStep: 0.95, gammaTrial: 0.6, invalidCoef: 0.5, lengthCoef: 0 });
    expect(() => CreditConfigSchema.parse({ lengthCoef: 1 })).toThrow(/maxLength/);
  });
});

describe('stepAdvantages (GiGPO)', () => {
  const k = (anchor: string, group = 'g1', opponent = 'X') => ({ group, opponent, anchor });
  // Episode group g1/X: scores [1,3,1,3] mean 2 → [−1, 1, −1, 1].
  // Step groups: anchor o1 = {0,1,3} returns [2,4,0] mean 2 → [0, 2, −2]; o2 = {2} singleton → 0.
  const base: StepSample[] = [
    { score: 1, ret: 2, keys: k('o1') },
    { score: 3, ret: 4, keys: k('o1') },
    { score: 1, ret: 5, keys: k('o2') },
    { score: 3, ret: 0, keys: k('o1') },
  ];

  it('mean_norm hand example', () => {
    const out = stepAdvantages(base);
    close(out.episodeTerm, [-1, 1, -1, 1]);
    close(out.stepTerm, [0, 2, 0, -2]);
    close(out.advantages, [-1, 3, -1, -1]);
    expect(out.stepGroupOf).toEqual([0, 0, 1, 0]);
  });

  it('mean_std_norm: each term ÷ (unbiased std + 1e-6); stepWeight scales the step term', () => {
    const out = stepAdvantages(base, { mode: 'mean_std_norm', stepWeight: 0.5 });
    const se = Math.sqrt(4 / 3) + 1e-6; // std of [1,3,1,3]
    const ss = 2 + 1e-6; // std of [2,4,0]
    close(out.episodeTerm, [-1 / se, 1 / se, -1 / se, 1 / se]);
    close(out.stepTerm, [0, 2 / ss, 0, -2 / ss]);
    close(out.advantages, [-1 / se, 1 / se + 1 / ss, -1 / se, 1 / se - 1 / ss]);
  });

  it('singleton episode group: raw score (mean 0); singleton step group: 0', () => {
    const out = stepAdvantages([...base, { score: 7, ret: 1, keys: k('o1', 'g2') }]);
    expect(out.advantages[4]).toBe(7);
    expect(out.stepTerm[4]).toBe(0);
    expect(stepAdvantages([{ score: 7, ret: 1, keys: k('o1', 'g2') }], { episodeSingleton: 'zero' }).advantages[0]).toBe(0);
  });

  it('agent-specific normalisation: samples against different opponents never share a baseline', () => {
    const other: StepSample[] = [
      { score: 100, ret: 50, keys: k('o1', 'g1', 'Y') },
      { score: -40, ret: -9, keys: k('o1', 'g1', 'Y') },
    ];
    const mixed = stepAdvantages([...base, ...other]);
    const alone = stepAdvantages(base);
    close(mixed.advantages.slice(0, 4), alone.advantages);
    close(mixed.advantages.slice(4), stepAdvantages(other).advantages);
    const ep = mixed.episodeGroupOf, st = mixed.stepGroupOf;
    for (let i = 0; i < 4; i++) {
      for (let j = 4; j < 6; j++) {
        expect(ep[i]).not.toBe(ep[j]);
        expect(st[i]).not.toBe(st[j]);
      }
    }
    // Without the opponent in groupBy the baselines would be shared (so the check above can fail).
    const pooled = stepAdvantages([...base, ...other], { groupBy: ['group'] });
    expect(pooled.advantages[0]).not.toBeCloseTo(alone.advantages[0]!, 3);
  });

  it('requires the key fields it groups by', () => {
    expect(() => stepAdvantages([{ score: 1, ret: 1, keys: { group: 'g', anchor: 'a' } }])).toThrow(/no key field "opponent"/);
  });

  it('end to end: a trial credited then normalised with its group mates', () => {
    const trial = (won: number): TrialStep[] => [
      { kind: 'play', episode: 0, reward: 0 },
      { kind: 'reflection', episode: 0 },
      { kind: 'play', episode: 1, reward: won },
    ];
    const anchors = ['start', 'reflection', 'start'];
    const samples: StepSample[] = [];
    for (const [t, won] of [1, 0].entries()) {
      const { scores, returns } = trialReturns(trial(won), { gammaStep: 0.95, gammaTrial: 0.6 });
      scores.forEach((s, i) => samples.push({ score: s, ret: returns[i]!, keys: { group: 'seed7', opponent: 'aggressive', anchor: anchors[i]!, trial: String(t) } }));
    }
    // trial 0: r̃ = [0, 1] → scores [0, 0, 1], returns [0.6, 1, 1]; trial 1: all 0.
    // episode mean of scores = 1/6; step groups: 'start' = {0.6, 1, 0, 0} mean 0.4, 'reflection' = {1, 0} mean 0.5.
    const out = stepAdvantages(samples);
    close(out.advantages, [0 - 1 / 6 + 0.2, 0 - 1 / 6 + 0.5, 1 - 1 / 6 + 0.6, -1 / 6 - 0.4, -1 / 6 - 0.5, -1 / 6 - 0.4]);
  });
});
