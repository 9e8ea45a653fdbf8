import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ArchConfig, ArchFamily, HfTensors } from '../src/engine/arch.ts';
import { archToHfConfig } from '../src/engine/hf-config.ts';
import { expectedHfTensors, readHfModelDir, writeHfModelDir } from '../src/engine/hf-weights.ts';
import { f32ToBf16Bits, readSafetensorsFileHeader, writeSafetensorsAs } from '../src/engine/safetensors.ts';
import { hfTensorShapes, randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FAMILIES: ArchFamily[] = ['llama', 'qwen2', 'qwen3', 'gpt2'];
const TINY_BPE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-hf-weights-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(scratch, `m${n++}`);

/** BF16 rounding of an F32 value, as a float (f32ToBf16Bits is checked against an independent reference in hf-safetensors.test.ts). */
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const bf16 = (x: number) => { u32[0] = f32ToBf16Bits(x) << 16; return f32[0]!; };

/** A model directory written by hand: config.json of `arch` plus the given safetensors files. */
function handDir(arch: ArchConfig, files: Record<string, [string, { shape: number[]; data: Float32Array }][] | string>): string {
  const dir = fresh();
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(archToHfConfig(arch)));
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : writeSafetensorsAs(content, 'F32'));
  }
  return dir;
}
const entries = (t: HfTensors) => [...t.entries()].map(([k, v]) => [k, { shape: v.shape, data: v.data }] as [string, { shape: number[]; data: Float32Array }]);
const llama = tinyArch('llama', { tiedEmbeddings: false });
const configOf = (dir: string) => join(dir, 'config.json');

describe('expectedHfTensors', () => {
  it('lists every parameter of a one-layer Qwen3 with attention biases (hand-written)', () => {
    const arch = tinyArch('qwen3', { nLayer: 1, qkvBias: true, oBias: true, tiedEmbeddings: false });
    // hidden 32, 4 heads × head_dim 16 = 64 query channels, 1 KV head = 16 channels, FFN 48, vocab 270.
    expect([...expectedHfTensors(arch)]).toEqual([
      ['model.embed_tokens.weight', [270, 32]],
      ['model.layers.0.input_layernorm.weight', [32]],
      ['model.layers.0.self_attn.q_proj.weight', [64, 32]],
      ['model.layers.0.self_attn.k_proj.weight', [16, 32]],
      ['model.layers.0.self_attn.v_proj.weight', [16, 32]],
      ['model.layers.0.self_attn.q_proj.bias', [64]],
      ['model.layers.0.self_attn.k_proj.bias', [16]],
      ['model.layers.0.self_attn.v_proj.bias', [16]],
      ['model.layers.0.self_attn.q_norm.weight', [16]],
      ['model.layers.0.self_attn.k_norm.weight', [16]],
      ['model.layers.0.self_attn.o_proj.weight', [32, 64]],
      ['model.layers.0.self_attn.o_proj.bias', [32]],
      ['model.layers.0.post_attention_layernorm.weight', [32]],
      ['model.layers.0.mlp.gate_proj.weight', [48, 32]],
      ['model.layers.0.mlp.up_proj.weight', [48, 32]],
      ['model.layers.0.mlp.down_proj.weight', [32, 48]],
      ['model.norm.weight', [32]],
      ['lm_head.weight', [270, 32]],
    ]);
    expect(hfTensorShapes).toBe(expectedHfTensors); // the test helper uses the loader's list
  });

  it('GPT-2: Conv1D weights [in, out], prefixed names; Llama mlp_bias adds three biases per layer', () => {
    const g = expectedHfTensors(tinyArch('gpt2', { nLayer: 1 }));
    expect(g.get('transformer.h.0.attn.c_attn.weight')).toEqual([32, 96]);
    expect(g.get('transformer.h.0.mlp.c_fc.weight')).toEqual([32, 128]);
    expect(g.get('transformer.wpe.weight')).toEqual([64, 32]);
    expect(g.size).toBe(2 + 12 + 2);
    const l = expectedHfTensors(tinyArch('llama', { nLayer: 1, mlpBias: true }));
    expect(['gate', 'up', 'down'].map((p) => l.get(`model.layers.0.mlp.${p}_proj.bias`))).toEqual([[48], [48], [32]]);
  });
});

