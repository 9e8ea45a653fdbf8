/**
 * `agentrl serve inference` as a child process (`node bin/agentrl.mjs serve inference …`), the way a
 * trainer or the remote-engine clients start it: it prints `listening on URL` (with --port 0, the
 * port chosen), serves an `agentrl train` checkpoint (tokenizer included, the checkpoint's weight
 * version reported) or a Hugging Face directory (text prompts tokenized with special tokens, as vLLM
 * does), samples what an in-process engine with the same weights and seed samples, loads new weights
 * from disk, and stops on SIGTERM. Bad arguments fail with a message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { selectBackend } from '../src/engine/backends.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { HfTokenizer } from '../src/engine/hf-tokenizer.ts';
import { engineTokenizer, loadModel } from '../src/engine/load-model.ts';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { writeWeightsDir } from '../src/engine/remote/weights-dir.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import { get, maxAbsDiff, post } from './fixtures/serve-inference/setup.ts';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'agentrl.mjs');
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-serve-cli-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

const backend = selectBackend(); // what the CLI uses
const words = ['the', 'cat', 'sat', 'on', 'mat', 'a', 'dog', 'ran', 'far', 'away'];
const tok = WordTokenizer.fromVocabulary(words);
const CFG: ModelConfigInput = { vocabSize: tok.vocabSize, contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16, initStd: 0.3 };
const checkpointDir = join(scratch, 'run', 'checkpoint');

beforeAll(async () => {
  const trainer = new BuiltinTrainer(new Transformer(CFG, backend, 5));
  trainer.step = 3;
  await saveTrainerCheckpoint(checkpointDir, trainer, { tokenizer: tok, rng: {}, trainerState: null });
});

interface Child {
  proc: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Start the CLI and resolve with the URL of its `listening on` line. */
function startCli(args: string[]): Promise<Child> {
  const proc = spawn('node', [BIN, 'serve', 'inference', ...args], { cwd: ROOT, env: { ...process.env, AGENTRL_THREADS: '1' } });
  children.push(proc);
  let stdout = '', stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      stdout += line + '\n';
      const m = /^listening on (http:\/\/\S+)$/.exec(line);
      if (m) resolve({ proc, url: m[1]!, exited });
    });
    void exited.then((r) => reject(new Error(`serve inference exited with ${r.code} before listening: ${r.stderr}`)));
  });
}

describe('agentrl serve inference (child process)', () => {
  it('--checkpoint: serves the run\'s weights and tokenizer at its weight version; samples match an in-process engine; loads new weights; stops on SIGTERM', async () => {
    const child = await startCli(['--checkpoint', checkpointDir, '--port', '0', '--seed', '3', '--served-model-name', 'policy']);
    expect(child.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await get(`${child.url}/get_model_info`)).json).toMatchObject({ weight_version: 3, served_model_name: 'policy' });
    const { trainer } = await loadTrainerCheckpoint(checkpointDir, backend);
    const ref = new BuiltinEngine(trainer.model, tok, { maxBatch: 1 });
    const prompt = tok.encode('the cat sat on');
    const r = await post(`${child.url}/v1/completions`, { model: 'policy', prompt: 'the cat sat on', max_tokens: 8, temperature: 0.9, seed: 12, logprobs: 0, return_token_ids: true });
    expect(r.status).toBe(200);
    const expected = await ref.generate(prompt, { maxTokens: 8, temperature: 0.9, seed: 12 });
    const c = r.json.choices[0];
    expect(c.prompt_token_ids).toEqual(prompt);
    expect(c.token_ids).toEqual(expected.ids);
    expect(maxAbsDiff(c.logprobs.token_logprobs, expected.logprobs)).toBeLessThanOrEqual(1e-6);
    expect(c.text).toBe(tok.decode(expected.ids));
    expect(c.finish_reason).toBe(expected.finishReason === 'length' ? 'length' : 'stop');
    expect(c.token_versions).toEqual(expected.ids.map(() => 3));

    const next = new Transformer(CFG, backend, 6);
    const dir = join(scratch, 'weights-v4');
    await writeWeightsDir(dir, next, { version: 4, tokenizer: tok });
    expect((await post(`${child.url}/update_weights_from_disk`, { model_path: dir })).json).toMatchObject({ success: true, weight_version: 4 });
    const sg = await post(`${child.url}/generate`, { input_ids: prompt, return_logprob: true, sampling_params: { max_new_tokens: 6, seed: 12, temperature: 0.9 } });
    const expected4 = await new BuiltinEngine(next, tok, { maxBatch: 1 }).generate(prompt, { maxTokens: 6, temperature: 0.9, seed: 12 });
    expect(sg.json.output_ids).toEqual(expected4.ids);
    expect(maxAbsDiff(sg.json.meta_info.output_token_logprobs.map((x: number[]) => x[0]), expected4.logprobs)).toBeLessThanOrEqual(1e-6);
    expect(sg.json.meta_info.weight_version).toBe(4);

    child.proc.kill('SIGTERM');
    const done = await child.exited;
    expect(done.code).toBe(0);
    expect(done.stdout).toContain('inference server stopped');
  });

  it('--model <HF dir>: text prompts get the tokenizer\'s special tokens; the served name defaults to the directory name', async () => {
    const LLAMA: ModelConfigInput = {
      vocabSize: 270, contextLength: 64, nLayer: 1, nHead: 4, nKvHead: 2, nEmbd: 32, norm: 'rmsnorm', positions: 'rope', mlp: 'swiglu',
      intermediateSize: 48, tiedEmbeddings: true, qkvBias: false, oBias: false, mlpBias: false, initStd: 0.3,
    };
    const dir = join(scratch, 'tiny-llama');
    const hfTok = HfTokenizer.fromDirectory(join(ROOT, 'test', 'fixtures', 'tiny-bpe'));
    await writeWeightsDir(dir, new Transformer(LLAMA, backend, 8), { version: 0, tokenizer: hfTok });
    const child = await startCli(['--model', dir, '--port', '0']);
    try {
      expect((await get(`${child.url}/v1/models`)).json.data[0].id).toBe('tiny-llama');
      const loaded = await loadModel(dir, backend, { chatTemplate: false });
      const prompt = loaded.tokenizer.encode('hello world', { addSpecialTokens: true });
      const r = await post(`${child.url}/v1/completions`, { prompt: 'hello world', max_tokens: 5, seed: 2, logprobs: 0, return_token_ids: true });
      expect(r.json.choices[0].prompt_token_ids).toEqual(prompt);
      const ref = await new BuiltinEngine(loaded.model, engineTokenizer(loaded), { maxBatch: 1 }).generate(prompt, { maxTokens: 5, seed: 2, stopIds: loaded.stopIds });
      expect(r.json.choices[0].token_ids).toEqual(ref.ids);
      expect(maxAbsDiff(r.json.choices[0].logprobs.token_logprobs, ref.logprobs)).toBeLessThanOrEqual(1e-6);
    } finally {
      child.proc.kill('SIGTERM');
      await child.exited;
    }
  });

  it('fails with a message when neither or both of --model and --checkpoint are given, or the checkpoint is missing', async () => {
    const run = (args: string[]) => startCli(args).then(() => null, (e: Error) => e.message);
    expect(await run(['--port', '0'])).toMatch(/exited with 1.*give exactly one of --model <dir\|gguf> and --checkpoint <dir>/s);
    expect(await run(['--checkpoint', join(scratch, 'none'), '--port', '0'])).toMatch(/--checkpoint .*none does not exist/);
  });
});
