/** Every compute path available here: JS always, plus one native backend per GEMM path. */
import type { Backend } from '../../src/engine/backend.ts';
import { JsBackend } from '../../src/engine/js-backend.ts';
import { loadNativeBackend, nativeGemmPaths } from '../../src/engine/native.ts';

export function allBackends(): Backend[] {
  const out: Backend[] = [new JsBackend()];
  for (const gemm of nativeGemmPaths()) {
    const be = loadNativeBackend({ gemm });
    if (be) out.push(be);
  }
  return out;
}

/** The fastest backend available (native default path, else JS). */
export function fastBackend(): Backend {
  return loadNativeBackend() ?? new JsBackend();
}

/**
 * JS, plus every native GEMM path at each of the given thread counts (default 1 and 2: the serial
 * loops and the pooled ones). Thread counts above the CPUs this process may use are capped, so
 * duplicates are dropped.
 */
export function allBackendsByThreads(threads: readonly number[] = [1, 2]): Backend[] {
  const out: Backend[] = [new JsBackend()];
  const seen = new Set<string>();
  for (const gemm of nativeGemmPaths()) {
    for (const t of threads) {
      const be = loadNativeBackend({ gemm, threads: t });
      if (!be || seen.has(`${be.name}×${be.threads}`)) continue;
      seen.add(`${be.name}×${be.threads}`);
      out.push(be);
    }
  }
  return out;
}
