/**
 * `agentrl train CONFIG`: one run of the training loop (src/train/trainer.ts), on the built-in engine
 * by default, for any built-in task, into a run directory:
 *
 *   RUN/config.json      the resolved config (every default filled in)
 *   RUN/metrics.jsonl    one line per step (rewards by episode and opponent, loss, clip fraction,
 *                        staleness, tokens trained and processed, timings)
 *   RUN/checkpoint/      weights, AdamW state, loop version, groups admitted, sampler RNG (η = 0)
 *                        or the groups in flight (η > 0), all in one atomic write
 *   RUN/trajectories/    sampled trajectories, token by token (log.trajectories), for `agentrl dashboard`
 *   RUN/eval.json, eval.md   per-opponent × episode evaluation
 *   RUN/plot.svg, plot.png, tb/   the curves (src/eval/run-plots.ts) and TensorBoard event files
 *
 * Optional scale-out sections swap one part and keep the rest: `engine` (rollouts on vLLM/SGLang
 * servers: src/engine/remote), `trainerService` (training on a Tinker-compatible service:
 * src/train/remote), `rollout: {kind: redis}` (rollouts on `agentrl worker` processes: src/train/redis).
 *
 * `resume: true` continues from RUN/checkpoint. With η = 0 the continuation is exact: nothing runs
 * between steps, the task source is a pure function of the group index, and the sampler's RNG state
 * is saved. With η > 0 rollouts keep running between steps, so the checkpoint also holds a snapshot
 * of the groups admitted but not yet trained on (taken in one tick with the version and the groups
 * admitted, inside the same atomic manifest): finished groups are saved whole, token by token, and
 * the resumed run trains on them as they are, with their original admit version and index; groups
 * still running are saved as their item only and re-run from scratch (their partial rollouts, and
 * the sampler's RNG state, are lost), before any new item. So no item is skipped or trained twice
 * and no finished trajectory is lost, in every rollout mode (in-process, Redis workers, remote
 * engines: the groups live in the trainer's controller in all three), but the continuation is not
 * bit-exact.
 *
 * A pretrained model (`model: { path }`) is loaded once, before the task is wired: the trial and
 * search tasks then speak the model's own tokenizer (prompts encoded by it, every trained token
 * the id it was sampled with), the trainer starts from its weights (through a LoRA adapter when
 * `model.lora` is set), and config.json holds the model as resolved — absolute path, context length
 * and architecture — as does the checkpoint, whose manifest also has the complete model config and
 * the tokenizer, so evaluation needs no directory. Resuming reloads the directory for the shape and
 * tokenizer and takes every weight (LoRA base and adapter included) from the checkpoint.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Trajectory } from '../core/types.ts';
import type { RolloutWorkflow } from '../core/workflow.ts';
import { mixSeed } from '../envs/rng.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { canonicalJson } from '../engine/checkpoint.ts';
import { Transformer, type ModelConfigInput } from '../engine/model.ts';
import { defaultBackend } from '../engine/backends.ts';
import { loadNativeBackend } from '../engine/native.ts';
import { availableParallelism } from 'node:os';
import type { Backend } from '../engine/backend.ts';
import type { SerializableTokenizer } from '../engine/tokenizer.ts';
import { engineTokenizer, loadModel, type LoadedModel } from '../engine/load-model.ts';
import { trialWorkflow, TrialConfigSchema, type TrialItem } from '../agents/trial.ts';
import { toyToolTasks, toyToolTokenizer, toyToolWorkflow, type ToyToolTask } from '../agents/toy-tool-agent.ts';
import { evaluatePolicy, evaluateRandom, evalTable, reviveEvalReports, type EvalReport } from '../eval/trials.ts';
import { writeRunPlots } from '../eval/run-plots.ts';
import { createTrajectoryLog, opponentStats, withCredit } from './trajectory-log.ts';
import { openRedisRollout, type RedisRollout } from '../train/redis/redis-rollout.ts';
import { createTinkerTrainer } from '../train/remote/tinker-trainer.ts';
import { createRemoteEngine } from '../engine/remote/config.ts';
import type { RemoteEngine } from '../engine/remote/remote-engine.ts';
import type { InferenceEngine } from '../engine/types.ts';
import { writeTensorBoard } from '../eval/tensorboard.ts';
import { BuiltinTrainer } from '../train/builtin-trainer.ts';
import { buildMetaSetup, envFactory, policyFromModel, type PretrainedPolicy } from '../train/meta-setup.ts';
import { loraTargets } from '../train/lora.ts';
import { exportState, importState, InProcessTrainer, type PolicyTrainer } from '../train/policy-trainer.ts';
import { WorkerTrainer } from '../train/worker-trainer.ts';
import { collectRollouts, decodePendingGroups, encodePendingGroups, type PendingGroups } from '../train/rollout-controller.ts';
import { Trainer, type StepMetrics } from '../train/trainer.ts';
import { trialSource } from '../train/trial-source.ts';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from '../train/trainer-checkpoint.ts';
import { builtinModelOf, isPathModel, parseRunConfig, type PathModelSection, type RunConfig } from './run-config.ts';
import { evaluateSearchPolicy, heldoutQuestions, SearchTaskSchema, searchTokenizer, searchTools, searchWorlds, sftWarmStart, trainQuestions, type SearchEvalSection, type SearchTask } from './search-task.ts';
import { searchWorkflow } from '../agents/search/workflow.ts';
import type { SearchItem } from '../agents/search/config.ts';
import type { SearchTools } from '../agents/search/workflow.ts';
import { searchEvalReport, type SearchEvalReport } from './search-report.ts';

export interface TrainRunOptions {
  out: string;
  /** Continue from OUT/checkpoint (the config must equal the saved one). */
  resume?: boolean;
  /** Called after every step (progress bars). */
  onStep?: (m: StepMetrics, cfg: RunConfig) => void;
  /** Stop after this many steps of this invocation (tests: simulate a killed run). */
  stopAfter?: number;
  backend?: Backend;
}

