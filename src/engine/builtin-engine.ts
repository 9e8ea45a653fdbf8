/**
 * The built-in inference engine: continuous batching over a KV cache.
 *
 * Concurrent `generate` calls join one decode loop: each loop iteration admits queued requests
 * (prefill into a free cache slot), samples one token for every active row, retires finished rows,
 * and runs one batched decode step for the rest. The loop yields to the event loop between
 * iterations so that workflows returning from tool calls can join the running batch.
 *
 * Weight updates are interruptible: `setWeights` takes effect between two tokens; every active row
 * is re-prefilled with the new weights and continues. Each token records the version that sampled it.
 *
 * Failures are per request: an aborted request (`params.signal`), a bad constraint or non-finite
 * logits reject that request alone and free its row; the rest of the batch continues.
 */
import type { Tokenizer, InferenceEngine, SamplingParams, SampledCompletion } from './types.ts';
import type { Transformer, KVCache } from './model.ts';
import { Rng } from '../core/rng.ts';
import { sampleToken, temperatureProblem, truncationProblem } from './sampling.ts';

interface Request {
  prompt: number[];
  params: SamplingParams;
  temperature: number;
  rng: Rng;
  ids: number[];
  logprobs: number[];
  versions: number[];
  masks: (Uint8Array | null)[];
  logits: Float32Array;
  resolve: (c: SampledCompletion) => void;
  reject: (e: Error) => void;
  /** Listener on params.signal, removed when the request settles. */
  onAbort: (() => void) | null;
  /** Set when the request must leave the batch at the end of the current iteration. */
  failure: Error | null;
}

/** The tokens a request had sampled when it stopped early. */
export interface PartialCompletion {
  ids: number[];
  logprobs: number[];
  versions: number[];
}

/** Rejection of `generate` when its `params.signal` aborts; `cause` is the signal's reason. */
export class GenerationAbortedError extends Error {
  constructor(readonly partial: PartialCompletion, options?: { cause?: unknown }) {
    super(`generate: aborted after ${partial.ids.length} generated token(s)`, options);
    this.name = 'AbortError';
  }
}

export interface EngineStats {
  /** Batched decode steps run. */
  decodeSteps: number;
  /** Sum over decode steps of the rows decoded (mean occupancy = rowsDecoded / decodeSteps). */
  rowsDecoded: number;
  prefills: number;
  prefillTokens: number;
  tokensSampled: number;
  /** Re-prefills caused by weight updates in the middle of a generation. */
  interruptions: number;
  weightUpdates: number;
}

export interface BuiltinEngineOptions {
  /** Max rows decoded together (KV-cache slots). */
  maxBatch?: number;
  seed?: number;
}

export class BuiltinEngine implements InferenceEngine {
  private readonly cache: KVCache;
  private readonly maxBatch: number;
  private readonly queue: Request[] = [];
  private readonly active: Request[] = [];
  private rng: Rng;
  private readonly probs: Float64Array;
  private readonly stepTokens: Int32Array;
  private currentVersion = 0;
  private pending: { params: Float32Array; version: number } | null = null;
  private scheduled = false;
  /** True while iterate() runs (user constraints may call back into the engine, e.g. abort). */
  private iterating = false;
  readonly stats: EngineStats = { decodeSteps: 0, rowsDecoded: 0, prefills: 0, prefillTokens: 0, tokensSampled: 0, interruptions: 0, weightUpdates: 0 };

