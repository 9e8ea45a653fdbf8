/**
 * An InferenceEngine (and TrainableEngine) over several remote inference servers — vLLM or SGLang,
 * or `agentrl serve inference` speaking their shapes — token-in/token-out:
 *
 *   generate(prompt ids) → pick a server → POST ids → ids + behaviour logprobs + versions
 *                          text = tokenizer.decode(ids)   (decoded here, never re-tokenized)
 *
 * Routing: least-loaded (requests in flight), with one trajectory pinned to one server so its calls
 * reuse that server's prefix cache: the pin key is `SamplingParams.affinity` when the workflow gives
 * one, else a hash of the prompt's first `pinPrefixTokens` ids. A pinned server is used while its
 * load is within `balanceSlack` of the least-loaded server's (sglang-router's cache-aware rule).
 *
 * Failures: a connection error, a timeout or a 5xx is retried (backoff·2^k, at most `retries`
 * times) on the best server then; a 4xx is not retried. A server that cannot be reached (or fails
 * three times in a row) is marked down for a while (doubling, up to 30 s): its other in-flight
 * requests move to other servers at once, and it is tried again when the while is over.
 *
 * Weight updates (AReaL's interruptible rule): `setWeights(params, v)` closes the gate (new requests
 * wait), pauses every server with abort — each in-flight request returns at once with the tokens it
 * had sampled — writes the weights with `writeWeightsDir` (Hugging Face safetensors + config.json),
 * asks every server to load them, resumes the servers and opens the gate. Each interrupted request
 * is then re-sent with prompt + its tokens so far and the remaining budget: the first part keeps the
 * old version, the rest is sampled (and labelled) with the new one. Versions come from the server
 * when it reports them (per token, or per request as SGLang's `weight_version`), else from the
 * version the server was last given. `setWeights` returns at once (the Trainer calls it
 * synchronously); `weightsSynced()` waits for the update and reports its failure, after which every
 * generate call fails too (the servers' version is then unknown) until an update succeeds. A server
 * that was down during an update loads the current weights before its next request.
 *
 * Limits, said plainly: a `constraint` (a JS function) cannot be sent to a server and is rejected;
 * with top-k / top-p no token masks come back (`SampledCompletion.masks` is absent), so a trainer
 * recomputes logprobs over the whole vocabulary — the usual vLLM/SGLang situation that decoupled
 * PPO / truncated importance weights absorb; a request `seed` restarts its stream when the request
 * is resumed after an interruption.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { InferenceEngine, SampledCompletion, SamplingParams, Tokenizer } from '../types.ts';
import { temperatureProblem, truncationProblem } from '../sampling.ts';
import type { Transformer } from '../model.ts';
import { GenerationAbortedError, type PartialCompletion } from '../builtin-engine.ts';
import type { TrainableEngine } from '../../train/trainer.ts';
import { isRetryable, RemoteProtocolError, RemoteUnavailableError } from './http.ts';
import type { InferenceServerClient, ServerGenerateResult } from './server-client.ts';
import { writeWeightsDir } from './weights-dir.ts';

export interface WeightSyncOptions {
  /** Directory the weights are written under (one `v<version>` subdirectory per update; the servers read it). */
  dir: string;
  /** A Transformer with the trainer's config: `setWeights` copies the params into it and writes it. */
  model: Transformer;
  /** Written with the weights when given (a directory a server could start from). */
  tokenizer?: Tokenizer;
}

export interface RemoteEngineOptions {
  servers: InferenceServerClient[];
  /** The served model's tokenizer (load it from the directory the servers serve). */
  tokenizer: Tokenizer;
  /** Max prompt + completion tokens (the servers' max model length), if known. */
  contextLength?: number;
  /** Per HTTP attempt of a generate call; default 300 000 ms. */
  timeoutMs?: number;
  /** Per control call (pause, load weights, resume, abort); default 120 000 ms. */
  controlTimeoutMs?: number;
  /** Retries of a failed attempt (connection error, timeout, 5xx, interrupted by a server); default 3. */
  retries?: number;
  /** First retry's wait; doubles each retry. Default 200 ms. */
  backoffMs?: number;
  /** How long a server stays marked down the first time; doubles while it keeps failing. Default 2000 ms. */
  downMs?: number;
  /** Version of the weights the servers serve at start. Default 0. */
  initialVersion?: number;
  /** Needed by `setWeights`. */
  weightSync?: WeightSyncOptions;
  /** Prompt ids hashed into the pin key when a request has no `affinity`. Default 64. */
  pinPrefixTokens?: number;
  /** A pinned server is used while its in-flight count ≤ the least-loaded server's + this. Default 2. */
  balanceSlack?: number;
  /** After the caller aborts, how long to wait for the server's answer with the partial tokens. Default 2000 ms. */
  abortGraceMs?: number;
}

