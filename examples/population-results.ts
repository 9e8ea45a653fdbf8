/**
 * League vs the fixed pool at equal compute (issue #21, docs/results/meta-rl.md §6). Each arm trains
 * the population of CONFIG with the same learners, rounds, groups and trials:
 * - league: the config as written (PFSP over the scripted pool plus frozen snapshots of the learners;
 *   kuhn-population.yaml also runs PBT);
 * - fixed: the scripted pool at its base weights, no snapshots, no PBT.
 * Every learner of both arms is evaluated on the same deals against the training opponents and unseen
 * ones (CFR players, random), next to the random player and the exact Kuhn oracles on those deals, so
 * the league − fixed difference is paired per deal.
 *
 *   node --import tsx examples/population-results.ts [--config examples/configs/kuhn-league.yaml]
 *        [--seeds 30,31,32] [--set key=value …] [--quick] [--out runs/results] [--runs runs/league]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Command } from 'commander';
import { readConfigFile } from '../src/cli/config-file.ts';
import { trainPopulationRun } from '../src/run/population-run.ts';
import { evaluateRandom, evaluateScripted, meanSe, type EvalOptions, type EvalReport, type OpponentEval } from '../src/eval/trials.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import { TrialConfigSchema } from '../src/agents/trial.ts';
import { bestFixedPlayer, bestResponsePlayer } from '../src/eval/kuhn-oracle-players.ts';
import { readMetricsRows } from '../src/eval/run-plots.ts';
import type { RunConfig } from '../src/run/run-config.ts';
import { acrossSeeds, diff, f3 } from './seed-stats.ts';

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

const ARMS = {
  league: [] as string[],
  fixed: ['population.league.mode=fixed', 'population.league.snapshotEvery=0', 'population.pbt.exploitEvery=0'],
};
type Arm = keyof typeof ARMS;
const ARM_NAMES = Object.keys(ARMS) as Arm[];
const quick = o.quick ? ['trainer.steps=2', 'population.size=2', 'trainer.batchSize=2', 'eval.trials=10', 'population.league.snapshotEvery=1'] : [];
const seeds = o.seeds.split(',').map(Number);

interface ArmRun {
  config: RunConfig;
  reports: EvalReport[];
  compute: { samples: number; trainedTokens: number; processedTokens: number; trainSeconds: number };
}

async function runArm(arm: Arm, seed: number): Promise<ArmRun> {
  const sets = [`seed=${seed}`, ...o.set, ...quick, ...ARMS[arm]];
  const out = join(o.runs, `${arm}-s${seed}${o.quick ? '-quick' : ''}`);
  if (!existsSync(join(out, 'eval.json'))) {
    console.log(`[${arm} seed ${seed}] agentrl train ${o.config} ${sets.map((s) => `--set ${s}`).join(' ')} --out ${out}`);
    await trainPopulationRun(readConfigFile(o.config, sets), { out, resume: true, log: (l) => console.log(`  [${arm} s${seed}] ${l}`) });
  }
  const { config, reports } = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as { config: RunConfig; reports: EvalReport[] };
  const rows = readMetricsRows(join(out, 'metrics.jsonl'));
  const sum = (k: string) => rows.reduce((a, r) => a + (typeof r[k] === 'number' ? (r[k] as number) : 0), 0);
  return { config, reports, compute: { samples: sum('samples'), trainedTokens: sum('trainedTokens'), processedTokens: sum('processedTokens'), trainSeconds: sum('seconds') } };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Per deal: the hand-k reward averaged over the learners of one arm (or one scripted row). */
function perDeal(reports: EvalReport[], opponent: string, k: number): number[] {
  const per = reports.map((r) => r.opponents.find((x) => x.opponent === opponent)!.trialRewards);
  return per[0]!.map((_, i) => mean(per.map((t) => t[i]![k]!)));
}

