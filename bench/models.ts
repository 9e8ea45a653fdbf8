/**
 * Real open-weight model shapes on the built-in engine, next to llama.cpp and PyTorch measured in the
 * same run. The project cannot download weights, so the models are random (fixed seed, small std)
 * with the published shapes of SmolLM2-135M (default) or Qwen2.5-0.5B (`--model qwen2.5-0.5b`):
 * the same weights go to all three sides — into the engine through `loadHfIntoModel`, to llama.cpp as
 * an F32 GGUF written by `hfToGguf` (with a synthetic byte-level BPE tokenizer of the model's vocab
 * size), to PyTorch as an F32 safetensors file under Hugging Face names.
 *
 *   npm run bench:models [-- --quick] [-- --model smollm2-135m|qwen2.5-0.5b] [-- --threads N]
 *                        [-- --no-torch] [-- --no-llamacpp] [-- --repeats N] [-- --check-only]
 *                        [-- --write | --out FILE]
 *
 * Memory (the weights dominate, so --quick needs nearly as much): in full fine-tuning SmolLM2-135M
 * peaked at 2.9 GB in this process (weights, gradients, AdamW moments, activations of 4×128 tokens;
 * 2.3 GB with --quick) and 4.0 GB in torch's (3.0 GB); Qwen2.5-0.5B (494M parameters, 136M of them
 * the embedding) at 8.1 GB here with --quick, and torch needs about as much again at the same time:
 * run it where ~20 GB are free, or with --no-torch.
 *
 * Before any timing, one short sequence is scored by every side and the full next-token
 * log-distributions compared (the engine's KV-cache path and its training forward against llama.cpp,
 * the engine against PyTorch): max |Δ logprob| must be ≤ 1e-3, or the bench stops — the speed
 * comparison is then of the same computation.
 *
 * Measurements (each repeated `--repeats` times, the sides interleaved, the order reversed every
 * other repeat — A B C, C B A, … — so slow drift of a shared machine falls on all of them; medians
 * with min/max and every run; ratios are of medians from this run). Every side gets the same threads.
 *  1. sampling: B concurrent requests of P random prompt tokens and N new tokens each at temperature 1
 *     over the whole vocabulary — BuiltinEngine.generate (continuous batching over its KV cache);
 *     llama.cpp through node-llama-cpp (B sequences of one context, evaluated concurrently so
 *     llama.cpp decodes them in one batch; F32 K/V cache, no flash attention; topK 0 — node-llama-cpp
 *     then runs llama.cpp's top-k stage with k = vocab, which sorts the vocabulary: on the dev machine
 *     greedy decoding was ~13% faster for it at B = 8, once); PyTorch eager (bench/torch_models.py).
 *     tokens/s = B·N generated tokens / wall time of the whole batch, prompt processing included.
 *  2. training: one optimizer step on B×T random tokens (mean NLL of every position, AdamW, clip
 *     1.0): full fine-tuning (BuiltinTrainer + sftLoss) and LoRA (rank 8, alpha 8, all seven linear
 *     modules of every block) — PyTorch doing the same step. tokens/s = B·T / step time.
 *  3. memory: each process's peak RSS per phase — the kernel's high-water mark VmHWM from
 *     /proc/self/status, reset at the start of each phase by writing 5 to /proc/self/clear_refs (after
 *     a GC); llama.cpp runs in a child node process and PyTorch in a python process, so every figure
 *     is one side's alone. Plus the engine's own bytes: parameters, gradients, AdamW moments, LoRA
 *     adapter, activations (model.activationBytes), KV cache.
 *
 * Writes nothing unless asked: `--write` puts the JSON into docs/results/models-bench.json
 * (models-bench-qwen2.5-0.5b.json for that model), `--out FILE` into FILE. The weights travel through
 * a temporary directory (os.tmpdir()/agentrl-bench-models-*) removed at the end. Last line: one JSON
 * object.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import type { ArchConfig, HfTensors } from '../src/engine/arch.ts';
import type { Backend } from '../src/engine/backend.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { loadNativeBackend, nativeLoadError } from '../src/engine/native.ts';
import { Transformer } from '../src/engine/model.ts';
import { loadHfIntoModel, modelConfigFromArch } from '../src/engine/hf-model.ts';
import { expectedHfTensors } from '../src/engine/hf-weights.ts';
import { hfToGguf } from '../src/engine/gguf-convert.ts';
import { writeSafetensorsFileAs } from '../src/engine/safetensors.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { LoraAdapter } from '../src/train/lora.ts';
import { Rng } from '../src/core/rng.ts';
import { logSoftmaxF64 as logSoftmax } from '../src/engine/sampling.ts';
import { LinePeer } from './line-peer.ts';
import { envOf, idTokenizer, median, now, positiveInt, randomTrainSamples, round, stats, type Stats } from './common.ts';

// ---------------------------------------------------------------------------------------------
// Models: the published shapes, from each model's Hugging Face config.json.

interface BenchModel { arch: ArchConfig; source: string }

const MODELS: Record<string, BenchModel> = {
  // huggingface.co/HuggingFaceTB/SmolLM2-135M config.json: LlamaForCausalLM, hidden_size 576,
  // intermediate_size 1536, num_hidden_layers 30, num_attention_heads 9, num_key_value_heads 3,
  // vocab_size 49152, rope_theta 100000, rms_norm_eps 1e-5, tie_word_embeddings true,
  // max_position_embeddings 8192 (also /work/shared/reference/engines.md).
  'smollm2-135m': {
    source: 'HuggingFaceTB/SmolLM2-135M config.json',
    arch: {
      family: 'llama', hfArchitecture: 'LlamaForCausalLM', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536,
      nLayer: 30, nHead: 9, nKvHead: 3, headDim: 64, maxPositions: 8192, norm: 'rmsnorm', normEps: 1e-5, mlp: 'swiglu',
      positions: 'rope', ropeTheta: 100000, ropeScaling: null, tiedEmbeddings: true,
      qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, bosTokenId: null, eosTokenIds: [49151],
    },
  },
  // huggingface.co/Qwen/Qwen2.5-0.5B config.json: Qwen2ForCausalLM, hidden_size 896,
  // intermediate_size 4864, num_hidden_layers 24, num_attention_heads 14, num_key_value_heads 2,
  // vocab_size 151936, rope_theta 1000000, rms_norm_eps 1e-6, tie_word_embeddings true,
  // max_position_embeddings 32768, use_sliding_window false; Qwen2 has q/k/v biases, no o_proj bias.
  'qwen2.5-0.5b': {
    source: 'Qwen/Qwen2.5-0.5B config.json',
    arch: {
      family: 'qwen2', hfArchitecture: 'Qwen2ForCausalLM', vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864,
      nLayer: 24, nHead: 14, nKvHead: 2, headDim: 64, maxPositions: 32768, norm: 'rmsnorm', normEps: 1e-6, mlp: 'swiglu',
      positions: 'rope', ropeTheta: 1000000, ropeScaling: null, tiedEmbeddings: true,
      qkvBias: true, oBias: false, mlpBias: false, qkNorm: false, bosTokenId: null, eosTokenIds: [151935],
    },
  },
};
// eosTokenIds: the synthetic tokenizer's one special token (the last id), not the published id.

/** Random init: matrices N(0, std²) (o_proj/down_proj std/√(2L), GPT-2 style), norm gains 1 + N(0, 0.1²), biases N(0, 0.1²). */
const INIT_STD = 0.05;
const WEIGHT_SEED = 1234;
/** Tokens of the correctness check, and the bound on max |Δ logprob| between sides. */
const CHECK_TOKENS = 8;
const CHECK_BOUND = 1e-3;
const LR = 1e-5, WEIGHT_DECAY = 0.01;
const LORA_RANK = 8, LORA_ALPHA = 8;

