/**
 * `agentrl generate` end to end, as a subprocess (`node bin/agentrl.mjs generate …`) on a tiny Llama
 * directory and its GGUF: the JSON line's ids and logprobs are what the trainer's forward computes
 * for those ids (token-in-token-out contract, ≤ 1e-4); the same seed gives the same ids, another
 * seed others; --prompt-ids, --chat and --top-k 1 (greedy) do what they say; the HF directory and
 * the F32 GGUF generate the same; bad arguments and models fail with a clear message.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { selectBackend } from '../src/engine/backends.ts';
import { encodeChat } from '../src/engine/chat-template.ts';
import { hfToGguf } from '../src/engine/gguf-convert.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { loadModel, type LoadedModel } from '../src/engine/load-model.ts';
import { runGenerate, type GenerateCliOptions, type GenerateJson } from '../src/cli/generate.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-cli-generate-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const modelDir = join(scratch, 'tiny-llama');
const ggufPath = join(scratch, 'tiny-llama.gguf');
let loaded: LoadedModel;

beforeAll(async () => {
  const arch = tinyArch('llama');
  // Larger weights than the default: peaked distributions, so a changed seed or a wrong logprob shows.
  const tensors = randomHfTensors(arch, 13, 0.35);
  const tok = join(scratch, 'tok');
  mkdirSync(tok);
  cpSync(join(FIXTURE, 'tokenizer.json'), join(tok, 'tokenizer.json'));
  const config = { ...JSON.parse(readFileSync(join(FIXTURE, 'tokenizer_config.json'), 'utf8')), chat_template: CHATML };
  writeFileSync(join(tok, 'tokenizer_config.json'), JSON.stringify(config));
  await writeHfModelDir(modelDir, arch, tensors, { dtype: 'F32', tokenizerFrom: tok });
  writeFileSync(ggufPath, hfToGguf(arch, tensors, JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')), { dtype: 'F32', tokenizerConfig: config }));
  loaded = await loadModel(modelDir, selectBackend());
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', [join(ROOT, 'bin', 'agentrl.mjs'), 'generate', ...args], { cwd: ROOT, env: { ...process.env, AGENTRL_THREADS: '1' } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

async function generateJson(args: string[]): Promise<GenerateJson> {
  const r = await cli([...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as GenerateJson;
}

/** The trainer's logprobs of `ids` after `prompt` (one forward of prompt + ids at `temperature`). */
function trainerLogprobs(prompt: number[], ids: number[], temperature: number, masks?: Uint8Array[]): number[] {
  const seq = [...prompt, ...ids], T = seq.length - 1, V = loaded.arch.vocabSize;
  const tokens = Int32Array.from(seq.slice(0, T));
  const targets = Int32Array.from({ length: T }, (_, t) => (t >= prompt.length - 1 ? seq[t + 1]! : -1));
  let m: Uint8Array | null = null;
  if (masks) {
    m = new Uint8Array(T * V).fill(1);
    masks.forEach((mask, i) => m!.set(mask, (prompt.length - 1 + i) * V));
  }
  const { logprobs } = loaded.model.forward({ B: 1, T, tokens, targets, masks: m, temperature });
  return ids.map((_, i) => logprobs[prompt.length - 1 + i]!);
}

