import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchConfig, ArchFamily, HfTensors } from '../src/engine/arch.ts';
import { ggufToHf, ggufTokenizerToJson, hfToGguf, detectPreTokenizer } from '../src/engine/gguf-convert.ts';
import { decodeGgufTensor, gguf, parseGguf, readGguf, writeGguf, type GgufFile, type GgufValue } from '../src/engine/gguf.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const tokenizerJson = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
const tokenizerConfig = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
const FAMILIES: ArchFamily[] = ['llama', 'qwen2', 'qwen3', 'gpt2'];

function convert(arch: ArchConfig, tensors: HfTensors, dtype: 'F32' | 'F16' | 'BF16' | 'Q8_0' = 'F32') {
  return hfToGguf(arch, tensors, tokenizerJson, { dtype, tokenizerConfig });
}
const sameBits = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const meta = (f: GgufFile, k: string) => f.metadata.get(k);
const tensorOf = (f: GgufFile, name: string) => decodeGgufTensor(f, f.tensorInfos.find((t) => t.name === name)!);

/** Rewrite a GGUF with edited metadata / tensors (tensors re-encoded as F32). */
function rewrite(bytes: Uint8Array, edit: (md: Map<string, GgufValue>, tensors: Map<string, { shape: number[]; data: Float32Array }>) => void): Uint8Array {
  const { file, tensors } = readGguf(bytes);
  const md = new Map(file.metadata);
  const ts = new Map([...tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data }]));
  edit(md, ts);
  return writeGguf({ metadata: md, tensors: [...ts].map(([name, t]) => ({ name, ...t, type: 'F32' as const })) });
}

describe('hfToGguf → ggufToHf round trips', () => {
  for (const family of FAMILIES) {
    it(`${family}: F32 gives back the same ArchConfig and bit-identical tensors`, () => {
      const arch = tinyArch(family);
      const tensors = randomHfTensors(arch, 11);
      const back = ggufToHf(convert(arch, tensors), `${family}.gguf`);
      expect(back.arch).toEqual(arch);
      expect([...back.tensors.keys()].sort()).toEqual([...tensors.keys()].sort());
      for (const [name, t] of tensors) {
        const b = back.tensors.get(name)!;
        expect([name, b.shape]).toEqual([name, t.shape]);
        expect(sameBits(b.data, t.data)).toBe(true);
        expect(b.dtype).toBe('F32');
      }
    });

    it(`${family}: F16, BF16 and Q8_0 come back within their rounding bounds, norms and biases exact`, () => {
      const arch = tinyArch(family);
      const tensors = randomHfTensors(arch, 12);
      // Relative bounds of round-to-nearest: 2^-11 (F16), 2^-8 (BF16); Q8_0: d/2 + 127·|d − f16(d)| with d ≤ max|x|/127.
      for (const dtype of ['F16', 'BF16', 'Q8_0'] as const) {
        const back = ggufToHf(convert(arch, tensors, dtype)).tensors;
        for (const [name, t] of tensors) {
          const b = back.get(name)!.data;
          const oneD = t.shape.length === 1;
          let amax = 0;
          for (const v of t.data) amax = Math.max(amax, Math.abs(v));
          for (let i = 0; i < b.length; i++) {
            const x = t.data[i]!, err = Math.abs(b[i]! - x);
            const bound = oneD ? 0 : dtype === 'F16' ? Math.abs(x) * 2 ** -11 + 2 ** -25 : dtype === 'BF16' ? Math.abs(x) * 2 ** -8 : (amax / 127) * (0.5 + 127 * 2 ** -11);
            if (err > bound) expect({ name, dtype, i, x, got: b[i], err }).toEqual({ bound }); // fail with the details
          }
        }
      }
    });
  }

  it('GPT-2 names without the transformer. prefix give the same file', () => {
    const arch = tinyArch('gpt2');
    const tensors = randomHfTensors(arch, 3);
    const bare: HfTensors = new Map([...tensors].map(([n, t]) => [n.replace(/^transformer\./, ''), t]));
    bare.set('h.0.attn.bias', { shape: [1, 1, 64, 64], data: new Float32Array(64 * 64), dtype: 'F32' }); // HF buffer: dropped
    expect(Buffer.from(convert(arch, bare)).equals(Buffer.from(convert(arch, tensors)))).toBe(true);
  });
});

