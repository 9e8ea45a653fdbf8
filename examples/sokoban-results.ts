/**
 * Sokoban in MAGE's protocol (docs/results/meta-rl.md): meta-RL (examples/configs/sokoban-meta-rl.yaml)
 * vs 1-episode GRPO at equal compute (sokoban-grpo.yaml), the untrained policy, a random player and
 * the BFS-optimal oracle, all on the same unseen generated levels. Each arm is an `agentrl train`
 * run of its config with the seed overridden.
 *
 *   node --import tsx examples/sokoban-results.ts [--seeds 0,1,2] [--arms meta,grpo] [--set key=value …]
 *        [--meta-set key=value …] [--grpo-set key=value …] [--label NAME] [--out DIR]
 *
 * Writes OUT/meta-rl-sokoban[-label].{md,json} (default OUT runs/sokoban) and keeps the run
 * directories under --runs (default runs/sokoban/runs), where a finished run of the same config is reused.
 *
 * Levels have one box, so an episode is solved exactly when its return is positive (solving gives
 * +10 +1, an unsolved episode only move costs), and a solved episode's moves are (11 − return) / 0.1.
 *
 * Two protocols, read from the evaluation trial config: every episode played (stopWhenWon false; the
 * headline is the solve rate of episode k, which rises only by adaptation) or MAGE's (stopWhenWon
 * true: a solved trial stops; the headline is the success by episode k, solved in some episode ≤ k,
 * whose rise is compared with the rise that retrying alone gives the same weights with no past).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import type { TrainRunResult } from '../src/run/run.ts';
import { evalTrialConfig, type RunConfig } from '../src/run/run-config.ts';
import { evalSeed, evaluatePolicy, evaluateScripted, meanSe, type EvalReport } from '../src/eval/trials.ts';
import { loadCheckpointPolicy } from '../src/cli/checkpoint-policy.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import { SokobanEnv, SOKOBAN_REWARDS } from '../src/envs/sokoban.ts';
import { solveSokoban } from '../src/envs/sokoban-solver.ts';
import { commandsAndCompute, diff, f3, runOrReuse, seedCell as cell } from './seed-stats.ts';

const program = new Command()
  .option('--seeds <list>', 'comma-separated training seeds, declared before the run', '0,1,2')
  .option('--arms <list>', 'meta,grpo', 'meta,grpo')
  .option('--set <key=value>', 'override applied to every arm (repeatable)', (v: string, p: string[]) => [...p, v], [])
  .option('--meta-set <key=value>', 'override applied to the meta-RL arm only (repeatable)', (v: string, p: string[]) => [...p, v], [])
  .option('--grpo-set <key=value>', 'override applied to the GRPO arm only (repeatable)', (v: string, p: string[]) => [...p, v], [])
  .option('--label <name>', 'suffix of the output files')
  .option('--out <dir>', 'results directory', 'runs/sokoban')
  .option('--runs <dir>', 'run directories (finished runs of the same config are reused)', 'runs/sokoban/runs')
  .parse();
const o = program.opts<{ seeds: string; arms: string; set: string[]; metaSet: string[]; grpoSet: string[]; label?: string; out: string; runs: string }>();
const ARM_SETS: Record<string, string[]> = { meta: o.metaSet, grpo: o.grpoSet };
const seeds = o.seeds.split(',').map(Number);
const CONFIG: Record<string, string> = { meta: 'examples/configs/sokoban-meta-rl.yaml', grpo: 'examples/configs/sokoban-grpo.yaml' };
const arms = o.arms.split(',');
for (const a of arms) if (!CONFIG[a]) throw new Error(`--arms: unknown arm '${a}' (meta, grpo)`);
const stem = `meta-rl-sokoban${o.label ? `-${o.label}` : ''}`;
const ROW: Record<string, string> = { meta: 'meta-RL', grpo: '1-episode GRPO' };

interface ArmRun { arm: string; seed: number; result: TrainRunResult; command: string; trained: EvalReport; untrained: EvalReport; random: EvalReport }

async function runArm(arm: string, seed: number): Promise<ArmRun> {
  const run = await runOrReuse({
    label: `${arm} seed ${seed}`, config: CONFIG[arm]!, sets: [`seed=${seed}`, ...o.set, ...ARM_SETS[arm]!], out: join(o.runs, `${stem}-${arm}-s${seed}`),
    every: 10, progress: (m) => `win rate by episode ${m.winRate.map((x) => x.toFixed(2)).join('/')} (${m.seconds.toFixed(1)} s)`,
  });
  return { arm, seed, ...run };
}

/** The BFS-optimal player: the first move of an optimal solution from the current position. */
function oracleReport(cfg: RunConfig): EvalReport {
  const trial = evalTrialConfig(cfg);
  return evaluateScripted('bfs-optimal', (env) => {
    const s = env as SokobanEnv;
    const sol = solveSokoban(s.level, s.position);
    if (!sol || sol.moves.length === 0) throw new Error('oracle: the position has no solution (it cannot be reached by optimal play)');
    return sol.moves[0]!;
  }, { opponents: ['none'], trials: cfg.eval.trials, seed: cfg.eval.seed, makeEnv: envFactory(cfg.task, cfg.envOptions), trial });
}

