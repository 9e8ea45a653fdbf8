/**
 * Main-thread handle on a trainer running in a worker thread. `train(samples)` resolves when the
 * step is done; meanwhile the main thread's event loop keeps generating rollouts. New weights are
 * read from shared memory (no serialisation) and handed back as a private copy.
 *
 * Requests are sent one at a time (a second `train` call waits for the first): the worker publishes
 * into two alternating shared slots, and one request in flight guarantees a slot is copied out
 * before the worker can overwrite it.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Sample } from '../core/types.ts';
import type { LossConfigInput } from '../rl/losses.ts';
import { paramLayout, parseModelConfig } from '../engine/model.ts';
import type { TrainerReply, TrainerRequest, TrainerWorkerInit } from './trainer-worker.ts';
import type { PolicyTrainer, TrainedStep, TrainerState } from './policy-trainer.ts';

export type { TrainedStep } from './policy-trainer.ts';
export type WorkerTrainerOptions = Omit<TrainerWorkerInit, 'weights'>;

/** file: URL of tsx's ESM API, resolved from this package (not from the working directory). */
function tsxEsmApiUrl(): string {
  const pkgJson = createRequire(import.meta.url).resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgJson, 'utf8')) as { exports?: Record<string, { import?: { default?: string } }> };
  const rel = pkg.exports?.['./esm/api']?.import?.default;
  if (!rel) throw new Error(`WorkerTrainer: the installed tsx (${pkgJson}) has no 'tsx/esm/api' export; install tsx ≥ 4.8`);
  return pathToFileURL(join(dirname(pkgJson), rel)).href;
}

// The worker entry is TypeScript: boot it through tsx's tsImport. An error while loading is rethrown
// outside the promise so that it reaches the Worker's 'error' event.
const BOOT = `
const { workerData } = require('node:worker_threads');
import(workerData.boot.tsxApi)
  .then((api) => api.tsImport(workerData.boot.entry, workerData.boot.entry))
  .catch((e) => setImmediate(() => { throw e; }));
`;

type Pending =
  | { kind: 'train'; id: number; minibatches: Sample[][]; loss: LossConfigInput; resolve: (s: TrainedStep) => void; reject: (e: Error) => void }
  | { kind: 'state'; id: number; resolve: (s: TrainerState) => void; reject: (e: Error) => void };

export class WorkerTrainer implements PolicyTrainer {
  private readonly worker: Worker;
  private readonly weights: SharedArrayBuffer;
  readonly numParams: number;
  private nextId = 0;
  private current: Pending | null = null;
  private readonly queue: Pending[] = [];
  private readonly readyPromise: Promise<void>;
  private dead: Error | null = null;
  private trainerVersion = 0;
  backendName = '';

  constructor(init: WorkerTrainerOptions) {
    const cfg = parseModelConfig(init.model);
    const last = paramLayout(cfg).at(-1)!;
    this.numParams = last.offset + last.size;
    this.weights = new SharedArrayBuffer(2 * this.numParams * 4);
    this.trainerVersion = init.initialState?.step ?? 0;
    const entry = new URL('./trainer-worker.ts', import.meta.url).href;
    const env = init.threads !== undefined ? { ...process.env, AGENTRL_THREADS: String(init.threads) } : process.env;
    this.worker = new Worker(BOOT, {
      eval: true,
      env,
      workerData: { ...init, weights: this.weights, boot: { tsxApi: tsxEsmApiUrl(), entry } },
    });
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.readyPromise = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    this.readyPromise.catch(() => {}); // surfaced through ready()/train(), never as an unhandled rejection
    this.worker.on('message', (m: TrainerReply) => this.onReply(m, markReady));
    const die = (e: Error) => {
      this.dead ??= e;
      failReady(this.dead);
      const all = [...(this.current ? [this.current] : []), ...this.queue];
      this.current = null;
      this.queue.length = 0;
      for (const p of all) p.reject(this.dead);
    };
    this.worker.on('error', (e) => die(new Error(`trainer worker crashed: ${e.message}`)));
    this.worker.on('exit', (code) => die(new Error(`trainer worker exited (code ${code})`)));
  }

  /** Resolves once the worker built its model and published the initial weights. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  version(): number {
    return this.trainerVersion;
  }

  /** The initial weights (version 0), identical to the worker's model at start. Await ready() first. */
  initialWeights(): Float32Array {
    return Float32Array.from(new Float32Array(this.weights, 0, this.numParams));
  }

  train(minibatches: Sample[][], loss: LossConfigInput): Promise<TrainedStep> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<TrainedStep>((resolve, reject) => {
      this.queue.push({ kind: 'train', id: this.nextId++, minibatches, loss, resolve, reject });
      this.sendNext();
    });
  }

  /** The worker's weights, AdamW moments and step (for checkpoints), after every queued step. */
  exportState(): Promise<TrainerState> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<TrainerState>((resolve, reject) => {
      this.queue.push({ kind: 'state', id: this.nextId++, resolve, reject });
      this.sendNext();
    });
  }

  async close(): Promise<void> {
    this.dead ??= new Error('WorkerTrainer is closed');
    await this.worker.terminate();
  }

  private sendNext(): void {
    if (this.current || this.queue.length === 0 || this.dead) return;
    this.current = this.queue.shift()!;
    const p = this.current;
    this.worker.postMessage((p.kind === 'train' ? { kind: 'train', id: p.id, minibatches: p.minibatches, loss: p.loss } : { kind: 'state', id: p.id }) satisfies TrainerRequest);
  }

  private onReply(m: TrainerReply, markReady: () => void): void {
    if (m.kind === 'ready') {
      if (m.numParams !== this.numParams) {
        this.dead = new Error(`trainer worker has ${m.numParams} parameters, the main thread computed ${this.numParams}`);
        void this.worker.terminate();
        return;
      }
      this.backendName = m.backend;
      markReady();
      return;
    }
    const p = this.current;
    if (!p || p.id !== m.id) {
      this.dead = new Error(`trainer worker answered request ${m.id}, but ${p ? `request ${p.id}` : 'no request'} is in flight`);
      void this.worker.terminate();
      return;
    }
    this.current = null;
    if (m.kind === 'trained' && p.kind === 'train') {
      // Copy out of the shared slot before the next request lets the worker write again.
      const weights = Float32Array.from(new Float32Array(this.weights, m.slot * this.numParams * 4, this.numParams));
      this.trainerVersion = m.version;
      p.resolve({ version: m.version, weights, metrics: m.metrics, busySeconds: m.busySeconds });
    } else if (m.kind === 'state' && p.kind === 'state') {
      p.resolve(m.state);
    } else if (m.kind !== 'error') {
      p.reject(new Error(`trainer worker answered a '${p.kind}' request with '${m.kind}'`));
    } else {
      p.reject(new Error(`trainer worker: ${m.message}`));
    }
    this.sendNext();
  }
}
