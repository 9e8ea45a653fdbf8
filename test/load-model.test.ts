/**
 * loadModel (src/engine/load-model.ts): a Hugging Face directory and the F32 GGUF converted from it
 * load into bit-identical models (same weights, same logprobs, same tokenization) for every family;
 * stop ids come from generation_config.json, else config.json; the chat template is loaded and
 * checked for multi-turn prefix extension once (a history-rewriting template warns); GGUF's
 * add_bos_token is honoured; a model whose embedding is padded past the tokenizer runs in the
 * engine; every error names the path and what is missing.
 */
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchConfig, ArchFamily, HfTensors } from '../src/engine/arch.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { encodeChat } from '../src/engine/chat-template.ts';
import { hfToGguf } from '../src/engine/gguf-convert.ts';
import { writeHfModelDir } from '../src/engine/hf-weights.ts';
import { engineTokenizer, loadModel } from '../src/engine/load-model.ts';
import type { Transformer } from '../src/engine/model.ts';
import { Rng } from '../src/core/rng.ts';
import { fastBackend } from './helpers/backends.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const tokenizerJson = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')) as unknown;
const tokenizerConfig = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-load-model-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
afterEach(() => { vi.restoreAllMocks(); });
const be = fastBackend();

/** ChatML, which keeps every earlier turn verbatim. */
const CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
/** Rewrites history: earlier assistant turns are shown as "[…]" (as templates that drop reasoning do). */
const REWRITING = "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}<|im_start|>assistant\n[…]<|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

let n = 0;
/** A tokenizer directory: the tiny BPE tokenizer with tokenizer_config.json changes and extra files. */
function tokenizerDir(config: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): string {
  const dir = join(scratch, `tok-${n++}`);
  mkdirSync(dir);
  cpSync(join(FIXTURE, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...tokenizerConfig, ...config }));
  for (const [f, v] of Object.entries(extra)) writeFileSync(join(dir, f), JSON.stringify(v));
  return dir;
}

async function hfDir(arch: ArchConfig, tensors: HfTensors, tokFrom = FIXTURE): Promise<string> {
  const dir = join(scratch, `hf-${n++}`);
  await writeHfModelDir(dir, arch, tensors, { dtype: 'F32', tokenizerFrom: tokFrom });
  return dir;
}

function ggufFile(arch: ArchConfig, tensors: HfTensors, config: Record<string, unknown> = tokenizerConfig): string {
  const path = join(scratch, `m-${n++}.gguf`);
  writeFileSync(path, hfToGguf(arch, tensors, tokenizerJson, { dtype: 'F32', tokenizerConfig: config }));
  return path;
}

/** Logprobs of the next tokens of two random rows. */
function score(model: Transformer): Float32Array {
  const rng = new Rng(5), B = 2, T = 17, V = model.config.vocabSize;
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(V));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]!));
  return Float32Array.from(model.forward({ B, T, tokens, targets }).logprobs);
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('a Hugging Face directory and its F32 GGUF load the same model', () => {
  it.each(['llama', 'qwen2', 'qwen3', 'gpt2'] as ArchFamily[])('%s: same ArchConfig, bit-identical weights and logprobs, same tokenization', async (family) => {
    const arch = tinyArch(family);
    const tensors = randomHfTensors(arch, 21);
    const hf = await loadModel(await hfDir(arch, tensors), be);
    const gguf = await loadModel(ggufFile(arch, tensors), be);
    expect(hf.source).toBe('hf');
    expect(gguf.source).toBe('gguf');
    expect(gguf.arch).toEqual(hf.arch);
    expect(hf.arch).toEqual(arch);
    expect(bytes(gguf.model.params).equals(bytes(hf.model.params))).toBe(true);
    const a = score(hf.model), b = score(gguf.model);
    expect(bytes(b).equals(bytes(a))).toBe(true);
    expect(a.some((x) => x < -6)).toBe(true); // real scores, not a degenerate model
    const text = 'Hello world, <|im_start|>user\nhi<|im_end|> 123';
    expect(gguf.tokenizer.encode(text)).toEqual(hf.tokenizer.encode(text));
    expect(gguf.tokenizer.eosId).toBe(269);
    expect(hf.stopIds).toEqual([269]);
    expect(gguf.stopIds).toEqual([269]);
  });

  it('contextLength is passed through; the default is min(maxPositions, 4096)', async () => {
    const arch = tinyArch('qwen2');
    const dir = await hfDir(arch, randomHfTensors(arch, 2));
    expect((await loadModel(dir, be)).model.config.contextLength).toBe(64);
    expect((await loadModel(dir, be, { contextLength: 24 })).model.config.contextLength).toBe(24);
  });
});

