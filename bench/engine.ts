/**
 * Engine benchmark: compute path, GEMM GFLOP/s, the reference model's train-step tokens/s and
 * KV-cache batched sampling tokens/s, and — when Debian's /usr/bin/python3 has torch — the same
 * model in PyTorch CPU measured in the same run, with ratios. Never installs anything.
 *
 *   npm run bench:engine [-- --quick] [-- --out docs/results/engine-bench.json]
 *
 * Last line: one JSON object.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import type { Backend } from '../src/engine/backend.ts';
import { selectBackend } from '../src/engine/backends.ts';
import { JsBackend } from '../src/engine/js-backend.ts';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import type { Tokenizer } from '../src/engine/types.ts';
import type { Sample } from '../src/core/types.ts';
import { Rng } from '../src/core/rng.ts';

const REF: ModelConfigInput = { vocabSize: 1024, contextLength: 128, nLayer: 4, nHead: 4, nEmbd: 256, norm: 'layernorm', positions: 'learned' };
const TRAIN_BATCH = 32;
const SAMPLE_BATCH = 64, PROMPT = 16, NEW_TOKENS = 112; // 16 + 112 = the 128-token context

const program = new Command()
  .option('--quick', 'fewer repetitions (< 2 minutes)')
  .option('--no-torch', 'skip the PyTorch reference')
  .option('--out <file>', 'also write the JSON result to this file')
  .parse();
const opts = program.opts<{ quick?: boolean; torch: boolean; out?: string }>();
const quick = !!opts.quick;

function now(): number {
  return performance.now() / 1000;
}

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

function refSamples(n: number, T: number, V: number, seed: number): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const ids = Array.from({ length: T + 1 }, () => rng.int(V));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i === 0 ? 0 : 1)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

/** Train-step tokens/s of the reference model (cross-entropy over all positions, AdamW, clip 1.0). */
function trainTokensPerS(be: Backend, batch: number, steps: number): { tps: number; stepS: number; profile: Record<string, number> } {
  const model = new Transformer(REF, be, 0);
  const trainer = new BuiltinTrainer(model, { lr: 1e-4, weightDecay: 0.01, gradClip: 1.0, microBatchTokens: 1 << 20 });
  const samples = refSamples(batch, REF.contextLength, REF.vocabSize, 2);
  trainer.trainStep(samples, sftLoss); // warm-up (allocations)
  const t0 = now();
  for (let i = 0; i < steps; i++) trainer.trainStep(samples, sftLoss);
  const stepS = (now() - t0) / steps;
  return { tps: (batch * REF.contextLength) / stepS, stepS, profile: {} };
}

const benchTokenizer = (V: number): Tokenizer => ({
  vocabSize: V, eosId: -1, encode: () => [], decode: (ids) => ids.join(' '), tokenString: (id) => String(id), tokenId: () => undefined,
});

/** Batched sampling tokens/s with the KV cache: 64 concurrent requests, 16-token prompts, 112 new tokens. */
async function sampleTokensPerS(be: Backend, batch: number): Promise<{ tps: number; occupancy: number }> {
  const model = new Transformer(REF, be, 0);
  const rng = new Rng(3);
  const run = async () => {
    const engine = new BuiltinEngine(model, benchTokenizer(REF.vocabSize), { maxBatch: batch, seed: 5 });
    const prompts = Array.from({ length: batch }, () => Array.from({ length: PROMPT }, () => rng.int(REF.vocabSize)));
    const t0 = now();
    const outs = await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: NEW_TOKENS, temperature: 1 })));
    const dt = now() - t0;
    const toks = outs.reduce((a, o) => a + o.ids.length, 0);
    return { tps: toks / dt, occupancy: engine.stats.rowsDecoded / Math.max(1, engine.stats.decodeSteps) };
  };
  await run(); // warm-up
  return run();
}

