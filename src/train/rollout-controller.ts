/**
 * The asynchronous rollout controller (AReaL-lite's workflow executor): keeps agent rollouts running
 * on the inference engine while the trainer trains, admits new work only as far as the staleness
 * bound allows, and hands the trainer batches of B groups, oldest first.
 *
 * A *workflow* runs one episode of any agent (a prompt→answer task, a MAGE trial, a search session)
 * and returns its trajectory. Each item drawn from the data source becomes a *group* of `groupSize`
 * workflow runs (the trajectories whose rewards are compared); the group is the unit of admission,
 * filtering and consumption. Runs are the unit of concurrency: at most `maxConcurrent` workflow calls
 * are in flight, and since the engine batches concurrent `generate` calls, that is the generation
 * batch size.
 *
 * Pacing only ever delays new admissions: a finished rollout is never discarded for being long or
 * old. Admission and consumption rules, and the proof that consumed groups are at most η versions
 * stale, are in staleness.ts.
 *
 * Usage:
 *   const rc = new RolloutController({ config: { batchSize: 8, groupSize: 4, maxConcurrent: 32,
 *     maxStaleness: 2 }, source: prompts, workflow: (p, ctx) => runEpisode(engine, p, ctx) });
 *   rc.start();
 *   for (let v = 0; v < steps; v++) { const batch = await rc.nextBatch(v); train(batch); publish(v + 1); }
 *   await rc.stop();
 *
 * Checkpoints (η > 0: work is in flight between steps): `pendingGroups()` is a snapshot of the
 * groups admitted but not consumed — finished ones with their trajectories, unfinished ones as their
 * item only (a partial rollout cannot be resumed). A controller built with `pending` (and the
 * source positioned at `pending.nextIndex`) puts the finished groups straight back into the queue
 * with their admission index and admit version, and re-runs the unfinished ones from scratch before
 * drawing any new item, under their original indices.
 */
import { setMaxListeners } from 'node:events';
import { z } from 'zod';
import type { Trajectory } from '../core/types.ts';
import type { RolloutContext, RolloutWorkflow } from '../core/workflow.ts';
import { TokenSource } from '../core/types.ts';
import type { InferenceEngine } from '../engine/types.ts';
import { decodeMessage, encodeMessage } from '../core/tagged-json.ts';
import {
  addToHistogram,
  addTokenStaleness,
  consumeDeadline,
  histogramStats,
  mergeHistograms,
  pickBatch,
  stalenessCapacity,
  type Histogram,
} from './staleness.ts';

/** Fields of the controller config (the trainer's config reuses them). */
export const ROLLOUT_CONTROLLER_SHAPE = {
  /** B: groups per training batch. */
  batchSize: z.number().int().min(1),
  /** Workflow runs per item; their trajectories form one group. */
  groupSize: z.number().int().min(1).default(1),
  /** Most workflow runs (trajectories) in flight at once. Default: batchSize × groupSize. */
  maxConcurrent: z.number().int().min(1).optional(),
  /** η: a consumed group was started at most η trainer versions earlier. 0 = synchronous. */
  maxStaleness: z.number().int().min(0).default(0),
  /** Drop groups (of ≥ 2 trajectories) whose rewards are all equal; new work replaces them. */
  dynamicFilter: z.boolean().default(false),
  /** Times a failed workflow run is retried before its whole group counts as failed. */
  maxRetries: z.number().int().min(0).default(0),
  /**
   * Give up (nextBatch rejects) after this many groups in a row were dropped (filtered or failed):
   * a workflow that always fails, or a reward that never varies, would otherwise stall training silently.
   */
  maxConsecutiveDrops: z.number().int().min(1).default(1000),
  /** Trainer version at start() (non-zero when resuming from a checkpoint). */
  initialVersion: z.number().int().min(0).default(0),
};

export const RolloutControllerConfigSchema = z
  .object(ROLLOUT_CONTROLLER_SHAPE)
  .strict()
  .transform((c) => ({ ...c, maxConcurrent: c.maxConcurrent ?? c.batchSize * c.groupSize }));
export type RolloutControllerConfig = z.output<typeof RolloutControllerConfigSchema>;
export type RolloutControllerConfigInput = z.input<typeof RolloutControllerConfigSchema>;

/** Parse a controller config, naming the field and the fix on error. */
export function parseRolloutControllerConfig(input: unknown): RolloutControllerConfig {
  const r = RolloutControllerConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid rollout controller config: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}


