/**
 * Wiring for a meta-RL run on the built-in engine: a word tokenizer built from the environment's
 * vocabulary, a policy model, the inference engine and the trainer, all from one seed.
 */
import type { TextEnv } from '../envs/types.ts';
import { makeEnv } from '../envs/registry.ts';
import { WordTokenizer } from '../engine/tokenizer.ts';
import { Transformer, type ModelConfigInput } from '../engine/model.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { defaultBackend } from '../engine/backends.ts';
import type { Backend } from '../engine/backend.ts';
import { TRIAL_WORDS, outcomeVocabulary } from '../agents/trial.ts';
import { BuiltinTrainer, type OptimizerConfigSchema } from './builtin-trainer.ts';
import type { z } from 'zod';

export interface MetaSetupOptions {
  env: string;
  envOptions?: Record<string, unknown>;
  /** Opponents the env will be made with (their names may appear in text). */
  opponents: string[];
  model: Omit<ModelConfigInput, 'vocabSize'>;
  optimizer: z.input<typeof OptimizerConfigSchema>;
  seed: number;
  maxBatch?: number;
  backend?: Backend;
  /** Add the one-token episode records (the env's own, e.g. Kuhn `h1_PBB_Q`, else `B_won`) for trials with pastEpisodes 'outcome'. */
  outcomeTokens?: boolean;
}

/** The action strings an env accepts right after a reset (its action space for simple games). */
function actionsOf(env: TextEnv): string[] {
  env.reset(0);
  return env.legalActions();
}

export interface MetaSetup {
  tokenizer: WordTokenizer;
  engine: BuiltinEngine;
  trainer: BuiltinTrainer;
  makeEnv: (opponent: string) => TextEnv;
}

/** Build an env for an opponent name ('none' = an env without opponents, e.g. the bandit). */
export function envFactory(env: string, envOptions: Record<string, unknown> = {}): (opponent: string) => TextEnv {
  return (opponent) => makeEnv(env, opponent === 'none' ? envOptions : { ...envOptions, opponent });
}

export function buildMetaSetup(o: MetaSetupOptions): MetaSetup {
  const factory = envFactory(o.env, o.envOptions);
  const words = new Set<string>(TRIAL_WORDS);
  for (const opp of o.opponents) {
    const env = factory(opp);
    for (const w of env.vocabulary()) words.add(w);
    if (o.outcomeTokens) for (const w of env.episodeTokenVocabulary?.() ?? outcomeVocabulary(actionsOf(env))) words.add(w);
  }
  for (const w of ['good', 'bad', 'try', 'avoid']) words.add(w);
  const tokenizer = WordTokenizer.fromVocabulary([...words]);
  const backend = o.backend ?? defaultBackend();
  const model = { ...o.model, vocabSize: tokenizer.vocabSize };
  const trainer = new BuiltinTrainer(new Transformer(model, backend, o.seed), o.optimizer);
  const engine = new BuiltinEngine(new Transformer(model, backend, o.seed), tokenizer, { maxBatch: o.maxBatch ?? 128, seed: o.seed + 1 });
  return { tokenizer, engine, trainer, makeEnv: factory };
}