function torchReference(steps: number): { train: number; sample: number; version: string } | { error: string } {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return { error: 'Debian /usr/bin/python3 cannot import torch (apt-get install python3-torch libopenblas0-pthread to enable the reference)' };
  const r = spawnSync('/usr/bin/python3', ['bench/torch_reference.py', '--threads', '2', '--train-steps', String(steps),
    '--vocab', String(REF.vocabSize), '--ctx', String(REF.contextLength), '--width', String(REF.nEmbd), '--layers', String(REF.nLayer), '--heads', String(REF.nHead),
    '--batch', String(TRAIN_BATCH), '--sample-batch', String(SAMPLE_BATCH), '--prompt', String(PROMPT), '--new-tokens', String(NEW_TOKENS)], { encoding: 'utf8' });
  if (r.status !== 0) return { error: `torch reference failed: ${r.stderr.slice(-500)}` };
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  return { train: j.train_tokens_per_s, sample: j.sample_tokens_per_s, version: j.torch_version };
}

async function main(): Promise<void> {
  const be = selectBackend();
  console.log(`compute path: ${be.name} (${be.threads} threads)`);
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
  const train = trainTokensPerS(be, TRAIN_BATCH, quick ? 3 : 10);
  console.log(`train step (batch ${TRAIN_BATCH}×${REF.contextLength}): ${train.tps.toFixed(0)} tokens/s (${(train.stepS * 1000).toFixed(0)} ms/step)`);
  const sample = await sampleTokensPerS(be, SAMPLE_BATCH);
  console.log(`sampling (batch ${SAMPLE_BATCH}, ${PROMPT}-token prompts, ${NEW_TOKENS} new tokens, KV cache): ${sample.tps.toFixed(0)} tokens/s (mean occupancy ${sample.occupancy.toFixed(1)} rows)`);

  // The pure-JS fallback, on a smaller batch so the bench stays short.
  let fallbackTrain: number | null = null, fallbackMatmul: number | null = null;
  if (be.name !== 'js') {
    const js = new JsBackend();
    fallbackMatmul = gemmGflops(js, 512, 512, 512, false, false, 0.5);
    fallbackTrain = trainTokensPerS(js, 2, 1).tps;
    console.log(`fallback (js): sgemm 512³ ${fallbackMatmul.toFixed(2)} GFLOP/s, train ${fallbackTrain.toFixed(0)} tokens/s (batch 2×128)`);
  }

  let torch: ReturnType<typeof torchReference> | null = null;
  if (opts.torch) {
    torch = torchReference(quick ? 3 : 10);
    if ('error' in torch) console.log(`torch reference: skipped — ${torch.error}`);
    else console.log(`torch ${torch.version} (2 threads): train ${torch.train.toFixed(0)} tokens/s, sampling ${torch.sample.toFixed(0)} tokens/s → vs_torch train ${(train.tps / torch.train).toFixed(2)}×, sampling ${(sample.tps / torch.sample).toFixed(2)}×`);
  }
  const t = torch && !('error' in torch) ? torch : null;
  const result = {
    compute_path: be.name,
    threads: be.threads,
    matmul_gflops: round(matmul),
    gemm_shapes_gflops: Object.fromEntries(Object.entries(shapeGflops).map(([k, v]) => [k, round(v)])),
    train_tokens_per_s: round(train.tps),
    sample_tokens_per_s: round(sample.tps),
    torch_train_tokens_per_s: t ? round(t.train) : null,
    torch_sample_tokens_per_s: t ? round(t.sample) : null,
    vs_torch: t ? round(train.tps / t.train, 3) : null,
    vs_torch_sample: t ? round(sample.tps / t.sample, 3) : null,
    fallback_matmul_gflops: fallbackMatmul === null ? null : round(fallbackMatmul, 2),
    fallback_train_tokens_per_s: fallbackTrain === null ? null : round(fallbackTrain),
    quick,
  };
  if (opts.out) writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result));
}

function round(x: number, d = 1): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

await main();
