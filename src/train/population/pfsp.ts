/**
 * Running win rates per (learner, opponent) and prioritised fictitious self-play (PFSP) weights.
 *
 * A rate starts at `prior` and moves toward each new result x ∈ {0, 1} (or ½ for a draw) by
 * α = max(rate, 1/(games+1)): the plain mean of the first 1/rate games, an exponential moving
 * average after that, so old results against a learner's former self fade out.
 *
 * PFSP ("hard" weighting, AlphaStar): weight ∝ base · max(floor, (1 − winrate)^power), so a learner
 * mostly meets opponents it loses to, and the floor keeps every opponent in play.
 */

export interface WinRateEntry {
  rate: number;
  games: number;
}
export type WinRateJSON = Record<string, Record<string, WinRateEntry>>;

export class WinRateTable {
  private readonly table = new Map<string, Map<string, WinRateEntry>>();

  constructor(readonly prior = 0.5, readonly rate = 0.05) {
    if (!(prior >= 0 && prior <= 1)) throw new Error(`WinRateTable: prior must be in [0, 1], got ${prior}`);
    if (!(rate > 0 && rate <= 1)) throw new Error(`WinRateTable: rate must be in (0, 1], got ${rate}`);
  }

  /** Record one game's result for `learner` against `opponent` (1 win, 0 loss, ½ draw). */
  record(learner: string, opponent: string, result: number): void {
    if (!(result >= 0 && result <= 1)) throw new Error(`WinRateTable.record: result must be in [0, 1] (1 win, 0 loss), got ${result}`);
    let row = this.table.get(learner);
    if (!row) this.table.set(learner, (row = new Map()));
    const e = row.get(opponent) ?? { rate: this.prior, games: 0 };
    const alpha = Math.max(this.rate, 1 / (e.games + 1));
    row.set(opponent, { rate: e.rate + alpha * (result - e.rate), games: e.games + 1 });
  }

  /** The learner's running win rate against the opponent (`prior` before any game). */
  winRate(learner: string, opponent: string): number {
    return this.table.get(learner)?.get(opponent)?.rate ?? this.prior;
  }

  games(learner: string, opponent: string): number {
    return this.table.get(learner)?.get(opponent)?.games ?? 0;
  }

  /** Replace `learner`'s row by a copy of `source`'s (after an exploit the two share weights). */
  copyRow(source: string, learner: string): void {
    const row = this.table.get(source);
    if (row) this.table.set(learner, new Map([...row].map(([k, v]) => [k, { ...v }])));
    else this.table.delete(learner);
  }

  /** Forget an opponent (e.g. a snapshot dropped from the league). */
  dropOpponent(opponent: string): void {
    for (const row of this.table.values()) row.delete(opponent);
  }

  toJSON(): WinRateJSON {
    const out: WinRateJSON = {};
    for (const [l, row] of this.table) out[l] = Object.fromEntries([...row].map(([k, v]) => [k, { ...v }]));
    return out;
  }

  static fromJSON(json: WinRateJSON, prior: number, rate: number): WinRateTable {
    const t = new WinRateTable(prior, rate);
    for (const [l, row] of Object.entries(json)) t.table.set(l, new Map(Object.entries(row).map(([k, v]) => [k, { rate: v.rate, games: v.games }])));
    return t;
  }
}

/** PFSP priority of one opponent from the learner's win rate against it. */
export function pfspPriority(winRate: number, power: number, floor: number): number {
  return Math.max(floor, Math.pow(Math.max(0, 1 - winRate), power));
}

/** Sampling weights of a pool for one learner: base weights, scaled by PFSP priorities in 'pfsp' mode. */
export function poolWeights(
  pool: readonly { name: string; weight: number }[],
  winRate: (opponent: string) => number,
  o: { mode: 'fixed' | 'pfsp'; power: number; floor: number },
): { name: string; weight: number }[] {
  return pool.map((p) => ({ name: p.name, weight: o.mode === 'pfsp' ? p.weight * pfspPriority(winRate(p.name), o.power, o.floor) : p.weight }));
}
