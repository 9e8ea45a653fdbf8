/**
 * Token constraints (allowed-token masks) that hold a small model to a tag grammar, e.g.
 * `<action> BET </action>` or `<remark> w1 w2 … </remark>`. The sampler records each mask so the
 * trainer recomputes the behaviour logprob under the same mask.
 */
import type { TokenConstraint, Tokenizer } from '../engine/types.ts';

function maskOf(V: number, ids: Iterable<number>): Uint8Array {
  const m = new Uint8Array(V);
  for (const id of ids) if (id >= 0 && id < V) m[id] = 1;
  return m;
}

/** Resolve token strings to ids, failing loudly on strings the tokenizer does not have. */
export function tokenIds(tok: Tokenizer, words: readonly string[]): number[] {
  return words.map((w) => {
    const id = tok.tokenId(w);
    if (id === undefined) throw new Error(`token '${w}' is not in the tokenizer's vocabulary (build the tokenizer from the environment's vocabulary())`);
    return id;
  });
}

/** A fixed sequence of slots, each allowing a set of token ids; after the last slot only EOS is allowed. */
export function slotConstraint(tok: Tokenizer, slots: readonly (readonly number[])[]): TokenConstraint {
  const V = tok.vocabSize;
  const masks = slots.map((s) => maskOf(V, s));
  const eos = maskOf(V, [tok.eosId]);
  return (gen) => masks[gen.length] ?? eos;
}

/**
 * `<open> (word)* <close>`: after `open`, any of `words` or `close`; `close` is forced once
 * `maxWords` words were written; nothing after `close` but EOS.
 */
export function taggedTextConstraint(tok: Tokenizer, open: string, close: string, words: readonly string[], maxWords: number): TokenConstraint {
  const V = tok.vocabSize;
  const [openId, closeId] = tokenIds(tok, [open, close]);
  const first = maskOf(V, [openId!]);
  const body = maskOf(V, [...tokenIds(tok, words), closeId!]);
  const last = maskOf(V, [closeId!]);
  const eos = maskOf(V, [tok.eosId]);
  return (gen) => {
    if (gen.length === 0) return first;
    if (gen.includes(closeId!)) return eos;
    return gen.length - 1 >= maxWords ? last : body;
  };
}

/**
 * One piece of a token grammar for tokenizers whose tags are not single tokens (BPE): one of
 * `options` (texts, each encoded on its own by the tokenizer), repeated between `min` and `max`
 * times (default exactly once).
 */
export interface GrammarPiece {
  options: readonly string[];
  min?: number;
  max?: number;
}

interface TrieNode {
  id: number;
  next: Map<number, TrieNode>;
  /** An option's encoding ends here. */
  end: boolean;
}

/** Where the grammar can be after some tokens: inside a repetition of `piece` (at `node`), or done. */
interface GrammarState {
  piece: number;
  reps: number;
  node: TrieNode;
}

/**
 * Constrained decoding for any tokenizer: the completion spells the pieces in order, each option as
 * the tokenizer encodes it (so every sampled id is one the tokenizer itself produces for that text,
 * and the text decodes back to exactly the option). The mask allows every token that continues
 * some way through the grammar, plus EOS once the grammar is complete. The word-tokenizer
 * constraints above (`slotConstraint`, `taggedTextConstraint`) are the special case where every tag
 * and word is one token; this one walks a trie of each piece's encodings instead.
 *
 * An option whose encoding is a prefix of another's is fine (the walk keeps every reading). Masks
 * are cached per set of grammar states, so equal positions share one mask array.
 */
export function grammarConstraint(tok: Tokenizer, pieces: readonly GrammarPiece[]): TokenConstraint {
  if (pieces.length === 0) throw new Error('grammarConstraint: the grammar has no pieces');
  const V = tok.vocabSize;
  let nodes = 0;
  const tries = pieces.map((p, i) => {
    const min = p.min ?? 1, max = p.max ?? 1;
    if (p.options.length === 0) throw new Error(`grammarConstraint: piece ${i} has no options`);
    if (!(Number.isInteger(min) && Number.isInteger(max) && min >= 0 && max >= Math.max(1, min))) throw new Error(`grammarConstraint: piece ${i} needs integers 0 ≤ min ≤ max, max ≥ 1 (got min ${min}, max ${max})`);
    const root: TrieNode = { id: nodes++, next: new Map(), end: false };
    for (const text of p.options) {
      const ids = tok.encode(text);
      if (ids.length === 0) throw new Error(`grammarConstraint: option ${JSON.stringify(text)} encodes to no tokens`);
      let n = root;
      for (const id of ids) {
        let c = n.next.get(id);
        if (!c) n.next.set(id, (c = { id: nodes++, next: new Map(), end: false }));
        n = c;
      }
      n.end = true;
    }
    return { root, min, max };
  });
  /** States at the boundary after `reps` repetitions of piece `piece`: start another, or move on. */
  const boundary = (piece: number, reps: number, out: GrammarState[]): boolean => {
    if (piece === pieces.length) return true;
    const t = tries[piece]!;
    let accepts = false;
    if (reps < t.max) out.push({ piece, reps, node: t.root });
    if (reps >= t.min) accepts = boundary(piece + 1, 0, out) || accepts;
    return accepts;
  };
  const cache = new Map<string, Uint8Array>();
  return (gen) => {
    let states: GrammarState[] = [];
    let accepts = boundary(0, 0, states);
    for (const id of gen) {
      const next: GrammarState[] = [];
      accepts = false;
      for (const s of states) {
        const child = s.node.next.get(id);
        if (!child) continue;
        if (child.next.size > 0) next.push({ piece: s.piece, reps: s.reps, node: child });
        if (child.end) accepts = boundary(s.piece, s.reps + 1, next) || accepts;
      }
      states = next;
    }
    const key = `${accepts ? 1 : 0}|${[...new Set(states.map((s) => `${s.node.id}:${s.reps}`))].sort().join(',')}`;
    let mask = cache.get(key);
    if (!mask) {
      const ids: number[] = accepts || states.length === 0 ? [tok.eosId] : [];
      for (const s of states) ids.push(...s.node.next.keys());
      mask = maskOf(V, ids);
      cache.set(key, mask);
    }
    return mask;
  };
}

/** The longest completion `pieces` allow, in tokens (a generation budget that always fits the grammar). */
export function grammarMaxTokens(tok: Tokenizer, pieces: readonly GrammarPiece[]): number {
  return pieces.reduce((a, p) => a + (p.max ?? 1) * Math.max(...p.options.map((o) => tok.encode(o).length)), 0);
}
