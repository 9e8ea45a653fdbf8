/**
 * Engine benchmark: compute path, GEMM GFLOP/s, the reference model's train-step tokens/s and
 * KV-cache batched sampling tokens/s, and — when Debian's /usr/bin/python3 has torch — the same
 * model in PyTorch CPU (bench/torch_reference.py, kept warm in a child process) measured in the
 * same run. Never installs anything.
 *
 *   npm run bench:engine [-- --quick] [-- --no-torch] [-- --repeats N] [-- --train-steps N]
 *                        [-- --write | --out FILE] [-- --openblas-coretype detect|inherit|NAME]
 *                        [-- --torch-cpu-capability best|auto|avx2|avx512] [-- --contend N]
 *
 * Each measurement (train step, sampling) is repeated `--repeats` times (default 7, --quick 3),
 * agentrl and PyTorch interleaved, the order alternating per repeat (A B, B A, A B, …) so slow
 * drift of a shared machine falls on both sides; it reports medians with min/max and every run,
 * and the ratios of the medians taken in this run. Both sides get the same threads (2) and the
 * same OpenBLAS kernels (by default OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset, so OpenBLAS detects
 * this CPU). PyTorch gets its best setup: threads pinned (OMP/OPENBLAS/MKL_NUM_THREADS,
 * set_num_threads), OMP_WAIT_POLICY=PASSIVE, ATen ISA pinned (avx512 on an AVX-512 CPU), sampling
 * under inference_mode with a preallocated KV cache; its version, BLAS library and kernels, ISA
 * and thread settings are recorded in the JSON, as are agentrl's compute path and environment.
 *
 * `--contend N` starts N busy background threads of its own (worker threads spinning on arithmetic)
 * before the first measurement and stops them at the end, so every figure — agentrl's and PyTorch's
 * alike — is taken while N cores' worth of another job compete for the machine; the JSON then says
 * `contended: N`. Compare with a quiet run (`contended: 0`, the default).
 *
 * Writes nothing unless asked: `--write` puts the JSON into docs/results/engine-bench.json,
 * `--out FILE` into FILE (`--no-write` is accepted and changes nothing).
 *
 * Last line: one JSON object.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { LinePeer } from './line-peer.ts';
import { envOf, idTokenizer, median, now, positiveInt, randomTrainSamples, round, stats, type Stats } from './common.ts';
import type { Backend } from '../src/engine/backend.ts';
import { selectBackend } from '../src/engine/backends.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { nativeInfo } from '../src/engine/native.ts';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { Rng } from '../src/core/rng.ts';

const REF: ModelConfigInput = { vocabSize: 1024, contextLength: 128, nLayer: 4, nHead: 4, nEmbd: 256, norm: 'layernorm', positions: 'learned' };
const TRAIN_BATCH = 32;
const SAMPLE_BATCH = 64, PROMPT = 16, NEW_TOKENS = 112; // 16 + 112 = the 128-token context
const THREADS = 2;
const RESULTS_FILE = fileURLToPath(new URL('../docs/results/engine-bench.json', import.meta.url));
const TORCH_SCRIPT = fileURLToPath(new URL('./torch_reference.py', import.meta.url));

const program = new Command()
  .option('--quick', 'fewer, shorter repeats (CI; well under a minute without torch)')
  .option('--no-torch', 'skip the PyTorch reference')
  .option('--repeats <n>', 'interleaved repeats of each measurement (default 7, --quick 3)', positiveInt('--repeats'))
  .option('--train-steps <n>', 'train steps per repeat (default 5, --quick 2)', positiveInt('--train-steps'))
  .option('--openblas-coretype <v>', "OpenBLAS kernels for both sides: 'detect' (unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: this CPU's own), 'inherit' (the environment's), or a core name", 'detect')
  .option('--torch-cpu-capability <v>', "PyTorch's ATEN_CPU_CAPABILITY: 'best' (avx512 on an AVX-512 CPU, else avx2), avx2, avx512, default, or 'auto' (torch's choice)", 'best')
  .option('--contend <n>', 'run N busy background threads during every measurement (CPU contention)', (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('--contend must be a non-negative integer');
    return n;
  }, 0)
  .option('--write', 'write the JSON result to docs/results/engine-bench.json')
  .option('--no-write', 'write nothing (the default)')
  .option('--out <file>', 'write the JSON result to this file')
  .parse();
const opts = program.opts<{ quick?: boolean; torch: boolean; repeats?: number; trainSteps?: number; openblasCoretype: string; torchCpuCapability: string; contend: number; write?: boolean; out?: string }>();
const quick = !!opts.quick;
const REPEATS = opts.repeats ?? (quick ? 3 : 7);
const TRAIN_STEPS = opts.trainSteps ?? (quick ? 2 : 5);

// OpenBLAS reads OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE when it is loaded (by the addon, below, and by
// torch in its own process, which applies the same option); both sides get the same kernels.
if (opts.openblasCoretype === 'detect') { delete process.env.OPENBLAS_CORETYPE; delete process.env.OPENBLAS_L2_SIZE; }
else if (opts.openblasCoretype !== 'inherit') process.env.OPENBLAS_CORETYPE = opts.openblasCoretype;

function gemmGflops(be: Backend, M: number, N: number, K: number, tA: boolean, tB: boolean, seconds: number): number {
  const rng = new Rng(1);
  const A = Float32Array.from({ length: M * K }, () => rng.normal());
  const B = Float32Array.from({ length: K * N }, () => rng.normal());
  const C = new Float32Array(M * N);
  const run = () => be.sgemm(tA, tB, M, N, K, 1, A, tA ? M : K, B, tB ? K : N, 0, C, N);
  run();
  let reps = 0;
  const t0 = now();
  while (now() - t0 < seconds) { run(); reps++; }
  return (2 * M * N * K * reps) / (now() - t0) / 1e9;
}

/**
 * The reference model's train step (cross-entropy over all positions, AdamW, clip 1.0): one model
 * and trainer, warmed up once; each call times `steps` steps and returns tokens/s.
 */
