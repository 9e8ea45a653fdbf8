import { describe, expect, it } from 'vitest';
import { TrialConfigSchema } from '../src/agents/trial.ts';
import type { EpisodeStats, EvalReport, OpponentEval } from '../src/eval/trials.ts';
import { finalRewards, notLostAt, rewardAt, successAt } from '../src/eval/trial-measures.ts';
import { tttTables, type Arm, type PopulationEvals, type TrainingCounts } from '../examples/population-tables.ts';

const K = 2;

/** Only what the tables read is meaningful: trialRewards, and bySeat at the last game where given. */
function stats(episode: number, o: Partial<EpisodeStats> = {}): EpisodeStats {
  return { episode, n: 0, meanReturn: Number.NaN, seReturn: Number.NaN, winRate: 0, seWin: 0, successRate: 0, ...o };
}
function report(policy: string, byOpponent: Record<string, { rewards: number[][]; bySeat?: Record<string, Partial<EpisodeStats>> }>): EvalReport {
  const opponents: OpponentEval[] = Object.entries(byOpponent).map(([opponent, v]) => ({
    opponent, trials: v.rewards.length, episodes: [stats(0), stats(1)], finalReturn: 0, seFinal: 0, invalidRate: 0, trialRewards: v.rewards,
    bySeat: Object.fromEntries(Object.entries(v.bySeat ?? { X: {}, O: {} }).map(([seat, s]) => [seat, [stats(0), stats(1, s)]])),
  }));
  return { policy, trialConfig: TrialConfigSchema.parse({ episodes: K, stopWhenWon: true }), opponents };
}

// Two seeds, one learner per arm, 4 trials against 'mcts' (trained) and 2 against 'minimax' (unseen)
// and 'center-first' (trained). A trial stops once won, so a won game is the last entry.
const mm = [[0, 0], [0, 0]];
const won0 = { rewards: [[1], [1]] };
const REPORTS: Record<Arm, Record<number, EvalReport[]>> = {
  league: {
    1: [report('m0', { mcts: { rewards: [[1], [-1, 1], [-1, 0], [0, -1]], bySeat: { O: { n: 1, meanReturn: 0, successRate: 0 }, X: { n: 2, meanReturn: 1, successRate: 0.5 } } }, minimax: { rewards: mm }, 'center-first': won0 })],
    2: [report('m0', { mcts: { rewards: [[1], [1], [-1, -1], [0, 0]], bySeat: { O: { n: 0, successRate: 0 }, X: { n: 1, meanReturn: -1, successRate: 1 } } }, minimax: { rewards: mm }, 'center-first': won0 })],
  },
  fixed: {
    1: [report('m0', { mcts: { rewards: [[-1, -1], [1], [0, 0], [-1, 1]] }, minimax: { rewards: mm }, 'center-first': { rewards: [[1], [0, 1]] } })],
    2: [report('m0', { mcts: { rewards: [[1], [-1, -1], [-1, -1], [0, 0]] }, minimax: { rewards: [[-1, -1], [0, 0]] }, 'center-first': { rewards: [[1], [-1, 1]] } })],
  },
};
const evals: PopulationEvals = {
  seeds: [1, 2], K, opponents: ['mcts', 'minimax', 'center-first'], trained: new Set(['mcts', 'center-first']),
  reports: (arm, seed) => REPORTS[arm][seed]!,
  scripted: {
    random: [report('random', { mcts: { rewards: [[-1, -1], [-1, 0], [1], [-1, -1]] }, minimax: { rewards: [[-1, -1], [-1, -1]] }, 'center-first': { rewards: [[-1, 1], [1]] } })],
    'oracle: minimax': [report('minimax', { mcts: { rewards: [[0, 0], [1], [0, 0], [1]], bySeat: { X: { n: 4, meanReturn: 0.5, successRate: 0.75 } } }, minimax: { rewards: mm }, 'center-first': won0 })],
  },
};
const TRAINING: Record<Arm, Record<number, TrainingCounts>> = {
  league: { 1: { a: { trials: 6, score: 3 }, 'm0@1': { trials: 2, score: 2 } }, 2: { a: { trials: 4, score: 1 }, 'm0@1': { trials: 2, score: 1 }, 'm1@1': { trials: 2, score: 0 } } },
  fixed: { 1: { a: { trials: 8, score: 4 }, b: { trials: 8, score: 2 } }, 2: { a: { trials: 8, score: 6 } } },
};
const tables = tttTables(evals, [{ name: 'a', weight: 3 }, { name: 'b', weight: 1 }], (arm, seed) => TRAINING[arm][seed]!);
const md = tables.lines.join('\n');
/** The body rows of the table under a heading (heading, blank, header, separator, rows…, blank). */
function section(heading: string): string[] {
  const i = tables.lines.findIndex((l) => l.startsWith(heading));
  expect(i, heading).toBeGreaterThanOrEqual(0);
  return tables.lines.slice(i + 4, tables.lines.indexOf('', i + 2));
}

describe('per-trial measures of a stop-when-won trial', () => {
  const r = REPORTS.league[1]![0]!;
  it('success counts a trial that stopped won; not-lost and reward count the trials that played game k', () => {
    expect(successAt(r, 'mcts', 0)).toEqual([1, 0, 0, 0]);
    expect(successAt(r, 'mcts', 1)).toEqual([1, 1, 0, 0]);
    expect(notLostAt(r, 'mcts', 1)).toEqual([1, 1, 0]);
    expect(rewardAt(r, 'mcts', 1)).toEqual([1, 0, -1]);
    expect(finalRewards(r, 'mcts')).toEqual([1, 1, 0, -1]);
  });
});