/**
 * The evidence ablation: the trained meta-RL checkpoint evaluated on the same levels with parts of
 * the past removed from its prompts — without the `tried …` tokens, and with nothing of the past at
 * all (contextMode none: every episode prompted as a fresh first episode). If the rise across
 * episodes comes from reading the past, it shrinks or vanishes here; if it came from the episode
 * number alone, it would stay.
 */
async function ablations(run: ArmRun): Promise<Record<string, EvalReport>> {
  const { run: cfg, engine } = await loadCheckpointPolicy(join(o.runs, `${stem}-${run.arm}-s${run.seed}`, 'checkpoint'), {
    whyTokenizer: 'it cannot drive text trials', maxBatch: 128, seed: cfg0(run).eval.seed, checkTask: () => null,
  });
  const base = { opponents: ['none'], trials: cfg.eval.trials, seed: cfg.eval.seed, makeEnv: envFactory(cfg.task, cfg.envOptions) };
  const trial = (over: Record<string, unknown>) => evalTrialConfig(cfg, over);
  return {
    'meta-RL without `tried`': await evaluatePolicy('no-tried', engine, { ...base, trial: trial({ triedActions: false }) }),
    'meta-RL with no past (contextMode none)': await evaluatePolicy('no-past', engine, { ...base, trial: trial({ contextMode: 'none' }) }),
    // Under MAGE's protocol a solved level is never played again; this shows what the weights do when it is.
    ...(trial({}).stopWhenWon ? { [EVERY_EPISODE]: await evaluatePolicy('every-episode', engine, { ...base, trial: trial({ stopWhenWon: false }) }) } : {}),
  };
}
const EVERY_EPISODE = 'meta-RL, every episode played';
const cfg0 = (r: ArmRun) => r.result.config;

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const rewards = (r: EvalReport) => r.opponents[0]!.trialRewards;
const solvedAt = (r: EvalReport, k: number) => rewards(r).map((eps) => (eps[k]! > 0 ? 1 : 0));
const solvedBy = (r: EvalReport, k: number) => rewards(r).map((eps) => (eps.slice(0, k + 1).some((x) => x > 0) ? 1 : 0));
/** Trials that played episode k (under stopWhenWon: every earlier episode failed). */
const reached = (r: EvalReport, k: number) => rewards(r).filter((eps) => eps.length > k);

