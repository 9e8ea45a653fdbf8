/**
 * llama.cpp (node-llama-cpp's prebuilt CPU build) as a third-party reference: tiny random models of
 * every family llama.cpp supports are written to GGUF with our converter, run in llama.cpp, and
 * their next-token log-probabilities compared with the independent float64 reference forward pass
 * on the same Hugging Face tensors. This checks the GGUF writer (names, permutations, transposes,
 * RoPE factors, metadata) and the reference forward pass against each other.
 *
 * node-llama-cpp is a dev dependency that may be absent. Without it these tests warn loudly and pass, except
 * under AGENTRL_REQUIRE_LLAMACPP=1 (set in CI), where its absence is a failure.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchConfig, ArchFamily, HfTensors } from '../src/engine/arch.ts';
import { hfToGguf, permuteRopeRows, type GgufDType } from '../src/engine/gguf-convert.ts';
import { llamaCppAvailability, openLlamaCppPeer } from '../src/engine/llamacpp-peer.ts';
import { randomHfTensors, tinyArch } from './helpers/tiny-models.ts';
import { referenceLogprobs } from './helpers/reference-forward.ts';

const REQUIRED = process.env.AGENTRL_REQUIRE_LLAMACPP === '1';
const availability = await llamaCppAvailability();
if (!availability.ok) {
  console.warn(`\n*** llama.cpp reference tests NOT RUN: ${availability.reason}${REQUIRED ? '' : ' (set AGENTRL_REQUIRE_LLAMACPP=1 to make this a failure)'} ***\n`);
}

const FIXTURE = join(import.meta.dirname, 'fixtures', 'tiny-bpe');
const tokenizerJson = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')) as unknown;
const tokenizerConfig = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
/** 20 tokens: special, byte-level and merged tokens, repeats (positions 0..19 < every tiny model's 64). */
const TOKENS = [268, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 269, 5, 200, 30, 100, 150, 260, 1];
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-llamacpp-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const measured: string[] = [];
afterAll(() => { if (measured.length > 0) console.log(`llama.cpp vs reference, max |Δ logprob| over the vocabulary and ${TOKENS.length} positions:\n  ${measured.join('\n  ')}`); });

/**
 * Bounds on max |Δ| between llama.cpp and the float64 reference on the unrounded weights. F32: only
 * float32 arithmetic differs (measured ≤ 5e-6), except GPT-2, whose GELU llama.cpp evaluates through
 * an F16 lookup table (measured 1.8e-3). F16/BF16/Q8_0 round the weights and llama.cpp also rounds
 * the activations to that type in its matrix products (measured ≤ 1.4e-2 / 8.7e-2 / 0.24).
 */
const BOUND: Record<GgufDType, number> = { F32: 1e-3, F16: 5e-2, BF16: 0.25, Q8_0: 0.6 };
const GPT2_F32_BOUND = 1e-2;

/** Skip-free guard: without llama.cpp, fail under AGENTRL_REQUIRE_LLAMACPP=1, else warn and return false. */
function llamaCppHere(test: string): boolean {
  if (availability.ok) return true;
  if (REQUIRED) throw new Error(`AGENTRL_REQUIRE_LLAMACPP=1 but llama.cpp is unavailable: ${availability.reason}`);
  console.warn(`llama.cpp reference test "${test}" did not run: ${availability.reason}`);
  return false;
}

async function llamaCppLogSoftmax(arch: ArchConfig, tensors: HfTensors, dtype: GgufDType, tag: string): Promise<Float64Array[]> {
  const path = join(scratch, `${tag}.gguf`);
  writeFileSync(path, hfToGguf(arch, tensors, tokenizerJson, { dtype, tokenizerConfig }));
  const r = await openLlamaCppPeer(path, arch.vocabSize, { threads: 1 });
  if (!r.ok) throw new Error(r.reason);
  try {
    return await r.peer.logSoftmax(TOKENS);
  } finally {
    await r.peer.dispose();
  }
}

function maxAbsDiff(a: Float64Array[], b: Float64Array[]): number {
  let m = 0;
  a.forEach((row, t) => row.forEach((v, i) => { m = Math.max(m, Math.abs(v - b[t]![i]!)); }));
  return m;
}

