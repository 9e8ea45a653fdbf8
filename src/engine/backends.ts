/**
 * Picks the compute backend: the native addon when it is built and loads, else pure JS.
 * `AGENTRL_BACKEND=js|native` forces one (native fails loudly if it cannot load);
 * `AGENTRL_GEMM=openblas|avx512|avx2|scalar` picks the native GEMM path.
 */
import type { Backend } from './backend.ts';
import { JsBackend } from './js-backend.ts';
import { loadNativeBackend, nativeLoadError } from './native.ts';

let cached: Backend | null = null;

export function selectBackend(kind: string | undefined = process.env.AGENTRL_BACKEND): Backend {
  if (kind === 'js') return new JsBackend();
  const gemm = process.env.AGENTRL_GEMM;
  const native = loadNativeBackend(gemm ? { gemm } : undefined);
  if (native) return native;
  if (kind === 'native') throw new Error(`AGENTRL_BACKEND=native but the native addon did not load: ${nativeLoadError() ?? 'unknown error'}. Run \`npm rebuild agentrl\` or unset AGENTRL_BACKEND to use the JS fallback.`);
  return new JsBackend();
}

/** The process-wide default backend (selected once). */
export function defaultBackend(): Backend {
  cached ??= selectBackend();
  return cached;
}