async function main(): Promise<void> {
  const runs: ArmRun[] = [];
  for (const seed of seeds) for (const arm of arms) runs.push(await runArm(arm, seed));
  const cfg = runs[0]!.result.config;
  if ((cfg.envOptions as { boxes?: number }).boxes !== 1) throw new Error('sokoban-results reads solved/moves from returns, which needs one box per level (envOptions.boxes: 1)');
  const { episodes: K, stopWhenWon: stop } = evalTrialConfig(cfg);
  for (const r of runs) if (evalTrialConfig(r.result.config).stopWhenWon !== stop) throw new Error(`sokoban-results: ${r.arm} seed ${r.seed} is evaluated with stopWhenWon ${!stop}, ${runs[0]!.arm} seed ${runs[0]!.seed} with ${stop}; every arm needs the same protocol`);
  // The headline measure: per-episode solves when every episode is played, success by episode k when a solved trial stops.
  const measure = stop ? solvedBy : solvedAt;
  const oracle = oracleReport(cfg); // deterministic: the same for every seed
  const get = (arm: string, seed: number) => runs.find((r) => r.arm === arm && r.seed === seed);
  const ablated = new Map<number, Record<string, EvalReport>>();
  if (arms.includes('meta')) for (const s of seeds) ablated.set(s, await ablations(get('meta', s)!));
  const ablationRows = arms.includes('meta') ? Object.keys(ablated.get(seeds[0]!)!).filter((n) => n !== EVERY_EPISODE) : [];
  const rows: [string, (s: number) => EvalReport][] = [
    ...arms.map((a) => [ROW[a]!, (s: number) => get(a, s)!.trained] as [string, (s: number) => EvalReport]),
    ...ablationRows.map((name) => [name, (s: number) => ablated.get(s)![name]!] as [string, (s: number) => EvalReport]),
    ['untrained', (s) => get(arms[0]!, s)!.untrained],
    ['random', (s) => get(arms[0]!, s)!.random],
    ['oracle: BFS-optimal', () => oracle],
  ];
  // The BFS-optimal step counts of the evaluation levels.
  const env = envFactory(cfg.task, cfg.envOptions)('none') as SokobanEnv;
  const optimal = Array.from({ length: cfg.eval.trials }, (_, i) => (env.reset(evalSeed(cfg.eval.seed, i)), env.optimalSteps));
  const [optMean] = meanSe(optimal);
  const hist = new Map<number, number>();
  for (const s of optimal) hist.set(s, (hist.get(s) ?? 0) + 1);

  const md: string[] = [
    `# Sokoban, ${K} episodes on the same level (seeds ${seeds.join(', ')})`, '',
    `${cfg.eval.trials} unseen levels per seed and policy (evaluation seed ${cfg.eval.seed}), the same levels for every policy, so differences are paired per level.`,
    `BFS-optimal solution lengths of these levels: mean ${f1(optMean)} moves (${[...hist.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}: ${n}`).join(', ')}).`,
    'Cells: mean across seeds (sd = seed spread, se = evaluation standard error of that mean).', '',
    stop
      ? 'Protocol: MAGE\'s — a trial stops when its level is solved, in training and at evaluation.'
      : 'Protocol: every episode of a trial is played, solved or not.',
    '',
  ];
  const header = [`| episode | ${rows.map((r) => r[0]).join(' | ')} |`, `|---|${rows.map(() => '---').join('|')}|`];
  const perEpisode = (title: string, value: (r: EvalReport, k: number) => number[]) => {
    md.push(title, '', ...header);
    for (let k = 0; k < K; k++) md.push(`| ${k} | ${rows.map(([, rep]) => cell(seeds.map((s) => meanSe(value(rep(s), k))))).join(' | ')} |`);
    md.push('');
  };
  if (stop) {
    perEpisode('## Success by episode k (solved in some episode ≤ k; MAGE\'s success rate; retrying alone also raises it, see the no-past row)', solvedBy);
    perEpisode('## Solve rate of episode k among the trials that reached it (every earlier episode failed)', (r, k) => reached(r, k).map((e) => (e[k]! > 0 ? 1 : 0)));
    perEpisode('## Mean return of episode k among the trials that reached it', (r, k) => reached(r, k).map((e) => e[k]!));
  } else {
    perEpisode('## Solve rate of episode k (every episode is played; a rise needs adaptation)', solvedAt);
    perEpisode('## Success by episode k (solved in some episode ≤ k; MAGE\'s success rate — rises with retries alone)', solvedBy);
    perEpisode('## Mean return of episode k', (r, k) => rewards(r).map((e) => e[k]!));
  }
  md.pop();
  md.push('', '## Moves used in solved episodes vs the BFS-optimal count of the same levels', '', '| episode | policy | moves when solved (mean over seeds) | optimal moves of those levels | solved episodes |', '|---|---|---|---|---|');
  for (let k = 0; k < K; k++) {
    for (const [name, rep] of rows) {
      let moves = 0, opt = 0, n = 0;
      for (const s of seeds) {
        rewards(rep(s)).forEach((eps, i) => {
          if (eps[k]! > 0) { moves += Math.round((SOKOBAN_REWARDS.solved + SOKOBAN_REWARDS.boxOn - eps[k]!) / -SOKOBAN_REWARDS.step); opt += optimal[i]!; n++; }
        });
      }
      md.push(`| ${k} | ${name} | ${f1(moves / n)} | ${f1(opt / n)} | ${n} |`);
    }
  }
  md.push('', '## Paired per level (same levels; se from the per-level differences, combined across seeds)', '', '| difference | measure | mean (sd, se) | per seed (± se) |', '|---|---|---|---|');
  const pairs: [string, string, string][] = [];
  if (arms.includes('meta') && arms.includes('grpo')) pairs.push(['meta-RL − GRPO', 'meta', 'grpo']);
  for (const a of arms) pairs.push([`${ROW[a]} − untrained`, a, 'untrained'], [`${ROW[a]} − random`, a, 'random']);
  const rep = (x: string, s: number) => (x === 'untrained' ? get(arms[0]!, s)!.untrained : x === 'random' ? get(arms[0]!, s)!.random : get(x, s)!.trained);
  for (const [name, a, b] of pairs) {
    for (let k = 0; k < K; k++) {
      const per = seeds.map((s) => meanSe(diff(measure(rep(a, s), k), measure(rep(b, s), k))));
      md.push(`| ${name} | ${stop ? 'solved by' : 'solved in'} episode ${k} | ${cell(per)} | ${per.map((x) => `${f3(x[0])} ± ${f3(x[1])}`).join(', ')} |`);
    }
  }
  md.push('', `## Rise of the ${stop ? 'success' : 'solve rate'} from episode 0 to episode k, per policy (paired within levels)`, '', '| policy | episode | rise (sd, se) | per seed |', '|---|---|---|---|');
  const rise = (r: EvalReport, k: number) => diff(measure(r, k), measure(r, 0));
  for (const [name, r] of rows) {
    for (let k = 1; k < K; k++) {
      const per = seeds.map((s) => meanSe(rise(r(s), k)));
      md.push(`| ${name} | 0 → ${k} | ${cell(per)} | ${per.map((x) => f3(x[0])).join(', ')} |`);
    }
  }
  if (stop && arms.includes('meta')) {
    // Success by episode k rises with retries alone; what the past adds is meta-RL's rise minus the rise of the same weights with no past.
    md.push('', '## Meta-RL\'s rise minus another policy\'s rise (paired per level; what reading the past adds over retrying alone)', '', '| difference of rises | episode | mean (sd, se) | per seed (± se) |', '|---|---|---|---|');
    for (const [name, r] of rows.filter(([n]) => n !== ROW.meta && !n.startsWith('oracle'))) {
      for (let k = 1; k < K; k++) {
        const per = seeds.map((s) => meanSe(diff(rise(get('meta', s)!.trained, k), rise(r(s), k))));
        md.push(`| meta-RL − ${name} | 0 → ${k} | ${cell(per)} | ${per.map((x) => `${f3(x[0])} ± ${f3(x[1])}`).join(', ')} |`);
      }
    }
  }
  // Where a rise comes from: repeating a solved level, and solving one the previous episode failed.
  const after = (r: EvalReport, k: number, prev: 0 | 1) => {
    const xs = rewards(r).filter((e) => (e[k - 1]! > 0 ? 1 : 0) === prev).map((e) => (e[k]! > 0 ? 1 : 0));
    return { solved: xs.reduce((a: number, b) => a + b, 0), n: xs.length };
  };
  const rate = (parts: { solved: number; n: number }[]) => {
    const n = parts.reduce((a, p) => a + p.n, 0);
    return `${f3(parts.reduce((a, p) => a + p.solved, 0) / n)} (${n}) [${parts.map((p) => f3(p.solved / p.n)).join(', ')}]`;
  };
  // Under stopWhenWon only the every-episode evaluation has episodes after a solve.
  const playedAll: [string, (s: number) => EvalReport][] = stop ? (arms.includes('meta') ? [[EVERY_EPISODE, (s) => ablated.get(s)![EVERY_EPISODE]!]] : []) : rows;
  if (playedAll.length > 0) md.push('', '## Episode k after episode k − 1 was solved / failed (pooled over seeds; per seed in brackets)', '', '| policy | episode | solved again after a solve (n) | solved after a failure (n) |', '|---|---|---|---|');
  for (const [name, r] of playedAll) {
    for (let k = 1; k < K; k++) md.push(`| ${name} | ${k} | ${rate(seeds.map((s) => after(r(s), k, 1)))} | ${rate(seeds.map((s) => after(r(s), k, 0)))} |`);
  }
  if (stop && arms.includes('meta')) {
    md.push('', `## ${EVERY_EPISODE} (a solved level is played again, which training never did): solve rate of episode k`, '', '| episode | solve rate (sd, se) |', '|---|---|');
    for (let k = 0; k < K; k++) md.push(`| ${k} | ${cell(seeds.map((s) => meanSe(solvedAt(ablated.get(s)![EVERY_EPISODE]!, k))))} |`);
  }
  if (ablationRows.length > 0) {
    md.push('', '## Evidence ablation: the same meta-RL weights with parts of the past removed from the prompt (paired per level)', '', '| difference | episode | mean (sd, se) | per seed (± se) |', '|---|---|---|---|');
    for (const name of ablationRows) {
      for (let k = 0; k < K; k++) {
        const per = seeds.map((s) => meanSe(diff(measure(get('meta', s)!.trained, k), measure(ablated.get(s)![name]!, k))));
        md.push(`| meta-RL − ${name} | ${stop ? 'solved by' : 'solved in'} episode ${k} | ${cell(per)} | ${per.map((x) => `${f3(x[0])} ± ${f3(x[1])}`).join(', ')} |`);
      }
    }
  }
  md.push('', `Invalid turns: ${rows.map(([name, r]) => `${name} ${f3(seeds.reduce((a, s) => a + r(s).opponents[0]!.invalidRate, 0) / seeds.length)}`).join(', ')} (moves are held to the legal ones; a blocked move cannot be chosen).`);
  md.push('', ...commandsAndCompute(runs));
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, `${stem}.md`), md.join('\n'));
  writeFileSync(join(o.out, `${stem}.json`), JSON.stringify({ seeds, optimalSteps: optimal, oracle, ablations: Object.fromEntries(ablated), runs: runs.map((r) => ({ arm: r.arm, seed: r.seed, command: r.command, reports: [r.untrained, r.trained, r.random] })) }, null, 2) + '\n');
  console.log(md.join('\n'));
}

await main();