/** Counters for logs and tests. `decodeSteps` / `rowsDecoded` stay 0: the servers decode, not this process. */
export interface RemoteEngineStats {
  decodeSteps: number;
  rowsDecoded: number;
  /** Requests re-sent with their partial tokens after a weight update aborted them. */
  interruptions: number;
  /** HTTP generate attempts sent, and those that failed and were retried. */
  attempts: number;
  retries: number;
  /** Requests moved off a server that was marked down. */
  moved: number;
  weightUpdates: number;
}

export interface ServerStatus {
  url: string;
  inFlight: number;
  /** Generate attempts sent to it. */
  requests: number;
  down: boolean;
  /** −1: unknown (it missed a weight update; it loads the current weights before its next request). */
  loadedVersion: number;
  lastError: string | null;
}

interface Attempt {
  ctl: AbortController;
}

interface ServerState {
  client: InferenceServerClient;
  inFlight: number;
  requests: number;
  /** Epoch ms until which it is skipped (0 = up). */
  downUntil: number;
  /** How long the next down period lasts. */
  downFor: number;
  consecutiveFailures: number;
  lastError: string | null;
  /** The weight version it serves (as far as this client knows; −1 = unknown, it missed an update). */
  loadedVersion: number;
  /** A weight load on its way to this server (after it came back up). */
  loading: Promise<void> | null;
  attempts: Set<Attempt>;
}

/** Why an attempt's fetch was cut (the attempt controller's abort reason). */
class ServerMarkedDown extends Error {}
class CallerAborted extends Error {}

const MAX_DOWN_MS = 30_000;
const MAX_PINS = 10_000;
/** Consecutive 5xx answers that mark a server down. */
const FAILURES_TO_DOWN = 3;

export class RemoteEngine implements InferenceEngine, TrainableEngine {
  readonly tokenizer: Tokenizer;
  readonly contextLength?: number;
  readonly stats: RemoteEngineStats = { decodeSteps: 0, rowsDecoded: 0, interruptions: 0, attempts: 0, retries: 0, moved: 0, weightUpdates: 0 };
  private readonly servers: ServerState[];
  private readonly o: Required<Omit<RemoteEngineOptions, 'weightSync' | 'contextLength' | 'servers' | 'tokenizer'>> & Pick<RemoteEngineOptions, 'weightSync'>;
  private readonly pins = new Map<string, ServerState>();
  /** Version of the newest weights given to setWeights (what new tokens will be sampled with). */
  private target: number;
  /** Version every server that is up has loaded. */
  private served: number;
  private servedDir: string | null = null;
  /** Incremented when a weight sync starts: an 'abort' answer to an older attempt is an interruption. */
  private syncEpoch = 0;
  private gate: { promise: Promise<void>; open: () => void } | null = null;
  private pendingSync: { params: Float32Array; version: number } | null = null;
  private syncing: Promise<void> | null = null;
  private syncError: Error | null = null;
  private waiting = 0;
  private nextId = 0;
  private readonly idPrefix = `agentrl-${process.pid}-${Date.now().toString(36)}`;
  private closed = false;

