/**
 * Reproduces docs/results/meta-rl.md: meta-RL (K-episode trials, MAGE credit) vs 1-episode GRPO at
 * equal compute (same optimizer steps, same number of episodes per step), the untrained policy and a
 * uniformly random policy, per task, opponent and episode index, over several seeds, next to the
 * exact oracles.
 *
 *   node --import tsx examples/meta-rl-results.ts [--task bandit|kuhn] [--seeds 0,1,2] [--quick]
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { Command } from 'commander';
import { buildMetaSetup } from '../src/train/meta-setup.ts';
import { parseMetaRlConfig, metaRlIteration, type MetaRlConfigInput } from '../src/train/meta-rl.ts';
import { evaluatePolicy, evaluateRandom, type EvalReport } from '../src/eval/trials.ts';
import { banditCeilings } from '../src/envs/bandit.ts';
import { nonAdaptiveCeiling, bestResponseValue, winnability } from '../src/envs/kuhn-oracles.ts';
import { Rng } from '../src/core/rng.ts';
import { lineChartSvg } from '../src/eval/plot.ts';
import { BANDIT_RECIPE, KUHN_RECIPE, META_RL_TRAINING } from '../src/train/recipes.ts';

const program = new Command()
  .option('--task <task>', 'bandit | kuhn | kuhn-same | ttt', 'bandit')
  .option('--seeds <list>', 'comma-separated seeds', '0,1,2')
  .option('--iterations <n>', 'training iterations per run')
  .option('--eval-trials <n>', 'evaluation trials per opponent')
  .option('--quick', 'tiny run for CI')
  .option('--out <dir>', 'results directory', 'docs/results')
  .parse();
const o = program.opts<{ task: string; seeds: string; iterations?: string; evalTrials?: string; quick?: boolean; out: string }>();
const seeds = o.seeds.split(',').map(Number);

interface TaskSpec {
  env: string;
  envOptions: Record<string, unknown>;
  train: { name: string; weight: number }[];
  evalOpponents: string[];
  trial: MetaRlConfigInput['trial'];
  model: { contextLength: number; nLayer: number; nHead: number; nEmbd: number; initStd?: number };
  iterations: number;
  evalTrials: number;
  lr: number;
  /** Credit, advantage and loss settings (default META_RL_TRAINING). */
  training?: Pick<MetaRlConfigInput, 'credit' | 'advantage' | 'loss'>;
  describe: string;
  oracles: () => Record<string, unknown>;
}

