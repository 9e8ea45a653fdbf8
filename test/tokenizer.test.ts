import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { EOS_TOKEN, MARKUP_TOKENS, PAD_TOKEN, UNK_TOKEN, WordTokenizer, preTokenize, tokenizerFromJSON } from '../src/engine/tokenizer.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { makeEnv } from '../src/envs/registry.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');

describe('preTokenize', () => {
  it('splits whitespace, punctuation and markup tags into their own pieces', () => {
    expect(preTokenize('<action>(1, 2)</action>')).toEqual(['<action>', '(', '1', ',', '2', ')', '</action>']);
    expect(preTokenize('  Pot: 3 | you?  hold K!\n<remark>bet</remark>')).toEqual(['Pot', ':', '3', '|', 'you', '?', 'hold', 'K', '!', '<remark>', 'bet', '</remark>']);
    expect(preTokenize('-> a<b x<y>z 1.5')).toEqual(['->', 'a<b', 'x', '<y>', 'z', '1', '.', '5']);
    expect(preTokenize('')).toEqual([]);
  });

  it('is idempotent: every piece splits into exactly itself', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), (text) => {
      for (const piece of preTokenize(text)) expect(preTokenize(piece)).toEqual([piece]);
    }), { numRuns: 300 });
  });
});

describe('WordTokenizer', () => {
  const words = ['BET', 'CHECK', 'you', 'hold', 'K', 'Pot:', 'zeta', 'alpha'];

  it('assigns ids deterministically: specials, markup, then sorted words', () => {
    const tok = WordTokenizer.fromVocabulary(words);
    expect(tok.tokenId(PAD_TOKEN)).toBe(0);
    expect(tok.tokenId(EOS_TOKEN)).toBe(1);
    expect(tok.tokenId(UNK_TOKEN)).toBe(2);
    expect([tok.padId, tok.eosId, tok.unkId]).toEqual([0, 1, 2]);
    MARKUP_TOKENS.forEach((m, i) => expect(tok.tokenId(m)).toBe(3 + i));
    const rest = tok.vocabulary().slice(3 + MARKUP_TOKENS.length);
    expect(rest).toEqual(['BET', 'CHECK', 'K', 'Pot', 'alpha', 'hold', 'you', 'zeta', ...'(),.:|?!'].sort());
    expect(tok.vocabSize).toBe(3 + MARKUP_TOKENS.length + rest.length);
    // Same ids whatever the input order, duplicates, or words that are already specials.
    const shuffled = WordTokenizer.fromVocabulary([...words].reverse().concat(['BET', '<eos>', '<action>']));
    expect(shuffled.toJSON()).toEqual(tok.toJSON());
  });

  it('encodes the action grammar token by token and decodes with single spaces', () => {
    const tok = WordTokenizer.fromVocabulary(['1', '2']);
    const ids = tok.encode('<action>(1, 2)</action>');
    expect(ids.map((i) => tok.tokenString(i))).toEqual(['<action>', '(', '1', ',', '2', ')', '</action>']);
    expect(tok.decode(ids)).toBe('<action> ( 1 , 2 ) </action>');
    expect(tok.encode(tok.decode(ids))).toEqual(ids);
  });

  it('maps unknown words to <unk> and never throws on odd text', () => {
    const tok = WordTokenizer.fromVocabulary(['known']);
    expect(tok.encode('known unknown <weird> known')).toEqual([tok.tokenId('known'), 2, 2, tok.tokenId('known')]);
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('\u0000 \uD800 🙂')).toEqual([2, 2, 2]);
    expect(tok.tokenId('unknown')).toBeUndefined();
  });

  it('decodes ids the model may emit beyond the vocabulary as <unk>, but tokenString refuses them', () => {
    const tok = WordTokenizer.fromVocabulary(['a']);
    expect(tok.decode([tok.vocabSize + 5, -1])).toBe('<unk> <unk>');
    expect(() => tok.tokenString(tok.vocabSize)).toThrow(/outside the vocabulary/);
    expect(() => tok.tokenString(1.5)).toThrow(/outside the vocabulary/);
  });

  it('accepts extra special tokens and rejects ones that are not single pieces', () => {
    const tok = WordTokenizer.fromVocabulary(['b', 'a'], { specials: ['<reflect>', '</reflect>'] });
    expect(tok.tokenId('<reflect>')).toBe(3 + MARKUP_TOKENS.length);
    expect(tok.tokenId('</reflect>')).toBe(4 + MARKUP_TOKENS.length);
    expect(tok.vocabulary().slice(5 + MARKUP_TOKENS.length)).toEqual([...'(),.:|?!', 'a', 'b'].sort());
    expect(() => WordTokenizer.fromVocabulary([], { specials: ['two words'] })).toThrow(/not a single token/);
    expect(() => WordTokenizer.fromVocabulary([], { specials: ['a:b'] })).toThrow(/not a single token/);
  });

  it('round-trips encode(decode(ids)) == ids for any ids over any vocabulary (fast-check)', () => {
    const vocabArb = fc.array(fc.string({ unit: 'grapheme', maxLength: 8 }), { maxLength: 30 });
    fc.assert(fc.property(vocabArb, fc.array(fc.nat(), { maxLength: 40 }), (vocab, raw) => {
      const tok = WordTokenizer.fromVocabulary(vocab);
      const ids = raw.map((r) => r % tok.vocabSize);
      expect(tok.encode(tok.decode(ids))).toEqual(ids);
      // The brief's property: ids without <unk>/<pad> (holds for those too, as shown above).
      const clean = ids.filter((i) => i !== tok.unkId && i !== tok.padId);
      expect(tok.encode(tok.decode(clean))).toEqual(clean);
    }), { numRuns: 300 });
  });

  it('decode(encode(text)) is the text normalised to single-spaced pieces when every piece is known', () => {
    fc.assert(fc.property(fc.array(fc.constantFrom('Pot', ':', '3', '<action>', 'BET', '</action>', '(', ',', ')', ' ', '\n', '.', 'x<y'), { maxLength: 30 }), (parts) => {
      const text = parts.join('');
      const tok = WordTokenizer.fromVocabulary(['Pot', '3', 'BET', 'x<y', 'Pot3']);
      const ids = tok.encode(text);
      expect(tok.decode(ids)).toBe(preTokenize(text).map((p) => (tok.tokenId(p) === undefined ? UNK_TOKEN : p)).join(' '));
      expect(tok.encode(tok.decode(ids))).toEqual(ids);
    }), { numRuns: 200 });
  });

  it('serialises to JSON and back with identical ids', () => {
    const tok = WordTokenizer.fromVocabulary(words, { specials: ['<reflect>'] });
    const json = JSON.parse(JSON.stringify(tok.toJSON()));
    const back = WordTokenizer.fromJSON(json);
    expect(back.vocabulary()).toEqual(tok.vocabulary());
    expect(back.encode('you hold K <action> BET </action>')).toEqual(tok.encode('you hold K <action> BET </action>'));
    expect(tokenizerFromJSON(json)).toBeInstanceOf(WordTokenizer);
  });

  it('rejects malformed JSON with a clear message', () => {
    const good = WordTokenizer.fromVocabulary(['a']).toJSON();
    expect(() => WordTokenizer.fromJSON(null)).toThrow(/type 'agentrl-word'/);
    expect(() => WordTokenizer.fromJSON({ ...good, version: 2 })).toThrow(/unsupported version 2/);
    expect(() => WordTokenizer.fromJSON({ ...good, tokens: [...good.tokens, 'a'] })).toThrow(/'a' appears twice/);
    expect(() => WordTokenizer.fromJSON({ ...good, tokens: ['<eos>', '<pad>', ...good.tokens.slice(2)] })).toThrow(/first tokens must be/);
    expect(() => WordTokenizer.fromJSON({ ...good, tokens: [...good.tokens, 'a b'] })).toThrow(/not a single piece/);
    expect(() => WordTokenizer.fromJSON({ ...good, tokens: good.tokens.filter((t) => t !== '<think>') })).toThrow(/<think> is missing/);
    expect(() => tokenizerFromJSON({ type: 'sentencepiece' })).toThrow(/unknown tokenizer type "sentencepiece"/);
  });

  it('covers every word an environment renders (no <unk> in its observations)', () => {
    for (const name of ['kuhn', 'tictactoe'] as const) {
      const env = makeEnv(name);
      const tok = WordTokenizer.fromVocabulary(env.vocabulary());
      const texts = [env.rules(), env.reset(7), ...env.legalActions().map((a) => `<action>${a}</action>`)];
      for (const t of texts) expect(tok.encode(t), `${name}: ${t}`).not.toContain(tok.unkId);
    }
  });
});

