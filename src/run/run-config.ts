/**
 * The config of one `agentrl train` run (YAML or JSON), validated at the boundary. Every section
 * reuses the schema of the module it configures: the trial (agents/trial.ts), the toy tool agent,
 * the training loop with its credit/advantage/loss stages (train/trainer.ts), the population.
 *
 * The model is either the built-in shape (`model: { contextLength, nLayer, nHead, nEmbd, … }`, trained
 * from scratch with a word tokenizer) or a pretrained model on disk (`model: { path, contextLength?,
 * lora? }`: a Hugging Face directory or a .gguf file, with its own tokenizer; `agentrl train
 * --model DIR` sets it). Whether the path exists is checked when the run loads it (src/run/run.ts),
 * not here: a finished run's config must still parse where the directory is gone (evaluation
 * reads everything from the checkpoint).
 */
import { z } from 'zod';
import { closestKey, formatZodError, formatZodIssues, schemaKeysAt } from '../core/config-errors.ts';
import { ModelConfigSchema } from '../engine/model.ts';
import { LoraConfigSchema } from '../train/lora.ts';
import { TrialConfigSchema, type TrialConfig } from '../agents/trial.ts';
import { ToyToolAgentConfigSchema } from '../agents/toy-tool-agent.ts';
import { TrainerConfigSchema } from '../train/trainer.ts';
import { OpponentWeightSchema } from '../train/trial-source.ts';
import { PopulationSectionSchema } from '../train/population.ts';
import { SearchTaskSchema } from './search-task.ts';
import { LogSectionSchema } from './trajectory-log.ts';
import { RolloutSectionSchema } from '../train/redis/config.ts';
import { TrainerServiceSchema, tinkerLossPlan } from '../train/remote/tinker-trainer.ts';
import { RemoteEngineSectionSchema } from '../engine/remote/config.ts';

/** Built-in tasks: MAGE trial environments and the toy tool agent. */
export const TRIAL_TASKS = ['bandit', 'kuhn', 'tictactoe', 'sokoban', 'rps'] as const;
export const TASKS = [...TRIAL_TASKS, 'toy-tool', 'search'] as const;
export type TaskName = (typeof TASKS)[number];

/** The built-in model's shape (vocabSize comes from the task's tokenizer); the Transformer validates the rest. */
export const ModelShapeSchema = z
  .object({
    contextLength: z.number().int().min(2),
    nLayer: z.number().int().min(1),
    nHead: z.number().int().min(1),
    nEmbd: z.number().int().min(2),
  })
  .passthrough();
export type BuiltinModelSection = z.output<typeof ModelShapeSchema>;

/** A pretrained model on disk: its shape, weights and tokenizer come from `path`. */
export const PathModelSchema = z
  .object({
    /** A Hugging Face model directory (config.json, *.safetensors, tokenizer.json) or a .gguf file. */
    path: z.string().min(1),
    /** Tokens the model handles (prompt + completion); default min(the model's maximum, 4096). */
    contextLength: z.number().int().min(2).optional(),
    /** Train a LoRA adapter (src/train/lora.ts: rank, alpha, targetModules, seed) instead of every weight. */
    lora: LoraConfigSchema.optional(),
    /**
     * Written by agentrl train into the run's config.json (with the absolute path and the context
     * length used): the architecture read from `path`, so the checkpoint describes the model without
     * the directory. A config that gives it must match the directory.
     */
    arch: z.record(z.unknown()).optional(),
  })
  .strict();
export type PathModelSection = z.output<typeof PathModelSchema>;
export type ModelSection = BuiltinModelSection | PathModelSection;

export function isPathModel(m: ModelSection): m is PathModelSection {
  return typeof (m as { path?: unknown }).path === 'string';
}

const hasPath = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x) && Object.hasOwn(x, 'path');

/** Keys of the built-in model's shape: on a path model they are a mistake (its shape comes from the directory). */
const BUILTIN_MODEL_KEYS = new Set(schemaKeysAt(ModelConfigSchema, []));
const PATH_MODEL_KEYS = Object.keys(PathModelSchema.shape);

