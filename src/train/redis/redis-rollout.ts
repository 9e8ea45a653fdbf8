/**
 * The trainer side of rollouts over Redis Streams. It plugs into the one training loop without a
 * second controller: the in-process `RolloutController` keeps doing admission (the staleness rule
 * (v + η + 1)·B), retries, dynamic filtering and batching, and this module gives it
 *
 *   - `workflow`: a RolloutWorkflow that, instead of running an episode, XADDs the run as a task
 *     message to K:tasks and resolves with the trajectories a worker sends back on K:results;
 *     a worker's failure rejects it (the controller retries it as a new task, or fails the group);
 *     an abort (group failed, run stopped) withdraws the task (XDEL + K:cancelled);
 *   - `engine`: the trainer's local engine wrapped so that `setWeights(params, v)` also publishes
 *     the weights to shared disk and K:weights (weights.ts), before any task of version v is sent.
 *
 *   const rr = await openRedisRollout({ url, key, engine: parts.engine, weightsDir: join(out, 'weights') });
 *   const loop = new Trainer({ ..., engine: rr.engine, workflow: rr.workflow });
 *   await loop.run(); await rr.close();        // close() marks the run done: workers exit
 *
 * Workers (worker.ts) read tasks with XREADGROUP in the group `workers`, acknowledge a task after
 * pushing its result, send heartbeats while running it, and take over (XAUTOCLAIM) tasks left idle
 * longer than the visibility timeout by a dead worker. A task can therefore run twice — a worker
 * may die after pushing its result but before acknowledging — so results are de-duplicated here
 * by task id: the first result of a task is the one trained on, later ones are counted and dropped.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Trajectory } from '../../core/types.ts';
import type { RolloutWorkflow } from '../../core/workflow.ts';
import type { TrainableEngine } from '../trainer.ts';
import { parseMessage, taskFields, type ResultMessage, type TaskMessage } from './messages.ts';
import { ack, connectRedis, del, ensureGroup, readGroup, runKeys, TRAINER_GROUP, WORKERS_GROUP, xadd, type RunKeys, type StreamEntry } from './streams.ts';
import { WeightPublisher, type WeightLayout } from './weights.ts';

export interface RedisRolloutOptions {
  url: string;
  /** The run's key prefix (rollout.key); workers join with `--run KEY`. */
  key: string;
  /** The trainer's engine: its weights are the first published, and it keeps receiving every version. */
  engine: TrainableEngine & { readonly model: WeightLayout };
  /** Where weight files go: on disk every worker can read (rollout.weightsDir, default RUN/weights). */
  weightsDir: string;
  keepWeights?: number;
  /** Fail a task (as a workflow error) when no result came this long after it was sent; 0 = wait for ever. */
  taskTimeoutMs?: number;
  /** Lines for the log (duplicates dropped, malformed results). */
  log?: (line: string) => void;
}

export interface RedisRolloutStats {
  tasksSent: number;
  /** Results that resolved a task (successes and failures). */
  results: number;
  failures: number;
  /** Results for a task already resolved: a task re-run after its worker died unacknowledged. */
  duplicates: number;
  /** Results for tasks this trainer withdrew, or of another session of the same key. */
  stale: number;
  /** Tasks withdrawn by an abort. */
  cancelled: number;
  /** Resolving results that came from a re-delivered task (deliveries > 1). */
  redelivered: number;
  malformed: number;
  /** Resolving results by worker. */
  byWorker: Record<string, number>;
}

interface PendingTask {
  resolve: (t: Trajectory[]) => void;
  reject: (e: Error) => void;
  /** Stream id of the task entry once XADD returned. */
  streamId: string | null;
  cleanup: () => void;
}

/** Connect, reset the run's streams (a new session of the key), publish the engine's weights. */
export async function openRedisRollout<Item>(o: RedisRolloutOptions): Promise<RedisRollout<Item>> {
  const cmd = await connectRedis(o.url, `agentrl-trainer:${o.key}`);
  const reader = await connectRedis(o.url, `agentrl-trainer-reader:${o.key}`);
  const keys = runKeys(o.key);
  // A previous session's tasks and results mean nothing to this one: start both streams empty.
  // Workers already connected re-create their group when their next read finds it gone.
  await cmd.multi()
    .del(keys.tasks, keys.results, keys.weights, keys.cancelled, keys.done)
    .call('XGROUP', 'CREATE', keys.tasks, WORKERS_GROUP, '0', 'MKSTREAM')
    .call('XGROUP', 'CREATE', keys.results, TRAINER_GROUP, '0', 'MKSTREAM')
    .exec();
  const rr = new RedisRollout<Item>(o, cmd, reader, keys);
  rr.publisher.publish(Float32Array.from(o.engine.model.params), o.engine.version());
  await rr.publisher.settled();
  rr.startReading();
  return rr;
}

