import { describe, expect, it } from 'vitest';
import { searchReward, soundsInvalid } from '../src/rewards/score.ts';

describe('searchReward', () => {
  it('is format × F1', () => {
    // pred tokens [city, paris], gold [paris]: p = 1/2, r = 1 → F1 = 2/3
    expect(searchReward({ prediction: 'the city Paris', golds: ['Paris'], formatOk: true })).toEqual({ score: 2 / 3, f1: 2 / 3, em: 0, format: 1, invalidAnswer: false });
    expect(searchReward({ prediction: 'the city Paris', golds: ['Paris'], formatOk: false })).toEqual({ score: 0, f1: 2 / 3, em: 0, format: 0, invalidAnswer: false });
    expect(searchReward({ prediction: 'Paris', golds: ['London', 'paris'], formatOk: true })).toEqual({ score: 1, f1: 1, em: 1, format: 1, invalidAnswer: false });
  });

  it('scores 0 without an answer', () => {
    expect(searchReward({ prediction: null, golds: 'Paris', formatOk: true })).toEqual({ score: 0, f1: 0, em: 0, format: 1, invalidAnswer: false });
    expect(searchReward({ prediction: undefined, golds: 'Paris', formatOk: false, invalidQuestionMode: true })).toEqual({ score: 0, f1: 0, em: 0, format: 0, invalidAnswer: false });
    expect(searchReward({ prediction: '', golds: 'Paris', formatOk: true }).score).toBe(0);
  });

  it('adds augmented golds as 0.7·F1 + 0.3·max(F1_aug, F1)', () => {
    // F1 vs gold "Paris France" = 2/3 (p = 1, r = 1/2); vs augmented "Paris" = 1 → 0.7·2/3 + 0.3·1
    const r = searchReward({ prediction: 'Paris', golds: 'Paris France', augmentedGolds: ['Paris'], formatOk: true });
    expect(r.score).toBeCloseTo(0.7 * (2 / 3) + 0.3, 12);
    expect(r.f1).toBeCloseTo(2 / 3, 12);
    // an augmented gold worse than the gold does not lower the score: max(F1_aug, F1) = F1
    expect(searchReward({ prediction: 'Paris', golds: 'Paris', augmentedGolds: 'Lyon', formatOk: true }).score).toBeCloseTo(1, 12);
    // empty augmented list: not used (as ASearcher's len(aug_answer) > 0)
    expect(searchReward({ prediction: 'Paris', golds: 'Paris France', augmentedGolds: [], formatOk: true }).score).toBeCloseTo(2 / 3, 12);
    // format still multiplies
    expect(searchReward({ prediction: 'Paris', golds: 'Paris France', augmentedGolds: ['Paris'], formatOk: false }).score).toBe(0);
  });

  it('scores −0.5 for an "invalid question" answer under the most-likely-answer instruction, whatever the format', () => {
    for (const formatOk of [true, false]) {
      expect(searchReward({ prediction: 'the question is invalid.', golds: 'Paris', formatOk, invalidQuestionMode: true })).toEqual({ score: -0.5, f1: 0, em: 0, format: formatOk ? 1 : 0, invalidAnswer: true });
    }
    // without the instruction, such an answer is just a wrong answer
    expect(searchReward({ prediction: 'the question is invalid.', golds: 'Paris', formatOk: true })).toMatchObject({ score: 0, invalidAnswer: false });
    // a right answer that happens to contain a marker word is penalised too (ASearcher's substring rule)
    expect(searchReward({ prediction: 'Valid Paris', golds: 'Paris', formatOk: true, invalidQuestionMode: true }).score).toBe(-0.5);
  });

  it('an empty gold list is an error', () => {
    expect(() => searchReward({ prediction: 'x', golds: [], formatOk: true })).toThrow(/gold answer list is empty/);
  });
});

describe('soundsInvalid', () => {
  it.each([
    ['The question is invalid', true],
    ['INAPPROPRIATE', true],
    ['no valid answer', true],
    ['Questionable Content', true], // substring match, as in ASearcher
    ['Paris', false],
    ['', false],
  ])('%j → %s', (answer, want) => {
    expect(soundsInvalid(answer)).toBe(want);
  });
});
