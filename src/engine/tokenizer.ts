/**
 * The word-level tokenizer of the built-in model.
 *
 * Text is pre-tokenized by one rule (`preTokenize`): split on whitespace, then split off every
 * `<tag>`/`</tag>` markup token and every punctuation character `( ) , . : | ? !` as a token of its
 * own. So `<action>(1, 2)</action>` is the tokens `<action> ( 1 , 2 ) </action>`.
 *
 * Ids are deterministic: `<pad>` = 0, `<eos>` = 1, `<unk>` = 2, then the fixed markup tokens
 * (MARKUP_TOKENS), then extra special tokens in the order given, then the punctuation characters
 * and every other word together in sorted (UTF-16 code unit) order. `decode` joins token strings with single spaces, which `encode` maps
 * back to the same ids: `encode(decode(ids))` equals `ids` for every list of valid ids.
 */
import type { Tokenizer } from './types.ts';
import { HfTokenizer } from './hf-tokenizer.ts';

export const PAD_TOKEN = '<pad>';
export const EOS_TOKEN = '<eos>';
export const UNK_TOKEN = '<unk>';

/** Markup tokens every WordTokenizer has (agent grammars rely on them being single tokens). */
export const MARKUP_TOKENS: readonly string[] = [
  '<action>', '</action>',
  '<remark>', '</remark>',
  '<answer>', '</answer>',
  '<search>', '</search>',
  '<think>', '</think>',
  '<information>', '</information>',
];

/** Characters that are always tokens of their own. */
const PUNCTUATION = '(),.:|?!';
/** One markup tag or one punctuation character; everything between matches is a plain word. */
const SPLIT_PATTERN = /<\/?[A-Za-z_][\w-]*>|[(),.:|?!]/g;
const TAG_PATTERN = /^<\/?[A-Za-z_][\w-]*>$/;

/**
 * Split text into the pieces the word tokenizer maps to ids. Idempotent: every piece it returns
 * splits into exactly itself (a word fragment never contains a tag or a punctuation character).
 */
export function preTokenize(text: string): string[] {
  const pieces: string[] = [];
  for (const chunk of text.split(/\s+/)) {
    if (chunk.length === 0) continue;
    let last = 0;
    for (const m of chunk.matchAll(SPLIT_PATTERN)) {
      if (m.index > last) pieces.push(chunk.slice(last, m.index));
      pieces.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < chunk.length) pieces.push(chunk.slice(last));
  }
  return pieces;
}

/** Is this token string a `<tag>` or `</tag>` markup token? */
export function isMarkupToken(token: string): boolean {
  return TAG_PATTERN.test(token);
}

/** Is this token string one of the split-off punctuation characters? */
export function isPunctuationToken(token: string): boolean {
  return token.length === 1 && PUNCTUATION.includes(token);
}

export interface WordTokenizerOptions {
  /** Extra markup/special tokens (e.g. `<reflect>`), placed right after the built-in ones. */
  specials?: readonly string[];
}

/** Serialised form, stored in checkpoints. `tokens[i]` is the string of id i. */
export interface WordTokenizerJSON {
  type: 'agentrl-word';
  version: 1;
  tokens: string[];
}

