/**
 * `agentrl serve inference`: serve a model on the built-in engine over vLLM- and SGLang-shaped
 * HTTP endpoints (src/serve/inference-server.ts). The model is a Hugging Face directory or GGUF file
 * (`--model`) or the checkpoint of an `agentrl train` run (`--checkpoint`, tokenizer included). Once
 * listening it prints one line `listening on http://HOST:PORT`, which a parent process can read to
 * find the port chosen with `--port 0`.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Command } from 'commander';
import { int, port, positiveInt } from './option-parsers.ts';
import { selectBackend } from '../engine/backends.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { latestCheckpoint, MANIFEST_FILE } from '../engine/checkpoint.ts';
import { engineTokenizer, loadModel } from '../engine/load-model.ts';
import { startInferenceServer, type InferenceServerOptions } from '../serve/inference-server.ts';
import { loadTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { toyToolTokenizer } from '../agents/toy-tool-agent.ts';
import type { Tokenizer } from '../engine/types.ts';
import { untilSignal } from './until-signal.ts';

export interface ServeInferenceCliOptions {
  model?: string;
  checkpoint?: string;
  host: string;
  port: number;
  maxBatch: number;
  seed: number;
  servedModelName?: string;
  contextLength?: number;
  maxBodyBytes?: number;
}

type Loaded = Pick<InferenceServerOptions, 'engine' | 'model' | 'tokenizer' | 'encodeText' | 'stopIds' | 'modelPath'> & { version: number };

async function loadForServing(o: ServeInferenceCliOptions): Promise<Loaded> {
  if ((o.model === undefined) === (o.checkpoint === undefined)) throw new Error('serve inference: give exactly one of --model <dir|gguf> and --checkpoint <dir>');
  const engineOpts = { maxBatch: o.maxBatch, seed: o.seed };
  if (o.model !== undefined) {
    const loaded = await loadModel(o.model, selectBackend(), { contextLength: o.contextLength, chatTemplate: false });
    const tokenizer = engineTokenizer(loaded);
    const engine = new BuiltinEngine(loaded.model, tokenizer, engineOpts);
    // As vLLM tokenizes completion prompts: with the special tokens the tokenizer adds (e.g. BOS).
    const encodeText = (t: string) => loaded.tokenizer.encode(t, { addSpecialTokens: true });
    return { engine, model: loaded.model, tokenizer, encodeText, stopIds: loaded.stopIds, modelPath: o.model, version: 0 };
  }
  if (o.contextLength !== undefined) throw new Error('serve inference: --context-length applies to --model; a checkpoint keeps the context length it was trained with');
  const dir = await resolveCheckpoint(o.checkpoint!);
  const { trainer, tokenizer: saved, checkpoint } = await loadTrainerCheckpoint(dir, selectBackend());
  const model = trainer.model;
  let tokenizer: Tokenizer;
  if (saved) {
    tokenizer = engineTokenizer({ tokenizer: saved, model, path: dir });
  } else {
    // The toy tool agent speaks raw token ids and saves no tokenizer: its run config names the one it used.
    const runCfg = (checkpoint.trainerState as { config?: { task?: string; toolAgent?: { vocabSize?: number } } } | undefined)?.config;
    if (runCfg?.task !== 'toy-tool') throw new Error(`serve inference: checkpoint ${dir} has no tokenizer, so text prompts and decoded text cannot be served`);
    tokenizer = toyToolTokenizer(runCfg.toolAgent?.vocabSize ?? model.config.vocabSize);
  }
  const engine = new BuiltinEngine(model, tokenizer, engineOpts);
  // The engine starts at version 0; report the checkpoint's (idle, so this applies at once).
  engine.setWeights(model.params.slice(), checkpoint.weightVersion);
  return { engine, model, tokenizer, stopIds: [], modelPath: dir, version: checkpoint.weightVersion };
}

/** A checkpoint directory, or a directory of `step-*` checkpoints (its newest). */
async function resolveCheckpoint(dir: string): Promise<string> {
  if (!existsSync(dir)) throw new Error(`serve inference: --checkpoint ${dir} does not exist`);
  if (existsSync(join(dir, MANIFEST_FILE))) return dir;
  const latest = await latestCheckpoint(dir).catch(() => null);
  if (latest) return latest;
  throw new Error(`serve inference: --checkpoint ${dir} holds no ${MANIFEST_FILE} and no step-* checkpoints (pass the checkpoint directory agentrl train wrote, e.g. runs/<name>/checkpoint)`);
}

/** Serve until SIGINT/SIGTERM. */
export async function runServeInference(o: ServeInferenceCliOptions): Promise<void> {
  const loaded = await loadForServing(o);
  const modelName = o.servedModelName ?? basename(loaded.modelPath!.replace(/[\\/]+$/, '')).replace(/\.gguf$/i, '');
  const server = await startInferenceServer({ ...loaded, host: o.host, port: o.port, modelName, maxBodyBytes: o.maxBodyBytes });
  console.log(`listening on ${server.url}`);
  console.log(`serving '${modelName}' (${loaded.modelPath}, weight version ${loaded.version}) with vLLM endpoints (POST /v1/completions, /inference/v1/generate, /pause, /resume, /sleep, /wake_up) and SGLang endpoints (POST /generate, /update_weights_from_disk, /pause_generation, /continue_generation, /abort_request); Ctrl-C stops`);
  await untilSignal();
  await server.close();
  console.log('inference server stopped');
}

export function registerServeInference(serve: Command): void {
  serve
    .command('inference')
    .description('Serve a model on the built-in engine over vLLM-shaped (POST /v1/completions, /inference/v1/generate, /pause, /resume, /abort_requests, /sleep, /wake_up) and SGLang-shaped (POST /generate, /update_weights_from_disk, /pause_generation, /continue_generation, /abort_request) endpoints; prints "listening on URL" once ready.')
    .option('--model <path>', 'Hugging Face model directory or .gguf file')
    .option('--checkpoint <dir>', 'checkpoint of an agentrl train run (e.g. runs/<name>/checkpoint), tokenizer included')
    .option('--host <host>', 'address to listen on (0.0.0.0 serves other machines)', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', port, 8000)
    .option('--max-batch <n>', 'sequences decoded together (KV-cache slots)', positiveInt, 32)
    .option('--seed <n>', 'seed of the sampling stream of requests without a seed', int, 0)
    .option('--served-model-name <name>', 'model name clients send and /v1/models lists (default: the model directory\'s name)')
    .option('--context-length <n>', 'with --model: tokens one sequence holds, prompt + completion (default min(the model\'s maximum, 4096))', positiveInt)
    .option('--max-body-bytes <n>', 'largest request body accepted (default 64 MiB)', positiveInt)
    .action(async (o: ServeInferenceCliOptions) => {
      await runServeInference(o);
    });
}
