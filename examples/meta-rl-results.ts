/**
 * Reproduces docs/results/meta-rl.md: each arm is an `agentrl train` run of a shipped config
 * (examples/configs/*.yaml) with the seed overridden — meta-RL vs 1-episode GRPO at equal compute,
 * the untrained policy, a random policy and, for Kuhn, the oracle strategies played on the same
 * evaluation deals — per opponent and episode index, over the declared seeds. Differences between
 * arms are paired per evaluation deal (every arm of a seed is evaluated on the same deals).
 *
 *   node --import tsx examples/meta-rl-results.ts --task bandit|kuhn [--seeds 10,11,12] [--quick]
 *        [--arms meta,grpo] [--set key=value …] [--label NAME] [--out DIR]
 *
 * Tic-tac-toe (ttt, ttt-cells, ttt-new, …) adds the oracle players (minimax, minimax + retry memory;
 * with `weak-c<N>` opponents also win-stay / lose-shift over their cells and the told-opponent ceiling)
 * and its own tables: success with evaluation se, per opponent × seat × episode, draw rates,
 * invalid-move rates and paired per-trial differences of success and of its rise across episodes.
 *
 * `--eval-trial key=value …` (with `--eval-label NAME`) re-evaluates the finished runs' checkpoints
 * with those evaluation trial settings, e.g. MAGE's validation sampling `temperature=0.7 topP=0.8
 * topK=20`, and writes OUT/meta-rl-<task>[-label]-NAME.*; the untrained row is then left out (its
 * weights are not kept).
 *
 * Writes OUT/meta-rl-<task>[-label].{md,json,svg} (default OUT: runs/results; pass --out docs/results
 * to update the committed pages) and keeps every run directory under --runs (default
 * runs/meta-rl-results), where a finished run of the same config is reused.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { readConfigFile } from '../src/cli/config-file.ts';
import { loadFinishedRun, trainRun, type TrainRunResult } from '../src/run/run.ts';
import { applyOverrides, evalTrialConfig, parseRunConfig } from '../src/run/run-config.ts';
import { canonicalJson } from '../src/engine/checkpoint.ts';
import { evaluatePolicy, evaluateScripted, meanSe, type EvalOptions, type EvalReport } from '../src/eval/trials.ts';
import { loadCheckpointPolicy } from '../src/cli/checkpoint-policy.ts';
import { opponentEval as opp, successAt, notLostAt } from '../src/eval/trial-measures.ts';
import { bestFixedPlayer, bestResponsePlayer } from '../src/eval/kuhn-oracle-players.ts';
import { minimaxOraclePlayer, minimaxRetryPlayer, openingSearchPlayer, toldOpeningPlayer } from '../src/eval/ttt-oracle-players.ts';
import { banditCeilings } from '../src/envs/bandit.ts';
import { weakOpeningCell } from '../src/envs/ttt-opponents.ts';
import { nonAdaptiveCeiling, bestResponseValue } from '../src/envs/kuhn-oracles.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import type { TrialConfig } from '../src/agents/trial.ts';
import { lineChartSvg } from '../src/eval/plot.ts';
import { acrossSeeds, f3 } from './seed-stats.ts';

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
const program = new Command()
  .option('--task <task>', 'bandit | kuhn | kuhn-same | ttt | ttt-cells | ttt-new | ttt-weak | … (configs examples/configs/<task>-{meta-rl,grpo}.yaml)', 'kuhn')
  .option('--seeds <list>', 'comma-separated training seeds, declared before the run', '10,11,12')
  .option('--arms <list>', 'meta,grpo (the configs examples/configs/<task>-meta-rl.yaml and <task>-grpo.yaml)', 'meta,grpo')
  .option('--set <key=value>', 'override applied to every arm (repeatable)', collect, [])
  .option('--label <name>', 'suffix of the output files (e.g. eta2)')
  .option('--eval-trial <key=value>', 're-evaluate the trained checkpoints with this evaluation trial setting (repeatable; needs --eval-label)', collect, [])
  .option('--eval-label <name>', 'suffix of the output files of a re-evaluation')
  .option('--quick', 'tiny run for CI (3 steps, 20 evaluation trials)')
  .option('--out <dir>', 'results directory (tables)', 'runs/results')
  .option('--runs <dir>', 'run directories (finished runs of the same config are reused)', 'runs/meta-rl-results')
  .parse();
const o = program.opts<{ task: string; seeds: string; arms: string; set: string[]; label?: string; evalTrial: string[]; evalLabel?: string; quick?: boolean; out: string; runs: string }>();
const seeds = o.seeds.split(',').map(Number);
const arms = o.arms.split(',');
const CONFIG = { meta: `examples/configs/${o.task}-meta-rl.yaml`, grpo: `examples/configs/${o.task}-grpo.yaml` } as Record<string, string>;
for (const a of arms) if (!CONFIG[a]) throw new Error(`--arms: unknown arm '${a}' (meta, grpo)`);
const stem = `meta-rl-${o.task}${o.label ? `-${o.label}` : ''}${o.quick ? '-quick' : ''}`;
// key=value pairs parsed as `--set` parses them.
const evalOverrides = applyOverrides({}, o.evalTrial, '--eval-trial');
const reevaluating = o.evalTrial.length > 0;
if (reevaluating !== (o.evalLabel !== undefined)) throw new Error('--eval-trial and --eval-label go together: the re-evaluation is written under its own name');
const outStem = reevaluating ? `${stem}-${o.evalLabel}` : stem;

interface ArmRun {
  arm: string;
  seed: number;
  result: TrainRunResult;
  trained: EvalReport;
  untrained: EvalReport;
  random: EvalReport;
}

async function runArm(arm: string, seed: number): Promise<ArmRun> {
  const sets = [`seed=${seed}`, ...o.set, ...(o.quick ? ['trainer.steps=3', 'eval.trials=20'] : [])];
  const raw = readConfigFile(CONFIG[arm]!, sets);
  const out = join(o.runs, `${stem}-${arm}-s${seed}`);
  // A finished run of exactly this config is reused (e.g. arms run by separate invocations).
  const done = loadFinishedRun(out);
  if (done && canonicalJson(done.config) === canonicalJson(parseRunConfig(raw))) {
    console.log(`[${arm} seed ${seed}] reusing the finished run in ${out}`);
    const [u, t, r] = done.eval!;
    return { arm, seed, result: done, trained: t!, untrained: u!, random: r! };
  }
  console.log(`[${arm} seed ${seed}] agentrl train ${CONFIG[arm]} ${sets.map((s) => `--set ${s}`).join(' ')} → ${out}`);
  const result = await trainRun(raw, {
    out,
    resume: true, // continue an interrupted run of the same config from its checkpoint (exact at η = 0)
    onStep: (m, cfg) => {
      if (m.version % 50 === 0 || m.version + 1 === cfg.trainer.steps) console.log(`  [${arm} seed ${seed}] step ${m.version + 1} reward ${m.meanReward.toFixed(3)} by episode ${m.episodeReward.map((x) => x.toFixed(2)).join('/')} (${m.seconds.toFixed(2)} s)`);
    },
  });
  const [untrained, trained, random] = result.eval!;
  return { arm, seed, result, trained: trained!, untrained: untrained!, random: random! };
}

type Cell = ReturnType<typeof acrossSeeds>;
/** Across seeds: per-seed values with their evaluation se (examples/seed-stats.ts). */
const across = (values: number[], ses: number[]): Cell => acrossSeeds(values.map((v, i) => [v, ses[i]!]));
const cellText = (c: Cell) => `${f3(c.mean)} (sd ${f3(c.sd)}, se ${f3(c.se)})`;

