/**
 * A synthetic retrieval corpus for the index and retrieval benchmarks: made-up pronounceable words
 * drawn from a Zipf distribution, so queries mix very common words (long posting lists) with rare
 * ones, as real questions do. Deterministic for a given PRNG.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

/** `n` distinct pronounceable words: 1–4 consonant-vowel syllables. */
export function makeVocabulary(n: number, rand: () => number): string[] {
  const cons = 'bcdfghjklmnprstvwz';
  const vowels = 'aeiou';
  const words = new Set<string>();
  while (words.size < n) {
    let w = '';
    const syllables = 1 + Math.floor(rand() * 4);
    for (let s = 0; s < syllables; s++) w += cons[Math.floor(rand() * cons.length)] + vowels[Math.floor(rand() * vowels.length)];
    if (rand() < 0.3) w += cons[Math.floor(rand() * cons.length)];
    words.add(w);
  }
  return [...words];
}

/** Sampler of ranks 0..n−1 with P(r) ∝ 1/(r+1)^s, by binary search in the cumulative distribution. */
export function zipf(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) cdf[r] = total += 1 / (r + 1) ** s;
  return () => {
    const u = rand() * total;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/**
 * `passages` JSONL passages `{id: p<i>, title, contents}`: 60–100 words of `vocab` each (Zipf with
 * exponent 1 over the vocabulary's order) and a 2–3-word title of less common words.
 */
export async function writeCorpus(path: string, passages: number, vocab: readonly string[], rand: () => number): Promise<void> {
  const rank = zipf(vocab.length, 1.0, rand);
  const out = createWriteStream(path);
  let chunk = '';
  for (let i = 0; i < passages; i++) {
    const title = Array.from({ length: 2 + Math.floor(rand() * 2) }, () => vocab[1000 + Math.floor(rand() * (vocab.length - 1000))]).join(' ');
    const n = 60 + Math.floor(rand() * 41);
    const words: string[] = new Array(n);
    for (let j = 0; j < n; j++) words[j] = vocab[rank()]!;
    chunk += JSON.stringify({ id: `p${i}`, title, contents: words.join(' ') + '.' }) + '\n';
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}
