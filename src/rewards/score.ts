/**
 * The search agent's trajectory reward for base LLMs (ASearcher): score = format × F1, where format is
 * 1 when every model turn is well-formed (src/rewards/format.ts) and F1 is the SQuAD token F1 of the
 * final answer against the gold answers (src/rewards/squad.ts).
 */
import { squadScores } from './squad.ts';

/** Words that mark an answer declaring the question invalid. */
export const INVALID_ANSWER_WORDS = ['question', 'invalid', 'appropriate', 'valid'] as const;
/** The score of such an answer when the prompt asked for the most likely answer instead. */
export const INVALID_ANSWER_SCORE = -0.5;
/** Weights of the plain F1 and of max(F1 against augmented golds, F1). */
export const AUGMENTED_WEIGHTS = { gold: 0.7, augmented: 0.3 } as const;

export interface SearchRewardInput {
  /** The final `<answer>` content, or null/undefined when the trajectory gave no answer (score 0). */
  prediction: string | null | undefined;
  golds: string | readonly string[];
  /** Every model turn passed the format check. */
  formatOk: boolean;
  /**
   * True when the prompt carried the "find the most likely answer" instruction (ASearcher's
   * `valid_inst`, 30% of prompts) instead of allowing "the question is invalid": then an answer
   * containing one of INVALID_ANSWER_WORDS scores INVALID_ANSWER_SCORE.
   */
  invalidQuestionMode?: boolean;
  /** Extra acceptable answers (ASearcher's `aug_answer`); absent or empty: not used. */
  augmentedGolds?: string | readonly string[];
}

export interface SearchReward {
  /** The reward. */
  score: number;
  /** F1 and EM against the gold answers (best over golds; 0 without an answer). */
  f1: number;
  em: number;
  /** 1 when the format check passed, else 0. */
  format: number;
  /** The answer declared the question invalid while invalidQuestionMode was on (score = INVALID_ANSWER_SCORE). */
  invalidAnswer: boolean;
}

/**
 * Does the answer declare the question invalid? A case-insensitive substring test, like ASearcher's
 * `any(w in pred_answer ...)` but also catching "QUESTION"/"Inappropriate" (theirs is case-sensitive).
 */
export function soundsInvalid(answer: string): boolean {
  const lower = answer.toLowerCase();
  return INVALID_ANSWER_WORDS.some((w) => lower.includes(w));
}

/** ASearcher's reward: format × F1 (augmented: 0.7·F1 + 0.3·max(F1_aug, F1)), −0.5 for an "invalid question" answer under the most-likely-answer instruction. */
export function searchReward(input: SearchRewardInput): SearchReward {
  const format = input.formatOk ? 1 : 0;
  if (input.prediction === null || input.prediction === undefined) {
    return { score: 0, f1: 0, em: 0, format, invalidAnswer: false };
  }
  const { em, f1 } = squadScores(input.prediction, input.golds);
  let answerScore = f1;
  const aug = input.augmentedGolds;
  if (aug !== undefined && aug.length > 0) {
    const f1Aug = squadScores(input.prediction, aug).f1;
    answerScore = AUGMENTED_WEIGHTS.gold * f1 + AUGMENTED_WEIGHTS.augmented * Math.max(f1Aug, f1);
  }
  // As in ASearcher, the penalty replaces the score whatever the format.
  const invalidAnswer = (input.invalidQuestionMode ?? false) && soundsInvalid(input.prediction);
  const score = invalidAnswer ? INVALID_ANSWER_SCORE : format * answerScore;
  return { score, f1, em, format, invalidAnswer };
}
