/**
 * `agentrl serve gateway`: the agent gateway (src/gateway/server.ts) over the built-in engine, for
 * agents in any language: each finished rollout (its reward reported) is written as one JSON line
 * to `--out <dir>/trajectories.jsonl` (token ids, behaviour logprobs, versions: see
 * `trajectoryToJson`) for a trainer to pick up.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { selectBackend } from '../engine/backends.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import type { ChatTemplate } from '../engine/chat-template.ts';
import { engineTokenizer, loadModel } from '../engine/load-model.ts';
import { Transformer } from '../engine/model.ts';
import type { InferenceEngine } from '../engine/types.ts';
import { loadTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { RolloutRecorder, trajectoryToJson } from './recorder.ts';
import { gatewayConfigError, startGatewayServer } from './server.ts';
import { untilSignal } from '../cli/until-signal.ts';
import { TOOL_CALL_FORMAT_NAMES, type ToolCallFormatName } from './tool-formats/index.ts';

export interface ServeGatewayCliOptions {
  model?: string;
  checkpoint?: string;
  host: string;
  port: number;
  token?: string;
  maxBody: number;
  rateLimit?: number;
  out?: string;
  contextLength?: number;
  maxBatch: number;
  seed: number;
  name?: string;
  /** How the model writes tool calls (default 'hermes'). */
  toolCallFormat?: ToolCallFormatName;
}

/** The engine (and chat template, stop ids) a `--model` directory / GGUF file or a `--checkpoint` serves. */
async function loadServed(o: ServeGatewayCliOptions): Promise<{ engine: InferenceEngine; chatTemplate: ChatTemplate | null; stopIds?: number[]; name: string }> {
  if ((o.model === undefined) === (o.checkpoint === undefined)) throw new Error('serve gateway: give exactly one of --model <dir|gguf> and --checkpoint <dir>');
  const backend = selectBackend();
  if (o.model !== undefined) {
    const loaded = await loadModel(o.model, backend, { contextLength: o.contextLength });
    if (!loaded.chatTemplate) console.warn(`serve gateway: ${o.model} has no usable chat template${loaded.chatTemplateError ? ` (${loaded.chatTemplateError})` : ''}; using the gateway's default ChatML template`);
    const engine = new BuiltinEngine(loaded.model, engineTokenizer(loaded), { maxBatch: o.maxBatch, seed: o.seed });
    return { engine, chatTemplate: loaded.chatTemplate, stopIds: loaded.stopIds, name: o.name ?? o.model };
  }
  const { trainer, tokenizer, checkpoint } = await loadTrainerCheckpoint(o.checkpoint!, backend);
  if (!tokenizer) throw new Error(`serve gateway: checkpoint ${o.checkpoint} has no tokenizer; the gateway renders chats to tokens with it`);
  const model = new Transformer(trainer.model.config, trainer.model.backend, 0);
  model.params.set(trainer.model.params);
  const engine = new BuiltinEngine(model, engineTokenizer({ tokenizer, model, path: o.checkpoint! }), { maxBatch: o.maxBatch, seed: o.seed });
  engine.setWeights(model.params, checkpoint.step);
  return { engine, chatTemplate: null, name: o.name ?? `${o.checkpoint}@${checkpoint.step}` };
}

function noTemplateForFormat(format: string): string {
  return `serve gateway: --tool-call-format ${format} needs the model's own chat template (the gateway's default template asks for and renders hermes <tool_call> blocks); serve a --model whose tokenizer_config.json or GGUF has a chat template, or use --tool-call-format hermes`;
}

