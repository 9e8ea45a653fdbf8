/**
 * The RL control plane of `agentrl serve inference`, independent of HTTP: every generation request
 * the server accepts is a `Job` that this class runs on the built-in engine, pauses, freezes,
 * aborts and carries across weight updates, the way vLLM's and SGLang's RL endpoints do.
 *
 *   pause abort   every in-flight job (running or frozen) stops at once and answers with finish
 *                 'abort' and the tokens (ids, logprobs, versions) generated so far; jobs that arrived
 *                 during a pause and never started keep waiting for resume
 *   pause wait    in-flight jobs finish; `pause` resolves when they have; new jobs wait for resume
 *   pause keep    in-flight jobs are frozen with their tokens so far; new jobs wait; on resume the
 *                 frozen ones continue (SGLang's `retract` and `in_place` are served the same way)
 *   sleep         in-flight and waiting jobs are aborted (the KV cache is gone); new jobs are refused
 *                 with `ServerSleepingError` until every released tag is woken up
 *   weights       `updateWeights` swaps the weights between two decode steps (BuiltinEngine
 *                 re-prefills running rows), or first aborts every job with `abortAll`
 *
 * The engine cannot suspend a row, so a frozen job is aborted in the engine and, on resume, re-sent
 * as prompt + tokens so far with the remaining budget (AReaL's rule for interrupted requests): its
 * earlier tokens keep their versions and logprobs, the rest are sampled under the weights of the
 * moment. A seeded job continues from a seed derived from (seed, tokens so far), so a frozen and
 * resumed job is deterministic, though not the same tokens as an uninterrupted one. A stop string
 * that straddles the freeze point is not detected (the engine checks the continuation's tail).
 */
import { GenerationAbortedError } from '../engine/builtin-engine.ts';
import type { SampledCompletion, SamplingParams, Tokenizer } from '../engine/types.ts';

/** The engine operations the control plane needs (BuiltinEngine has them). */
export interface ControllableEngine {
  readonly tokenizer: Tokenizer;
  version(): number;
  generate(prompt: readonly number[], params: SamplingParams): Promise<SampledCompletion>;
  setWeights(params: Float32Array, version: number): void;
}

export type PauseMode = 'abort' | 'wait' | 'keep';
export type MemoryTag = 'weights' | 'kv_cache';
export const MEMORY_TAGS: readonly MemoryTag[] = ['weights', 'kv_cache'];

/** Sampling settings of one job (no signal or constraint: those do not cross the wire). */
export type JobParams = Omit<SamplingParams, 'signal' | 'constraint'>;

export interface JobResult {
  ids: number[];
  logprobs: number[];
  /** Weight version that sampled each token. */
  versions: number[];
  /** 'eos' / 'stop' / 'length' as the engine reports them, or 'abort'. */
  finish: SampledCompletion['finishReason'] | 'abort';
  /** Why an aborted job stopped. */
  abortMessage?: string;
}

/** Generation refused because the server sleeps (HTTP 503). */
export class ServerSleepingError extends Error {
  constructor(tags: readonly MemoryTag[]) {
    super(`the server is sleeping (released: ${tags.join(', ')}); wake it up first (vLLM: POST /wake_up, SGLang: POST /resume_memory_occupation)`);
    this.name = 'ServerSleepingError';
  }
}

type StopReason = { kind: 'abort'; message: string } | { kind: 'freeze' };

interface Job {
  id: string;
  prompt: number[];
  params: JobParams;
  ids: number[];
  logprobs: number[];
  versions: number[];
  state: 'held' | 'running' | 'done';
  /** Sent to the engine at least once (a held job that never started only waits for resume). */
  started: boolean;
  /** Aborts the engine request while running. */
  controller: AbortController | null;
  stop: StopReason | null;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
}

/** A continuation seed that depends on the original seed and how many tokens came before. */
export function continuationSeed(seed: number, done: number): number {
  return (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(done + 1, 0x85ebca6b)) | 0;
}

