/**
 * `agentrl train` on a pretrained model (`model: { path }`, `--model DIR`) for a trial task (Kuhn):
 * a tiny random Llama-family Hugging Face directory with the tiny BPE tokenizer trains synchronously
 * and with the worker trainer (η = 1), in full and through LoRA; the run's config.json and checkpoint
 * describe the resolved model (absolute path, context length, architecture; the complete model
 * config and the tokenizer in the manifest); a killed run resumes exactly, LoRA adapter and base
 * included; `agentrl eval --checkpoint` needs no model directory; bad configs name the field.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { trainRun } from '../src/run/run.ts';
import { applyOverrides, parseRunConfig, withModelPath } from '../src/run/run-config.ts';
import { readConfigFile } from '../src/cli/config-file.ts';
import { loadCheckpoint } from '../src/engine/checkpoint.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadHfModel } from '../src/engine/hf-model.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { runEval } from '../src/cli/eval.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const TINY_BPE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
let root: string;
let modelDir: string;
const tmp = () => mkdtempSync(join(root, 'run-'));

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'agentrl-model-path-'));
  modelDir = join(root, 'tiny-llama');
  const arch = tinyArch('llama');
  await writeHfModelDir(modelDir, arch, randomHfTensors(arch, 11, 0.05), { dtype: 'F32', tokenizerFrom: TINY_BPE });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Kuhn meta-RL, 2 hands per trial, on the tiny Llama; every step checkpointed. */
const kuhn = (model: Record<string, unknown>, sets: string[] = []) => applyOverrides({
  name: 'kuhn-llama',
  task: 'kuhn',
  envOptions: { seat: 'random', observation: 'token', rewardScale: 1 },
  opponents: [{ name: 'aggressive', weight: 1 }, { name: 'conservative', weight: 1 }],
  trial: { episodes: 2, contextMode: 'history_only', reflect: false, stateMode: 'new_state', maxTurns: 2, rules: 'none', historyWindow: 0, obsWindow: 0, pastEpisodes: 'outcome' },
  model,
  optimizer: { lr: 3e-3, weightDecay: 0 },
  trainer: { steps: 2, batchSize: 2, groupSize: 2, maxStaleness: 0, credit: { kind: 'mage', episodeReward: 'raw' }, advantage: { estimator: 'gigpo', groupBy: ['group', 'opponent', 'episode'] }, loss: { kind: 'ppo' } },
  checkpointEvery: 1,
  eval: { opponents: ['random'], trials: 2, untrained: false },
}, sets);

async function expectSameCheckpoints(a: string, b: string): Promise<void> {
  const ca = await loadCheckpoint(join(a, 'checkpoint')), cb = await loadCheckpoint(join(b, 'checkpoint'));
  expect(Object.keys(cb.model).sort()).toEqual(Object.keys(ca.model).sort());
  for (const name of Object.keys(ca.model)) expect(cb.model[name]!.data, name).toEqual(ca.model[name]!.data);
  for (const name of Object.keys(ca.optimizer!.m)) expect(cb.optimizer!.m[name]!.data, name).toEqual(ca.optimizer!.m[name]!.data);
  expect(cb.step).toBe(ca.step);
}

