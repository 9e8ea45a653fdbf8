// Per-kernel time profile of the reference model train step (native backend): where the time goes.
// node --import tsx bench/profile-step.ts   (G=openblas|avx512|avx2|scalar to pick the GEMM path)
import { loadNativeBackend } from '../src/engine/native.ts';
import { Transformer } from '../src/engine/model.ts';
import type { Backend } from '../src/engine/backend.ts';

const raw = loadNativeBackend({ gemm: process.env.G || undefined })!;
const times = new Map<string, number>();
const be = new Proxy(raw, {
  get(target, prop, recv) {
    const v = Reflect.get(target, prop, recv);
    if (typeof v !== 'function') return v;
    return (...args: unknown[]) => {
      const t0 = performance.now();
      const r = (v as (...a: unknown[]) => unknown).apply(target, args);
      let key = String(prop);
      if (key === 'sgemm') key += `(${args[0] ? 'T' : 'N'}${args[1] ? 'T' : 'N'} ${args[2]}x${args[3]}x${args[4]})`;
      times.set(key, (times.get(key) ?? 0) + performance.now() - t0);
      return r;
    };
  },
}) as Backend;
const B = 32, T = 128, V = 1024;
const model = new Transformer({ vocabSize: V, contextLength: T, nLayer: 4, nHead: 4, nEmbd: 256 }, be, 0);
const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % V);
const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 104729) % V);
const dLogp = new Float32Array(B * T).fill(-1 / (B * T)), dEnt = new Float32Array(B * T);
const m = new Float32Array(model.numParams), v = new Float32Array(model.numParams);
const step = (t: number) => {
  model.zeroGrad();
  model.forward({ B, T, tokens, targets });
  model.backward(dLogp, dEnt);
  const norm = Math.sqrt(be.sumSquares(model.grads, model.numParams));
  if (norm > 1) be.scale(model.grads, 1 / norm, model.numParams);
  be.adamw(model.params, model.grads, m, v, model.numParams, 1e-4, 0.9, 0.999, 1e-8, 0.01, t);
};
step(1); times.clear();
const steps = Number(process.env.STEPS ?? 5);
const t0 = performance.now();
for (let i = 0; i < steps; i++) step(i + 2);
const dt = (performance.now() - t0) / steps;
console.log(`${raw.name}: ${dt.toFixed(1)} ms/step, ${(B * T / dt * 1000).toFixed(0)} tokens/s`);
const total = [...times.values()].reduce((a, b) => a + b, 0) / steps;
console.log(`kernel time ${total.toFixed(1)} ms/step (rest: JS ${(dt - total).toFixed(1)} ms)`);
for (const [k, ms] of [...times.entries()].sort((a, b) => b[1] - a[1])) console.log(`${(ms / steps).toFixed(2).padStart(8)} ms  ${k}`);
