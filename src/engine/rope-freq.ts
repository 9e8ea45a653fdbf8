/**
 * Rotary position embedding frequencies, as transformers computes them (modeling_rope_utils.py):
 *
 *   default  inv_freq[i] = 1 / θ^(2i/d)                     (`_compute_default_rope_parameters`)
 *   linear   inv_freq[i] / factor                            (`_compute_linear_scaling_rope_parameters`)
 *   llama3   by wavelength λ = 2π / inv_freq[i], with L = original_max_position_embeddings
 *            (`_compute_llama3_parameters`):
 *              λ < L / high_freq_factor  → kept (high frequencies: local detail)
 *              λ > L / low_freq_factor   → inv_freq / factor (low frequencies: stretched)
 *              otherwise                 → (1 − s)·inv_freq/factor + s·inv_freq,
 *                                          s = (L/λ − low_freq_factor) / (high_freq_factor − low_freq_factor)
 *
 * d is the head width (`headDim`, the whole head rotates). Computed in float64; transformers
 * computes in float32, which differs in the last bits only.
 */
import type { ArchConfig } from './arch.ts';

/** The `headDim / 2` inverse frequencies of `arch`'s rotary embedding. */
export function ropeInvFreq(arch: Pick<ArchConfig, 'positions' | 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  if (arch.positions !== 'rope') throw new Error(`ropeInvFreq: the model uses ${arch.positions} positions, not RoPE`);
  const d = arch.headDim;
  if (!Number.isInteger(d) || d <= 0 || d % 2 !== 0) throw new Error(`ropeInvFreq: headDim must be a positive even integer for RoPE, got ${d}`);
  if (!(arch.ropeTheta > 0)) throw new Error(`ropeInvFreq: ropeTheta must be positive, got ${arch.ropeTheta}`);
  const inv = new Float64Array(d / 2);
  for (let i = 0; i < inv.length; i++) inv[i] = 1 / Math.pow(arch.ropeTheta, (2 * i) / d);

  const sc = arch.ropeScaling;
  if (sc === null) return inv;
  if (sc.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = inv[i]! / sc.factor;
    return inv;
  }
  const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: L } = sc;
  const lowFreqWavelen = L / low, highFreqWavelen = L / high;
  for (let i = 0; i < inv.length; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) continue;
    if (wavelen > lowFreqWavelen) {
      inv[i] = f / factor;
    } else {
      const s = (L / wavelen - low) / (high - low);
      inv[i] = ((1 - s) * f) / factor + s * f;
    }
  }
  return inv;
}
