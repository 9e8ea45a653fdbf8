import { describe, expect, it } from 'vitest';
import { GroupAdvantageConfigSchema, groupAdvantages, maskedWhiten, updateRunningMean } from '../src/rl/index.ts';

const close = (got: ArrayLike<number>, want: number[], digits = 6) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(got[i]!, `index ${i}`).toBeCloseTo(w, digits));
};

const oneGroup = (n: number) => Array.from({ length: n }, () => ({ prompt: 'q17' }));

describe('groupAdvantages: GRPO', () => {
  it('rewards [1,0,0,1] in one group → ±0.5 without std normalisation', () => {
    const out = groupAdvantages([1, 0, 0, 1], oneGroup(4), { estimator: 'grpo', groupBy: ['prompt'], normalizeStd: false });
    close(out.advantages, [0.5, -0.5, -0.5, 0.5], 12);
    expect(out.groups).toHaveLength(1);
    expect(out.groups[0]!.key).toEqual({ prompt: 'q17' });
  });

  it('std normalisation: unbiased std √(1/3) (verl/torch.std) vs population std 0.5', () => {
    const unbiased = groupAdvantages([1, 0, 0, 1], oneGroup(4), { groupBy: ['prompt'] });
    const s = Math.sqrt(1 / 3);
    close(unbiased.advantages, [0.5, -0.5, -0.5, 0.5].map((a) => a / (s + 1e-6)), 9);
    expect(unbiased.advantages[0]).toBeCloseTo(0.8660239, 6);
    const biased = groupAdvantages([1, 0, 0, 1], oneGroup(4), { groupBy: ['prompt'], stdUnbiased: false });
    close(biased.advantages, [1, -1, -1, 1].map((a) => (a * 0.5) / (0.5 + 1e-6)), 9);
  });

  it('a group with equal rewards gets 0 advantages (no NaN)', () => {
    const out = groupAdvantages([2, 2, 2], oneGroup(3), { groupBy: ['prompt'] });
    expect(out.advantages).toEqual([0, 0, 0]);
  });

  it('groups by two key fields; one field merges what two fields separate', () => {
    const keys = [
      { seed: '1', opponent: 'a' },
      { seed: '1', opponent: 'a' },
      { seed: '1', opponent: 'b' },
      { seed: '1', opponent: 'b' },
      { seed: '2', opponent: 'a' },
    ];
    const rewards = [1, 3, 10, 20, 5];
    const two = groupAdvantages(rewards, keys, { groupBy: ['seed', 'opponent'], normalizeStd: false });
    close(two.advantages, [-1, 1, -5, 5, 0], 12);
    expect(two.groupOf).toEqual([0, 0, 1, 1, 2]);
    expect(two.groups.map((g) => g.key)).toEqual([{ seed: '1', opponent: 'a' }, { seed: '1', opponent: 'b' }, { seed: '2', opponent: 'a' }]);
    const one = groupAdvantages(rewards, keys, { groupBy: ['seed'], normalizeStd: false });
    close(one.advantages, [-7.5, -5.5, 1.5, 11.5, 0], 12);
  });

  it("singletons: 0 by default; 'raw' gives the reward itself (verl: mean 0, std 1)", () => {
    const keys = [{ p: 'a' }, { p: 'b' }, { p: 'b' }];
    expect(groupAdvantages([5, 1, 3], keys, { groupBy: ['p'] }).advantages[0]).toBe(0);
    expect(groupAdvantages([5, 1, 3], keys, { groupBy: ['p'], singleton: 'raw' }).advantages[0]).toBeCloseTo(5 / (1 + 1e-6), 12);
    expect(groupAdvantages([5, 1, 3], keys, { groupBy: ['p'], singleton: 'raw', normalizeStd: false }).advantages[0]).toBe(5);
  });

  it('field values that would collide under naive concatenation stay separate', () => {
    const keys = [{ a: 'x|y', b: 'z' }, { a: 'x', b: 'y|z' }];
    const out = groupAdvantages([1, 2], keys, { groupBy: ['a', 'b'], singleton: 'raw', normalizeStd: false });
    expect(out.groups).toHaveLength(2);
  });

  it('empty groupBy = one group over the whole batch', () => {
    const out = groupAdvantages([1, 2, 6], [{}, {}, {}], { groupBy: [], normalizeStd: false });
    close(out.advantages, [-2, -1, 3], 12);
  });
});