describe('writeHfModelDir → readHfModelDir round trips', () => {
  for (const family of FAMILIES) {
    for (const dtype of ['F32', 'BF16'] as const) {
      for (const sharded of [false, true]) {
        it(`${family}, ${dtype}, ${sharded ? 'sharded' : 'one file'}`, async () => {
          const arch = family === 'llama' ? llama : tinyArch(family);
          const tensors = randomHfTensors(arch, 7);
          const dir = fresh();
          const maxShardBytes = sharded ? 6000 : undefined;
          const { files } = await writeHfModelDir(dir, arch, tensors, { dtype, maxShardBytes });
          expect(readdirSync(dir).sort()).toEqual([...files].sort());
          expect(readdirSync(scratch).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);

          const config = JSON.parse(readFileSync(configOf(dir), 'utf8'));
          expect(config.torch_dtype).toBe(dtype === 'F32' ? 'float32' : 'bfloat16');
          if (sharded) {
            const shards = files.filter((f) => f.endsWith('.safetensors'));
            expect(shards.length).toBeGreaterThan(1);
            shards.forEach((f, i) => expect(f).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
            const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
            const width = dtype === 'F32' ? 4 : 2;
            const total = [...tensors.values()].reduce((s, t) => s + t.data.length * width, 0);
            expect(index.metadata).toEqual({ total_size: total });
            expect(Object.keys(index.weight_map).sort()).toEqual([...tensors.keys()].sort());
            // Each shard holds what the index says, within the size limit unless it is one oversized tensor.
            for (const f of shards) {
              const h = await readSafetensorsFileHeader(join(dir, f));
              expect([...h.tensors.keys()].sort()).toEqual(Object.keys(index.weight_map).filter((k) => index.weight_map[k] === f).sort());
              expect(h.metadata).toEqual({ format: 'pt' });
              const bytes = [...h.tensors.values()].reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * width, 0);
              expect(bytes <= 6000 || h.tensors.size === 1).toBe(true);
            }
          } else {
            expect(files.sort()).toEqual(['config.json', 'model.safetensors']);
          }

          const back = await readHfModelDir(dir);
          expect(back.arch).toEqual(arch);
          expect(back.generationConfig).toBeUndefined();
          expect([...back.tensors.keys()]).toEqual([...expectedHfTensors(arch).keys()]);
          for (const [name, t] of tensors) {
            const b = back.tensors.get(name)!;
            expect(b.shape, name).toEqual(t.shape);
            expect(b.dtype, name).toBe(dtype);
            const want = dtype === 'F32' ? t.data : t.data.map(bf16);
            expect(Buffer.from(b.data.buffer).equals(Buffer.from(want.buffer)), name).toBe(true);
          }
          if (dtype === 'BF16') expect(back.tensors.get(embeddingOf(arch))!.data).not.toEqual(tensors.get(embeddingOf(arch))!.data); // really rounded
        });
      }
    }
  }

  it('a tensor larger than the shard limit gets a shard of its own (transformers rule)', async () => {
    const arch = tinyArch('qwen2', { nLayer: 1 });
    const tensors = randomHfTensors(arch, 3);
    const dir = fresh();
    // The embedding (270 × 32 × 4 bytes = 34,560) exceeds the limit; everything else fits in shards of 20,000 bytes.
    const { files } = await writeHfModelDir(dir, arch, tensors, { dtype: 'F32', maxShardBytes: 20000 });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shardOf = (name: string) => index.weight_map[name];
    expect(Object.keys(index.weight_map).filter((k) => shardOf(k) === shardOf('model.embed_tokens.weight'))).toEqual(['model.embed_tokens.weight']);
    expect(files.filter((f) => f.startsWith('model-')).length).toBe(new Set(Object.values(index.weight_map)).size);
    expect((await readHfModelDir(dir)).tensors.get('lm_head.weight')!.data).toEqual(tensors.get('lm_head.weight')!.data);
  });

  it('copies the tokenizer files and returns generation_config.json', async () => {
    const src = fresh();
    mkdirSync(src);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) writeFileSync(join(src, f), readFileSync(join(TINY_BPE, f)));
    writeFileSync(join(src, 'generation_config.json'), JSON.stringify({ eos_token_id: [269, 267], temperature: 0.7 }));
    writeFileSync(join(src, 'unrelated.txt'), 'not copied');
    const dir = fresh();
    const arch = tinyArch('qwen3');
    const { files } = await writeHfModelDir(dir, arch, randomHfTensors(arch), { dtype: 'F32', tokenizerFrom: src });
    expect(files.sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) expect(readFileSync(join(dir, f)).equals(readFileSync(join(TINY_BPE, f)))).toBe(true);
    expect((await readHfModelDir(dir)).generationConfig).toEqual({ eos_token_id: [269, 267], temperature: 0.7 });
    rmSync(join(src, 'tokenizer.json'));
    await expect(writeHfModelDir(fresh(), arch, randomHfTensors(arch), { dtype: 'F32', tokenizerFrom: src })).rejects.toThrow(`tokenizerFrom ${src} has no tokenizer.json`);
  });
});

