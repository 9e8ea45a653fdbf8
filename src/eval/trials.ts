/**
 * Trial evaluation: per opponent and episode index, the mean episode return and win rate with their
 * standard errors, for a policy (the engine) or a uniformly random policy over legal actions.
 * Seeds are fixed so every policy is evaluated on the same initial states.
 */
import type { TextEnv } from '../envs/types.ts';
import type { InferenceEngine } from '../engine/types.ts';
import type { EpisodeRecord, Trajectory } from '../core/types.ts';
import { Rng } from '../core/rng.ts';
import { deriveSeed, seatOf, TrialConfigSchema, trialWorkflow, type TrialItem } from '../agents/trial.ts';
import { collectRollouts } from '../train/rollout-controller.ts';
import type { z } from 'zod';

/** What evaluation reads of a trial: its episode outcomes and its number of invalid turns. */
export interface TrialOutcome {
  episodes: EpisodeRecord[];
  invalidTurns: number;
}

/** A trajectory's outcome (its play steps' validity counts the invalid turns). */
export function trialOutcome(t: Trajectory): TrialOutcome {
  if (!t.episodes) throw new Error(`trial evaluation: trajectory ${t.id} has no episode records (not a trial)`);
  return { episodes: t.episodes, invalidTurns: t.samples.filter((s) => s.step?.kind === 'play' && !s.step.valid).length };
}

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
  /** Each trial's episode rewards, trial i on seed evalSeed(seed, i): policies evaluated with the same seed can be paired per deal. */
  trialRewards: number[][];
}

export interface EvalReport {
  policy: string;
  trialConfig: z.output<typeof TrialConfigSchema>;
  opponents: OpponentEval[];
}

/**
 * EvalReports read back from JSON. JSON has no NaN, so a statistic that was undefined (no trial
 * reached the episode, or only one for an se) was written as null, and null reads as 0 in
 * arithmetic. This turns those back into NaN, so tables show "–" instead of a made-up 0.
 */
export function reviveEvalReports(reports: EvalReport[]): EvalReport[] {
  const num = (x: unknown) => (typeof x === 'number' ? x : Number.NaN);
  const episodes = (es: EpisodeStats[]) => es.map((e) => ({ ...e, meanReturn: num(e.meanReturn), seReturn: num(e.seReturn), winRate: num(e.winRate), seWin: num(e.seWin), successRate: num(e.successRate) }));
  return reports.map((r) => ({
    ...r,
    opponents: r.opponents.map((o) => ({
      ...o,
      episodes: episodes(o.episodes),
      finalReturn: num(o.finalReturn), seFinal: num(o.seFinal), invalidRate: num(o.invalidRate),
      ...(o.bySeat ? { bySeat: Object.fromEntries(Object.entries(o.bySeat).map(([seat, es]) => [seat, episodes(es)])) } : {}),
    })),
  }));
}

/** Mean and its standard error (NaN where undefined: no values, or one). */
export function meanSe(xs: number[]): [number, number] {
  const n = xs.length;
  if (n === 0) return [Number.NaN, Number.NaN];
  const m = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return [m, Number.NaN];
  const v = xs.reduce((a, x) => a + (x - m) ** 2, 0) / (n - 1);
  return [m, Math.sqrt(v / n)];
}

/** Per-episode statistics over the trials; `seat` keeps only the episodes played from that seat. */
function episodeStats(infos: TrialOutcome[], K: number, seat?: string): EpisodeStats[] {
  const episodes: EpisodeStats[] = [];
  for (let k = 0; k < K; k++) {
    const reached = infos.filter((i) => i.episodes.length > k && (seat === undefined || i.episodes[k]!.seat === seat));
    const [mr, sr] = meanSe(reached.map((i) => i.episodes[k]!.reward));
    const [mw, sw] = meanSe(reached.map((i) => (i.episodes[k]!.won ? 1 : 0)));
    // Trials played from this seat up to episode k (the seat of the last episode they reached).
    const pool = seat === undefined ? infos : infos.filter((i) => i.episodes[Math.min(k, i.episodes.length - 1)]?.seat === seat);
    const success = pool.filter((i) => i.episodes.slice(0, k + 1).some((e) => e.won)).length / Math.max(1, pool.length);
    episodes.push({ episode: k, n: reached.length, meanReturn: mr, seReturn: sr, winRate: mw, seWin: sw, successRate: success });
  }
  return episodes;
}