/** A group handed to the trainer. */
export interface ConsumedGroup<Item> {
  item: Item;
  /** Admission index, 0-based. */
  index: number;
  admitVersion: number;
  /** Consumer (trainer) version − admitVersion. */
  staleness: number;
  /** All trajectories of the group's runs, in member order. */
  trajectories: Trajectory[];
}

/** A group left over at stop(). */
export interface LeftoverGroup<Item> {
  item: Item;
  index: number;
  admitVersion: number;
  /** Present for finished, kept groups; absent for groups whose runs were aborted. */
  trajectories?: Trajectory[];
}

/** A finished, kept group not consumed yet (part of a checkpoint). */
export interface PendingFinishedGroup<Item> {
  index: number;
  item: Item;
  admitVersion: number;
  /** All trajectories of the group's runs, in member order. */
  trajectories: Trajectory[];
}

/** An admitted group whose runs had not all finished (part of a checkpoint): re-run from scratch on resume. */
export interface PendingRunningGroup<Item> {
  index: number;
  item: Item;
}

/** The groups admitted but not consumed at one moment: what a resumed controller starts with. */
export interface PendingGroups<Item> {
  /** Admission index of the next item drawn from the source (groups admitted over the whole run). */
  nextIndex: number;
  /** Finished and kept, in admission order (admit versions non-decreasing). */
  finished: PendingFinishedGroup<Item>[];
  /** Running or queued, by admission index. */
  running: PendingRunningGroup<Item>[];
}

export interface StopResult<Item> {
  /** Finished, kept, never consumed: usable data (e.g. the tail of a finite data set). */
  ready: LeftoverGroup<Item>[];
  /**
   * Admitted groups whose runs were still going and were aborted. (Groups of `pending` still waiting
   * to be re-run are not listed: like the source's undrawn items, this controller never admitted them.)
   */
  aborted: LeftoverGroup<Item>[];
}

/** Metrics of one nextBatch window: from the previous batch's hand-over (or start()) to this one. */
export interface BatchWindowMetrics {
  /** Trainer version that consumed this batch. */
  version: number;
  seconds: number;
  /** Time the trainer spent inside nextBatch waiting (0 when the batch was already there). */
  waitSeconds: number;
  /** Trajectories / Sample records / policy tokens finished per second of the window. */
  trajectoriesPerSecond: number;
  samplesPerSecond: number;
  tokensPerSecond: number;
  /** Fraction of the window with at least one workflow run in flight. */
  busyFraction: number;
  /** Time-averaged workflow runs in flight: the engine's generation occupancy, at most maxConcurrent. */
  meanRunning: number;
  /** Consumed groups by staleness (trainer version − admit version). */
  staleness: Histogram;
  meanStaleness: number;
  maxStaleness: number;
  /** Policy tokens of the consumed trajectories by staleness (trainer version − token version). */
  tokenStaleness: Histogram;
  admittedGroups: number;
  filteredGroups: number;
  failedGroups: number;
  /** Workflow runs that threw or returned no trajectory (including those then retried). */
  runErrors: number;
  retries: number;
}

/** Cumulative group and run counts since start(). */
export interface GroupCounts {
  admittedGroups: number;
  acceptedGroups: number;
  consumedGroups: number;
  filteredGroups: number;
  failedGroups: number;
  abortedGroups: number;
  runErrors: number;
  retries: number;
  /** Finished groups taken over from `pending` and queued for consumption (not admitted, not accepted here). */
  restoredGroups: number;
  /** Groups of `pending` re-run from scratch (counted in admittedGroups when re-admitted). */
  rerunGroups: number;
}

export interface RolloutTotals extends GroupCounts {
  version: number;
  /** Groups consumed with staleness > η: 0 unless the trainer skipped versions between batches. */
  stalenessViolations: number;
  staleness: Histogram;
  /** Right now. */
  runningRuns: number;
  runningGroups: number;
  readyGroups: number;
  /** The last few workflow errors, newest last. */
  lastErrors: string[];
}

export interface RolloutMetrics {
  /** The most recent nextBatch window, or null before the first batch. */
  window: BatchWindowMetrics | null;
  totals: RolloutTotals;
}

/** nextBatch could not be filled because the data source ran out; leftovers come back from stop(). */
export class RolloutSourceExhaustedError extends Error {
  constructor(
    readonly readyGroups: number,
    readonly batchSize: number,
  ) {
    super(`rollout data source exhausted: ${readyGroups} finished group(s) left, fewer than batchSize ${batchSize}; call stop() to collect them, or pass a longer or repeating source`);
    this.name = 'RolloutSourceExhaustedError';
  }
}