function trainBench(be: Backend, batch: number): (steps: number) => { tps: number; stepS: number } {
  const model = new Transformer(REF, be, 0);
  const trainer = new BuiltinTrainer(model, { lr: 1e-4, weightDecay: 0.01, gradClip: 1.0, microBatchTokens: 1 << 20 });
  const samples = randomTrainSamples(batch, REF.contextLength, REF.vocabSize, 2);
  trainer.trainStep(samples, sftLoss); // warm-up (allocations)
  return (steps) => {
    const t0 = now();
    for (let i = 0; i < steps; i++) trainer.trainStep(samples, sftLoss);
    const stepS = (now() - t0) / steps;
    return { tps: (batch * REF.contextLength) / stepS, stepS };
  };
}

/**
 * Batched sampling with the KV cache: 64 concurrent requests, 16-token prompts, 112 new tokens.
 * One engine (its KV cache allocated once), warmed up once; each call times one batch.
 */
async function sampleBench(be: Backend, batch: number): Promise<() => Promise<{ tps: number; occupancy: number }>> {
  const model = new Transformer(REF, be, 0);
  const engine = new BuiltinEngine(model, idTokenizer(REF.vocabSize), { maxBatch: batch, seed: 5 });
  const rng = new Rng(3);
  const run = async () => {
    const prompts = Array.from({ length: batch }, () => Array.from({ length: PROMPT }, () => rng.int(REF.vocabSize)));
    const rows0 = engine.stats.rowsDecoded, steps0 = engine.stats.decodeSteps;
    const t0 = now();
    const outs = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: NEW_TOKENS, temperature: 1 })));
    const dt = now() - t0;
    const toks = outs.reduce((a, o) => a + o.ids.length, 0);
    return { tps: toks / dt, occupancy: (engine.stats.rowsDecoded - rows0) / Math.max(1, engine.stats.decodeSteps - steps0) };
  };
  await run(); // warm-up
  return run;
}

