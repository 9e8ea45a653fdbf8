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