const THIS_FILE = fileURLToPath(import.meta.url);
const TORCH_SCRIPT = fileURLToPath(new URL('./torch_models.py', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('../docs/results/', import.meta.url));
const NODE_LLAMA_CPP_PKG = fileURLToPath(new URL('../node_modules/node-llama-cpp/package.json', import.meta.url));

// ---------------------------------------------------------------------------------------------
// CLI

const program = new Command()
  .addOption(new Option('--model <name>', 'published model shapes to bench').choices(Object.keys(MODELS)).default('smollm2-135m'))
  .option('--quick', 'CI size: fewer, shorter runs (about 1–2 minutes on 2 busy cores)')
  .option('--threads <n>', 'threads for every side', positiveInt('--threads'), 2)
  .option('--no-torch', 'skip the PyTorch peer')
  .option('--no-llamacpp', 'skip the llama.cpp peer')
  .option('--repeats <n>', 'interleaved repeats of each measurement (default 5, --quick 2)', positiveInt('--repeats'))
  .option('--batch <n>', 'concurrent sampling requests B (default 8, --quick 4)', positiveInt('--batch'))
  .option('--prompt <n>', 'prompt tokens P per request (default 32, --quick 16)', positiveInt('--prompt'))
  .option('--new-tokens <n>', 'new tokens N per request (default 64, --quick 16)', positiveInt('--new-tokens'))
  .option('--train-batch <n>', 'training rows (default 4, --quick 2)', positiveInt('--train-batch'))
  .option('--train-len <n>', 'training tokens per row (default 128, --quick 64)', positiveInt('--train-len'))
  .option('--train-steps <n>', 'optimizer steps per repeat (default 2, --quick 1)', positiveInt('--train-steps'))
  .option('--openblas-coretype <v>', "OpenBLAS kernels for the engine and torch: 'detect' (this CPU's own), 'inherit', or a core name", 'detect')
  .option('--torch-cpu-capability <v>', "PyTorch's ATEN_CPU_CAPABILITY: 'best', avx2, avx512, default or 'auto'", 'best')
  .option('--check-only', 'load the weights on every side, run the correctness check, print its JSON and stop (no timing)')
  .option('--write', 'write the JSON result to docs/results/models-bench.json (models-bench-<model>.json for non-default models)')
  .option('--out <file>', 'write the JSON result to this file')
  .addOption(new Option('--serve-llamacpp <json>', 'internal: run as the llama.cpp child process').hideHelp())
  .parse();

interface Opts {
  model: string; quick?: boolean; threads: number; torch: boolean; llamacpp: boolean; repeats?: number;
  batch?: number; prompt?: number; newTokens?: number; trainBatch?: number; trainLen?: number; trainSteps?: number;
  openblasCoretype: string; torchCpuCapability: string; checkOnly?: boolean; write?: boolean; out?: string; serveLlamacpp?: string;
}
const opts = program.opts<Opts>();

// ---------------------------------------------------------------------------------------------
// Small helpers

const gc = () => (globalThis as { gc?: () => void }).gc?.();

interface Mem { rss_mb: number; peak_rss_mb: number }

/** VmRSS and VmHWM (peak since the last reset) of this process, in MB; null off Linux. */
function procMem(): Mem | null {
  try {
    const s = readFileSync('/proc/self/status', 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
    return { rss_mb: round(kb('VmRSS') / 1024), peak_rss_mb: round(kb('VmHWM') / 1024) };
  } catch {
    return null;
  }
}

/** Collect garbage (with --expose-gc) and reset the kernel's peak-RSS counter; false if the kernel refuses. */
function resetPeak(): boolean {
  gc();
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

const mb = (bytes: number) => round(bytes / 2 ** 20);


function maxAbsDiff(a: readonly Float64Array[], b: readonly Float64Array[]): number {
  let d = 0;
  a.forEach((row, t) => { for (let i = 0; i < row.length; i++) d = Math.max(d, Math.abs(row[i]! - b[t]![i]!)); });
  return d;
}

const f64ToB64 = (rows: readonly Float64Array[]) => Buffer.concat(rows.map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength))).toString('base64');

function b64ToRows(b64: string, nRows: number, V: number): Float64Array[] {
  const all = new Float64Array(Uint8Array.from(Buffer.from(b64, 'base64')).buffer);
  if (all.length !== nRows * V) throw new Error(`expected ${nRows}×${V} log-probabilities, got ${all.length}`);
  return Array.from({ length: nRows }, (_, t) => all.subarray(t * V, (t + 1) * V));
}

// ---------------------------------------------------------------------------------------------
// Weights and tokenizer

/** Fill `out` with N(mean, std²), both Box–Muller outputs used. */
function fillNormal(out: Float32Array, rng: Rng, mean: number, std: number): void {
  for (let i = 0; i < out.length; i += 2) {
    let u = rng.next();
    while (u <= 1e-12) u = rng.next();
    const r = Math.sqrt(-2 * Math.log(u)), th = 2 * Math.PI * rng.next();
    out[i] = mean + std * r * Math.cos(th);
    if (i + 1 < out.length) out[i + 1] = mean + std * r * Math.sin(th);
  }
}

/** Random weights under Hugging Face names (see INIT_STD). Random gains and biases make the check sensitive to them. */
function randomHfTensors(arch: ArchConfig, seed: number, std: number): HfTensors {
  const rng = new Rng(seed);
  const out: HfTensors = new Map();
  for (const [name, shape] of expectedHfTensors(arch)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith('norm.weight')) fillNormal(data, rng, 1, 0.1);
    else if (name.endsWith('.bias')) fillNormal(data, rng, 0, 0.1);
    else fillNormal(data, rng, 0, /(o_proj|down_proj)\.weight$/.test(name) ? std / Math.sqrt(2 * arch.nLayer) : std);
    out.set(name, { shape, data, dtype: 'F32' });
  }
  return out;
}