/**
 * `model`: a path model when it has a `path` key, else the built-in shape; each validated by its own
 * schema, so errors name the field (`model.nEmbd: Required`, `model.lora.rank: …`) rather than
 * "Invalid input" of a union. The union inside only tells the config-error formatter the keys of
 * nested sections (`model.lora.rnak` → 'rank').
 */
const ModelSectionSchema = z.union([PathModelSchema, ModelShapeSchema, z.any()]).transform((x, ctx): ModelSection => {
  const custom = (path: (string | number)[], message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });
  if (!hasPath(x)) {
    if (typeof x === 'object' && x !== null && Object.hasOwn(x, 'lora')) {
      custom(['lora'], 'LoRA adapts a pretrained model: set model.path (a Hugging Face directory or .gguf file), or remove lora to train the built-in model in full');
      return z.NEVER;
    }
    const r = ModelShapeSchema.safeParse(x);
    if (r.success) return r.data;
    for (const i of r.error.issues) ctx.addIssue(i);
    return z.NEVER;
  }
  const r = PathModelSchema.safeParse(x);
  if (r.success) return r.data;
  for (const i of r.error.issues) {
    if (i.code !== z.ZodIssueCode.unrecognized_keys || i.path.length > 0) {
      ctx.addIssue(i);
      continue;
    }
    for (const key of i.keys) {
      if (BUILTIN_MODEL_KEYS.has(key)) custom([key], `a pretrained model's shape comes from model.path; remove ${key} (a path model takes ${PATH_MODEL_KEYS.join(', ')})`);
      else {
        const near = closestKey(key, PATH_MODEL_KEYS);
        custom([key], `unknown key${near !== undefined ? ` (did you mean '${near}'?)` : ` (a path model takes ${PATH_MODEL_KEYS.join(', ')})`}`);
      }
    }
  }
  return z.NEVER;
});

export const EvalSectionSchema = z
  .object({
    /** Opponents evaluated against (default: the training pool). */
    opponents: z.array(z.string().min(1)).min(1).optional(),
    /** Trials (or tasks) per opponent; 0 = no evaluation. */
    trials: z.number().int().min(0).default(300),
    seed: z.number().int().min(0).default(1000),
    /** Trial settings that differ at evaluation (e.g. contextMode 'none' for a 1-episode GRPO policy). */
    trial: z.record(z.unknown()).default({}),
    /** Also evaluate the untrained policy (same seeds) before training. */
    untrained: z.boolean().default(true),
  })
  .strict();