describe('agentrl train with model.path (Kuhn, a tiny Llama with its BPE tokenizer)', () => {
  it('synchronous, full fine-tuning: resolved model in config.json and checkpoint, exact resume, eval without the directory', async () => {
    // A copy of the model directory that is deleted before evaluating the checkpoint.
    const copy = join(root, 'copy-llama');
    cpSync(modelDir, copy, { recursive: true });
    const full = tmp();
    const a = await trainRun(kuhn({ path: copy, contextLength: 160 }), { out: full });
    expect(a.steps).toBe(2);
    expect(a.history.map((m) => m.episodeReward.length)).toEqual([2, 2]);
    const config = JSON.parse(readFileSync(join(full, 'config.json'), 'utf8'));
    expect(config.model).toMatchObject({ path: copy, contextLength: 160, arch: { family: 'llama', hfArchitecture: 'LlamaForCausalLM', nKvHead: 2, vocabSize: 270 } });
    const ck = await loadCheckpoint(join(full, 'checkpoint'));
    // The manifest's model config is complete (no directory needed to rebuild it) and the tokenizer is the model's.
    expect(ck.config).toMatchObject({ model: { vocabSize: 270, contextLength: 160, nLayer: 2, nHead: 4, nKvHead: 2, headDim: 8, intermediateSize: 48, mlp: 'swiglu', norm: 'rmsnorm', positions: 'rope', ropeScaling: { type: 'llama3' }, tiedEmbeddings: true, qkvBias: false } });
    expect((ck.tokenizer as { type: string }).type).toBe('huggingface');
    expect((ck.trainerState as { config: { model: unknown } }).config.model).toEqual(config.model);
    // Training moved the loaded weights.
    const original = await loadHfModel(modelDir, defaultBackend(), { contextLength: 160 });
    const q = original.model.view(original.model.params, 'h0.attn.qkv.w');
    expect(ck.model['h0.attn.qkv.w']!.data).not.toEqual(q);

    // Killed after step 1, resumed from the step-1 checkpoint: the same weights, moments and metrics.
    const killed = tmp();
    await trainRun(kuhn({ path: copy, contextLength: 160 }), { out: killed, stopAfter: 1 });
    const b = await trainRun(kuhn({ path: copy, contextLength: 160 }), { out: killed, resume: true });
    expect(b.steps).toBe(2);
    await expectSameCheckpoints(full, killed);
    const metrics = (d: string) => readFileSync(join(d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
    expect(metrics(killed)).toEqual(metrics(full));
    // The resumed config must equal the resolved one: another context length is refused.
    await expect(trainRun(kuhn({ path: copy, contextLength: 128 }), { out: killed, resume: true })).rejects.toThrow(/config differs/);

    // agentrl eval --checkpoint: everything comes from the checkpoint.
    rmSync(copy, { recursive: true });
    await runEval({ checkpoint: join(full, 'checkpoint'), trials: 2, seed: 1, opponents: ['random'] });
    const ev = JSON.parse(readFileSync(join(full, 'eval-checkpoint.json'), 'utf8'));
    expect(ev.task).toBe('kuhn');
    expect(ev.reports[0].policy).toBe('checkpoint@2');
  }, 60_000);

  it('LoRA, synchronous: only the adapted rows move, and a killed run resumes exactly (adapter and frozen base)', async () => {
    const model = { path: modelDir, contextLength: 160, lora: { rank: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'], seed: 1 } };
    const full = tmp();
    await trainRun(kuhn(model), { out: full });
    const ck = await loadCheckpoint(join(full, 'checkpoint'));
    expect(ck.config).toMatchObject({ lora: { rank: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'], seed: 1 } });
    expect(Object.keys(ck.model).filter((n) => n.startsWith('lora.')).sort()).toEqual([
      'lora.base.h0.q_proj', 'lora.base.h0.v_proj', 'lora.base.h1.q_proj', 'lora.base.h1.v_proj',
      'lora.h0.q_proj.lora_A', 'lora.h0.q_proj.lora_B', 'lora.h0.v_proj.lora_A', 'lora.h0.v_proj.lora_B',
      'lora.h1.q_proj.lora_A', 'lora.h1.q_proj.lora_B', 'lora.h1.v_proj.lora_A', 'lora.h1.v_proj.lora_B',
    ]);
    const original = await loadHfModel(modelDir, defaultBackend(), { contextLength: 160 });
    const view = (name: string) => original.model.view(original.model.params, name);
    // Frozen: the MLP, the output projection and the k rows of qkv; adapted: the q and v rows.
    for (const name of ['h0.mlp.fc.w', 'h1.mlp.proj.w', 'h0.attn.proj.w', 'wte']) expect(ck.model[name]!.data, name).toEqual(view(name));
    const qkv = ck.model['h0.attn.qkv.w']!.data as Float32Array, C = 32, q = 4 * 8, kv = 2 * 8;
    expect(qkv.slice(q * C, (q + kv) * C)).toEqual(view('h0.attn.qkv.w').slice(q * C, (q + kv) * C));
    expect(qkv.slice(0, q * C)).not.toEqual(view('h0.attn.qkv.w').slice(0, q * C));
    expect(ck.model['lora.base.h0.q_proj']!.data).toEqual(view('h0.attn.qkv.w').slice(0, q * C));
    // Adapter-sized optimizer moments.
    expect(Object.keys(ck.optimizer!.m).every((n) => n.startsWith('lora.'))).toBe(true);

    const killed = tmp();
    await trainRun(kuhn(model), { out: killed, stopAfter: 1 });
    await trainRun(kuhn(model), { out: killed, resume: true });
    await expectSameCheckpoints(full, killed);
  }, 60_000);

  it('asynchronous (η = 1, worker trainer), in full and with LoRA: the worker gets the loaded weights', async () => {
    for (const model of [{ path: modelDir, contextLength: 160 }, { path: modelDir, contextLength: 160, lora: { rank: 2, targetModules: ['o_proj', 'down_proj'] } }]) {
      const out = tmp();
      const r = await trainRun(kuhn(model, ['trainer.maxStaleness=1', 'eval.trials=0']), { out });
      expect(r.steps).toBe(2);
      expect(r.history.every((m) => m.maxStaleness <= 1)).toBe(true);
      const ck = await loadCheckpoint(join(out, 'checkpoint'));
      expect(ck.step).toBe(2);
      const original = await loadHfModel(modelDir, defaultBackend(), { contextLength: 160 });
      const view = (name: string) => original.model.view(original.model.params, name);
      // The worker trained the loaded model (not a fresh one): with LoRA every weight but the adapted ones is the directory's.
      expect(ck.model['h1.attn.proj.w']!.data).not.toEqual(view('h1.attn.proj.w'));
      if ('lora' in model) {
        for (const name of ['h0.attn.qkv.w', 'h1.mlp.fc.w', 'wte', 'lnf.w']) expect(ck.model[name]!.data, name).toEqual(view(name));
        expect(ck.model['lora.base.h1.o_proj']!.data).toEqual(view('h1.attn.proj.w'));
      } else {
        expect(ck.model['lnf.w']!.data).not.toEqual(view('lnf.w'));
      }
    }
  }, 60_000);

  it('the CLI: --model DIR replaces a built-in model, --set adds LoRA to it', () => {
    const out = tmp();
    const args = ['bin/agentrl.mjs', 'train', 'examples/configs/kuhn-meta-rl.yaml', '--model', modelDir, '--out', out,
      '--set', 'model.contextLength=256', '--set', 'model.lora.rank=2', '--set', 'trainer.steps=1', '--set', 'trainer.batchSize=2', '--set', 'trainer.groupSize=2',
      '--set', 'trial.episodes=2', '--set', 'eval.trials=0'];
    const log = execFileSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, AGENTRL_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    expect(log).toMatch(/model .*tiny-llama with LoRA rank 2/);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config.model).toMatchObject({ path: modelDir, contextLength: 256, lora: { rank: 2, alpha: 8, seed: 0 }, arch: { family: 'llama' } });
    expect(existsSync(join(out, 'checkpoint', 'manifest.json'))).toBe(true);
  }, 60_000);
});

describe('model config errors name the field', () => {
  const base = (model: unknown) => ({ ...kuhn({}), model });
  it('at parse time', () => {
    expect(() => parseRunConfig(base({ contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16, lora: { rank: 2 } }))).toThrow(/model\.lora: LoRA adapts a pretrained model: set model\.path/);
    expect(() => parseRunConfig(base({ path: 'x', contextLenght: 64 }))).toThrow(/model\.contextLenght: unknown key \(did you mean 'contextLength'\?\)/);
    expect(() => parseRunConfig(base({ path: 'x', nLayer: 2 }))).toThrow(/model\.nLayer: a pretrained model's shape comes from model\.path/);
    expect(() => parseRunConfig(base({ path: 'x', lora: { rank: 0 } }))).toThrow(/model\.lora\.rank/);
    expect(() => parseRunConfig(base({ path: 'x', lora: { rnak: 2 } }))).toThrow(/model\.lora\.rnak: unknown key \(did you mean 'rank'\?\)/);
    expect(() => parseRunConfig(base({ path: 'x', contextLength: 1 }))).toThrow(/model\.contextLength/);
    expect(() => parseRunConfig(base({ path: '' }))).toThrow(/model\.path/);
    expect(() => parseRunConfig(base({ contextLength: 64, nLayer: 1, nHead: 2 }))).toThrow(/model\.nEmbd: Required/);
    const toy = applyOverrides(readConfigFile('examples/configs/toy-tool-async.yaml'), ['model={"path":"x"}']);
    expect(() => parseRunConfig(toy)).toThrow(/model\.path: the toy tool agent speaks in raw token ids/);
    const pop = withModelPath(readConfigFile('examples/configs/kuhn-population.yaml'), 'x');
    expect(() => parseRunConfig(pop)).toThrow(/model\.path: population training/);
    // A path that does not exist parses (a finished run's config must, where the directory is gone).
    expect(parseRunConfig(base({ path: join(root, 'nowhere') })).model).toEqual({ path: join(root, 'nowhere') });
  });

  it('--model: replaces a built-in shape, keeps a path model\'s settings; --set applies after it', () => {
    const builtin = { task: 'kuhn', model: { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 } };
    expect(withModelPath(builtin, '/m').model).toEqual({ path: '/m' });
    const withLora = { task: 'kuhn', model: { path: '/old', contextLength: 96, lora: { rank: 4 }, arch: { family: 'qwen2' } } };
    expect(withModelPath(withLora, '/new').model).toEqual({ path: '/new', contextLength: 96, lora: { rank: 4 } });
    expect(applyOverrides(withModelPath(builtin, '/m'), ['model.lora.rank=8']).model).toEqual({ path: '/m', lora: { rank: 8 } });
  });

  it('when the model is loaded', async () => {
    const out = tmp();
    await expect(trainRun(kuhn({ path: join(root, 'nowhere') }), { out })).rejects.toThrow(/model\.path: .*nowhere does not exist/);
    await expect(trainRun(kuhn({ path: TINY_BPE }), { out })).rejects.toThrow(/model\.path: cannot load .*has no config\.json/);
    await expect(trainRun(kuhn({ path: modelDir, lora: { rank: 2, targetModules: ['c_attn'] } }), { out })).rejects.toThrow(/model\.lora\.targetModules: 'c_attn' is not a module of this model .*LlamaForCausalLM/);
    await expect(trainRun(kuhn({ path: modelDir, contextLength: 128, arch: { ...tinyArch('llama'), nLayer: 3 } }), { out })).rejects.toThrow(/model\.arch: differs from the architecture of .*\(nLayer: 3 in the config, 2 in the directory\)/);
  });
});
