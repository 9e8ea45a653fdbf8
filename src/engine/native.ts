/**
 * The native compute backend: a thin wrapper over the C++ addon built from native/ by
 * scripts/build-native.mjs (build/Release/agentrl_native.node). Typed-array views go to C++ as they
 * are (zero-copy; subarray byteOffsets are honoured); the addon checks every length and throws a
 * TypeError/RangeError naming the argument instead of touching memory outside a buffer.
 *
 * GEMM path: `openblas` (dlopen'd at run time when the system has it), `avx512`, `avx2` or `scalar`
 * (the built-in packed, cache-blocked kernels, chosen by CPU features). Default: OpenBLAS if present,
 * else the widest SIMD kernel; `AGENTRL_GEMM` or `{ gemm }` forces one. Threads: every CPU this
 * process may use (its affinity mask, capped by a cgroup CPU quota) by default; `AGENTRL_THREADS`
 * or `{ threads }` overrides (capped at that count). Kernels run on a helping thread pool
 * (native/thread_pool.h) whose caller never waits for a thread that has not started, so they keep
 * their speed in proportion to the cores they actually get when another process shares them.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Backend } from './backend.ts';

export type GemmPath = 'openblas' | 'avx512' | 'avx2' | 'scalar';
export const GEMM_PATHS: readonly GemmPath[] = ['openblas', 'avx512', 'avx2', 'scalar'];

export interface NativeBackendOptions {
  /** GEMM path; default `AGENTRL_GEMM`, else OpenBLAS when loadable, else the best SIMD kernel. */
  gemm?: string;
  /** Threads for every kernel; default `AGENTRL_THREADS`, else the CPUs this process may use. */
  threads?: number;
}

/** What the addon reports about this machine. */
export interface NativeInfo {
  paths: GemmPath[];
  defaultPath: GemmPath;
  /** Why OpenBLAS could not be loaded ('' when it was). */
  openblasError: string;
  avx512: boolean;
  avx2: boolean;
  cpus: number;
}

/** The addon's functions: the Backend kernels with the thread count (and GEMM path) in front. */
interface NativeAddon {
  info(): NativeInfo;
  sgemm(path: GemmPath, threads: number, transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number): void;
  embedForward(nt: number, out: Float32Array, tokens: Int32Array, wte: Float32Array, wpe: Float32Array | null, B: number, T: number, C: number): void;
  embedBackward(nt: number, dwte: Float32Array, dwpe: Float32Array | null, dout: Float32Array, tokens: Int32Array, B: number, T: number, C: number): void;
  layernormForward(nt: number, out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number, eps: number): void;
  layernormBackward(nt: number, dinp: Float32Array, dweight: Float32Array, dbias: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number): void;
  rmsnormForward(nt: number, out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, N: number, C: number, eps: number): void;
  rmsnormBackward(nt: number, dinp: Float32Array, dweight: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, C: number): void;
  geluForward(nt: number, out: Float32Array, inp: Float32Array, n: number): void;
  geluBackward(nt: number, dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number): void;
  rope(nt: number, qkv: Float32Array, pos0: Int32Array, B: number, T: number, C: number, NH: number, base: number, inverse: boolean): void;
  attentionForward(nt: number, out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number): void;
  attentionBackward(nt: number, dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, C: number, NH: number): void;
  attentionDecode(nt: number, out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, C: number, NH: number, maxT: number): void;
  gqaAttentionForward(nt: number, out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void;
  gqaAttentionBackward(nt: number, dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void;
  gqaAttentionDecode(nt: number, out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, NH: number, NKV: number, hd: number, maxT: number): void;
  ropeFreqs(nt: number, x: Float32Array, rowStride: number, pos0: Int32Array, B: number, T: number, nHeads: number, hd: number, invFreq: Float64Array, inverse: boolean): void;
  swigluForward(nt: number, out: Float32Array, inp: Float32Array, N: number, I: number): void;
  swigluBackward(nt: number, dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number, I: number): void;
  headRmsnormForward(nt: number, x: Float32Array, saved: Float32Array, rstd: Float32Array, weight: Float32Array, N: number, rowStride: number, nHeads: number, hd: number, eps: number): void;
  headRmsnormBackward(nt: number, dx: Float32Array, dweight: Float32Array, saved: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, rowStride: number, nHeads: number, hd: number): void;
  logSoftmaxForward(nt: number, logprobs: Float32Array, entropy: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, N: number, V: number, invTemp: number): void;
  logSoftmaxBackward(nt: number, dlogits: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, dlogp: Float32Array, dent: Float32Array, N: number, V: number, invTemp: number): void;
  add(nt: number, out: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  addBias(nt: number, out: Float32Array, bias: Float32Array, rows: number, cols: number): void;
  biasBackward(nt: number, dbias: Float32Array, dout: Float32Array, rows: number, cols: number): void;
  sumSquares(nt: number, x: Float32Array, n: number): number;
  scale(nt: number, x: Float32Array, s: number, n: number): void;
  adamw(nt: number, param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, t: number): void;
}

/** Resolved from this file, not from the working directory: src/engine/ → package root. */
const ADDON_PATH = fileURLToPath(new URL('../../build/Release/agentrl_native.node', import.meta.url));

let addon: NativeAddon | null | undefined;
let loadError: string | undefined;

function loadAddon(): NativeAddon | null {
  if (addon !== undefined) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  } catch (err) {
    addon = null;
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    loadError = `cannot load ${ADDON_PATH}: ${msg} (build it with \`node scripts/build-native.mjs\`)`;
  }
  return addon;
}

/** Why the addon did not load (undefined when it loaded or was never asked for). */
export function nativeLoadError(): string | undefined {
  loadAddon();
  return loadError;
}

/** Machine facts from the addon, or null when it is not built. */
export function nativeInfo(): NativeInfo | null {
  return loadAddon()?.info() ?? null;
}

/** GEMM paths this CPU can run, best first ([] when the addon is not built). */
export function nativeGemmPaths(): GemmPath[] {
  return nativeInfo()?.paths ?? [];
}

function resolveGemm(info: NativeInfo, requested: string | undefined): GemmPath {
  if (requested === undefined || requested === '') return info.defaultPath;
  if (!(GEMM_PATHS as readonly string[]).includes(requested)) {
    throw new Error(`unknown GEMM path '${requested}' (AGENTRL_GEMM / { gemm }): use one of ${GEMM_PATHS.join(', ')}`);
  }
  const path = requested as GemmPath;
  if (!info.paths.includes(path)) {
    const why = path === 'openblas' ? `: ${info.openblasError}` : ' (this CPU lacks the instructions)';
    throw new Error(`GEMM path '${path}' is not available on this machine${why}; available: ${info.paths.join(', ')}`);
  }
  return path;
}

function resolveThreads(info: NativeInfo, requested: number | undefined): number {
  const env = process.env.AGENTRL_THREADS;
  const value = requested ?? (env !== undefined && env !== '' ? Number(env) : Math.max(1, info.cpus));
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`thread count must be a positive integer (AGENTRL_THREADS / { threads }), got ${requested ?? env}`);
  }
  return Math.min(value, Math.max(1, info.cpus));
}

