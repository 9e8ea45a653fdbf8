/**
 * Wiring for a meta-RL run on the built-in engine: the policy's tokenizer, model, inference engine
 * and trainer, all from one seed. The policy is either a fresh built-in model with a word tokenizer
 * built from the environment's vocabulary, or a pretrained model (run config `model.path`) with its
 * own tokenizer, optionally trained through a LoRA adapter.
 */
import type { TextEnv } from '../envs/types.ts';
import { makeEnv } from '../envs/registry.ts';
import { WordTokenizer, type SerializableTokenizer } from '../engine/tokenizer.ts';
import { Transformer, type ModelConfigInput } from '../engine/model.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { defaultBackend } from '../engine/backends.ts';
import type { Backend } from '../engine/backend.ts';
import { TRIAL_WORDS, outcomeVocabulary } from '../agents/trial.ts';
import { BuiltinTrainer, type OptimizerConfigSchema } from './builtin-trainer.ts';
import { LoraAdapter, type LoraConfigInput } from './lora.ts';
import type { z } from 'zod';

/** A loaded model to train (its weights become the trainer's and the engine's), with its own tokenizer. */
export interface PretrainedPolicy {
  /** The loaded transformer; it becomes the trainer's model (its parameters are trained in place). */
  model: Transformer;
  /** The model's tokenizer (vocabSize = the model's). */
  tokenizer: SerializableTokenizer;
  /** Train a LoRA adapter instead of every weight. */
  lora?: LoraConfigInput;
}

export interface MetaSetupOptions {
  env: string;
  envOptions?: Record<string, unknown>;
  /** Opponents the env will be made with (their names may appear in text). */
  opponents: string[];
  /** The built-in model's shape (ignored when `pretrained` is given). */
  model?: Omit<ModelConfigInput, 'vocabSize'>;
  /** Train this loaded model with its own tokenizer instead of a fresh built-in one. */
  pretrained?: PretrainedPolicy;
  optimizer: z.input<typeof OptimizerConfigSchema>;
  seed: number;
  maxBatch?: number;
  backend?: Backend;
  /** Add the one-token episode records (the env's own, e.g. Kuhn `h1_PBB_Q`, else `B_won`) for trials with pastEpisodes 'outcome'. */
  outcomeTokens?: boolean;
  /** Add `tried`, the marker of trials with triedActions (an env whose own vocabulary lacks it would read it as <unk>). */
  triedActions?: boolean;
}

/** The action strings an env accepts right after a reset (its action space for simple games). */
function actionsOf(env: TextEnv): string[] {
  env.reset(0);
  return env.legalActions();
}

export interface MetaSetup {
  tokenizer: SerializableTokenizer;
  engine: BuiltinEngine;
  trainer: BuiltinTrainer;
  makeEnv: (opponent: string) => TextEnv;
}

/** Build an env for an opponent name ('none' = an env without opponents, e.g. the bandit). */
export function envFactory(env: string, envOptions: Record<string, unknown> = {}): (opponent: string) => TextEnv {
  return (opponent) => makeEnv(env, opponent === 'none' ? envOptions : { ...envOptions, opponent });
}

export interface PolicyOptions {
  optimizer: z.input<typeof OptimizerConfigSchema>;
  /** Seed of the engine's sampling stream (seed + 1) and of the engine copy's initialisation. */
  seed: number;
  maxBatch: number;
  lora?: LoraConfigInput;
}

/**
 * The trainer on `model` (through a LoRA adapter when asked: the adapter's frozen base is the
 * model's weights now) and an engine serving a copy of the same weights.
 */
export function policyFromModel(model: Transformer, tokenizer: SerializableTokenizer, o: PolicyOptions): { trainer: BuiltinTrainer; engine: BuiltinEngine } {
  const lora = o.lora ? new LoraAdapter(model, o.lora) : undefined;
  const trainer = new BuiltinTrainer(model, o.optimizer, lora ? { lora } : {});
  const served = new Transformer(model.config, model.backend, o.seed);
  served.params.set(model.params);
  return { trainer, engine: new BuiltinEngine(served, tokenizer, { maxBatch: o.maxBatch, seed: o.seed + 1 }) };
}

export function buildMetaSetup(o: MetaSetupOptions): MetaSetup {
  const factory = envFactory(o.env, o.envOptions);
  const maxBatch = o.maxBatch ?? 128;
  if (o.pretrained) {
    // The model's own tokenizer spells every text: no vocabulary to collect.
    const { model, tokenizer, lora } = o.pretrained;
    return { tokenizer, makeEnv: factory, ...policyFromModel(model, tokenizer, { optimizer: o.optimizer, seed: o.seed, maxBatch, lora }) };
  }
  if (!o.model) throw new Error('buildMetaSetup: give the built-in model shape (model) or a pretrained model (pretrained)');
  const words = new Set<string>(TRIAL_WORDS);
  for (const opp of o.opponents) {
    const env = factory(opp);
    for (const w of env.vocabulary()) words.add(w);
    if (o.outcomeTokens) for (const w of env.episodeTokenVocabulary?.() ?? outcomeVocabulary(actionsOf(env))) words.add(w);
  }
  for (const w of ['good', 'bad', 'try', 'avoid']) words.add(w);
  if (o.triedActions) words.add('tried');
  const tokenizer = WordTokenizer.fromVocabulary([...words]);
  const backend = o.backend ?? defaultBackend();
  const model = { ...o.model, vocabSize: tokenizer.vocabSize };
  const trainer = new BuiltinTrainer(new Transformer(model, backend, o.seed), o.optimizer);
  const engine = new BuiltinEngine(new Transformer(model, backend, o.seed), tokenizer, { maxBatch, seed: o.seed + 1 });
  return { tokenizer, engine, trainer, makeEnv: factory };
}
