/**
 * MAGE trials with a pretrained model's BPE tokenizer (test/fixtures/tiny-bpe: byte-level, so
 * `<action>` is 8 tokens, not one): the token grammar walks the tokenizer's own encodings of the
 * well-formed answers, every completion of a constrained trial is one of them, the prompt is the
 * model's tokenization of the trial text, and the trainer recomputes exactly the logprobs the
 * sampler recorded (token-in-token-out); unconstrained, generation stops at the text `</action>`
 * and the env judges what was written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { grammarConstraint, grammarMaxTokens } from '../src/agents/constraints.ts';
import { runTrial } from '../src/agents/trial.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadModel } from '../src/engine/load-model.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { KuhnEnv } from '../src/envs/kuhn.ts';
import { BanditEnv } from '../src/envs/bandit.ts';
import { policyFromModel } from '../src/train/meta-setup.ts';
import { TokenSource } from '../src/core/types.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const TINY_BPE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const tok = HfTokenizer.fromDirectory(TINY_BPE);
const ids = (text: string) => tok.encode(text);
const allowed = (mask: Uint8Array | null) => (mask ? [...mask.keys()].filter((i) => mask[i] === 1) : null);

describe('grammarConstraint (tokens of a BPE tokenizer)', () => {
  it('walks the encodings of whole answers: forced tokens, the branch between actions, then EOS', () => {
    const pass = ids('<action> PASS </action>'), bet = ids('<action> BET </action>');
    // Byte-level: '<' 'a' 'c' 't' 'i' 'o' 'n' '>' ' ' then 'P' (80) or 'B' (66).
    expect(pass.slice(0, 10)).toEqual([60, 97, 99, 116, 105, 111, 110, 62, 32, 80]);
    expect(bet[9]).toBe(66);
    const c = grammarConstraint(tok, [{ options: ['<action> PASS </action>', '<action> BET </action>'] }]);
    expect(allowed(c([]))).toEqual([60]);
    expect(allowed(c(pass.slice(0, 9)))).toEqual([66, 80]);
    expect(allowed(c(pass.slice(0, 10)))).toEqual([65]); // 'A' of PASS
    expect(allowed(c(pass))).toEqual([tok.eosId]);
    expect(allowed(c(bet))).toEqual([tok.eosId]);
    // Equal positions share one mask array (the sampler stores a reference per token).
    expect(c(pass.slice(0, 3))).toBe(c(bet.slice(0, 3)));
    expect(grammarMaxTokens(tok, [{ options: ['<action> PASS </action>', '<action> BET </action>'] }])).toBe(pass.length);
  });

  it('repeats a piece between min and max times; options sharing a prefix keep every reading', () => {
    const pieces = [{ options: ['<remark>'] }, { options: [' go', ' good'], min: 0, max: 2 }, { options: [' </remark>'] }];
    const c = grammarConstraint(tok, pieces);
    const open = ids('<remark>');
    const sp = 32, g = ids('g')[0]!, o = ids('o')[0]!, lt = 60;
    expect(allowed(c(open))).toEqual([sp]);
    expect(allowed(c([...open, sp]))).toEqual([lt, g].sort((a, b) => a - b)); // a word or the closing tag
    // After ' go' the word may end (a space starts the next word or the tag) or go on to ' good'.
    expect(allowed(c([...open, sp, g, o]))).toEqual([sp, o].sort((a, b) => a - b));
    // Two words written: only the closing tag remains.
    const two = [...open, ...ids(' go'), ...ids(' good')];
    expect(allowed(c([...two, sp]))).toEqual([lt]);
    const done = [...two, ...ids(' </remark>')];
    expect(allowed(c(done))).toEqual([tok.eosId]);
    expect(tok.decode(done)).toBe('<remark> go good </remark>');
    expect(grammarMaxTokens(tok, pieces)).toBe(open.length + 2 * ids(' good').length + ids(' </remark>').length);
    expect(() => grammarConstraint(tok, [{ options: [] }])).toThrow(/piece 0 has no options/);
  });
});

describe('MAGE trials on a pretrained model with its own BPE tokenizer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'agentrl-model-path-trial-'));
    const arch = tinyArch('llama');
    await writeHfModelDir(join(dir, 'llama'), arch, randomHfTensors(arch, 7), { dtype: 'F32', tokenizerFrom: TINY_BPE });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const policy = async () => {
    const loaded = await loadModel(join(dir, 'llama'), defaultBackend(), { contextLength: 256, chatTemplate: false });
    return { tokenizer: loaded.tokenizer, ...policyFromModel(loaded.model, loaded.tokenizer, { optimizer: {}, seed: 3, maxBatch: 8 }) };
  };

  it('constrained: every action is a well-formed answer in the tokenizer\'s own tokens, and the trainer recomputes the sampler\'s logprobs', async () => {
    const { tokenizer, engine, trainer } = await policy();
    expect(tokenizer.tokenId('</action>')).toBeUndefined(); // the word-tokenizer slots cannot apply
    const answers = new Map(['PASS', 'BET'].map((a) => [`<action> ${a} </action>`, ids(`<action> ${a} </action>`)]));
    const trials = await Promise.all([1, 2, 3, 4].map((seed) => runTrial(new KuhnEnv({ opponent: 'random', observation: 'token' }), engine,
      { episodes: 2, reflect: false, maxTurns: 2, rules: 'none', contextMode: 'history_only', pastEpisodes: 'outcome' }, { seed, groupId: `g${seed}`, opponent: 'random' })));
    const samples = trials.flatMap((t) => t.samples);
    expect(samples.length).toBeGreaterThanOrEqual(8);
    for (const s of samples) {
      const trained = s.seq.ids.filter((_, i) => s.seq.mask[i] === 1);
      const text = tokenizer.decode(trained);
      expect(answers.get(text), text).toEqual(trained);
      expect(s.step!.valid).toBe(true);
      // The prompt is the model's tokenization of the trial text (merges included), not re-tokenized.
      const prompt = s.seq.ids.filter((_, i) => s.seq.source[i] === TokenSource.prompt);
      expect(tokenizer.decode(prompt)).toMatch(/^\| trial \d of 2 .* ->$/);
      expect(tokenizer.encode(tokenizer.decode(prompt))).toEqual(prompt);
      expect(prompt.some((id) => id >= 256)).toBe(true);
      // Forced tokens have probability 1; the branch token (PASS or BET) is a real choice.
      const lps = s.seq.logprobs.filter((_, i) => s.seq.mask[i] === 1);
      expect(lps.filter((x) => x === 0)).toHaveLength(trained.length - 1);
      expect(lps[9]).toBeLessThan(0);
      expect(s.seq.constraintMasks!.filter((_, i) => s.seq.mask[i] === 1).every((m) => m !== null)).toBe(true);
    }
    // One mask array per grammar position, shared by every call (not one per call: a real vocabulary is 150k wide).
    const firstMask = (k: number) => samples[k]!.seq.constraintMasks![samples[k]!.seq.mask.indexOf(1)];
    expect(firstMask(samples.length - 1)).toBe(firstMask(0));
    const recomputed = trainer.computeLogprobs(samples);
    samples.forEach((s, k) => s.seq.mask.forEach((m, i) => {
      if (m === 1) expect(recomputed[k]![i]).toBeCloseTo(s.seq.logprobs[i]!, 4);
    }));
  });

  it('constrained reflections write `<remark> words </remark>` from the remark and action words', async () => {
    const { tokenizer, engine } = await policy();
    const t = await runTrial(new BanditEnv(), engine, { episodes: 2, reflect: true, maxTurns: 1, rules: 'none', maxRemarkWords: 3 }, { seed: 5, groupId: 'g', opponent: 'none' });
    const reflection = t.samples.find((s) => s.step!.kind === 'reflection')!;
    const text = tokenizer.decode(reflection.seq.ids.filter((_, i) => reflection.seq.mask[i] === 1));
    expect(text).toMatch(/^<remark>( (good|bad|try|avoid|A|B|C)){0,3} <\/remark>$/);
    expect(reflection.step!.valid).toBe(true);
  });

  it('unconstrained: the model writes freely until the text </action>; malformed turns are observed and penalised by the env', async () => {
    const { tokenizer, engine } = await policy();
    const budget = 2 * ids('<action> PASS </action>').length;
    const trials = await Promise.all([1, 2].map((seed) => runTrial(new KuhnEnv({ opponent: 'random', observation: 'token' }), engine,
      { episodes: 1, reflect: false, maxTurns: 2, rules: 'none', constrained: false }, { seed, groupId: `g${seed}`, opponent: 'random' })));
    for (const s of trials.flatMap((t) => t.samples)) {
      const trained = s.seq.ids.filter((_, i) => s.seq.mask[i] === 1);
      const text = tokenizer.decode(trained);
      expect(text.endsWith('</action>') || trained.length === budget || trained.at(-1) === tokenizer.eosId, text).toBe(true);
      expect(text.indexOf('</action>')).toBe(text.endsWith('</action>') ? text.length - 9 : -1);
      expect(s.step!.valid).toBe(/<action>\s*(PASS|BET)\s*<\/action>$/i.test(text) || /^\s*(PASS|BET)\s*$/i.test(text));
      expect(s.seq.constraintMasks?.every((m) => m === null) ?? true).toBe(true);
    }
  });
});