export interface TrainRunResult {
  config: RunConfig;
  steps: number;
  /** Versions trained in this invocation. */
  history: StepMetrics[];
  eval: EvalReport[] | null;
  toolEval: { untrained: number | null; trained: number } | null;
  /** Search runs: the starting point's and the trained policy's held-out evaluation. */
  searchEval: SearchEvalReport | null;
  wallSeconds: number;
}

/** What a task contributes to the loop: tokenizer, engine, trainer, workflow and a resumable source. */
export interface TaskParts<Item> {
  tokenizer: SerializableTokenizer | null;
  engine: BuiltinEngine;
  trainer: BuiltinTrainer;
  workflow: RolloutWorkflow<Item>;
  /** The same workflow on another engine (a remote vLLM/SGLang fleet). */
  workflowFor: (engine: InferenceEngine) => RolloutWorkflow<Item>;
  source: (start: number) => Iterator<Item>;
  modelConfig: ModelConfigInput;
}

function maxBatchOf(cfg: RunConfig): number {
  return cfg.maxBatch ?? Math.max(cfg.trainer.maxConcurrent, cfg.trainer.batchSize * cfg.trainer.groupSize);
}

/**
 * Load a run's pretrained model (`model.path`): the model and tokenizer the task wires in, and the
 * model section as resolved (absolute path, the context length used, the architecture). Errors
 * read as config errors naming the field.
 */
