/**
 * Export round trips (src/train/export.ts), for a Llama (grouped-query attention, llama3 RoPE: the
 * q/k row permutation matters) and GPT-2 (Conv1D weights, fused c_attn):
 *  - a merged export of an untrained LoRA is the base model byte for byte;
 *  - load → LoRA-train a few steps → exportMergedHf (F32) → reload gives bit-identical weights and
 *    logprobs; BF16 export stores the round-to-nearest-even values;
 *  - exportPeftAdapter → base + loadPeftAdapter gives bit-identical weights and logprobs;
 *  - PEFT's own semantics, computed independently in float64 on the Hugging Face tensors:
 *    W_hf + (α/r)·B·A (Linear) or W_hf + (α/r)·(B·A)ᵀ (GPT-2 Conv1D, fan_in_fan_out) equals the
 *    merged export — so the adapter means in PEFT/vLLM what it meant in the engine — and skipping
 *    the un-permutation of q/k lora_B would break it;
 *  - adapter files follow PEFT's names, shapes and config; what the engine cannot load is refused by name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchConfig, ArchFamily } from '../src/engine/arch.ts';
import { exportMergedHf, exportPeftAdapter, loadPeftAdapter, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE } from '../src/train/export.ts';
import { permuteRopeRows } from '../src/engine/hf-model.ts';
import { readHfModelDir, writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadModel } from '../src/engine/load-model.ts';
import type { Transformer } from '../src/engine/model.ts';
import { f32ToBf16Bits, readSafetensorsFileAsF32, writeSafetensorsAs } from '../src/engine/safetensors.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { LoraAdapter } from '../src/train/lora.ts';
import type { Sample } from '../src/core/types.ts';
import { Rng } from '../src/core/rng.ts';
import { fastBackend } from './helpers/backends.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-export-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const be = fastBackend();
let n = 0;
const fresh = (tag: string) => join(scratch, `${tag}-${n++}`);
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function samples(count: number, seed: number, V: number): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const ids = Array.from({ length: 12 }, () => rng.int(V));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i === 0 ? 0 : 1)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

function score(model: Transformer): Float32Array {
  const rng = new Rng(8), B = 2, T = 15, V = model.config.vocabSize;
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(V));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]!));
  return Float32Array.from(model.forward({ B, T, tokens, targets }).logprobs);
}

/** The module paths and Hugging Face weight names a full LoRA adapts in layer l. */
function peftModules(arch: ArchConfig, l: number): { path: string; weight: string; conv1d: boolean }[] {
  if (arch.family === 'gpt2') {
    return ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'].map((m) => ({ path: `transformer.h.${l}.${m}`, weight: `transformer.h.${l}.${m}.weight`, conv1d: true }));
  }
  return ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
    .map((m) => ({ path: `model.layers.${l}.${m}`, weight: `model.layers.${l}.${m}.weight`, conv1d: false }));
}

