/** A random batch (optionally with constraint masks) and the scalar objective the whole-model gradient checks differentiate. */
import type { Transformer } from '../../src/engine/model.ts';
import type { Rng } from '../../src/core/rng.ts';

export function randomBatch(rng: Rng, B: number, T: number, V: number, withMask: boolean) {
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(V));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 && i > T ? -1 : rng.int(V)));
  let masks: Uint8Array | null = null;
  if (withMask) {
    masks = new Uint8Array(B * T * V);
    for (let n = 0; n < B * T; n++) {
      for (let v = 0; v < V; v++) masks[n * V + v] = rng.next() < 0.6 ? 1 : 0;
      if (targets[n]! >= 0) masks[n * V + targets[n]!] = 1;
    }
  }
  return { B, T, tokens, targets, masks };
}

/** Scalar objective L = Σ r·logp + s·entropy, in float64 from the model's float32 outputs. */
export function objective(m: Transformer, batch: ReturnType<typeof randomBatch>, temp: number, r: Float32Array, s: Float32Array): number {
  const out = m.forward({ ...batch, temperature: temp });
  let L = 0;
  for (let i = 0; i < r.length; i++) L += r[i]! * out.logprobs[i]! + s[i]! * out.entropy[i]!;
  return L;
}

/**
 * Per parameter tensor, how far the analytic gradient `grad` (model layout) is from central finite
 * differences of `loss` at a spread of up to 8 coordinates: ‖analytic − numeric‖ / (‖analytic‖ +
 * ‖numeric‖), which tiny coordinates cannot dominate. Richardson extrapolation (O(h⁴) truncation
 * error) lets h be large next to float32 noise. `analyticNorm2` is ‖analytic‖² over those coordinates.
 */
export function gradientErrors(m: Transformer, grad: Float64Array, loss: () => number, h = 4e-2): { name: string; err: number; analyticNorm2: number }[] {
  return m.layout.map((pv) => {
    const picks = Math.min(pv.size, 8);
    let diff = 0, na = 0, nn = 0;
    for (let j = 0; j < picks; j++) {
      const i = pv.offset + ((j * 7919) % pv.size);
      const orig = m.params[i]!;
      const central = (step: number) => {
        m.params[i] = orig + step;
        const lp = loss();
        m.params[i] = orig - step;
        const lm = loss();
        m.params[i] = orig;
        return (lp - lm) / (2 * step);
      };
      const fd = (4 * central(h / 2) - central(h)) / 3;
      diff += (fd - grad[i]!) ** 2;
      na += grad[i]! ** 2;
      nn += fd ** 2;
    }
    return { name: pv.name, err: Math.sqrt(diff) / Math.max(Math.sqrt(na) + Math.sqrt(nn), 1e-6), analyticNorm2: na };
  });
}
