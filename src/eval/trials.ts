/**
 * Trial evaluation: per opponent and episode index, the mean episode return and win rate with their
 * standard errors, for a policy (the engine) or a uniformly random policy over legal actions.
 * Seeds are fixed so every policy is evaluated on the same initial states.
 */
import type { TextEnv } from '../envs/types.ts';
import type { InferenceEngine } from '../engine/types.ts';
import { Rng } from '../core/rng.ts';
import { deriveSeed, runTrial, seatOf, TrialConfigSchema, type TrialInfo } from '../agents/trial.ts';
import type { z } from 'zod';

export interface EpisodeStats {
  episode: number;
  /** Trials that reached this episode (fewer than n when trials stop once won). */
  n: number;
  meanReturn: number;
  seReturn: number;
  winRate: number;
  seWin: number;
  /** Won in any episode ≤ k (MAGE success_rate[k]); counts trials that stopped early as won. */
  successRate: number;
}

export interface OpponentEval {
  opponent: string;
  trials: number;
  episodes: EpisodeStats[];
  /** Mean return of the last episode each trial played (the meta-RL objective). */
  finalReturn: number;
  seFinal: number;
  invalidRate: number;
  /** The same statistics split by the agent's seat in that episode (games with seats only). */
  bySeat?: Record<string, EpisodeStats[]>;
}

export interface EvalReport {
  policy: string;
  trialConfig: z.output<typeof TrialConfigSchema>;
  opponents: OpponentEval[];
}

function meanSe(xs: number[]): [number, number] {
  const n = xs.length;
  if (n === 0) return [Number.NaN, Number.NaN];
  const m = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return [m, Number.NaN];
  const v = xs.reduce((a, x) => a + (x - m) ** 2, 0) / (n - 1);
  return [m, Math.sqrt(v / n)];
}

/** Per-episode statistics over the trials; `seat` keeps only the episodes played from that seat. */
function episodeStats(infos: TrialInfo[], K: number, seat?: string): EpisodeStats[] {
  const episodes: EpisodeStats[] = [];
  for (let k = 0; k < K; k++) {
    const reached = infos.filter((i) => i.episodeReturns.length > k && (seat === undefined || i.episodeSeats[k] === seat));
    const [mr, sr] = meanSe(reached.map((i) => i.episodeReturns[k]!));
    const [mw, sw] = meanSe(reached.map((i) => (i.episodeWon[k] ? 1 : 0)));
    // Trials played from this seat up to episode k (the seat of the last episode they reached).
    const pool = seat === undefined ? infos : infos.filter((i) => i.episodeSeats[Math.min(k, i.episodeSeats.length - 1)] === seat);
    const success = pool.filter((i) => i.episodeWon.slice(0, k + 1).some(Boolean)).length / Math.max(1, pool.length);
    episodes.push({ episode: k, n: reached.length, meanReturn: mr, seReturn: sr, winRate: mw, seWin: sw, successRate: success });
  }
  return episodes;
}

function summarise(opponent: string, infos: TrialInfo[], K: number, turns: number): OpponentEval {
  const episodes = episodeStats(infos, K);
  const [fm, fs] = meanSe(infos.map((i) => i.episodeReturns[i.episodeReturns.length - 1]!));
  const invalid = infos.reduce((a, i) => a + i.invalidTurns, 0) / Math.max(1, turns);
  const out: OpponentEval = { opponent, trials: infos.length, episodes, finalReturn: fm, seFinal: fs, invalidRate: invalid };
  const seats = [...new Set(infos.flatMap((i) => i.episodeSeats))].filter((s) => s !== '').sort();
  if (seats.length > 0) out.bySeat = Object.fromEntries(seats.map((s) => [s, episodeStats(infos, K, s)]));
  return out;
}

export interface EvalOptions {
  opponents: string[];
  trials: number;
  seed: number;
  makeEnv: (opponent: string) => TextEnv;
  trial: z.input<typeof TrialConfigSchema>;
}

/** Evaluate the engine's policy in K-episode trials. */
export async function evaluatePolicy(name: string, engine: InferenceEngine, o: EvalOptions): Promise<EvalReport> {
  const trialConfig = TrialConfigSchema.parse(o.trial);
  const opponents: OpponentEval[] = [];
  for (const opp of o.opponents) {
    const trajs = await Promise.all(
      Array.from({ length: o.trials }, (_, i) => runTrial(o.makeEnv(opp), engine, trialConfig, { seed: evalSeed(o.seed, i), groupId: `eval/${opp}/${i}`, opponent: opp })),
    );
    const turns = trajs.reduce((a, t) => a + t.samples.filter((s) => (s.meta as { kind?: string })?.kind === 'play').length, 0);
    opponents.push(summarise(opp, trajs.map((t) => t.info as unknown as TrialInfo), trialConfig.episodes, turns));
  }
  return { policy: name, trialConfig, opponents };
}

/** A uniformly random policy over the env's legal actions, in the same trial protocol. */
export function evaluateRandom(o: EvalOptions): EvalReport {
  const trialConfig = TrialConfigSchema.parse(o.trial);
  const opponents: OpponentEval[] = [];
  for (const opp of o.opponents) {
    const infos: TrialInfo[] = [];
    let turns = 0;
    for (let i = 0; i < o.trials; i++) {
      const env = o.makeEnv(opp);
      const seed = evalSeed(o.seed, i);
      const rng = new Rng(seed ^ 0xabcdef);
      const info: TrialInfo = { opponent: opp, seed, episodeReturns: [], episodeWon: [], episodeSeats: [], invalidTurns: 0, reflections: [], truncatedPrompts: 0 };
      for (let k = 0; k < trialConfig.episodes; k++) {
        if (k === 0) env.reset(seed);
        else if (trialConfig.stateMode === 'same_state') env.restart();
        else env.reset(deriveSeed(seed, k));
        info.episodeSeats.push(seatOf(env));
        let done = false;
        for (let t = 0; t < trialConfig.maxTurns && !done; t++) {
          const legal = env.legalActions();
          done = env.step(`<action> ${legal[rng.int(legal.length)]} </action>`).done;
          turns++;
        }
        info.episodeReturns.push(env.episodeReturn());
        info.episodeWon.push(env.won());
        if (trialConfig.stopWhenWon && env.won()) break;
      }
      infos.push(info);
    }
    opponents.push(summarise(opp, infos, trialConfig.episodes, turns));
  }
  return { policy: 'random', trialConfig, opponents };
}

/** Eval seeds are disjoint from training seeds (training draws full 32-bit seeds from its own stream). */
export function evalSeed(base: number, i: number): number {
  return (0x70000000 + base * 100003 + i) >>> 0;
}

/** Markdown table: one row per opponent × episode, one column group per report. */
export function evalTable(reports: EvalReport[]): string {
  const header = `| opponent | episode | ${reports.map((r) => `${r.policy} return ± se | ${r.policy} win`).join(' | ')} |`;
  const sep = `|---|---|${reports.map(() => '---|---').join('|')}|`;
  const rows: string[] = [];
  const first = reports[0]!;
  for (const opp of first.opponents) {
    for (const ep of opp.episodes) {
      const cells = reports.map((r) => {
        const e = r.opponents.find((x) => x.opponent === opp.opponent)?.episodes[ep.episode];
        return e ? `${fmt(e.meanReturn)} ± ${fmt(e.seReturn)} | ${fmt(e.winRate)}` : '– | –';
      });
      rows.push(`| ${opp.opponent} | ${ep.episode} | ${cells.join(' | ')} |`);
    }
  }
  return [header, sep, ...rows].join('\n');
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : '–';
}
