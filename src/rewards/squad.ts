/**
 * SQuAD v1.1 answer metrics (the official evaluate-v1.1.py logic), reproduced to the character:
 *
 *   normalize_answer(s) = white_space_fix(remove_articles(remove_punc(lower(s))))
 *
 * Where Python and JavaScript string semantics differ, Python wins (checked code point by code point
 * against CPython 3.11, see test/rewards-squad.test.ts):
 * - `str.lower()` = `toLowerCase()`: both use the full Unicode mappings ('İ' → 'i̇') and both apply
 *   the Final_Sigma rule ('ΟΔΟΣ' → 'οδος'); no patching needed.
 * - `string.punctuation` is ASCII only: '«', '¿', '。' and friends survive.
 * - Python 3's `\b` and `\w` are Unicode-aware (\w = `str.isalnum()` or '_'), JS's `\b` is ASCII-only;
 *   `[\p{L}\p{N}_]` equals Python's `\w` on every assigned code point, so `\b` is emulated with
 *   look-arounds. Combining marks are not \w in Python, so a decomposed "thé" (the + U+0301) loses
 *   its "the".
 * - `str.split()` splits on `str.isspace()` characters: unlike JS's `\s` that includes U+001C–U+001F
 *   and U+0085 and excludes U+FEFF.
 * Characters assigned after Unicode 14 (CPython 3.11's database) follow the JS engine's newer data.
 */

/** Python's `string.punctuation`: the 32 ASCII punctuation characters. */
export const PY_PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
const PUNCTUATION_RE = /[!-\/:-@\[-`{-~]/g;

/** The characters Python's `str.isspace()` accepts (bidi class WS/B/S or category Zs). */
export const PY_SPACE_CLASS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE_RUN_RE = new RegExp(`[${PY_SPACE_CLASS}]+`, 'u');
const PY_SPACE_EDGES_RE = new RegExp(`^[${PY_SPACE_CLASS}]+|[${PY_SPACE_CLASS}]+$`, 'gu');

/** Python 3's `\w` on str patterns (`str.isalnum()` or '_'), as the body of a `u`-flag character class. */
export const PY_WORD_CLASS = '\\p{L}\\p{N}_';
/** Python 3 `\b(a|an|the)\b`: an article with no word character on either side. */
const ARTICLES_RE = new RegExp(`(?<![${PY_WORD_CLASS}])(?:a|an|the)(?![${PY_WORD_CLASS}])`, 'gu');

/** Python's `s.split()` (no argument): split on runs of Unicode whitespace, drop empty pieces. */
export function pySplit(s: string): string[] {
  return s.split(PY_SPACE_RUN_RE).filter((t) => t.length > 0);
}

/** Python's `s.strip()` (no argument). */
export function pyStrip(s: string): string {
  return s.replace(PY_SPACE_EDGES_RE, '');
}

/** Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace. */
export function normalizeAnswer(s: string): string {
  const lowered = s.toLowerCase();
  const noPunct = lowered.replace(PUNCTUATION_RE, '');
  const noArticles = noPunct.replace(ARTICLES_RE, ' ');
  return pySplit(noArticles).join(' ');
}

/** The tokens F1 counts: the normalised answer split on spaces. */
export function answerTokens(s: string): string[] {
  return pySplit(normalizeAnswer(s));
}

function goldList(golds: string | readonly string[]): readonly string[] {
  const list = typeof golds === 'string' ? [golds] : golds;
  if (list.length === 0) throw new Error('SQuAD metrics: the gold answer list is empty; give at least one gold answer (a string or a non-empty string[])');
  return list;
}

/** Bag-of-tokens F1 of two token lists; 0 when they share no token (so also when either, or both, is empty). */
export function tokenF1(prediction: readonly string[], gold: readonly string[]): number {
  const counts = new Map<string, number>();
  for (const t of gold) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of prediction) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same++;
      counts.set(t, c - 1);
    }
  }
  // The official script returns 0 when num_same == 0: two empty answers score F1 0 (yet EM 1).
  if (same === 0) return 0;
  // Same operations in the same order as the script, so the doubles agree bit for bit.
  const precision = (1.0 * same) / prediction.length;
  const recall = (1.0 * same) / gold.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Exact match (1 or 0) of the normalised answers, the best over the gold answers. */
export function em(prediction: string, golds: string | readonly string[]): number {
  const list = goldList(golds);
  const p = normalizeAnswer(prediction);
  return list.some((g) => normalizeAnswer(g) === p) ? 1 : 0;
}

/** SQuAD token F1, the best over the gold answers. */
export function f1(prediction: string, golds: string | readonly string[]): number {
  return squadScores(prediction, golds).f1;
}

/** EM and F1 together (normalising the prediction once). */
export function squadScores(prediction: string, golds: string | readonly string[]): { em: number; f1: number } {
  const list = goldList(golds);
  const p = normalizeAnswer(prediction);
  const pTokens = pySplit(p);
  let bestEm = 0;
  let bestF1 = 0;
  for (const g of list) {
    const n = normalizeAnswer(g);
    if (n === p) bestEm = 1;
    bestF1 = Math.max(bestF1, tokenF1(pTokens, pySplit(n)));
  }
  return { em: bestEm, f1: bestF1 };
}