export class WordTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly padId = 0;
  readonly eosId = 1;
  readonly unkId = 2;
  private readonly tokens: readonly string[];
  private readonly ids: Map<string, number>;

  private constructor(tokens: readonly string[]) {
    const problems = validateTokenList(tokens);
    if (problems) throw new Error(`WordTokenizer: ${problems}`);
    this.tokens = [...tokens];
    this.ids = new Map(this.tokens.map((t, i) => [t, i]));
    this.vocabSize = this.tokens.length;
  }

  /**
   * Build a tokenizer from words. Each word is pre-tokenized first, so `"Card:"` adds `Card` (and
   * `:`, which like every split-off punctuation character is always in the vocabulary); duplicates
   * and words equal to special tokens are dropped.
   */
  static fromVocabulary(words: Iterable<string>, opts: WordTokenizerOptions = {}): WordTokenizer {
    const specials = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, ...MARKUP_TOKENS];
    for (const s of opts.specials ?? []) {
      const pieces = preTokenize(s);
      if (pieces.length !== 1 || pieces[0] !== s) {
        throw new Error(`WordTokenizer: special token '${s}' is not a single token under the pre-tokenization rule (use a <tag>-style name or a word without whitespace and ( ) , . : | ? !)`);
      }
      if (!specials.includes(s)) specials.push(s);
    }
    const taken = new Set(specials);
    // The punctuation characters are always tokens: the pre-tokenizer always splits them off.
    const rest = new Set<string>([...PUNCTUATION]);
    for (const w of words) for (const piece of preTokenize(w)) if (!taken.has(piece)) rest.add(piece);
    return new WordTokenizer([...specials, ...[...rest].sort()]);
  }

  /** Rebuild from `toJSON()` output; ids are exactly those that were saved. */
  static fromJSON(json: unknown): WordTokenizer {
    const j = json as Partial<WordTokenizerJSON> | null;
    if (!j || typeof j !== 'object' || j.type !== 'agentrl-word') {
      throw new Error(`WordTokenizer.fromJSON: expected an object with type 'agentrl-word', got ${describe(j)}`);
    }
    if (j.version !== 1) throw new Error(`WordTokenizer.fromJSON: unsupported version ${String(j.version)} (this build reads version 1)`);
    if (!Array.isArray(j.tokens) || !j.tokens.every((t) => typeof t === 'string')) {
      throw new Error('WordTokenizer.fromJSON: `tokens` must be an array of strings');
    }
    return new WordTokenizer(j.tokens);
  }

  toJSON(): WordTokenizerJSON {
    return { type: 'agentrl-word', version: 1, tokens: [...this.tokens] };
  }

  /** Unknown pieces map to `<unk>`; never throws. */
  encode(text: string): number[] {
    return preTokenize(text).map((p) => this.ids.get(p) ?? this.unkId);
  }

  /**
   * Token strings joined by single spaces. Ids outside the vocabulary (a model may have more
   * output rows than the tokenizer has tokens) decode as `<unk>` rather than throwing.
   */
  decode(ids: readonly number[]): string {
    return ids.map((id) => this.tokens[id] ?? UNK_TOKEN).join(' ');
  }

  tokenString(id: number): string {
    const t = this.tokens[id];
    if (t === undefined || !Number.isInteger(id)) throw new RangeError(`WordTokenizer: token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    return t;
  }

  tokenId(token: string): number | undefined {
    return this.ids.get(token);
  }

  /** All token strings in id order. */
  vocabulary(): readonly string[] {
    return this.tokens;
  }
}

/** A tokenizer that can be stored in a checkpoint manifest. */
export type SerializableTokenizer = Tokenizer & { toJSON(): unknown };

/** Rebuild a WordTokenizer or HfTokenizer from its `toJSON()` output (e.g. a checkpoint's). */
export function tokenizerFromJSON(json: unknown): SerializableTokenizer {
  const type = (json as { type?: unknown } | null)?.type;
  if (type === 'agentrl-word') return WordTokenizer.fromJSON(json);
  if (type === 'huggingface') return HfTokenizer.fromJSON(json);
  throw new Error(`tokenizerFromJSON: unknown tokenizer type ${JSON.stringify(type)} (expected 'agentrl-word' or 'huggingface')`);
}

/** Why a token list cannot be a WordTokenizer vocabulary, or null when it can. */
function validateTokenList(tokens: readonly string[]): string | null {
  if (tokens[0] !== PAD_TOKEN || tokens[1] !== EOS_TOKEN || tokens[2] !== UNK_TOKEN) {
    return `the first tokens must be ${PAD_TOKEN}, ${EOS_TOKEN}, ${UNK_TOKEN} (ids 0, 1, 2), got ${JSON.stringify(tokens.slice(0, 3))}`;
  }
  const seen = new Set<string>();
  for (const [i, t] of tokens.entries()) {
    if (seen.has(t)) return `token '${t}' appears twice (second time at id ${i})`;
    seen.add(t);
    const pieces = preTokenize(t);
    if (pieces.length !== 1 || pieces[0] !== t) {
      return `token ${JSON.stringify(t)} (id ${i}) is not a single piece under the pre-tokenization rule, so encode could never produce it`;
    }
  }
  for (const m of MARKUP_TOKENS) if (!seen.has(m)) return `markup token ${m} is missing`;
  return null;
}

function describe(x: unknown): string {
  if (x === null || typeof x !== 'object') return JSON.stringify(x) ?? String(x);
  return `an object with type ${JSON.stringify((x as { type?: unknown }).type)}`;
}