  constructor(opts: RemoteEngineOptions) {
    if (opts.servers.length === 0) throw new Error('RemoteEngine: give at least one inference server');
    const num = (name: string, v: number | undefined, def: number, min: number, int = false): number => {
      const x = v ?? def;
      if (!Number.isFinite(x) || x < min || (int && !Number.isInteger(x))) throw new Error(`RemoteEngine: ${name} must be ${int ? 'an integer' : 'a number'} ≥ ${min} (got ${x})`);
      return x;
    };
    this.tokenizer = opts.tokenizer;
    this.contextLength = opts.contextLength;
    this.o = {
      timeoutMs: num('timeoutMs', opts.timeoutMs, 300_000, 1),
      controlTimeoutMs: num('controlTimeoutMs', opts.controlTimeoutMs, 120_000, 1),
      retries: num('retries', opts.retries, 3, 0, true),
      backoffMs: num('backoffMs', opts.backoffMs, 200, 0),
      downMs: num('downMs', opts.downMs, 2000, 0),
      initialVersion: num('initialVersion', opts.initialVersion, 0, 0, true),
      pinPrefixTokens: num('pinPrefixTokens', opts.pinPrefixTokens, 64, 1, true),
      balanceSlack: num('balanceSlack', opts.balanceSlack, 2, 0, true),
      abortGraceMs: num('abortGraceMs', opts.abortGraceMs, 2000, 0),
      weightSync: opts.weightSync,
    };
    this.target = this.served = this.o.initialVersion;
    this.servers = opts.servers.map((client) => ({
      client, inFlight: 0, requests: 0, downUntil: 0, downFor: this.o.downMs, consecutiveFailures: 0, lastError: null,
      loadedVersion: this.o.initialVersion, loading: null, attempts: new Set(),
    }));
  }

  /** The version new tokens are sampled with: the newest given to setWeights (requests wait for it to load). */
  version(): number {
    return this.target;
  }

  /** Requests waiting for the servers (a weight update, a down server) and in flight on them. */
  load(): { active: number; queued: number } {
    return { active: this.servers.reduce((a, s) => a + s.inFlight, 0), queued: this.waiting };
  }

  serverStatus(): ServerStatus[] {
    const now = Date.now();
    return this.servers.map((s) => ({ url: s.client.url, inFlight: s.inFlight, requests: s.requests, down: s.downUntil > now, loadedVersion: s.loadedVersion, lastError: s.lastError }));
  }

  /**
   * Publish new weights: returns at once; the update runs in the background (see the file comment)
   * and generate calls wait for it. `weightsSynced()` waits for it and reports a failure.
   */
  setWeights(params: Float32Array, version: number): void {
    const ws = this.o.weightSync;
    if (!ws) throw new Error('RemoteEngine.setWeights: no weight sync configured; give weightSync {dir, model} (engine.weightSyncDir in the run config) so the weights can be written for the servers to load');
    if (params.length !== ws.model.params.length) throw new Error(`RemoteEngine.setWeights: expected ${ws.model.params.length} floats (the weightSync model's), got ${params.length}`);
    if (!Number.isInteger(version)) throw new Error(`RemoteEngine.setWeights: version must be an integer (got ${version})`);
    this.pendingSync = { params: Float32Array.from(params), version };
    this.target = version;
    this.closeGate();
    this.syncing ??= this.runSyncs();
  }

  /** setWeights, then wait until every server that is up serves `version`. */
  async syncWeights(params: Float32Array, version: number): Promise<void> {
    this.setWeights(params, version);
    await this.weightsSynced();
  }

  /** Resolves when no weight update is running; rejects with the error of a failed one. */
  async weightsSynced(): Promise<void> {
    while (this.syncing) await this.syncing;
    if (this.syncError) throw this.syncError;
  }

