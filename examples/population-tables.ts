/**
 * The tables of examples/population-results.ts (league vs fixed pool), one builder per task:
 * - kuhn: chips per hand, next to the exact oracles (best fixed vs the mixture, best response);
 * - tictactoe: success by game k (MAGE's metric), not-lost rate and reward per game, next to the
 *   minimax oracles, and the share of training trials per opponent (PFSP, snapshots).
 * Pure: they read EvalReports (every row played on the same trials, so league − fixed is paired
 * per trial) and training counts, so a test can check them on hand-made reports.
 */
import { meanSe, type EvalReport, type OpponentEval } from '../src/eval/trials.ts';
import { finalRewards, notLostAt, opponentEval, rewardAt, successAt } from '../src/eval/trial-measures.ts';
import { acrossSeeds, diff, f3 } from './seed-stats.ts';

export const ARM_NAMES = ['league', 'fixed'] as const;
export type Arm = (typeof ARM_NAMES)[number];

/** Trials against one opponent during training: count and summed score (1 win, ½ draw, 0 loss; src/train/population.ts). */
export type TrainingCounts = Record<string, { trials: number; score: number }>;

export interface PopulationEvals {
  seeds: number[];
  /** The learners' reports of one arm and seed, all on the same trials. */
  reports: (arm: Arm, seed: number) => EvalReport[];
  /** Scripted rows (random, oracles) on the same trials, in table order: name → its report(s). */
  scripted: Record<string, EvalReport[]>;
  /** Evaluation opponents, in table order. */
  opponents: string[];
  /** Training opponents (the others are marked unseen). */
  trained: ReadonlySet<string>;
  /** Episodes per trial. */
  K: number;
}

