/**
 * The dashboard's curves and tables of a population run (src/run/population-run.ts), computed on the
 * server so the page only draws them. Such a run logs one metrics.jsonl line per (round, member) —
 * `round`, `member`, `hyper`, `opponents` and the usual step fields, with `step` always 0 — so its
 * x axis is the round and every curve has one series per member; the per-opponent win rate sums the
 * members' scores (as `agentrl plot` does, src/eval/run-plots.ts), and the table shows them per member.
 *
 * Incremental like the rows themselves: for a client that holds rows [0, since) the view carries only
 * the rounds from the first one that rows [since, …) touch (`fromIndex`: the client keeps its first
 * fromIndex rounds and appends these). When the new rows change the charts' layout (a member, an
 * opponent or a hyperparameter seen for the first time) fromIndex is 0 and the view is whole.
 */
import type { MetricsRow } from './run-reader.ts';

export interface PopulationSeries {
  label: string;
  /** One value per round of the view (null: no line, or no such number in it). */
  y: (number | null)[];
  /** Colour index: the member's position (the opponent's for win rates), the same in every chart. */
  color: number;
  /** Drawn dashed (the second metric of a member in a two-metric chart). */
  dash?: boolean;
}

export interface PopulationChart {
  key: string;
  title: string;
  series: PopulationSeries[];
}

export interface OpponentScore {
  trials: number;
  score: number;
  /** score / trials (win 1, draw ½), null without trials. */
  winRate: number | null;
}

/** The last rounds of a run by member × episode and by opponent × member. */
export interface PopulationTable {
  /** The rounds averaged over (the last TABLE_ROUNDS logged), ascending. */
  rounds: number[];
  /** Episodes per trial (the longest episodeReward). */
  episodes: number;
  /** Per member (in `members` order): mean episodeReward[k] and winRate[k] over its lines of those rounds. */
  members: { member: string; reward: (number | null)[]; winRate: (number | null)[] }[];
  /** Per opponent met in those rounds: summed over them, per member (in `members` order) and over all members. */
  opponents: { opponent: string; byMember: OpponentScore[]; all: OpponentScore }[];
}

export interface PopulationView {
  xLabel: 'round';
  members: string[];
  /** The client keeps its first fromIndex rounds (and values) and appends these. */
  fromIndex: number;
  rounds: number[];
  charts: PopulationChart[];
  table: PopulationTable;
}

export const TABLE_ROUNDS = 10;

type Data = Record<string, unknown>;

const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const isObject = (x: unknown): x is Data => !!x && typeof x === 'object' && !Array.isArray(x);
const roundOf = (d: Data): number | null => (typeof d.member === 'string' ? num(d.round) : null);
const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** A metrics.jsonl of a population run: its lines name a member. */
export function isPopulationRows(rows: readonly MetricsRow[]): boolean {
  return rows.some((r) => typeof r.data.member === 'string');
}

/** The highest round logged (a population run's progress; its config's trainer.steps counts rounds). */
export function lastRound(rows: readonly MetricsRow[]): number {
  let last = 0;
  for (const r of rows) last = Math.max(last, roundOf(r.data) ?? 0);
  return last;
}

interface Layout {
  members: string[];
  opponents: string[];
  hyper: string[];
  episodes: number;
}

function layoutOf(rows: readonly MetricsRow[]): Layout {
  const members = new Set<string>();
  const opponents = new Set<string>();
  const hyper = new Set<string>();
  let episodes = 0;
  for (const { data: d } of rows) {
    if (roundOf(d) === null) continue;
    members.add(d.member as string);
    if (isObject(d.opponents)) for (const o of Object.keys(d.opponents)) opponents.add(o);
    // First-seen order: the config's (lr, entropyCoef, gammaTrial).
    if (isObject(d.hyper)) for (const [k, v] of Object.entries(d.hyper)) if (typeof v === 'number') hyper.add(k);
    if (Array.isArray(d.episodeReward)) episodes = Math.max(episodes, d.episodeReward.length);
  }
  return { members: [...members].sort(byName), opponents: [...opponents].sort(byName), hyper: [...hyper], episodes };
}

/**
 * The lines by round and member. The last line of a (round, member) wins: a resumed population logs
 * the rounds after its last save again.
 */
function grid(rows: readonly MetricsRow[]): Map<number, Map<string, Data>> {
  const g = new Map<number, Map<string, Data>>();
  for (const { data: d } of rows) {
    const round = roundOf(d);
    if (round === null) continue;
    let m = g.get(round);
    if (!m) g.set(round, (m = new Map()));
    m.set(d.member as string, d);
  }
  return g;
}

function opponentScore(d: Data | undefined, o: string): { trials: number; score: number } {
  const s = isObject(d?.opponents) ? d.opponents[o] : undefined;
  return isObject(s) ? { trials: num(s.trials) ?? 0, score: num(s.score) ?? 0 } : { trials: 0, score: 0 };
}

const interleave = <T>(a: T[], b: T[]): T[] => a.flatMap((x, i) => [x, b[i]!]);

const scoreOf = (trials: number, score: number): OpponentScore => ({ trials, score, winRate: trials > 0 ? score / trials : null });

