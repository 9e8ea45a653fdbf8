/** Small statistics shared by the result scripts: across-seed means with seed spread and evaluation se. */

export const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '–');

/** Element-wise a − b (paired per trial / per level). */
export const diff = (a: number[], b: number[]) => a.map((x, i) => x - b[i]!);

/** Mean across seeds of per-seed (mean, se): sd = seed spread, se = evaluation se of the across-seed mean. */
export function acrossSeeds(per: [number, number][]): { mean: number; sd: number; se: number } {
  const n = per.length;
  const mean = per.reduce((a, x) => a + x[0], 0) / n;
  const sd = n > 1 ? Math.sqrt(per.reduce((a, x) => a + (x[0] - mean) ** 2, 0) / (n - 1)) : Number.NaN;
  return { mean, sd, se: Math.sqrt(per.reduce((a, x) => a + x[1] ** 2, 0)) / n };
}

/** `mean (sd …, se …)` of `acrossSeeds`. */
export const seedCell = (per: [number, number][]) => {
  const c = acrossSeeds(per);
  return `${f3(c.mean)} (sd ${f3(c.sd)}, se ${f3(c.se)})`;
};