describe.each(['llama', 'gpt2'] as ArchFamily[])('%s', (family) => {
  const arch = tinyArch(family);
  const base = randomHfTensors(arch, 31);
  const RANK = 4, ALPHA = 8;

  /** The base model directory, a LoRA-trained model on it and the adapter. */
  async function trained() {
    const dir = fresh('base');
    await writeHfModelDir(dir, arch, base, { dtype: 'F32', tokenizerFrom: FIXTURE });
    const loaded = await loadModel(dir, be);
    const lora = new LoraAdapter(loaded.model, { rank: RANK, alpha: ALPHA, seed: 2 });
    const trainer = new BuiltinTrainer(loaded.model, { lr: 2e-2, weightDecay: 0 }, { lora });
    for (let s = 0; s < 3; s++) trainer.trainStep(samples(3, 40 + s, arch.vocabSize), sftLoss);
    return { dir, loaded, lora };
  }

  it('a merged export of an untrained LoRA is the base model, byte for byte', async () => {
    const dir = fresh('base');
    await writeHfModelDir(dir, arch, base, { dtype: 'F32', tokenizerFrom: FIXTURE });
    const { model } = await loadModel(dir, be);
    const lora = new LoraAdapter(model, { rank: RANK, alpha: ALPHA, seed: 3 });
    lora.merge();
    const out = fresh('untrained');
    await exportMergedHf(model, arch, out, { dtype: 'F32', tokenizerFrom: dir });
    expect(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(dir, 'model.safetensors')))).toBe(true);
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(readFileSync(join(out, 'tokenizer.json')).equals(readFileSync(join(FIXTURE, 'tokenizer.json')))).toBe(true);
  });

  it('LoRA-trained → exportMergedHf (F32) → reload: bit-identical weights and logprobs; the training changed the model', async () => {
    const { dir, loaded, lora } = await trained();
    const model = loaded.model;
    expect(lora.params.some((x, i) => i >= lora.layout[1]!.offset && i < lora.layout[1]!.offset + lora.layout[1]!.size && x !== 0)).toBe(true); // B moved off zero
    const out = fresh('merged');
    // Tokenizer written from the loaded HfTokenizer (the path a GGUF-loaded model takes).
    const { files } = await exportMergedHf(model, arch, out, { dtype: 'F32', tokenizerFrom: loaded.tokenizer });
    expect(files.sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const back = await loadModel(out, be);
    expect(back.arch).toEqual(arch);
    expect(bytes(back.model.params).equals(bytes(model.params))).toBe(true);
    expect(bytes(score(back.model)).equals(bytes(score(model)))).toBe(true);
    expect(back.tokenizer.encode('hello world')).toEqual(loaded.tokenizer.encode('hello world'));
    const original = await loadModel(dir, be);
    expect(bytes(score(original.model)).equals(bytes(score(model)))).toBe(false);
  });

  it('BF16 export stores each weight rounded to nearest even', async () => {
    const { loaded } = await trained();
    const out = fresh('bf16');
    await exportMergedHf(loaded.model, arch, out, { dtype: 'BF16', tokenizerFrom: loaded.path });
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const f32 = fresh('f32');
    await exportMergedHf(loaded.model, arch, f32, { dtype: 'F32' });
    const [a, b] = [await readHfModelDir(out), await readHfModelDir(f32)];
    let checked = 0;
    for (const [name, t] of b.tensors) {
      const r = a.tensors.get(name)!;
      expect(r.dtype, name).toBe('BF16');
      const bits = new Uint32Array(r.data.buffer, r.data.byteOffset, r.data.length);
      t.data.forEach((x, i) => { if (bits[i] !== (f32ToBf16Bits(x) << 16) >>> 0) throw new Error(`${name}[${i}]: ${r.data[i]} is not bf16(${x})`); });
      checked += t.data.length;
    }
    expect(checked).toBeGreaterThan(10_000);
  });

  it('exportPeftAdapter → base + loadPeftAdapter: bit-identical weights and logprobs; PEFT names, shapes and config', async () => {
    const { dir, loaded, lora } = await trained();
    const out = fresh('peft');
    const { files } = await exportPeftAdapter(lora, arch, out, { baseModel: 'org/tiny-base' });
    expect(files).toEqual([PEFT_WEIGHTS_FILE, PEFT_CONFIG_FILE]);
    const cfg = JSON.parse(readFileSync(join(out, PEFT_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: RANK, lora_alpha: ALPHA, lora_dropout: 0, bias: 'none',
      fan_in_fan_out: family === 'gpt2', base_model_name_or_path: 'org/tiny-base', inference_mode: true, use_dora: false, use_rslora: false,
      target_modules: family === 'gpt2' ? ['c_attn', 'c_fc', 'c_proj'] : ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'],
    });
    const { tensors } = await readSafetensorsFileAsF32(join(out, PEFT_WEIGHTS_FILE));
    const shapes = new Map<string, number[]>();
    for (let l = 0; l < arch.nLayer; l++) {
      for (const m of peftModules(arch, l)) {
        const w = base.get(m.weight)!.shape; // Linear [out, in]; Conv1D [in, out]
        const [out_, in_] = m.conv1d ? [w[1]!, w[0]!] : [w[0]!, w[1]!];
        shapes.set(`base_model.model.${m.path}.lora_A.weight`, [RANK, in_]);
        shapes.set(`base_model.model.${m.path}.lora_B.weight`, [out_, RANK]);
      }
    }
    expect(new Map([...tensors].map(([k, t]) => [k, t.shape]))).toEqual(shapes);

    const again = await loadModel(dir, be);
    const restored = await loadPeftAdapter(out, again.model, arch);
    expect(restored.config).toMatchObject({ rank: RANK, alpha: ALPHA });
    expect(bytes(restored.params).equals(bytes(lora.params))).toBe(true);
    expect(bytes(again.model.params).equals(bytes(loaded.model.params))).toBe(true);
    expect(bytes(score(again.model)).equals(bytes(score(loaded.model)))).toBe(true);
  });

  it('PEFT semantics: base + (α/r)·B·A on the Hugging Face tensors (transposed for Conv1D) equals the merged export', async () => {
    const { loaded, lora } = await trained();
    const peft = fresh('peft');
    await exportPeftAdapter(lora, arch, peft);
    const merged = fresh('merged');
    await exportMergedHf(loaded.model, arch, merged, { dtype: 'F32' });
    const { tensors: ad } = await readSafetensorsFileAsF32(join(peft, PEFT_WEIGHTS_FILE));
    const { tensors: mt } = await readHfModelDir(merged);
    const s = ALPHA / RANK;
    /** max |W_base + s·ΔW − W_merged| with ΔW = B·A (transposed for Conv1D), in float64. */
    const reconstruct = (m: { path: string; weight: string; conv1d: boolean }, B: Float32Array) => {
      const A = ad.get(`base_model.model.${m.path}.lora_A.weight`)!;
      const W0 = base.get(m.weight)!, W = mt.get(m.weight)!;
      const [rows, cols] = [B.length / RANK, A.shape[1]!];
      let worst = 0, moved = 0;
      for (let o = 0; o < rows; o++) {
        for (let i = 0; i < cols; i++) {
          let d = 0;
          for (let k = 0; k < RANK; k++) d += B[o * RANK + k]! * A.data[k * cols + i]!;
          const at = m.conv1d ? i * rows + o : o * cols + i;
          worst = Math.max(worst, Math.abs(W0.data[at]! + s * d - W.data[at]!));
          moved = Math.max(moved, Math.abs(W.data[at]! - W0.data[at]!));
        }
      }
      return { worst, moved };
    };
    let checked = 0;
    for (let l = 0; l < arch.nLayer; l++) {
      for (const m of peftModules(arch, l)) {
        const { worst, moved } = reconstruct(m, ad.get(`base_model.model.${m.path}.lora_B.weight`)!.data);
        expect(moved, m.path).toBeGreaterThan(1e-4); // the adapter changed this matrix
        expect(worst, m.path).toBeLessThanOrEqual(2e-6);
        checked++;
      }
    }
    expect(checked).toBe(arch.nLayer * (family === 'gpt2' ? 4 : 7));
    if (family === 'llama') {
      // Sensitivity: lora_B of q_proj in the engine's row order (not un-permuted) does not reproduce the merged weight.
      const m = peftModules(arch, 0)[0]!;
      const hfB = ad.get(`base_model.model.${m.path}.lora_B.weight`)!.data;
      const engineOrder = permuteRopeRows(hfB, arch.nHead, arch.headDim, RANK, true);
      expect(reconstruct(m, engineOrder).worst).toBeGreaterThan(1e-3);
    }
  });
});