function charts(layout: Layout, rounds: number[], g: Map<number, Map<string, Data>>): PopulationChart[] {
  const perMember = (value: (d: Data) => number | null, suffix = '', dash = false): PopulationSeries[] =>
    layout.members.map((m, i) => ({
      label: `${m}${suffix}`, color: i, ...(dash ? { dash } : {}),
      y: rounds.map((r) => {
        const d = g.get(r)?.get(m);
        return d ? value(d) : null;
      }),
    }));
  const K = layout.episodes;
  const out: PopulationChart[] = [{ key: 'reward', title: 'Reward per member (trajectory reward)', series: perMember((d) => num(d.meanReward)) }];
  if (K > 1) out.push({ key: 'final', title: `Final-episode reward per member (episode ${K})`, series: perMember((d) => (Array.isArray(d.episodeReward) ? num(d.episodeReward[K - 1]) : null)) });
  if (layout.opponents.length) {
    out.push({
      key: 'winrate', title: 'Win rate per opponent, all members together (draw = ½)',
      series: layout.opponents.map((o, i) => ({
        label: o, color: i,
        y: rounds.map((r) => {
          let trials = 0, score = 0;
          for (const d of g.get(r)?.values() ?? []) {
            const s = opponentScore(d, o);
            trials += s.trials;
            score += s.score;
          }
          return trials > 0 ? score / trials : null;
        }),
      })),
    });
  }
  for (const h of layout.hyper) out.push({ key: `hyper-${h}`, title: `${h} per member (PBT changes it)`, series: perMember((d) => (isObject(d.hyper) ? num(d.hyper[h]) : null)) });
  const perSecond = (key: string) => (d: Data) => {
    const x = num(d[key]), s = num(d.seconds);
    return x !== null && s ? x / s : null;
  };
  out.push(
    { key: 'loss', title: 'Loss per member', series: perMember((d) => num(d.loss)) },
    // Members in pairs, so each keeps its colour: entropy solid, KL dashed.
    { key: 'kl', title: 'Entropy (solid) and KL (dashed) per member', series: interleave(perMember((d) => num(d.entropy), ' entropy'), perMember((d) => num(d.kl), ' kl', true)) },
    { key: 'clip', title: 'Clip fraction per member', series: perMember((d) => num(d.clipFrac)) },
    { key: 'samples', title: 'Samples / s per member', series: perMember((d) => num(d.samplesPerSecond)) },
    { key: 'tokens', title: 'Trained tokens / s per member', series: perMember(perSecond('trainedTokens')) },
  );
  return out;
}

const meanOf = (xs: (number | null)[]): number | null => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};

function table(layout: Layout, allRounds: number[], g: Map<number, Map<string, Data>>): PopulationTable {
  const rounds = allRounds.slice(-TABLE_ROUNDS);
  const linesOf = (m: string) => rounds.map((r) => g.get(r)?.get(m)).filter((d): d is Data => !!d);
  const at = (d: Data, key: string, k: number) => (Array.isArray(d[key]) ? num((d[key] as unknown[])[k]) : null);
  return {
    rounds, episodes: layout.episodes,
    members: layout.members.map((member) => {
      const ds = linesOf(member);
      const perEpisode = (key: string) => Array.from({ length: layout.episodes }, (_, k) => meanOf(ds.map((d) => at(d, key, k))));
      return { member, reward: perEpisode('episodeReward'), winRate: perEpisode('winRate') };
    }),
    opponents: layout.opponents.map((opponent) => {
      const byMember = layout.members.map((m) => {
        let trials = 0, score = 0;
        for (const d of linesOf(m)) {
          const s = opponentScore(d, opponent);
          trials += s.trials;
          score += s.score;
        }
        return scoreOf(trials, score);
      });
      const trials = byMember.reduce((a, s) => a + s.trials, 0);
      return { opponent, byMember, all: scoreOf(trials, byMember.reduce((a, s) => a + s.score, 0)) };
    // Snapshots no member met in these rounds (a league retires old ones) would be rows of dashes.
    }).filter((o) => o.all.trials > 0),
  };
}

/**
 * The view of a population run for a client that holds rows [0, since) (pure); null when the rows
 * are not a population's.
 */
export function populationView(rows: readonly MetricsRow[], since = 0): PopulationView | null {
  if (!isPopulationRows(rows)) return null;
  const layout = layoutOf(rows);
  const g = grid(rows);
  const allRounds = [...g.keys()].sort((a, b) => a - b);
  let fromIndex = 0;
  if (since > 0 && JSON.stringify(layoutOf(rows.slice(0, since))) === JSON.stringify(layout)) {
    // Rows are appended round by round, but a resumed run repeats rounds: start at the lowest new one.
    let first = Infinity;
    for (const r of rows.slice(since)) first = Math.min(first, roundOf(r.data) ?? Infinity);
    fromIndex = first === Infinity ? allRounds.length : allRounds.findIndex((r) => r >= first);
  }
  return {
    xLabel: 'round', members: layout.members, fromIndex,
    rounds: allRounds.slice(fromIndex),
    charts: charts(layout, allRounds.slice(fromIndex), g),
    table: table(layout, allRounds, g),
  };
}
