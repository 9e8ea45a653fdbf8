/**
 * `agentrl eval`: evaluate a trained policy checkpoint in K-episode trials, per opponent and episode
 * index, next to a uniformly random policy; writes eval-checkpoint.json and eval-checkpoint.md.
 * Progress of the policy's trials goes through the shared reporter (src/cli/progress.ts): a bar on a
 * terminal, plain lines otherwise, and with `--json` JSON lines on stdout ({"event": "start"},
 * {"event": "progress"} per finished trial, {"event": "summary"}) instead of the table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { envFactory } from '../train/meta-setup.ts';
import { evaluatePolicy, evaluateRandom, evalTable, type EvalReport } from '../eval/trials.ts';
import { evalTrialConfig, TRIAL_TASKS } from '../run/run-config.ts';
import { loadCheckpointPolicy } from './checkpoint-policy.ts';
import { listOpponents } from '../envs/registry.ts';
import { Progress, progressMode, withStdoutForJson } from './progress.ts';

export interface EvalCliOptions {
  checkpoint: string;
  out?: string;
  trials: number;
  seed: number;
  opponents?: string[];
  episodes?: number;
  /** Sampling overrides of the trial config (temperature, topP, topK); checked by its schema. */
  temperature?: number;
  topP?: number;
  topK?: number;
  /** JSON lines on stdout (start, progress, summary) instead of a progress bar or plain lines and the table. */
  json?: boolean;
}

export async function runEval(o: EvalCliOptions): Promise<void> {
  const json = o.json === true;
  // In --json mode stdout carries JSON lines only: whatever the evaluation prints goes to stderr.
  await withStdoutForJson(json, () => evaluateCheckpoint(o, json));
}

async function evaluateCheckpoint(o: EvalCliOptions, json: boolean): Promise<void> {
  const { run, engine, step } = await loadCheckpointPolicy(o.checkpoint, {
    whyTokenizer: 'it cannot drive text trials', maxBatch: 128, seed: o.seed,
    checkTask: (r) => ((TRIAL_TASKS as readonly string[]).includes(r.task) ? null : `agentrl eval plays trials; checkpoint ${o.checkpoint} is a '${r.task}' run`),
  });
  if (!(o.trials >= 1)) throw new Error(`--trials must be ≥ 1 (got ${o.trials})`);
  if (o.episodes !== undefined && !(o.episodes >= 1)) throw new Error(`--episodes must be ≥ 1 (got ${o.episodes})`);
  if (o.opponents !== undefined) checkOpponents(run.task, run.envOptions, o.opponents);
  const sampling = Object.fromEntries((['temperature', 'topP', 'topK'] as const).filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
  const trial = evalTrialConfig(run, { ...(o.episodes !== undefined ? { episodes: o.episodes } : {}), ...sampling }, `checkpoint ${o.checkpoint}: invalid evaluation trial settings`);
  const evalOpts = { opponents: o.opponents ?? run.eval.opponents ?? run.opponents.map((x) => x.name), trials: o.trials, seed: o.seed, makeEnv: envFactory(run.task, run.envOptions), trial };
  const out = o.out ?? join(o.checkpoint, '..');
  const name = `checkpoint@${step}`;
  const total = evalOpts.opponents.length * o.trials;
  const progress = new Progress({ label: 'evaluating', unit: 'trials', total, mode: progressMode({ json }) });
  if (json) progress.event({ event: 'start', command: 'eval', checkpoint: o.checkpoint, out, task: run.task, policy: name, opponents: evalOpts.opponents, trials: o.trials, episodes: trial.episodes, seed: o.seed });
  else console.log(`agentrl eval ${o.checkpoint} → ${out} (${run.task}, ${o.trials} trials of ${trial.episodes} episodes against each of ${evalOpts.opponents.join(', ')})`);
  const t0 = performance.now();
  let policy: EvalReport;
  progress.start(0);
  try {
    // Only the checkpoint's trials are counted: the random policy's take a fraction of the time.
    policy = await evaluatePolicy(name, engine, { ...evalOpts, onProgress: (done) => progress.update(done) });
  } finally {
    progress.stop();
  }
  const random = evaluateRandom(evalOpts);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'eval-checkpoint.json'), JSON.stringify({ checkpoint: o.checkpoint, task: run.task, reports: [policy, random] }, null, 2) + '\n');
  const table = evalTable([policy, random]);
  writeFileSync(join(out, 'eval-checkpoint.md'), `# Evaluation of ${o.checkpoint}\n\nTask ${run.task}, ${o.trials} trials per opponent, seed ${o.seed}, sampling temperature ${trial.temperature}${trial.topP !== undefined ? `, top-p ${trial.topP}` : ''}${trial.topK !== undefined ? `, top-k ${trial.topK}` : ''}.\n\n${table}\n`);
  const files = [join(out, 'eval-checkpoint.json'), join(out, 'eval-checkpoint.md')];
  if (json) {
    progress.event({ event: 'summary', checkpoint: o.checkpoint, out, wallSeconds: (performance.now() - t0) / 1000, reports: summary([policy, random]), files });
    return;
  }
  console.log(table);
  console.log(`wrote ${files[0]} and eval-checkpoint.md`);
}

/** Per policy and opponent: trials, the final-episode return, and the return and win rate by episode index. */
function summary(reports: EvalReport[]) {
  return reports.map((r) => ({
    policy: r.policy,
    opponents: r.opponents.map((x) => ({ opponent: x.opponent, trials: x.trials, finalReturn: x.finalReturn, meanReturn: x.episodes.map((e) => e.meanReturn), winRate: x.episodes.map((e) => e.winRate) })),
  }));
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