export async function loadRunModel(m: PathModelSection, backend: Backend): Promise<{ pretrained: PretrainedPolicy; resolved: PathModelSection }> {
  const bad = (field: string, msg: string) => new Error(`invalid run config:\n  model.${field}: ${msg}`);
  const path = resolve(m.path);
  if (!existsSync(path)) throw bad('path', `${path} does not exist (give a Hugging Face model directory, the one holding config.json, or a .gguf file)`);
  let loaded: LoadedModel;
  try {
    // The tasks render their own plain-text prompts: the chat template is not used (nor checked).
    loaded = await loadModel(path, backend, { contextLength: m.contextLength, chatTemplate: false });
  } catch (e) {
    throw bad('path', `cannot load ${path}: ${(e as Error).message}`);
  }
  const arch = { ...loaded.arch };
  if (m.arch && canonicalJson(m.arch) !== canonicalJson(arch)) {
    const field = Object.keys({ ...m.arch, ...arch }).find((k) => canonicalJson(m.arch![k]) !== canonicalJson((arch as Record<string, unknown>)[k]));
    throw bad('arch', `differs from the architecture of ${path} (${field}: ${JSON.stringify(m.arch[field!])} in the config, ${JSON.stringify((arch as Record<string, unknown>)[field!])} in the directory); remove model.arch, agentrl train fills it in`);
  }
  if (m.lora) {
    try {
      loraTargets(loaded.model.config, m.lora.targetModules);
    } catch (e) {
      throw new Error(`invalid run config:\n  model.${(e as Error).message} (${path} is ${loaded.arch.hfArchitecture})`);
    }
  }
  // Models may pad their vocabulary past the tokenizer's ids; the engine needs the model's size.
  const tok = engineTokenizer(loaded);
  const tokenizer: SerializableTokenizer = tok === loaded.tokenizer ? loaded.tokenizer : { ...tok, toJSON: () => loaded.tokenizer.toJSON() };
  const resolved: PathModelSection = { path, contextLength: loaded.model.config.contextLength, ...(m.lora ? { lora: m.lora } : {}), arch };
  return { pretrained: { model: loaded.model, tokenizer, ...(m.lora ? { lora: m.lora } : {}) }, resolved };
}

export function trialParts(cfg: RunConfig, backend: Backend, pretrained: PretrainedPolicy | null): TaskParts<TrialItem> {
  const evalOpponents = cfg.eval.opponents ?? [];
  const setup = buildMetaSetup({
    env: cfg.task, envOptions: cfg.envOptions,
    opponents: [...new Set([...cfg.opponents.map((o) => o.name), ...evalOpponents])],
    ...(pretrained ? { pretrained } : { model: builtinModelOf(cfg) as Omit<ModelConfigInput, 'vocabSize'> }), optimizer: cfg.optimizer as never, seed: cfg.seed,
    maxBatch: maxBatchOf(cfg), backend, outcomeTokens: cfg.trial.pastEpisodes === 'outcome' || cfg.trial.reflectionInput === 'outcome', triedActions: cfg.trial.triedActions,
  });
  return {
    tokenizer: setup.tokenizer, engine: setup.engine, trainer: setup.trainer,
    workflow: trialWorkflow(setup.engine, setup.makeEnv, cfg.trial),
    workflowFor: (engine) => trialWorkflow(engine, setup.makeEnv, cfg.trial),
    source: (start) => trialSource(mixSeed(cfg.seed, 0x50c), cfg.opponents, start),
    modelConfig: setup.trainer.model.config,
  };
}

export function toolParts(cfg: RunConfig, backend: Backend): TaskParts<ToyToolTask> {
  const vocabSize = cfg.toolAgent.vocabSize;
  const model = { ...(builtinModelOf(cfg) as Omit<ModelConfigInput, 'vocabSize'>), vocabSize };
  const trainer = new BuiltinTrainer(new Transformer(model, backend, cfg.seed), cfg.optimizer as never);
  const engine = new BuiltinEngine(new Transformer(model, backend, cfg.seed), toyToolTokenizer(vocabSize), { maxBatch: maxBatchOf(cfg), seed: cfg.seed + 1 });
  return {
    tokenizer: null, engine, trainer,
    workflow: toyToolWorkflow(engine, cfg.toolAgent),
    workflowFor: (e) => toyToolWorkflow(e, cfg.toolAgent),
    source: (start) => {
      const it = toyToolTasks(mixSeed(cfg.seed, 0x70a1), vocabSize);
      for (let i = 0; i < start; i++) it.next();
      return it;
    },
    modelConfig: trainer.model.config,
  };
}

interface SearchParts extends TaskParts<SearchItem> {
  task: SearchTask;
  tokenizer: SerializableTokenizer;
  tools: SearchTools & { close(): void };
  worlds: ReturnType<typeof searchWorlds>;
  evalItems: SearchItem[];
}