describe('groupAdvantages: RLOO, REINFORCE, none', () => {
  it('RLOO: r − mean of the others', () => {
    const out = groupAdvantages([1, 0, 0, 1], oneGroup(4), { estimator: 'rloo', groupBy: ['prompt'] });
    close(out.advantages, [2 / 3, -2 / 3, -2 / 3, 2 / 3], 12);
    const out2 = groupAdvantages([4, 1, 1], oneGroup(3), { estimator: 'rloo', groupBy: ['prompt'] });
    close(out2.advantages, [3, -1.5, -1.5], 12);
  });

  it('REINFORCE: r − baseline, with a running-mean baseline', () => {
    close(groupAdvantages([1, 0], oneGroup(2), { estimator: 'reinforce', groupBy: [], baseline: 0.25 }).advantages, [0.75, -0.25], 12);
    let state = updateRunningMean({ mean: 0, count: 0 }, [1, 3]);
    expect(state).toEqual({ mean: 2, count: 2 });
    expect(updateRunningMean(state, [6]).mean).toBeCloseTo(10 / 3, 12);
    expect(updateRunningMean(state, [6], 0.9).mean).toBeCloseTo(2.4, 12);
    state = updateRunningMean(state, [6]);
    close(groupAdvantages([4], oneGroup(1), { estimator: 'reinforce', groupBy: [], baseline: state.mean }).advantages, [4 - 10 / 3], 12);
  });

  it('none: the reward', () => {
    expect(groupAdvantages([3, -1], oneGroup(2), { estimator: 'none', groupBy: ['prompt'] }).advantages).toEqual([3, -1]);
  });
});

describe('groupAdvantages: errors', () => {
  it('names a missing key field and mismatched lengths', () => {
    expect(() => groupAdvantages([1, 2], [{ seed: '1' }, { opponent: 'x' }], { groupBy: ['seed'] })).toThrow(/sample 1 has no key field "seed"/);
    expect(() => groupAdvantages([1], [], { groupBy: [] })).toThrow(/1 rewards but 0 key records/);
    expect(() => groupAdvantages([NaN], [{}], { groupBy: [] })).toThrow(/reward 0 is NaN/);
    expect(() => GroupAdvantageConfigSchema.parse({})).toThrow(/groupBy/);
  });
});

describe('maskedWhiten', () => {
  it('hand example: masked entries excluded and zeroed', () => {
    // masked-in values 1, 2, 3: mean 2, unbiased variance 1
    const s = 1 / Math.sqrt(1 + 1e-8);
    close(maskedWhiten([1, 2, 100, 3], [1, 1, 0, 1]), [-s, 0, 0, s], 12);
    close(maskedWhiten([1, 2, 100, 3], [1, 1, 0, 1], { keepMean: true }), [2 - s, 2, 0, 2 + s], 12);
  });

  it('random values come out with masked mean 0 and unbiased std 1', () => {
    let x = 7;
    const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const v = Array.from({ length: 50 }, () => 3 + 10 * rnd());
    const m = v.map((_, i) => (i % 3 === 0 ? 0 : 1));
    const w = maskedWhiten(v, m);
    const on = w.filter((_, i) => m[i] === 1);
    const mu = on.reduce((a, b) => a + b, 0) / on.length;
    const sd = Math.sqrt(on.reduce((a, b) => a + (b - mu) ** 2, 0) / (on.length - 1));
    expect(mu).toBeCloseTo(0, 10);
    expect(sd).toBeCloseTo(1, 6);
  });

  it('no mask = all entries; a single entry whitens to 0; empty mask gives zeros', () => {
    // mean 2, unbiased variance 2
    const s = 1 / Math.sqrt(2 + 1e-8);
    close(maskedWhiten([1, 3]), [-s, s], 12);
    expect(maskedWhiten([5, 9], [0, 1])).toEqual([0, 0]);
    expect(maskedWhiten([5, 9], [0, 0])).toEqual([0, 0]);
    expect(() => maskedWhiten([1, 2], [1])).toThrow(/mask has length 1/);
  });
});