const TASKS: Record<string, TaskSpec> = {
  bandit: {
    env: 'bandit', envOptions: {}, train: [{ name: 'none', weight: 1 }], evalOpponents: ['none'],
    trial: BANDIT_RECIPE.trial, model: BANDIT_RECIPE.model, iterations: BANDIT_RECIPE.iterations, evalTrials: 500, lr: BANDIT_RECIPE.lr,
    describe: '3-armed bandit, paying arm fixed within a trial and uniform across trials; K = 3 episodes of one pull; same_state',
    oracles: () => {
      const c = banditCeilings(3, 3);
      return { nonAdaptivePerEpisode: c.memoryless.rewardPerEpisode, adaptivePerEpisode: c.adaptive.rewardPerEpisode };
    },
  },
  kuhn: {
    env: 'kuhn', envOptions: KUHN_RECIPE.envOptions,
    train: [{ name: 'conservative', weight: 5 }, { name: 'aggressive', weight: 5 }, { name: 'intermediate', weight: 6 }],
    evalOpponents: ['conservative', 'aggressive', 'intermediate', 'cfr-mixed', 'cfr-argmax', 'random'],
    trial: KUHN_RECIPE.trial, model: KUHN_RECIPE.model, iterations: KUHN_RECIPE.iterations, evalTrials: 1000, lr: KUHN_RECIPE.lr,
    training: KUHN_RECIPE.training,
    describe: 'Kuhn poker, new_state (a fresh deal and seat every hand, same opponent), K = 6 hands; the decision and each past hand shown as one token; cells in chips',
    oracles: () => {
      const mix = [{ name: 'conservative', weight: 5 }, { name: 'aggressive', weight: 5 }, { name: 'intermediate', weight: 6 }];
      const opp = ['conservative', 'aggressive', 'intermediate', 'cfr-mixed', 'cfr-argmax', 'random'];
      return {
        rewardScale: KUHN_RECIPE.envOptions.rewardScale,
        nonAdaptiveCeilingChipsMixedSeat: nonAdaptiveCeiling(mix, 'mixed'),
        bestResponseChipsMixedSeat: Object.fromEntries(opp.map((n) => [n, bestResponseValue(n, 'mixed')])),
        winnabilityMixedSeat: Object.fromEntries(opp.map((n) => [n, winnability(n, 'mixed')])),
      };
    },
  },
  // Tic-tac-toe, MAGE's protocol: the same seat and opening every episode, the trial stops once won.
  ttt: {
    env: 'tictactoe', envOptions: { seat: 'random' },
    train: [...['center-first', 'corners-first', 'edges-first', 'main-diagonal', 'anti-diagonal', 'bottom-right-first'].map((name) => ({ name, weight: 1 })), { name: 'random', weight: 1 }, { name: 'mcts-100', weight: 3 }],
    evalOpponents: ['center-first', 'random', 'mcts-100', 'minimax'],
    trial: { episodes: 3, contextMode: 'history_only', reflect: false, stateMode: 'same_state', stopWhenWon: true, maxTurns: 8, rules: 'none', historyWindow: 5, obsWindow: 0 },
    model: { contextLength: 192, nLayer: 2, nHead: 4, nEmbd: 64 }, iterations: 100, evalTrials: 300, lr: 1e-3,
    training: { ...META_RL_TRAINING, advantage: { mode: 'mean_std_norm' }, loss: { kind: 'ppo', entropyCoef: 0.05 } },
    describe: "tic-tac-toe, MAGE's protocol: same seat and opening every episode, trial stops once won, K = 3; win +10, loss −10, draw 0; minimax unseen in training",
    oracles: () => ({ note: 'minimax never loses: the best any policy can do against it is a draw (reward 0)' }),
  },
  // MAGE's own protocol: the same deal and seat every episode, stop once a hand is won; reported as
  // success rate by episode (won in any episode ≤ k) next to the winnability oracle.
  'kuhn-same': {
    env: 'kuhn', envOptions: { seat: 'random' },
    train: [{ name: 'conservative', weight: 5 }, { name: 'aggressive', weight: 5 }, { name: 'intermediate', weight: 6 }],
    evalOpponents: ['conservative', 'aggressive', 'intermediate', 'cfr-argmax', 'random'],
    trial: { episodes: 3, contextMode: 'history_only', reflect: false, stateMode: 'same_state', stopWhenWon: true, maxTurns: 2, rules: 'none', historyWindow: 2, obsWindow: 1 },
    model: { contextLength: 192, nLayer: 2, nHead: 4, nEmbd: 64 }, iterations: 60, evalTrials: 300, lr: 2e-3,
    describe: "Kuhn poker, MAGE's protocol: same deal and seat every episode, trial stops once won, K = 3",
    oracles: () => {
      const opp = ['conservative', 'aggressive', 'intermediate', 'cfr-argmax', 'random'];
      return { winnabilityMixedSeat: Object.fromEntries(opp.map((n) => [n, winnability(n, 'mixed')])) };
    },
  },
};

const spec = TASKS[o.task];
if (!spec) throw new Error(`--task must be one of ${Object.keys(TASKS).join(', ')}`);
const iterations = o.iterations ? Number(o.iterations) : o.quick ? 3 : spec.iterations;
const evalTrials = o.evalTrials ? Number(o.evalTrials) : o.quick ? 20 : spec.evalTrials;

