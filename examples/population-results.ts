/**
 * League vs the fixed pool at equal compute (issue #21, docs/results/meta-rl.md §6). Each arm trains
 * the population of CONFIG with the same learners, rounds, groups and trials:
 * - league: the config as written (PFSP over the scripted pool plus frozen snapshots of the learners;
 *   kuhn-population.yaml also runs PBT);
 * - fixed: the scripted pool at its base weights, no snapshots, no PBT.
 * Every learner of both arms is evaluated on the same trials (deals, openings) against the training
 * opponents and unseen ones, next to the random player and the task's oracles on those trials, so the
 * league − fixed difference is paired per trial. Tables per task (examples/population-tables.ts):
 * - kuhn: chips per hand; oracles best fixed vs the mixture and best response;
 * - tictactoe: success by game k, not-lost rate and reward; oracles minimax and minimax + retry
 *   memory; the share of training trials per opponent (PFSP, snapshots).
 * Writes OUT/<config name>[-quick].{md,json} (kuhn-league.yaml → kuhn-league.md, ttt-league.yaml → ttt-league.md).
 *
 *   node --import tsx examples/population-results.ts [--config examples/configs/kuhn-league.yaml]
 *        [--seeds 30,31,32] [--set key=value …] [--quick] [--out runs/results] [--runs runs/league]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Command } from 'commander';
import { readConfigFile } from '../src/cli/config-file.ts';
import { trainPopulationRun } from '../src/run/population-run.ts';
import { evaluateRandom, evaluateScripted, reviveEvalReports, type EvalOptions, type EvalReport } from '../src/eval/trials.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import { bestFixedPlayer, bestResponsePlayer } from '../src/eval/kuhn-oracle-players.ts';
import { minimaxOraclePlayer, minimaxRetryPlayer } from '../src/eval/ttt-oracle-players.ts';
import { readMetricsRows } from '../src/eval/run-plots.ts';
import { evalTrialConfig, type RunConfig } from '../src/run/run-config.ts';
import { ARM_NAMES, kuhnTables, tttTables, type Arm, type PopulationEvals, type TaskTables, type TrainingCounts } from './population-tables.ts';

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
const o = new Command()
  .option('--config <file>', 'population config (both arms)', 'examples/configs/kuhn-league.yaml')
  .option('--seeds <list>', 'comma-separated population seeds, declared before the run', '30,31,32')
  .option('--set <key=value>', 'override for both arms (repeatable)', collect, [])
  .option('--quick', 'tiny run for CI')
  .option('--out <dir>', 'results directory', 'runs/results')
  .option('--runs <dir>', 'run directories (finished runs are reused)', 'runs/league')
  .parse()
  .opts<{ config: string; seeds: string; set: string[]; quick?: boolean; out: string; runs: string }>();

const ARMS: Record<Arm, string[]> = {
  league: [],
  fixed: ['population.league.mode=fixed', 'population.league.snapshotEvery=0', 'population.pbt.exploitEvery=0'],
};
const quick = o.quick ? ['trainer.steps=2', 'population.size=2', 'trainer.batchSize=2', 'eval.trials=10', 'population.league.snapshotEvery=1'] : [];
const seeds = o.seeds.split(',').map(Number);
const configTask = (readConfigFile(o.config, o.set) as { task?: unknown }).task;

interface ArmRun {
  config: RunConfig;
  reports: EvalReport[];
  compute: { samples: number; trainedTokens: number; processedTokens: number; trainSeconds: number };
  /** Training trials per opponent, summed over rounds and learners. */
  training: TrainingCounts;
}

async function runArm(arm: Arm, seed: number): Promise<ArmRun> {
  const sets = [`seed=${seed}`, ...o.set, ...quick, ...ARMS[arm]];
  const out = join(o.runs, `${arm}-s${seed}${o.quick ? '-quick' : ''}`);
  if (!existsSync(join(out, 'eval.json'))) {
    console.log(`[${arm} seed ${seed}] agentrl train ${o.config} ${sets.map((s) => `--set ${s}`).join(' ')} --out ${out}`);
    await trainPopulationRun(readConfigFile(o.config, sets), { out, resume: true, log: (l) => console.log(`  [${arm} s${seed}] ${l}`) });
  }
  const saved = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as { config: RunConfig; reports: EvalReport[] };
  const { config } = saved, reports = reviveEvalReports(saved.reports);
  // Run directories are named by arm and seed only: a --runs folder of another config would be read silently.
  if (config.task !== configTask) throw new Error(`population-results: ${out} holds a finished ${config.task} run, but ${o.config} is task '${String(configTask)}'; pass another --runs`);
  const rows = readMetricsRows(join(out, 'metrics.jsonl'));
  const sum = (k: string) => rows.reduce((a, r) => a + (typeof r[k] === 'number' ? (r[k] as number) : 0), 0);
  const training: TrainingCounts = {};
  for (const r of rows) for (const [opp, c] of Object.entries((r.opponents ?? {}) as TrainingCounts)) {
    const t = (training[opp] ??= { trials: 0, score: 0 });
    t.trials += c.trials;
    t.score += c.score;
  }
  return { config, reports, compute: { samples: sum('samples'), trainedTokens: sum('trainedTokens'), processedTokens: sum('processedTokens'), trainSeconds: sum('seconds') }, training };
}

