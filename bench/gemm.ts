/**
 * GEMM benchmark of the native addon: GFLOP/s of every GEMM path this machine offers (openblas,
 * avx512, avx2, scalar) at 1024³ and at the reference model's shapes (width 256, MLP 1024, vocab
 * 1024, 32×128 = 4096 tokens; weights stored [out, in] so forward products are NT, input gradients
 * NN and weight gradients TN with beta = 1), plus the 64-row batched-decoding product.
 *
 *   node --import tsx bench/gemm.ts [--threads 2] [--seconds 0.25] [--paths avx512,openblas]
 *
 * Runs in well under a minute. Last line: one JSON object { path: { shape: GFLOP/s } }.
 */
import { Command } from 'commander';
import { loadNativeBackend, nativeGemmPaths, nativeInfo, nativeLoadError } from '../src/engine/native.ts';
import type { Backend } from '../src/engine/backend.ts';

const program = new Command()
  .option('--threads <n>', 'threads per GEMM', '2')
  .option('--seconds <s>', 'measuring time per shape and path', '0.25')
  .option('--paths <list>', 'comma-separated GEMM paths (default: all available)')
  .parse();
const opts = program.opts<{ threads: string; seconds: string; paths?: string }>();

interface Shape { name: string; M: number; N: number; K: number; tA: boolean; tB: boolean; beta: number }

const SHAPES: Shape[] = [
  { name: '1024³ NN', M: 1024, N: 1024, K: 1024, tA: false, tB: false, beta: 0 },
  { name: 'qkv fwd 4096×768×256 NN', M: 4096, N: 768, K: 256, tA: false, tB: false, beta: 0 },
  { name: 'qkv fwd 4096×768×256 NT', M: 4096, N: 768, K: 256, tA: false, tB: true, beta: 0 },
  { name: 'fc fwd 4096×1024×256 NT', M: 4096, N: 1024, K: 256, tA: false, tB: true, beta: 0 },
  { name: 'proj fwd 4096×256×1024 NT', M: 4096, N: 256, K: 1024, tA: false, tB: true, beta: 0 },
  { name: 'dX 4096×256×1024 NN', M: 4096, N: 256, K: 1024, tA: false, tB: false, beta: 0 },
  { name: 'dX 4096×1024×256 NN', M: 4096, N: 1024, K: 256, tA: false, tB: false, beta: 0 },
  { name: 'dW 768×256×4096 TN β=1', M: 768, N: 256, K: 4096, tA: true, tB: false, beta: 1 },
  { name: 'dW 1024×256×4096 TN β=1', M: 1024, N: 256, K: 4096, tA: true, tB: false, beta: 1 },
  { name: 'dW 256×1024×4096 TN β=1', M: 256, N: 1024, K: 4096, tA: true, tB: false, beta: 1 },
  { name: 'decode 64×768×256 NT', M: 64, N: 768, K: 256, tA: false, tB: true, beta: 0 },
];

function gflops(be: Backend, s: Shape, seconds: number): number {
  const A = Float32Array.from({ length: s.M * s.K }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const B = Float32Array.from({ length: s.K * s.N }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const C = new Float32Array(s.M * s.N);
  const lda = s.tA ? s.M : s.K, ldb = s.tB ? s.K : s.N;
  const run = () => be.sgemm(s.tA, s.tB, s.M, s.N, s.K, 1, A, lda, B, ldb, s.beta, C, s.N);
  run(); // warm-up: packing buffers, thread-pool start
  let reps = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000 || reps < 2) {
    run();
    reps++;
    elapsed = performance.now() - t0;
  }
  return (2 * s.M * s.N * s.K * reps) / (elapsed / 1000) / 1e9;
}

function main(): void {
  const available = nativeGemmPaths();
  if (available.length === 0) {
    console.error(`native addon not available: ${nativeLoadError()}`);
    process.exit(1);
  }
  const info = nativeInfo()!;
  const paths = opts.paths ? opts.paths.split(',').filter((p) => available.includes(p as never)) : available;
  const threads = Number(opts.threads), seconds = Number(opts.seconds);
  console.log(`GEMM paths: ${available.join(', ')} (default ${info.defaultPath}); ${threads} threads; CPUs ${info.cpus}`);
  if (process.env.OPENBLAS_CORETYPE) console.log(`note: OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} is set (it pins OpenBLAS's kernel choice)`);
  const results: Record<string, Record<string, number>> = {};
  const header = ['shape'.padEnd(28), ...paths.map((p) => p.padStart(10))].join('');
  console.log(header);
  const backends = paths.map((p) => loadNativeBackend({ gemm: p, threads })!);
  for (const p of paths) results[p] = {};
  for (const s of SHAPES) {
    const cells = backends.map((be, i) => {
      const g = gflops(be, s, seconds);
      results[paths[i]][s.name] = Math.round(g * 10) / 10;
      return g.toFixed(1).padStart(10);
    });
    console.log([s.name.padEnd(28), ...cells].join(''));
  }
  console.log('(GFLOP/s)');
  console.log(JSON.stringify(results));
}

main();
