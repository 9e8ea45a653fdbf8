/**
 * The weight directory shared by `agentrl serve inference` and the remote-engine clients
 * (src/engine/remote/weights-dir.ts): F32 weights under Hugging Face names when the model has a
 * Hugging Face architecture (then `loadModel` reads the directory as a plain HF model), under
 * agentrl's names otherwise; round trips are exact; the version travels along; a model of another
 * shape is refused naming the tensor; rewriting replaces the directory without leftovers.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { loadModel } from '../src/engine/load-model.ts';
import { readSafetensorsFileHeader } from '../src/engine/safetensors.ts';
import { loadWeightsDir, readWeightsDir, writeWeightsDir, WEIGHT_VERSION_FILE } from '../src/engine/remote/weights-dir.ts';
import { backend, CFG } from './fixtures/serve-inference/setup.ts';

const scratch = mkdtempSync(join(tmpdir(), 'agentrl-weights-dir-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const LLAMA: ModelConfigInput = {
  vocabSize: 270, contextLength: 64, nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, norm: 'rmsnorm', positions: 'rope', mlp: 'swiglu',
  intermediateSize: 48, tiedEmbeddings: false, qkvBias: false, oBias: false, mlpBias: false, initStd: 0.2,
};
/** Rotary positions with layer norms and biases: no Hugging Face family has that. */
const NON_HF: ModelConfigInput = { ...CFG, positions: 'rope' };

const config = (dir: string) => JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;

describe('writeWeightsDir / loadWeightsDir', () => {
  it('a GPT-2-style built-in model is written as GPT2LMHeadModel and read back exactly, with its version', async () => {
    const src = new Transformer(CFG, backend, 5);
    const dir = join(scratch, 'gpt2');
    await writeWeightsDir(dir, src, { version: 4 });
    expect(config(dir).architectures).toEqual(['GPT2LMHeadModel']);
    expect((config(dir).agentrl_model as { vocabSize: number }).vocabSize).toBe(40);
    const names = [...(await readSafetensorsFileHeader(join(dir, 'model.safetensors'))).tensors.keys()];
    expect(names).toContain('transformer.wte.weight');
    expect(JSON.parse(readFileSync(join(dir, WEIGHT_VERSION_FILE), 'utf8'))).toEqual({ agentrl_weight_version: 4 });
    const dst = new Transformer(CFG, backend, 6);
    expect(Array.from(dst.params)).not.toEqual(Array.from(src.params));
    expect(await loadWeightsDir(dir, dst)).toEqual({ version: 4 });
    expect(Array.from(dst.params)).toEqual(Array.from(src.params));
  });

  it('a Llama-style model round-trips exactly (q/k RoPE row order undone and redone), and loadModel reads the directory as a Hugging Face model', async () => {
    const src = new Transformer(LLAMA, backend, 7);
    const tok = HfTokenizer.fromDirectory(join(import.meta.dirname, 'fixtures', 'tiny-bpe'));
    const dir = join(scratch, 'llama');
    await writeWeightsDir(dir, src, { version: 12, tokenizer: tok });
    expect(config(dir).architectures).toEqual(['LlamaForCausalLM']);
    expect(readdirSync(dir).sort()).toEqual(['agentrl_weights.json', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const dst = new Transformer(LLAMA, backend, 8);
    expect((await loadWeightsDir(dir, dst)).version).toBe(12);
    expect(Array.from(dst.params)).toEqual(Array.from(src.params));
    const loaded = await loadModel(dir, backend, { chatTemplate: false });
    expect(loaded.model.config.nKvHead).toBe(2);
    expect(Array.from(loaded.model.params)).toEqual(Array.from(src.params));
    expect(loaded.tokenizer.encode('hello')).toEqual(tok.encode('hello'));
  });

  it('a model without a Hugging Face equivalent is written under agentrl parameter names and read back exactly', async () => {
    const src = new Transformer(NON_HF, backend, 9);
    const dir = join(scratch, 'agentrl-names');
    await writeWeightsDir(dir, src, { version: 1 });
    const cfg = config(dir);
    expect(cfg.architectures).toBeUndefined();
    expect((cfg.agentrl_model as { positions: string }).positions).toBe('rope');
    const names = [...(await readSafetensorsFileHeader(join(dir, 'model.safetensors'))).tensors.keys()];
    expect(names).toContain('wte');
    const dst = new Transformer(NON_HF, backend, 10);
    await loadWeightsDir(dir, dst);
    expect(Array.from(dst.params)).toEqual(Array.from(src.params));
  });

  it('readWeightsDir leaves the model alone; rewriting replaces the directory atomically (no temporary directories left)', async () => {
    const dir = join(scratch, 'rewrite');
    const a = new Transformer(CFG, backend, 1), b = new Transformer(CFG, backend, 2);
    await writeWeightsDir(dir, a, { version: 1 });
    await writeWeightsDir(dir, b, { version: 2 });
    expect(readdirSync(scratch).filter((f) => f.startsWith('rewrite'))).toEqual(['rewrite']);
    const target = new Transformer(CFG, backend, 3);
    const before = Array.from(target.params);
    const { params, version } = await readWeightsDir(dir, target);
    expect(version).toBe(2);
    expect(Array.from(params)).toEqual(Array.from(b.params));
    expect(Array.from(target.params)).toEqual(before);
  });

  it('refuses a model of another config (naming the field) or shape (naming the tensor and both shapes); a missing directory or version file is explained', async () => {
    const dir = join(scratch, 'shape');
    await writeWeightsDir(dir, new Transformer(CFG, backend, 1), { version: 3 });
    const wider = new Transformer({ ...CFG, nEmbd: 24 }, backend, 1);
    await expect(loadWeightsDir(dir, wider)).rejects.toThrow(/written for another model than this one: .*nEmbd is 24, expected 16/);
    // A Hugging Face directory without agentrl_model: the tensor shapes decide.
    const plain = join(scratch, 'plain-hf');
    await writeWeightsDir(plain, new Transformer(LLAMA, backend, 1), { version: 1 });
    const cfg = config(plain);
    delete cfg.agentrl_model;
    writeFileSync(join(plain, 'config.json'), JSON.stringify(cfg));
    await expect(loadWeightsDir(plain, new Transformer({ ...LLAMA, intermediateSize: 64 }, backend, 1))).rejects.toThrow(/intermediateSize is 64 but LlamaForCausalLM needs 48/);
    const nonHfDir = join(scratch, 'shape-agentrl');
    await writeWeightsDir(nonHfDir, new Transformer(NON_HF, backend, 1), { version: 3 });
    await expect(loadWeightsDir(nonHfDir, new Transformer({ ...NON_HF, nEmbd: 24 }, backend, 1))).rejects.toThrow(/nEmbd is 24, expected 16/);
    // Without the config check, the tensors' own shapes are checked by name.
    writeFileSync(join(nonHfDir, 'config.json'), JSON.stringify({ agentrl_model: { note: 'no shape fields' } }));
    await expect(loadWeightsDir(nonHfDir, new Transformer({ ...NON_HF, nEmbd: 24 }, backend, 1))).rejects.toThrow(/tensor 'wte' has shape \[40, 16\], the model config needs \[40, 24\]/);
    await expect(loadWeightsDir(join(scratch, 'nope'), wider)).rejects.toThrow(/config\.json is missing/);
    rmSync(join(dir, WEIGHT_VERSION_FILE));
    expect((await readWeightsDir(dir, new Transformer(CFG, backend, 1))).version).toBeNull();
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
  });
});
