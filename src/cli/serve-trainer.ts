/** `agentrl serve trainer`: the Tinker training API over the built-in engine (src/serve/trainer-server.ts). */
import { basename, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { defaultBackend } from '../engine/backends.ts';
import { engineTokenizer, loadModel } from '../engine/load-model.ts';
import type { Transformer } from '../engine/model.ts';
import type { Tokenizer } from '../engine/types.ts';
import { loadTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { startTrainerServer } from '../serve/trainer-server.ts';
import { untilSignal } from './until-signal.ts';

export interface ServeTrainerCliOptions {
  checkpoint?: string;
  model?: string;
  name?: string;
  host: string;
  port: number;
  contextLength?: number;
}

function intArg(what: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected ${what} (an integer ${min}–${max}), got '${v}'`);
    return n;
  };
}

/** The base model: a trainer checkpoint (agentrl train's) or a Hugging Face directory / GGUF file. */
async function baseModel(o: ServeTrainerCliOptions): Promise<{ model: Transformer; tokenizer: Tokenizer | null; name: string }> {
  if (!!o.checkpoint === !!o.model) throw new Error('agentrl serve trainer: give exactly one of --checkpoint <dir> (an agentrl trainer checkpoint) and --model <dir|gguf> (a Hugging Face model directory or a GGUF file)');
  const backend = defaultBackend();
  if (o.checkpoint) {
    const dir = resolve(o.checkpoint);
    const { trainer, tokenizer } = await loadTrainerCheckpoint(dir, backend);
    return { model: trainer.model, tokenizer, name: o.name ?? basename(dir) };
  }
  const path = resolve(o.model!);
  const loaded = await loadModel(path, backend, { chatTemplate: false, ...(o.contextLength ? { contextLength: o.contextLength } : {}) });
  return { model: loaded.model, tokenizer: engineTokenizer(loaded), name: o.name ?? basename(path) };
}

/** Serve until SIGINT/SIGTERM. */
export async function runServeTrainer(o: ServeTrainerCliOptions): Promise<void> {
  const { model, tokenizer, name } = await baseModel(o);
  const server = await startTrainerServer({ model, tokenizer, baseModel: name, host: o.host, port: o.port });
  console.log(`listening on ${server.url}`);
  console.log(`serving '${name}' (${model.numParams} parameters) with the Tinker training API under /api/v1/; Ctrl-C stops`);
  await untilSignal();
  await server.close();
}

export function registerServeTrainer(serve: Command): void {
  serve
    .command('trainer')
    .description('Serve the Tinker training API (sessions, LoRA or full models, forward_backward with cross_entropy / importance_sampling / ppo / cispo / dro, optim_step, save/load weights, weights download, asample) over the built-in engine.')
    .option('--checkpoint <dir>', 'base model: an agentrl trainer checkpoint directory')
    .option('--model <path>', 'base model: a Hugging Face model directory or a .gguf file')
    .option('--name <name>', 'the base_model name clients use (default: the directory/file name)')
    .option('--context-length <n>', 'tokens per sequence for --model (default: the model\'s, at most 4096)', intArg('a context length', 1, 1 << 20))
    .option('--host <host>', 'address to listen on (0.0.0.0 serves other machines)', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', intArg('a port number', 0, 65535), 8000)
    .action(async (o: ServeTrainerCliOptions) => {
      await runServeTrainer(o);
    });
}