function summarise(opponent: string, infos: TrialOutcome[], K: number, turns: number): OpponentEval {
  const episodes = episodeStats(infos, K);
  const [fm, fs] = meanSe(infos.map((i) => i.episodes[i.episodes.length - 1]!.reward));
  const invalid = infos.reduce((a, i) => a + i.invalidTurns, 0) / Math.max(1, turns);
  const out: OpponentEval = { opponent, trials: infos.length, episodes, finalReturn: fm, seFinal: fs, invalidRate: invalid, trialRewards: infos.map((i) => i.episodes.map((e) => e.reward)) };
  const seats = [...new Set(infos.flatMap((i) => i.episodes.map((e) => e.seat)))].filter((s) => s !== '').sort();
  if (seats.length > 0) out.bySeat = Object.fromEntries(seats.map((s) => [s, episodeStats(infos, K, s)]));
  return out;
}

export interface EvalOptions {
  opponents: string[];
  trials: number;
  seed: number;
  makeEnv: (opponent: string) => TextEnv;
  trial: z.input<typeof TrialConfigSchema>;
  /** Called as trials finish: `done` of `total` (opponents × trials), for a progress bar. */
  onProgress?: (done: number, total: number) => void;
}

/** Counts finished trials for `onProgress` (a no-op without one). */
function trialCounter(o: EvalOptions): () => void {
  const total = o.opponents.length * o.trials;
  let done = 0;
  return o.onProgress ? () => o.onProgress!(++done, total) : () => {};
}

/**
 * Evaluate the engine's policy in K-episode trials: the trial workflow run by the rollout controller,
 * as in training, without a trainer. Trial i against every opponent uses seed evalSeed(seed, i).
 */
export async function evaluatePolicy(name: string, engine: InferenceEngine, o: EvalOptions): Promise<EvalReport> {
  const trialConfig = TrialConfigSchema.parse(o.trial);
  const play = trialWorkflow(engine, o.makeEnv, trialConfig);
  const finished = trialCounter(o);
  // Trials against one opponent run concurrently: each counts when its own trajectory is back.
  const workflow: typeof play = async (item, ctx) => {
    const t = await play(item, ctx);
    finished();
    return t;
  };
  const opponents: OpponentEval[] = [];
  for (const opp of o.opponents) {
    const items: TrialItem[] = Array.from({ length: o.trials }, (_, i) => ({ opponent: opp, seed: evalSeed(o.seed, i) }));
    const trajs = await collectRollouts(items, workflow);
    const turns = trajs.reduce((a, t) => a + t.samples.filter((s) => s.step?.kind === 'play').length, 0);
    opponents.push(summarise(opp, trajs.map(trialOutcome), trialConfig.episodes, turns));
  }
  return { policy: name, trialConfig, opponents };
}

/** Picks a scripted player's action from the env's state (an oracle, a heuristic, a random player). */
export type ScriptedPlayer = (env: TextEnv, opponent: string, rng: Rng) => string;

/** A uniformly random policy over the env's legal actions, in the same trial protocol. */
export function evaluateRandom(o: EvalOptions): EvalReport {
  return evaluateScripted('random', (env, _opponent, rng) => {
    const legal = env.legalActions();
    return legal[rng.int(legal.length)]!;
  }, o);
}

/** A scripted player in the same trial protocol and on the same seeds (deals) as evaluatePolicy. */
export function evaluateScripted(name: string, play: ScriptedPlayer, o: EvalOptions): EvalReport {
  const trialConfig = TrialConfigSchema.parse(o.trial);
  const finished = trialCounter(o);
  const opponents: OpponentEval[] = [];
  for (const opp of o.opponents) {
    const infos: TrialOutcome[] = [];
    let turns = 0;
    for (let i = 0; i < o.trials; i++) {
      const env = o.makeEnv(opp);
      const seed = evalSeed(o.seed, i);
      const rng = new Rng(seed ^ 0xabcdef);
      const info: TrialOutcome = { episodes: [], invalidTurns: 0 };
      for (let k = 0; k < trialConfig.episodes; k++) {
        if (k === 0) env.reset(seed);
        else if (trialConfig.stateMode === 'same_state') env.restart();
        else env.reset(deriveSeed(seed, k));
        const seat = seatOf(env);
        let done = false;
        for (let t = 0; t < trialConfig.maxTurns && !done; t++) {
          done = env.step(`<action> ${play(env, opp, rng)} </action>`).done;
          turns++;
        }
        info.episodes.push({ reward: env.episodeReturn(), won: env.won(), done, seat });
        if (trialConfig.stopWhenWon && env.won()) break;
      }
      infos.push(info);
      finished();
    }
    opponents.push(summarise(opp, infos, trialConfig.episodes, turns));
  }
  return { policy: name, trialConfig, opponents };
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
