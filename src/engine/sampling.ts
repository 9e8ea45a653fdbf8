/**
 * Sampling one token from a row of logits. Pure apart from the RNG passed in.
 *
 * The reported logprob is log p(token) under the distribution the token was actually drawn from:
 * logits / temperature, restricted to the constraint mask and, when top-k or top-p is on, to the kept
 * set, renormalised over what remains. The sampler returns that set as a 0/1 mask; the engine records
 * it with the token, and the trainer (Transformer.forward with per-token masks) recomputes exactly the
 * same quantity, so behaviour and trainer logprobs agree and importance ratios stay exact under
 * truncated sampling.
 */
import type { Rng } from '../core/rng.ts';

export interface TokenSamplingOptions {
  temperature: number;
  /** Keep only the k most likely allowed tokens; 0 = off. */
  topK: number;
  /** Keep the smallest most-likely prefix of allowed tokens whose mass reaches topP; 1 = off. */
  topP: number;
  /** 1 = allowed; null = all allowed. */
  mask: Uint8Array | null;
}

export interface SampledToken {
  id: number;
  /** log p(id) under the tempered distribution restricted to `mask` and renormalised. */
  logprob: number;
  /**
   * The tokens the logprob is normalised over: the constraint mask passed in (possibly null) when
   * top-k / top-p removed nothing, else a new 0/1 mask of the kept set (a subset of the constraint
   * mask). Store it with the token to recompute the logprob.
   */
  mask: Uint8Array | null;
}

/**
 * Sample from logits[0..V). `scratch` must have length ≥ V (holds probabilities). Throws if any logit
 * is NaN or ±Infinity (corrupt weights or a kernel bug, never a valid distribution) or if the mask
 * allows no token (a constraint bug, not model output).
 */
export function sampleToken(logits: Float32Array, V: number, o: TokenSamplingOptions, rng: Rng, scratch: Float64Array): SampledToken {
  const invT = 1 / o.temperature;
  const mask = o.mask;
  let max = -Infinity;
  for (let v = 0; v < V; v++) {
    const l = logits[v]!;
    if (!Number.isFinite(l)) throw new Error(`sampleToken: the model produced non-finite logits (NaN/Inf), e.g. ${l} for token ${v}; the weights are probably corrupt (check the last update and the loss for NaN)`);
    if (mask && mask[v] === 0) continue;
    const z = l * invT;
    if (z > max) max = z;
  }
  if (max === -Infinity) throw new Error('sampleToken: the token constraint allows no token (its mask is all zeros)');
  let sum = 0;
  for (let v = 0; v < V; v++) {
    if (mask && mask[v] === 0) { scratch[v] = 0; continue; }
    const e = Math.exp(logits[v]! * invT - max);
    scratch[v] = e;
    sum += e;
  }
  if (o.topK > 0 || o.topP < 1) {
    const kept = keptSet(scratch, V, mask, sum, o.topK, o.topP);
    if (kept) {
      let keptSum = 0;
      for (const v of kept.order) keptSum += scratch[v]!;
      const id = drawAmong(scratch, kept.order, keptSum, rng);
      return { id, logprob: logits[id]! * invT - max - Math.log(keptSum), mask: kept.mask };
    }
  }
  const id = drawFull(scratch, V, sum, rng);
  return { id, logprob: logits[id]! * invT - max - Math.log(sum), mask };
}

function drawFull(p: Float64Array, V: number, sum: number, rng: Rng): number {
  let u = rng.next() * sum;
  let last = -1;
  for (let v = 0; v < V; v++) {
    if (p[v]! === 0) continue;
    last = v;
    u -= p[v]!;
    if (u < 0) return v;
  }
  return last; // rounding: fall back to the last allowed token
}

/**
 * The top-k tokens and/or the smallest most-likely prefix whose mass reaches topP, among the tokens
 * the constraint allows; null when that is every allowed token (nothing truncated).
 */
function keptSet(p: Float64Array, V: number, mask: Uint8Array | null, sum: number, topK: number, topP: number): { order: number[]; mask: Uint8Array } | null {
  const order: number[] = [];
  for (let v = 0; v < V; v++) if (!mask || mask[v] !== 0) order.push(v);
  order.sort((a, b) => p[b]! - p[a]! || a - b);
  let keep = topK > 0 ? Math.min(topK, order.length) : order.length;
  if (topP < 1) {
    let acc = 0;
    for (let i = 0; i < keep; i++) {
      acc += p[order[i]!]! / sum;
      if (acc >= topP) { keep = i + 1; break; }
    }
  }
  if (keep === order.length) return null;
  order.length = keep;
  const kept = new Uint8Array(V);
  for (const v of order) kept[v] = 1;
  return { order, mask: kept };
}

/** Draw among `order` (ids) with weights p[id] summing to `sum`. */
function drawAmong(p: Float64Array, order: readonly number[], sum: number, rng: Rng): number {
  let u = rng.next() * sum;
  let last = order[0]!;
  for (const v of order) {
    if (p[v]! === 0) continue;
    last = v;
    u -= p[v]!;
    if (u < 0) return v;
  }
  return last; // rounding: fall back to the last kept token with non-zero probability
}

/** Why a sampling temperature is invalid (for an error message), or null. Shared by every sampler. */
export function temperatureProblem(t: number): string | null {
  return Number.isFinite(t) && t > 0 ? null : `temperature must be a finite number > 0 (got ${t}); use a small value such as 1e-3 for near-greedy decoding`;
}

/** Why top-k / top-p settings are invalid (undefined = off), or null. Shared by every sampler. */
export function truncationProblem(topK: number | undefined, topP: number | undefined): string | null {
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0)) return `topK must be an integer ≥ 0, 0 = off (got ${topK})`;
  if (topP !== undefined && !(topP > 0 && topP <= 1)) return `topP must be in (0, 1], 1 = off (got ${topP})`;
  return null;
}

/** Temperature and truncation of a sampling distribution (top-k 0 and top-p 1 are off). */
export type SamplingShape = Pick<TokenSamplingOptions, 'temperature' | 'topK' | 'topP'>;

/**
 * The distribution sampleToken draws from when exactly these logits are allowed, as probabilities
 * (0 outside the top-k / top-p set). Pass the allowed logits in token-id order: ties at the top-k /
 * top-p cut go to the lower index, as in sampleToken. For players that sample a few legal words
 * themselves (frozen snapshot opponents), so that they honour the same settings as the agent.
 */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingShape): Float64Array {
  const n = logits.length;
  if (n === 0) throw new Error('samplingDistribution: no logits');
  if (!(o.temperature > 0)) throw new Error(`samplingDistribution: temperature must be > 0, got ${o.temperature}`);
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(logits[i]!)) throw new Error(`samplingDistribution: non-finite logit ${logits[i]} at ${i}`);
    max = Math.max(max, logits[i]! / o.temperature);
  }
  const p = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += p[i] = Math.exp(logits[i]! / o.temperature - max);
  const kept = o.topK > 0 || o.topP < 1 ? keptSet(p, n, null, sum, o.topK, o.topP) : null;
  if (kept) {
    sum = 0;
    for (let i = 0; i < n; i++) if (kept.mask[i] === 0) p[i] = 0; else sum += p[i]!;
  }
  for (let i = 0; i < n; i++) p[i] = p[i]! / sum;
  return p;
}

/** The log-softmax of one row of logits, in float64 (for comparing whole next-token distributions). */
export function logSoftmaxF64(logits: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]!);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i]! - m);
  const lse = m + Math.log(s);
  return Float64Array.from(logits, (v) => v - lse);
}