export async function searchParts(cfg: RunConfig, backend: Backend, out: string, pretrained: PretrainedPolicy | null): Promise<SearchParts> {
  const task = cfg.search ?? SearchTaskSchema.parse({});
  const worlds = searchWorlds(task);
  let tokenizer: SerializableTokenizer, trainer: BuiltinTrainer, engine: BuiltinEngine;
  if (pretrained) {
    // The agent's texts (prompts, tool replies, the oracle's demonstrations) in the model's own tokens.
    tokenizer = pretrained.tokenizer;
    ({ trainer, engine } = policyFromModel(pretrained.model, tokenizer, { optimizer: cfg.optimizer as never, seed: cfg.seed, maxBatch: maxBatchOf(cfg), lora: pretrained.lora }));
  } else {
    tokenizer = searchTokenizer(worlds, task.agent);
    const model = { ...(builtinModelOf(cfg) as Omit<ModelConfigInput, 'vocabSize'>), vocabSize: tokenizer.vocabSize };
    trainer = new BuiltinTrainer(new Transformer(model, backend, cfg.seed), cfg.optimizer as never);
    engine = new BuiltinEngine(new Transformer(model, backend, cfg.seed), tokenizer, { maxBatch: maxBatchOf(cfg), seed: cfg.seed + 1 });
  }
  const tools = await searchTools(task, worlds, out);
  return {
    tokenizer, engine, trainer, task, tools, worlds,
    workflow: searchWorkflow(engine, tools, task.agent),
    workflowFor: (e) => searchWorkflow(e, tools, task.agent),
    source: (start) => trainQuestions(worlds.train, mixSeed(cfg.seed, 0x5ea7), task.trainHops, start),
    modelConfig: trainer.model.config,
    evalItems: heldoutQuestions(worlds.heldout, cfg.eval.seed, task.eval.hops, cfg.eval.trials),
  };
}

/** Held-out toy-tool tasks' mean reward (evaluation through the same workflow and controller). */
async function toolEvalReward(parts: TaskParts<ToyToolTask>, cfg: RunConfig): Promise<number> {
  const it = toyToolTasks(mixSeed(cfg.eval.seed, 0xe7a1), cfg.toolAgent.vocabSize);
  const tasks = Array.from({ length: cfg.eval.trials }, () => it.next().value as ToyToolTask);
  const trajs: Trajectory[] = await collectRollouts(tasks, parts.workflow);
  return trajs.reduce((a, t) => a + t.reward, 0) / Math.max(1, trajs.length);
}

const CHECKPOINT_DIR = 'checkpoint';
/** The untrained policy's evaluation, taken before the first step (a resumed run reads it back). */
const UNTRAINED_FILE = 'eval-untrained.json';

interface LoopState {
  version: number;
  /** Groups admitted over the whole run: where the resumed source starts. */
  admittedGroups: number;
  steps: number;
  /**
   * η > 0: the groups admitted but not trained on (encodePendingGroups). One JSON string, because
   * the manifest is written indented and a token list as JSON would take one line per number.
   */
  pendingGroups?: string;
}

/** What the resumed loop starts with: the checkpoint's pending groups, or none (η = 0, or an older checkpoint). */
function pendingOf(state: LoopState): PendingGroups<unknown> {
  if (state.pendingGroups === undefined) return { nextIndex: state.admittedGroups, finished: [], running: [] };
  const pending = decodePendingGroups<unknown>(state.pendingGroups);
  if (pending.nextIndex !== state.admittedGroups) throw new Error(`--resume: the checkpoint's pending groups start the source at ${pending.nextIndex} but its loop state at ${state.admittedGroups}; the checkpoint is inconsistent`);
  return pending;
}

