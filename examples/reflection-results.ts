/**
 * Reflections that carry the evidence (docs/results/meta-rl.md): the bandit with past
 * episodes hidden (contextMode reflection_only), trained with a one-word <remark> written between
 * episodes (examples/configs/bandit-reflect.yaml) and without (bandit-reflect-off.yaml, the same
 * run with reflect: false). Each arm is an `agentrl train` run of its config with the seed
 * overridden; both arms of a seed are evaluated on the same trials (the same paying arms), so
 * their difference is paired per trial.
 *
 *   node --import tsx examples/reflection-results.ts [--seeds 0,1,2] [--set key=value …] [--label NAME] [--out DIR]
 *
 * Writes OUT/meta-rl-reflect[-label].{md,json} (default OUT runs/reflect) and keeps the run
 * directories under --runs (default runs/reflect/runs), where a finished run of the same config is reused.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import type { TrainRunResult } from '../src/run/run.ts';
import { meanSe, type EvalReport } from '../src/eval/trials.ts';
import { banditCeilings } from '../src/envs/bandit.ts';
import { commandsAndCompute, diff, f3, runOrReuse, seedCell as cell } from './seed-stats.ts';

const program = new Command()
  .option('--seeds <list>', 'comma-separated training seeds, declared before the run', '0,1,2')
  .option('--set <key=value>', 'override applied to both arms (repeatable)', (v: string, p: string[]) => [...p, v], [])
  .option('--label <name>', 'suffix of the output files')
  .option('--out <dir>', 'results directory', 'runs/reflect')
  .option('--runs <dir>', 'run directories (finished runs of the same config are reused)', 'runs/reflect/runs')
  .parse();
const o = program.opts<{ seeds: string; set: string[]; label?: string; out: string; runs: string }>();
const seeds = o.seeds.split(',').map(Number);
const ARMS = { on: 'examples/configs/bandit-reflect.yaml', off: 'examples/configs/bandit-reflect-off.yaml' } as const;
type Arm = keyof typeof ARMS;
const stem = `meta-rl-reflect${o.label ? `-${o.label}` : ''}`;

interface ArmRun { arm: Arm; seed: number; result: TrainRunResult; command: string; trained: EvalReport; untrained: EvalReport; random: EvalReport }

async function runArm(arm: Arm, seed: number): Promise<ArmRun> {
  const run = await runOrReuse({
    label: `${arm} seed ${seed}`, config: ARMS[arm], sets: [`seed=${seed}`, ...o.set], out: join(o.runs, `${stem}-${arm}-s${seed}`),
    every: 25, progress: (m) => `reward by episode ${m.episodeReward.map((x) => x.toFixed(2)).join('/')}`,
  });
  return { arm, seed, ...run };
}

/** Per-trial rewards of episode k (one opponent: 'none'). */
const rewardsAt = (r: EvalReport, k: number) => r.opponents[0]!.trialRewards.map((eps) => eps[k]!);

async function main(): Promise<void> {
  const runs: ArmRun[] = [];
  for (const seed of seeds) for (const arm of Object.keys(ARMS) as Arm[]) runs.push(await runArm(arm, seed));
  const get = (arm: Arm, seed: number) => runs.find((r) => r.arm === arm && r.seed === seed)!;
  const cfg = runs[0]!.result.config;
  const K = cfg.trial.episodes;
  const ceil = banditCeilings((cfg.envOptions as { arms?: number }).arms ?? 3, K);
  const rows: [string, (seed: number) => EvalReport][] = [
    ['reflections on', (s) => get('on', s).trained],
    ['reflections off', (s) => get('off', s).trained],
    ['untrained (on)', (s) => get('on', s).untrained],
    ['untrained (off)', (s) => get('off', s).untrained],
    ['random', (s) => get('on', s).random],
  ];
  const md: string[] = [
    `# Reflections that carry the evidence: ${(cfg.envOptions as { arms?: number }).arms ?? 3}-armed bandit, K = ${K}, past episodes hidden (seeds ${seeds.join(', ')})`, '',
    `${cfg.eval.trials} evaluation trials per seed and policy (evaluation seed ${cfg.eval.seed}); every policy plays the same trials (the same paying arms), so differences are paired per trial.`,
    'Cells: mean reward of episode k across seeds (sd = seed spread, se = evaluation standard error of that mean).', '',
    `| episode | ${rows.map((r) => r[0]).join(' | ')} | non-adaptive ceiling | adaptive ceiling |`,
    `|---|${rows.map(() => '---').join('|')}|---|---|`,
  ];
  for (let k = 0; k < K; k++) {
    md.push(`| ${k} | ${rows.map(([, rep]) => cell(seeds.map((s) => meanSe(rewardsAt(rep(s), k))))).join(' | ')} | ${f3(ceil.memoryless.rewardPerEpisode[k]!)} | ${f3(ceil.adaptive.rewardPerEpisode[k]!)} |`);
  }
  md.push('', 'Paired per trial (same trials; se from the per-trial differences, combined across seeds):', '', '| difference | episode | mean (sd, se) | per seed (± se) |', '|---|---|---|---|');
  const pairs: [string, (s: number) => EvalReport, (s: number) => EvalReport][] = [
    ['on − off', (s) => get('on', s).trained, (s) => get('off', s).trained],
    ['on − untrained', (s) => get('on', s).trained, (s) => get('on', s).untrained],
  ];
  for (const [name, a, b] of pairs) {
    for (let k = 0; k < K; k++) {
      const per = seeds.map((s) => meanSe(diff(rewardsAt(a(s), k), rewardsAt(b(s), k))));
      md.push(`| ${name} | ${k} | ${cell(per)} | ${per.map((x) => `${f3(x[0])} ± ${f3(x[1])}`).join(', ')} |`);
    }
  }
  md.push('', 'Rise from episode 0 to the last, per policy (paired within trials):', '', '| policy | rise (sd, se) | per seed |', '|---|---|---|');
  for (const [name, rep] of rows) {
    const per = seeds.map((s) => meanSe(diff(rewardsAt(rep(s), K - 1), rewardsAt(rep(s), 0))));
    md.push(`| ${name} | ${cell(per)} | ${per.map((x) => f3(x[0])).join(', ')} |`);
  }
  md.push('', ...commandsAndCompute(runs));
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, `${stem}.md`), md.join('\n'));
  writeFileSync(join(o.out, `${stem}.json`), JSON.stringify({ seeds, runs: runs.map((r) => ({ arm: r.arm, seed: r.seed, command: r.command, reports: [r.untrained, r.trained, r.random] })) }, null, 2) + '\n');
  console.log(md.join('\n'));
}

await main();
