/**
 * What the league and PBT buy: examples/configs/kuhn-population.yaml (PFSP over the scripted pool plus
 * frozen snapshots, PBT) against the same number of learners trained independently on the fixed
 * pool (no snapshots, no PBT) at equal compute (same rounds, groups and trials per learner), both
 * evaluated on the same deals against the training opponents and unseen ones (CFR players, random).
 *
 *   node --import tsx examples/population-results.ts [--seed 0] [--set key=value …] [--quick] [--out runs/results]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { readConfigFile } from '../src/cli/config-file.ts';
import { trainPopulationRun } from '../src/run/population-run.ts';
import { meanSe, type EvalReport } from '../src/eval/trials.ts';

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
const o = new Command()
  .option('--seed <n>', 'population seed', '0')
  .option('--set <key=value>', 'override for both arms (repeatable)', collect, [])
  .option('--quick', 'tiny run for CI')
  .option('--out <dir>', 'results directory', 'runs/results')
  .option('--runs <dir>', 'run directories (finished runs are reused)', 'runs/population-results')
  .parse()
  .opts<{ seed: string; set: string[]; quick?: boolean; out: string; runs: string }>();

const CONFIG = 'examples/configs/kuhn-population.yaml';
const ARMS: Record<string, string[]> = {
  'league + PBT': [],
  'fixed pool, independent': ['population.league.mode=fixed', 'population.league.snapshotEvery=0', 'population.pbt.exploitEvery=0'],
};
const quick = o.quick ? ['trainer.steps=2', 'population.size=2', 'trainer.batchSize=2', 'eval.trials=10', 'population.league.snapshotEvery=1', 'population.pbt.exploitEvery=1', 'population.pbt.readyAfter=1', 'population.pbt.fitnessWindow=1'] : [];

async function arm(name: string, extra: string[]): Promise<EvalReport[]> {
  const sets = [`seed=${o.seed}`, ...o.set, ...quick, ...extra];
  const out = join(o.runs, `${name.replace(/[^a-z]+/gi, '-')}-s${o.seed}${o.quick ? '-quick' : ''}`);
  if (existsSync(join(out, 'eval.json'))) return (JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as { reports: EvalReport[] }).reports;
  console.log(`[${name}] agentrl train ${CONFIG} ${sets.map((s) => `--set ${s}`).join(' ')} --out ${out}`);
  const r = await trainPopulationRun(readConfigFile(CONFIG, sets), { out, log: (l) => console.log(`  [${name}] ${l}`) });
  return r.reports;
}

async function main(): Promise<void> {
  const results: Record<string, EvalReport[]> = {};
  for (const [name, extra] of Object.entries(ARMS)) results[name] = await arm(name, extra);
  const opponents = results['league + PBT']![0]!.opponents.map((x) => x.opponent);
  const K = results['league + PBT']![0]!.opponents[0]!.episodes.length;
  // Final hand, per opponent: mean over members (se over members' deal-level noise, members pooled).
  const lines = [`| opponent | ${Object.keys(ARMS).map((a) => `${a}: final hand (mean of members) | best member`).join(' | ')} |`, `|---|${Object.keys(ARMS).map(() => '---|---').join('|')}|`];
  for (const name of opponents) {
    const cells = Object.values(results).map((reps) => {
      const per = reps.map((r) => r.opponents.find((x) => x.opponent === name)!);
      const [m, se] = meanSe(per.flatMap((p) => p.trialRewards.map((t) => t[K - 1]!)));
      const best = Math.max(...per.map((p) => p.episodes[K - 1]!.meanReturn));
      return `${m.toFixed(3)} ± ${se.toFixed(3)} | ${best.toFixed(3)}`;
    });
    lines.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  const md = [`## Population: league + PBT vs independent learners on the fixed pool (seed ${o.seed})`, '', `Reproduce: \`node --import tsx examples/population-results.ts --seed ${o.seed}${o.set.map((s) => ` --set ${s}`).join('')}${o.quick ? ' --quick' : ''}\`.`, '', ...lines, ''].join('\n');
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, `population${o.quick ? '-quick' : ''}.md`), md);
  writeFileSync(join(o.out, `population${o.quick ? '-quick' : ''}.json`), JSON.stringify(results) + '\n');
  console.log(md);
}

await main();
