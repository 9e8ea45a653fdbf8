/**
 * A rollout worker: runs the tasks of one run (redis-rollout.ts) on its own engine, on any machine
 * that reaches the Redis server and the weights directory. `agentrl worker` (src/cli/worker.ts)
 * builds the engine and workflow from the run's config and runs one of these.
 *
 * Loop: with s free slots, first take over up to s tasks that another worker left idle longer than
 * `visibilityMs` (XAUTOCLAIM; that worker is presumed dead), else read up to s new ones
 * (XREADGROUP, blocking briefly). Each task runs the workflow with the same context the in-process
 * controller gives, after loading weights at least as new as the task's admit version; the result
 * is pushed to K:results and only then the task acknowledged (XACK), so a worker killed at any
 * point leaves its task pending, to be re-run elsewhere (a result pushed but not acknowledged makes
 * a duplicate, which the trainer drops by task id).
 *
 * Every `tickMs` the worker: sends a heartbeat for its running tasks (XCLAIM JUSTID resets their
 * idle time, so a long rollout is not taken over), aborts tasks the trainer withdrew (K:cancelled),
 * loads newer weights (applied between two decode steps, as in-process), and exits when the
 * trainer marks the run done. `stop()` (SIGTERM) aborts running tasks and hands them back at once.
 */
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Trajectory } from '../../core/types.ts';
import type { RolloutWorkflow } from '../../core/workflow.ts';
import { parseMessage, resultFields, type ResultMessage, type TaskMessage } from './messages.ts';
import { ack, autoClaim, connectRedis, ensureGroup, pending, readGroup, release, runKeys, touch, WORKERS_GROUP, xadd, type RunKeys, type StreamEntry } from './streams.ts';
import { publishedWeights, readWeightsFile, type WeightLayout } from './weights.ts';

/** The worker's engine as far as weights go (a BuiltinEngine). */
export interface WorkerEngine {
  version(): number;
  setWeights(params: Float32Array, version: number): void;
  readonly model: WeightLayout;
}

export interface RolloutWorkerOptions<Item> {
  url: string;
  /** The run's key prefix (rollout.key). */
  key: string;
  /** Consumer name, unique among the run's workers; default host-pid-random. */
  name?: string;
  workflow: RolloutWorkflow<Item>;
  engine: WorkerEngine;
  /** Tasks run at once (the engine batches their generate calls). */
  concurrency: number;
  /** Tasks idle this long are taken over (rollout.visibilityMs); heartbeats keep running ones fresh. */
  visibilityMs: number;
  /** Period of heartbeats and checks; default min(1000, visibilityMs / 3). */
  tickMs?: number;
  log?: (line: string) => void;
}

export interface WorkerStats {
  /** Tasks whose workflow was started, reclaimed ones included. */
  started: number;
  /** Results pushed (successes and failures). */
  completed: number;
  failed: number;
  /** Tasks skipped or aborted because the trainer withdrew them. */
  cancelled: number;
  /** Tasks taken over from another worker. */
  reclaimed: number;
  /** Tasks handed back at stop(). */
  released: number;
  weightLoads: number;
}

interface RunningTask {
  streamId: string;
  taskId: string;
  abort: AbortController;
  cancelled: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class RolloutWorker<Item> {
  readonly name: string;
  readonly keys: RunKeys;
  private readonly o: RolloutWorkerOptions<Item>;
  private readonly tickMs: number;
  private readonly running = new Map<string, RunningTask>();
  private readonly stats: WorkerStats = { started: 0, completed: 0, failed: 0, cancelled: 0, reclaimed: 0, released: 0, weightLoads: 0 };
  private stopping = false;
  private slotWaiters: (() => void)[] = [];
  private loading: Promise<void> | null = null;
  private ticking = false;

  private constructor(
    o: RolloutWorkerOptions<Item>,
    private readonly cmd: Redis,
    private readonly reader: Redis,
  ) {
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1) throw new Error(`RolloutWorker: concurrency must be an integer ≥ 1, got ${o.concurrency}`);
    this.o = o;
    this.name = o.name ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    this.keys = runKeys(o.key);
    this.tickMs = o.tickMs ?? Math.max(20, Math.min(1000, Math.floor(o.visibilityMs / 3)));
  }