describe('what transformers writes besides the parameters', () => {
  it('GPT-2 names without the transformer. prefix, attn.bias / attn.masked_bias buffers: normalised and dropped', async () => {
    const arch = tinyArch('gpt2');
    const tensors = randomHfTensors(arch, 5);
    const bare = entries(tensors).map(([k, v]) => [k.replace(/^transformer\./, ''), v] as [string, typeof v]);
    const buffers: [string, { shape: number[]; data: Float32Array }][] = [
      ['h.0.attn.bias', { shape: [1, 1, 64, 64], data: new Float32Array(64 * 64).fill(1) }],
      ['h.1.attn.masked_bias', { shape: [], data: Float32Array.from([-1e4]) }],
    ];
    const dir = handDir(arch, { 'model.safetensors': [...bare, ...buffers] });
    const back = await readHfModelDir(dir);
    expect([...back.tensors.keys()]).toEqual([...tensors.keys()]);
    expect(back.tensors.get('transformer.h.1.mlp.c_proj.weight')!.data).toEqual(tensors.get('transformer.h.1.mlp.c_proj.weight')!.data);
    // The writer takes bare names too, and saves them prefixed, as GPT2LMHeadModel does.
    const out = fresh();
    await writeHfModelDir(out, arch, new Map(bare.map(([k, v]) => [k, { ...v, dtype: 'F32' as const }])), { dtype: 'F32' });
    expect([...(await readSafetensorsFileHeader(join(out, 'model.safetensors'))).tensors.keys()].every((k) => k.startsWith('transformer.'))).toBe(true);
    // Both spellings of one tensor is an error.
    const twice = handDir(arch, { 'model.safetensors': [...entries(tensors), ['wte.weight', { shape: [270, 32], data: tensors.get('transformer.wte.weight')!.data }]] });
    await expect(readHfModelDir(twice)).rejects.toThrow(`${join(twice, 'model.safetensors')}: tensor 'transformer.wte.weight' appears twice (as 'transformer.wte.weight' and as 'wte.weight')`);
  });

  it('rotary_emb.inv_freq buffers are dropped; a tied model\'s lm_head.weight is accepted only when it equals the embedding', async () => {
    const arch = tinyArch('llama'); // tied
    const tensors = randomHfTensors(arch, 9);
    const emb = tensors.get('model.embed_tokens.weight')!;
    const extras: [string, { shape: number[]; data: Float32Array }][] = [
      ['model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [4], data: Float32Array.from([1, 0.1, 0.01, 0.001]) }],
      ['lm_head.weight', { shape: emb.shape, data: emb.data.slice() }],
    ];
    const ok = await readHfModelDir(handDir(arch, { 'model.safetensors': [...entries(tensors), ...extras] }));
    expect([...ok.tensors.keys()]).toEqual([...tensors.keys()]);
    expect(ok.tensors.has('lm_head.weight')).toBe(false);

    const other = emb.data.slice();
    other[37] += 0.5;
    const dir = handDir(arch, { 'model.safetensors': [...entries(tensors), ['lm_head.weight', { shape: emb.shape, data: other }]] });
    await expect(readHfModelDir(dir)).rejects.toThrow(
      `${join(dir, 'model.safetensors')}: tensor 'lm_head.weight' differs from 'model.embed_tokens.weight' (first at element 37: ${other[37]} vs ${emb.data[37]}) but ${configOf(dir)} ties them (tie_word_embeddings); set tie_word_embeddings: false to use a separate head`);
    const g = tinyArch('gpt2');
    const gt = randomHfTensors(g, 1);
    const gdir = handDir(g, { 'model.safetensors': [...entries(gt), ['lm_head.weight', { shape: [270, 32], data: new Float32Array(270 * 32) }]] });
    await expect(readHfModelDir(gdir)).rejects.toThrow(/tensor 'lm_head\.weight' differs from 'transformer\.wte\.weight' .*GPT2LMHeadModel always ties them/);
    const wrongShape = handDir(arch, { 'model.safetensors': [...entries(tensors), ['lm_head.weight', { shape: [270, 31], data: new Float32Array(270 * 31) }]] });
    await expect(readHfModelDir(wrongShape)).rejects.toThrow(`tensor 'lm_head.weight' has shape [270, 31], expected [270, 32] (the tied embedding's shape, from ${configOf(wrongShape)})`);
  });
});

describe('readHfModelDir refuses broken directories, naming the file, tensor and shapes', () => {
  const tensors = randomHfTensors(llama, 11);
  const shardedDir = async () => {
    const dir = fresh();
    await writeHfModelDir(dir, llama, tensors, { dtype: 'F32', maxShardBytes: 6000 });
    return dir;
  };
  const indexOf = (dir: string) => join(dir, 'model.safetensors.index.json');
  const editIndex = (dir: string, edit: (ix: { metadata: unknown; weight_map: Record<string, string> }) => void) => {
    const ix = JSON.parse(readFileSync(indexOf(dir), 'utf8'));
    edit(ix);
    writeFileSync(indexOf(dir), JSON.stringify(ix));
  };

  it('a missing shard', async () => {
    const dir = await shardedDir();
    const ix = JSON.parse(readFileSync(indexOf(dir), 'utf8'));
    const shard = ix.weight_map['model.norm.weight'];
    rmSync(join(dir, shard));
    await expect(readHfModelDir(dir)).rejects.toThrow(new RegExp(`^${esc(indexOf(dir))}: shard ${esc(shard)} does not exist in ${esc(dir)} \\(the index maps \\d+ tensor\\(s\\) to it, e\\.g\\. '[^']+'\\); the download is incomplete$`));
  });

  it('a tensor listed in the index but absent from its shard', async () => {
    const dir = await shardedDir();
    let shard = '';
    editIndex(dir, (ix) => { shard = ix.weight_map['model.norm.weight']!; ix.weight_map['model.layers.9.mlp.up_proj.weight'] = shard; });
    await expect(readHfModelDir(dir)).rejects.toThrow(`${indexOf(dir)}: tensor 'model.layers.9.mlp.up_proj.weight' is listed in shard ${shard} but that file does not contain it`);
  });

  it('a tensor in a shard that the index does not list, or maps elsewhere (stored twice)', async () => {
    const dir = await shardedDir();
    let shard = '';
    editIndex(dir, (ix) => { shard = ix.weight_map['model.norm.weight']!; delete ix.weight_map['model.norm.weight']; });
    await expect(readHfModelDir(dir)).rejects.toThrow(`${join(dir, shard)}: tensor 'model.norm.weight' is not listed in model.safetensors.index.json`);

    const twice = await shardedDir();
    const ix = JSON.parse(readFileSync(indexOf(twice), 'utf8'));
    const first = ix.weight_map['model.embed_tokens.weight'], last = ix.weight_map['model.norm.weight'];
    expect(first).not.toBe(last);
    // Rewrite the last shard with an extra copy of the embedding.
    const lastNames = Object.keys(ix.weight_map).filter((k) => ix.weight_map[k] === last);
    writeFileSync(join(twice, last), writeSafetensorsAs([...lastNames, 'model.embed_tokens.weight'].map((k) => [k, tensors.get(k)!]), 'F32'));
    await expect(readHfModelDir(twice)).rejects.toThrow(new RegExp(`tensor 'model\\.embed_tokens\\.weight' is also stored here, but model\\.safetensors\\.index\\.json maps it to ${esc(first)} \\(every tensor must appear once\\)`));
  });

  it('a malformed index', async () => {
    const dir = await shardedDir();
    writeFileSync(indexOf(dir), JSON.stringify({ metadata: {} }));
    await expect(readHfModelDir(dir)).rejects.toThrow(`${indexOf(dir)}: weight_map: is missing (it maps each tensor to its shard file)`);
    writeFileSync(indexOf(dir), JSON.stringify({ weight_map: { 'model.norm.weight': '../elsewhere.safetensors' } }));
    await expect(readHfModelDir(dir)).rejects.toThrow(`${indexOf(dir)}: weight_map names shard "../elsewhere.safetensors", which is not a file name in the model directory`);
    writeFileSync(indexOf(dir), '{"weight_map": ');
    await expect(readHfModelDir(dir)).rejects.toThrow(new RegExp(`^${esc(indexOf(dir))}: is not valid JSON`));
  });

  it('missing, misshapen and unexpected tensors', async () => {
    const without = entries(tensors).filter(([k]) => k !== 'model.layers.1.mlp.down_proj.weight');
    const d1 = handDir(llama, { 'model.safetensors': without });
    await expect(readHfModelDir(d1)).rejects.toThrow(`${d1}: missing tensor 'model.layers.1.mlp.down_proj.weight' [32, 48]: LlamaForCausalLM as ${configOf(d1)} describes it has it`);
    const d2 = handDir(llama, { 'model.safetensors': entries(tensors).filter(([k]) => k !== 'lm_head.weight') });
    await expect(readHfModelDir(d2)).rejects.toThrow(`missing tensor 'lm_head.weight' [270, 32]: LlamaForCausalLM as ${configOf(d2)} describes it has it (${configOf(d2)} says tie_word_embeddings: false)`);
    const d3 = handDir(llama, { 'model.safetensors': entries(tensors).filter(([k]) => !k.startsWith('model.layers.1.')) });
    await expect(readHfModelDir(d3)).rejects.toThrow(/missing tensors 'model\.layers\.1\.input_layernorm\.weight' \[32\], 'model\.layers\.1\.self_attn\.q_proj\.weight' \[32, 32\], 'model\.layers\.1\.self_attn\.k_proj\.weight' \[16, 32\] and 6 more/);

    const bad = entries(tensors).map(([k, v]) => (k === 'model.layers.0.self_attn.k_proj.weight' ? [k, { shape: [32, 32], data: new Float32Array(1024) }] : [k, v]) as [string, typeof v]);
    const d4 = handDir(llama, { 'model.safetensors': bad });
    await expect(readHfModelDir(d4)).rejects.toThrow(`${join(d4, 'model.safetensors')}: tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 32], expected [16, 32] from ${configOf(d4)}`);

    const d5 = handDir(llama, { 'model.safetensors': [...entries(tensors), ['model.layers.0.self_attn.o_proj.bias', { shape: [32], data: new Float32Array(32) }]] });
    await expect(readHfModelDir(d5)).rejects.toThrow(`${join(d5, 'model.safetensors')}: unexpected tensor 'model.layers.0.self_attn.o_proj.bias': not a parameter of LlamaForCausalLM as ${configOf(d5)} describes it (check num_hidden_layers, attention_bias, mlp_bias, tie_word_embeddings and the architecture)`);
  });

  it('unsupported dtypes and non-finite weights', async () => {
    const d = handDir(llama, { 'model.safetensors': entries(tensors) });
    // Retype one tensor of the file as I8 (same bytes: 4× the elements) and as F64 (half the elements).
    const p = join(d, 'model.safetensors');
    const buf = readFileSync(p);
    const len = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8'));
    const rewrite = (edit: (h: Record<string, { dtype: string; shape: number[] }>) => void) => {
      const h = structuredClone(header);
      edit(h);
      const text = Buffer.from(JSON.stringify(h));
      const head = Buffer.alloc(8 + len, 0x20);
      head.writeBigUInt64LE(BigInt(len), 0);
      text.copy(head, 8);
      writeFileSync(p, Buffer.concat([head, buf.subarray(8 + len)]));
    };
    rewrite((h) => { h['model.norm.weight'] = { ...h['model.norm.weight']!, dtype: 'I8', shape: [128] }; });
    await expect(readHfModelDir(d)).rejects.toThrow(`${p}: tensor 'model.norm.weight' has unsupported dtype "I8" (supported: F32, F16, BF16)`);
    rewrite((h) => { h['model.norm.weight'] = { ...h['model.norm.weight']!, dtype: 'F64', shape: [16] }; });
    await expect(readHfModelDir(d)).rejects.toThrow(`${p}: tensor 'model.norm.weight' has unsupported dtype "F64" (supported: F32, F16, BF16)`);

    const nan = entries(tensors).map(([k, v]) => [k, k === 'model.layers.1.mlp.up_proj.weight' ? { shape: v.shape, data: v.data.map((x, i) => (i === 5 * 32 + 3 ? NaN : x)) } : v] as [string, typeof v]);
    const d2 = handDir(llama, { 'model.safetensors': nan });
    await expect(readHfModelDir(d2)).rejects.toThrow(`${join(d2, 'model.safetensors')}: tensor 'model.layers.1.mlp.up_proj.weight' holds NaN at [5, 3]; refusing to load non-finite weights`);
  });

  it('no directory, no config, a bad config, no weights, PyTorch weights only', async () => {
    const none = join(scratch, 'nowhere');
    await expect(readHfModelDir(none)).rejects.toThrow(`${none}: model directory does not exist`);
    const file = join(scratch, 'a-file');
    writeFileSync(file, 'x');
    await expect(readHfModelDir(file)).rejects.toThrow(`${file}: is not a directory`);

    const d = handDir(llama, { 'model.safetensors': entries(tensors) });
    rmSync(configOf(d));
    await expect(readHfModelDir(d)).rejects.toThrow(`${d}: config.json is missing (not a Hugging Face model directory?)`);
    writeFileSync(configOf(d), '{"architectures": [');
    await expect(readHfModelDir(d)).rejects.toThrow(new RegExp(`^${esc(configOf(d))}: is not valid JSON`));
    writeFileSync(configOf(d), JSON.stringify({ ...archToHfConfig(llama), architectures: ['MistralForCausalLM'] }));
    await expect(readHfModelDir(d)).rejects.toThrow(`${configOf(d)}: architectures: 'MistralForCausalLM' is not supported`);

    const empty = handDir(llama, {});
    await expect(readHfModelDir(empty)).rejects.toThrow(`${empty}: has neither model.safetensors nor model.safetensors.index.json (no weights)`);
    writeFileSync(join(empty, 'pytorch_model.bin'), 'pickle');
    await expect(readHfModelDir(empty)).rejects.toThrow(`${empty}: has pytorch_model.bin but no model.safetensors; only safetensors weights are supported`);

    const gen = handDir(llama, { 'model.safetensors': entries(tensors), 'generation_config.json': '[1]' });
    await expect(readHfModelDir(gen)).rejects.toThrow(`${join(gen, 'generation_config.json')}: is not a JSON object`);
  });
});

describe('writeHfModelDir is atomic and careful', () => {
  const arch = tinyArch('qwen2');
  const tensors = randomHfTensors(arch, 2);

  it('refuses a non-empty directory unless overwrite: true; an empty one is fine', async () => {
    const dir = fresh();
    mkdirSync(dir);
    await writeHfModelDir(dir, arch, tensors, { dtype: 'F32' }); // empty: replaced
    await expect(writeHfModelDir(dir, arch, tensors, { dtype: 'BF16' })).rejects.toThrow(`writeHfModelDir ${dir}: the directory exists and is not empty; pass overwrite: true to replace it`);
    expect(JSON.parse(readFileSync(configOf(dir), 'utf8')).torch_dtype).toBe('float32');
    writeFileSync(join(dir, 'stale.txt'), 'old');
    await writeHfModelDir(dir, arch, tensors, { dtype: 'BF16', overwrite: true, maxShardBytes: 5000 });
    expect(existsSync(join(dir, 'stale.txt'))).toBe(false);
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false); // the old single file went with the old directory
    expect((await readHfModelDir(dir)).tensors.get('model.norm.weight')!.dtype).toBe('BF16');
    expect(readdirSync(dirname(dir)).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);
  });

  it('a failure half-way leaves no directory (or the old one, untouched) and no temp files', async () => {
    const src = fresh();
    mkdirSync(join(src, 'tokenizer.json'), { recursive: true }); // exists, but reading it fails after the weights are written
    const dir = fresh();
    await expect(writeHfModelDir(dir, arch, tensors, { dtype: 'F32', tokenizerFrom: src })).rejects.toThrow(new RegExp(`^writeHfModelDir ${esc(dir)}: .*EISDIR`));
    expect(existsSync(dir)).toBe(false);
    const old = fresh();
    await writeHfModelDir(old, arch, tensors, { dtype: 'F32' });
    const before = readFileSync(join(old, 'model.safetensors'));
    await expect(writeHfModelDir(old, arch, tensors, { dtype: 'BF16', tokenizerFrom: src, overwrite: true })).rejects.toThrow(/EISDIR/);
    expect(readFileSync(join(old, 'model.safetensors')).equals(before)).toBe(true);
    expect(readdirSync(scratch).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);
  });

  it('refuses tensors that do not fit the architecture, non-finite weights and inexpressible architectures', async () => {
    const dir = fresh();
    const who = `writeHfModelDir ${dir}`;
    const missing = new Map(tensors);
    missing.delete('model.layers.0.self_attn.q_proj.bias');
    await expect(writeHfModelDir(dir, arch, missing, { dtype: 'F32' })).rejects.toThrow(`${who}: missing tensor 'model.layers.0.self_attn.q_proj.bias' [32]: Qwen2ForCausalLM as the ArchConfig describes it has it`);
    const extra = new Map(tensors).set('model.layers.0.self_attn.o_proj.bias', { shape: [32], data: new Float32Array(32), dtype: 'F32' });
    await expect(writeHfModelDir(dir, arch, extra, { dtype: 'F32' })).rejects.toThrow(`${who}: unexpected tensor 'model.layers.0.self_attn.o_proj.bias'`);
    const inf = new Map(tensors).set('model.norm.weight', { shape: [32], data: new Float32Array(32).fill(-Infinity), dtype: 'F32' });
    await expect(writeHfModelDir(dir, arch, inf, { dtype: 'F32' })).rejects.toThrow(`${who}: tensor 'model.norm.weight' holds -Infinity at [0]; refusing to write non-finite weights`);
    const short = new Map(tensors).set('model.norm.weight', { shape: [32], data: new Float32Array(31), dtype: 'F32' });
    await expect(writeHfModelDir(dir, arch, short, { dtype: 'F32' })).rejects.toThrow(`${who}: tensor 'model.norm.weight' has 31 elements but shape [32] needs 32`);
    await expect(writeHfModelDir(dir, { ...arch, oBias: true }, tensors, { dtype: 'F32' })).rejects.toThrow('archToHfConfig: oBias true cannot be written to a Qwen2ForCausalLM config.json');
    await expect(writeHfModelDir(dir, arch, tensors, { dtype: 'F32', maxShardBytes: 0 })).rejects.toThrow(`${who}: maxShardBytes must be a positive integer, got 0`);
    expect(existsSync(dir)).toBe(false);
  });
});

function embeddingOf(arch: ArchConfig): string {
  return arch.family === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
}

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