export interface TaskTables {
  /** Markdown lines between the Reproduce line and the compute table. */
  lines: string[];
  /** Keys added to the results JSON (between `seeds` and `compute`). */
  json: Record<string, unknown>;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const signed = (x: number) => `${x >= 0 ? '+' : ''}${f3(x)}`;

/** Per trial: a per-trial measure averaged over the learners of one arm (or one scripted row). */
function perTrial(reports: EvalReport[], measure: (r: EvalReport) => number[]): number[] {
  const per = reports.map(measure);
  return per[0]!.map((_, i) => mean(per.map((t) => t[i]!)));
}

/**
 * One opponent and one index-aligned per-trial measure: each arm (mean over seeds of the learners'
 * mean), league − fixed paired per trial (se from the per-trial differences, combined across seeds),
 * and the scripted rows' means.
 */
function leagueVsFixed(x: PopulationEvals, measure: (r: EvalReport) => number[]) {
  const at = (arm: Arm, s: number) => perTrial(x.reports(arm, s), measure);
  const cell = (arm: Arm) => acrossSeeds(x.seeds.map((s) => meanSe(at(arm, s))));
  const diffs = x.seeds.map((s) => meanSe(diff(at('league', s), at('fixed', s))));
  const scripted = Object.fromEntries(Object.entries(x.scripted).map(([k, r]) => [k, meanSe(perTrial(r, measure))[0]]));
  return { league: cell('league'), fixed: cell('fixed'), d: acrossSeeds(diffs), perSeed: diffs.map((d) => d[0]), scripted };
}

function leagueVsFixedRow(label: string, c: ReturnType<typeof leagueVsFixed>): string {
  const { league: L, fixed: F, d: D } = c;
  return `| ${label} | ${f3(L.mean)} (sd ${f3(L.sd)}, se ${f3(L.se)}) | ${f3(F.mean)} (sd ${f3(F.sd)}, se ${f3(F.se)}) | **${signed(D.mean)}** (se ${f3(D.se)}, sd ${f3(D.sd)}) | ${c.perSeed.map(signed).join(' / ')} | ${Object.values(c.scripted).map(f3).join(' | ')} |`;
}

const labelOf = (x: PopulationEvals) => (name: string) => (x.trained.has(name) ? name : `${name} (unseen)`);

/** Kuhn poker: chips per hand; scripted rows random, 'oracle: best fixed vs mixture', 'oracle: best response'. */
export function kuhnTables(x: PopulationEvals): TaskTables {
  const { seeds, opponents, K } = x;
  const label = labelOf(x);
  const handOf = (name: string, k: number) => (r: EvalReport) => opponentEval(r, name).trialRewards.map((t) => t[k]!);
  const perDeal = (reports: EvalReport[], name: string, k: number) => perTrial(reports, handOf(name, k));

  // 1. Final hand per opponent: each arm (mean over seeds of the learners' mean), league − fixed paired per deal.
  const last = K - 1;
  const main1 = [`| opponent | league | fixed pool | league − fixed (paired per deal) | per seed | ${Object.keys(x.scripted).join(' | ')} |`, `|---|---|---|---|---|${Object.keys(x.scripted).map(() => '---').join('|')}|`];
  const json: Record<string, unknown> = {};
  for (const name of opponents) {
    const c = leagueVsFixed(x, handOf(name, last));
    json[name] = { league: c.league, fixed: c.fixed, leagueMinusFixed: { ...c.d, perSeed: c.perSeed }, ...c.scripted };
    main1.push(leagueVsFixedRow(label(name), c));
  }

  // 2. Per opponent × hand: mean return (mean over seeds and learners).
  const hands = Array.from({ length: K }, (_, k) => k);
  const byHand = [`| opponent | arm | ${hands.map((k) => `hand ${k}`).join(' | ')} |`, `|---|---|${hands.map(() => '---').join('|')}|`];
  for (const name of opponents) {
    for (const arm of ARM_NAMES) byHand.push(`| ${label(name)} | ${arm} | ${hands.map((k) => f3(mean(seeds.map((s) => mean(perDeal(x.reports(arm, s), name, k)))))).join(' | ')} |`);
    byHand.push(`| ${label(name)} | oracle: best fixed | ${hands.map((k) => f3(mean(perDeal(x.scripted['oracle: best fixed vs mixture']!, name, k)))).join(' | ')} |`);
  }

  // 3. Per opponent × seat, final hand (mean over seeds and learners of the per-seat means).
  const seatStats = (reps: EvalReport[], name: string, seat: string) => mean(reps.map((r) => (r.opponents.find((o) => o.opponent === name) as OpponentEval).bySeat?.[seat]?.[last]?.meanReturn ?? Number.NaN));
  const seats = Object.keys(x.reports('league', seeds[0]!)[0]!.opponents[0]!.bySeat ?? {}).sort();
  const bySeat = [`| opponent | ${seats.flatMap((st) => ARM_NAMES.map((a) => `${a}, seat ${st}`)).join(' | ')} | ${seats.map((st) => `best response, seat ${st}`).join(' | ')} |`, `|---|${seats.flatMap(() => ARM_NAMES.map(() => '---')).join('|')}|${seats.map(() => '---').join('|')}|`];
  for (const name of opponents) {
    const cells = seats.flatMap((st) => ARM_NAMES.map((a) => f3(mean(seeds.map((s) => seatStats(x.reports(a, s), name, st))))));
    bySeat.push(`| ${label(name)} | ${cells.join(' | ')} | ${seats.map((st) => f3(seatStats(x.scripted['oracle: best response']!, name, st))).join(' | ')} |`);
  }

  return {
    lines: [
      `### Hand ${last} (the last) per opponent: chips, mean over seeds of the learners' mean (sd across seeds, se of evaluation)`, '', ...main1, '',
      '### Per opponent × hand', '', ...byHand, '',
      `### Per opponent × seat, hand ${last}`, '', ...bySeat, '',
    ],
    json: { finalHand: json },
  };
}

/** Seats in play order where the reports have them (X moves first). */
function tttSeats(r: EvalReport): string[] {
  const have = Object.keys(r.opponents[0]?.bySeat ?? {});
  return [...['X', 'O'].filter((s) => have.includes(s)), ...have.filter((s) => s !== 'X' && s !== 'O').sort()];
}

/**
 * Tic-tac-toe: per trial, success by game k (won some game ≤ k; a trial stops once won, so a shorter
 * trial counts as won), not lost (draw or win) and reward; scripted rows in `x.scripted` (random and
 * the minimax oracles). `pool` = the training opponents with their base weights; `training(arm, seed)`
 * = trials against each opponent over the run (snapshots are named `<member>@<round>`).
 */
export function tttTables(x: PopulationEvals, pool: readonly { name: string; weight: number }[], training: (arm: Arm, seed: number) => TrainingCounts): TaskTables {
  const { seeds, opponents, K } = x;
  const label = labelOf(x);
  const last = K - 1;
  const scriptedNames = Object.keys(x.scripted);

  // 1. Final game per opponent, paired per trial (all three measures are defined for every trial).
  const finals: { key: string; title: string; measure: (name: string) => (r: EvalReport) => number[] }[] = [
    { key: 'success', title: `Success by game ${last} (won some game ≤ ${last}; MAGE's metric)`, measure: (name) => (r) => successAt(r, name, last) },
    { key: 'notLost', title: 'Not lost (draw or win) in the final game: the last game each trial played (a trial stops once won)', measure: (name) => (r) => finalRewards(r, name).map((v) => (v >= 0 ? 1 : 0)) },
    { key: 'reward', title: 'Reward of the final game (the last each trial played; win > 0, draw 0, loss < 0)', measure: (name) => (r) => finalRewards(r, name) },
  ];
  const json: Record<string, Record<string, unknown>> = {};
  const finalLines: string[] = [];
  for (const f of finals) {
    finalLines.push(`#### ${f.title}`, '', `| opponent | league | fixed pool | league − fixed (paired per trial) | per seed | ${scriptedNames.join(' | ')} |`, `|---|---|---|---|---|${scriptedNames.map(() => '---').join('|')}|`);
    for (const name of opponents) {
      const c = leagueVsFixed(x, f.measure(name));
      (json[name] ??= {})[f.key] = { league: c.league, fixed: c.fixed, leagueMinusFixed: { ...c.d, perSeed: c.perSeed }, ...c.scripted };
      finalLines.push(leagueVsFixedRow(label(name), c));
    }
    finalLines.push('');
  }

  // 2. Per opponent × game: each row's mean over its trials, pooled over learners and seeds (reward and
  // not-lost count the trials that played game k, which can be none: '–'; success counts every trial).
  const games = Array.from({ length: K }, (_, k) => k);
  const perGame: { title: string; measure: (r: EvalReport, name: string, k: number) => number[] }[] = [
    { title: 'Success by game k (won some game ≤ k)', measure: successAt },
    { title: 'Not lost (draw or win) in game k, among the trials that played it', measure: notLostAt },
    { title: 'Mean reward of game k, among the trials that played it', measure: rewardAt },
  ];
  const pooled = (reps: EvalReport[], f: (r: EvalReport) => number[]) => mean(reps.flatMap(f));
  const byGame: string[] = [];
  for (const g of perGame) {
    byGame.push(`#### ${g.title}`, '', `| opponent | row | ${games.map((k) => `game ${k}`).join(' | ')} |`, `|---|---|${games.map(() => '---').join('|')}|`);
    for (const name of opponents) {
      for (const arm of ARM_NAMES) byGame.push(`| ${label(name)} | ${arm} | ${games.map((k) => f3(pooled(seeds.flatMap((s) => x.reports(arm, s)), (r) => g.measure(r, name, k)))).join(' | ')} |`);
      for (const sn of scriptedNames) byGame.push(`| ${label(name)} | ${sn} | ${games.map((k) => f3(pooled(x.scripted[sn]!, (r) => g.measure(r, name, k)))).join(' | ')} |`);
    }
    byGame.push('');
  }

  // 3. Per opponent × seat, last game, from the reports' per-seat statistics (in a same_state trial the
  // seat is the trial's): success = mean over learners and seeds; reward pooled over the trials that played it.
  const seats = tttSeats(x.reports('league', seeds[0]!)[0]!);
  const seatRows = [...ARM_NAMES, ...scriptedNames.filter((n) => n.startsWith('oracle:'))];
  const repsOf = (row: string) => (row === 'league' || row === 'fixed' ? seeds.flatMap((s) => x.reports(row, s)) : x.scripted[row]!);
  const seatStat = (row: string, name: string, seat: string, stat: 'success' | 'reward') => {
    const eps = repsOf(row).map((r) => opponentEval(r, name).bySeat?.[seat]?.[last]);
    if (stat === 'success') return mean(eps.map((e) => e?.successRate ?? Number.NaN));
    const n = eps.reduce((a, e) => a + (e?.n ?? 0), 0);
    return eps.reduce((a, e) => a + (e && e.n > 0 ? e.meanReturn * e.n : 0), 0) / n;
  };
  const bySeat = [`| opponent | measure | ${seats.flatMap((st) => seatRows.map((r) => `${r}, ${st}`)).join(' | ')} |`, `|---|---|${seats.flatMap(() => seatRows.map(() => '---')).join('|')}|`];
  for (const name of opponents) {
    for (const [stat, what] of [['success', `success by game ${last}`], ['reward', `reward of game ${last} (trials that played it)`]] as const) {
      bySeat.push(`| ${label(name)} | ${what} | ${seats.flatMap((st) => seatRows.map((r) => f3(seatStat(r, name, st, stat)))).join(' | ')} |`);
    }
  }

  // 4. Who the learners trained against: share of training trials and mean score per opponent (snapshots pooled).
  const group = (opp: string) => (opp.includes('@') ? 'snapshots (all)' : opp);
  const totals = Object.fromEntries(ARM_NAMES.map((arm) => {
    const t: TrainingCounts = {};
    for (const s of seeds) for (const [opp, c] of Object.entries(training(arm, s))) {
      const g = (t[group(opp)] ??= { trials: 0, score: 0 });
      g.trials += c.trials;
      g.score += c.score;
    }
    return [arm, t];
  })) as Record<Arm, TrainingCounts>;
  const W = pool.reduce((a, p) => a + p.weight, 0);
  const rowsOf = [...pool.map((p) => p.name), ...new Set(ARM_NAMES.flatMap((a) => Object.keys(totals[a]).filter((n) => !pool.some((p) => p.name === n))))];
  const trainedLines = [`| opponent | base weight share | ${ARM_NAMES.map((a) => `${a}: share of trials | ${a}: mean score`).join(' | ')} |`, `|---|---|${ARM_NAMES.map(() => '---|---').join('|')}|`];
  const trainingJson: Record<string, Record<string, { share: number; trials: number; meanScore: number }>> = {};
  for (const name of rowsOf) {
    const w = pool.find((p) => p.name === name)?.weight;
    const cells = ARM_NAMES.map((a) => {
      const n = Object.values(totals[a]).reduce((acc, c) => acc + c.trials, 0);
      const c = totals[a][name] ?? { trials: 0, score: 0 };
      (trainingJson[a] ??= {})[name] = { share: c.trials / n, trials: c.trials, meanScore: c.score / c.trials };
      return `${f3(c.trials / n)} | ${f3(c.score / c.trials)}`;
    });
    trainedLines.push(`| ${name} | ${w === undefined ? '–' : f3(w / W)} | ${cells.join(' | ')} |`);
  }

  return {
    lines: [
      `### Game ${last} (the last) per opponent: mean over seeds of the learners' mean (sd across seeds, se of evaluation)`, '', ...finalLines,
      '### Per opponent × game', '', ...byGame,
      `### Per opponent × seat (X moves first), game ${last}`, '', ...bySeat, '',
      '### Training opponents: share of training trials and mean score (win 1, draw ½, loss 0), summed over seeds and learners', '', ...trainedLines, '',
    ],
    json: { finalGame: json, trainingOpponents: trainingJson },
  };
}
