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