  /** Connect (two connections: one blocks on reads) and join the workers' group. */
  static async open<Item>(o: RolloutWorkerOptions<Item>): Promise<RolloutWorker<Item>> {
    const cmd = await connectRedis(o.url, `agentrl-worker:${o.key}`);
    const reader = await connectRedis(o.url, `agentrl-worker-reader:${o.key}`);
    const w = new RolloutWorker<Item>(o, cmd, reader);
    await ensureGroup(cmd, w.keys.tasks, WORKERS_GROUP);
    return w;
  }

  /** Ask the loop to end: running tasks are aborted and handed back for another worker to take. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.running.values()) t.abort.abort(new Error('worker stopping'));
    this.wakeSlot();
  }

  /** Weights version the engine samples with. */
  version(): number {
    return this.o.engine.version();
  }

  /** Load the newest published weights if newer than the engine's (one load at a time). */
  syncWeights(): Promise<void> {
    this.loading ??= this.loadNewest().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  /** Take tasks until stop() or the end of the run; then hand back what is unfinished and disconnect. */
  async run(): Promise<WorkerStats> {
    const ticker = setInterval(() => void this.tick(), this.tickMs);
    let lastReclaim = -Infinity;
    try {
      await this.syncWeights().catch((e: unknown) => this.o.log?.(`worker ${this.name}: ${(e as Error).message}`));
      while (!this.stopping) {
        const free = this.o.concurrency - this.running.size;
        if (free <= 0) {
          await new Promise<void>((r) => this.slotWaiters.push(r));
          continue;
        }
        let entries: StreamEntry[] = [];
        let reclaimed = false;
        try {
          if (performance.now() - lastReclaim >= this.tickMs) {
            lastReclaim = performance.now();
            entries = await autoClaim(this.cmd, this.keys.tasks, WORKERS_GROUP, this.name, this.o.visibilityMs, free);
            reclaimed = entries.length > 0;
          }
          if (entries.length === 0) entries = await readGroup(this.reader, this.keys.tasks, WORKERS_GROUP, this.name, free, Math.min(500, this.tickMs));
        } catch (e) {
          const msg = (e as Error).message;
          // The trainer reset the run (a new session): join the new group.
          if (msg.includes('NOGROUP')) await ensureGroup(this.cmd, this.keys.tasks, WORKERS_GROUP);
          else {
            this.o.log?.(`worker ${this.name}: reading tasks failed: ${msg}`);
            await sleep(500);
          }
          continue;
        }
        if (this.stopping) {
          await release(this.cmd, this.keys.tasks, WORKERS_GROUP, this.name, entries.map((e) => e.id), this.o.visibilityMs * 1000).catch(() => {});
          this.stats.released += entries.length;
          break;
        }
        if (reclaimed) this.stats.reclaimed += entries.length;
        for (const e of entries) this.start(e, reclaimed);
      }
      // Stopping: running tasks were aborted; wait for them to settle, then hand them back.
      while (this.running.size > 0) await new Promise<void>((r) => this.slotWaiters.push(r));
    } finally {
      clearInterval(ticker);
      while (this.ticking) await sleep(10);
      await Promise.allSettled([this.cmd.quit(), this.reader.quit()]);
    }
    return { ...this.stats };
  }

  private wakeSlot(): void {
    const ws = this.slotWaiters;
    this.slotWaiters = [];
    for (const w of ws) w();
  }

  private start(e: StreamEntry, reclaimed: boolean): void {
    let task: TaskMessage<Item>;
    try {
      task = parseMessage<TaskMessage<Item>>(e.fields, 'task', e.id);
    } catch (err) {
      this.o.log?.(`worker ${this.name}: ${(err as Error).message}; acknowledged and skipped`);
      void ack(this.cmd, this.keys.tasks, WORKERS_GROUP, [e.id]).catch(() => {});
      return;
    }
    const t: RunningTask = { streamId: e.id, taskId: task.taskId, abort: new AbortController(), cancelled: false };
    this.running.set(e.id, t);
    void this.execute(t, task, reclaimed)
      .catch((err: unknown) => this.o.log?.(`worker ${this.name}: task ${task.taskId}: ${(err as Error).message}`))
      .finally(() => {
        this.running.delete(e.id);
        this.wakeSlot();
      });
  }

  private async execute(t: RunningTask, task: TaskMessage<Item>, reclaimed: boolean): Promise<void> {
    if ((await this.cmd.sismember(this.keys.cancelled, task.taskId)) === 1) {
      this.stats.cancelled++;
      await ack(this.cmd, this.keys.tasks, WORKERS_GROUP, [t.streamId]);
      return;
    }
    const deliveries = reclaimed ? ((await pending(this.cmd, this.keys.tasks, WORKERS_GROUP, { from: t.streamId, to: t.streamId, count: 1 }))[0]?.deliveries ?? 2) : 1;
    await this.awaitWeights(task.admitVersion, t.abort.signal);
    if (t.abort.signal.aborted) return this.afterAbort(t);
    this.stats.started++;
    const t0 = performance.now();
    let result: Pick<ResultMessage, 'ok' | 'trajectories' | 'error'>;
    try {
      const out = await this.o.workflow(task.item, {
        version: this.o.engine.version(), admitVersion: task.admitVersion, signal: t.abort.signal,
        groupIndex: task.groupIndex, groupId: task.groupId, member: task.member, attempt: task.attempt,
      });
      result = { ok: true, trajectories: (Array.isArray(out) ? out : [out]) as Trajectory[] };
    } catch (e) {
      if (t.abort.signal.aborted) return this.afterAbort(t);
      result = { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    const msg: ResultMessage = { taskId: task.taskId, worker: this.name, deliveries, seconds: (performance.now() - t0) / 1000, ...result };
    let fields;
    try {
      fields = resultFields(msg);
    } catch (e) {
      fields = resultFields({ ...msg, ok: false, trajectories: undefined, error: (e as Error).message });
    }
    await xadd(this.cmd, this.keys.results, fields);
    // Between these two lines a killed worker leaves a pushed but unacknowledged task: it runs again, and the trainer drops the duplicate.
    await ack(this.cmd, this.keys.tasks, WORKERS_GROUP, [t.streamId]);
    this.stats.completed++;
    if (!result.ok) this.stats.failed++;
  }

  /** A withdrawn task is acknowledged (nobody wants it); one aborted by stop() is handed back. */
  private async afterAbort(t: RunningTask): Promise<void> {
    if (t.cancelled) {
      this.stats.cancelled++;
      await ack(this.cmd, this.keys.tasks, WORKERS_GROUP, [t.streamId]);
    } else {
      this.stats.released++;
      await release(this.cmd, this.keys.tasks, WORKERS_GROUP, this.name, [t.streamId], this.o.visibilityMs * 1000);
    }
  }

  /** Staleness: a task admitted at version v runs on weights ≥ v (the trainer publishes them before sending it). */
  private async awaitWeights(minVersion: number, signal: AbortSignal): Promise<void> {
    while (this.o.engine.version() < minVersion && !signal.aborted) {
      await this.syncWeights().catch((e: unknown) => this.o.log?.(`worker ${this.name}: ${(e as Error).message}`));
      if (this.o.engine.version() < minVersion) await sleep(50);
    }
  }

  private async loadNewest(): Promise<void> {
    for (let tries = 0; tries < 3; tries++) {
      const w = await publishedWeights(this.cmd, this.keys.weights);
      if (!w || w.version <= this.o.engine.version()) return;
      try {
        const params = await readWeightsFile(w.path, this.o.engine.model);
        this.o.engine.setWeights(params, w.version);
        this.stats.weightLoads++;
        return;
      } catch (e) {
        // The file may have been replaced by a newer version between GET and read: look again.
        if (tries === 2) throw e;
      }
    }
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.stopping) return;
    this.ticking = true;
    try {
      const tasks = [...this.running.values()];
      if (tasks.length > 0) {
        await touch(this.cmd, this.keys.tasks, WORKERS_GROUP, this.name, tasks.map((t) => t.streamId));
        const flags = (await this.cmd.call('SMISMEMBER', this.keys.cancelled, ...tasks.map((t) => t.taskId))) as number[];
        tasks.forEach((t, i) => {
          if (flags[i] === 1 && !t.abort.signal.aborted) {
            t.cancelled = true;
            t.abort.abort(new Error(`task ${t.taskId} withdrawn by the trainer`));
          }
        });
      }
      await this.syncWeights();
      if ((await this.cmd.exists(this.keys.done)) === 1) {
        this.o.log?.(`worker ${this.name}: the trainer finished run ${this.o.key}; exiting`);
        this.stop();
      }
    } catch (e) {
      if (!this.stopping) this.o.log?.(`worker ${this.name}: ${(e as Error).message}`);
    } finally {
      this.ticking = false;
    }
  }
}