/** Train a run described by `cfgIn` (a raw config object) into `o.out`. */
export async function trainRun(cfgIn: unknown, o: TrainRunOptions): Promise<TrainRunResult> {
  let cfg = parseRunConfig(cfgIn);
  if (cfg.population) throw new Error('trainRun: configs with a population section run through trainPopulationRun (agentrl train does this)');
  // Overlapped generation and training split the cores (as AReaL splits GPUs): each side gets half
  // (AGENTRL_THREADS, when set, is per side); synchronous runs give both phases every core in turn.
  // A trainer service trains remotely: no worker thread (its HTTP calls leave the main thread free).
  const useWorker = !cfg.trainerService && (cfg.worker ?? cfg.trainer.maxStaleness > 0);
  const sideThreads = Number(process.env.AGENTRL_THREADS) || Math.max(1, Math.floor(availableParallelism() / 2));
  const backend = o.backend ?? (useWorker && process.env.AGENTRL_BACKEND !== 'js' ? (loadNativeBackend({ threads: sideThreads, ...(process.env.AGENTRL_GEMM ? { gemm: process.env.AGENTRL_GEMM } : {}) }) ?? defaultBackend()) : defaultBackend());
  mkdirSync(o.out, { recursive: true });
  const configPath = join(o.out, 'config.json');
  const metricsPath = join(o.out, 'metrics.jsonl');
  const ckDir = join(o.out, CHECKPOINT_DIR);
  let pretrained: PretrainedPolicy | null = null;
  if (isPathModel(cfg.model)) {
    const run = await loadRunModel(cfg.model, backend);
    pretrained = run.pretrained;
    cfg = { ...cfg, model: run.resolved };
  }
  const isSearch = cfg.task === 'search';
  const isTrial = cfg.task !== 'toy-tool' && !isSearch;
  const search = isSearch ? await searchParts(cfg, backend, o.out, pretrained) : null;
  const parts = (search ?? (isTrial ? trialParts(cfg, backend, pretrained) : toolParts(cfg, backend))) as TaskParts<unknown>;

  let state: LoopState = { version: 0, admittedGroups: 0, steps: 0 };
  let untrained: EvalReport | null = null;
  let untrainedTool: number | null = null;
  let untrainedSearch: SearchEvalSection | null = null;
  if (o.resume && cfg.trainerService && existsSync(join(ckDir, 'manifest.json'))) {
    throw new Error('--resume: this run trains on a trainerService, whose optimizer state lives on the service; resuming it is not supported yet (start a new run directory)');
  }
  if (o.resume && existsSync(join(ckDir, 'manifest.json'))) {
    const saved = JSON.parse(readFileSync(configPath, 'utf8')) as unknown;
    if (canonicalJson(parseRunConfig(saved)) !== canonicalJson(cfg)) throw new Error(`--resume: the config differs from the one this run was started with (${configPath}); resume with the same config or start a new run directory`);
    const restored = await loadTrainerCheckpoint(ckDir, backend);
    // Weights, moments, step and, with LoRA, the adapter and its frozen base (all from the checkpoint).
    if (parts.trainer.lora && restored.trainer.lora) parts.trainer.lora.setBaseWeights(restored.trainer.lora.baseWeights());
    importState(parts.trainer, exportState(restored.trainer));
    state = (restored.checkpoint.trainerState as { loop: LoopState }).loop;
    const before = join(o.out, UNTRAINED_FILE);
    if (existsSync(before)) ({ untrained, untrainedTool, untrainedSearch = null } = JSON.parse(readFileSync(before, 'utf8')) as { untrained: EvalReport | null; untrainedTool: number | null; untrainedSearch?: SearchEvalSection | null });
    parts.engine.setWeights(parts.trainer.model.params, state.version);
    const sampler = restored.checkpoint.rng.sampler;
    if (sampler) parts.engine.setRngState(sampler);
    // Metrics of steps after the checkpoint are replayed: drop them.
    const lines = existsSync(metricsPath) ? readFileSync(metricsPath, 'utf8').split('\n').filter(Boolean) : [];
    writeFileSync(metricsPath, lines.slice(0, state.steps).map((l) => l + '\n').join(''));
  } else {
    if (o.resume) console.warn(`agentrl train: --resume given but ${ckDir} holds no checkpoint; starting a new run`);
    writeFileSync(configPath, JSON.stringify(cfg, null, 2) + '\n');
    writeFileSync(metricsPath, '');
    if (search && search.task.sft.demos > 0) {
      // The SFT warm start is part of the starting point: it runs before the first RL step and
      // before the starting point's evaluation; the RL phase then starts a fresh optimizer.
      // Nothing else runs during the warm start: it gets every core (an asynchronous run's backend has half).
      const t0 = performance.now();
      const allCores = o.backend ?? (process.env.AGENTRL_BACKEND === 'js' ? backend : (loadNativeBackend({ threads: Number(process.env.AGENTRL_THREADS) || availableParallelism() }) ?? backend));
      const sftModel = new Transformer(parts.trainer.model.config, allCores, cfg.seed);
      sftModel.params.set(parts.trainer.model.params);
      // A LoRA run warm-starts its adapter (same config, same frozen base); RL then continues it.
      const lora = parts.trainer.lora;
      const { adapter, ...sft } = await sftWarmStart(search.task, search.worlds, search.tools, search.tokenizer, sftModel, cfg.seed, lora ? { lora: lora.config } : {});
      parts.trainer.model.params.set(sftModel.params);
      if (lora && adapter) lora.params.set(adapter);
      parts.engine.setWeights(parts.trainer.model.params, 0);
      const seconds = (performance.now() - t0) / 1000;
      writeFileSync(join(o.out, 'sft.json'), JSON.stringify({ ...sft, seconds }) + '\n');
      console.log(`SFT warm start: ${sft.demos} scripted demonstrations (hops ${search.task.sft.hops.join(', ')}), ${sft.steps} steps, last loss ${sft.losses.at(-1)?.toFixed(4)} (${seconds.toFixed(0)} s)`);
    }
    if (cfg.eval.untrained && cfg.eval.trials > 0) {
      if (search) untrainedSearch = await evaluateSearchPolicy('start', parts.engine, search.tools, search.task, search.evalItems);
      else if (isTrial) untrained = await evaluatePolicy('untrained', parts.engine, evalOptions(cfg, cfg.eval.trial));
      else untrainedTool = await toolEvalReward(parts as TaskParts<ToyToolTask>, cfg);
      // Kept beside the checkpoints (plain JSON: an undefined standard error is written as null).
      writeFileSync(join(o.out, UNTRAINED_FILE), JSON.stringify({ untrained, untrainedTool, untrainedSearch }) + '\n');
    }
  }

  let policy: PolicyTrainer;
  let worker: WorkerTrainer | null = null;
  if (useWorker) {
    const lora = parts.trainer.lora;
    worker = new WorkerTrainer({
      model: parts.modelConfig, optimizer: cfg.optimizer as never, seed: cfg.seed, threads: sideThreads, initialState: exportState(parts.trainer),
      ...(lora ? { lora: { config: lora.config, base: lora.baseWeights().map((b) => Float32Array.from(b)) } } : {}),
    });
    await worker.ready();
    policy = worker;
  } else if (cfg.trainerService) {
    const service = await createTinkerTrainer(cfg.trainerService, { model: parts.trainer.model, optimizer: cfg.optimizer as never });
    // The service's copy of the model is version 0 for the local sampler; the local trainer holds the
    // service's latest weights so checkpoints and the final evaluation see them.
    const initial = await service.initialWeights();
    parts.trainer.model.params.set(initial);
    parts.engine.setWeights(initial, state.version);
    policy = {
      version: () => service.version(),
      train: async (minibatches, loss) => {
        const step = await service.train(minibatches, loss);
        parts.trainer.model.params.set(step.weights);
        return step;
      },
      close: () => service.close(),
    };
  } else {
    policy = new InProcessTrainer(parts.trainer);
  }
  // Rollouts on `agentrl worker` processes over Redis: the controller (admission, staleness, retries)
  // stays here; tasks and trajectories travel through Redis Streams, weights through files on disk.
  const ro = cfg.rollout?.kind === 'redis' ? cfg.rollout : null;
  let redis: RedisRollout<unknown> | null = null;
  try {
    if (ro) redis = await openRedisRollout<unknown>({ url: ro.url!, key: ro.key!, engine: parts.engine, weightsDir: resolve(ro.weightsDir ?? join(o.out, 'weights')), keepWeights: ro.keepWeights, log: (m: string) => console.warn(m) });
  } catch (e) {
    await worker?.close();
    throw e;
  }
  // Rollouts on a vLLM/SGLang fleet: the workflow runs here on the remote engine, which writes each
  // new version's weights to disk and has the servers load them (interrupted requests resume).
  let remote: RemoteEngine | null = null;
  if (cfg.engine) {
    remote = createRemoteEngine(cfg.engine, { tokenizer: parts.engine.tokenizer, model: parts.trainer.model, initialVersion: state.version });
    try {
      // The servers start from the trainer's weights (a fresh model, the SFT warm start, or the checkpoint).
      await remote.syncWeights(Float32Array.from(parts.trainer.model.params), state.version);
    } catch (e) {
      await remote.close();
      await worker?.close();
      throw e;
    }
  }
  // Sampled trajectories (with their credited returns and advantages) for `agentrl dashboard`, and
  // per-opponent win rates in metrics.jsonl.
  const trajLog = createTrajectoryLog(o.out, cfg.log.trajectories);
  const decode = (ids: number[]) => ids.map((id) => parts.engine.tokenizer.tokenString(id));
  let byOpponent: ReturnType<typeof opponentStats> = {};
  const loop: Trainer<unknown> = new Trainer<unknown>({
    config: { ...cfg.trainer },
    engine: redis?.engine ?? remote ?? parts.engine,
    trainer: policy,
    source: parts.source(state.admittedGroups),
    workflow: redis?.workflow ?? (remote ? parts.workflowFor(remote) : parts.workflow),
    initialVersion: state.version,
    pending: pendingOf(state),
    onBatch: (samples, groups) => {
      const trajectories = groups.flatMap((g) => g.trajectories);
      byOpponent = opponentStats(trajectories);
      // Credited copies of the batch only on the steps that are logged.
      if (trajLog.due(state.steps)) trajLog.record(state.steps, withCredit(trajectories, samples), decode, { trainerVersion: loop.version() });
    },
  });
  const t0 = performance.now();
  const history: StepMetrics[] = [];
  const save = async () => {
    if (worker) importState(parts.trainer, await worker.exportState());
    // One tick: rollouts go on while the checkpoint is written (η > 0), and the source position must
    // match the snapshot of the groups in flight (encoded now, before the next step consumes them).
    const loopState: LoopState = {
      version: loop.version(), admittedGroups: loop.admittedGroups(), steps: state.steps,
      ...(cfg.trainer.maxStaleness > 0 ? { pendingGroups: encodePendingGroups(loop.pendingGroups()) } : {}),
    };
    await saveTrainerCheckpoint(ckDir, parts.trainer, {
      tokenizer: parts.tokenizer,
      // Sampling on Redis workers has no sampler state here to resume from.
      rng: cfg.trainer.maxStaleness === 0 && !redis && !remote ? { sampler: parts.engine.rngState() } : {},
      trainerState: { loop: loopState, config: cfg },
    });
  };
  try {
    let ran = 0;
    while (state.steps < cfg.trainer.steps && (o.stopAfter === undefined || ran < o.stopAfter)) {
      const m = await loop.step();
      state.steps++;
      ran++;
      history.push(m);
      appendFileSync(metricsPath, JSON.stringify({ ...metricsLine(m), byOpponent }) + '\n');
      o.onStep?.(m, cfg);
      const due = cfg.checkpointEvery > 0 && state.steps % cfg.checkpointEvery === 0;
      if (due || state.steps === cfg.trainer.steps) await save();
    }
  } finally {
    await loop.finish();
    // Closing marks the run done in Redis: its workers exit.
    await redis?.close();
    await worker?.close();
    if (cfg.trainerService) await policy.close();
    if (remote) {
      await remote.weightsSynced().catch((e: unknown) => console.warn(`agentrl train: the last weight update of the inference servers failed: ${(e as Error).message}`));
      await remote.close();
    }
  }
  // Evaluation runs on the built-in engine: give it the trained weights when rollouts ran elsewhere.
  if (remote || redis) parts.engine.setWeights(Float32Array.from(parts.trainer.model.params), loop.version());
  const wallSeconds = (performance.now() - t0) / 1000;
  if (state.steps < cfg.trainer.steps) {
    search?.tools.close();
    return { config: cfg, steps: state.steps, history, eval: null, toolEval: null, searchEval: null, wallSeconds };
  }

  // Evaluation of the trained policy (the engine serves the final weights).
  let reports: EvalReport[] | null = null;
  let toolEval: TrainRunResult['toolEval'] = null;
  let searchEval: SearchEvalReport | null = null;
  if (cfg.eval.trials > 0) {
    if (search) {
      const trained = await evaluateSearchPolicy(cfg.name ?? 'trained', parts.engine, search.tools, search.task, search.evalItems);
      searchEval = searchEvalReport([...(untrainedSearch ? [untrainedSearch] : []), trained], search.task.eval.k);
      writeFileSync(join(o.out, 'eval.json'), JSON.stringify({ config: cfg, search: searchEval, sections: [untrainedSearch, trained] }, null, 2) + '\n');
      writeFileSync(join(o.out, 'eval.md'), `# ${cfg.name ?? cfg.task}: held-out evaluation\n\n${searchEval.markdown}\n`);
    } else if (isTrial) {
      const trained = await evaluatePolicy(cfg.name ?? 'trained', parts.engine, evalOptions(cfg, cfg.eval.trial));
      reports = [...(untrained ? [untrained] : []), trained, evaluateRandom(evalOptions(cfg, cfg.eval.trial))];
      writeFileSync(join(o.out, 'eval.json'), JSON.stringify({ config: cfg, reports }, null, 2) + '\n');
      writeFileSync(join(o.out, 'eval.md'), `# ${cfg.name ?? cfg.task}: evaluation\n\n${cfg.eval.trials} trials per opponent, seed ${cfg.eval.seed}.\n\n${evalTable(reports)}\n`);
    } else {
      toolEval = { untrained: untrainedTool, trained: await toolEvalReward(parts as TaskParts<ToyToolTask>, cfg) };
      writeFileSync(join(o.out, 'eval.json'), JSON.stringify({ config: cfg, toolEval }, null, 2) + '\n');
    }
  }
  search?.tools.close();
  writePlot(o.out, cfg);
  return { config: cfg, steps: state.steps, history, eval: reports, toolEval, searchEval, wallSeconds };
}

