/**
 * Shared text helpers: pulling the action out of raw model output, and the word-splitting rule
 * that `vocabulary()` is defined against.
 */

export const ACTION_OPEN = '<action>';
export const ACTION_CLOSE = '</action>';

/** Longest model output we look at; anything beyond is ignored (keeps the regex cheap). */
const MAX_SCAN_CHARS = 20_000;

/**
 * The action text in a model output: the content of the last `<action>…</action>` pair, or, when
 * there is none, the whole output (so a bare action word like `BET` still parses). Returns the
 * trimmed text, or null for non-strings and empty text. Never throws.
 */
export function extractActionText(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  const text = raw.length > MAX_SCAN_CHARS ? raw.slice(-MAX_SCAN_CHARS) : raw;
  const re = /<action>([\s\S]*?)<\/action>/gi;
  let last: string | null = null;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) last = m[1]!;
  const chosen = (last ?? text).trim();
  return chosen.length > 0 ? chosen : null;
}

/**
 * Split text into the words a word-level tokenizer sees: whitespace-separated, with the action
 * tags and the punctuation `( ) , .` split off as words of their own. Every word of every
 * observation, rules text and canonical action, split this way, is in the env's `vocabulary()`.
 */
export function splitWords(text: string): string[] {
  return text
    .replace(/<\/?action>/g, (tag) => ` ${tag} `)
    .replace(/[(),.]/g, (ch) => ` ${ch} `)
    .split(/\s+/)
    .filter((w) => w.length > 0);
}

/** Sorted, de-duplicated words of some texts plus extra words. */
export function vocabularyOf(texts: readonly string[], extra: readonly string[] = []): string[] {
  const words = new Set<string>(extra);
  for (const t of texts) for (const w of splitWords(t)) words.add(w);
  words.add(ACTION_OPEN);
  words.add(ACTION_CLOSE);
  return [...words].sort();
}
