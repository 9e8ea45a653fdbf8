/**
 * `agentrl train` with task: search on a pretrained model (`model.path`): the tiny random Llama with
 * its BPE tokenizer warm-starts from the scripted searcher's demonstrations (encoded by the model's
 * tokenizer; with LoRA only the adapter learns them), trains 2 steps synchronously and with the
 * worker trainer, evaluates on the held-out world, and `agentrl eval search` reads its checkpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainRun } from '../src/run/run.ts';
import { loadCheckpoint } from '../src/engine/checkpoint.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadHfModel } from '../src/engine/hf-model.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { runEvalSearch } from '../src/cli/eval-search.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const TINY_BPE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
let root: string;
let modelDir: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'agentrl-model-path-search-'));
  modelDir = join(root, 'tiny-llama');
  const arch = tinyArch('llama');
  await writeHfModelDir(modelDir, arch, randomHfTensors(arch, 5, 0.05), { dtype: 'F32', tokenizerFrom: TINY_BPE });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Byte-level BPE spells a tool call in ~1 token per character: budgets in tokens are larger than the word tokenizer's. */
const config = (model: Record<string, unknown>, trainer: Record<string, unknown> = {}, demos = 0) => ({
  name: 'search-llama',
  task: 'search',
  search: {
    kb: { seed: 1, perType: 8, docs: 'fact' },
    agent: { prompt: 'bare', allowAccess: false, topK: 1, docTemplate: 'doc {i} : {contents}', maxNewTokens: 64, maxTotalTokens: 384, maxTurns: 2 },
    trainHops: [1, 2],
    sft: { demos, hops: [1], epochs: 1, batchSize: 4 },
    eval: { hops: [1], k: 1 },
  },
  model,
  trainer: { steps: 2, batchSize: 2, groupSize: 2, maxStaleness: 0, advantage: { estimator: 'grpo', unit: 'trajectory' }, ...trainer },
  eval: { trials: 2, seed: 5 },
});

describe('agentrl train with task: search on a pretrained model', () => {
  it('synchronous, full fine-tuning, with an SFT warm start in the model\'s tokens; eval search reads the checkpoint', async () => {
    const out = join(root, 'sync');
    const r = await trainRun(config({ path: modelDir, contextLength: 400 }, {}, 4), { out });
    expect(r.steps).toBe(2);
    const sft = JSON.parse(readFileSync(join(out, 'sft.json'), 'utf8'));
    expect(sft.demos).toBe(4);
    expect(sft.demoF1).toBe(1); // the scripted searcher's text survives the BPE round trip
    expect(sft.steps).toBe(1); // 4 demos of a 1-hop question (search, answer: one sequence each) in a batch of 4
    expect(sft.adapter).toBeUndefined();
    expect(r.searchEval!.policies.map((p) => p.label)).toEqual(['start', 'search-llama']);
    const ck = await loadCheckpoint(join(out, 'checkpoint'));
    expect((ck.tokenizer as { type: string }).type).toBe('huggingface');
    expect(ck.config).toMatchObject({ model: { vocabSize: 270, contextLength: 400, mlp: 'swiglu' } });

    const data = join(root, 'qa.jsonl');
    writeFileSync(data, JSON.stringify({ id: 'a', question: 'what is the employer of zzz zzz ?', golden_answers: ['nobody'], hops: 1 }) + '\n');
    await runEvalSearch({ checkpoint: join(out, 'checkpoint'), data, k: 1, seed: 0 });
    expect(JSON.parse(readFileSync(join(out, 'eval-search.json'), 'utf8')).records).toHaveLength(1);
  }, 60_000);

  it('LoRA: the SFT warm start and RL train the adapter only, synchronously and with the worker trainer (η = 1)', async () => {
    const original = await loadHfModel(modelDir, defaultBackend(), { contextLength: 400 });
    const view = (name: string) => original.model.view(original.model.params, name);
    for (const maxStaleness of [0, 1]) {
      const out = join(root, `lora-${maxStaleness}`);
      // The entropy bonus moves the weights even where every reward is 0 (a random model rarely answers right).
      const r = await trainRun(config({ path: modelDir, contextLength: 400, lora: { rank: 2, targetModules: ['q_proj', 'gate_proj'] } }, { maxStaleness, loss: { kind: 'ppo', entropyCoef: 0.1 } }, maxStaleness === 0 ? 4 : 0), { out });
      expect(r.steps).toBe(2);
      if (maxStaleness === 0) expect(JSON.parse(readFileSync(join(out, 'sft.json'), 'utf8')).adapter).toBeUndefined();
      const ck = await loadCheckpoint(join(out, 'checkpoint'));
      expect(ck.config).toMatchObject({ lora: { rank: 2, targetModules: ['q_proj', 'gate_proj'] } });
      for (const name of ['wte', 'h0.attn.proj.w', 'h1.mlp.proj.w', 'lnf.w']) expect(ck.model[name]!.data, name).toEqual(view(name));
      const I = 48, C = 32;
      expect(ck.model['lora.base.h0.gate_proj']!.data).toEqual(view('h0.mlp.fc.w').slice(0, I * C));
      expect((ck.model['h0.mlp.fc.w']!.data as Float32Array).slice(0, I * C)).not.toEqual(view('h0.mlp.fc.w').slice(0, I * C));
      expect((ck.model['h0.mlp.fc.w']!.data as Float32Array).slice(I * C)).toEqual(view('h0.mlp.fc.w').slice(I * C)); // up_proj rows frozen
    }
  }, 60_000);
});