describe('PEFT adapters the engine cannot reproduce are refused by name', () => {
  const arch = tinyArch('llama');
  let baseDir = '';
  beforeAll(async () => {
    baseDir = fresh('base');
    await writeHfModelDir(baseDir, arch, randomHfTensors(arch, 1), { dtype: 'F32', tokenizerFrom: FIXTURE });
  });
  const baseModel = async () => (await loadModel(baseDir, be)).model;
  const load = async (dir: string) => loadPeftAdapter(dir, await baseModel(), arch);

  /** A valid q/v adapter with `config` fields replaced and its tensors edited. */
  async function adapterDir(config: Record<string, unknown>, edit?: (t: Map<string, { shape: number[]; data: Float32Array }>) => void): Promise<string> {
    const dir = fresh('adapter');
    await exportPeftAdapter(new LoraAdapter(await baseModel(), { rank: 2, targetModules: ['q_proj', 'v_proj'] }), arch, dir);
    const cfg = { ...JSON.parse(readFileSync(join(dir, PEFT_CONFIG_FILE), 'utf8')), ...config };
    writeFileSync(join(dir, PEFT_CONFIG_FILE), JSON.stringify(cfg));
    if (edit) {
      const { tensors } = await readSafetensorsFileAsF32(join(dir, PEFT_WEIGHTS_FILE));
      const t = new Map([...tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
      edit(t);
      writeFileSync(join(dir, PEFT_WEIGHTS_FILE), writeSafetensorsAs(t, 'F32'));
    }
    return dir;
  }

  it('an unedited q/v adapter loads (the edits below are what is refused)', async () => {
    const lora = await load(await adapterDir({}));
    expect(lora.targets.map((t) => t.module)).toEqual(['q_proj', 'v_proj', 'q_proj', 'v_proj']);
  });

  it.each([
    [{ use_dora: true }, /use_dora is true; DoRA adapters are not supported/],
    [{ use_rslora: true }, /use_rslora is true/],
    [{ bias: 'lora_only' }, /bias is "lora_only"; only adapters without trained biases/],
    [{ target_modules: ['q_proj', 'lm_head'] }, /target_modules names 'lm_head', not a linear layer of LlamaForCausalLM/],
    [{ layers_to_transform: [0] }, /layers_to_transform is set/],
    [{ rank_pattern: { q_proj: 8 } }, /rank_pattern is not empty/],
    [{ modules_to_save: ['lm_head'] }, /modules_to_save is \["lm_head"\]/],
    [{ peft_type: 'IA3' }, /peft_type is "IA3"; only LORA adapters are supported/],
  ] as const)('%j', async (config, message) => {
    await expect(load(await adapterDir(config))).rejects.toThrow(message);
  });

  it('missing, misshapen and extra tensors, and a missing config', async () => {
    const missing = await adapterDir({}, (t) => t.delete('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight'));
    await expect(load(missing)).rejects.toThrow(/missing tensor 'base_model\.model\.model\.layers\.1\.self_attn\.v_proj\.lora_B\.weight' \[16, 2\]/);
    const shape = await adapterDir({ r: 3 });
    await expect(load(shape)).rejects.toThrow(/tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[2, 32\], expected \[3, 32\] \(r = 3\)/);
    const extra = await adapterDir({}, (t) => t.set('base_model.model.lm_head.lora_A.weight', { shape: [2, 32], data: new Float32Array(64) }));
    await expect(load(extra)).rejects.toThrow(/unexpected tensor 'base_model\.model\.lm_head\.lora_A\.weight'/);
    const none = fresh('none');
    mkdirSync(none);
    await expect(load(none)).rejects.toThrow(/adapter_config\.json is missing \(not a PEFT adapter directory\?\)/);
  });

  it('exports refuse a non-empty directory unless overwrite', async () => {
    const dir = await adapterDir({});
    const model = await baseModel();
    const lora = new LoraAdapter(model, { rank: 2, targetModules: ['q_proj', 'v_proj'] });
    await expect(exportPeftAdapter(lora, arch, dir)).rejects.toThrow(/the directory exists and is not empty; pass overwrite: true to replace it/);
    await exportPeftAdapter(lora, arch, dir, { overwrite: true });
    await expect(exportMergedHf(model, arch, dir, { dtype: 'F32' })).rejects.toThrow(/the directory exists and is not empty; pass overwrite: true/);
  });
});
