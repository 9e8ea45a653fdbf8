/**
 * One entry point for open-weight models on the built-in engine: `loadModel(path, backend)` takes a
 * Hugging Face model directory (config.json, safetensors, tokenizer.json, …) or a `.gguf` file and
 * returns the transformer with its weights, the architecture, the tokenizer, the chat template and
 * the ids that end a generation.
 *
 *   HF directory   src/engine/hf-model.ts `loadHfModel` (weights checked against config.json);
 *                  tokenizer.json (+ tokenizer_config.json), chat template from the directory.
 *   GGUF file      src/engine/gguf-convert.ts `ggufToHf` undoes llama.cpp's conventions, then the
 *                  same `loadHfIntoModel`; the tokenizer is rebuilt from tokenizer.ggml.* and the
 *                  chat template from tokenizer.chat_template. An F32 GGUF gives exactly the
 *                  weights of the directory it was converted from.
 *
 * Stop ids follow transformers' `generate`: generation_config.json's `eos_token_id` (int or list)
 * when present, else config.json's (the ArchConfig's), plus the tokenizer's EOS.
 *
 * When the model has a chat template, `checkPrefixExtension` runs once on a probe conversation and
 * warns when the template rewrites history: multi-turn token-in-token-out training relies on turn
 * t+1's prompt extending turn t's tokens (src/engine/chat-template.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArchConfig } from './arch.ts';
import type { Backend } from './backend.ts';
import { ChatTemplate, checkPrefixExtension, PREFIX_PROBE_CONVERSATION } from './chat-template.ts';
import { GGUF_MAGIC } from './gguf.ts';
import { ggufToHf, ggufTokenizerToJson, type GgufTokenizer } from './gguf-convert.ts';
import { loadHfIntoModel, loadHfModel, modelConfigFromArch } from './hf-model.ts';
import { HfTokenizer } from './hf-tokenizer.ts';
import { HF_CONFIG_FILE } from './hf-weights.ts';
import { Transformer } from './model.ts';
import type { Tokenizer } from './types.ts';

export interface LoadModelOptions {
  /** Tokens the model handles (prompt + completion); default min(maxPositions, 4096) (see hf-model.ts). */
  contextLength?: number;
  /** Load the chat template and run the multi-turn prefix check (default true). */
  chatTemplate?: boolean;
}

export interface LoadedModel {
  model: Transformer;
  arch: ArchConfig;
  tokenizer: HfTokenizer;
  /** The model's chat template, or null when it has none (a base model) or `chatTemplate: false`. */
  chatTemplate: ChatTemplate | null;
  /** Why a template the model ships could not be used (it is then null), for error messages. */
  chatTemplateError?: string;
  /** generation_config.json, when the directory has one. */
  generationConfig?: Record<string, unknown>;
  source: 'hf' | 'gguf';
  /** The path given. */
  path: string;
  /** Ids that end a generation (EOS of the generation config / architecture, and the tokenizer's). */
  stopIds: number[];
}

/** Load a Hugging Face model directory or a GGUF file (see the file comment). Errors name the path and what is missing. */
export async function loadModel(path: string, backend: Backend, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`loadModel: ${path} does not exist (pass a Hugging Face model directory, the one holding config.json, or a .gguf file)`);
    throw e;
  }
  const loaded = st.isDirectory() ? await loadHfDir(path, backend, opts) : await loadGgufFile(path, backend, opts);
  if (loaded.chatTemplate) {
    checkPrefixExtension(loaded.chatTemplate, loaded.tokenizer, PREFIX_PROBE_CONVERSATION, { mode: 'warn', label: path });
  }
  return loaded;
}

