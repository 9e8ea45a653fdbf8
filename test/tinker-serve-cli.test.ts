/**
 * `agentrl serve trainer --model <Hugging Face dir>`: a real child process serving a SwiGLU model,
 * where LoRA on the attention layers only trains q/k/v/o (the MLP is untouched), and the CLI's
 * option errors.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadModel } from '../src/engine/load-model.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { TinkerClient } from '../src/train/remote/tinker-client.ts';
import { datum, tensor } from '../src/train/remote/tinker-protocol.ts';
import { TinkerTrainer } from '../src/train/remote/tinker-trainer.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const ROOT = join(import.meta.dirname, '..');
const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');

describe('agentrl serve trainer', () => {
  it('--model serves a Hugging Face model; LoRA with train_attn only changes the attention weights', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'agentrl-tinker-cli-')), 'tiny-qwen');
    const arch = tinyArch('qwen2');
    await writeHfModelDir(dir, arch, randomHfTensors(arch, 5), { dtype: 'F32', tokenizerFrom: FIXTURE });
    const local = (await loadModel(dir, defaultBackend(), { chatTemplate: false })).model;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', 'trainer', '--model', dir, '--port', '0', '--name', 'tiny-qwen'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no 'listening on' line: ${out}`)), 30_000);
        const on = (d: Buffer) => {
          out += d.toString();
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        };
        child.stdout.on('data', on);
        child.stderr.on('data', on);
        child.once('exit', (c) => reject(new Error(`exited with ${c}: ${out}`)));
      });
      const client = new TinkerClient({ url });
      expect(await client.healthz()).toBe(true);
      expect((await client.capabilities()).supported_models[0]).toMatchObject({ model_name: 'tiny-qwen', max_context_length: local.config.contextLength });
      const session = await client.createSession();
      const model = await client.createModel({ sessionId: session, baseModel: 'tiny-qwen', lora: { rank: 2, seed: 4, train_attn: true, train_mlp: false, train_unembed: false } });
      const ids = [5, 9, 12, 30, 7];
      const d = datum(ids.slice(0, -1), { target_tokens: tensor(ids.slice(1), 'int64'), weights: tensor([0, 1, 1, 1], 'float32') });
      const adam = { learning_rate: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0, grad_clip_norm: 0 };
      // Two steps (B starts at 0, so the first moves only A; the second changes the merged weights).
      for (let i = 0; i < 2; i++) {
        await client.forwardBackward(model, [d], 'cross_entropy');
        await client.optimStep(model, adam);
      }
      const w = await new TinkerTrainer({ client, modelId: model, model: local, optimizer: {} }).samplerWeights('after');
      const changed = new Set<string>();
      for (const v of local.layout) {
        for (let i = v.offset; i < v.offset + v.size; i++) if (w[i] !== local.params[i]) changed.add(v.name);
      }
      expect([...changed].sort()).toEqual([...Array(arch.nLayer).keys()].flatMap((l) => [`h${l}.attn.proj.w`, `h${l}.attn.qkv.w`]).sort());
    } finally {
      child.kill('SIGTERM');
    }
  }, 60_000);

  it('needs exactly one of --checkpoint and --model', () => {
    let msg = '';
    try {
      execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', 'trainer', '--port', '0'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stdout: string; stderr: string };
      msg = err.stdout + err.stderr;
    }
    expect(msg).toMatch(/give exactly one of --checkpoint <dir>.*and --model <dir\|gguf>/);
  }, 30_000);
});