describe('tic-tac-toe league vs fixed tables (hand-computed)', () => {
  it('final game: league − fixed paired per trial, se from the per-trial differences combined across seeds', () => {
    // Success by game 1: league [1,1,0,0] / [1,1,0,0]; fixed [0,1,0,1] / [1,0,0,0];
    // differences [1,0,0,-1] (mean 0, se √(2/3)/2) and [0,1,0,0] (mean 0.25, se 0.25): se = √(1/6 + 1/16)/2 = 0.239.
    expect(section('#### Success by game 1')[0]).toBe('| mcts | 0.500 (sd 0.000, se 0.204) | 0.375 (sd 0.177, se 0.191) | **+0.125** (se 0.239, sd 0.177) | +0.000 / +0.250 | 0.250 | 0.500 |');
    // Reward of the last game played: league [1,1,0,-1] / [1,1,-1,0]; fixed [-1,1,0,1] / [1,-1,-1,0].
    expect(section('#### Reward of the final game')[0]).toBe('| mcts | 0.250 (sd 0.000, se 0.339) | 0.000 (sd 0.354, se 0.339) | **+0.250** (se 0.479, sd 0.354) | +0.000 / +0.500 | -0.250 | 0.500 |');
    // Not lost in the last game played: league [1,1,1,0] / [1,1,0,1]; fixed [0,1,1,1] / [1,0,0,1].
    expect(section('#### Not lost (draw or win) in the final game')[0]).toMatch(/^\| mcts \| 0\.750 .* \| \*\*\+0\.125\*\* \(se 0\.239, sd 0\.177\) \| \+0\.000 \/ \+0\.250 \| 0\.500 \| 1\.000 \|$/);
    expect(section('#### Success by game 1')[1]).toMatch(/^\| minimax \(unseen\) \| 0\.000 /);
    const j = (tables.json.finalGame as Record<string, Record<string, { leagueMinusFixed: { mean: number; perSeed: number[] }; random: number }>>).mcts!;
    expect(j.success!.leagueMinusFixed.mean).toBeCloseTo(0.125, 12);
    expect(j.reward!.leagueMinusFixed.perSeed).toEqual([0, 0.5]);
    expect(j.reward!.random).toBe(-0.25);
  });

  it('per game: reward and not-lost pooled over the trials that played game k, "–" where none did', () => {
    // League, game 1 played by 3 trials of seed 1 (rewards 1, 0, -1) and 2 of seed 2 (-1, 0): pooled 3/5 not lost, reward -1/5.
    expect(section('#### Success by game k')).toContain('| mcts | league | 0.375 | 0.500 |');
    expect(section('#### Not lost (draw or win) in game k')).toContain('| mcts | league | 0.625 | 0.600 |');
    const reward = section('#### Mean reward of game k');
    expect(reward).toContain('| mcts | league | 0.000 | -0.200 |');
    expect(reward).toContain('| mcts | oracle: minimax | 0.500 | 0.000 |');
    // Random won game 0 of its third trial only, so 3 trials played game 1: rewards -1, 0, -1.
    expect(reward).toContain('| mcts | random | -0.500 | -0.667 |');
    // Against center-first the league and minimax won every game 0: nobody played game 1.
    expect(reward).toContain('| center-first | league | 1.000 | – |');
    expect(reward).toContain('| center-first | oracle: minimax | 1.000 | – |');
    expect(reward).toContain('| center-first | fixed | 0.250 | 1.000 |'); // game 0: 1, 0 (seed 1), 1, −1 (seed 2)
    expect(section('#### Not lost (draw or win) in game k')).toContain('| center-first | fixed | 0.750 | 1.000 |');
    expect(section('#### Success by game k')).toContain('| center-first | fixed | 0.500 | 1.000 |');
  });

  it('per seat: X first, success averaged over learners and seeds, reward pooled by the trials that played the last game', () => {
    const rows = section('### Per opponent × seat');
    expect(tables.lines.find((l) => l.startsWith('| opponent | measure |'))).toBe('| opponent | measure | league, X | fixed, X | oracle: minimax, X | league, O | fixed, O | oracle: minimax, O |');
    // League X: success (0.5 + 1)/2; reward (2·1 + 1·(−1))/3. League O: n = 1 then 0, so the reward is seed 1's 0.
    expect(rows[0]).toBe('| mcts | success by game 1 | 0.750 | 0.000 | 0.750 | 0.000 | 0.000 | – |');
    expect(rows[1]).toBe('| mcts | reward of game 1 (trials that played it) | 0.333 | – | 0.500 | 0.000 | – | – |');
  });

  it('training opponents: share of trials and mean score per arm, snapshots pooled', () => {
    // League: a 10 trials (score 4), snapshots 6 (score 3) of 16; fixed: a 16 (10), b 8 (2) of 24.
    expect(section('### Training opponents')).toEqual([
      '| a | 0.750 | 0.625 | 0.400 | 0.667 | 0.625 |',
      '| b | 0.250 | 0.000 | – | 0.333 | 0.250 |',
      '| snapshots (all) | – | 0.375 | 0.500 | 0.000 | – |',
    ]);
    expect(md).not.toContain('NaN');
  });
});