async function loadHfDir(dir: string, backend: Backend, opts: LoadModelOptions): Promise<LoadedModel> {
  // Checked before any weight is read: a directory without these is not a usable model.
  if (!existsSync(join(dir, HF_CONFIG_FILE))) {
    throw new Error(`loadModel: ${dir} has no ${HF_CONFIG_FILE}, so it is not a Hugging Face model directory (pass the directory holding config.json, model*.safetensors and tokenizer.json, or a .gguf file)`);
  }
  if (!existsSync(join(dir, 'tokenizer.json'))) {
    throw new Error(`loadModel: ${dir} has no tokenizer.json; the built-in engine needs the model's tokenizer (download it with the weights, e.g. huggingface-cli download <repo> tokenizer.json tokenizer_config.json)`);
  }
  const hf = await loadHfModel(dir, backend, { contextLength: opts.contextLength });
  const tokenizer = hf.tokenizer ?? HfTokenizer.fromDirectory(dir);
  let chatTemplate: ChatTemplate | null = null;
  let chatTemplateError: string | undefined;
  if (opts.chatTemplate !== false && hasHfChatTemplate(dir)) {
    try {
      chatTemplate = ChatTemplate.fromDirectory(dir);
    } catch (e) {
      chatTemplateError = (e as Error).message;
      console.warn(`agentrl: the chat template of ${dir} cannot be used: ${chatTemplateError}`);
    }
  }
  checkTokenizerFits(hf.arch, tokenizer, dir);
  const stopIds = stopIdsOf(hf.arch, tokenizer, hf.generationConfig, dir);
  return {
    model: hf.model, arch: hf.arch, tokenizer, chatTemplate, ...(chatTemplateError ? { chatTemplateError } : {}),
    ...(hf.generationConfig ? { generationConfig: hf.generationConfig } : {}), source: 'hf', path: dir, stopIds,
  };
}

/** A chat template file, or `chat_template` in tokenizer_config.json (a base model has neither). */
function hasHfChatTemplate(dir: string): boolean {
  if (existsSync(join(dir, 'chat_template.jinja'))) return true;
  const cfg = join(dir, 'tokenizer_config.json');
  if (!existsSync(cfg)) return false;
  // ChatTemplate.fromDirectory reports a malformed file itself; here only "is there one?" matters.
  try {
    const parsed = JSON.parse(readFileSync(cfg, 'utf8')) as Record<string, unknown>;
    return parsed.chat_template !== undefined && parsed.chat_template !== null;
  } catch {
    return true;
  }
}

async function loadGgufFile(path: string, backend: Backend, opts: LoadModelOptions): Promise<LoadedModel> {
  const magic = await readMagic(path);
  if (magic !== GGUF_MAGIC) {
    throw new Error(`loadModel: ${path} is neither a directory nor a GGUF file (it starts with ${JSON.stringify(magic)}, not "${GGUF_MAGIC}"); pass a Hugging Face model directory or a .gguf file`);
  }
  const { arch, tensors, tokenizer: ggufTok } = ggufToHf(await readFile(path), path);
  const model = new Transformer(modelConfigFromArch(arch, { contextLength: opts.contextLength }), backend, 0);
  loadHfIntoModel(model, arch, tensors);
  const tokenizer = tokenizerFromGguf(ggufTok, path);
  let chatTemplate: ChatTemplate | null = null;
  let chatTemplateError: string | undefined;
  if (opts.chatTemplate !== false && ggufTok.chatTemplate !== null) {
    try {
      chatTemplate = ChatTemplate.fromString(ggufTok.chatTemplate, { source: `${path} (tokenizer.chat_template)`, specialTokens: ggufSpecialTokens(ggufTok) });
    } catch (e) {
      chatTemplateError = (e as Error).message;
      console.warn(`agentrl: the chat template of ${path} cannot be used: ${chatTemplateError}`);
    }
  }
  checkTokenizerFits(arch, tokenizer, path);
  const stopIds = stopIdsOf(arch, tokenizer, undefined, path);
  return { model, arch, tokenizer, chatTemplate, ...(chatTemplateError ? { chatTemplateError } : {}), source: 'gguf', path, stopIds };
}

/** bos/eos token strings of a GGUF tokenizer, as tokenizer_config.json would give them to the template. */
function ggufSpecialTokens(tok: GgufTokenizer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, id] of [['bos_token', tok.bosTokenId], ['eos_token', tok.eosTokenId], ['pad_token', tok.padTokenId], ['unk_token', tok.unkTokenId]] as const) {
    if (id !== null) out[key] = tok.tokens[id]!;
  }
  return out;
}