  /** Stop: in-flight requests are cut (their generate calls reject), no new ones start. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.servers) for (const a of s.attempts) a.ctl.abort(new Error('RemoteEngine closed'));
    await this.syncing?.catch(() => undefined);
  }

  async generate(prompt: readonly number[], params: SamplingParams): Promise<SampledCompletion> {
    const invalid = this.invalid(prompt, params);
    if (invalid) throw new Error(`generate: ${invalid}`);
    const temperature = params.temperature ?? 1;
    const signal = params.signal;
    const partial: PartialCompletion = { ids: [], logprobs: [], versions: [] };
    const aborted = (cause?: unknown) => new GenerationAbortedError({ ids: [...partial.ids], logprobs: [...partial.logprobs], versions: [...partial.versions] }, { cause: signal?.reason ?? cause });
    if (signal?.aborted) throw aborted();
    const key = params.affinity !== undefined ? `a:${params.affinity}` : `p:${hashIds(prompt, this.o.pinPrefixTokens)}`;
    const rid = `${this.idPrefix}-${this.nextId++}`;
    const stopIds = [...new Set([this.tokenizer.eosId, ...(params.stopIds ?? [])])].filter((id) => id >= 0);
    let failures = 0;
    for (let part = 0; ; part++) {
      if (this.closed) throw new Error('generate: the RemoteEngine is closed');
      try {
        await this.whenOpen(signal);
      } catch (e) {
        if (signal?.aborted) throw aborted(e);
        throw e;
      }
      if (this.syncError) throw new Error(`generate: the servers may not serve version ${this.target}: ${this.syncError.message}`, { cause: this.syncError });
      const room = this.contextLength === undefined ? Infinity : this.contextLength - prompt.length - partial.ids.length;
      const budget = Math.min(params.maxTokens - partial.ids.length, room);
      if (budget <= 0) return this.completion(partial, 'length', temperature);
      const epoch = this.syncEpoch;
      let server: ServerState | null = null;
      let version = this.served;
      let res: ServerGenerateResult;
      try {
        server = await this.pick(key, signal);
        if (this.gate) {
          // A weight update began while routing: wait for it rather than reach a paused server.
          server.inFlight--;
          continue;
        }
        version = server.loadedVersion;
        res = await this.attempt(server, {
          requestId: `${rid}-${part}`, prompt: partial.ids.length > 0 ? prompt.concat(partial.ids) : prompt, maxTokens: budget,
          temperature, topP: params.topP ?? 1, topK: params.topK ?? 0, stopIds, stop: params.stop ?? [], ...(params.seed !== undefined ? { seed: params.seed } : {}),
        }, signal);
      } catch (e) {
        if (signal?.aborted) throw aborted(e);
        if (e instanceof ServerMarkedDown) {
          this.stats.moved++;
        } else if (!isRetryable(e)) {
          throw e instanceof Error ? e : new Error(String(e));
        }
        if (++failures > this.o.retries) throw this.gaveUp(failures, e);
        this.stats.retries++;
        await sleepFor(this.o.backoffMs * 2 ** (failures - 1), signal).catch((err: unknown) => {
          throw aborted(err);
        });
        continue;
      }
      const stopped = this.append(partial, res, version, params, stopIds);
      if (stopped) return this.completion(partial, stopped, temperature);
      if (res.finishReason === 'abort') {
        if (signal?.aborted) throw aborted();
        if (epoch !== this.syncEpoch || this.gate) {
          this.stats.interruptions++; // a weight update: re-send with the tokens so far
          continue;
        }
        // Aborted by someone else (an operator, a restarting server): a failed attempt.
        const url = server!.client.url;
        const err = new RemoteUnavailableError(url, `${url} aborted request ${rid}-${part} after ${res.ids.length} token(s)`);
        if (++failures > this.o.retries) throw this.gaveUp(failures, err);
        this.stats.retries++;
        continue;
      }
      if (res.finishReason === 'length' || partial.ids.length >= params.maxTokens || room - res.ids.length <= 0) return this.completion(partial, 'length', temperature);
      // The server stopped for a reason this client does not see (its own EOS list): keep its word.
      return this.completion(partial, 'stop', temperature);
    }
  }

  // ── one HTTP attempt ────────────────────────────────────────────────────────────────────────

  /**
   * Send one generate request to `server` (whose in-flight count `pick` raised; lowered here). The
   * caller's abort asks the server to abort the request and waits up to abortGraceMs for its answer
   * (which carries the partial tokens), then cuts the connection.
   */
  private async attempt(server: ServerState, req: Parameters<InferenceServerClient['generate']>[0], signal: AbortSignal | undefined): Promise<ServerGenerateResult> {
    const a: Attempt = { ctl: new AbortController() };
    let grace: NodeJS.Timeout | null = null;
    const onAbort = () => {
      server.client.abort([req.requestId], { timeoutMs: this.o.controlTimeoutMs }).catch(() => undefined);
      grace = setTimeout(() => a.ctl.abort(new CallerAborted()), this.o.abortGraceMs);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    server.attempts.add(a);
    try {
      if (signal?.aborted) throw signal.reason; // aborted while routing: nothing sent yet
      server.requests++;
      this.stats.attempts++;
      const res = await server.client.generate(req, { timeoutMs: this.o.timeoutMs, signal: a.ctl.signal });
      this.succeeded(server);
      return res;
    } catch (e) {
      if (e instanceof ServerMarkedDown || e instanceof CallerAborted || signal?.aborted || this.closed) throw e;
      if (isRetryable(e)) this.failed(server, e as Error);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (grace) clearTimeout(grace);
      server.attempts.delete(a);
      server.inFlight--;
    }
  }

  private succeeded(s: ServerState): void {
    s.consecutiveFailures = 0;
    s.downUntil = 0;
    s.downFor = this.o.downMs;
  }

  /** A retryable failure: unreachable / timed out → down now; 5xx → down after FAILURES_TO_DOWN in a row. */
  private failed(s: ServerState, e: Error): void {
    s.lastError = e.message;
    s.consecutiveFailures++;
    const unreachable = e instanceof RemoteUnavailableError && e.status === null;
    if (unreachable || s.consecutiveFailures >= FAILURES_TO_DOWN) this.markDown(s);
  }

  /** Skip the server for a while and move its in-flight requests elsewhere. */
  private markDown(s: ServerState): void {
    s.downUntil = Date.now() + s.downFor;
    s.downFor = Math.min(MAX_DOWN_MS, Math.max(1, s.downFor * 2));
    for (const a of s.attempts) a.ctl.abort(new ServerMarkedDown(`${s.client.url} was marked down`));
  }

  private gaveUp(attempts: number, last: unknown): Error {
    const urls = this.servers.map((s) => `${s.client.url}${s.lastError ? ` (${s.lastError})` : ''}`).join(', ');
    return new Error(`generate: gave up after ${attempts} failed attempt(s) (engine.retries = ${this.o.retries}); last error: ${last instanceof Error ? last.message : String(last)}; servers: ${urls}`, { cause: last });
  }

  // ── routing ─────────────────────────────────────────────────────────────────────────────────

  /**
   * The server for a request with pin key `key`, its in-flight count already raised (the caller's
   * `attempt` lowers it). Waits while every server is down, and for a re-load.
   */
  private async pick(key: string, signal: AbortSignal | undefined): Promise<ServerState> {
    for (;;) {
      const now = Date.now();
      let up = this.servers.filter((s) => s.downUntil <= now);
      if (up.length === 0) {
        // Every server is down: wait for the first one's down period to end, then try it.
        const next = this.servers.reduce((a, b) => (b.downUntil < a.downUntil ? b : a));
        this.waiting++;
        try {
          await sleepFor(next.downUntil - now, signal);
        } finally {
          this.waiting--;
        }
        up = [next];
      }
      const least = Math.min(...up.map((s) => s.inFlight));
      const pinned = this.pins.get(key);
      let chosen: ServerState;
      if (pinned && up.includes(pinned) && pinned.inFlight <= least + this.o.balanceSlack) {
        chosen = pinned;
      } else {
        chosen = up.filter((s) => s.inFlight === least).reduce((a, b) => (b.requests < a.requests ? b : a));
      }
      this.pins.delete(key);
      this.pins.set(key, chosen);
      if (this.pins.size > MAX_PINS) this.pins.delete(this.pins.keys().next().value!);
      if (chosen.loadedVersion === this.served) {
        chosen.inFlight++; // counted now, before the next request is routed
        return chosen;
      }
      // It missed a weight update while down: give it the current weights first, then route again.
      // A failed reload marks it down again and counts as a failed attempt of the request.
      await abortable(this.reload(chosen), signal).catch((e: unknown) => {
        if (signal?.aborted) throw e;
        throw new RemoteUnavailableError(chosen.client.url, `${chosen.client.url}: could not load weight version ${this.served} after coming back: ${(e as Error).message}`, null, { cause: e });
      });
    }
  }

  /** Load the current weights into a server that missed them (one load at a time per server). */
  private reload(s: ServerState): Promise<void> {
    s.loading ??= this.loadCurrent(s).finally(() => {
      s.loading = null;
    });
    return s.loading;
  }

  private async loadCurrent(s: ServerState): Promise<void> {
    const dir = this.servedDir, version = this.served;
    try {
      if (!dir) throw new Error(`no weights directory for version ${version}`);
      await s.client.loadWeights(dir, version, { timeoutMs: this.o.controlTimeoutMs });
      s.loadedVersion = version;
    } catch (e) {
      s.lastError = `reloading weights: ${(e as Error).message}`;
      this.markDown(s);
      throw e;
    }
  }

  // ── weight updates ──────────────────────────────────────────────────────────────────────────

  private closeGate(): void {
    if (this.gate) return;
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.gate = { promise, open };
  }

  private openGate(): void {
    const g = this.gate;
    this.gate = null;
    g?.open();
  }

  private async whenOpen(signal: AbortSignal | undefined): Promise<void> {
    while (this.gate) {
      this.waiting++;
      try {
        await abortable(this.gate.promise, signal);
      } finally {
        this.waiting--;
      }
    }
  }

  /** Run the queued updates, newest only (an update asked for during one replaces any not started). */
  private async runSyncs(): Promise<void> {
    try {
      while (this.pendingSync) {
        const { params, version } = this.pendingSync;
        this.pendingSync = null;
        await this.syncOnce(params, version);
      }
      this.syncError = null;
    } catch (e) {
      this.syncError = e instanceof Error ? e : new Error(String(e));
      this.pendingSync = null;
    } finally {
      this.syncing = null;
      this.openGate();
    }
  }

  private async syncOnce(params: Float32Array, version: number): Promise<void> {
    const ws = this.o.weightSync!;
    const ctl = { timeoutMs: this.o.controlTimeoutMs };
    this.syncEpoch++;
    const now = Date.now();
    const live = this.servers.filter((s) => s.downUntil <= now);
    // 1. Pause with abort: every in-flight request returns now with its partial tokens.
    const paused: ServerState[] = [];
    await Promise.all(live.map(async (s) => {
      try {
        await s.client.pause(ctl);
        paused.push(s);
      } catch (e) {
        this.controlFailed(s, 'pause', e);
      }
    }));
    try {
      // 2. Write the weights (HF safetensors + config.json) where the servers can read them.
      ws.model.params.set(params);
      const dir = join(ws.dir, `v${version}`);
      await writeWeightsDir(dir, ws.model, { version, ...(ws.tokenizer ? { tokenizer: ws.tokenizer } : {}) });
      // 3. Every paused server loads them.
      const loaded: ServerState[] = [];
      await Promise.all(paused.map(async (s) => {
        try {
          await s.client.loadWeights(dir, version, ctl);
          s.loadedVersion = version;
          loaded.push(s);
        } catch (e) {
          this.controlFailed(s, 'load weights', e);
        }
      }));
      if (loaded.length === 0) {
        throw new Error(`weight update to version ${version}: no server loaded ${dir}: ${this.servers.map((s) => `${s.client.url}: ${s.lastError ?? 'down'}`).join('; ')}`);
      }
      // The others (down, or failed to pause/load) serve unknown weights: they load these when back.
      for (const s of this.servers) if (!loaded.includes(s)) s.loadedVersion = -1;
      const old = this.servedDir;
      this.served = version;
      this.servedDir = dir;
      this.stats.weightUpdates++;
      if (old && old !== dir) await rm(old, { recursive: true, force: true });
    } finally {
      // 4. Resume (also after a failure: a paused server would hold every request).
      await Promise.all(paused.map((s) => s.client.resume(ctl).catch((e: unknown) => this.controlFailed(s, 'resume', e))));
    }
  }

  /** A control call failed: unreachable servers go down (they re-load when back); any other failure is the update's. */
  private controlFailed(s: ServerState, what: string, e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    s.lastError = `${what}: ${msg}`;
    if (isRetryable(e)) {
      this.markDown(s);
      return;
    }
    const hint = what === 'pause' || what === 'resume' ? ' (vLLM exposes /pause and /resume only with VLLM_SERVER_DEV_MODE=1)' : '';
    throw new Error(`weight update: ${what} failed on ${s.client.url}: ${msg}${hint}`, { cause: e });
  }

  // ── tokens ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Append an answer's tokens, checking EOS, stop ids and stop strings here too (the server might
   * not honour them all): returns the finish reason if one is hit (the tokens after it are dropped).
   */
  private append(partial: PartialCompletion, res: ServerGenerateResult, dispatchVersion: number, params: SamplingParams, stopIds: readonly number[]): SampledCompletion['finishReason'] | null {
    const V = this.tokenizer.vocabSize;
    const stops = params.stop ?? [];
    for (let i = 0; i < res.ids.length; i++) {
      const id = res.ids[i]!;
      if (!(id >= 0 && id < V)) throw new RemoteProtocolError('generate', `the server returned token id ${id}, outside the tokenizer's vocabulary [0, ${V}): does it serve the model this tokenizer belongs to?`);
      partial.ids.push(id);
      partial.logprobs.push(res.logprobs[i]!);
      partial.versions.push(res.versions?.[i] ?? res.weightVersion ?? dispatchVersion);
      // The servers answer whole (requests are not streamed), so the hook sees each segment's tokens
      // when the segment arrives, in order; a throwing hook fails this request (generate rejects).
      if (params.onToken) emitToken(params.onToken, partial);
      if (id === this.tokenizer.eosId) return 'eos';
      if (stopIds.includes(id)) return 'stop';
      if (stops.length > 0) {
        const tail = this.tokenizer.decode(partial.ids.slice(-16));
        if (stops.some((s) => tail.endsWith(s))) return 'stop';
      }
    }
    return null;
  }