/** bench/torch_reference.py --serve: one warm PyTorch process answering train/sample requests. */
function startTorchPeer(args: string[]): Promise<LinePeer | { error: string }> {
  return LinePeer.start('torch reference', '/usr/bin/python3', [TORCH_SCRIPT, '--serve', ...args], (stderr) => {
    if (/No module named 'torch'/.test(stderr) || /ENOENT/.test(stderr)) {
      return 'Debian /usr/bin/python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread to enable the reference)';
    }
    return `torch reference did not start: ${stderr.slice(-500)}`;
  }, { readyMs: 300_000, requestMs: 600_000 });
}

function cpuFlags(): Record<string, boolean> {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    if (!line) return {};
    const flags = new Set(line.split(':')[1]!.trim().split(/\s+/));
    return Object.fromEntries(['avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_bf16'].map((f) => [f, flags.has(f)]));
  } catch {
    return {};
  }
}

/** Shared libraries of this process whose names say BLAS or OpenMP (which OpenBLAS the addon loaded). */
function loadedLibraries(): string[] {
  try {
    const libs = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => l.trim().split(/\s+/)[5] ?? '').filter((p) => /blas|gomp/.test(p.split('/').pop()!));
    return [...new Set(libs)].sort();
  } catch {
    return [];
  }
}

/**
 * N threads that keep N cores busy until stopped: the "other job" of a contended measurement. They
 * spin on floating-point arithmetic (no memory traffic to speak of), like a compute-bound neighbour.
 */