/**
 * The HfTokenizer of a GGUF model. llama.cpp prepends BOS when `tokenizer.ggml.add_bos_token` is
 * true; the rebuilt tokenizer.json does it the way Hugging Face's Llama 3 tokenizer does, with a
 * TemplateProcessing post-processor, so `encode(text, { addSpecialTokens: true })` adds it too.
 */
function tokenizerFromGguf(tok: GgufTokenizer, path: string): HfTokenizer {
  const json = ggufTokenizerToJson(tok, path);
  if (tok.addBosToken === true && tok.bosTokenId !== null) {
    const bos = tok.tokens[tok.bosTokenId]!;
    json.post_processor = {
      type: 'Sequence',
      processors: [
        json.post_processor,
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [tok.bosTokenId], tokens: [bos] } },
        },
      ],
    };
  }
  const config: Record<string, unknown> = ggufSpecialTokens(tok);
  try {
    return HfTokenizer.fromObjects(json, config);
  } catch (e) {
    throw new Error(`loadModel: ${path}: its tokenizer (tokenizer.ggml.*) cannot be used: ${(e as Error).message}`, { cause: e });
  }
}

/** A tokenizer with ids the model cannot embed belongs to other weights (the reverse, a padded embedding, is normal). */
function checkTokenizerFits(arch: ArchConfig, tokenizer: HfTokenizer, path: string): void {
  if (tokenizer.vocabSize > arch.vocabSize) {
    throw new Error(`loadModel: ${path}: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary has only ${arch.vocabSize} rows; the tokenizer does not belong to these weights`);
  }
}

/** generation_config.json's eos_token_id (int or list), else the architecture's; plus the tokenizer's EOS. Validated against the vocabulary. */
function stopIdsOf(arch: ArchConfig, tokenizer: HfTokenizer, generationConfig: Record<string, unknown> | undefined, path: string): number[] {
  const raw = generationConfig?.eos_token_id;
  let ids: number[];
  if (raw === undefined || raw === null) {
    ids = arch.eosTokenIds;
  } else {
    const list = Array.isArray(raw) ? raw : [raw];
    if (!list.every((x) => Number.isInteger(x))) throw new Error(`loadModel: ${path}: generation_config.json eos_token_id must be an integer or a list of integers, got ${JSON.stringify(raw)}`);
    ids = list as number[];
  }
  for (const id of ids) {
    if (id < 0 || id >= arch.vocabSize) throw new Error(`loadModel: ${path}: end-of-sequence id ${id} is outside the vocabulary [0, ${arch.vocabSize})`);
  }
  return [...new Set([...ids, tokenizer.eosId])];
}

/**
 * The tokenizer as the built-in engine needs it: with the model's vocabulary size. Models often pad
 * the embedding past the tokenizer's last id (Qwen2.5: 151 936 rows for 151 665 tokens) so the
 * matrix splits evenly; those rows are never produced by the tokenizer, and if sampled they decode
 * to nothing. A tokenizer with ids the model cannot embed is refused.
 */
export function engineTokenizer(loaded: { tokenizer: Tokenizer; model: Transformer; path: string }): Tokenizer {
  const tok = loaded.tokenizer, V = loaded.model.config.vocabSize;
  if (tok.vocabSize === V) return tok;
  if (tok.vocabSize > V) throw new Error(`loadModel: ${loaded.path}: the tokenizer has ${tok.vocabSize} tokens but the model's vocabulary has only ${V} rows; they do not belong together`);
  return {
    vocabSize: V,
    eosId: tok.eosId,
    encode: (text) => tok.encode(text),
    decode: (ids) => tok.decode(ids.filter((id) => id < tok.vocabSize)),
    tokenString: (id) => (id >= tok.vocabSize && id < V ? '' : tok.tokenString(id)),
    tokenId: (t) => tok.tokenId(t),
  };
}

async function readMagic(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return buf.subarray(0, bytesRead).toString('latin1');
  } finally {
    await fh.close();
  }
}