/** Mean and se of x over trials. */
/** Weighted-mixture mean (and its se) of episode k, optionally of the per-deal difference a − b. */
function mixture(weights: { name: string; weight: number }[], a: EvalReport, k: number, b?: EvalReport): [number, number] {
  const W = weights.reduce((s, w) => s + w.weight, 0);
  let m = 0, v = 0;
  for (const w of weights) {
    const oa = opp(a, w.name), ob = b ? opp(b, w.name) : null;
    const xs = oa.trialRewards.map((r, i) => (r[k] ?? Number.NaN) - (ob ? (ob.trialRewards[i]![k] ?? Number.NaN) : 0)).filter(Number.isFinite);
    const [mi, si] = meanSe(xs);
    m += (w.weight / W) * mi;
    v += (w.weight / W) ** 2 * si * si;
  }
  return [m, Math.sqrt(v)];
}
const diff = (a: number[], b: number[]) => a.map((x, i) => x - b[i]!);

/**
 * Tic-tac-toe tables: success by episode with its evaluation se, per opponent × seat × episode,
 * the draw (not-lost) rate per episode, invalid-move rates, and paired per-trial differences at
 * the last episode and of the rise from episode 0 to the last (every row is played on the same trials).
 */
function tttTables(policies: string[], reps: (p: string) => EvalReport[], evalOpponents: string[], K: number): string[] {
  const out: string[] = [];
  const cell = (per: [number, number][]) => {
    const c = across(per.map((x) => x[0]), per.map((x) => x[1]));
    return `${f3(c.mean)} (sd ${f3(c.sd)}, se ${f3(c.se)})`;
  };
  out.push('Success rate by episode with evaluation se (won in any episode ≤ k; mean across seeds, sd = seed spread):', '', `| opponent | episode | ${policies.join(' | ')} |`, `|---|---|${policies.map(() => '---').join('|')}|`);
  for (const name of evalOpponents) for (let k = 0; k < K; k++) out.push(`| ${name} | ${k} | ${policies.map((p) => cell(reps(p).map((r) => meanSe(successAt(r, name, k))))).join(' | ')} |`);
  out.push('', 'Success rate per opponent × seat × episode (mean across seeds):', '', `| opponent | seat | episode | ${policies.join(' | ')} |`, `|---|---|---|${policies.map(() => '---').join('|')}|`);
  for (const name of evalOpponents) {
    for (const seat of ['X', 'O']) {
      // A seat nobody played (a config with a fixed seat, e.g. ttt-x) gets no rows.
      if (!policies.some((p) => reps(p).some((r) => opp(r, name).bySeat?.[seat] !== undefined))) continue;
      for (let k = 0; k < K; k++) {
        const cells = policies.map((p) => {
          const xs = reps(p).map((r) => opp(r, name).bySeat?.[seat]?.[k]?.successRate ?? Number.NaN);
          return f3(xs.reduce((a, b) => a + b, 0) / xs.length);
        });
        out.push(`| ${name} | ${seat} | ${k} | ${cells.join(' | ')} |`);
      }
    }
  }
  out.push('', 'Not lost (draw or win) in episode k, among trials that played it (against minimax: the draw rate):', '', `| opponent | episode | ${policies.join(' | ')} |`, `|---|---|${policies.map(() => '---').join('|')}|`);
  for (const name of evalOpponents) for (let k = 0; k < K; k++) out.push(`| ${name} | ${k} | ${policies.map((p) => cell(reps(p).map((r) => meanSe(notLostAt(r, name, k))))).join(' | ')} |`);
  out.push('', 'Invalid-move rate (invalid turns / turns), mean across seeds:', '', `| opponent | ${policies.join(' | ')} |`, `|---|${policies.map(() => '---').join('|')}|`);
  for (const name of evalOpponents) out.push(`| ${name} | ${policies.map((p) => f3(reps(p).reduce((a, r) => a + opp(r, name).invalidRate, 0) / reps(p).length)).join(' | ')} |`);
  const pairs: [string, string][] = [['meta-rl', 'grpo-1ep'], ['meta-rl', 'untrained'], ['meta-rl', 'random'], ['grpo-1ep', 'random'], ['meta-rl', 'oracle: minimax'], ['meta-rl', 'oracle: minimax + retry memory'], ['meta-rl', 'oracle: opening search']];
  out.push('', `Paired per-trial differences (same trials; se from the per-trial differences, combined across seeds): success by the last episode (k = ${K - 1}), and the rise of success from episode 0 to the last:`, '', '| opponent | difference | success by last episode | per seed | rise 0 → last | per seed |', '|---|---|---|---|---|---|');
  for (const name of evalOpponents) {
    for (const [a, b] of pairs) {
      if (!policies.includes(a) || !policies.includes(b)) continue;
      const last = reps(a).map((ra, i) => meanSe(diff(successAt(ra, name, K - 1), successAt(reps(b)[i]!, name, K - 1))));
      const rise = reps(a).map((ra, i) => {
        const rb = reps(b)[i]!;
        return meanSe(diff(diff(successAt(ra, name, K - 1), successAt(ra, name, 0)), diff(successAt(rb, name, K - 1), successAt(rb, name, 0))));
      });
      const perSeed = (xs: [number, number][]) => xs.map((x) => `${f3(x[0])} ± ${f3(x[1])}`).join(', ');
      out.push(`| ${name} | ${a} − ${b} | ${cell(last)} | ${perSeed(last)} | ${cell(rise)} | ${perSeed(rise)} |`);
    }
  }
  out.push('', 'Rise of success from episode 0 to the last, per policy (paired within trials):', '', `| opponent | ${policies.join(' | ')} |`, `|---|${policies.map(() => '---').join('|')}|`);
  for (const name of evalOpponents) out.push(`| ${name} | ${policies.map((p) => cell(reps(p).map((r) => meanSe(diff(successAt(r, name, K - 1), successAt(r, name, 0)))))).join(' | ')} |`);
  out.push('');
  return out;
}