describe('llama.cpp conventions in the written file', () => {
  it('writes the hyper-parameters, tokenizer and storage types llama.cpp reads', () => {
    const arch = tinyArch('qwen3');
    const f = parseGguf(convert(arch, randomHfTensors(arch, 1), 'Q8_0'));
    expect(meta(f, 'general.architecture')).toEqual(gguf.str('qwen3'));
    expect(meta(f, 'general.file_type')).toEqual(gguf.u32(7));
    expect(meta(f, 'qwen3.block_count')).toEqual(gguf.u32(2));
    expect(meta(f, 'qwen3.context_length')).toEqual(gguf.u32(64));
    expect(meta(f, 'qwen3.embedding_length')).toEqual(gguf.u32(32));
    expect(meta(f, 'qwen3.feed_forward_length')).toEqual(gguf.u32(48));
    expect(meta(f, 'qwen3.attention.head_count')).toEqual(gguf.u32(4));
    expect(meta(f, 'qwen3.attention.head_count_kv')).toEqual(gguf.u32(1));
    expect(meta(f, 'qwen3.attention.key_length')).toEqual(gguf.u32(16)); // ≠ 32 / 4
    expect(meta(f, 'qwen3.attention.value_length')).toEqual(gguf.u32(16));
    expect(meta(f, 'qwen3.rope.freq_base')).toEqual(gguf.f32(1000000));
    expect(meta(f, 'qwen3.attention.layer_norm_rms_epsilon')).toEqual(gguf.f32(Math.fround(1e-6)));
    expect(meta(f, 'tokenizer.ggml.model')).toEqual(gguf.str('gpt2'));
    expect(meta(f, 'tokenizer.ggml.pre')).toEqual(gguf.str('gpt-2')); // tiny-bpe: ByteLevel with the GPT-2 regex
    const tokens = (meta(f, 'tokenizer.ggml.tokens') as { value: string[] }).value;
    expect(tokens.length).toBe(270);
    expect(tokens.slice(267)).toEqual(['<|endoftext|>', '<|im_start|>', '<|im_end|>']);
    expect(tokens[48]).toBe('0');
    const types = (meta(f, 'tokenizer.ggml.token_type') as { value: number[] }).value;
    expect(types.slice(264)).toEqual([1, 1, 1, 3, 3, 3]); // normal, …, control for the special tokens
    const merges = (meta(f, 'tokenizer.ggml.merges') as { value: string[] }).value;
    expect(merges.length).toBe(11);
    expect(merges[0]).toBe('Ġ t');
    expect(meta(f, 'tokenizer.ggml.eos_token_id')).toEqual(gguf.u32(269));
    expect(meta(f, 'tokenizer.ggml.padding_token_id')).toEqual(gguf.u32(267));
    expect(meta(f, 'tokenizer.ggml.bos_token_id')).toBeUndefined();
    const typeOf = (n: string) => f.tensorInfos.find((t) => t.name === n)!.type;
    expect(typeOf('token_embd.weight')).toBe('Q8_0');
    expect(typeOf('blk.0.attn_q.weight')).toBe('Q8_0');
    expect(typeOf('blk.0.ffn_down.weight')).toBe('F16'); // row length 48 is not a multiple of 32: F16 as the converter does
    expect(typeOf('blk.0.attn_q_norm.weight')).toBe('F32');
    expect(typeOf('blk.0.attn_norm.weight')).toBe('F32');
    expect(typeOf('output_norm.weight')).toBe('F32');
    expect(f.tensorInfos.some((t) => t.name === 'output.weight')).toBe(false); // tied
    expect(f.tensorInfos.find((t) => t.name === 'blk.0.attn_q.weight')!.dims).toEqual([32, 64]); // ne[0] = in
  });

  it('permutes Llama q/k rows (weights and biases) per head into interleaved pairs, and leaves Qwen alone', () => {
    for (const family of ['llama', 'qwen2'] as const) {
      const arch = tinyArch(family, { qkvBias: true }); // heads 4, kv heads 2, head 8
      const tensors = randomHfTensors(arch, 5);
      const rowIds = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, (_, i) => Math.floor(i / cols));
      tensors.set('model.layers.0.self_attn.q_proj.weight', { shape: [32, 32], data: rowIds(32, 32), dtype: 'F32' });
      tensors.set('model.layers.0.self_attn.k_proj.bias', { shape: [16], data: rowIds(16, 1), dtype: 'F32' });
      const f = parseGguf(convert(arch, tensors));
      const q = tensorOf(f, 'blk.0.attn_q.weight').data, kb = tensorOf(f, 'blk.0.attn_k.bias').data;
      const qRows = Array.from({ length: 32 }, (_, r) => q[r * 32]);
      const kRows = Array.from(kb);
      if (family === 'llama') {
        // Within each head of 8 rows, HF row order [0 1 2 3 | 4 5 6 7] becomes [0 4 1 5 2 6 3 7].
        const perm = (n: number) => Array.from({ length: n }, (_, h) => [0, 4, 1, 5, 2, 6, 3, 7].map((r) => h * 8 + r)).flat();
        expect(qRows).toEqual(perm(4));
        expect(kRows).toEqual(perm(2));
      } else {
        expect(qRows).toEqual(Array.from({ length: 32 }, (_, r) => r));
        expect(kRows).toEqual(Array.from({ length: 16 }, (_, r) => r));
      }
    }
  });

  it('transposes GPT-2 Conv1D weights to [out, in] and names the fused QKV attn_qkv', () => {
    const arch = tinyArch('gpt2');
    const tensors = randomHfTensors(arch, 2);
    const f = parseGguf(convert(arch, tensors));
    const src = tensors.get('transformer.h.1.attn.c_attn.weight')!; // [32, 96] = [in, out]
    const info = f.tensorInfos.find((t) => t.name === 'blk.1.attn_qkv.weight')!;
    expect(info.shape).toEqual([96, 32]);
    expect(info.dims).toEqual([32, 96]);
    const w = decodeGgufTensor(f, info).data;
    for (const [i, o] of [[0, 0], [3, 70], [31, 95]] as const) expect(w[o * 32 + i]).toBe(src.data[i * 96 + o]);
    expect(f.tensorInfos.find((t) => t.name === 'position_embd.weight')!.type).toBe('F32');
    expect(meta(f, 'gpt2.attention.layer_norm_epsilon')).toEqual(gguf.f32(Math.fround(1e-5)));
    expect(meta(f, 'gpt2.feed_forward_length')).toEqual(gguf.u32(128));
  });

  it('writes llama3 RoPE scaling as rope_freqs.weight (hand-computed) and linear scaling as rope.scaling.*', () => {
    const arch = tinyArch('llama'); // head 8, θ 10⁴, factor 8, low 1, high 4, original 16
    const f = parseGguf(convert(arch, randomHfTensors(arch, 1)));
    // Wavelengths 2π·10^(0,1,2,3): only 2π lies between 16/4 and 16/1.
    const s = (16 / (2 * Math.PI) - 1) / (4 - 1);
    const want = [1 / ((1 - s) / 8 + s), 8, 8, 8];
    const got = Array.from(tensorOf(f, 'rope_freqs.weight').data);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 5));
    expect(meta(f, 'llama.rope.scaling.type')).toBeUndefined();
    expect(meta(f, 'llama.rope.dimension_count')).toEqual(gguf.u32(8));

    const lin = tinyArch('llama', { ropeScaling: { type: 'linear', factor: 2 } });
    const g = parseGguf(convert(lin, randomHfTensors(lin, 1)));
    expect(meta(g, 'llama.rope.scaling.type')).toEqual(gguf.str('linear'));
    expect(meta(g, 'llama.rope.scaling.factor')).toEqual(gguf.f32(2));
    expect(g.tensorInfos.some((t) => t.name === 'rope_freqs.weight')).toBe(false);
    expect(ggufToHf(convert(lin, randomHfTensors(lin, 1))).arch.ropeScaling).toEqual({ type: 'linear', factor: 2 });
  });

  it('recovers Llama 3.2 RoPE parameters from rope_freqs.weight alone (a file from llama.cpp\'s converter)', () => {
    const sc = { type: 'llama3' as const, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };
    const arch = tinyArch('llama', { hiddenSize: 128, nHead: 2, nKvHead: 1, headDim: 64, ropeTheta: 500000, ropeScaling: sc });
    const stripped = rewrite(convert(arch, randomHfTensors(arch, 1)), (md) => { for (const k of [...md.keys()]) if (k.startsWith('agentrl.')) md.delete(k); });
    const got = ggufToHf(stripped).arch.ropeScaling as typeof sc;
    expect(got.type).toBe('llama3');
    expect(got.factor).toBe(32);
    expect(got.lowFreqFactor).toBe(1);
    expect(got.highFreqFactor).toBeCloseTo(4, 6);
    expect(got.originalMaxPositions).toBe(8192);
    // The tiny model has a single factor strictly between 1 and 8: not enough to fit, and the error says so.
    const tiny = tinyArch('llama');
    const tinyStripped = rewrite(convert(tiny, randomHfTensors(tiny, 1)), (md) => { for (const k of [...md.keys()]) if (k.startsWith('agentrl.')) md.delete(k); });
    expect(() => ggufToHf(tinyStripped, 'tiny.gguf')).toThrow(/^tiny\.gguf: cannot recover the llama3 RoPE parameters from rope_freqs\.weight \(4 factors, 1 between 1 and 8\)/);
  });
});