/** Serve until SIGINT/SIGTERM. Refuses to start beyond loopback without a token (checked before loading the model). */
export async function runServeGateway(o: ServeGatewayCliOptions): Promise<void> {
  const token = o.token ?? process.env.AGENTRL_GATEWAY_TOKEN;
  const problem = gatewayConfigError({ host: o.host, token, toolCallFormat: o.toolCallFormat });
  if (problem) throw new Error(`serve gateway: ${problem}`);
  const format = o.toolCallFormat ?? 'hermes';
  if (format !== 'hermes' && o.checkpoint !== undefined) throw new Error(noTemplateForFormat(format));
  const served = await loadServed(o);
  // The default template prompts for, and renders past calls as, Hermes blocks: another format would be parsed from replies the prompt never asked for.
  if (format !== 'hermes' && !served.chatTemplate) throw new Error(noTemplateForFormat(format));
  let written = 0;
  const file = o.out !== undefined ? join(o.out, 'trajectories.jsonl') : null;
  if (o.out !== undefined) mkdirSync(o.out, { recursive: true });
  const recorder = new RolloutRecorder(file
    ? { dropWhenFinished: true, onFinished: (t) => { appendFileSync(file, `${JSON.stringify(trajectoryToJson(t))}\n`); written++; } }
    : {});
  const server = await startGatewayServer({
    engine: served.engine, chatTemplate: served.chatTemplate, stopIds: served.stopIds, modelName: served.name, host: o.host, port: o.port,
    token, maxBodyBytes: o.maxBody, rateLimit: o.rateLimit, recorder, toolCallFormat: o.toolCallFormat,
  });
  console.log(`agent gateway for ${served.name} at ${server.url}/v1 (OpenAI-compatible; rollout id: baseURL ${server.url}/rollouts/<id>/v1, X-Rollout-Id header or API key ${token ? '<token>:<id>' : 'rollout-<id>'}; reward: POST /v1/rollouts/<id>/reward)${file ? `; trajectories → ${file}` : ''}; Ctrl-C stops`);
  await untilSignal();
  await server.close();
  console.log(`agent gateway stopped${file ? ` (${written} trajectories written to ${file})` : ''}`);
}

function intArg(min: number, what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected ${what}, got '${v}'`);
    return n;
  };
}

/** `--max-body 4mb`: bytes, or with a k/m suffix (KiB, MiB). */
export function parseByteSize(v: string): number {
  const m = /^(\d+)\s*(k|kb|kib|m|mb|mib)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a size in bytes (e.g. 4194304, 512k, 4m), got '${v}'`);
  const unit = (m[2] ?? '').toLowerCase();
  const n = Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
  if (n < 1) throw new InvalidArgumentError(`--max-body must be at least 1 byte, got '${v}'`);
  return n;
}

/** Register `serve gateway` under the `serve` command. */
export function registerServeGateway(serve: Command): void {
  serve
    .command('gateway')
    .description('OpenAI-compatible agent gateway (POST /v1/chat/completions, /v1/completions) over the built-in engine: records every call\'s token ids, behaviour logprobs and versions per rollout id; the agent reports its reward with POST /v1/rollouts/<id>/reward.')
    .option('--model <path>', 'Hugging Face model directory or .gguf file')
    .option('--checkpoint <dir>', 'an agentrl trainer checkpoint (instead of --model)')
    .option('--host <host>', 'address to listen on; anything but loopback requires --token', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', (v: string) => { const n = intArg(0, 'a port number 0–65535')(v); if (n > 65535) throw new InvalidArgumentError(`expected a port number 0–65535, got '${v}'`); return n; }, 8000)
    .addOption(new Option('--token <token>', 'bearer token every request must carry (required beyond loopback; at least 16 characters)').env('AGENTRL_GATEWAY_TOKEN'))
    .option('--max-body <size>', 'largest request body (bytes, or 512k / 4m)', parseByteSize, 4 << 20)
    .option('--rate-limit <n>', 'requests per second per client address, 0 = unlimited (default: unlimited on loopback, 100 elsewhere)', intArg(0, 'an integer ≥ 0'))
    .option('--out <dir>', 'write each finished rollout\'s trajectory as a JSON line to <dir>/trajectories.jsonl')
    .option('--context-length <n>', 'tokens the model holds, prompt + completion (default min(the model\'s maximum, 4096))', intArg(1, 'an integer ≥ 1'))
    .option('--max-batch <n>', 'sequences decoded together', intArg(1, 'an integer ≥ 1'), 32)
    .option('--seed <n>', 'sampling seed of requests without their own', intArg(0, 'an integer ≥ 0'), 0)
    .option('--name <name>', 'model name reported by /v1/models (default the model path)')
    .addOption(new Option('--tool-call-format <format>', 'how the model writes tool calls: hermes (<tool_call> blocks: Qwen2.5, Hermes), llama3-json (Llama 3.1/3.2 JSON), mistral ([TOOL_CALLS] [...]); the gateway\'s default chat template prompts for hermes').choices(TOOL_CALL_FORMAT_NAMES).default('hermes'))
    .action(async (o: ServeGatewayCliOptions) => {
      await runServeGateway(o);
    });
}
