/**
 * `agentrl eval`: evaluate a trained policy checkpoint in K-episode trials, per opponent and episode
 * index, next to a uniformly random policy; writes eval.json and eval.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { envFactory } from '../train/meta-setup.ts';
import { evaluatePolicy, evaluateRandom, evalTable } from '../eval/trials.ts';
import { TRIAL_TASKS } from '../run/run-config.ts';
import { loadCheckpointPolicy } from './checkpoint-policy.ts';
import { listOpponents } from '../envs/registry.ts';
import { TrialConfigSchema } from '../agents/trial.ts';
import { formatZodError } from '../core/config-errors.ts';

export interface EvalCliOptions {
  checkpoint: string;
  out?: string;
  trials: number;
  seed: number;
  opponents?: string[];
  episodes?: number;
}

export async function runEval(o: EvalCliOptions): Promise<void> {
  const { run, engine, step } = await loadCheckpointPolicy(o.checkpoint, {
    whyTokenizer: 'it cannot drive text trials', maxBatch: 128, seed: o.seed,
    checkTask: (r) => ((TRIAL_TASKS as readonly string[]).includes(r.task) ? null : `agentrl eval plays trials; checkpoint ${o.checkpoint} is a '${r.task}' run`),
  });
  if (!(o.trials >= 1)) throw new Error(`--trials must be ≥ 1 (got ${o.trials})`);
  if (o.episodes !== undefined && !(o.episodes >= 1)) throw new Error(`--episodes must be ≥ 1 (got ${o.episodes})`);
  if (o.opponents !== undefined) checkOpponents(run.task, run.envOptions, o.opponents);
  const trialIn = { ...run.trial, ...run.eval.trial, ...(o.episodes !== undefined ? { episodes: o.episodes } : {}) };
  const parsedTrial = TrialConfigSchema.safeParse(trialIn);
  if (!parsedTrial.success) throw new Error(`checkpoint ${o.checkpoint}: invalid evaluation trial settings: ${formatZodError(parsedTrial.error, { schema: TrialConfigSchema, prefix: 'trial' })}`);
  const trial = parsedTrial.data;
  const evalOpts = { opponents: o.opponents ?? run.eval.opponents ?? run.opponents.map((x) => x.name), trials: o.trials, seed: o.seed, makeEnv: envFactory(run.task, run.envOptions), trial };
  const policy = await evaluatePolicy(`checkpoint@${step}`, engine, evalOpts);
  const random = evaluateRandom(evalOpts);
  const out = o.out ?? join(o.checkpoint, '..');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'eval-checkpoint.json'), JSON.stringify({ checkpoint: o.checkpoint, task: run.task, reports: [policy, random] }, null, 2) + '\n');
  const table = evalTable([policy, random]);
  writeFileSync(join(out, 'eval-checkpoint.md'), `# Evaluation of ${o.checkpoint}\n\nTask ${run.task}, ${o.trials} trials per opponent, seed ${o.seed}.\n\n${table}\n`);
  console.log(table);
  console.log(`wrote ${join(out, 'eval-checkpoint.json')} and eval-checkpoint.md`);
}

/**
 * Opponents named by --opponents, checked before any trial is played: a task without opponents
 * (bandit, sokoban) takes none (its one pseudo-opponent 'none' is accepted), and every name must
 * build the task's environment ('none' = the environment's default opponent; an unknown name gets
 * the environment's own message, which lists the valid names).
 */
function checkOpponents(task: string, envOptions: Record<string, unknown>, opponents: readonly string[]): void {
  const valid = listOpponents(task);
  if (opponents.length === 0) throw new Error(`--opponents: no opponent given; name them comma-separated${valid.length > 0 ? `, e.g. --opponents ${valid.slice(0, 2).join(',')}` : ` (task '${task}' has none: leave --opponents out)`}`);
  if (valid.length === 0) {
    const named = opponents.filter((x) => x !== 'none');
    if (named.length > 0) throw new Error(`--opponents: task '${task}' has no opponents (a single-agent environment), got ${named.map((x) => `'${x}'`).join(', ')}; evaluate without --opponents`);
    return;
  }
  const make = envFactory(task, envOptions);
  for (const name of opponents) {
    try {
      make(name);
    } catch (e) {
      throw new Error(`--opponents: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
}