async function main(): Promise<void> {
  const runs = new Map<string, ArmRun>();
  for (const seed of seeds) for (const arm of ARM_NAMES) runs.set(`${arm}/${seed}`, await runArm(arm, seed));
  const cfg = runs.get(`league/${seeds[0]}`)!.config;
  if (cfg.task !== 'kuhn') throw new Error(`population-results: the oracle rows are Kuhn's; task '${cfg.task}' is not supported`);
  const evalTrial = TrialConfigSchema.parse({ ...cfg.trial, ...cfg.eval.trial });
  const K = evalTrial.episodes;
  const opponents = cfg.eval.opponents ?? cfg.opponents.map((x) => x.name);
  const trained = new Set(cfg.opponents.map((x) => x.name));
  const evalOpts: EvalOptions = { opponents, trials: cfg.eval.trials, seed: cfg.eval.seed, makeEnv: envFactory(cfg.task, cfg.envOptions), trial: evalTrial };
  // Scripted rows on the same deals (the evaluation seed is the same for every seed's runs).
  const scripted: Record<string, EvalReport[]> = {
    random: [evaluateRandom(evalOpts)],
    'oracle: best fixed vs mixture': [evaluateScripted('best-fixed', bestFixedPlayer(cfg.opponents), evalOpts)],
    'oracle: best response': [evaluateScripted('best-response', bestResponsePlayer(), evalOpts)],
  };
  const armReports = (arm: Arm, seed: number) => runs.get(`${arm}/${seed}`)!.reports;
  const label = (name: string) => (trained.has(name) ? name : `${name} (unseen)`);

  // 1. Final hand per opponent: each arm (mean over seeds of the learners' mean), league − fixed paired per deal.
  const last = K - 1;
  const main1 = ['| opponent | league | fixed pool | league − fixed (paired per deal) | per seed | random | oracle: best fixed vs mixture | oracle: best response |', '|---|---|---|---|---|---|---|---|'];
  const json: Record<string, unknown> = {};
  for (const name of opponents) {
    const cell = (arm: Arm) => acrossSeeds(seeds.map((s) => meanSe(perDeal(armReports(arm, s), name, last))));
    const L = cell('league'), F = cell('fixed');
    const diffs = seeds.map((s) => meanSe(diff(perDeal(armReports('league', s), name, last), perDeal(armReports('fixed', s), name, last))));
    const D = acrossSeeds(diffs);
    const sc = Object.fromEntries(Object.entries(scripted).map(([k, r]) => [k, meanSe(perDeal(r, name, last))[0]]));
    json[name] = { league: L, fixed: F, leagueMinusFixed: { ...D, perSeed: diffs.map((d) => d[0]) }, ...sc };
    main1.push(`| ${label(name)} | ${f3(L.mean)} (sd ${f3(L.sd)}, se ${f3(L.se)}) | ${f3(F.mean)} (sd ${f3(F.sd)}, se ${f3(F.se)}) | **${D.mean >= 0 ? '+' : ''}${f3(D.mean)}** (se ${f3(D.se)}, sd ${f3(D.sd)}) | ${diffs.map((d) => `${d[0] >= 0 ? '+' : ''}${f3(d[0])}`).join(' / ')} | ${Object.values(sc).map(f3).join(' | ')} |`);
  }

  // 2. Per opponent × hand: mean return (mean over seeds and learners).
  const hands = Array.from({ length: K }, (_, k) => k);
  const byHand = [`| opponent | arm | ${hands.map((k) => `hand ${k}`).join(' | ')} |`, `|---|---|${hands.map(() => '---').join('|')}|`];
  for (const name of opponents) {
    for (const arm of ARM_NAMES) byHand.push(`| ${label(name)} | ${arm} | ${hands.map((k) => f3(mean(seeds.map((s) => mean(perDeal(armReports(arm, s), name, k)))))).join(' | ')} |`);
    byHand.push(`| ${label(name)} | oracle: best fixed | ${hands.map((k) => f3(mean(perDeal(scripted['oracle: best fixed vs mixture']!, name, k)))).join(' | ')} |`);
  }

  // 3. Per opponent × seat, final hand (mean over seeds and learners of the per-seat means).
  const seatStats = (reps: EvalReport[], name: string, seat: string) => mean(reps.map((r) => (r.opponents.find((x) => x.opponent === name) as OpponentEval).bySeat?.[seat]?.[last]?.meanReturn ?? Number.NaN));
  const seats = Object.keys(armReports('league', seeds[0]!)[0]!.opponents[0]!.bySeat ?? {}).sort();
  const bySeat = [`| opponent | ${seats.flatMap((st) => ARM_NAMES.map((a) => `${a}, seat ${st}`)).join(' | ')} | ${seats.map((st) => `best response, seat ${st}`).join(' | ')} |`, `|---|${seats.flatMap(() => ARM_NAMES.map(() => '---')).join('|')}|${seats.map(() => '---').join('|')}|`];
  for (const name of opponents) {
    const cells = seats.flatMap((st) => ARM_NAMES.map((a) => f3(mean(seeds.map((s) => seatStats(armReports(a, s), name, st))))));
    bySeat.push(`| ${label(name)} | ${cells.join(' | ')} | ${seats.map((st) => f3(seatStats(scripted['oracle: best response']!, name, st))).join(' | ')} |`);
  }

  // 4. Compute per run (summed over learners).
  const compute = ['| arm | seed | samples | trained tokens | processed tokens | train seconds (summed over rounds) |', '|---|---|---|---|---|---|'];
  for (const seed of seeds) for (const arm of ARM_NAMES) {
    const c = runs.get(`${arm}/${seed}`)!.compute;
    compute.push(`| ${arm} | ${seed} | ${c.samples} | ${c.trainedTokens} | ${c.processedTokens} | ${c.trainSeconds.toFixed(0)} |`);
  }

  const cmd = `node --import tsx examples/population-results.ts --config ${o.config} --seeds ${o.seeds}${o.set.map((s) => ` --set ${s}`).join('')}${o.quick ? ' --quick' : ''}`;
  const md = [
    `## League vs fixed pool: ${basename(o.config)}, seeds ${o.seeds}`, '',
    `Reproduce: \`${cmd}\`. ${cfg.population!.size} learners per arm, ${cfg.trainer.steps} rounds of ${cfg.trainer.batchSize} groups × ${cfg.trainer.groupSize} trials; ${cfg.eval.trials} evaluation trials per opponent and learner (evaluation seed ${cfg.eval.seed}), every row on the same deals.`, '',
    `### Hand ${last} (the last) per opponent: chips, mean over seeds of the learners' mean (sd across seeds, se of evaluation)`, '', ...main1, '',
    '### Per opponent × hand', '', ...byHand, '',
    `### Per opponent × seat, hand ${last}`, '', ...bySeat, '',
    '### Compute', '', ...compute, '',
  ].join('\n');
  mkdirSync(o.out, { recursive: true });
  const stem = `${basename(o.config).replace(/\.ya?ml$/, '')}${o.quick ? '-quick' : ''}`;
  writeFileSync(join(o.out, `${stem}.md`), md);
  writeFileSync(join(o.out, `${stem}.json`), JSON.stringify({ command: cmd, seeds, finalHand: json, compute: Object.fromEntries([...runs].map(([k, r]) => [k, r.compute])) }) + '\n');
  console.log(md);
}

await main();