  private completion(p: PartialCompletion, finishReason: SampledCompletion['finishReason'], temperature: number): SampledCompletion {
    return { ids: p.ids, logprobs: p.logprobs, versions: p.versions, text: this.tokenizer.decode(p.ids), finishReason, temperature };
  }

  /** Why a request is invalid (the built-in engine's rules, plus what a server cannot take), or null. */
  private invalid(prompt: readonly number[], p: SamplingParams): string | null {
    if (p.constraint) return 'a token constraint (a JS function) cannot be sent to a remote inference server; generate without one (for MAGE trials set trial.constrained: false)';
    const V = this.tokenizer.vocabSize;
    if (prompt.length === 0) return 'empty prompt';
    if (this.contextLength !== undefined && prompt.length >= this.contextLength) return `prompt has ${prompt.length} tokens; the context length is ${this.contextLength} (leave room for at least one new token)`;
    for (const id of prompt) if (!Number.isInteger(id) || id < 0 || id >= V) return `prompt token id ${id} is outside the vocabulary [0, ${V})`;
    const badTemperature = temperatureProblem(p.temperature ?? 1);
    if (badTemperature) return badTemperature;
    if (!(Number.isInteger(p.maxTokens) && p.maxTokens >= 1)) return `maxTokens must be an integer ≥ 1 (got ${p.maxTokens})`;
    const badTruncation = truncationProblem(p.topK, p.topP);
    if (badTruncation) return badTruncation;
    if (p.seed !== undefined && !Number.isInteger(p.seed)) return `seed must be an integer (got ${p.seed})`;
    return null;
  }
}

/** Hand the token just appended to `partial` to the request's onToken hook; a throw names the hook. */
function emitToken(onToken: NonNullable<SamplingParams['onToken']>, partial: PartialCompletion): void {
  const index = partial.ids.length - 1;
  try {
    onToken({ id: partial.ids[index]!, logprob: partial.logprobs[index]!, version: partial.versions[index]!, index });
  } catch (e) {
    throw new Error(`generate: the onToken hook threw at generated token ${index}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** FNV-1a over the first `n` ids (the pin key of a request without affinity). */
export function hashIds(ids: readonly number[], n: number): string {
  let h = 0x811c9dc5;
  const m = Math.min(n, ids.length);
  for (let i = 0; i < m; i++) {
    let x = ids[i]!;
    for (let b = 0; b < 4; b++) {
      h ^= x & 0xff;
      h = Math.imul(h, 0x01000193);
      x >>>= 8;
    }
  }
  return `${m}:${(h >>> 0).toString(16)}`;
}

function sleepFor(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return abortable(new Promise<void>((r) => setTimeout(r, Math.max(0, ms))), signal);
}

/** `p`, or a rejection with the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    }, (e: unknown) => {
      signal.removeEventListener('abort', onAbort);
      reject(e);
    });
  });
}