function evalOptions(cfg: RunConfig, trialOverride: Record<string, unknown>) {
  return {
    opponents: cfg.eval.opponents ?? cfg.opponents.map((x) => x.name),
    trials: cfg.eval.trials,
    seed: cfg.eval.seed,
    makeEnv: envFactory(cfg.task, cfg.envOptions),
    trial: TrialConfigSchema.parse({ ...cfg.trial, ...trialOverride }),
  };
}

/**
 * A finished run read back from its directory (config.json, metrics.jsonl, eval.json), or null when
 * the run is not finished. Step metrics come back as written (the trainer's metrics under `trainer`).
 */
export function loadFinishedRun(out: string): TrainRunResult | null {
  const evalPath = join(out, 'eval.json');
  if (!existsSync(evalPath) || !existsSync(join(out, 'metrics.jsonl'))) return null;
  const config = parseRunConfig(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')));
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  if (lines.length !== config.trainer.steps) return null;
  const history = lines.map((l) => ({ ...l, trainer: { clipFrac: l.clipFrac, clipFracMax: l.clipFracMax, entropy: l.entropy, kl: l.kl, minibatches: l.minibatches } }) as unknown as StepMetrics);
  const saved = JSON.parse(readFileSync(evalPath, 'utf8')) as { reports?: EvalReport[]; toolEval?: TrainRunResult['toolEval']; search?: SearchEvalReport };
  return { config, steps: lines.length, history, eval: saved.reports ? reviveEvalReports(saved.reports) : null, toolEval: saved.toolEval ?? null, searchEval: saved.search ?? null, wallSeconds: history.reduce((a, m) => a + m.seconds, 0) };
}

/** The JSON line of one step in metrics.jsonl (histograms kept; the trainer's raw metrics flattened). */
export function metricsLine(m: StepMetrics): Record<string, unknown> {
  const { trainer, ...rest } = m;
  return { ...rest, clipFrac: trainer.clipFrac, clipFracMax: trainer.clipFracMax, entropy: trainer.entropy, kl: trainer.kl, minibatches: trainer.minibatches };
}

/**
 * The run's figure (plot.svg, plot.png: src/eval/run-plots.ts) and its metrics as TensorBoard event
 * files (tb/: src/eval/tensorboard.ts), the same as `agentrl plot RUN`. A failure here (a PNG
 * renderer that cannot load, a full disk) is a warning: the run itself is done and saved.
 */
export function writePlot(out: string, cfg: RunConfig): void {
  if (!existsSync(join(out, 'metrics.jsonl'))) return;
  for (const [what, write] of [['plot', () => writeRunPlots(out, { title: cfg.name ?? cfg.task })], ['TensorBoard export', () => writeTensorBoard(out)]] as const) {
    try {
      write();
    } catch (e) {
      console.warn(`agentrl train: could not write the ${what} of ${out}: ${(e as Error).message} (retry with: agentrl plot ${out})`);
    }
  }
}