export class RedisRollout<Item> {
  readonly engine: TrainableEngine;
  readonly workflow: RolloutWorkflow<Item>;
  readonly publisher: WeightPublisher;
  /** Distinguishes this trainer's tasks from those of an earlier session under the same key. */
  readonly session = randomBytes(4).toString('hex');
  private readonly pendingTasks = new Map<string, PendingTask>();
  private readonly resolved = new Set<string>();
  private readonly counts: RedisRolloutStats = { tasksSent: 0, results: 0, failures: 0, duplicates: 0, stale: 0, cancelled: 0, redelivered: 0, malformed: 0, byWorker: {} };
  private closing = false;
  private readLoop: Promise<void> = Promise.resolve();
  private readError: Error | null = null;

  constructor(
    private readonly o: RedisRolloutOptions,
    private readonly cmd: Redis,
    private readonly reader: Redis,
    readonly keys: RunKeys,
  ) {
    const local = o.engine;
    this.publisher = new WeightPublisher(cmd, keys.weights, local.model, o.weightsDir, o.keepWeights ?? 2);
    const publisher = this.publisher;
    this.engine = {
      get tokenizer() {
        return local.tokenizer;
      },
      contextLength: local.contextLength,
      version: () => local.version(),
      generate: (prompt, params) => local.generate(prompt, params),
      setWeights: (params, version) => {
        publisher.publish(params, version);
        local.setWeights(params, version);
      },
    };
    this.workflow = (item, ctx) => this.send(item, ctx);
  }

  stats(): RedisRolloutStats {
    return { ...this.counts, byWorker: { ...this.counts.byWorker } };
  }

  /** Tasks sent and not yet answered. */
  inFlight(): number {
    return this.pendingTasks.size;
  }