export const RunConfigSchema = z
  .object({
    /** A short name for logs and plots. */
    name: z.string().min(1).optional(),
    task: z.enum(TASKS),
    /** Options of the task's environment (src/envs/registry.ts); the opponent is set per trial. */
    envOptions: z.record(z.unknown()).default({}),
    /** Training opponent pool with sampling weights ('none' for single-agent tasks). */
    opponents: z.array(OpponentWeightSchema).min(1).default([{ name: 'none', weight: 1 }]),
    trial: TrialConfigSchema.default({}),
    toolAgent: ToyToolAgentConfigSchema.default({}),
    /** The search agent's task (task: search): knowledge base, agent, SFT warm start, evaluation. */
    search: SearchTaskSchema.optional(),
    /** The built-in model's shape, or a pretrained model `{ path, contextLength?, lora? }`. */
    model: ModelSectionSchema,
    /** AdamW settings (src/train/builtin-trainer.ts). */
    optimizer: z.record(z.unknown()).default({}),
    seed: z.number().int().min(0).default(0),
    /** Rows the engine decodes together (default: the trainer's maxConcurrent). */
    maxBatch: z.number().int().min(1).optional(),
    trainer: TrainerConfigSchema,
    /** Train in a worker thread so generation overlaps training (default: when maxStaleness > 0). */
    worker: z.boolean().optional(),
    /** Save a checkpoint every this many steps (and at the end); 0 = only at the end. */
    checkpointEvery: z.number().int().min(0).default(50),
    eval: EvalSectionSchema.default({}),
    /** Population-based training with a league (trial tasks only); absent = one learner. */
    population: PopulationSectionSchema.optional(),
    /** What the run directory records beyond metrics: sampled trajectories for `agentrl dashboard`. */
    log: LogSectionSchema.default({}),
    /** Where rollouts run: in-process (default) or on `agentrl worker` processes over Redis Streams. */
    rollout: RolloutSectionSchema.optional(),
    /** Train on a Tinker-compatible service (hosted Tinker, SkyRL, `agentrl serve trainer`) instead of the built-in trainer. */
    trainerService: TrainerServiceSchema.optional(),
    /** Generate on vLLM/SGLang servers (or `agentrl serve inference`) instead of the built-in engine. */
    engine: RemoteEngineSectionSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    // YAML can say .inf: no setting of a run is meaningful at ±Infinity or NaN.
    for (const [path, v] of numbersIn(c)) if (!Number.isFinite(v)) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `must be a finite number, got ${v}` });
    const evalTrial = TrialConfigSchema.safeParse({ ...c.trial, ...c.eval.trial });
    if (!evalTrial.success) for (const i of evalTrial.error.issues) ctx.addIssue({ ...i, path: ['eval', 'trial', ...i.path] });
    if (c.task === 'toy-tool' && c.trainer.credit.kind === 'mage') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trainer', 'credit', 'kind'], message: "the toy tool agent records no trial steps: use credit kind 'outcome' or 'discounted'" });
    if (c.search && c.task !== 'search') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['search'], message: `a search section configures task 'search', but task is '${c.task}'` });
    if (c.task === 'search' && c.trainer.credit.kind !== 'outcome') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trainer', 'credit', 'kind'], message: "the search agent's sequences share their trajectory's reward: use credit kind 'outcome'" });
    if (c.population && c.task === 'search') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['population'], message: 'population training needs a trial task (opponents), not search' });
    if (c.population && c.rollout?.kind === 'redis') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['rollout', 'kind'], message: 'population training runs its learners in-process; remove the rollout section or the population section' });
    if (c.engine) {
      const trialTask = (TRIAL_TASKS as readonly string[]).includes(c.task);
      if (trialTask && c.trial.constrained) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trial', 'constrained'], message: 'constrained decoding runs inside the built-in engine; with remote inference servers (engine) set trial.constrained: false' });
      if (c.population) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['engine'], message: 'population training samples every learner on the built-in engine; remove engine or population' });
      if (c.rollout?.kind === 'redis') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['engine'], message: "Redis rollout workers sample on their own built-in engines; use either engine (remote inference servers) or rollout: {kind: redis}, not both" });
    }
    if (c.trainerService) {
      if (c.population) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trainerService'], message: 'population training runs its learners on the built-in trainer; remove trainerService or population' });
      if (c.worker) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['worker'], message: 'with a trainerService the training runs on the service (the main thread keeps generating while it does); remove worker' });
      try {
        tinkerLossPlan(c.trainer.loss);
      } catch (e) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trainer', 'loss'], message: (e as Error).message });
      }
      // Checked here, not at the step where the schedule reaches it: the run would fail mid-way.
      if (c.trainer.entropyDecay && c.trainer.entropyDecay.to !== 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trainer', 'entropyDecay', 'to'], message: `trainerService (Tinker): the schedule reaches entropyCoef ${c.trainer.entropyDecay.to}, but Tinker's losses have no entropy term; remove trainer.entropyDecay` });
    }
    if (c.population && c.trainer.entropyDecay) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['trainer', 'entropyDecay'], message: "population members carry their own entropy coefficient (population.pbt explores it); remove trainer.entropyDecay" });
    if (c.population && c.task === 'toy-tool') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['population'], message: 'population training needs a trial task (opponents), not toy-tool' });
    if (isPathModel(c.model)) {
      if (c.task === 'toy-tool') ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model', 'path'], message: "the toy tool agent speaks in raw token ids (toolAgent.vocabSize), not text: it trains the built-in model only; remove model.path or pick a text task" });
      if (c.population) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model', 'path'], message: 'population training builds its learners from the built-in model shape; a pretrained model (model.path) is not supported there yet' });
    }
  });
export type RunConfig = z.output<typeof RunConfigSchema>;

/** Every number in a parsed config with its path. */
function numbersIn(x: unknown, path: (string | number)[] = []): [(string | number)[], number][] {
  if (typeof x === 'number') return [[path, x]];
  if (Array.isArray(x)) return x.flatMap((v, i) => numbersIn(v, [...path, i]));
  if (x && typeof x === 'object') return Object.entries(x).flatMap(([k, v]) => numbersIn(v, [...path, k]));
  return [];
}
export type RunConfigInput = z.input<typeof RunConfigSchema>;

/**
 * The trial settings evaluation plays: the training trial with `eval.trial` on top, then `over`
 * (e.g. a re-evaluation's sampling). A bad value throws, naming its `trial.` field after `context`.
 */
export function evalTrialConfig(cfg: Pick<RunConfig, 'trial' | 'eval'>, over: Record<string, unknown> = {}, context = 'invalid evaluation trial settings'): TrialConfig {
  const parsed = TrialConfigSchema.safeParse({ ...cfg.trial, ...cfg.eval.trial, ...over });
  if (!parsed.success) throw new Error(`${context}: ${formatZodError(parsed.error, { schema: TrialConfigSchema, prefix: 'trial' })}`);
  return parsed.data;
}

/** Parse a run config; the error names every bad field by its path (e.g. `trainer.loss.kind`). */
export function parseRunConfig(input: unknown): RunConfig {
  const r = RunConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid run config:\n${formatZodIssues(r.error, { schema: RunConfigSchema }).map((l) => `  ${l}`).join('\n')}`);
  return r.data;
}

