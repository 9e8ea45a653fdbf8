/**
 * `agentrl export` (src/cli/export.ts) on trainer checkpoints: a LoRA-trained tiny Llama saved with
 * saveTrainerCheckpoint exports (arch derived from the checkpoint's ModelConfig, taken from
 * --base-model, or from the model section a `agentrl train --model` run records) to a Hugging Face directory that reloads bit-identically, and with --peft to an
 * adapter that reproduces the model on the base; a word-tokenizer checkpoint, a non-LoRA --peft
 * export and an unknown checkpoint are refused with the reason; the command runs as a subprocess.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runExport } from '../src/cli/export.ts';
import { archFromModelConfig, loadPeftAdapter } from '../src/train/export.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadModel } from '../src/engine/load-model.ts';
import { Transformer, type ModelConfig } from '../src/engine/model.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { LoraAdapter } from '../src/train/lora.ts';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import type { Sample } from '../src/core/types.ts';
import { Rng } from '../src/core/rng.ts';
import { fastBackend } from './helpers/backends.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const ROOT = join(import.meta.dirname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-export-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const be = fastBackend();
const arch = tinyArch('llama');
const baseDir = join(scratch, 'base');
const ckDir = join(scratch, 'run', 'checkpoint');
let trained: Transformer;
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function samples(seed: number): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: 3 }, () => {
    const ids = Array.from({ length: 10 }, () => rng.int(arch.vocabSize));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i === 0 ? 0 : 1)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

beforeAll(async () => {
  await writeHfModelDir(baseDir, arch, randomHfTensors(arch, 17), { dtype: 'F32', tokenizerFrom: FIXTURE });
  const loaded = await loadModel(baseDir, be);
  const lora = new LoraAdapter(loaded.model, { rank: 2, alpha: 4, targetModules: ['q_proj', 'k_proj', 'down_proj'] });
  const trainer = new BuiltinTrainer(loaded.model, { lr: 2e-2, weightDecay: 0 }, { lora });
  for (let s = 0; s < 2; s++) trainer.trainStep(samples(s), sftLoss);
  await saveTrainerCheckpoint(ckDir, trainer, { tokenizer: loaded.tokenizer, rng: {}, trainerState: null });
  trained = loaded.model;
});

describe('agentrl export', () => {
  it('merged, arch derived from the checkpoint: the ArchConfig comes back exactly and the export reloads bit-identically', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const out = join(scratch, 'merged');
    const r = await runExport({ checkpoint: ckDir, out, dtype: 'f32' });
    expect(r.archSource).toBe('derived');
    expect(r.arch).toEqual(arch); // maxPositions = the trained contextLength (64), eos from the tokenizer
    const back = await loadModel(out, be);
    expect(bytes(back.model.params).equals(bytes(trained.params))).toBe(true);
    expect(String(log.mock.calls[0]![0])).toMatch(/exported the LoRA-merged model \(f32\) of .*checkpoint \(step 2\) as LlamaForCausalLM/);
    log.mockRestore();
  });

  it('--base-model DIR: config.json and tokenizer files come from the base; --peft reproduces the model on the base', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const out = join(scratch, 'merged-base');
    const r = await runExport({ checkpoint: ckDir, out, dtype: 'bf16', baseModel: baseDir });
    expect(r.archSource).toBe('base-model');
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    expect(readFileSync(join(out, 'tokenizer_config.json')).equals(readFileSync(join(FIXTURE, 'tokenizer_config.json')))).toBe(true);

    const peft = join(scratch, 'peft');
    await runExport({ checkpoint: ckDir, out: peft, peft: true, baseModel: baseDir });
    expect(JSON.parse(readFileSync(join(peft, 'adapter_config.json'), 'utf8'))).toMatchObject({ base_model_name_or_path: baseDir, r: 2, lora_alpha: 4, target_modules: ['down_proj', 'k_proj', 'q_proj'] });
    const base = await loadModel(baseDir, be);
    await loadPeftAdapter(peft, base.model, arch);
    expect(bytes(base.model.params).equals(bytes(trained.params))).toBe(true);
    vi.restoreAllMocks();
  });

  it('a run of agentrl train --model: the arch and path recorded in the run config are used', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const { trainer } = await loadTrainerCheckpoint(ckDir, be);
    const runCk = join(scratch, 'run2', 'checkpoint');
    // An arch that differs from what would be derived (maxPositions), so its use is visible.
    const recorded = { ...arch, maxPositions: 4096 };
    await saveTrainerCheckpoint(runCk, trainer, { tokenizer: (await loadModel(baseDir, be)).tokenizer, rng: {}, trainerState: { config: { model: { path: baseDir, contextLength: 64, arch: recorded } } } });
    const out = join(scratch, 'merged-run');
    const r = await runExport({ checkpoint: runCk, out, dtype: 'f32' });
    expect(r.archSource).toBe('checkpoint');
    expect(r.arch).toEqual(recorded);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).max_position_embeddings).toBe(4096);
    expect(readFileSync(join(out, 'tokenizer_config.json')).equals(readFileSync(join(baseDir, 'tokenizer_config.json')))).toBe(true);
    const peft = join(scratch, 'peft-run');
    await runExport({ checkpoint: runCk, out: peft, peft: true });
    expect(JSON.parse(readFileSync(join(peft, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(baseDir);
    vi.restoreAllMocks();
  });

  it('refuses what it cannot export, saying why', async () => {
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    await expect(runExport({ checkpoint: join(scratch, 'nope'), out: join(scratch, 'x') })).rejects.toThrow(/--checkpoint .*nope does not exist/);
    await expect(runExport({ checkpoint: scratch, out: join(scratch, 'x') })).rejects.toThrow(/holds no manifest\.json and no step-\* checkpoints/);
    // A built-in task model: word-level tokenizer, no LoRA.
    const words = WordTokenizer.fromVocabulary(['left', 'right']);
    const model = new Transformer({ vocabSize: words.vocabSize, contextLength: 16, nLayer: 1, nHead: 2, nEmbd: 8 }, be, 1);
    const wordCk = join(scratch, 'word', 'checkpoint');
    await saveTrainerCheckpoint(wordCk, new BuiltinTrainer(model, {}), { tokenizer: words, rng: {}, trainerState: null });
    await expect(runExport({ checkpoint: wordCk, out: join(scratch, 'w1') })).rejects.toThrow(/uses agentrl's built-in word-level tokenizer, which has no Hugging Face tokenizer\.json/);
    await expect(runExport({ checkpoint: wordCk, out: join(scratch, 'w2'), peft: true })).rejects.toThrow(/--peft: checkpoint .* was trained without LoRA/);
    expect(existsSync(join(scratch, 'w1'))).toBe(false);
    vi.restoreAllMocks();
  });

  it('archFromModelConfig: the family follows from the features; a config no family can express is refused', () => {
    const cfg = (a: ReturnType<typeof tinyArch>) => new Transformer({
      vocabSize: a.vocabSize, contextLength: a.maxPositions, nLayer: 1, nHead: a.nHead, nKvHead: a.nKvHead, nEmbd: a.hiddenSize, headDim: a.headDim,
      intermediateSize: a.intermediateSize, norm: a.norm, normEps: a.normEps, positions: a.positions, mlp: a.mlp, ropeBase: a.ropeTheta,
      ropeScaling: a.ropeScaling, tiedEmbeddings: a.tiedEmbeddings, qkvBias: a.qkvBias, oBias: a.oBias, mlpBias: a.mlpBias, qkNorm: a.qkNorm,
    }, be).config;
    for (const family of ['llama', 'qwen2', 'qwen3', 'gpt2'] as const) {
      const a = tinyArch(family, { nLayer: 1 });
      expect(archFromModelConfig(cfg(a), { eosTokenIds: a.eosTokenIds })).toEqual(a);
    }
    // Learned positions with RMSNorm: neither GPT-2 nor a RoPE family.
    const odd = { ...cfg(tinyArch('gpt2', { nLayer: 1 })), norm: 'rmsnorm' } as ModelConfig;
    expect(() => archFromModelConfig(odd, { eosTokenIds: [] })).toThrow(/this model config has no Hugging Face equivalent/);
  });

  it('runs as a subprocess', async () => {
    const out = join(scratch, 'cli-out');
    const { stdout } = await promisify(execFile)('node', [join(ROOT, 'bin', 'agentrl.mjs'), 'export', '--checkpoint', ckDir, '--out', out, '--dtype', 'f32'], { cwd: ROOT, env: { ...process.env, AGENTRL_THREADS: '1' } });
    expect(stdout).toMatch(/exported the LoRA-merged model \(f32\)/);
    const back = await loadModel(out, be);
    expect(bytes(back.model.params).equals(bytes(trained.params))).toBe(true);
  });
});