  /**
   * Stop reading results, reject the tasks still waiting, and (by default) mark the run done so
   * the workers exit. Idempotent.
   */
  async close(opts: { done?: boolean } = {}): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.readLoop;
    for (const [taskId, p] of this.pendingTasks) {
      p.cleanup();
      p.reject(new Error(`Redis rollout closed before task ${taskId} finished`));
    }
    this.pendingTasks.clear();
    await this.publisher.settled().catch(() => {});
    if (opts.done ?? true) await this.cmd.set(this.keys.done, '1');
    await Promise.allSettled([this.cmd.quit(), this.reader.quit()]);
  }

  // ── sending ────────────────────────────────────────────────────────────────────────────────

  private send(item: Item, ctx: Parameters<RolloutWorkflow<Item>>[1]): Promise<Trajectory[]> {
    if (this.closing) return Promise.reject(new Error('Redis rollout is closed'));
    if (this.readError) return Promise.reject(this.readError);
    if (ctx.signal.aborted) return Promise.reject(ctx.signal.reason ?? new Error('aborted'));
    const msg: TaskMessage<Item> = {
      taskId: `${this.session}:g${ctx.groupIndex}.m${ctx.member}.a${ctx.attempt}`,
      item, groupIndex: ctx.groupIndex, groupId: ctx.groupId, member: ctx.member, attempt: ctx.attempt, admitVersion: ctx.admitVersion,
    };
    const { taskId } = msg;
    return new Promise<Trajectory[]>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        const p = this.pendingTasks.get(taskId);
        if (!p) return;
        this.pendingTasks.delete(taskId);
        p.cleanup();
        this.counts.cancelled++;
        this.withdraw(taskId, p.streamId);
        reject(ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted'));
      };
      const entry: PendingTask = {
        resolve, reject, streamId: null,
        cleanup: () => {
          ctx.signal.removeEventListener('abort', onAbort);
          if (timer) clearTimeout(timer);
        },
      };
      this.pendingTasks.set(taskId, entry);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      if (this.o.taskTimeoutMs) {
        timer = setTimeout(() => {
          if (this.pendingTasks.get(taskId) !== entry) return;
          this.pendingTasks.delete(taskId);
          entry.cleanup();
          this.withdraw(taskId, entry.streamId);
          reject(new Error(`no result for task ${taskId} within ${this.o.taskTimeoutMs} ms: are workers running (agentrl worker --run ${this.o.key})?`));
        }, this.o.taskTimeoutMs);
      }
      // Weights of the admit version first, then the task (the same connection keeps the order).
      void this.publisher.settled()
        .then(() => xadd(this.cmd, this.keys.tasks, taskFields(msg)))
        .then((streamId) => {
          this.counts.tasksSent++;
          if (this.pendingTasks.get(taskId) === entry) entry.streamId = streamId;
          else void del(this.cmd, this.keys.tasks, [streamId]).catch(() => {}); // withdrawn while sending
        })
        .catch((e: unknown) => {
          if (this.pendingTasks.get(taskId) !== entry) return;
          this.pendingTasks.delete(taskId);
          entry.cleanup();
          reject(new Error(`sending task ${taskId} to Redis failed: ${(e as Error).message}`));
        });
    });
  }

  /** A task nobody wants any more: remove it from the stream (if not yet delivered) and tell workers running it. */
  private withdraw(taskId: string, streamId: string | null): void {
    const p = this.cmd.multi().sadd(this.keys.cancelled, taskId);
    if (streamId) p.xdel(this.keys.tasks, streamId);
    void p.exec().catch(() => {});
  }

  // ── receiving ──────────────────────────────────────────────────────────────────────────────

  startReading(): void {
    this.readLoop = this.readResults();
  }

  private async readResults(): Promise<void> {
    while (!this.closing) {
      let entries: StreamEntry[];
      try {
        entries = await readGroup(this.reader, this.keys.results, TRAINER_GROUP, 'trainer', 256, 250);
      } catch (e) {
        if (this.closing) return;
        if (String((e as Error).message).includes('NOGROUP')) {
          await ensureGroup(this.cmd, this.keys.results, TRAINER_GROUP).catch(() => {});
          continue;
        }
        this.readError = new Error(`reading results from Redis failed: ${(e as Error).message}`);
        for (const [, p] of this.pendingTasks) {
          p.cleanup();
          p.reject(this.readError);
        }
        this.pendingTasks.clear();
        return;
      }
      if (entries.length === 0) continue;
      const finishedTasks: string[] = [];
      for (const e of entries) {
        const streamId = this.onResult(e);
        if (streamId) finishedTasks.push(streamId);
      }
      const ids = entries.map((e) => e.id);
      // Results are processed: acknowledge and drop them; finished tasks leave the task stream too.
      try {
        await Promise.all([ack(this.cmd, this.keys.results, TRAINER_GROUP, ids), del(this.cmd, this.keys.results, ids), del(this.cmd, this.keys.tasks, finishedTasks)]);
      } catch (e) {
        if (!this.closing) this.o.log?.(`redis rollout: acknowledging results failed: ${(e as Error).message}`);
      }
    }
  }

  /** Handle one result entry; returns the task's stream id when it resolved a task. */
  private onResult(e: StreamEntry): string | null {
    let r: ResultMessage;
    try {
      r = parseMessage<ResultMessage>(e.fields, 'result', e.id);
    } catch (err) {
      this.counts.malformed++;
      this.o.log?.(`redis rollout: ${(err as Error).message}`);
      return null;
    }
    const p = this.pendingTasks.get(r.taskId);
    if (!p) {
      if (this.resolved.has(r.taskId)) {
        this.counts.duplicates++;
        this.o.log?.(`redis rollout: dropped a second result of task ${r.taskId} (from ${r.worker}, delivery ${r.deliveries})`);
      } else {
        this.counts.stale++;
      }
      return null;
    }
    this.pendingTasks.delete(r.taskId);
    this.resolved.add(r.taskId);
    p.cleanup();
    this.counts.results++;
    this.counts.byWorker[r.worker] = (this.counts.byWorker[r.worker] ?? 0) + 1;
    if (r.deliveries > 1) this.counts.redelivered++;
    if (r.ok && Array.isArray(r.trajectories)) {
      for (const t of r.trajectories) {
        if (t && typeof t === 'object') t.info = { ...(t.info ?? {}), taskId: r.taskId, worker: r.worker, deliveries: r.deliveries };
      }
      p.resolve(r.trajectories);
    } else {
      this.counts.failures++;
      p.reject(new Error(`worker ${r.worker}: ${r.error ?? 'the result has no trajectories'}`));
    }
    return p.streamId;
  }
}