/** The built-in model shape of a config, for code that trains built-in models only (population training). */
export function builtinModelOf(cfg: RunConfig): BuiltinModelSection {
  if (isPathModel(cfg.model)) throw new Error(`model.path: this kind of run trains the built-in model only (got path ${cfg.model.path})`);
  return cfg.model;
}

/**
 * `agentrl train --model DIR`: the raw config with `model` replaced by `{ path: DIR }`. A path
 * model's other settings (contextLength, lora) are kept; a built-in shape is dropped whole (its
 * contextLength was chosen for a word tokenizer). Apply `--set` after this, so
 * `--set model.lora.rank=8` adds to the path model.
 */
export function withModelPath(raw: Record<string, unknown>, path: string): Record<string, unknown> {
  const old = raw.model;
  const keep = hasPath(old) ? Object.fromEntries(Object.entries(old as Record<string, unknown>).filter(([k]) => k !== 'path' && k !== 'arch')) : {};
  return { ...raw, model: { ...keep, path } };
}

/**
 * Apply `--set key=value` overrides to a raw config object: dotted paths, values parsed as JSON when
 * they parse (numbers, booleans, arrays, objects), else kept as strings. `flag` names the option in
 * errors (another command's key=value option, e.g. meta-rl-results' `--eval-trial`, parses the same way).
 */
export function applyOverrides(raw: Record<string, unknown>, sets: readonly string[], flag = '--set'): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new Error(`${flag} ${s}: expected key=value, e.g. ${flag === '--set' ? '--set trainer.steps=10' : `${flag} temperature=0.7`}`);
    const path = s.slice(0, eq).split('.');
    const text = s.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
    let node = out as Record<string, unknown>;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (next === undefined) node[key] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) throw new Error(`${flag} ${s}: '${key}' is not a section`);
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = value;
  }
  return out;
}