describe('stop ids', () => {
  const arch = tinyArch('llama');
  const tensors = randomHfTensors(arch, 3);

  it('generation_config.json eos_token_id (a list) wins over config.json; the tokenizer EOS is always one', async () => {
    const dir = await hfDir(arch, tensors, tokenizerDir({}, { 'generation_config.json': { eos_token_id: [267, 268] } }));
    const m = await loadModel(dir, be);
    expect(m.generationConfig).toEqual({ eos_token_id: [267, 268] });
    expect(m.stopIds).toEqual([267, 268, 269]);
  });

  it('an int eos_token_id, and an invalid one named', async () => {
    expect((await loadModel(await hfDir(arch, tensors, tokenizerDir({}, { 'generation_config.json': { eos_token_id: 267 } })), be)).stopIds).toEqual([267, 269]);
    const bad = await hfDir(arch, tensors, tokenizerDir({}, { 'generation_config.json': { eos_token_id: 999 } }));
    await expect(loadModel(bad, be)).rejects.toThrow(/end-of-sequence id 999 is outside the vocabulary \[0, 270\)/);
    const worse = await hfDir(arch, tensors, tokenizerDir({}, { 'generation_config.json': { eos_token_id: 'x' } }));
    await expect(loadModel(worse, be)).rejects.toThrow(/generation_config\.json eos_token_id must be an integer or a list of integers/);
  });
});

describe('chat template', () => {
  const arch = tinyArch('qwen2');
  const tensors = randomHfTensors(arch, 4);

  it('is loaded from tokenizer_config.json; a template that keeps history passes the prefix check silently', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const m = await loadModel(await hfDir(arch, tensors, tokenizerDir({ chat_template: CHATML })), be);
    expect(m.chatTemplate).not.toBeNull();
    const ids = encodeChat(m.chatTemplate!, m.tokenizer, [{ role: 'user', content: 'hi' }], { addGenerationPrompt: true });
    expect(ids[0]).toBe(268);
    expect(m.tokenizer.decode(ids)).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    expect(warn).not.toHaveBeenCalled();
  });

  it('a template that rewrites history is warned about once, at load, naming the model and the turn', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const dir = await hfDir(arch, tensors, tokenizerDir({ chat_template: REWRITING }));
    const m = await loadModel(dir, be);
    expect(m.chatTemplate).not.toBeNull();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toContain(`the chat template of ${dir} does not keep turn 1`);
  });

  it('chatTemplate: false skips the template and the check; a base model has none', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const m = await loadModel(await hfDir(arch, tensors, tokenizerDir({ chat_template: REWRITING })), be, { chatTemplate: false });
    expect(m.chatTemplate).toBeNull();
    expect((await loadModel(await hfDir(arch, tensors), be)).chatTemplate).toBeNull();
    expect(warn).not.toHaveBeenCalled();
  });

  it('a GGUF carries its template (tokenizer.chat_template) and renders as the directory does', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const gguf = await loadModel(ggufFile(arch, tensors, { ...tokenizerConfig, chat_template: CHATML }), be);
    const hf = await loadModel(await hfDir(arch, tensors, tokenizerDir({ chat_template: CHATML })), be);
    const msgs = [{ role: 'user', content: 'What is 2 + 3?' }];
    expect(encodeChat(gguf.chatTemplate!, gguf.tokenizer, msgs, { addGenerationPrompt: true })).toEqual(encodeChat(hf.chatTemplate!, hf.tokenizer, msgs, { addGenerationPrompt: true }));
    await loadModel(ggufFile(arch, tensors, { ...tokenizerConfig, chat_template: REWRITING }), be);
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('a broken template is reported and left out (the model still loads for plain prompts)', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const m = await loadModel(await hfDir(arch, tensors, tokenizerDir({ chat_template: '{% for m in messages %}' })), be);
    expect(m.chatTemplate).toBeNull();
    expect(m.chatTemplateError).toMatch(/does not parse/);
    expect(String(warn.mock.calls[0]![0])).toMatch(/chat template of .* cannot be used/);
  });
});