/**
 * The native backend, or null when the addon is not built (see nativeLoadError()). Throws when a
 * GEMM path or thread count is asked for that this machine cannot provide.
 */
export function loadNativeBackend(options: NativeBackendOptions = {}): NativeBackend | null {
  const a = loadAddon();
  if (!a) return null;
  const info = a.info();
  return new NativeBackend(a, resolveGemm(info, options.gemm ?? process.env.AGENTRL_GEMM), resolveThreads(info, options.threads));
}

export class NativeBackend implements Backend {
  readonly name: string;

  constructor(private readonly lib: NativeAddon, readonly gemm: GemmPath, readonly threads: number) {
    this.name = `native/${gemm}`;
  }

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number,
    beta: number, C: Float32Array, ldc: number,
  ): void {
    this.lib.sgemm(this.gemm, this.threads, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  embedForward(out: Float32Array, tokens: Int32Array, wte: Float32Array, wpe: Float32Array | null, B: number, T: number, C: number): void {
    this.lib.embedForward(this.threads, out, tokens, wte, wpe, B, T, C);
  }

  embedBackward(dwte: Float32Array, dwpe: Float32Array | null, dout: Float32Array, tokens: Int32Array, B: number, T: number, C: number): void {
    this.lib.embedBackward(this.threads, dwte, dwpe, dout, tokens, B, T, C);
  }

  layernormForward(out: Float32Array, mean: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, N: number, C: number, eps: number): void {
    this.lib.layernormForward(this.threads, out, mean, rstd, inp, weight, bias, N, C, eps);
  }

  layernormBackward(dinp: Float32Array, dweight: Float32Array, dbias: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, mean: Float32Array, rstd: Float32Array, N: number, C: number): void {
    this.lib.layernormBackward(this.threads, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }

  rmsnormForward(out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, N: number, C: number, eps: number): void {
    this.lib.rmsnormForward(this.threads, out, rstd, inp, weight, N, C, eps);
  }

  rmsnormBackward(dinp: Float32Array, dweight: Float32Array, dout: Float32Array, inp: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, C: number): void {
    this.lib.rmsnormBackward(this.threads, dinp, dweight, dout, inp, weight, rstd, N, C);
  }

  geluForward(out: Float32Array, inp: Float32Array, n: number): void {
    this.lib.geluForward(this.threads, out, inp, n);
  }

  geluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, n: number): void {
    this.lib.geluBackward(this.threads, dinp, inp, dout, n);
  }

  rope(qkv: Float32Array, pos0: Int32Array, B: number, T: number, C: number, NH: number, base: number, inverse: boolean): void {
    this.lib.rope(this.threads, qkv, pos0, B, T, C, NH, base, inverse);
  }

  attentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, C: number, NH: number): void {
    this.lib.attentionForward(this.threads, out, lse, qkv, B, T, C, NH);
  }

  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, C: number, NH: number): void {
    this.lib.attentionBackward(this.threads, dqkv, dout, qkv, lse, B, T, C, NH);
  }

  attentionDecode(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, C: number, NH: number, maxT: number): void {
    this.lib.attentionDecode(this.threads, out, q, kCache, vCache, lens, B, C, NH, maxT);
  }

  gqaAttentionForward(out: Float32Array, lse: Float32Array, qkv: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void {
    this.lib.gqaAttentionForward(this.threads, out, lse, qkv, B, T, NH, NKV, hd);
  }

  gqaAttentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, lse: Float32Array, B: number, T: number, NH: number, NKV: number, hd: number): void {
    this.lib.gqaAttentionBackward(this.threads, dqkv, dout, qkv, lse, B, T, NH, NKV, hd);
  }

  gqaAttentionDecode(out: Float32Array, q: Float32Array, kCache: Float32Array, vCache: Float32Array, lens: Int32Array, B: number, NH: number, NKV: number, hd: number, maxT: number): void {
    this.lib.gqaAttentionDecode(this.threads, out, q, kCache, vCache, lens, B, NH, NKV, hd, maxT);
  }

  ropeFreqs(x: Float32Array, rowStride: number, pos0: Int32Array, B: number, T: number, nHeads: number, hd: number, invFreq: Float64Array, inverse: boolean): void {
    this.lib.ropeFreqs(this.threads, x, rowStride, pos0, B, T, nHeads, hd, invFreq, inverse);
  }

  swigluForward(out: Float32Array, inp: Float32Array, N: number, I: number): void {
    this.lib.swigluForward(this.threads, out, inp, N, I);
  }

  swigluBackward(dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number, I: number): void {
    this.lib.swigluBackward(this.threads, dinp, inp, dout, N, I);
  }

  headRmsnormForward(x: Float32Array, saved: Float32Array, rstd: Float32Array, weight: Float32Array, N: number, rowStride: number, nHeads: number, hd: number, eps: number): void {
    this.lib.headRmsnormForward(this.threads, x, saved, rstd, weight, N, rowStride, nHeads, hd, eps);
  }

  headRmsnormBackward(dx: Float32Array, dweight: Float32Array, saved: Float32Array, weight: Float32Array, rstd: Float32Array, N: number, rowStride: number, nHeads: number, hd: number): void {
    this.lib.headRmsnormBackward(this.threads, dx, dweight, saved, weight, rstd, N, rowStride, nHeads, hd);
  }

  logSoftmaxForward(logprobs: Float32Array, entropy: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, N: number, V: number, invTemp: number): void {
    this.lib.logSoftmaxForward(this.threads, logprobs, entropy, logits, targets, mask, N, V, invTemp);
  }

  logSoftmaxBackward(dlogits: Float32Array, logits: Float32Array, targets: Int32Array, mask: Uint8Array | null, dlogp: Float32Array, dent: Float32Array, N: number, V: number, invTemp: number): void {
    this.lib.logSoftmaxBackward(this.threads, dlogits, logits, targets, mask, dlogp, dent, N, V, invTemp);
  }

  add(out: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    this.lib.add(this.threads, out, a, b, n);
  }

  addBias(out: Float32Array, bias: Float32Array, rows: number, cols: number): void {
    this.lib.addBias(this.threads, out, bias, rows, cols);
  }

  biasBackward(dbias: Float32Array, dout: Float32Array, rows: number, cols: number): void {
    this.lib.biasBackward(this.threads, dbias, dout, rows, cols);
  }

  sumSquares(x: Float32Array, n: number): number {
    return this.lib.sumSquares(this.threads, x, n);
  }

  scale(x: Float32Array, s: number, n: number): void {
    this.lib.scale(this.threads, x, s, n);
  }

  adamw(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, n: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, t: number): void {
    this.lib.adamw(this.threads, param, grad, m, v, n, lr, beta1, beta2, eps, wd, t);
  }
}
