/**
 * `agentrl eval`: evaluate a trained policy checkpoint in K-episode trials, per opponent and episode
 * index, next to a uniformly random policy; writes eval.json and eval.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { loadTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { defaultBackend } from '../engine/backends.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { Transformer } from '../engine/model.ts';
import { envFactory } from '../train/meta-setup.ts';
import { evaluatePolicy, evaluateRandom, evalTable } from '../eval/trials.ts';
import { TrialConfigSchema } from '../agents/trial.ts';

const SavedRunSchema = z.object({
  env: z.string(),
  envOptions: z.record(z.unknown()).default({}),
  trial: TrialConfigSchema.partial().default({}),
  opponents: z.array(z.string()).min(1),
});

export interface EvalCliOptions {
  checkpoint: string;
  out?: string;
  trials: number;
  seed: number;
  opponents?: string[];
  episodes?: number;
}

export async function runEval(o: EvalCliOptions): Promise<void> {
  const { trainer, tokenizer, checkpoint } = await loadTrainerCheckpoint(o.checkpoint, defaultBackend());
  if (!tokenizer) throw new Error(`checkpoint ${o.checkpoint} has no tokenizer; it cannot drive text trials`);
  const saved = SavedRunSchema.safeParse(checkpoint.trainerState);
  if (!saved.success) throw new Error(`checkpoint ${o.checkpoint}: trainerState does not describe a meta-RL run (${saved.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
  const run = saved.data;
  const model = new Transformer(trainer.model.config, trainer.model.backend, 0);
  model.params.set(trainer.model.params);
  const engine = new BuiltinEngine(model, tokenizer, { maxBatch: 128, seed: o.seed });
  const trial = { ...run.trial, ...(o.episodes ? { episodes: o.episodes } : {}) };
  const evalOpts = { opponents: o.opponents ?? run.opponents, trials: o.trials, seed: o.seed, makeEnv: envFactory(run.env, run.envOptions), trial };
  const policy = await evaluatePolicy(`checkpoint@${checkpoint.step}`, engine, evalOpts);
  const random = evaluateRandom(evalOpts);
  const out = o.out ?? join(o.checkpoint, '..');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'eval.json'), JSON.stringify({ checkpoint: o.checkpoint, env: run.env, reports: [policy, random] }, null, 2) + '\n');
  const table = evalTable([policy, random]);
  writeFileSync(join(out, 'eval.md'), `# Evaluation of ${o.checkpoint}\n\nEnvironment ${run.env}, ${o.trials} trials per opponent, seed ${o.seed}.\n\n${table}\n`);
  console.log(table);
  console.log(`wrote ${join(out, 'eval.json')} and eval.md`);
}