export interface RolloutControllerOptions<Item> {
  config: RolloutControllerConfigInput;
  /** Task items (prompts, seeds …), taken in order; shuffle in the source if you want shuffling. */
  source: Iterable<Item> | Iterator<Item>;
  workflow: RolloutWorkflow<Item>;
  /** Engine whose version() is reported to workflows as ctx.version. */
  engine?: Pick<InferenceEngine, 'version'>;
  /** Clock in milliseconds (tests pass a simulated one). Default performance.now. */
  now?: () => number;
  /**
   * Resume: groups admitted but not consumed when a checkpoint was taken (`pendingGroups()` of the
   * run before). `source` must start at item `pending.nextIndex`. Finished groups are queued for
   * consumption as they were; a finished group whose deadline (admit version + η) the batches from
   * `initialVersion` on can no longer meet is re-run instead, like the running ones.
   */
  pending?: PendingGroups<Item>;
}

type GroupStatus = 'running' | 'ready' | 'filtered' | 'failed' | 'consumed' | 'aborted';

interface GroupState<Item> {
  index: number;
  item: Item;
  admitVersion: number;
  deadline: number;
  results: Trajectory[][];
  unfinishedRuns: number;
  status: GroupStatus;
  abort: AbortController;
  trajectories: Trajectory[] | null;
}

interface RunTicket<Item> {
  group: GroupState<Item>;
  member: number;
  attempt: number;
}

interface Waiter<Item> {
  version: number;
  startedAt: number;
  resolve: (groups: ConsumedGroup<Item>[]) => void;
  reject: (e: Error) => void;
}

/** Cumulative counters; a window is the difference of two snapshots. */
interface Counters extends GroupCounts {
  trajectories: number;
  samples: number;
  tokens: number;
  busyMs: number;
  runningMs: number;
}

const zeroCounters = (): Counters => ({
  admittedGroups: 0, acceptedGroups: 0, consumedGroups: 0, filteredGroups: 0, failedGroups: 0, abortedGroups: 0,
  runErrors: 0, retries: 0, restoredGroups: 0, rerunGroups: 0, trajectories: 0, samples: 0, tokens: 0, busyMs: 0, runningMs: 0,
});

const MAX_KEPT_ERRORS = 10;

export class RolloutController<Item> {
  readonly config: RolloutControllerConfig;
  private readonly iterator: Iterator<Item>;
  private readonly workflow: RolloutWorkflow<Item>;
  private readonly engine: Pick<InferenceEngine, 'version'> | undefined;
  private readonly now: () => number;

  private version: number;
  private lastBatchVersion: number;
  private started = false;
  private stopping = false;
  private stopPromise: Promise<StopResult<Item>> | null = null;
  private exhausted = false;
  private fatal: Error | null = null;
  private pumping = false;

