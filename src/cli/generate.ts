/**
 * `agentrl generate`: sample a completion from an open-weight model (a Hugging Face directory or a
 * GGUF file) on the built-in engine — the same BuiltinEngine, sampler and logprobs that RL training
 * uses, so `--json` shows exactly the token-in-token-out record a rollout would store (ids and the
 * behaviour logprob of each sampled token under the temperature and top-k/top-p truncation).
 *
 * Prompts: `--prompt TEXT` is tokenized as transformers' `tokenizer(text)` does (special tokens the
 * tokenizer's post-processor adds, e.g. Llama 3's BOS); `--chat` renders TEXT as one user message
 * with the model's chat template and its generation prompt (the template writes BOS itself);
 * `--prompt-ids` gives the ids verbatim.
 */
import { Command } from 'commander';
import { int, num, positiveInt } from './option-parsers.ts';
import { selectBackend } from '../engine/backends.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { encodeChat } from '../engine/chat-template.ts';
import { engineTokenizer, loadModel, type LoadedModel } from '../engine/load-model.ts';
import type { SampledCompletion } from '../engine/types.ts';

export interface GenerateCliOptions {
  model: string;
  prompt?: string;
  /** Comma-separated token ids. */
  promptIds?: string;
  chat?: boolean;
  maxTokens: number;
  temperature: number;
  seed: number;
  topP?: number;
  topK?: number;
  json?: boolean;
  threads?: number;
  contextLength?: number;
}

/** What `--json` prints (one line). */
export interface GenerateJson {
  model: string;
  source: 'hf' | 'gguf';
  seed: number;
  temperature: number;
  top_p: number;
  top_k: number;
  prompt_ids: number[];
  ids: number[];
  logprobs: number[];
  text: string;
  finish_reason: SampledCompletion['finishReason'];
}

const GREEDY_HINT = 'the built-in engine samples at temperature > 0 only (temperature 0 is not supported); for greedy decoding use --top-k 1 (each reported logprob is then 0: it is taken under the truncated distribution actually sampled from)';

/** Parse `--prompt-ids 1,2,3`. */
export function parsePromptIds(s: string): number[] {
  const parts = s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (parts.length === 0) throw new Error(`--prompt-ids: expected comma-separated token ids such as 1,2,3, got '${s}'`);
  return parts.map((p) => {
    const n = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(n)) throw new Error(`--prompt-ids: '${p}' is not a token id (a non-negative integer)`);
    return n;
  });
}

/** The prompt's token ids, from the options (see the file comment). */
export function promptTokens(loaded: LoadedModel, o: Pick<GenerateCliOptions, 'prompt' | 'promptIds' | 'chat'>): number[] {
  if ((o.prompt === undefined) === (o.promptIds === undefined)) throw new Error('generate: give exactly one of --prompt TEXT and --prompt-ids 1,2,3');
  if (o.promptIds !== undefined) {
    if (o.chat) throw new Error('generate: --chat renders a text prompt with the chat template; it cannot be combined with --prompt-ids (render the ids yourself)');
    return parsePromptIds(o.promptIds);
  }
  if (o.chat) {
    if (!loaded.chatTemplate) {
      const why = loaded.chatTemplateError ? `its chat template cannot be used: ${loaded.chatTemplateError}` : 'it has no chat template (a base model?)';
      throw new Error(`generate: --chat: ${loaded.path}: ${why}; drop --chat to use the prompt as plain text`);
    }
    return encodeChat(loaded.chatTemplate, loaded.tokenizer, [{ role: 'user', content: o.prompt! }], { addGenerationPrompt: true });
  }
  return loaded.tokenizer.encode(o.prompt!, { addSpecialTokens: true });
}

/** Load the model, sample one completion, print it (text, or one JSON line with `--json`). */
export async function runGenerate(o: GenerateCliOptions): Promise<GenerateJson> {
  if (!(o.temperature > 0) || !Number.isFinite(o.temperature)) throw new Error(`generate: --temperature must be a finite number > 0, got ${o.temperature}: ${GREEDY_HINT}`);
  if (o.prompt === undefined && o.promptIds === undefined) throw new Error('generate: give a prompt: --prompt TEXT (with --chat to use the chat template) or --prompt-ids 1,2,3');
  // The native backend reads its thread count from AGENTRL_THREADS when it is created.
  if (o.threads !== undefined) process.env.AGENTRL_THREADS = String(o.threads);
  const loaded = await loadModel(o.model, selectBackend(), { contextLength: o.contextLength, chatTemplate: o.chat === true });
  const prompt = promptTokens(loaded, o);
  const engine = new BuiltinEngine(loaded.model, engineTokenizer(loaded), { maxBatch: 1, seed: o.seed });
  const c = await engine.generate(prompt, {
    maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed, stopIds: loaded.stopIds,
  });
  const text = c.text;
  const out: GenerateJson = {
    model: o.model, source: loaded.source, seed: o.seed, temperature: o.temperature, top_p: o.topP ?? 1, top_k: o.topK ?? 0,
    prompt_ids: prompt, ids: c.ids, logprobs: c.logprobs, text, finish_reason: c.finishReason,
  };
  if (o.json) console.log(JSON.stringify(out));
  else console.log(text);
  return out;
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('Sample a completion from a Hugging Face model directory or a .gguf file on the built-in engine (the sampler RL training uses); --json prints ids, per-token logprobs and text as one JSON line.')
    .requiredOption('--model <path>', 'Hugging Face model directory (config.json, *.safetensors, tokenizer.json) or .gguf file')
    .option('--prompt <text>', 'prompt text (tokenized as transformers does, special tokens included)')
    .option('--prompt-ids <ids>', 'prompt token ids, comma-separated (instead of --prompt)')
    .option('--chat', 'render --prompt as one user message with the model\'s chat template and generation prompt')
    .option('--max-tokens <n>', 'tokens to generate at most', positiveInt, 64)
    .option('--temperature <t>', 'sampling temperature, > 0 (0 is not supported: use --top-k 1 for greedy decoding)', num, 1)
    .option('--top-p <p>', 'nucleus sampling, in (0, 1]', num)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', int)
    .option('--seed <n>', 'sampling seed (the same seed, model and prompt give the same tokens)', int, 0)
    .option('--context-length <n>', 'tokens the model holds, prompt + completion (default min(the model\'s maximum, 4096))', positiveInt)
    .option('--threads <n>', 'CPU threads for the native kernels (default AGENTRL_THREADS, else all available)', positiveInt)
    .option('--json', 'print one JSON line: model, seed, prompt_ids, ids, logprobs, text, finish_reason')
    .action(async (o: GenerateCliOptions) => {
      await runGenerate(o);
    });
}
