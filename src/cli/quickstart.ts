/**
 * `agentrl quickstart`: meta-RL on the built-in engine in a few minutes on 2 cores.
 *
 * Task: 3-armed bandit trials of 3 episodes, the paying arm fixed within a trial and random across
 * trials, so the only way to beat 1/3 per episode is to read earlier episodes (in-context
 * adaptation). Trains with MAGE credit assignment, then evaluates the untrained policy, the trained
 * policy and a random policy on the same held-out seeds; writes eval.json, eval.md, plot.svg and
 * train.jsonl to the run directory.
 */
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { buildMetaSetup } from '../train/meta-setup.ts';
import { parseMetaRlConfig, metaRlIteration, type IterationMetrics } from '../train/meta-rl.ts';
import { evaluatePolicy, evaluateRandom, evalTable, type EvalReport } from '../eval/trials.ts';
import { lineChartSvg } from '../eval/plot.ts';
import { banditCeilings } from '../envs/bandit.ts';
import { Rng } from '../core/rng.ts';
import { saveTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { BANDIT_RECIPE, META_RL_TRAINING } from '../train/recipes.ts';

export interface QuickstartOptions {
  out: string;
  iterations?: number;
  seed: number;
  quick: boolean;
}


export async function runQuickstart(o: QuickstartOptions): Promise<void> {
  const iterations = o.iterations ?? (o.quick ? 8 : BANDIT_RECIPE.iterations);
  const evalTrials = o.quick ? 60 : 300;
  mkdirSync(o.out, { recursive: true });
  const cfg = parseMetaRlConfig({
    iterations, groups: BANDIT_RECIPE.groups, groupSize: BANDIT_RECIPE.groupSize, seed: o.seed,
    opponents: [{ name: 'none' }],
    trial: BANDIT_RECIPE.trial,
    ...META_RL_TRAINING,
  });
  const setup = buildMetaSetup({ env: 'bandit', opponents: ['none'], model: BANDIT_RECIPE.model, optimizer: { lr: BANDIT_RECIPE.lr, weightDecay: 0 }, seed: o.seed, outcomeTokens: true });
  const backendName = setup.trainer.model.backend.name;
  console.log(`agentrl quickstart — compute path ${backendName}; model ${setup.trainer.model.numParams.toLocaleString()} params; ${iterations} iterations × ${cfg.groups * cfg.groupSize} trials of ${cfg.trial.episodes} episodes`);

  const evalOpts = { opponents: ['none'], trials: evalTrials, seed: o.seed, makeEnv: setup.makeEnv, trial: { ...BANDIT_RECIPE.trial } };
  const untrained = await evaluatePolicy('untrained', setup.engine, evalOpts);

  const log = join(o.out, 'train.jsonl');
  writeFileSync(log, '');
  const bar = new cliProgress.SingleBar({ format: 'training |{bar}| {value}/{total} it | final-episode reward {final} | ep rewards {eps} | {secs}s/it', hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(iterations, 0, { final: '-', eps: '-', secs: '-' });
  const rng = new Rng(cfg.seed);
  const history: IterationMetrics[] = [];
  for (let i = 0; i < iterations; i++) {
    const m = await metaRlIteration(cfg, { engine: setup.engine, trainer: setup.trainer, makeEnv: setup.makeEnv }, i, rng);
    history.push(m);
    appendFileSync(log, JSON.stringify(m) + '\n');
    bar.update(i + 1, { final: m.finalReturn.toFixed(2), eps: m.episodeReturn.map((x) => x.toFixed(2)).join('/'), secs: m.seconds.toFixed(1) });
  }
  bar.stop();

  // The run directory keeps the trained policy, with what `agentrl eval` needs to replay its trials.
  await saveTrainerCheckpoint(join(o.out, 'checkpoint'), setup.trainer, {
    tokenizer: setup.tokenizer,
    rng: { train: rng.state(), sampler: setup.engine.rngState() },
    trainerState: { env: 'bandit', envOptions: {}, trial: BANDIT_RECIPE.trial, opponents: ['none'], iterations },
  });
  const trained = await evaluatePolicy('meta-rl', setup.engine, evalOpts);
  const random = evaluateRandom(evalOpts);
  const reports: EvalReport[] = [untrained, trained, random];
  const ceilings = banditCeilings(3, cfg.trial.episodes);
  const result = {
    task: 'bandit-3arm, 3-episode trials, same_state',
    computePath: backendName,
    iterations,
    seed: o.seed,
    evalTrials,
    ceilings: { adaptive: ceilings.adaptive.rewardPerEpisode, nonAdaptive: ceilings.memoryless.rewardPerEpisode },
    reports,
  };
  writeFileSync(join(o.out, 'eval.json'), JSON.stringify(result, null, 2) + '\n');
  const table = evalTable(reports);
  const md = [
    `# agentrl quickstart — meta-RL on 3-armed bandit trials`,
    '',
    `Compute path \`${backendName}\`, seed ${o.seed}, ${iterations} iterations, ${evalTrials} held-out evaluation trials per policy.`,
    `Per-episode ceilings: non-adaptive ${ceilings.memoryless.rewardPerEpisode.map((x) => x.toFixed(3)).join(' / ')}, perfect adaptive ${ceilings.adaptive.rewardPerEpisode.map((x) => x.toFixed(3)).join(' / ')}.`,
    '',
    table,
    '',
  ].join('\n');
  writeFileSync(join(o.out, 'eval.md'), md);
  const series = reports.map((r) => ({ name: r.policy, values: r.opponents[0]!.episodes.map((e) => e.meanReturn), errors: r.opponents[0]!.episodes.map((e) => e.seReturn) }));
  series.push({ name: 'adaptive ceiling', values: ceilings.adaptive.rewardPerEpisode, errors: [] });
  writeFileSync(join(o.out, 'plot.svg'), lineChartSvg('Reward by episode of a trial (bandit, K=3)', 'episode index in trial', 'mean reward', series, [{ name: 'non-adaptive 1/3', y: 1 / 3 }]));
  console.log('\n' + table + '\n');
  const ep = trained.opponents[0]!.episodes;
  console.log(`meta-RL: episode 0 → ${ep.length - 1} reward ${ep[0]!.meanReturn.toFixed(3)} → ${ep[ep.length - 1]!.meanReturn.toFixed(3)} (non-adaptive ceiling 0.333). Wrote ${join(o.out, 'eval.json')}, eval.md, plot.svg, train.jsonl and checkpoint/ (try: agentrl eval --checkpoint ${join(o.out, 'checkpoint')}).`);
}