  constructor(readonly model: Transformer, readonly tokenizer: Tokenizer, opts: BuiltinEngineOptions = {}) {
    const maxBatch = opts.maxBatch ?? 64;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`BuiltinEngine: maxBatch must be an integer ≥ 1 (got ${maxBatch})`);
    if (opts.seed !== undefined && !Number.isInteger(opts.seed)) throw new Error(`BuiltinEngine: seed must be an integer (got ${opts.seed})`);
    this.maxBatch = maxBatch;
    this.cache = model.newKVCache(this.maxBatch);
    this.rng = new Rng(opts.seed ?? 1234);
    this.probs = new Float64Array(model.config.vocabSize);
    this.stepTokens = new Int32Array(this.maxBatch);
    // Sampling draws ids over the model's whole vocabulary: an id ≥ tokenizer.vocabSize could be
    // sampled yet not decoded, and token masks built from the tokenizer would have the wrong length.
    if (tokenizer.vocabSize !== model.config.vocabSize) {
      throw new Error(`BuiltinEngine: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabSize is ${model.config.vocabSize}; they must be equal (the engine samples ids over the model's vocabulary, and ids the tokenizer lacks cannot be decoded): build the model with vocabSize = tokenizer.vocabSize`);
    }
  }

  get contextLength(): number {
    return this.model.config.contextLength;
  }

  version(): number {
    return this.currentVersion;
  }

  /** State of the stream that seeds requests without an explicit seed (for exact resume). */
  rngState(): number[] {
    return this.rng.state();
  }

  /** Restore a state from `rngState()`; only while idle, so no request has drawn from the old stream. */
  setRngState(state: readonly number[]): void {
    if (this.active.length > 0 || this.queue.length > 0) throw new Error('setRngState: the engine is generating; restore RNG state only while idle');
    this.rng = new Rng(state);
  }

  /** Rows currently being decoded plus queued requests. */
  load(): { active: number; queued: number } {
    return { active: this.active.length, queued: this.queue.length };
  }

  /**
   * Publish new weights (same layout as model.params). They are copied in between two decode
   * steps; active generations are re-prefilled and continue under the new version.
   */
  setWeights(params: Float32Array, version: number): void {
    if (params.length !== this.model.params.length) throw new Error(`setWeights: expected ${this.model.params.length} floats, got ${params.length}`);
    this.pending = { params, version };
    if (this.active.length === 0 && this.queue.length === 0) this.applyPendingWeights();
  }

  /**
   * Queue a request; it joins the running batch. Rejects at once on invalid arguments or an already
   * aborted `params.signal`; rejects with GenerationAbortedError if the signal aborts later.
   */
  generate(prompt: readonly number[], params: SamplingParams): Promise<SampledCompletion> {
    const V = this.model.config.vocabSize, ctx = this.model.config.contextLength;
    const temperature = params.temperature ?? 1;
    if (prompt.length === 0) return Promise.reject(new Error('generate: empty prompt'));
    if (prompt.length >= ctx) return Promise.reject(new Error(`generate: prompt has ${prompt.length} tokens; the model's contextLength is ${ctx} (leave room for at least one new token)`));
    for (const id of prompt) if (!Number.isInteger(id) || id < 0 || id >= V) return Promise.reject(new Error(`generate: prompt token id ${id} is outside the vocabulary [0, ${V})`));
    const invalid = invalidParams(params, temperature);
    if (invalid) return Promise.reject(new Error(`generate: ${invalid}`));
    const signal = params.signal;
    if (signal?.aborted) return Promise.reject(new GenerationAbortedError({ ids: [], logprobs: [], versions: [] }, { cause: signal.reason }));
    return new Promise((resolve, reject) => {
      const r: Request = {
        prompt: [...prompt], params, temperature,
        rng: params.seed !== undefined ? new Rng(params.seed) : this.rng.fork(),
        ids: [], logprobs: [], versions: [], masks: [], logits: new Float32Array(V), resolve, reject,
        onAbort: null, failure: null,
      };
      if (signal) {
        r.onAbort = () => this.abort(r);
        signal.addEventListener('abort', r.onAbort, { once: true });
      }
      this.queue.push(r);
      this.schedule();
    });
  }

  /** Stop an aborted request now: out of the queue, or out of the batch with its cache slot freed. */
  private abort(r: Request): void {
    const err = new GenerationAbortedError({ ids: r.ids, logprobs: r.logprobs, versions: r.versions }, { cause: r.params.signal?.reason });
    const q = this.queue.indexOf(r);
    if (q >= 0) {
      this.queue.splice(q, 1);
      this.fail(r, err);
      return;
    }
    const slot = this.active.indexOf(r);
    if (slot < 0) return; // already settled
    if (this.iterating) {
      r.failure ??= err; // aborted from inside a constraint callback: leaves at the end of this iteration
      return;
    }
    this.removeActive(slot);
    this.fail(r, err);
  }

  /** Take the row in `slot` out of the batch; the last row moves into it so active slots stay contiguous. */
  private removeActive(slot: number): void {
    const lastSlot = this.active.length - 1;
    if (slot !== lastSlot) {
      this.cache.moveSlot(lastSlot, slot);
      this.active[slot] = this.active[lastSlot]!;
    } else {
      this.cache.lens[slot] = 0;
    }
    this.active.pop();
  }

  private detach(r: Request): void {
    if (r.onAbort) r.params.signal?.removeEventListener('abort', r.onAbort);
    r.onAbort = null;
  }

  private fail(r: Request, err: Error): void {
    this.detach(r);
    r.reject(err);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.iterating = true;
      try {
        this.iterate();
      } catch (e) {
        // A kernel error is fatal for every request in flight: report it to each caller.
        const err = e instanceof Error ? e : new Error(String(e));
        const all = [...this.active, ...this.queue];
        this.active.length = 0;
        this.queue.length = 0;
        this.cache.lens.fill(0);
        for (const r of all) this.fail(r, err);
        return;
      } finally {
        this.iterating = false;
      }
      if (this.active.length > 0 || this.queue.length > 0) this.schedule();
    });
  }

  private applyPendingWeights(): void {
    if (!this.pending) return;
    this.model.params.set(this.pending.params);
    this.currentVersion = this.pending.version;
    this.pending = null;
    this.stats.weightUpdates++;
  }

  private iterate(): void {
    if (this.pending) {
      this.applyPendingWeights();
      // Interruptible generation: recompute every active row's cache with the new weights.
      for (let slot = 0; slot < this.active.length; slot++) {
        const r = this.active[slot]!;
        const ctx = r.prompt.concat(r.ids); // cache after the last decode held exactly this
        r.logits.set(this.model.prefill(this.cache, slot, ctx));
        this.stats.prefills++;
        this.stats.prefillTokens += ctx.length;
        this.stats.interruptions++;
      }
    }
    while (this.queue.length > 0 && this.active.length < this.maxBatch) {
      const r = this.queue.shift()!;
      const slot = this.active.length;
      r.logits.set(this.model.prefill(this.cache, slot, r.prompt));
      this.stats.prefills++;
      this.stats.prefillTokens += r.prompt.length;
      this.active.push(r);
    }
    // Sample one token per active row from its current logits. A row whose constraint or logits are
    // bad fails alone.
    const V = this.model.config.vocabSize, ctxLen = this.model.config.contextLength;
    for (let slot = 0; slot < this.active.length; slot++) {
      const r = this.active[slot]!;
      try {
        const mask = constraintMask(r, V);
        const tok = sampleToken(r.logits, V, { temperature: r.temperature, topK: r.params.topK ?? 0, topP: r.params.topP ?? 1, mask }, r.rng, this.probs);
        r.ids.push(tok.id);
        r.logprobs.push(tok.logprob);
        r.versions.push(this.currentVersion);
        r.masks.push(tok.mask); // the set the logprob is normalised over (constraint ∩ top-k/top-p)
        this.stats.tokensSampled++;
        if (r.params.onToken) emitToken(r, tok.id, tok.logprob, this.currentVersion); // a throw fails this row only (caught below)
      } catch (e) {
        r.failure ??= e instanceof Error ? e : new Error(String(e));
      }
    }
    // Retire finished and failed rows, keeping active slots contiguous.
    for (let slot = this.active.length - 1; slot >= 0; slot--) {
      const r = this.active[slot]!;
      if (r.failure) {
        this.removeActive(slot);
        this.fail(r, r.failure);
        continue;
      }
      const reason = this.finishReason(r, ctxLen);
      if (!reason) continue;
      this.removeActive(slot);
      this.detach(r);
      r.resolve({
        ids: r.ids, logprobs: r.logprobs, versions: r.versions, text: this.tokenizer.decode(r.ids),
        finishReason: reason, masks: r.masks.some((m) => m !== null) ? r.masks : undefined, temperature: r.temperature,
      });
    }
    const n = this.active.length;
    if (n === 0) return;
    for (let b = 0; b < n; b++) {
      const r = this.active[b]!;
      this.stepTokens[b] = r.ids[r.ids.length - 1]!;
    }
    const logits = this.model.decode(this.cache, this.stepTokens, n);
    for (let b = 0; b < n; b++) this.active[b]!.logits.set(logits.subarray(b * V, (b + 1) * V));
    this.stats.decodeSteps++;
    this.stats.rowsDecoded += n;
  }

  private finishReason(r: Request, ctxLen: number): SampledCompletion['finishReason'] | null {
    const last = r.ids[r.ids.length - 1]!;
    if (last === this.tokenizer.eosId) return 'eos';
    if (r.params.stopIds?.includes(last)) return 'stop';
    if (r.params.stop && r.params.stop.length > 0) {
      const tail = this.tokenizer.decode(r.ids.slice(-16));
      if (r.params.stop.some((s) => tail.endsWith(s))) return 'stop';
    }
    if (r.ids.length >= r.params.maxTokens) return 'length';
    if (r.prompt.length + r.ids.length >= ctxLen) return 'length';
    return null;
  }
}

