import type { Tokenizer } from '../../src/engine/types.ts';

/** A tokenizer whose tokens are their own ids written as text ("3 7 1"); eos configurable. */
export function idTokenizer(V: number, eosId = -1): Tokenizer {
  return {
    vocabSize: V,
    eosId,
    encode: (t) => t.split(/\s+/).filter(Boolean).map(Number),
    decode: (ids) => ids.join(' '),
    tokenString: (id) => String(id),
    tokenId: (s) => (/^\d+$/.test(s) && Number(s) < V ? Number(s) : undefined),
  };
}
