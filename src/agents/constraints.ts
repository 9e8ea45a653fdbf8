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