export class InferenceControl {
  private readonly jobs = new Set<Job>();
  /** Jobs waiting for resume, oldest first (frozen jobs keep their place ahead of newer ones). */
  private held: Job[] = [];
  private pauseMode: PauseMode | null = null;
  private readonly released = new Set<MemoryTag>();
  private publishedVersion: number;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly engine: ControllableEngine) {
    this.publishedVersion = engine.version();
  }

  /** Version of the weights the next token is sampled with (the last one published). */
  version(): number {
    return this.publishedVersion;
  }

  isPaused(): boolean {
    return this.pauseMode !== null;
  }

  sleepingTags(): MemoryTag[] {
    return MEMORY_TAGS.filter((t) => this.released.has(t));
  }

  isSleeping(): boolean {
    return this.released.size > 0;
  }

  /** Jobs accepted and not yet answered (running, frozen or waiting for resume). */
  inFlight(): number {
    return this.jobs.size;
  }

  private running(): Job[] {
    return [...this.jobs].filter((j) => j.state === 'running');
  }

  /**
   * Run one generation. Resolves with the tokens (also when aborted: finish 'abort'); rejects on
   * invalid arguments (the engine's message) and with ServerSleepingError while sleeping. `signal`
   * (the client went away) aborts the job.
   */
  submit(id: string, prompt: readonly number[], params: JobParams, signal?: AbortSignal): Promise<JobResult> {
    if (this.isSleeping()) return Promise.reject(new ServerSleepingError(this.sleepingTags()));
    return new Promise<JobResult>((resolve, reject) => {
      const job: Job = { id, prompt: [...prompt], params, ids: [], logprobs: [], versions: [], state: 'held', started: false, controller: null, stop: null, resolve, reject };
      this.jobs.add(job);
      if (signal) {
        if (signal.aborted) return this.abortJob(job, 'the client disconnected');
        signal.addEventListener('abort', () => this.abortJob(job, 'the client disconnected'), { once: true });
      }
      if (this.pauseMode !== null) this.held.push(job);
      else this.start(job);
    });
  }

  /** Send a job (or the rest of a frozen one) to the engine. */
  private start(job: Job): void {
    const done = job.ids.length;
    const params: SamplingParams = { ...job.params, maxTokens: job.params.maxTokens - done };
    if (done > 0 && job.params.seed !== undefined) params.seed = continuationSeed(job.params.seed, done);
    const controller = new AbortController();
    params.signal = controller.signal;
    job.state = 'running';
    job.started = true;
    job.controller = controller;
    job.stop = null;
    this.engine.generate(done > 0 ? job.prompt.concat(job.ids) : job.prompt, params).then(
      (c) => {
        this.append(job, c.ids, c.logprobs, c.versions);
        this.finish(job, { ids: job.ids, logprobs: job.logprobs, versions: job.versions, finish: c.finishReason });
      },
      (e: unknown) => {
        job.controller = null;
        if (e instanceof GenerationAbortedError) {
          this.append(job, e.partial.ids, e.partial.logprobs, e.partial.versions);
          const stop: StopReason = job.stop ?? { kind: 'abort', message: 'aborted' };
          if (stop.kind === 'freeze' && job.state === 'running') {
            // Resumed before the engine let go of it: continue at once.
            if (this.pauseMode === null && !this.isSleeping()) return this.start(job);
            job.state = 'held';
            this.held.push(job);
            this.held.sort((a, b) => order(this.jobs, a) - order(this.jobs, b));
            this.notifyDrain();
            return;
          }
          this.finish(job, { ids: job.ids, logprobs: job.logprobs, versions: job.versions, finish: 'abort', abortMessage: stop.kind === 'abort' ? stop.message : 'aborted' });
          return;
        }
        this.jobs.delete(job);
        job.state = 'done';
        this.notifyDrain();
        job.reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  private append(job: Job, ids: number[], logprobs: number[], versions: number[]): void {
    job.ids.push(...ids);
    job.logprobs.push(...logprobs);
    job.versions.push(...versions);
  }

  private finish(job: Job, r: JobResult): void {
    if (job.state === 'done') return;
    job.state = 'done';
    job.controller = null;
    this.jobs.delete(job);
    this.held = this.held.filter((j) => j !== job);
    this.notifyDrain();
    job.resolve(r);
  }

  /** Stop a job: a running one leaves the engine (its partial comes back through start's handler). */
  private abortJob(job: Job, message: string): void {
    if (job.state === 'done') return;
    if (job.state === 'running' && job.controller) {
      job.stop = { kind: 'abort', message };
      job.controller.abort(new Error(message));
      return;
    }
    this.finish(job, { ids: job.ids, logprobs: job.logprobs, versions: job.versions, finish: 'abort', abortMessage: message });
  }

  /**
   * Abort jobs by id (all jobs when `ids` is undefined); returns how many were aborted. Aborted jobs
   * answer at once with their tokens so far.
   */
  abort(ids: readonly string[] | undefined, message = 'aborted by request'): number {
    const wanted = ids ? new Set(ids) : null;
    const hit = [...this.jobs].filter((j) => !wanted || wanted.has(j.id));
    for (const j of hit) this.abortJob(j, message);
    return hit.length;
  }

  /**
   * Pause generation (see the file comment). Resolves when the pause is in effect: at once for
   * 'abort' and 'keep', after the in-flight jobs finished for 'wait'. Pausing while paused changes
   * the mode and applies its effect to what runs (nothing, after a keep).
   */
  async pause(mode: PauseMode): Promise<void> {
    this.pauseMode = mode;
    if (mode === 'abort') {
      // In-flight jobs (running or frozen); those that arrived during an earlier pause keep waiting, as in vLLM.
      for (const j of [...this.jobs]) if (j.started) this.abortJob(j, 'generation paused (mode abort)');
    } else if (mode === 'keep') {
      for (const j of this.running()) {
        j.stop = { kind: 'freeze' };
        j.controller?.abort(new Error('generation paused (mode keep)'));
      }
    } else {
      await this.drained();
    }
  }

  /** Resume after a pause: frozen jobs continue first, then the ones that arrived while paused. */
  resume(): void {
    if (this.pauseMode === null) return;
    this.pauseMode = null;
    if (this.isSleeping()) return;
    const held = this.held;
    this.held = [];
    for (const j of held) if (j.state === 'held') this.start(j);
  }

  /** Resolves when no job is running in the engine. */
  private drained(): Promise<void> {
    if (this.running().length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private notifyDrain(): void {
    if (this.drainWaiters.length === 0 || this.running().length > 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** Release memory (vLLM /sleep, SGLang /release_memory_occupation): aborts every job first. */
  sleep(tags: readonly MemoryTag[] = MEMORY_TAGS): void {
    for (const j of [...this.jobs]) this.abortJob(j, 'the server went to sleep');
    for (const t of tags) this.released.add(t);
  }

  /** Take memory back (vLLM /wake_up, SGLang /resume_memory_occupation); generation resumes when nothing is released. */
  wakeUp(tags: readonly MemoryTag[] = MEMORY_TAGS): void {
    for (const t of tags) this.released.delete(t);
    if (!this.isSleeping() && this.pauseMode === null) {
      const held = this.held;
      this.held = [];
      for (const j of held) if (j.state === 'held') this.start(j);
    }
  }

  /**
   * Publish new weights. With `abortAll` every job is aborted first (they answer with their partial
   * tokens); otherwise running jobs continue under the new weights from their next token. Returns
   * how many jobs continue across the update.
   */
  updateWeights(params: Float32Array, version: number, opts: { abortAll?: boolean } = {}): { continuing: number } {
    if (opts.abortAll) for (const j of [...this.jobs]) this.abortJob(j, 'aborted for a weight update');
    this.engine.setWeights(params, version);
    this.publishedVersion = version;
    // Aborted jobs leave `jobs` when the engine's rejection arrives (a microtask later).
    return { continuing: [...this.jobs].filter((j) => j.stop?.kind !== 'abort').length };
  }
}

/** Insertion order of a job among the live ones (a Set iterates in insertion order). */
function order(jobs: Set<Job>, job: Job): number {
  let i = 0;
  for (const j of jobs) {
    if (j === job) return i;
    i++;
  }
  return i;
}