/** GPT-2's byte → printable character map (bytes_to_unicode): the alphabet of byte-level BPE. */
function byteLevelAlphabet(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

/**
 * A byte-level BPE tokenizer.json with exactly V tokens, for llama.cpp's loader: the 256 byte tokens,
 * then filler merges (every pair of bytes, then pair + byte, …) up to V − 1, and one special
 * <|endoftext|> as id V − 1. Only token ids matter to the bench (no text is encoded).
 */
function syntheticTokenizerJson(V: number): Record<string, unknown> {
  const bytes = byteLevelAlphabet();
  const vocab: Record<string, number> = {};
  bytes.forEach((c, i) => { vocab[c] = i; });
  const merges: string[] = [];
  let id = 256;
  let level = bytes; // tokens of the previous length, extended by one byte each round
  while (id < V - 1) {
    const next: string[] = [];
    for (const left of level) {
      for (const b of bytes) {
        if (id >= V - 1) break;
        const tok = left + b;
        vocab[tok] = id++;
        merges.push(`${left} ${b}`);
        next.push(tok);
      }
      if (id >= V - 1) break;
    }
    level = next;
  }
  return {
    version: '1.0',
    added_tokens: [{ id: V - 1, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

// ---------------------------------------------------------------------------------------------
// Peers: child processes answering one JSON line per request line.

type Reply = Record<string, unknown> & { mem?: Mem };
/** Loading a model's weights and answering a timed phase can each take minutes on 2 cores. */
const PEER_TIMEOUTS = { readyMs: 600_000, requestMs: 1_200_000 };

// ---------------------------------------------------------------------------------------------
// The llama.cpp child (this file with --serve-llamacpp): node-llama-cpp's prebuilt CPU llama.cpp.

/** The subset of node-llama-cpp's API used here (typed locally: the package is an optional dev dependency). */
interface NlcSequence {
  evaluate(tokens: number[], options: Record<string, unknown>): AsyncGenerator<number, void, void>;
  controlledEvaluate(input: [number, { generateNext: { logits: true } }][]): Promise<({ next: { logits?: Map<number, number> } } | undefined)[]>;
  clearHistory(): Promise<void>;
}
interface NlcContext { contextSize: number; getSequence(): NlcSequence; dispose(): Promise<void> }
interface NlcModel { createContext(o: Record<string, unknown>): Promise<NlcContext>; dispose(): Promise<void> }
interface NlcLlama {
  llamaCppRelease: { repo: string; release: string }; buildType: string; gpu: string | false;
  loadModel(o: Record<string, unknown>): Promise<NlcModel>; dispose(): Promise<void>;
}

interface LlamaChildConfig { gguf: string; vocab: number; threads: number; batch: number; prompt: number; newTokens: number; contextSize: number }

async function serveLlamaCpp(cfg: LlamaChildConfig): Promise<void> {
  const send = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
  let llama: NlcLlama;
  try {
    const specifier = 'node-llama-cpp'; // not a literal import: the package is optional, also for tsc
    const mod = (await import(specifier)) as { getLlama(o: Record<string, unknown>): Promise<NlcLlama> };
    llama = await mod.getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: 'error', maxThreads: cfg.threads });
  } catch (e) {
    send({ ready: false, reason: `node-llama-cpp or its prebuilt llama.cpp binary did not load (${(e as Error).message.split('\n')[0]}); it is a devDependency (npm ci on linux-x64); nothing is built or downloaded` });
    return;
  }
  const t0 = now();
  const model = await llama.loadModel({ modelPath: cfg.gguf, gpuLayers: 0, useMmap: false, defaultContextFlashAttention: false });
  const context = await model.createContext({
    contextSize: cfg.contextSize, sequences: cfg.batch, threads: { ideal: cfg.threads, min: cfg.threads }, flashAttention: false,
    experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
  });
  const seqs = Array.from({ length: cfg.batch }, () => context.getSequence());
  let nlcVersion: string | null = null;
  try { nlcVersion = (JSON.parse(readFileSync(NODE_LLAMA_CPP_PKG, 'utf8')) as { version: string }).version; } catch { /* reported as null */ }

  /** B random prompts evaluated concurrently: node-llama-cpp batches the B sequences into one llama_decode per step. */
  const sample = async (seed: number) => {
    const rng = new Rng(seed);
    const prompts = seqs.map(() => Array.from({ length: cfg.prompt }, () => rng.int(cfg.vocab - 1)));
    await Promise.all(seqs.map((s) => s.clearHistory()));
    const start = now();
    const counts = await Promise.all(prompts.map(async (p, i) => {
      let n = 0;
      for await (const _ of seqs[i]!.evaluate(p, { temperature: 1, topK: 0, topP: 1, minP: 0, seed: seed * 1000 + i, yieldEogToken: true })) {
        if (++n >= cfg.newTokens) break;
      }
      return n;
    }));
    const dt = now() - start, generated = counts.reduce((a, b) => a + b, 0);
    return { tokens_per_s: generated / dt, seconds: dt, generated };
  };

  send({
    ready: true,
    info: {
      llama_cpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`, build: llama.buildType, gpu: llama.gpu,
      node_llama_cpp: nlcVersion, threads: cfg.threads, sequences: cfg.batch, context_size_per_sequence: context.contextSize,
      kv_cache: 'F32 keys and values', flash_attention: false, weights: 'F32 GGUF (hfToGguf), read into memory (no mmap)',
      sampler: 'temperature 1, topK 0 (node-llama-cpp: top-k over the whole vocabulary), topP 1, minP 0',
      load_s: round(now() - t0, 2), mem: procMem(),
    },
  });
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const req = JSON.parse(line) as { op: string; tokens?: number[]; seed?: number; name?: string };
    let res: Record<string, unknown>;
    try {
      if (req.op === 'check') {
        const tokens = req.tokens!;
        await seqs[0]!.clearHistory();
        const out = await seqs[0]!.controlledEvaluate(tokens.map((t) => [t, { generateNext: { logits: true } }]));
        const rows = tokens.map((_, i) => {
          const logits = out[i]?.next.logits;
          if (!logits || logits.size !== cfg.vocab) throw new Error(`llama.cpp returned ${logits?.size ?? 'no'} logits at position ${i}, expected ${cfg.vocab}`);
          const z = new Float64Array(cfg.vocab);
          for (const [tok, v] of logits) z[tok] = v;
          return logSoftmax(z);
        });
        await seqs[0]!.clearHistory();
        res = { rows: rows.length, vocab: cfg.vocab, logsoftmax_f64_b64: f64ToB64(rows) };
      } else if (req.op === 'phase') {
        await Promise.all(seqs.map((s) => s.clearHistory()));
        res = { phase: req.name, peak_reset: resetPeak() };
        if (req.name === 'sample') await sample(1); // warm-up
      } else if (req.op === 'sample') {
        res = await sample(req.seed ?? 0);
      } else if (req.op === 'mem') {
        res = {};
      } else if (req.op === 'quit') {
        break;
      } else {
        res = { error: `unknown op '${req.op}'` };
      }
    } catch (e) {
      res = { error: (e as Error).message };
    }
    send({ ...res, mem: procMem() });
  }
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  process.exit(0); // node-llama-cpp may keep handles open
}

// ---------------------------------------------------------------------------------------------
// The bench

function backendFor(threads: number): Backend {
  if (process.env.AGENTRL_BACKEND === 'js') return new JsBackend();
  const native = loadNativeBackend({ threads });
  if (native) return native;
  console.log(`native addon not loaded (${nativeLoadError() ?? 'unknown'}): pure-JS fallback, far slower than the peers`);
  return new JsBackend();
}


async function main(): Promise<void> {
  const load0 = loadavg();
  const bench = MODELS[opts.model]!; // commander checked the choice
  const { arch } = bench;
  const quick = !!opts.quick;
  const REPEATS = opts.repeats ?? (quick ? 2 : 5);
  const B = opts.batch ?? (quick ? 4 : 8), P = opts.prompt ?? (quick ? 16 : 32), N = opts.newTokens ?? (quick ? 16 : 64);
  const TB = opts.trainBatch ?? (quick ? 2 : 4), TT = opts.trainLen ?? (quick ? 64 : 128), STEPS = opts.trainSteps ?? (quick ? 1 : 2);
  const ctx = Math.max(P + N, TT, CHECK_TOKENS);
  const V = arch.vocabSize;

  if (opts.openblasCoretype === 'detect') { delete process.env.OPENBLAS_CORETYPE; delete process.env.OPENBLAS_L2_SIZE; }
  else if (opts.openblasCoretype !== 'inherit') process.env.OPENBLAS_CORETYPE = opts.openblasCoretype;
  const be = backendFor(opts.threads);
  if (be.threads !== opts.threads && be.name !== 'js') console.log(`note: --threads ${opts.threads} capped at ${be.threads} (the CPUs this process may use)`);
  const threads = be.name === 'js' ? opts.threads : be.threads; // every side gets what the engine really uses
  const modelCfg = modelConfigFromArch(arch, { contextLength: ctx });
  console.log(`model: ${opts.model} shapes (${bench.source}), random weights (seed ${WEIGHT_SEED}, std ${INIT_STD}); compute path ${be.name}, ${threads} thread(s) on every side`);
  console.log(`sampling: ${B} requests × (${P} prompt + ${N} new tokens); training: ${TB}×${TT} tokens, ${STEPS} step(s) per repeat; ${REPEATS} repeats${quick ? ' (--quick)' : ''}`);

  const phases: Record<string, { node: Mem | null; llamacpp: Mem | null; torch: Mem | null }> = {};
  const peakReset = resetPeak();
  const tmp = mkdtempSync(join(tmpdir(), 'agentrl-bench-models-'));
  let torch: LinePeer | null = null, llamacpp: LinePeer | null = null;
  let torchSkip: string | null = opts.torch ? null : 'skipped (--no-torch)';
  let llamaSkip: string | null = opts.llamacpp ? null : 'skipped (--no-llamacpp)';
  try {
    // ---- Setup: weights to every side --------------------------------------------------------
    let t = now();
    const took: string[] = [];
    const lap = (what: string) => { took.push(`${what} ${(now() - t).toFixed(1)} s`); t = now(); };
    let tensors: HfTensors | null = randomHfTensors(arch, WEIGHT_SEED, INIT_STD);
    lap('random weights');
    const ggufPath = join(tmp, 'model.gguf'), stPath = join(tmp, 'model.safetensors');
    if (opts.llamacpp) {
      writeFileSync(ggufPath, hfToGguf(arch, tensors, syntheticTokenizerJson(V), { dtype: 'F32', name: `agentrl bench ${opts.model} (random weights)` }));
      lap('GGUF');
    }
    if (opts.torch) {
      await writeSafetensorsFileAs(stPath, tensors, 'F32');
      lap('safetensors');
    }
    // initStd 0: the random init would be overwritten anyway.
    const model = new Transformer({ ...modelCfg, initStd: 0 }, be, 0);
    loadHfIntoModel(model, arch, tensors);
    tensors = null;
    lap('engine load');
    phases.setup = { node: procMem(), llamacpp: null, torch: null };
    console.log(`setup: ${(model.numParams / 1e6).toFixed(1)}M parameters; ${took.join(', ')}`);
    t = now();

    const [torchStarted, llamaStarted] = await Promise.all([
      opts.torch
        ? LinePeer.start('torch', '/usr/bin/python3', [TORCH_SCRIPT, '--weights', stPath, '--arch', JSON.stringify(arch), '--threads', String(threads), '--ctx', String(ctx),
          '--sample-batch', String(B), '--prompt', String(P), '--new-tokens', String(N), '--train-batch', String(TB), '--train-len', String(TT),
          '--lr', String(LR), '--weight-decay', String(WEIGHT_DECAY), '--lora-rank', String(LORA_RANK), '--lora-alpha', String(LORA_ALPHA),
          '--openblas-coretype', opts.openblasCoretype, '--cpu-capability', opts.torchCpuCapability],
          (err) => /No module named 'torch'|ENOENT/.test(err)
            ? 'Debian /usr/bin/python3 cannot import torch (apt-get install python3-torch to enable the PyTorch peer)'
            : `torch peer did not start: ${err.slice(-800)}`, PEER_TIMEOUTS)
        : null,
      opts.llamacpp
        ? LinePeer.start('llama.cpp', process.execPath, [...process.execArgv, THIS_FILE, '--serve-llamacpp',
          JSON.stringify({ gguf: ggufPath, vocab: V, threads, batch: B, prompt: P, newTokens: N, contextSize: ctx } satisfies LlamaChildConfig)],
          (err) => `llama.cpp child did not start: ${err.slice(-800)}`, PEER_TIMEOUTS)
        : null,
    ]);
    if (torchStarted && 'error' in torchStarted) torchSkip = torchStarted.error; else torch = torchStarted;
    if (llamaStarted && 'error' in llamaStarted) llamaSkip = llamaStarted.error; else llamacpp = llamaStarted;
    const llamaInfo = llamacpp?.info ?? null;
    // What each peer held once loaded (its peak since start: loading included).
    phases.load = { node: null, llamacpp: (llamacpp?.info.mem as Mem | undefined) ?? null, torch: (torch?.info.mem as Mem | undefined) ?? null };
    rmSync(tmp, { recursive: true, force: true }); // both peers hold the weights in memory now
    if (torch) {
      const i = torch.info as { torch_version: string; torch_num_threads: number; cpu_capability: string | null; blas: { openblas_corename?: string; libraries: string[] }; env: Record<string, string | null> };
      console.log(`torch ${i.torch_version}: ${i.torch_num_threads} threads, ATen ISA ${i.cpu_capability}, BLAS ${i.blas.openblas_corename ? `OpenBLAS (${i.blas.openblas_corename})` : i.blas.libraries.join(' ')}, OMP_WAIT_POLICY=${i.env.OMP_WAIT_POLICY}`);
    } else console.log(`torch: ${torchSkip}`);
    if (llamacpp) {
      const i = llamacpp.info as { llama_cpp: string; node_llama_cpp: string; context_size_per_sequence: number };
      console.log(`llama.cpp ${i.llama_cpp} (node-llama-cpp ${i.node_llama_cpp}): ${threads} threads, ${B} sequences × ${i.context_size_per_sequence} context, F32 K/V cache`);
    } else console.log(`llama.cpp: ${llamaSkip}`);
    if (torch || llamacpp) console.log(`peers ready in ${(now() - t).toFixed(1)} s`);

    // ---- Correctness: the same computation on every side ---------------------------------------
    const rngCheck = new Rng(7);
    const checkTokens = Array.from({ length: CHECK_TOKENS }, () => rngCheck.int(V - 1));
    const cache = model.newKVCache(1);
    const engineRows = [logSoftmax(model.prefill(cache, 0, [checkTokens[0]!]))];
    for (let i = 1; i < CHECK_TOKENS; i++) engineRows.push(logSoftmax(model.decode(cache, Int32Array.of(checkTokens[i]!), 1)));
    const fwd = model.forward({ B: 1, T: CHECK_TOKENS - 1, tokens: Int32Array.from(checkTokens.slice(0, -1)), targets: Int32Array.from(checkTokens.slice(1)) });
    const forwardLogprobs = Float64Array.from(fwd.logprobs);
    const peerRows = async (p: LinePeer | null) => (p ? b64ToRows((await p.request({ op: 'check', tokens: checkTokens })).logsoftmax_f64_b64 as string, CHECK_TOKENS, V) : null);
    const llamaRows = await peerRows(llamacpp), torchRows = await peerRows(torch);
    const entropy = engineRows.reduce((a, r) => a + r.reduce((s, lp) => s - Math.exp(lp) * lp, 0), 0) / CHECK_TOKENS;
    const maxLogprob = engineRows.reduce((m, r) => r.reduce((a, v) => Math.max(a, v), m), -Infinity);
    const forwardVs = (rows: Float64Array[]) => Math.max(...checkTokens.slice(1).map((tok, i) => Math.abs(forwardLogprobs[i]! - rows[i]![tok]!)));
    const check = {
      tokens: checkTokens,
      bound: CHECK_BOUND,
      engine_kv_vs_forward: forwardVs(engineRows),
      engine_kv_vs_llamacpp: llamaRows ? maxAbsDiff(engineRows, llamaRows) : null,
      engine_forward_vs_llamacpp: llamaRows ? forwardVs(llamaRows) : null,
      engine_kv_vs_torch: torchRows ? maxAbsDiff(engineRows, torchRows) : null,
      engine_forward_vs_torch: torchRows ? forwardVs(torchRows) : null,
      llamacpp_vs_torch: llamaRows && torchRows ? maxAbsDiff(llamaRows, torchRows) : null,
      what: `max |Δ logprob| over the whole vocabulary at each of ${CHECK_TOKENS} positions (engine "kv": prefill + decode, the sampling path); "forward": the training forward's logprobs of the next tokens against the other side's`,
      mean_entropy_nats: round(entropy, 3),
      uniform_entropy_nats: round(Math.log(V), 3),
      max_logprob: round(maxLogprob, 3),
    };
    const fmt = (x: number | null) => (x === null ? 'n/a' : x.toExponential(2));
    console.log(`check (${CHECK_TOKENS} tokens, full vocabulary): engine sampling path vs its training forward ${fmt(check.engine_kv_vs_forward)}; engine vs llama.cpp ${fmt(check.engine_kv_vs_llamacpp)} (training forward ${fmt(check.engine_forward_vs_llamacpp)}), engine vs torch ${fmt(check.engine_kv_vs_torch)} (training forward ${fmt(check.engine_forward_vs_torch)}), llama.cpp vs torch ${fmt(check.llamacpp_vs_torch)}; mean entropy ${check.mean_entropy_nats} nats (uniform ${check.uniform_entropy_nats})`);
    const bad = Object.entries(check).filter(([k, v]) => /_vs_/.test(k) && typeof v === 'number' && !(v <= CHECK_BOUND));
    if (bad.length > 0) throw new Error(`correctness check failed: ${bad.map(([k, v]) => `${k} = ${v}`).join(', ')} > ${CHECK_BOUND}: the sides do not compute the same model, so timing them would compare different computations`);
    const versionsOf = (torchInfo: Record<string, unknown> | null) => ({
      node: process.version,
      torch: (torchInfo?.torch_version as string | undefined) ?? null,
      python: (torchInfo?.python as string | undefined) ?? null,
      llamacpp: (llamaInfo?.llama_cpp as string | undefined) ?? null,
      node_llama_cpp: (llamaInfo?.node_llama_cpp as string | undefined) ?? null,
    });
    if (opts.checkOnly) {
      const result = {
        model: opts.model, shapes_source: bench.source, check_only: true, threads, compute_path: be.name, params: model.numParams, check,
        memory_mb: phases, versions: versionsOf(torch?.info ?? null), skipped: { torch: torchSkip, llamacpp: llamaSkip },
        machine: { cpu: cpus()[0]?.model ?? null, cpus: cpus().length, load_average_start: load0.map((v) => round(v, 2)), load_average_end: loadavg().map((v) => round(v, 2)) },
        date: new Date().toISOString(),
      };
      console.log(JSON.stringify(result));
      return;
    }

    /** One peer request; a failure drops that peer for the rest of the run and is reported. */
    const onPeer = async (which: 'torch' | 'llamacpp', req: Record<string, unknown>): Promise<Reply | null> => {
      const p = which === 'torch' ? torch : llamacpp;
      if (!p) return null;
      try {
        return await p.request(req);
      } catch (e) {
        const why = `failed — ${(e as Error).message}`;
        console.log(`${p.name}: ${why}`);
        p.close();
        if (which === 'torch') { torch = null; torchSkip = why; } else { llamacpp = null; llamaSkip = why; }
        return null;
      }
    };
    const beginPhase = async (name: string) => {
      resetPeak();
      await Promise.all([onPeer('torch', { op: 'phase', name }), name === 'sample' ? onPeer('llamacpp', { op: 'phase', name }) : null]);
    };
    const endPhase = async (name: string, withLlama: boolean) => {
      phases[name] = {
        node: procMem(),
        llamacpp: withLlama ? ((await onPeer('llamacpp', { op: 'mem' }))?.mem ?? null) : null,
        torch: (await onPeer('torch', { op: 'mem' }))?.mem ?? null,
      };
    };
    const orders: Record<string, string[]> = {};
    /** Per repeat, every side once; the order reverses every other repeat. */
    type Side = [name: string, run: (repeat: number) => Promise<void>];
    const interleave = async (phase: string, sides: Side[]) => {
      orders[phase] = [];
      for (let r = 0; r < REPEATS; r++) {
        const seq = r % 2 === 0 ? sides : [...sides].reverse();
        orders[phase]!.push(seq.map(([n]) => n).join(' '));
        for (const [, run] of seq) await run(r);
      }
    };

    // ---- 1. Sampling ---------------------------------------------------------------------------
    const runs = {
      sample: [] as number[], sampleOccupancy: [] as number[], llamaSample: [] as number[], torchSample: [] as number[],
      full: [] as number[], torchFull: [] as number[], lora: [] as number[], torchLora: [] as number[],
    };
    await beginPhase('sample');
    // The engine (and its KV cache) lives for this phase only.
    const samplingPhase = async () => {
      const engine = new BuiltinEngine(model, idTokenizer(V), { maxBatch: B, seed: 5 });
      const engineSample = async (seed: number) => {
        const rng = new Rng(seed);
        const prompts = Array.from({ length: B }, () => Array.from({ length: P }, () => rng.int(V - 1)));
        const rows0 = engine.stats.rowsDecoded, steps0 = engine.stats.decodeSteps;
        const start = now();
        const outs = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: N, temperature: 1 })));
        const dt = now() - start;
        return { tps: outs.reduce((a, o) => a + o.ids.length, 0) / dt, occupancy: (engine.stats.rowsDecoded - rows0) / Math.max(1, engine.stats.decodeSteps - steps0) };
      };
      await engineSample(1); // warm-up
      // Every side samples the same number of prompts of the same length per repeat (seeded per repeat).
      const sides: Side[] = [['engine', async (r) => { const s = await engineSample(100 + r); runs.sample.push(s.tps); runs.sampleOccupancy.push(s.occupancy); }]];
      if (llamacpp) sides.push(['llama.cpp', async (r) => { const res = await onPeer('llamacpp', { op: 'sample', seed: 100 + r }); if (res) runs.llamaSample.push(res.tokens_per_s as number); }]);
      if (torch) sides.push(['torch', async (r) => { const res = await onPeer('torch', { op: 'sample', seed: 100 + r }); if (res) runs.torchSample.push(res.tokens_per_s as number); }]);
      await interleave('sample', sides);
    };
    await samplingPhase();
    await endPhase('sample', true);
    const kvCacheBytes = 2 * arch.nLayer * B * ctx * arch.nKvHead * arch.headDim * 4;
    console.log(`sampling tokens/s: engine ${runs.sample.map((x) => x.toFixed(0)).join(' ')}; llama.cpp ${runs.llamaSample.map((x) => x.toFixed(0)).join(' ') || '–'}; torch ${runs.torchSample.map((x) => x.toFixed(0)).join(' ') || '–'}`);
    llamacpp?.close(); // not needed any more: its memory goes back before training
    llamacpp = null;

    // ---- 2. Training: full fine-tuning, then LoRA ------------------------------------------------
    const samples = randomTrainSamples(TB, TT, V - 1, 11);
    const optCfg = { lr: LR, weightDecay: WEIGHT_DECAY, gradClip: 1.0, microBatchTokens: TB * TT };
    const trainPhase = async (phase: 'train_full' | 'train_lora', into: number[], torchInto: number[]) => {
      await beginPhase(phase);
      const lora = phase === 'train_lora' ? new LoraAdapter(model, { rank: LORA_RANK, alpha: LORA_ALPHA, seed: 3 }) : null;
      const trainer = new BuiltinTrainer(model, optCfg, lora ? { lora } : {});
      trainer.trainStep(samples, sftLoss); // warm-up
      await interleave(phase, [
        ['engine', async () => {
          const start = now();
          for (let i = 0; i < STEPS; i++) trainer.trainStep(samples, sftLoss);
          into.push((TB * TT * STEPS) / (now() - start));
        }],
        ...(torch ? [['torch', async () => { const r = await onPeer('torch', { op: 'train', steps: STEPS }); if (r) torchInto.push(r.tokens_per_s as number); }] satisfies Side] : []),
      ]);
      await endPhase(phase, false);
      console.log(`${phase} tokens/s: engine ${into.map((x) => x.toFixed(0)).join(' ')}; torch ${torchInto.map((x) => x.toFixed(0)).join(' ') || '–'}`);
      return { adamBytes: (trainer.m.length + trainer.v.length) * 4, loraParams: lora?.numParams ?? 0, loraBytes: lora?.bytes() ?? 0 };
    };
    const full = await trainPhase('train_full', runs.full, runs.torchFull);
    gc();
    const loraInfo = await trainPhase('train_lora', runs.lora, runs.torchLora);
    const activationBytes = model.activationBytes(TB, TT);

    // ---- Report ----------------------------------------------------------------------------------
    torch?.close();
    const torchInfo = torch?.info ?? null;
    torch = null;
    const S = {
      sample: stats(runs.sample), llamaSample: runs.llamaSample.length === REPEATS ? stats(runs.llamaSample) : null,
      torchSample: runs.torchSample.length === REPEATS ? stats(runs.torchSample) : null,
      full: stats(runs.full), torchFull: runs.torchFull.length === REPEATS ? stats(runs.torchFull) : null,
      lora: stats(runs.lora), torchLora: runs.torchLora.length === REPEATS ? stats(runs.torchLora) : null,
    };
    const ratio = (a: Stats | null, b: Stats | null) => (a && b ? round(median(a.runs) / median(b.runs), 3) : null);
    const ratios = {
      sampling_engine_over_llamacpp: ratio(S.sample, S.llamaSample),
      sampling_engine_over_torch: ratio(S.sample, S.torchSample),
      train_full_engine_over_torch: ratio(S.full, S.torchFull),
      train_lora_engine_over_torch: ratio(S.lora, S.torchLora),
    };
    const range = (s: Stats | null) => (s ? `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})` : 'n/a');
    const x = (r: number | null) => (r === null ? 'n/a' : `${r.toFixed(2)}×`);
    console.log(`sampling tokens/s, median (min–max): engine ${range(S.sample)}, llama.cpp ${range(S.llamaSample)}, torch ${range(S.torchSample)} → engine/llama.cpp ${x(ratios.sampling_engine_over_llamacpp)}, engine/torch ${x(ratios.sampling_engine_over_torch)}`);
    console.log(`train full tokens/s: engine ${range(S.full)}, torch ${range(S.torchFull)} → ${x(ratios.train_full_engine_over_torch)}; LoRA: engine ${range(S.lora)}, torch ${range(S.torchLora)} → ${x(ratios.train_lora_engine_over_torch)}`);
    const peak = (m: Mem | null | undefined) => (m ? `${m.peak_rss_mb.toFixed(0)} MB` : 'n/a');
    for (const [name, p] of Object.entries(phases)) if (p.node || p.llamacpp || p.torch) console.log(`peak RSS ${name}: engine process ${peak(p.node)}, llama.cpp ${peak(p.llamacpp)}, torch ${peak(p.torch)}`);

    const load1 = loadavg();
    const out = opts.out ?? (opts.write ? join(RESULTS_DIR, opts.model === 'smollm2-135m' ? 'models-bench.json' : `models-bench-${opts.model}.json`) : null);
    const result = {
      model: opts.model,
      shapes_source: bench.source,
      weights: `random: seed ${WEIGHT_SEED}, matrices N(0, ${INIT_STD}²) (o_proj/down_proj ${INIT_STD}/√(2·${arch.nLayer})), norm gains 1 + N(0, 0.1²), biases N(0, 0.1²); F32 on every side`,
      arch,
      params: model.numParams,
      quick,
      threads,
      compute_path: be.name,
      settings: {
        sample_batch: B, prompt_tokens: P, new_tokens: N, temperature: 1, context_length: ctx,
        train_batch: TB, train_len: TT, train_steps_per_repeat: STEPS, lr: LR, weight_decay: WEIGHT_DECAY, grad_clip: 1.0,
        lora: { rank: LORA_RANK, alpha: LORA_ALPHA, modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
        repeats: REPEATS,
      },
      check,
      sample_tokens_per_s: { engine: S.sample, llamacpp: S.llamaSample, torch: S.torchSample, engine_occupancy_rows: round(median(runs.sampleOccupancy)) },
      train_full_tokens_per_s: { engine: S.full, torch: S.torchFull },
      train_lora_tokens_per_s: { engine: S.lora, torch: S.torchLora },
      ratios,
      interleaving: 'per repeat every side once, the order reversed every other repeat',
      order: orders,
      memory: {
        method: peakReset
          ? 'peak RSS per phase: VmHWM of /proc/self/status, reset at the start of each phase by writing 5 to /proc/self/clear_refs (after a GC); each side its own process'
          : 'VmHWM of /proc/self/status since process start (clear_refs not writable here): later phases include earlier peaks',
        phases_mb: phases,
        engine_bytes_mb: {
          params: mb(model.numParams * 4), grads: mb(model.numParams * 4), adam_full: mb(full.adamBytes),
          lora_adapter: mb(loraInfo.loraBytes), lora_params: loraInfo.loraParams, adam_lora: mb(loraInfo.adamBytes),
          activations_train: mb(activationBytes), kv_cache: mb(kvCacheBytes),
        },
      },
      versions: versionsOf(torchInfo),
      torch: torchInfo,
      llamacpp: llamaInfo,
      skipped: { torch: torchSkip, llamacpp: llamaSkip },
      agentrl: { env: envOf(['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'AGENTRL_BACKEND', 'AGENTRL_GEMM', 'AGENTRL_THREADS']) },
      machine: { cpu: cpus()[0]?.model ?? null, cpus: cpus().length, load_average_start: load0.map((v) => round(v, 2)), load_average_end: load1.map((v) => round(v, 2)) },
      date: new Date().toISOString(),
      written_to: out,
    };
    if (out) writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    console.log(JSON.stringify(result));
  } finally {
    (torch as LinePeer | null)?.close();
    (llamacpp as LinePeer | null)?.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (opts.serveLlamacpp !== undefined) await serveLlamaCpp(JSON.parse(opts.serveLlamacpp) as LlamaChildConfig);
else await main();