describe('HfTokenizer (tiny byte-level BPE fixture)', () => {
  const tok = HfTokenizer.fromDirectory(FIXTURE);

  it('loads tokenizer.json + tokenizer_config.json', () => {
    expect(tok.vocabSize).toBe(270); // 256 bytes + 11 merges + 3 added tokens
    expect(tok.eosToken).toBe('<|im_end|>');
    expect(tok.eosId).toBe(269);
    expect(tok.specialIds).toEqual([267, 268, 269]);
    expect(tok.tokenId('Ġworld')).toBe(266);
    expect(tok.tokenString(262)).toBe('hello');
    expect(() => tok.tokenString(9999)).toThrow(/not in the vocabulary/);
  });

  it('applies the merges and the special tokens', () => {
    const ids = tok.encode('<|im_start|>hello world, the<|im_end|>');
    expect(ids.map((i) => tok.tokenString(i))).toEqual(['<|im_start|>', 'hello', 'Ġworld', ',', 'Ġthe', '<|im_end|>']);
    expect(tok.decode(ids)).toBe('<|im_start|>hello world, the<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('hello world, the');
    expect(tok.decode([])).toBe('');
    // No special tokens are added unless asked (the ByteLevel post-processor adds none anyway).
    expect(tok.encode('hello')).toEqual([262]);
  });

  it('round-trips any text: decode(encode(s)) == s (fast-check)', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }), { numRuns: 300 });
  });

  it('serialises into a checkpoint-friendly JSON and back', () => {
    const back = tokenizerFromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
    expect(back).toBeInstanceOf(HfTokenizer);
    expect(back.encode('the hello world 🙂')).toEqual(tok.encode('the hello world 🙂'));
    expect(back.eosId).toBe(tok.eosId);
  });

  it('reads the newer [a, b] merges format the same way', () => {
    const json = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8'));
    json.model.merges = json.model.merges.map((m: string) => m.split(' '));
    const t2 = HfTokenizer.fromObjects(json, { eos_token: { content: '<|endoftext|>' } });
    expect(t2.eosId).toBe(267);
    expect(t2.encode('hello world the')).toEqual(tok.encode('hello world the'));
  });

  it('explains what is wrong with a bad directory or config', () => {
    const json = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8'));
    expect(() => HfTokenizer.fromDirectory(join(FIXTURE, 'nope'))).toThrow(/tokenizer\.json does not exist/);
    expect(() => HfTokenizer.fromObjects({ ...json, model: { type: 'Mystery' } })).toThrow(/cannot load tokenizer\.json: Unknown TokenizerModel type: Mystery/);
    expect(() => HfTokenizer.fromObjects({ ...json, added_tokens: [] })).toThrow(/cannot tell the end-of-sequence token/);
    expect(() => HfTokenizer.fromObjects(json, { eos_token: '</s>' })).toThrow(/"<\/s>" is not in the vocabulary/);
    expect(HfTokenizer.fromObjects({ ...json, added_tokens: [] }, {}, { eosToken: 'hello' }).eosId).toBe(262);
  });
});