describe('GGUF tokenizer', () => {
  it('add_bos_token: encode with special tokens prepends BOS, as llama.cpp does', async () => {
    const arch = tinyArch('llama', { bosTokenId: 267 });
    const tensors = randomHfTensors(arch, 5);
    const withBos = await loadModel(ggufFile(arch, tensors, { ...tokenizerConfig, bos_token: '<|endoftext|>', add_bos_token: true }), be);
    const plain = await loadModel(ggufFile(arch, tensors), be);
    const ids = plain.tokenizer.encode('hello world');
    expect(withBos.tokenizer.encode('hello world', { addSpecialTokens: true })).toEqual([267, ...ids]);
    expect(withBos.tokenizer.encode('hello world')).toEqual(ids);
    expect(plain.tokenizer.encode('hello world', { addSpecialTokens: true })).toEqual(ids);
  });
});

describe('vocabulary padding', () => {
  it('a model with more embedding rows than tokens runs in the engine; padded ids decode to nothing', async () => {
    const arch = tinyArch('qwen2', { vocabSize: 280 });
    const m = await loadModel(await hfDir(arch, randomHfTensors(arch, 6)), be);
    expect(m.tokenizer.vocabSize).toBe(270);
    const tok = engineTokenizer(m);
    expect(tok.vocabSize).toBe(280);
    expect(tok.decode([104, 105, 275])).toBe('hi');
    const engine = new BuiltinEngine(m.model, tok, { maxBatch: 1 });
    const c = await engine.generate([104, 105], { maxTokens: 5, seed: 1 });
    expect(c.ids.length).toBeGreaterThan(0);
    expect(c.ids.every((id) => id >= 0 && id < 280)).toBe(true);
  });

  it('a tokenizer with more tokens than the model has rows is refused', async () => {
    const arch = tinyArch('qwen2', { vocabSize: 260, eosTokenIds: [] });
    await expect(loadModel(await hfDir(arch, randomHfTensors(arch, 6)), be)).rejects.toThrow(/the tokenizer has 270 tokens but the model's vocabulary has only 260 rows/);
  });
});

describe('errors name the path and what is missing', () => {
  const arch = tinyArch('llama');
  const tensors = randomHfTensors(arch, 7);

  it('a path that does not exist', async () => {
    await expect(loadModel(join(scratch, 'nope'), be)).rejects.toThrow(/loadModel: .*nope does not exist \(pass a Hugging Face model directory, the one holding config\.json, or a \.gguf file\)/);
  });

  it('a directory without config.json', async () => {
    const dir = join(scratch, `empty-${n++}`);
    mkdirSync(dir);
    await expect(loadModel(dir, be)).rejects.toThrow(new RegExp(`${dir} has no config\\.json, so it is not a Hugging Face model directory`));
  });

  it('a model directory without tokenizer.json', async () => {
    const dir = join(scratch, `notok-${n++}`);
    await writeHfModelDir(dir, arch, tensors, { dtype: 'F32' });
    await expect(loadModel(dir, be)).rejects.toThrow(new RegExp(`${dir} has no tokenizer\\.json`));
  });

  it('a model directory without weights', async () => {
    const dir = await hfDir(arch, tensors);
    rmSync(join(dir, 'model.safetensors'));
    await expect(loadModel(dir, be)).rejects.toThrow(/has neither model\.safetensors nor model\.safetensors\.index\.json \(no weights\)/);
  });

  it('a file that is not GGUF, and a truncated GGUF', async () => {
    const txt = join(scratch, 'weights.bin');
    writeFileSync(txt, 'PK\u0003\u0004 not a gguf');
    await expect(loadModel(txt, be)).rejects.toThrow(/weights\.bin is neither a directory nor a GGUF file \(it starts with "PK\\u0003\\u0004", not "GGUF"\)/);
    const path = ggufFile(arch, tensors);
    const cut = join(scratch, 'cut.gguf');
    writeFileSync(cut, readFileSync(path).subarray(0, 2000));
    await expect(loadModel(cut, be)).rejects.toThrow(/cut\.gguf/);
  });
});
