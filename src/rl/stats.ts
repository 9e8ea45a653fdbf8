/** Small statistics helpers shared by the advantage estimators (float64 throughout). */

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/**
 * Standard deviation. `unbiased` divides by n − 1 (Bessel, like `torch.std`), otherwise by n.
 * Fewer than two values (n − 1 = 0) give 0.
 */
export function std(xs: readonly number[], unbiased: boolean): number {
  const n = xs.length;
  const d = unbiased ? n - 1 : n;
  if (d <= 0) return 0;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return Math.sqrt(s / d);
}