describe('tokenizer', () => {
  it('recognises the pre-tokenizers of the supported families', () => {
    expect(detectPreTokenizer(tokenizerJson)).toBe('gpt-2');
    const seq = (...p: unknown[]) => ({ pre_tokenizer: { type: 'Sequence', pretokenizers: p } });
    const qwen = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    expect(detectPreTokenizer(seq({ type: 'Split', pattern: { Regex: qwen } }, { type: 'ByteLevel', use_regex: false }))).toBe('qwen2');
    expect(detectPreTokenizer(seq({ type: 'Split', pattern: { Regex: qwen.replace('\\p{N}|', '\\p{N}{1,3}|') } }, { type: 'ByteLevel', use_regex: false }))).toBe('llama-bpe');
    expect(detectPreTokenizer(seq({ type: 'Digits', individual_digits: true }, { type: 'ByteLevel', use_regex: true }))).toBe('smollm');
    expect(detectPreTokenizer(seq({ type: 'Whitespace' }))).toBeNull();
  });

  it('ggufToHf returns the stored tokenizer, and its tokenizer.json encodes text exactly like the original', () => {
    const arch = tinyArch('qwen2');
    const { tokenizer } = ggufToHf(convert(arch, randomHfTensors(arch, 1)));
    expect(tokenizer).toMatchObject({ model: 'gpt2', pre: 'gpt-2', eosTokenId: 269, padTokenId: 267, bosTokenId: null, unkTokenId: null });
    expect(tokenizer.tokens.length).toBe(270);
    const original = HfTokenizer.fromObjects(tokenizerJson, tokenizerConfig);
    const rebuilt = HfTokenizer.fromObjects(ggufTokenizerToJson(tokenizer), tokenizerConfig);
    for (const text of ['the cat sat', 'Hello, world! 123', '<|im_start|>user\nhi<|im_end|>', '  spaces\tand\nlines  ']) {
      expect(rebuilt.encode(text)).toEqual(original.encode(text));
      expect(rebuilt.decode(original.encode(text))).toBe(text);
    }
    expect(rebuilt.eosId).toBe(269);
  });

  it('pads a model vocabulary larger than the tokenizer with unused [PADn] tokens', () => {
    const arch = tinyArch('gpt2', { vocabSize: 272 });
    const f = parseGguf(convert(arch, randomHfTensors(arch, 1)));
    expect((meta(f, 'tokenizer.ggml.tokens') as { value: string[] }).value.slice(269)).toEqual(['<|im_end|>', '[PAD270]', '[PAD271]']);
    expect((meta(f, 'tokenizer.ggml.token_type') as { value: number[] }).value.slice(269)).toEqual([3, 5, 5]);
  });
});

