/**
 * Success (won in any game ≤ k) of two trained runs per seed, paired per evaluation trial — for arms
 * that live under different result tasks, which examples/meta-rl-results.ts does not pair (e.g. the
 * ttt-xs meta-RL runs against the tuned ttt-x GRPO on the same seeds, meta-rl.md §3⁗). Both runs
 * must have been evaluated with the same evaluation seed and trials.
 *
 *   node --import tsx examples/paired-success.ts \
 *     --a 'docs/results/report-runs/ttt-xs/meta-rl-ttt-xs-meta-s{seed}' \
 *     --b 'docs/results/report-runs/ttt-x/meta-rl-ttt-x-grpo-s{seed}' --seeds 60,61,62 --opponent mcts-100
 *
 * `--opponent a,b,c` pools the trials of several opponents (each evaluated on as many trials, so
 * this is their mean); `--rise` pairs the rise of success from game 0 to game k instead;
 * `--b-policy untrained` (or `random`) pairs A with that row of B's evaluation instead of B's trained policy.
 */
import { Command } from 'commander';
import { meanSe, type EvalReport } from '../src/eval/trials.ts';
import { loadFinishedRun } from '../src/run/run.ts';
import { opponentEval, successAt } from '../src/eval/trial-measures.ts';
import { acrossSeeds, diff, f3 } from './seed-stats.ts';

const o = new Command()
  .requiredOption('--a <dir>', 'run directory of arm A; {seed} is replaced by the seed')
  .requiredOption('--b <dir>', 'run directory of arm B; {seed} is replaced by the seed')
  .requiredOption('--seeds <list>', 'comma-separated seeds')
  .option('--opponent <names>', 'evaluation opponent, or a comma-separated list whose trials are pooled', 'mcts-100')
  .option('--episode <k>', 'success by game k (default: the last)')
  .option('--rise', 'pair the rise of success from game 0 to game k, not success by game k')
  .option('--b-policy <name>', "arm B's evaluation row: its trained policy (default), or untrained / random")
  .parse()
  .opts<{ a: string; b: string; seeds: string; opponent: string; episode?: string; rise?: boolean; bPolicy?: string }>();
const opponents = o.opponent.split(',');
const what = o.rise ? 'rise of success 0 →' : 'success by';

/** Per-trial success by game k (or its rise from game 0), the opponents' trials one after another. */
function measure(r: EvalReport, k: number): number[] {
  return opponents.flatMap((name) => (o.rise ? diff(successAt(r, name, k), successAt(r, name, 0)) : successAt(r, name, k)));
}

/** A finished run's report of `policy`, or of its trained policy (not the untrained or random rows). */
function report(dir: string, policy?: string): EvalReport {
  const run = loadFinishedRun(dir);
  if (!run) throw new Error(`${dir} is not a finished run (config.json, every step in metrics.jsonl, eval.json)`);
  const r = run.eval?.find((x) => (policy ? x.policy === policy : x.policy !== 'untrained' && x.policy !== 'random'));
  if (!r) throw new Error(`${dir}: its evaluation has no ${policy ?? 'trained'} policy (rows: ${run.eval?.map((x) => x.policy).join(', ') ?? 'none'})`);
  return r;
}

const per: [number, number][] = [];
for (const seed of o.seeds.split(',').map(Number)) {
  const a = report(o.a.replaceAll('{seed}', String(seed)));
  const b = report(o.b.replaceAll('{seed}', String(seed)), o.bPolicy);
  const k = o.episode === undefined ? opponentEval(a, opponents[0]!).episodes.length - 1 : Number(o.episode);
  const sa = measure(a, k), sb = measure(b, k);
  if (sa.length !== sb.length) throw new Error(`seed ${seed}: ${sa.length} vs ${sb.length} trials; evaluate both arms on the same trials`);
  const d = meanSe(diff(sa, sb));
  per.push(d);
  console.log(`seed ${seed}: ${what} game ${k}: ${a.policy} ${f3(meanSe(sa)[0])}, ${b.policy} ${f3(meanSe(sb)[0])}; A − B ${f3(d[0])} ± ${f3(d[1])}`);
}
const c = acrossSeeds(per);
console.log(`A − B across seeds: ${f3(c.mean)} (sd ${f3(c.sd)}, se ${f3(c.se)})`);
