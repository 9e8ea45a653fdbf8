/**
 * Sampling one token from a row of logits. Pure apart from the RNG passed in.
 *
 * The reported logprob is log p(token) under the tempered, masked distribution — the same quantity
 * Transformer.forward computes for training — so behaviour and trainer logprobs agree exactly.
 * top-k / top-p only restrict which tokens may be drawn (they are sampling heuristics, as in vLLM's
 * default logprobs mode); the logprob is still that of the full tempered, masked distribution.
 */
import type { Rng } from '../core/rng.ts';

export interface TokenSamplingOptions {
  temperature: number;
  topK: number;
  topP: number;
  /** 1 = allowed; null = all allowed. */
  mask: Uint8Array | null;
}

export interface SampledToken {
  id: number;
  logprob: number;
}

/**
 * Sample from logits[0..V). `scratch` must have length ≥ V (holds probabilities). Throws if the
 * mask allows no token (a constraint bug, not model output).
 */
export function sampleToken(logits: Float32Array, V: number, o: TokenSamplingOptions, rng: Rng, scratch: Float64Array): SampledToken {
  const invT = 1 / o.temperature;
  const mask = o.mask;
  let max = -Infinity;
  for (let v = 0; v < V; v++) {
    if (mask && mask[v] === 0) continue;
    const z = logits[v]! * invT;
    if (z > max) max = z;
  }
  if (max === -Infinity) throw new Error('sampleToken: the token constraint allows no token');
  let sum = 0;
  for (let v = 0; v < V; v++) {
    if (mask && mask[v] === 0) { scratch[v] = 0; continue; }
    const e = Math.exp(logits[v]! * invT - max);
    scratch[v] = e;
    sum += e;
  }
  const logSum = Math.log(sum);
  const id = o.topK > 0 || o.topP < 1 ? drawTruncated(scratch, V, sum, o.topK, o.topP, rng) : drawFull(scratch, V, sum, rng);
  return { id, logprob: logits[id]! * invT - max - logSum };
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

/** Draw among the top-k tokens and/or the smallest set whose mass reaches topP. */
function drawTruncated(p: Float64Array, V: number, sum: number, topK: number, topP: number, rng: Rng): number {
  const order: number[] = [];
  for (let v = 0; v < V; v++) if (p[v]! > 0) order.push(v);
  order.sort((a, b) => p[b]! - p[a]! || a - b);
  let keep = topK > 0 ? Math.min(topK, order.length) : order.length;
  if (topP < 1) {
    let acc = 0;
    for (let i = 0; i < keep; i++) {
      acc += p[order[i]!]! / sum;
      if (acc >= topP) { keep = i + 1; break; }
    }
  }
  let kept = 0;
  for (let i = 0; i < keep; i++) kept += p[order[i]!]!;
  let u = rng.next() * kept;
  for (let i = 0; i < keep; i++) {
    u -= p[order[i]!]!;
    if (u < 0) return order[i]!;
  }
  return order[keep - 1]!;
}