describe('llama.cpp as a third-party reference', () => {
  it(`is available${REQUIRED ? ' (required: AGENTRL_REQUIRE_LLAMACPP=1)' : ''}`, () => {
    if (!llamaCppHere('availability')) return;
    expect(availability.ok && availability.description).toMatch(/llama\.cpp@.* \(prebuilt, CPU\)/);
    console.log(`llama.cpp reference: ${availability.ok ? availability.description : ''}`);
  });

  const families: ArchFamily[] = ['llama', 'qwen2', 'qwen3', 'gpt2'];
  for (const family of families) {
    for (const dtype of ['F32', 'F16', 'BF16', 'Q8_0'] as const) {
      const bound = family === 'gpt2' && dtype === 'F32' ? GPT2_F32_BOUND : BOUND[dtype];
      it(`${family} ${dtype} GGUF: llama.cpp's next-token logprobs match the float64 reference within ${bound}`, async () => {
        if (!llamaCppHere(`${family} ${dtype}`)) return;
        const arch = tinyArch(family);
        const tensors = randomHfTensors(arch, 7);
        const ours = referenceLogprobs(arch, tensors, TOKENS);
        const theirs = await llamaCppLogSoftmax(arch, tensors, dtype, `${family}-${dtype}`);
        const d = maxAbsDiff(theirs, ours);
        measured.push(`${family} ${dtype}: max |Δ| = ${d.toExponential(2)} (bound ${bound})`);
        expect(d).toBeLessThanOrEqual(bound);
        // The distributions are far from uniform (log 1/270 = −5.6), so agreement is informative.
        expect(Math.max(...ours.map((r) => Math.max(...r)))).toBeGreaterThan(Math.log(1 / arch.vocabSize) + 2);
      });
    }
  }

  it(`llama with attention/MLP biases, an untied head and linear RoPE scaling (F32) matches within ${BOUND.F32}`, async () => {
    if (!llamaCppHere('llama variant')) return;
    const arch = tinyArch('llama', { qkvBias: true, oBias: true, mlpBias: true, tiedEmbeddings: false, ropeScaling: { type: 'linear', factor: 2 } });
    const tensors = randomHfTensors(arch, 8);
    const d = maxAbsDiff(await llamaCppLogSoftmax(arch, tensors, 'F32', 'llama-variant'), referenceLogprobs(arch, tensors, TOKENS));
    measured.push(`llama F32 with biases, untied head, linear RoPE ×2: max |Δ| = ${d.toExponential(2)} (bound ${BOUND.F32})`);
    expect(d).toBeLessThanOrEqual(BOUND.F32);
  });

  it(`gpt2 F32 with c_fc = 0 (GELU(0) = 0) matches within ${BOUND.F32}: the looser GPT-2 bound is all in llama.cpp's F16 GELU table`, async () => {
    if (!llamaCppHere('gpt2 without GELU')) return;
    const arch = tinyArch('gpt2');
    const tensors = randomHfTensors(arch, 7);
    for (const [name, t] of tensors) if (name.includes('.mlp.c_fc.')) t.data.fill(0);
    const d = maxAbsDiff(await llamaCppLogSoftmax(arch, tensors, 'F32', 'gpt2-no-gelu'), referenceLogprobs(arch, tensors, TOKENS));
    measured.push(`gpt2 F32 with c_fc = 0: max |Δ| = ${d.toExponential(2)} (bound ${BOUND.F32})`);
    expect(d).toBeLessThanOrEqual(BOUND.F32);
  });

  it('is sensitive: dropping the llama3 RoPE factors or the q/k permutation breaks agreement', async () => {
    if (!llamaCppHere('sensitivity')) return;
    const arch = tinyArch('llama');
    const tensors = randomHfTensors(arch, 7);
    const theirs = await llamaCppLogSoftmax(arch, tensors, 'F32', 'llama-sensitivity');
    const noScaling = maxAbsDiff(theirs, referenceLogprobs({ ...arch, ropeScaling: null }, tensors, TOKENS));
    // Undo the converter's permutation in advance: llama.cpp then sees Hugging Face's rotate-half rows.
    const unpermuted: HfTensors = new Map(tensors);
    for (let l = 0; l < arch.nLayer; l++) {
      for (const [p, n] of [['q', arch.nHead], ['k', arch.nKvHead]] as const) {
        const name = `model.layers.${l}.self_attn.${p}_proj.weight`;
        const t = tensors.get(name)!;
        unpermuted.set(name, { ...t, data: permuteRopeRows(t.data, n, arch.headDim, arch.hiddenSize, true) });
      }
    }
    const noPermute = maxAbsDiff(await llamaCppLogSoftmax(arch, unpermuted, 'F32', 'llama-unpermuted'), referenceLogprobs(arch, tensors, TOKENS));
    measured.push(`llama F32 without llama3 factors in the reference: ${noScaling.toExponential(2)}; without the q/k permutation: ${noPermute.toExponential(2)}`);
    expect(noScaling).toBeGreaterThan(1e-2);
    expect(noPermute).toBeGreaterThan(1e-2);
  });

  it('tokenLogprobs returns the logprob of each next token', async () => {
    if (!llamaCppHere('tokenLogprobs')) return;
    const arch = tinyArch('qwen2');
    const tensors = randomHfTensors(arch, 9);
    const path = join(scratch, 'qwen2-tokens.gguf');
    writeFileSync(path, hfToGguf(arch, tensors, tokenizerJson, { dtype: 'F32', tokenizerConfig }));
    const r = await openLlamaCppPeer(path, arch.vocabSize, { threads: 1 });
    if (!r.ok) throw new Error(r.reason);
    try {
      const lps = await r.peer.tokenLogprobs(TOKENS);
      const ref = referenceLogprobs(arch, tensors, TOKENS);
      expect(lps.length).toBe(TOKENS.length - 1);
      lps.forEach((lp, t) => expect(Math.abs(lp - ref[t]![TOKENS[t + 1]!]!)).toBeLessThan(1e-3));
      // A second evaluation of a different sequence starts from a clean context.
      const again = await r.peer.tokenLogprobs(TOKENS.slice(5));
      const ref2 = referenceLogprobs(arch, tensors, TOKENS.slice(5));
      again.forEach((lp, t) => expect(Math.abs(lp - ref2[t]![TOKENS[t + 6]!]!)).toBeLessThan(1e-3));
    } finally {
      await r.peer.dispose();
    }
  });
});