async function startContention(n: number): Promise<() => Promise<void>> {
  if (n === 0) return async () => {};
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const stop = new Int32Array(workerData);
    parentPort.postMessage('busy');
    let x = 0;
    while (Atomics.load(stop, 0) === 0) { for (let i = 1; i < 100000; i++) x += Math.sqrt(i) * 1e-9; }
    parentPort.postMessage(x);`;
  const workers = Array.from({ length: n }, () => new Worker(code, { eval: true, workerData: stop.buffer }));
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
  return async () => {
    Atomics.store(stop, 0, 1);
    await Promise.all(workers.map((w) => w.terminate()));
  };
}


async function main(): Promise<void> {
  const load0 = loadavg();
  const stopContention = await startContention(opts.contend);
  if (opts.contend > 0) console.log(`contention: ${opts.contend} busy background thread(s) running during every measurement`);
  const be = selectBackend();
  const native = be.name.startsWith('native') ? nativeInfo() : null;
  console.log(`compute path: ${be.name} (${be.threads} threads); OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}`);
  const secs = quick ? 0.5 : 1.5;
  const matmul = gemmGflops(be, 1024, 1024, 1024, false, false, secs);
  console.log(`sgemm 1024³ NN: ${matmul.toFixed(1)} GFLOP/s`);
  const shapes: [string, number, number, number, boolean, boolean][] = [
    ['qkv fwd  4096×768×256 NT', 4096, 768, 256, false, true],
    ['mlp dW   1024×256×4096 TN', 1024, 256, 4096, true, false],
    ['head dX  4096×256×1024 NN', 4096, 256, 1024, false, false],
    ['decode   64×768×256 NT', 64, 768, 256, false, true],
  ];
  const shapeGflops: Record<string, number> = {};
  for (const [name, M, N, K, a, b] of shapes) {
    shapeGflops[name] = gemmGflops(be, M, N, K, a, b, secs / 2);
    console.log(`sgemm ${name}: ${shapeGflops[name]!.toFixed(1)} GFLOP/s`);
  }

  // The PyTorch peer: started (and warmed up) before the measurements, then interleaved with ours.
  let peer: LinePeer | null = null, torchError: string | null = null;
  if (opts.torch) {
    const started = await startTorchPeer(['--threads', String(THREADS), '--openblas-coretype', opts.openblasCoretype, '--cpu-capability', opts.torchCpuCapability,
      '--vocab', String(REF.vocabSize), '--ctx', String(REF.contextLength), '--width', String(REF.nEmbd), '--layers', String(REF.nLayer), '--heads', String(REF.nHead),
      '--batch', String(TRAIN_BATCH), '--train-steps', String(TRAIN_STEPS), '--sample-batch', String(SAMPLE_BATCH), '--prompt', String(PROMPT), '--new-tokens', String(NEW_TOKENS)]);
    if ('error' in started) { torchError = started.error; console.log(`torch reference: skipped — ${torchError}`); }
    else {
      peer = started;
      const i = peer.info as { torch_version: string; torch_num_threads: number; cpu_capability: string | null; blas: { libraries: string[]; openblas_corename?: string }; env: Record<string, string | null> };
      const blas = i.blas.openblas_corename ? `OpenBLAS (${i.blas.openblas_corename} kernels)` : i.blas.libraries.join(' ');
      console.log(`torch ${i.torch_version}: ${i.torch_num_threads} threads, ATen ISA ${i.cpu_capability}, BLAS ${blas}, OMP_WAIT_POLICY=${i.env.OMP_WAIT_POLICY}, OPENBLAS_CORETYPE=${i.env.OPENBLAS_CORETYPE ?? '(unset)'}`);
    }
  }

  const train = trainBench(be, TRAIN_BATCH);
  const sample = await sampleBench(be, SAMPLE_BATCH);
  const runs = { train: [] as number[], trainStepS: [] as number[], sample: [] as number[], occupancy: [] as number[], torchTrain: [] as number[], torchSample: [] as number[] };
  const torchInfo = peer?.info ?? null;
  /** One PyTorch request; a failure drops the peer (and its partial runs) and is reported. */
  const onTorch = async (req: Record<string, unknown>, key: string, into: number[]): Promise<void> => {
    if (!peer) return;
    try {
      into.push((await peer.request(req))[key] as number);
    } catch (err) {
      torchError = err instanceof Error ? err.message : String(err);
      console.log(`torch reference: failed — ${torchError}`);
      peer.close();
      peer = null;
    }
  };
  const order: string[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const oursFirst = r % 2 === 0;
    order.push(peer ? (oursFirst ? 'AB' : 'BA') : 'A');
    const ourTrain = () => { const t = train(TRAIN_STEPS); runs.train.push(t.tps); runs.trainStepS.push(t.stepS); };
    const torchTrain = () => onTorch({ op: 'train', steps: TRAIN_STEPS }, 'train_tokens_per_s', runs.torchTrain);
    const ourSample = async () => { const s = await sample(); runs.sample.push(s.tps); runs.occupancy.push(s.occupancy); };
    const torchSample = () => onTorch({ op: 'sample' }, 'sample_tokens_per_s', runs.torchSample);
    if (oursFirst) { ourTrain(); await torchTrain(); await ourSample(); await torchSample(); }
    else { await torchTrain(); ourTrain(); await torchSample(); await ourSample(); }
    const tt = peer ? `, torch ${runs.torchTrain.at(-1)!.toFixed(0)}` : '', ts = peer ? `, torch ${runs.torchSample.at(-1)!.toFixed(0)}` : '';
    console.log(`repeat ${r + 1}/${REPEATS}: train ${runs.train.at(-1)!.toFixed(0)}${tt} tokens/s; sampling ${runs.sample.at(-1)!.toFixed(0)}${ts} tokens/s`);
  }
  (peer as LinePeer | null)?.close();

  const trainS = stats(runs.train)!, sampleS = stats(runs.sample)!;
  const torchTrainS = runs.torchTrain.length === REPEATS ? stats(runs.torchTrain) : null;
  const torchSampleS = runs.torchSample.length === REPEATS ? stats(runs.torchSample) : null;
  const ratio = (a: number[], b: number[]) => round(median(a) / median(b), 3);
  const vsTorch = torchTrainS ? ratio(runs.train, runs.torchTrain) : null;
  const vsTorchSample = torchSampleS ? ratio(runs.sample, runs.torchSample) : null;
  const range = (s: Stats) => `median ${s.median.toFixed(0)} (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)})`;
  console.log(`train step (batch ${TRAIN_BATCH}×${REF.contextLength}), ${REPEATS} repeats × ${TRAIN_STEPS} steps: ${range(trainS)} tokens/s (${(median(runs.trainStepS) * 1000).toFixed(0)} ms/step)`);
  console.log(`sampling (batch ${SAMPLE_BATCH}, ${PROMPT}-token prompts, ${NEW_TOKENS} new tokens, KV cache), ${REPEATS} repeats: ${range(sampleS)} tokens/s (mean occupancy ${median(runs.occupancy).toFixed(1)} rows)`);
  if (torchTrainS && torchSampleS) {
    console.log(`torch (same run, interleaved): train ${range(torchTrainS)}, sampling ${range(torchSampleS)} tokens/s → ratio of medians: train ${vsTorch!.toFixed(2)}×, sampling ${vsTorchSample!.toFixed(2)}×`);
  }

  // The pure-JS fallback, on a smaller batch so the bench stays short (one measurement).
  let fallbackTrain: number | null = null, fallbackMatmul: number | null = null;
  if (be.name !== 'js') {
    const js = new JsBackend();
    fallbackMatmul = gemmGflops(js, 512, 512, 512, false, false, 0.5);
    fallbackTrain = trainBench(js, 2)(1).tps;
    console.log(`fallback (js): sgemm 512³ ${fallbackMatmul.toFixed(2)} GFLOP/s, train ${fallbackTrain.toFixed(0)} tokens/s (batch 2×128)`);
  }

  await stopContention();

  const out = opts.out ?? (opts.write ? RESULTS_FILE : null);
  const result = {
    compute_path: be.name,
    threads: be.threads,
    contended: opts.contend,
    matmul_gflops: round(matmul),
    gemm_shapes_gflops: Object.fromEntries(Object.entries(shapeGflops).map(([k, v]) => [k, round(v)])),
    train_tokens_per_s: trainS.median,
    sample_tokens_per_s: sampleS.median,
    torch_train_tokens_per_s: torchTrainS?.median ?? null,
    torch_sample_tokens_per_s: torchSampleS?.median ?? null,
    vs_torch: vsTorch,
    vs_torch_sample: vsTorchSample,
    fallback_matmul_gflops: fallbackMatmul === null ? null : round(fallbackMatmul, 2),
    fallback_train_tokens_per_s: fallbackTrain === null ? null : round(fallbackTrain),
    quick,
    // Medians above; every run, min and max here. Ratios are ratios of medians from this run.
    repeats: REPEATS,
    train_steps_per_repeat: TRAIN_STEPS,
    interleaving: torchTrainS ? 'A = agentrl, B = PyTorch; per repeat: train A/B, then sampling A/B; order alternates per repeat' : 'agentrl only',
    order,
    train_ms_per_step: round(median(runs.trainStepS) * 1000),
    sample_occupancy_rows: round(median(runs.occupancy)),
    runs: { train_tokens_per_s: trainS, sample_tokens_per_s: sampleS, torch_train_tokens_per_s: torchTrainS, torch_sample_tokens_per_s: torchSampleS },
    agentrl: {
      node: process.version,
      gemm_path: be.name.startsWith('native/') ? be.name.slice('native/'.length) : null,
      native_info: native,
      libraries: loadedLibraries(),
      env: envOf(['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE', 'OMP_WAIT_POLICY', 'AGENTRL_SPIN_US', 'AGENTRL_BACKEND', 'AGENTRL_GEMM', 'AGENTRL_THREADS']),
    },
    torch: torchInfo,
    torch_error: opts.torch ? torchError : 'skipped (--no-torch)',
    machine: { cpu: cpus()[0]?.model ?? null, cpus: cpus().length, cpu_flags: cpuFlags(), load_average_start: load0.map((x) => round(x, 2)), load_average_end: loadavg().map((x) => round(x, 2)) },
    date: new Date().toISOString(),
    written_to: out,
  };
  if (out) writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result));
}

await main();
