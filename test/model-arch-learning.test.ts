/**
 * The engine learns with an open-weight architecture: test/learning.test.ts's GRPO run (target
 * sequences, outcome reward, PPO loss through the training loop), on a tiny Llama-family model
 * (SwiGLU, grouped-query attention, RMSNorm, llama3-scaled RoPE, from modelConfigFromArch) with the
 * byte-level BPE tokenizer of test/fixtures/tiny-bpe, on the native and the JS paths.
 *
 * With all 270 tokens open, chance is 1/270 per position: a group of 32 rarely holds a hit, and the
 * one that does gets so large an advantage that its other (wrong) tokens are reinforced with it,
 * collapsing the policy onto them (tried: lr, group size, entropy bonus, unnormalised advantages).
 * So the completions are constrained to 16 tokens (the targets' plus others), which gives the
 * original test's chance level of 1/16 and also trains through the masked log-softmax.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { modelConfigFromArch } from '../src/engine/hf-model.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { loadNativeBackend } from '../src/engine/native.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import type { Backend } from '../src/engine/backend.ts';
import { tinyArch } from './helpers/tiny-models.ts';
import { grpoTargetRun } from './helpers/grpo-target-run.ts';

const tokenizer = HfTokenizer.fromDirectory(join(import.meta.dirname, 'fixtures', 'tiny-bpe'));
const arch = tinyArch('llama'); // hidden 32, 2 layers, 4 query / 2 KV heads, SwiGLU 48, llama3 RoPE, tied
const CFG = modelConfigFromArch(arch, { contextLength: 48 });

const native: Backend | null = loadNativeBackend();
const PATHS: Backend[] = native ? [native, new JsBackend()] : [new JsBackend()];

describe.each(PATHS.map((b) => [b.name, b] as const))('learning with a Llama-family model on %s', (_name, backend) => {
  it('GRPO takes a target-sequence reward from chance to ≥ 0.9 (BPE prompts and targets)', async () => {
    expect(CFG).toMatchObject({ mlp: 'swiglu', nKvHead: 2, nHead: 4, norm: 'rmsnorm', positions: 'rope', vocabSize: tokenizer.vocabSize });
    const trainModel = new Transformer(CFG, backend, 1);
    const trainer = new BuiltinTrainer(trainModel, { lr: 3e-3, weightDecay: 0 });
    const engine = new BuiltinEngine(new Transformer(CFG, backend, 1), tokenizer, { maxBatch: 64, seed: 3 });
    const chat = (text: string) => tokenizer.encode(`<|im_start|>user\n${text}<|im_end|>\n<|im_start|>assistant\n`);
    // Each answer ends with <|im_end|> (the tokenizer's EOS), which also ends the generation.
    const targets = [[...tokenizer.encode(' hello world'), tokenizer.eosId], [...tokenizer.encode('cat'), tokenizer.eosId]];
    expect(targets.map((t) => t.length)).toEqual([4, 4]);
    const allowed = new Uint8Array(tokenizer.vocabSize);
    for (const id of targets.flat()) allowed[id] = 1;
    for (let id = 100; allowed.reduce((a, b) => a + b, 0) < 16; id++) allowed[id] = 1;
    const sampling = { maxTokens: 4, temperature: 1, constraint: () => allowed };
    const { firstReward, steps, meanEval } = await grpoTargetRun({ engine, trainer, prompts: [chat('greet'), chat('animal')], targets, sampling, evalSampling: sampling });
    expect(firstReward).toBeLessThan(0.3); // chance is 1/16 per position
    expect(meanEval, `after ${steps} steps`).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});