async function trainAndEval(seed: number, mode: 'meta' | 'grpo'): Promise<{ trained: EvalReport; untrained: EvalReport; seconds: number }> {
  const K = spec.trial!.episodes ?? 3;
  // Equal compute: GRPO plays 1-episode trials in K× as many groups, so both see the same episodes per step.
  const cfg = parseMetaRlConfig({
    iterations, seed, groups: mode === 'meta' ? 16 : 16 * K, groupSize: 8, opponents: spec.train,
    trial: mode === 'meta' ? spec.trial : { ...spec.trial, episodes: 1, reflect: false },
    ...(spec.training ?? META_RL_TRAINING),
  });
  const setup = buildMetaSetup({ env: spec.env, envOptions: spec.envOptions, opponents: [...new Set([...spec.train.map((t) => t.name), ...spec.evalOpponents])], model: spec.model, optimizer: { lr: spec.lr, weightDecay: 0 }, seed, outcomeTokens: spec.trial?.pastEpisodes === 'outcome' });
  const evalOpts = { opponents: spec.evalOpponents, trials: evalTrials, seed: 1000 + seed, makeEnv: setup.makeEnv, trial: spec.trial! };
  const untrained = await evaluatePolicy('untrained', setup.engine, evalOpts);
  // The GRPO policy is evaluated on the same K-episode trials (same seeds, so the same deals) but
  // prompted as it was trained — every episode as a fresh 1-episode trial — never with a context
  // it has not seen.
  const trainedEvalOpts = mode === 'meta' ? evalOpts : { ...evalOpts, trial: { ...spec.trial!, contextMode: 'none' as const } };
  const rng = new Rng(seed * 7919 + (mode === 'meta' ? 1 : 2));
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) {
    const m = await metaRlIteration(cfg, { engine: setup.engine, trainer: setup.trainer, makeEnv: setup.makeEnv }, i, rng);
    if (i % 10 === 0 || i === iterations - 1) console.log(`  [${mode} seed ${seed}] it ${i} final-episode reward ${m.finalReturn.toFixed(3)} episodes ${m.episodeReturn.map((x) => x.toFixed(2)).join('/')} (${m.seconds.toFixed(1)} s)`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const trained = await evaluatePolicy(mode === 'meta' ? 'meta-rl' : 'grpo-1ep', setup.engine, trainedEvalOpts);
  return { trained, untrained, seconds };
}

interface Cell { mean: number; sd: number; se: number }
function across(values: number[], ses: number[]): Cell {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : Number.NaN;
  // SE of the across-seed mean from the within-seed evaluation SEs (evaluation noise only).
  const se = Math.sqrt(ses.reduce((a, s) => a + s * s, 0)) / n;
  return { mean, sd, se };
}

async function main(): Promise<void> {
  const runs: Record<string, EvalReport[]> = { 'meta-rl': [], 'grpo-1ep': [], untrained: [], random: [] };
  const times: Record<string, number[]> = { 'meta-rl': [], 'grpo-1ep': [] };
  for (const seed of seeds) {
    console.log(`seed ${seed}: meta-RL`);
    const meta = await trainAndEval(seed, 'meta');
    console.log(`seed ${seed}: 1-episode GRPO`);
    const grpo = await trainAndEval(seed, 'grpo');
    runs['meta-rl']!.push(meta.trained);
    runs['grpo-1ep']!.push(grpo.trained);
    runs.untrained!.push(meta.untrained);
    times['meta-rl']!.push(meta.seconds);
    times['grpo-1ep']!.push(grpo.seconds);
  }
  const setup = buildMetaSetup({ env: spec.env, envOptions: spec.envOptions, opponents: [...new Set([...spec.train.map((t) => t.name), ...spec.evalOpponents])], model: spec.model, optimizer: {}, seed: 0, outcomeTokens: spec.trial?.pastEpisodes === 'outcome' });
  for (const seed of seeds) runs.random!.push(evaluateRandom({ opponents: spec.evalOpponents, trials: evalTrials, seed: 1000 + seed, makeEnv: setup.makeEnv, trial: spec.trial! }));

  const K = spec.trial!.episodes ?? 3;
  const lines: string[] = [];
  lines.push(`| opponent | episode | ${Object.keys(runs).map((p) => `${p}`).join(' | ')} |`);
  lines.push(`|---|---|${Object.keys(runs).map(() => '---').join('|')}|`);
  const table: Record<string, Record<string, Cell[]>> = {};
  for (const opp of spec.evalOpponents) {
    table[opp] = {};
    for (let k = 0; k < K; k++) {
      const cells = Object.entries(runs).map(([p, reps]) => {
        const eps = reps.map((r) => r.opponents.find((x) => x.opponent === opp)!.episodes[k]!);
        const c = across(eps.map((e) => e.meanReturn), eps.map((e) => e.seReturn));
        (table[opp]![p] ??= []).push(c);
        return `${c.mean.toFixed(3)} (sd ${Number.isFinite(c.sd) ? c.sd.toFixed(3) : '–'}, se ${c.se.toFixed(3)})`;
      });
      lines.push(`| ${opp} | ${k} | ${cells.join(' | ')} |`);
    }
  }
  // Success rate by episode (won in any episode ≤ k): MAGE's metric, meaningful when trials stop once won.
  const success: string[] = [`| opponent | episode | ${Object.keys(runs).join(' | ')} |`, `|---|---|${Object.keys(runs).map(() => '---').join('|')}|`];
  for (const opp of spec.evalOpponents) {
    for (let k = 0; k < K; k++) {
      const cells = Object.values(runs).map((reps) => {
        const xs = reps.map((r) => r.opponents.find((x) => x.opponent === opp)!.episodes[k]!.successRate);
        const m = xs.reduce((a, b) => a + b, 0) / xs.length;
        const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1)) : Number.NaN;
        return `${m.toFixed(3)} (sd ${Number.isFinite(sd) ? sd.toFixed(3) : '–'})`;
      });
      success.push(`| ${opp} | ${k} | ${cells.join(' | ')} |`);
    }
  }
  // Per opponent, seat and episode index (games with seats).
  const seatLines: string[] = [];
  const seatsOf = (opp: string) => Object.keys(runs['meta-rl']![0]!.opponents.find((x) => x.opponent === opp)!.bySeat ?? {});
  if (spec.evalOpponents.some((opp) => seatsOf(opp).length > 0)) {
    seatLines.push(`| opponent | seat | episode | ${Object.keys(runs).join(' | ')} |`, `|---|---|---|${Object.keys(runs).map(() => '---').join('|')}|`);
    for (const opp of spec.evalOpponents) {
      for (const seat of seatsOf(opp)) {
        for (let k = 0; k < K; k++) {
          const cells = Object.values(runs).map((reps) => {
            const eps = reps.map((r) => r.opponents.find((x) => x.opponent === opp)!.bySeat![seat]![k]!).filter((e) => e.n > 1);
            if (eps.length === 0) return '–';
            const c = across(eps.map((e) => e.meanReturn), eps.map((e) => e.seReturn));
            return `${c.mean.toFixed(3)} (se ${c.se.toFixed(3)})`;
          });
          seatLines.push(`| ${opp} | ${seat} | ${k} | ${cells.join(' | ')} |`);
        }
      }
    }
  }
  // Against the training mixture (opponents weighted as in training): the number the Kuhn bar is about.
  const mixture: string[] = [];
  const trainNames = spec.train.map((t) => t.name);
  if (trainNames.every((n) => spec.evalOpponents.includes(n)) && trainNames.length > 1) {
    const W = spec.train.reduce((a, t) => a + t.weight, 0);
    const mixCell = (reps: EvalReport[], k: number): Cell => {
      const per = reps.map((r) => {
        let m = 0, v = 0;
        for (const t of spec.train) {
          const e = r.opponents.find((x) => x.opponent === t.name)!.episodes[k]!;
          m += (t.weight / W) * e.meanReturn;
          v += (t.weight / W) ** 2 * e.seReturn ** 2;
        }
        return { m, se: Math.sqrt(v) };
      });
      return across(per.map((x) => x.m), per.map((x) => x.se));
    };
    mixture.push(`| episode | ${Object.keys(runs).join(' | ')} |`, `|---|${Object.keys(runs).map(() => '---').join('|')}|`);
    const mix: Record<string, Cell[]> = {};
    for (let k = 0; k < K; k++) {
      const cells = Object.entries(runs).map(([p, reps]) => {
        const c = mixCell(reps, k);
        (mix[p] ??= []).push(c);
        return `${c.mean.toFixed(3)} (sd ${Number.isFinite(c.sd) ? c.sd.toFixed(3) : '–'}, se ${c.se.toFixed(3)})`;
      });
      mixture.push(`| ${k} | ${cells.join(' | ')} |`);
    }
    const a = mix['meta-rl']![K - 1]!, b = mix['grpo-1ep']![K - 1]!;
    mixture.push('', `Final episode, meta-RL − GRPO: ${(a.mean - b.mean).toFixed(3)} (evaluation se ≤ ${Math.hypot(a.se, b.se).toFixed(3)}, unpaired bound; per seed: ${seeds.map((_, i) => (mixCell([runs['meta-rl']![i]!], K - 1).mean - mixCell([runs['grpo-1ep']![i]!], K - 1).mean).toFixed(3)).join(', ')}).`);
    table['training-mixture'] = mix;
  }
  const oracles = spec.oracles();
  mkdirSync(o.out, { recursive: true });
  const stem = `${o.out}/meta-rl-${o.task}${o.quick ? '-quick' : ''}`;
  writeFileSync(`${stem}.json`, JSON.stringify({ task: o.task, describe: spec.describe, seeds, iterations, evalTrials, trainSeconds: times, oracles, table, runs }, null, 2) + '\n');
  const cmd = `node --import tsx examples/meta-rl-results.ts --task ${o.task} --seeds ${o.seeds}${o.iterations ? ` --iterations ${o.iterations}` : ''}${o.evalTrials ? ` --eval-trials ${o.evalTrials}` : ''}${o.quick ? ' --quick' : ''}`;
  const md = [
    `## ${o.task}: ${spec.describe}`,
    '',
    `Reproduce: \`${cmd}\` (${iterations} iterations per run, ${evalTrials} evaluation trials per opponent and seed, seeds ${o.seeds}).`,
    `Cells: mean episode reward across seeds (sd = spread across seeds, se = evaluation standard error of that mean).`,
    `Train time per run (s): meta-RL ${times['meta-rl']!.map((t) => t.toFixed(0)).join(', ')}; GRPO ${times['grpo-1ep']!.map((t) => t.toFixed(0)).join(', ')}.`,
    '',
    ...lines,
    '',
    ...(mixture.length ? [`Against the training mixture (${spec.train.map((t) => `${t.name} ×${t.weight}`).join(', ')}), by episode:`, '', ...mixture, ''] : []),
    ...(seatLines.length ? ['By the seat the agent played that episode from (mean across seeds):', '', ...seatLines, ''] : []),
    'Success rate by episode (won in any episode ≤ k), mean across seeds:',
    '',
    ...success,
    '',
    'Oracles: `' + JSON.stringify(oracles) + '`',
    '',
  ].join('\n');
  writeFileSync(`${stem}.md`, md);
  const first = spec.evalOpponents[0]!;
  writeFileSync(`${stem}.svg`, lineChartSvg(`${o.task}: reward by episode (${first})`, 'episode index', 'mean reward', Object.entries(table[first]!).map(([p, cs]) => ({ name: p, values: cs.map((c) => c.mean), errors: cs.map((c) => c.se) }))));
  console.log(md);
}

await main();