  private nextIndex = 0;
  /** Groups of `pending` to re-run, by index: admitted before any new item of the source. */
  private rerunQueue: PendingRunningGroup<Item>[] = [];
  /**
   * Finished and kept since the start, consumed or not (the rule's `accepted`); restored finished
   * groups count too: they hold places in the coming batches exactly as if accepted here.
   */
  private accepted = 0;
  private runningGroups = 0;
  private runningRuns = 0;
  private consecutiveDrops = 0;
  /** Groups running or ready, in admission order. */
  private unconsumed: GroupState<Item>[] = [];
  private runQueue: RunTicket<Item>[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private waiter: Waiter<Item> | null = null;

  private counters = zeroCounters();
  private windowStartCounters = zeroCounters();
  private windowStartMs = 0;
  private clockMs = 0;
  private stalenessTotal: Histogram = {};
  private stalenessViolations = 0;
  private lastWindow: BatchWindowMetrics | null = null;
  private readonly lastErrors: string[] = [];

  constructor(opts: RolloutControllerOptions<Item>) {
    this.config = parseRolloutControllerConfig(opts.config);
    const src = opts.source as Partial<Iterable<Item>> & Partial<Iterator<Item>>;
    if (typeof src[Symbol.iterator] === 'function') this.iterator = (src as Iterable<Item>)[Symbol.iterator]();
    else if (typeof src.next === 'function') this.iterator = src as Iterator<Item>;
    else throw new Error('RolloutController: source must be an Iterable or an Iterator of task items');
    if (typeof opts.workflow !== 'function') throw new Error('RolloutController: workflow must be a function (item, ctx) => Promise<Trajectory | Trajectory[]>');
    this.workflow = opts.workflow;
    this.engine = opts.engine;
    this.now = opts.now ?? (() => performance.now());
    this.version = this.config.initialVersion;
    this.lastBatchVersion = this.config.initialVersion - 1;
    if (opts.pending) this.restore(opts.pending);
  }

  /**
   * Take over a checkpoint's pending groups (see the `pending` option). Finished groups go back in
   * (admit version, index) order while the batches from initialVersion on can take each by its
   * deadline — invariant I of staleness.ts, which every export of a controller with this batchSize
   * and η satisfies (dropping its running groups only lowers the counts); any other is re-run.
   */
  private restore(p: PendingGroups<Item>): void {
    const { batchSize, maxStaleness, initialVersion } = this.config;
    const bad = (msg: string): never => {
      throw new Error(`RolloutController: pending groups: ${msg} (pass pendingGroups() of the run being resumed, unchanged)`);
    };
    if (!Number.isSafeInteger(p.nextIndex) || p.nextIndex < 0) bad(`nextIndex must be a non-negative integer, got ${p.nextIndex}`);
    const seen = new Set<number>();
    for (const g of [...p.finished, ...p.running]) {
      if (!Number.isSafeInteger(g.index) || g.index < 0 || g.index >= p.nextIndex) bad(`group index ${g.index} is not an integer in [0, nextIndex ${p.nextIndex})`);
      if (seen.has(g.index)) bad(`group index ${g.index} appears twice`);
      seen.add(g.index);
    }
    const finished = [...p.finished].sort((a, b) => a.admitVersion - b.admitVersion || a.index - b.index);
    const rerun: PendingRunningGroup<Item>[] = p.running.map((g) => ({ index: g.index, item: g.item }));
    for (const f of finished) {
      if (!Number.isSafeInteger(f.admitVersion) || f.admitVersion > initialVersion) bad(`group ${f.index} has admit version ${f.admitVersion}, not an integer ≤ initialVersion ${initialVersion}`);
      let trajectories: Trajectory[];
      try {
        trajectories = asTrajectories(f.trajectories);
      } catch (e) {
        return bad(`group ${f.index}: ${errorMessage(e)}`);
      }
      const deadline = consumeDeadline(f.admitVersion, maxStaleness);
      // Room for it in the batches initialVersion … deadline, after the groups already put back?
      if (this.accepted + 1 > (deadline - initialVersion + 1) * batchSize) {
        rerun.push({ index: f.index, item: f.item });
        continue;
      }
      const g: GroupState<Item> = {
        index: f.index, item: f.item, admitVersion: f.admitVersion, deadline,
        results: [], unfinishedRuns: 0, status: 'ready', abort: new AbortController(), trajectories: [...trajectories],
      };
      this.unconsumed.push(g);
      this.accepted++;
      this.counters.restoredGroups++;
    }
    this.rerunQueue = rerun.sort((a, b) => a.index - b.index);
    this.nextIndex = p.nextIndex;
  }

  /** Begin admitting and running rollouts. */
  start(): void {
    if (this.started) throw new Error('RolloutController.start: already started (a controller runs once; make a new one to restart)');
    this.started = true;
    this.clockMs = this.windowStartMs = this.now();
    this.pump();
  }

  /** Tell the controller the trainer published weights `version` (admission opens up accordingly). */
  setVersion(version: number): void {
    if (!Number.isInteger(version) || version < this.version) {
      throw new Error(`RolloutController.setVersion: version must be an integer ≥ the current version ${this.version}, got ${version}`);
    }
    this.version = version;
    this.pump();
    this.tryFulfil();
  }

  /** The trainer's version as last told. */
  currentVersion(): number {
    return this.version;
  }

  /** Admission index the next item of the source will get: groups admitted over the whole run, resumes included. */
  nextGroupIndex(): number {
    return this.nextIndex;
  }

  /**
   * Snapshot of the groups admitted but not consumed, for a checkpoint: finished ones with their
   * trajectories (the controller's own objects: serialize them before the next step consumes
   * them), running or queued ones as their item. Synchronous, so it is consistent with
   * nextGroupIndex() read in the same tick, whatever rollouts do afterwards.
   */
  pendingGroups(): PendingGroups<Item> {
    if (this.stopping) throw new Error('RolloutController.pendingGroups: the controller is stopped (stop() aborted its running groups); take the snapshot before stopping');
    const finished: PendingFinishedGroup<Item>[] = [];
    const running: PendingRunningGroup<Item>[] = this.rerunQueue.map((g) => ({ index: g.index, item: g.item }));
    for (const g of this.unconsumed) {
      if (g.status === 'ready') finished.push({ index: g.index, item: g.item, admitVersion: g.admitVersion, trajectories: [...g.trajectories!] });
      else running.push({ index: g.index, item: g.item });
    }
    return { nextIndex: this.nextIndex, finished, running: running.sort((a, b) => a.index - b.index) };
  }

  /**
   * Wait for B kept groups and return them oldest first (admission order), as trajectory lists.
   * `trainerVersion` is the version that will train on them; it must grow by one per batch for the
   * staleness bound to hold (it must at least grow).
   */
  async nextBatch(trainerVersion: number): Promise<Trajectory[][]> {
    const groups = await this.nextBatchGroups(trainerVersion);
    return groups.map((g) => g.trajectories);
  }

  /** nextBatch with each group's item, admission index, admit version and staleness. */
  nextBatchGroups(trainerVersion: number): Promise<ConsumedGroup<Item>[]> {
    if (!this.started) return Promise.reject(new Error('RolloutController.nextBatch: call start() first'));
    if (this.stopping) return Promise.reject(new Error('RolloutController.nextBatch: the controller is stopped'));
    if (this.waiter) return Promise.reject(new Error('RolloutController.nextBatch: a previous call is still waiting; await it before asking for the next batch'));
    if (this.fatal) return Promise.reject(this.fatal);
    if (!Number.isInteger(trainerVersion) || trainerVersion <= this.lastBatchVersion || trainerVersion < this.version) {
      return Promise.reject(
        new Error(
          `RolloutController.nextBatch: trainer version ${trainerVersion} must be an integer above the last batch's (${this.lastBatchVersion}) and ≥ the current version ${this.version}; ` +
            'the staleness rule assumes one batch per version: publish new weights between batches',
        ),
      );
    }
    this.lastBatchVersion = trainerVersion;
    return new Promise<ConsumedGroup<Item>[]>((resolve, reject) => {
      this.waiter = { version: trainerVersion, startedAt: this.now(), resolve, reject };
      this.setVersion(trainerVersion);
    });
  }

  /**
   * Stop admitting, abort running rollouts (via their AbortSignal) and wait for them to settle.
   * A waiting nextBatch is rejected. Returns the groups that were admitted but not consumed.
   */
  stop(): Promise<StopResult<Item>> {
    this.stopPromise ??= this.shutdown();
    return this.stopPromise;
  }

  metrics(): RolloutMetrics {
    const c = this.counters;
    return {
      window: this.lastWindow,
      totals: {
        version: this.version,
        admittedGroups: c.admittedGroups,
        acceptedGroups: c.acceptedGroups,
        consumedGroups: c.consumedGroups,
        filteredGroups: c.filteredGroups,
        failedGroups: c.failedGroups,
        abortedGroups: c.abortedGroups,
        runErrors: c.runErrors,
        retries: c.retries,
        restoredGroups: c.restoredGroups,
        rerunGroups: c.rerunGroups,
        stalenessViolations: this.stalenessViolations,
        staleness: { ...this.stalenessTotal },
        runningRuns: this.runningRuns,
        runningGroups: this.runningGroups,
        readyGroups: this.unconsumed.filter((g) => g.status === 'ready').length,
        lastErrors: [...this.lastErrors],
      },
    };
  }

  // ── admission ──────────────────────────────────────────────────────────────────────────────

  /** Start queued runs, then admit new groups while concurrency and the staleness rule allow. */
  private pump(): void {
    if (!this.started || this.stopping || this.fatal || this.pumping) return;
    this.pumping = true;
    try {
      const { maxConcurrent } = this.config;
      for (;;) {
        while (this.runQueue.length > 0 && this.runningRuns < maxConcurrent) this.startRun(this.runQueue.shift()!);
        // A new group waits until every admitted run has a slot, so groups start in admission order.
        if (this.runQueue.length > 0 || this.runningRuns >= maxConcurrent || this.exhausted || this.fatal) return;
        const counts = { accepted: this.accepted, running: this.runningGroups, version: this.version - this.config.initialVersion };
        if (stalenessCapacity(counts, this.config) < 1) return;
        const rerun = this.rerunQueue.shift();
        if (rerun) {
          this.counters.rerunGroups++;
          this.admit(rerun.item, rerun.index);
          continue;
        }
        let next: IteratorResult<Item>;
        try {
          next = this.iterator.next();
        } catch (e) {
          this.fatal = new Error(`rollout data source threw: ${errorMessage(e)}`);
          return;
        }
        if (next.done) {
          this.exhausted = true;
          return;
        }
        this.admit(next.value);
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Admit a new group: the source's next item, or (with `index`) a checkpointed group to re-run. */
  private admit(item: Item, index = this.nextIndex++): void {
    const { groupSize, maxStaleness } = this.config;
    const g: GroupState<Item> = {
      index,
      item,
      admitVersion: this.version,
      deadline: consumeDeadline(this.version, maxStaleness),
      results: new Array<Trajectory[]>(groupSize),
      unfinishedRuns: groupSize,
      status: 'running',
      abort: new AbortController(),
      trajectories: null,
    };
    // Every run of the group (and every generate call in it) listens to this one signal.
    setMaxListeners(0, g.abort.signal);
    this.unconsumed.push(g);
    this.runningGroups++;
    this.counters.admittedGroups++;
    for (let member = 0; member < groupSize; member++) this.runQueue.push({ group: g, member, attempt: 0 });
  }

  private startRun(ticket: RunTicket<Item>): void {
    const g = ticket.group;
    this.tick();
    this.runningRuns++;
    const ctx: RolloutContext = {
      version: this.engine ? this.engine.version() : this.version,
      admitVersion: g.admitVersion,
      signal: g.abort.signal,
      groupIndex: g.index,
      groupId: `g${g.index}`,
      member: ticket.member,
      attempt: ticket.attempt,
    };
    let run: Promise<Trajectory | Trajectory[]>;
    try {
      run = Promise.resolve(this.workflow(g.item, ctx));
    } catch (e) {
      run = Promise.reject(e);
    }
    const settled = run.then(
      (r) => this.onRunSettled(ticket, r, null),
      (e: unknown) => this.onRunSettled(ticket, undefined, e ?? new Error('workflow rejected with no reason')),
    );
    this.inflight.add(settled);
    void settled.then(() => this.inflight.delete(settled));
  }

  private onRunSettled(ticket: RunTicket<Item>, result: unknown, error: unknown): void {
    try {
      this.tick();
      this.runningRuns--;
      const g = ticket.group;
      if (g.status === 'running' && !this.stopping) {
        let trajectories: Trajectory[] | null = null;
        let failure = error;
        if (failure === null) {
          try {
            trajectories = asTrajectories(result);
          } catch (e) {
            failure = e;
          }
        }
        if (trajectories) this.onRunSucceeded(ticket, trajectories);
        else this.onRunFailed(ticket, failure);
      }
      this.pump();
      this.tryFulfil();
    } catch (e) {
      // A bug here must not vanish into an unhandled rejection: surface it to the trainer.
      this.fatal = new Error(`RolloutController internal error: ${errorMessage(e)}`);
      this.tryFulfil();
    }
  }

  private onRunSucceeded(ticket: RunTicket<Item>, trajectories: Trajectory[]): void {
    const g = ticket.group;
    g.results[ticket.member] = trajectories;
    g.unfinishedRuns--;
    for (const t of trajectories) {
      this.counters.trajectories++;
      this.counters.samples += t.samples.length;
      for (const s of t.samples) for (const src of s.seq.source) if (src === TokenSource.model) this.counters.tokens++;
    }
    if (g.unfinishedRuns > 0) return;
    g.trajectories = g.results.flat();
    this.runningGroups--;
    if (this.config.dynamicFilter && rewardsAllEqual(g.trajectories)) {
      g.status = 'filtered';
      this.counters.filteredGroups++;
      this.removeUnconsumed(g);
      this.noteDrop();
    } else {
      g.status = 'ready';
      this.accepted++;
      this.counters.acceptedGroups++;
      this.consecutiveDrops = 0;
    }
  }

  private onRunFailed(ticket: RunTicket<Item>, error: unknown): void {
    const g = ticket.group;
    this.counters.runErrors++;
    this.lastErrors.push(`group ${g.index} member ${ticket.member} attempt ${ticket.attempt}: ${errorMessage(error)}`);
    if (this.lastErrors.length > MAX_KEPT_ERRORS) this.lastErrors.shift();
    if (ticket.attempt < this.config.maxRetries) {
      this.counters.retries++;
      this.runQueue.unshift({ group: g, member: ticket.member, attempt: ticket.attempt + 1 });
      return;
    }
    // The group cannot be completed: drop it whole (a partial group would bias its baseline).
    g.status = 'failed';
    this.runningGroups--;
    this.counters.failedGroups++;
    g.abort.abort(new Error(`group ${g.index} failed`));
    this.runQueue = this.runQueue.filter((t) => t.group !== g);
    this.removeUnconsumed(g);
    this.noteDrop();
  }

  private noteDrop(): void {
    if (++this.consecutiveDrops < this.config.maxConsecutiveDrops) return;
    const c = this.counters;
    this.fatal ??= new Error(
      `RolloutController: ${this.consecutiveDrops} groups in a row were dropped (${c.filteredGroups} filtered, ${c.failedGroups} failed so far; last error: ${this.lastErrors.at(-1) ?? 'none'}); ` +
        'fix the workflow or the reward, turn dynamicFilter off, or raise maxConsecutiveDrops',
    );
  }

  private removeUnconsumed(g: GroupState<Item>): void {
    const i = this.unconsumed.indexOf(g);
    if (i >= 0) this.unconsumed.splice(i, 1);
  }

  // ── consumption ────────────────────────────────────────────────────────────────────────────

  private tryFulfil(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.fatal) {
      this.waiter = null;
      w.reject(this.fatal);
      return;
    }
    const pending = this.unconsumed.map((g) => ({ deadline: g.deadline, ready: g.status === 'ready' }));
    const picked = pickBatch(pending, w.version, this.config.batchSize);
    if (!picked) {
      // Nothing running and nothing admissible: no batch will ever come.
      if (this.runningGroups === 0 && this.runningRuns === 0) {
        this.waiter = null;
        const ready = pending.filter((p) => p.ready).length;
        w.reject(
          this.exhausted
            ? new RolloutSourceExhaustedError(ready, this.config.batchSize)
            : new Error(`RolloutController stalled at version ${w.version}: the staleness rule admits no new group (${this.accepted} accepted since version ${this.config.initialVersion}); check that initialVersion matches the trainer and that each batch has its own version`),
        );
      }
      return;
    }
    const chosen = picked.map((i) => this.unconsumed[i]!);
    const chosenSet = new Set(chosen);
    this.unconsumed = this.unconsumed.filter((g) => !chosenSet.has(g));
    this.waiter = null;
    const groups = chosen.map((g): ConsumedGroup<Item> => {
      g.status = 'consumed';
      return { item: g.item, index: g.index, admitVersion: g.admitVersion, staleness: w.version - g.admitVersion, trajectories: g.trajectories! };
    });
    this.recordWindow(w, groups);
    w.resolve(groups);
  }

  private recordWindow(w: Waiter<Item>, groups: ConsumedGroup<Item>[]): void {
    this.tick();
    const t = this.clockMs;
    this.counters.consumedGroups += groups.length;
    const staleness: Histogram = {};
    const tokenStaleness: Histogram = {};
    for (const g of groups) {
      addToHistogram(staleness, g.staleness);
      if (g.staleness > this.config.maxStaleness) this.stalenessViolations++;
      for (const traj of g.trajectories) for (const s of traj.samples) addTokenStaleness(tokenStaleness, s.seq, w.version);
    }
    mergeHistograms(this.stalenessTotal, staleness);
    const c = this.counters;
    const s0 = this.windowStartCounters;
    const ms = t - this.windowStartMs;
    const perSecond = (n: number) => (ms > 0 ? (n * 1000) / ms : 0);
    const st = histogramStats(staleness);
    this.lastWindow = {
      version: w.version,
      seconds: ms / 1000,
      waitSeconds: Math.max(0, t - w.startedAt) / 1000,
      trajectoriesPerSecond: perSecond(c.trajectories - s0.trajectories),
      samplesPerSecond: perSecond(c.samples - s0.samples),
      tokensPerSecond: perSecond(c.tokens - s0.tokens),
      busyFraction: ms > 0 ? (c.busyMs - s0.busyMs) / ms : 0,
      meanRunning: ms > 0 ? (c.runningMs - s0.runningMs) / ms : 0,
      staleness,
      meanStaleness: st.mean,
      maxStaleness: st.max,
      tokenStaleness,
      admittedGroups: c.admittedGroups - s0.admittedGroups,
      filteredGroups: c.filteredGroups - s0.filteredGroups,
      failedGroups: c.failedGroups - s0.failedGroups,
      runErrors: c.runErrors - s0.runErrors,
      retries: c.retries - s0.retries,
    };
    this.windowStartCounters = { ...c };
    this.windowStartMs = t;
  }

  // ── shutdown and time ──────────────────────────────────────────────────────────────────────

  private async shutdown(): Promise<StopResult<Item>> {
    this.stopping = true;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new Error('RolloutController stopped while nextBatch was waiting'));
    this.runQueue = [];
    const ready: LeftoverGroup<Item>[] = [];
    const aborted: LeftoverGroup<Item>[] = [];
    for (const g of this.unconsumed) {
      if (g.status === 'ready') {
        ready.push({ item: g.item, index: g.index, admitVersion: g.admitVersion, trajectories: g.trajectories! });
      } else {
        g.status = 'aborted';
        this.runningGroups--;
        this.counters.abortedGroups++;
        g.abort.abort(new Error('rollout controller stopped'));
        aborted.push({ item: g.item, index: g.index, admitVersion: g.admitVersion });
      }
    }
    this.unconsumed = [];
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    this.tick();
    return { ready, aborted };
  }

  /** Advance the busy/occupancy integrals to now (call before runningRuns changes). */
  private tick(): void {
    const t = this.now();
    const dt = Math.max(0, t - this.clockMs);
    if (this.runningRuns > 0) this.counters.busyMs += dt;
    this.counters.runningMs += this.runningRuns * dt;
    this.clockMs = Math.max(this.clockMs, t);
  }
}

const PendingGroupsSchema = z.object({
  nextIndex: z.number(),
  finished: z.array(z.object({ index: z.number(), item: z.unknown(), admitVersion: z.number(), trajectories: z.array(z.unknown()) })),
  running: z.array(z.object({ index: z.number(), item: z.unknown() })),
});

/**
 * Pending groups as one JSON text for a checkpoint. JSON alone would corrupt two things trajectories
 * hold, a −∞ behaviour logprob and a Uint8Array constraint mask; the codec the Redis transport
 * uses (src/core/tagged-json.ts) tags both, so they come back as they were.
 */
export function encodePendingGroups<Item>(p: PendingGroups<Item>): string {
  return encodeMessage(p);
}

/** The inverse of encodePendingGroups; the shape is checked here, the contents by the controller. */
export function decodePendingGroups<Item>(text: string): PendingGroups<Item> {
  let raw: unknown;
  try {
    raw = decodeMessage(text);
  } catch (e) {
    throw new Error(`pending groups: not valid JSON (${errorMessage(e)})`);
  }
  const r = PendingGroupsSchema.safeParse(raw);
  if (!r.success) throw new Error(`pending groups: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data as PendingGroups<Item>;
}

function asTrajectories(result: unknown): Trajectory[] {
  const list = Array.isArray(result) ? result : [result];
  if (list.length === 0) throw new Error('workflow returned an empty list; return a Trajectory or a non-empty Trajectory[]');
  for (const t of list) {
    if (!t || typeof t !== 'object' || typeof (t as Trajectory).reward !== 'number' || !Array.isArray((t as Trajectory).samples)) {
      throw new Error('workflow returned something that is not a Trajectory (needs numeric reward and samples[])');
    }
  }
  return list as Trajectory[];
}

/** Dynamic filtering: a group of ≥ 2 trajectories with one reward value teaches nothing under group baselines. */
function rewardsAllEqual(trajectories: readonly Trajectory[]): boolean {
  if (trajectories.length < 2) return false;
  const r0 = trajectories[0]!.reward;
  return trajectories.every((t) => t.reward === r0);
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Run `workflow` once per item through a rollout controller (η = 0, nothing trained) and return the
 * trajectories in item order: evaluation and data collection use the same machinery as training.
 * A failed run is retried `maxRetries` times, then the whole call fails with its error.
 */
export async function collectRollouts<Item>(items: readonly Item[], workflow: RolloutWorkflow<Item>, opts: { maxConcurrent?: number; maxRetries?: number } = {}): Promise<Trajectory[]> {
  if (items.length === 0) return [];
  const rc = new RolloutController<Item>({
    config: { batchSize: items.length, groupSize: 1, maxConcurrent: opts.maxConcurrent ?? items.length, maxRetries: opts.maxRetries ?? 0, maxConsecutiveDrops: 1 },
    source: items,
    workflow,
  });
  rc.start();
  try {
    const groups = await rc.nextBatchGroups(0);
    return groups.sort((a, b) => a.index - b.index).flatMap((g) => g.trajectories);
  } finally {
    await rc.stop();
  }
}