/** Per task: the scripted rows played on the same evaluation trials (random first), the word for one trial, and the tables. */
const TASKS: Record<string, { unit: string; scripted: (cfg: RunConfig, evalOpts: EvalOptions) => Record<string, EvalReport[]>; tables: (x: PopulationEvals, runs: (arm: Arm, seed: number) => ArmRun) => TaskTables }> = {
  kuhn: {
    unit: 'deal',
    scripted: (cfg, evalOpts) => ({
      random: [evaluateRandom(evalOpts)],
      'oracle: best fixed vs mixture': [evaluateScripted('best-fixed', bestFixedPlayer(cfg.opponents), evalOpts)],
      'oracle: best response': [evaluateScripted('best-response', bestResponsePlayer(), evalOpts)],
    }),
    tables: (x) => kuhnTables(x),
  },
  tictactoe: {
    unit: 'trial',
    scripted: (_cfg, evalOpts) => ({
      random: [evaluateRandom(evalOpts)],
      'oracle: minimax': [evaluateScripted('minimax', minimaxOraclePlayer(), evalOpts)],
      'oracle: minimax + retry memory': [evaluateScripted('minimax-retry', minimaxRetryPlayer(), evalOpts)],
    }),
    tables: (x, runs) => tttTables(x, runs('league', x.seeds[0]!).config.opponents, (arm, seed) => runs(arm, seed).training),
  },
};

async function main(): Promise<void> {
  const runs = new Map<string, ArmRun>();
  for (const seed of seeds) for (const arm of ARM_NAMES) runs.set(`${arm}/${seed}`, await runArm(arm, seed));
  const cfg = runs.get(`league/${seeds[0]}`)!.config;
  const task = TASKS[cfg.task];
  if (!task) throw new Error(`population-results: no tables for task '${cfg.task}' (supported: ${Object.keys(TASKS).join(', ')})`);
  const evalTrial = evalTrialConfig(cfg);
  const opponents = cfg.eval.opponents ?? cfg.opponents.map((x) => x.name);
  const evalOpts: EvalOptions = { opponents, trials: cfg.eval.trials, seed: cfg.eval.seed, makeEnv: envFactory(cfg.task, cfg.envOptions), trial: evalTrial };
  // Scripted rows on the same trials (the evaluation seed is the same for every seed's runs).
  const evals: PopulationEvals = {
    seeds, opponents, K: evalTrial.episodes, trained: new Set(cfg.opponents.map((x) => x.name)),
    reports: (arm, seed) => runs.get(`${arm}/${seed}`)!.reports,
    scripted: task.scripted(cfg, evalOpts),
  };
  const t = task.tables(evals, (arm, seed) => runs.get(`${arm}/${seed}`)!);

  // Compute per run (summed over learners).
  const compute = ['| arm | seed | samples | trained tokens | processed tokens | train seconds (summed over rounds) |', '|---|---|---|---|---|---|'];
  for (const seed of seeds) for (const arm of ARM_NAMES) {
    const c = runs.get(`${arm}/${seed}`)!.compute;
    compute.push(`| ${arm} | ${seed} | ${c.samples} | ${c.trainedTokens} | ${c.processedTokens} | ${c.trainSeconds.toFixed(0)} |`);
  }

  const cmd = `node --import tsx examples/population-results.ts --config ${o.config} --seeds ${o.seeds}${o.set.map((s) => ` --set ${s}`).join('')}${o.quick ? ' --quick' : ''}`;
  const md = [
    `## League vs fixed pool: ${basename(o.config)}, seeds ${o.seeds}`, '',
    `Reproduce: \`${cmd}\`. ${cfg.population!.size} learners per arm, ${cfg.trainer.steps} rounds of ${cfg.trainer.batchSize} groups × ${cfg.trainer.groupSize} trials; ${cfg.eval.trials} evaluation trials per opponent and learner (evaluation seed ${cfg.eval.seed}), every row on the same ${task.unit}s.`, '',
    ...t.lines,
    '### Compute', '', ...compute, '',
  ].join('\n');
  mkdirSync(o.out, { recursive: true });
  const stem = `${basename(o.config).replace(/\.ya?ml$/, '')}${o.quick ? '-quick' : ''}`;
  writeFileSync(join(o.out, `${stem}.md`), md);
  writeFileSync(join(o.out, `${stem}.json`), JSON.stringify({ command: cmd, seeds, ...t.json, compute: Object.fromEntries([...runs].map(([k, r]) => [k, r.compute])) }) + '\n');
  console.log(md);
}

await main();