/** Why `params` is invalid (for the error message), or null. */
function invalidParams(p: SamplingParams, temperature: number): string | null {
  const badTemperature = temperatureProblem(temperature);
  if (badTemperature) return badTemperature;
  if (!Number.isFinite(1 / temperature)) return `temperature ${temperature} is too small (1/temperature overflows); use a value such as 1e-3 for near-greedy decoding`;
  if (!(Number.isInteger(p.maxTokens) && p.maxTokens >= 1)) return `maxTokens must be an integer ≥ 1 (got ${p.maxTokens})`;
  const badTruncation = truncationProblem(p.topK, p.topP);
  if (badTruncation) return badTruncation;
  if (p.seed !== undefined && !Number.isInteger(p.seed)) return `seed must be an integer (got ${p.seed})`;
  return null;
}

/** Call the request's onToken hook for the token just pushed; a throw becomes an error naming the hook. */
function emitToken(r: Request, id: number, logprob: number, version: number): void {
  const index = r.ids.length - 1;
  try {
    r.params.onToken!({ id, logprob, version, index });
  } catch (e) {
    throw new Error(`generate: the onToken hook threw at generated token ${index}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** The request's constraint mask for its next token, checked; throws a message naming the problem. */
function constraintMask(r: Request, V: number): Uint8Array | null {
  const constraint = r.params.constraint;
  if (!constraint) return null;
  let mask: Uint8Array | null | undefined;
  try {
    mask = constraint(r.ids);
  } catch (e) {
    throw new Error(`generate: the token constraint threw at generated token ${r.ids.length}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (mask == null) return null;
  if (!(mask instanceof Uint8Array) || mask.length !== V) {
    const got = mask instanceof Uint8Array ? `a mask of length ${mask.length}` : `a ${Object.prototype.toString.call(mask).slice(8, -1)}`;
    throw new Error(`generate: the token constraint returned ${got} at generated token ${r.ids.length}; expected a Uint8Array of length vocabSize ${V}`);
  }
  return mask;
}
