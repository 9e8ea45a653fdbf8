/**
 * "Nice numbers" axis ticks: steps of 1, 2 or 5 × 10^k, tick values that are exact multiples of the
 * step and labels without float noise (0.3, never 0.30000000000000004). Pure; used by every chart
 * (src/eval/plot.ts, src/eval/run-plots.ts).
 *
 * Each tick is computed as an integer times the step's mantissa, scaled by a power of ten in one
 * operation (k·m / 10^e for a fractional step), so it is the double nearest the decimal value and
 * prints as that decimal; adding the step repeatedly would accumulate rounding errors instead.
 */

export interface TickOptions {
  /** Most ticks (≥ 3; default 6). The fewest steps of 1/2/5 × 10^k that cover the range within this count are chosen. */
  maxTicks?: number;
  /** Integer ticks only (step axes, counts): the step is at least 1. */
  integer?: boolean;
}

export interface Ticks {
  /** Tick values, ascending, equally spaced by `step`; the first ≤ the range's minimum, the last ≥ its maximum. */
  values: number[];
  /** The values as printed: the step's decimals, thousands as k / M / G once the step is ≥ 1000. */
  labels: string[];
  step: number;
  /** First and last tick: the axis range to draw. */
  lo: number;
  hi: number;
}

const MANTISSAS = [1, 2, 5] as const;

/** A step m × 10^e and its k-th multiple, computed exactly enough to print as a decimal. */
function tickValue(k: number, m: number, e: number): number {
  const v = e >= 0 ? k * m * 10 ** e : (k * m) / 10 ** -e;
  return v === 0 ? 0 : v; // never -0

}

/**
 * Ticks covering [min, max]. A degenerate range (min = max) is widened by one unit around the value
 * (at 0 for a value of 0); infinite or NaN bounds are an error (the caller filters its data first).
 */
export function niceTicks(min: number, max: number, o: TickOptions = {}): Ticks {
  const maxTicks = o.maxTicks ?? 6;
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new Error(`niceTicks: the range must be finite (got ${min} … ${max})`);
  if (!(maxTicks >= 3) || !Number.isInteger(maxTicks)) throw new Error(`niceTicks: maxTicks must be an integer ≥ 3 (got ${maxTicks})`);
  if (min > max) [min, max] = [max, min];
  if (min === max) {
    const unit = min === 0 ? 1 : 10 ** Math.floor(Math.log10(Math.abs(min)));
    const step = o.integer ? Math.max(1, unit) : unit;
    if (min === 0) max = step;
    // toPrecision drops the float noise of the subtraction (0.3 − 0.1 = 0.19999999999999998).
    else [min, max] = [Number((min - step).toPrecision(12)), Number((max + step).toPrecision(12))];
  }
  // Start one decade below the rough step and walk up 1, 2, 5, 10, 20 … until the ticks fit.
  let e = Math.floor(Math.log10((max - min) / (maxTicks - 1))) - 1;
  // A range narrower than the doubles' resolution at its magnitude (1e9 … 1e9 + 1e-7) cannot be cut
  // finer than that: steps stay ≥ 10^-14 of the largest bound, so tick indices stay exact integers.
  e = Math.max(e, Math.floor(Math.log10(Math.max(Math.abs(min), Math.abs(max)))) - 14, -300);
  if (o.integer) e = Math.max(0, e);
  for (;;) {
    for (const m of MANTISSAS) {
      const t = fit(min, max, m, e);
      if (t.count <= maxTicks) return build(t.k0, t.count, m, e);
    }
    e++;
  }
}

/** First multiple k0 with k0·step ≤ min and the number of ticks up to the first ≥ max (exact comparisons on the printed values). */
function fit(min: number, max: number, m: number, e: number): { k0: number; count: number } {
  const step = tickValue(1, m, e);
  let k0 = Math.floor(min / step);
  while (tickValue(k0, m, e) > min) k0--;
  while (tickValue(k0 + 1, m, e) <= min) k0++;
  let k1 = Math.ceil(max / step);
  while (tickValue(k1, m, e) < max) k1++;
  while (tickValue(k1 - 1, m, e) >= max) k1--;
  return { k0, count: k1 - k0 + 1 };
}

function build(k0: number, count: number, m: number, e: number): Ticks {
  const values = Array.from({ length: count }, (_, i) => tickValue(k0 + i, m, e));
  const step = tickValue(1, m, e);
  return { values, labels: values.map((v) => formatTick(v, m, e)), step, lo: values[0]!, hi: values.at(-1)! };
}

/** A tick printed with just the step's decimals; thousands, millions, billions abbreviated once the step reaches them. */
function formatTick(v: number, m: number, e: number): string {
  if (v === 0) return '0';
  // Very small or very large steps: exponent notation, as many digits as the value needs.
  if (e < -6 || e >= 12) return v.toExponential();
  for (const [exp, suffix] of [[9, 'G'], [6, 'M'], [3, 'k']] as const) {
    if (e >= exp) return `${formatTick(v / 10 ** exp, m, e - exp)}${suffix}`;
  }
  return v.toFixed(Math.max(0, -e));
}
