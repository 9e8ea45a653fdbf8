/**
 * `agentrl quickstart`: meta-RL on the built-in engine in a few minutes on 2 cores — exactly
 * `agentrl train examples/configs/bandit-meta-rl.yaml`, plus the bandit's exact ceilings.
 *
 * Task: 3-armed bandit trials of 3 episodes, the paying arm fixed within a trial and random across
 * trials, so the only way to beat 1/3 per episode is to read earlier episodes (in-context
 * adaptation). Evaluates the untrained, trained and random policies on the same held-out seeds.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lineChartSvg } from '../eval/plot.ts';
import { banditCeilings } from '../envs/bandit.ts';
import { runTrainCommand } from './train.ts';

export interface QuickstartOptions {
  out: string;
  iterations?: number;
  seed: number;
  quick: boolean;
}

/** The bandit recipe shipped with the package. */
export const BANDIT_CONFIG = fileURLToPath(new URL('../../examples/configs/bandit-meta-rl.yaml', import.meta.url));

export async function runQuickstart(o: QuickstartOptions): Promise<void> {
  const sets = [`seed=${o.seed}`, `eval.seed=${o.seed}`];
  if (o.iterations !== undefined) sets.push(`trainer.steps=${o.iterations}`);
  else if (o.quick) sets.push('trainer.steps=8');
  sets.push(`eval.trials=${o.quick ? 60 : 300}`);
  const result = await runTrainCommand(BANDIT_CONFIG, { out: o.out, set: sets, resume: false });
  if (!result?.eval) return;
  const K = result.config.trial.episodes;
  const ceilings = banditCeilings(3, K);
  const series = result.eval.map((r) => ({ name: r.policy, values: r.opponents[0]!.episodes.map((e) => e.meanReturn), errors: r.opponents[0]!.episodes.map((e) => e.seReturn) }));
  series.push({ name: 'adaptive ceiling', values: ceilings.adaptive.rewardPerEpisode, errors: [] });
  writeFileSync(join(o.out, 'episodes.svg'), lineChartSvg(`Reward by episode of a trial (bandit, K=${K})`, 'episode index in trial', 'mean reward', series, [{ name: 'non-adaptive 1/3', y: 1 / 3 }]));
  const ep = result.eval.find((r) => r.policy === result.config.name)!.opponents[0]!.episodes;
  console.log(`meta-RL: episode 0 → ${K - 1} reward ${ep[0]!.meanReturn.toFixed(3)} → ${ep[K - 1]!.meanReturn.toFixed(3)} (non-adaptive ceiling ${ceilings.memoryless.rewardPerEpisode[0]!.toFixed(3)}, perfect adaptive ${ceilings.adaptive.rewardPerEpisode.map((x) => x.toFixed(3)).join(' / ')}). Try: agentrl eval --checkpoint ${join(o.out, 'checkpoint')}`);
}