describe('clear errors', () => {
  const arch = tinyArch('llama');
  const tensors = () => randomHfTensors(arch, 1);

  it('hfToGguf: missing, unexpected or misshapen tensors, unknown pre-tokenizer, non-BPE tokenizer', () => {
    const t1 = tensors(); t1.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => convert(arch, t1)).toThrow(/^hfToGguf: 1 tensor\(s\) missing for LlamaForCausalLM: model\.layers\.1\.mlp\.up_proj\.weight/);
    const t2 = tensors(); t2.set('lm_head.weight', { shape: [270, 32], data: new Float32Array(270 * 32), dtype: 'F32' });
    expect(() => convert(arch, t2)).toThrow(/unexpected tensor\(s\) .*: lm_head\.weight \(check tiedEmbeddings/);
    const t3 = tensors(); t3.set('model.norm.weight', { shape: [33], data: new Float32Array(33), dtype: 'F32' });
    expect(() => convert(arch, t3)).toThrow(/tensor model\.norm\.weight has shape \[33\], expected \[32\]/);
    const odd = { ...tokenizerJson, pre_tokenizer: { type: 'Whitespace' } };
    expect(() => hfToGguf(arch, tensors(), odd, { dtype: 'F32' })).toThrow(/cannot tell llama\.cpp's pre-tokenizer .*pass \{ pre:/);
    expect(hfToGguf(arch, tensors(), odd, { dtype: 'F32', pre: 'default' })).toBeInstanceOf(Uint8Array);
    expect(() => hfToGguf(arch, tensors(), { model: { type: 'WordPiece' } }, { dtype: 'F32' })).toThrow(/only byte-level BPE tokenizers are supported/);
  });

  it('ggufToHf: unsupported architecture, missing and unexpected tensors', () => {
    const good = convert(arch, tensors());
    expect(() => ggufToHf(rewrite(good, (md) => md.set('general.architecture', gguf.str('falcon'))), 'f.gguf'))
      .toThrow(/^f\.gguf: unsupported architecture 'falcon' \(supported: llama, qwen2, qwen3, gpt2\)/);
    expect(() => ggufToHf(rewrite(good, (_, ts) => ts.delete('blk.1.ffn_up.weight')), 'm.gguf'))
      .toThrow(/^m\.gguf: 1 tensor\(s\) missing for a llama model: blk\.1\.ffn_up\.weight/);
    expect(() => ggufToHf(rewrite(good, (_, ts) => ts.set('blk.0.ffn_gate_inp.weight', { shape: [4, 32], data: new Float32Array(128) })), 'x.gguf'))
      .toThrow(/^x\.gguf: unexpected tensor\(s\) for a llama model: blk\.0\.ffn_gate_inp\.weight/);
    expect(() => ggufToHf(rewrite(good, (md) => md.delete('tokenizer.ggml.model')), 't.gguf')).toThrow(/^t\.gguf: has no tokenizer/);
  });
});