/** The run's trained checkpoint evaluated again, on the same trials, with --eval-trial's settings. */
async function reevaluate(r: ArmRun, trial: TrialConfig, opponents: string[]): Promise<EvalReport> {
  const cfg = r.result.config;
  const { engine } = await loadCheckpointPolicy(join(o.runs, `${stem}-${r.arm}-s${r.seed}`, 'checkpoint'), { whyTokenizer: 'it cannot drive text trials', maxBatch: 128, seed: cfg.eval.seed, checkTask: () => null });
  console.log(`[${r.arm} seed ${r.seed}] re-evaluating with ${JSON.stringify(evalOverrides)}`);
  return evaluatePolicy(r.trained.policy, engine, { opponents, trials: cfg.eval.trials, seed: cfg.eval.seed, makeEnv: envFactory(cfg.task, cfg.envOptions), trial });
}

async function main(): Promise<void> {
  const runs: ArmRun[] = [];
  for (const seed of seeds) for (const arm of arms) runs.push(await runArm(arm, seed));
  const first = runs[0]!.result.config;
  const evalTrial = evalTrialConfig(first, evalOverrides, '--eval-trial');
  const K = evalTrial.episodes;
  const evalOpponents = first.eval.opponents ?? first.opponents.map((x) => x.name);
  const train = first.opponents;
  if (reevaluating) for (const r of runs) r.trained = await reevaluate(r, evalTrial, evalOpponents);
  // Rows per seed: trained arms, untrained (the meta arm's), random, and for Kuhn the oracles on the same deals.
  const rowsBySeed = new Map<number, Record<string, EvalReport>>();
  for (const seed of seeds) {
    const mine = runs.filter((r) => r.seed === seed);
    const rows: Record<string, EvalReport> = {};
    for (const r of mine) rows[r.arm === 'meta' ? 'meta-rl' : 'grpo-1ep'] = r.trained;
    if (!reevaluating) rows.untrained = mine[0]!.untrained;
    rows.random = mine[0]!.random;
    if (first.task === 'kuhn') {
      const evalOpts: EvalOptions = { opponents: evalOpponents, trials: first.eval.trials, seed: first.eval.seed, makeEnv: envFactory(first.task, first.envOptions), trial: evalTrial };
      rows['oracle: best fixed vs mixture'] = evaluateScripted('best-fixed', bestFixedPlayer(train), evalOpts);
      rows['oracle: best response'] = evaluateScripted('best-response', bestResponsePlayer(), evalOpts);
    }
    if (first.task === 'tictactoe') {
      const evalOpts: EvalOptions = { opponents: evalOpponents, trials: first.eval.trials, seed: first.eval.seed, makeEnv: envFactory(first.task, first.envOptions), trial: evalTrial };
      rows['oracle: minimax'] = evaluateScripted('minimax', minimaxOraclePlayer(), evalOpts);
      rows['oracle: minimax + retry memory'] = evaluateScripted('minimax-retry', minimaxRetryPlayer(), evalOpts);
      const weakCells = evalOpponents.flatMap((n) => weakOpeningCell(n) ?? []);
      if (weakCells.length > 0) {
        rows['oracle: opening search'] = evaluateScripted('opening-search', openingSearchPlayer(weakCells), evalOpts);
        rows['oracle: told the opening'] = evaluateScripted('told-opening', toldOpeningPlayer(), evalOpts);
      }
    }
    rowsBySeed.set(seed, rows);
  }
  const policies = Object.keys(rowsBySeed.get(seeds[0]!)!);
  const reps = (p: string) => seeds.map((s) => rowsBySeed.get(s)![p]!);

  const lines: string[] = [`| opponent | episode | ${policies.join(' | ')} |`, `|---|---|${policies.map(() => '---').join('|')}|`];
  for (const name of evalOpponents) {
    for (let k = 0; k < K; k++) {
      const cells = policies.map((p) => {
        const eps = reps(p).map((r) => opp(r, name).episodes[k]!);
        return cellText(across(eps.map((e) => e.meanReturn), eps.map((e) => e.seReturn)));
      });
      lines.push(`| ${name} | ${k} | ${cells.join(' | ')} |`);
    }
  }

  // Success rate by episode (won in any episode ≤ k): MAGE's metric, meaningful when trials stop once won.
  const success: string[] = [`| opponent | episode | ${policies.join(' | ')} |`, `|---|---|${policies.map(() => '---').join('|')}|`];
  for (const name of evalOpponents) {
    for (let k = 0; k < K; k++) {
      const cells = policies.map((p) => {
        const xs = reps(p).map((r) => opp(r, name).episodes[k]!.successRate);
        const c = across(xs, xs.map(() => 0));
        return `${f3(c.mean)} (sd ${f3(c.sd)})`;
      });
      success.push(`| ${name} | ${k} | ${cells.join(' | ')} |`);
    }
  }

  // Against the training mixture, and paired per-deal differences.
  const mixLines: string[] = [];
  const paired: string[] = [];
  const mixTable: Record<string, Cell[]> = {};
  if (train.length > 1 && train.every((t) => evalOpponents.includes(t.name))) {
    mixLines.push(`| episode | ${policies.join(' | ')} |`, `|---|${policies.map(() => '---').join('|')}|`);
    for (let k = 0; k < K; k++) {
      const cells = policies.map((p) => {
        const per = reps(p).map((r) => mixture(train, r, k));
        const c = across(per.map((x) => x[0]), per.map((x) => x[1]));
        (mixTable[p] ??= []).push(c);
        return cellText(c);
      });
      mixLines.push(`| ${k} | ${cells.join(' | ')} |`);
    }
    const pairs: [string, string][] = [['meta-rl', 'grpo-1ep'], ['meta-rl', 'oracle: best fixed vs mixture'], ['grpo-1ep', 'oracle: best fixed vs mixture'], ['meta-rl', 'untrained']];
    paired.push('| difference (paired per deal) | hand 0 | final hand | per seed (final hand) |', '|---|---|---|---|');
    for (const [a, b] of pairs) {
      if (!policies.includes(a) || !policies.includes(b)) continue;
      const at = (k: number) => {
        const per = seeds.map((s) => mixture(train, rowsBySeed.get(s)![a]!, k, rowsBySeed.get(s)![b]!));
        return { c: across(per.map((x) => x[0]), per.map((x) => x[1])), per };
      };
      const h0 = at(0), hl = at(K - 1);
      paired.push(`| ${a} − ${b} | ${f3(h0.c.mean)} (se ${f3(h0.c.se)}) | **${f3(hl.c.mean)}** (se ${f3(hl.c.se)}) | ${hl.per.map((x) => `${f3(x[0])} ± ${f3(x[1])}`).join(', ')} |`);
    }
  }

  const ttt = first.task === 'tictactoe' ? tttTables(policies, reps, evalOpponents, K) : [];

  // Compute per arm: samples, trained and processed tokens, wall time, clip fraction.
  const compute: string[] = ['| arm | seed | steps | samples | trained tokens | processed tokens | train wall s | mean clip fraction | max clip fraction |', '|---|---|---|---|---|---|---|---|---|'];
  for (const r of runs) {
    const h = r.result.history;
    const sum = (f: (m: (typeof h)[number]) => number) => h.reduce((a, m) => a + f(m), 0);
    compute.push(`| ${r.arm} | ${r.seed} | ${h.length} | ${sum((m) => m.samples)} | ${sum((m) => m.trainedTokens)} | ${sum((m) => m.processedTokens)} | ${r.result.wallSeconds.toFixed(0)} | ${(sum((m) => m.trainer.clipFrac ?? 0) / h.length).toExponential(2)} | ${Math.max(...h.map((m) => m.trainer.clipFracMax ?? 0)).toExponential(2)} |`);
  }

  const oracles = first.task === 'kuhn'
    ? { nonAdaptiveCeilingChips: nonAdaptiveCeiling(train, 'mixed'), bestResponseChips: Object.fromEntries(evalOpponents.map((n) => [n, bestResponseValue(n, 'mixed')])) }
    : first.task === 'bandit' ? { perEpisode: banditCeilings(3, K) }
    : first.task === 'tictactoe' ? { note: `oracle rows are played on the same trials: minimax (perfect play, random ties) and minimax + retry memory${evalOpponents.some((n) => weakOpeningCell(n) !== null) ? '; opening search (win-stay / lose-shift over the weak players\' cells, then minimax) and told the opening (opens on the opponent\'s weak cell)' : ''}` } : { note: 'no exact oracle for this task' };
  const cmd = `node --import tsx examples/meta-rl-results.ts --task ${o.task} --seeds ${o.seeds} --arms ${o.arms}${o.set.map((s) => ` --set ${s}`).join('')}${o.label ? ` --label ${o.label}` : ''}${o.quick ? ' --quick' : ''}${o.evalTrial.map((s) => ` --eval-trial ${s}`).join('')}${o.evalLabel ? ` --eval-label ${o.evalLabel}` : ''}`;
  const md = [
    `## ${o.task}${o.label ? ` (${o.label})` : ''}: ${arms.map((a) => CONFIG[a]).join(' vs ')}`,
    '',
    `Reproduce: \`${cmd}\` (seeds ${o.seeds}; ${first.trainer.steps} steps per run; ${first.eval.trials} evaluation trials per opponent, evaluation seed ${first.eval.seed}: every row is played on the same deals).`,
    'Cells: mean episode reward across seeds (sd = spread across seeds, se = evaluation standard error of that mean).',
    ...(reevaluating ? [`The trained checkpoints are re-evaluated on the same trials with the evaluation trial settings ${JSON.stringify(evalOverrides)}; the untrained row is left out (its weights are not kept), the random player and the oracles do not sample from a model.`] : []),
    '',
    ...lines,
    '',
    ...(mixLines.length ? [`Against the training mixture (${train.map((t) => `${t.name} ×${t.weight}`).join(', ')}), by episode:`, '', ...mixLines, '', 'Paired differences (per deal, same evaluation seed; se from the per-deal differences):', '', ...paired, ''] : []),
    // Tic-tac-toe has its own success table, with evaluation standard errors (tttTables).
    ...(evalTrial.stopWhenWon && first.task !== 'tictactoe' ? ['Success rate by episode (won in any episode ≤ k), mean across seeds:', '', ...success, ''] : []),
    ...ttt,
    'Compute per run:',
    '',
    ...compute,
    '',
    'Oracles (exact): `' + JSON.stringify(oracles) + '`',
    '',
  ].join('\n');
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, `${outStem}.md`), md);
  writeFileSync(join(o.out, `${outStem}.json`), JSON.stringify({ command: cmd, seeds, arms, ...(reevaluating ? { evalTrial: evalOverrides } : {}), oracles, mixture: mixTable, runs: runs.map((r) => ({ arm: r.arm, seed: r.seed, wallSeconds: r.result.wallSeconds })), rows: Object.fromEntries(seeds.map((s) => [s, rowsBySeed.get(s)])) }) + '\n');
  const firstOpp = evalOpponents[0]!;
  writeFileSync(join(o.out, `${outStem}.svg`), lineChartSvg(`${o.task}: reward by episode (${mixLines.length ? 'training mixture' : firstOpp})`, 'episode index', 'mean reward', policies.map((p) => {
    const cs = mixTable[p] ?? Array.from({ length: K }, (_, k) => { const eps = reps(p).map((r) => opp(r, firstOpp).episodes[k]!); return across(eps.map((e) => e.meanReturn), eps.map((e) => e.seReturn)); });
    return { name: p, values: cs.map((c) => c.mean), errors: cs.map((c) => c.se) };
  })));
  console.log(md);
}

await main();