describe('agentrl generate', () => {
  it('--json: ids and logprobs are what the trainer computes for them (≤ 1e-4); the same seed repeats, another differs', async () => {
    const args = ['--model', modelDir, '--prompt', 'hello world', '--max-tokens', '12', '--temperature', '0.7', '--seed', '5'];
    // Independent processes, run together.
    const [a, again, other, plain] = await Promise.all([generateJson(args), generateJson(args), generateJson([...args.slice(0, -1), '6']), cli(args)]);
    expect(a).toMatchObject({ model: modelDir, source: 'hf', seed: 5, temperature: 0.7, top_p: 1, top_k: 0 });
    expect(a.prompt_ids).toEqual(loaded.tokenizer.encode('hello world', { addSpecialTokens: true }));
    expect(a.ids.length).toBe(a.logprobs.length);
    expect(a.ids.length).toBeGreaterThan(0);
    expect(a.finish_reason).toBe(a.ids.length === 12 ? 'length' : 'eos');
    expect(a.text).toBe(loaded.tokenizer.decode(a.ids));
    const ours = trainerLogprobs(a.prompt_ids, a.ids, 0.7);
    const worst = Math.max(...a.logprobs.map((lp, i) => Math.abs(lp - ours[i]!)));
    expect(worst).toBeLessThanOrEqual(1e-4);
    expect(Math.min(...a.logprobs)).toBeLessThan(-0.5); // not a trivially certain sequence

    expect(again.ids).toEqual(a.ids);
    expect(again.logprobs).toEqual(a.logprobs);
    expect(other.ids).not.toEqual(a.ids);
    // Without --json: the completion text only.
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(`${a.text}\n`);
  });

  it('--prompt-ids and the GGUF file generate exactly what the directory does', async () => {
    const args = ['--prompt-ids', '268, 72,101,108', '--max-tokens', '10', '--seed', '9', '--temperature', '1.3', '--top-p', '0.9'];
    const [hf, gguf] = await Promise.all([generateJson(['--model', modelDir, ...args]), generateJson(['--model', ggufPath, ...args])]);
    expect(hf.prompt_ids).toEqual([268, 72, 101, 108]);
    expect(hf.top_p).toBe(0.9);
    expect(gguf.source).toBe('gguf');
    expect(gguf.ids).toEqual(hf.ids);
    expect(gguf.logprobs).toEqual(hf.logprobs);
  });

  it('--top-k 1 is greedy: each id is the argmax after the previous ones, with logprob 0 under the kept set', async () => {
    const r = await generateJson(['--model', modelDir, '--prompt', 'the cat', '--max-tokens', '8', '--top-k', '1', '--seed', '1']);
    const seq = [...r.prompt_ids];
    const cache = loaded.model.newKVCache(1);
    let logits = loaded.model.prefill(cache, 0, seq);
    for (const id of r.ids) {
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
      expect(id).toBe(best);
      logits = loaded.model.decode(cache, Int32Array.of(id), 1).slice(0, loaded.arch.vocabSize);
    }
    expect(r.logprobs.every((lp) => lp === 0)).toBe(true);
    // The trainer reproduces 0 too when given the kept set (the argmax) as the mask.
    const masks = r.ids.map((id) => { const m = new Uint8Array(loaded.arch.vocabSize); m[id] = 1; return m; });
    expect(trainerLogprobs(r.prompt_ids, r.ids, 1, masks).every((lp) => Math.abs(lp) <= 1e-6)).toBe(true);
  });

  it('--chat renders the prompt as one user message with the chat template and generation prompt', async () => {
    const r = await generateJson(['--model', modelDir, '--chat', '--prompt', 'What is 2 + 3?', '--max-tokens', '4']);
    const expected = encodeChat(loaded.chatTemplate!, loaded.tokenizer, [{ role: 'user', content: 'What is 2 + 3?' }], { addGenerationPrompt: true });
    expect(r.prompt_ids).toEqual(expected);
    expect(loaded.tokenizer.decode(r.prompt_ids)).toBe('<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n');
  });

  it('clear errors from the command line: a missing --model path, no --model at all', async () => {
    const [missing, noModel] = await Promise.all([cli(['--model', join(scratch, 'nope'), '--prompt', 'x']), cli(['--prompt', 'x'])]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/agentrl: loadModel: .*nope does not exist \(pass a Hugging Face model directory/);
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toMatch(/required option '--model <path>' not specified/);
  });

  it('clear errors: invalid models, temperature 0, conflicting or bad prompts, --chat without a template', async () => {
    const quiet = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const gen = (o: Partial<GenerateCliOptions>) => runGenerate({ model: modelDir, maxTokens: 4, temperature: 1, seed: 0, ...o });
    await expect(gen({ model: join(scratch, 'tok'), prompt: 'x' })).rejects.toThrow(/tok has no config\.json, so it is not a Hugging Face model directory/);
    const notGguf = join(scratch, 'x.gguf');
    writeFileSync(notGguf, 'nonsense');
    await expect(gen({ model: notGguf, prompt: 'x' })).rejects.toThrow(/x\.gguf is neither a directory nor a GGUF file/);
    await expect(gen({ prompt: 'x', temperature: 0 })).rejects.toThrow(/--temperature must be a finite number > 0, got 0: .*temperature 0 is not supported.*use --top-k 1/);
    await expect(gen({})).rejects.toThrow(/give a prompt: --prompt TEXT/);
    await expect(gen({ prompt: 'x', promptIds: '1,2' })).rejects.toThrow(/give exactly one of --prompt TEXT and --prompt-ids 1,2,3/);
    await expect(gen({ promptIds: '1,x' })).rejects.toThrow(/--prompt-ids: 'x' is not a token id/);
    await expect(gen({ promptIds: '1,2', chat: true })).rejects.toThrow(/--chat renders a text prompt .* cannot be combined with --prompt-ids/);
    await expect(gen({ promptIds: '5,999' })).rejects.toThrow(/prompt token id 999 is outside the vocabulary \[0, 270\)/);
    const base = join(scratch, 'base');
    await writeHfModelDir(base, tinyArch('llama'), randomHfTensors(tinyArch('llama'), 1), { dtype: 'F32', tokenizerFrom: FIXTURE });
    await expect(gen({ model: base, chat: true, prompt: 'x' })).rejects.toThrow(/--chat: .*base: it has no chat template \(a base model\?\); drop --chat/);
    expect(quiet).not.toHaveBeenCalled();
    // In-process it returns what --json prints.
    const r = await gen({ promptIds: '268,72', json: false });
    expect(quiet).toHaveBeenCalledWith(r.text);
    quiet.mockRestore();
  });
});
