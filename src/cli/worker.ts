/**
 * `agentrl worker --config CONFIG.yaml [--redis URL] [--run KEY]`: a rollout worker of a run whose
 * config has `rollout: { kind: redis, … }` (src/train/redis/). It builds the task's engine and
 * workflow from the same config as the trainer (same model shape, tokenizer, agent), joins the run's
 * task stream, and runs tasks until the trainer finishes the run or it gets SIGTERM / SIGINT
 * (running tasks are then handed back for another worker). Start as many as you like, anywhere
 * that reaches the Redis server and the run's weights directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { defaultBackend } from '../engine/backends.ts';
import { parseRunConfig, isPathModel } from '../run/run-config.ts';
import { loadRunModel, searchParts, toolParts, trialParts, type TaskParts } from '../run/run.ts';
import { parseRolloutSection } from '../train/redis/config.ts';
import { RolloutWorker } from '../train/redis/worker.ts';
import { readConfigFile } from './config-file.ts';

export interface WorkerCliOptions {
  config: string;
  redis?: string;
  run?: string;
  name?: string;
  concurrency?: number;
  visibilityMs?: number;
  set: string[];
}

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got '${v}'`);
  return n;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('Run rollouts for a training run over Redis Streams (config rollout.kind: redis): pulls tasks, runs the workflow on its own engine with the weights the trainer publishes, pushes trajectories; exits when the run finishes or on SIGTERM.')
    .requiredOption('--config <file>', 'the run config (YAML or JSON) the trainer was started with')
    .option('--redis <url>', 'Redis URL (default: the config\'s rollout.url)')
    .option('--run <key>', 'the run\'s key prefix (default: the config\'s rollout.key)')
    .option('--name <name>', 'consumer name, unique among the run\'s workers (default host-pid-random)')
    .option('--concurrency <n>', 'tasks run at once (default: the engine\'s batch, maxBatch or trainer.maxConcurrent)', int)
    .option('--visibility-ms <n>', 'take over tasks idle this long (default: rollout.visibilityMs)', int)
    .option('--set <key=value>', 'override a config field by its dotted path (repeatable)', (v: string, prev: string[]) => [...prev, v], [])
    .action(async (o: WorkerCliOptions) => {
      await runWorkerCommand(o);
    });
}

export async function runWorkerCommand(o: WorkerCliOptions): Promise<void> {
  const { rollout: rawRollout, ...raw } = readConfigFile(o.config, o.set);
  const r = (rawRollout ?? {}) as Record<string, unknown>;
  let rollout;
  try {
    rollout = parseRolloutSection({
      ...r, kind: 'redis',
      ...(o.redis !== undefined ? { url: o.redis } : {}),
      ...(o.run !== undefined ? { key: o.run } : {}),
      ...(o.visibilityMs !== undefined ? { visibilityMs: o.visibilityMs } : {}),
    });
  } catch (e) {
    throw new Error(`${(e as Error).message} (agentrl worker also takes them as --redis URL and --run KEY)`);
  }
  const cfg = parseRunConfig(raw);
  if (cfg.population) throw new Error('agentrl worker: population runs are not supported over Redis yet; remove population or rollout');
  const backend = defaultBackend();
  let pretrained = null;
  let model = cfg;
  if (isPathModel(cfg.model)) {
    const loaded = await loadRunModel(cfg.model, backend);
    pretrained = loaded.pretrained;
    model = { ...cfg, model: loaded.resolved };
  }
  // The search task keeps its retrieval index under a run directory: the worker's own scratch one.
  const scratch = mkdtempSync(join(tmpdir(), 'agentrl-worker-'));
  const search = model.task === 'search' ? await searchParts(model, backend, scratch, pretrained) : null;
  const parts = (search ?? (model.task === 'toy-tool' ? toolParts(model, backend) : trialParts(model, backend, pretrained))) as TaskParts<unknown>;
  const log = (line: string) => console.log(line);
  const worker = await RolloutWorker.open<unknown>({
    url: rollout.url!, key: rollout.key!, name: o.name,
    workflow: parts.workflow, engine: parts.engine,
    concurrency: o.concurrency ?? model.maxBatch ?? model.trainer.maxConcurrent,
    visibilityMs: rollout.visibilityMs, log,
  });
  const stop = (sig: string) => {
    log(`worker ${worker.name}: ${sig}, handing back running tasks`);
    worker.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  log(`worker ${worker.name}: ready (run ${rollout.key} at ${rollout.url}, task ${model.task})`);
  try {
    const stats = await worker.run();
    log(`worker ${worker.name}: done: ${JSON.stringify(stats)}`);
  } finally {
    search?.tools.close();
    rmSync(scratch, { recursive: true, force: true });
  }
  // The engine may hold native threads: leave now that every task is acknowledged or handed back.
  process.exit(0);
}
