/**
 * `agentrl serve trainer`: the Tinker training API (src/train/remote/tinker-protocol.ts) over the
 * built-in train engine, so the Tinker-compatible client is tested end to end here and small models
 * can be trained by any Tinker client.
 *
 * - Sessions and models: each create_model gets its own copy of the base weights, a BuiltinTrainer
 *   and, with `lora_config`, a LoRA adapter (src/train/lora.ts); without it, full fine-tuning.
 * - Futures: every training call answers {request_id} at once and runs on one FIFO work queue;
 *   retrieve_future long-polls (up to `longPollMs`) and then answers {"type": "try_again"}; a failed
 *   call's future answers {error, category: "user" | "server"}. Requests that cannot be valid are
 *   refused at once with HTTP 400 naming the field (404 for an unknown model or request id).
 * - forward_backward computes each datum's logprobs and loss now and keeps the datums; optim_step
 *   runs the built-in trainer's step (`trainStep`) on every kept datum with the Tinker losses as its
 *   loss function (the gradient of a sum of losses is the sum of their gradients), so a
 *   forward_backward + optim_step is exactly one built-in step with those per-token gradients. Only
 *   optim_step and load_weights change weights (load_weights drops kept datums), so the kept datums
 *   see the weights they were submitted under. Adam parameters are taken from each optim_step.
 * - Datums must use the next-token layout (target_tokens[i] = model_input[i + 1] for every i but the
 *   last): the built-in trainer scores each sequence's own next tokens. Logprobs are at temperature 1.
 * - Checkpoints are kept in memory for the server's lifetime. A checkpoint's archive URL serves one
 *   safetensors file of its weights (SAMPLER_WEIGHTS_FORMAT), which the client loads into the local
 *   sampler; the hosted service's archives are tars of PEFT adapters instead.
 * - asample samples with a BuiltinEngine from a checkpoint (model_path), a sampling session, or the
 *   base model, returning token ids and behaviour logprobs.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import type { Sample } from '../core/types.ts';
import { formatZodError } from '../core/config-errors.ts';
import { HttpError, listenUrl, parseJsonBody, readBody } from '../core/http-server.ts';
import { Transformer } from '../engine/model.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { writeSafetensors } from '../engine/safetensors.ts';
import type { Tokenizer } from '../engine/types.ts';
import { BuiltinTrainer, type LossFn } from '../train/builtin-trainer.ts';
import { LoraAdapter, type LoraModule } from '../train/lora.ts';
import { paramsToTensors } from '../train/trainer-checkpoint.ts';
import {
  API_PREFIX, AdamParamsSchema, CreateModelRequestSchema, CreateSamplingSessionRequestSchema, CreateSessionRequestSchema, ForwardBackwardRequestSchema,
  ForwardRequestSchema, FutureRetrieveRequestSchema, LOSS_CONFIG_DEFAULTS, LOSS_CONFIG_KEYS, LOSS_INPUTS, LoadWeightsRequestSchema, ModelIdRequestSchema,
  OptimStepRequestSchema, SAMPLER_WEIGHTS_FORMAT, SampleRequestSchema, SaveWeightsForSamplerRequestSchema, SaveWeightsRequestSchema, SessionHeartbeatRequestSchema,
  parseTinkerPath, tinkerPath, type CheckpointKind, type ForwardBackwardInput, type ModelInput, type TensorData, type TinkerLossFn,
} from '../train/remote/tinker-protocol.ts';

export interface TrainerServerOptions {
  /** The base model; every created model starts from a copy of its weights. */
  model: Transformer;
  /** Its tokenizer (stop strings of asample); null: token-id stops only. */
  tokenizer: Tokenizer | null;
  /** The name clients pass as base_model. */
  baseModel: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Largest request body, bytes (default 512 MiB). */
  maxBodyBytes?: number;
  /** How long retrieve_future waits for a pending result before answering try_again (default 2000 ms). */
  longPollMs?: number;
  /** Max padded tokens per forward pass of the built-in trainer (default its own, 8192). */
  microBatchTokens?: number;
  /** Seed of the sampler's default stream. */
  seed?: number;
  /** Awaited before each queued call runs (tests hold the queue with it to observe pending futures). */
  workGate?: () => Promise<void>;
}

export interface TrainerServer {
  url: string;
  close(): Promise<void>;
}

/** A request that is well-formed but cannot be served: its future fails with category 'user'. */
class UserError extends Error {}

/** Per-datum loss inputs (double precision, as received), one entry per model_input position. */
interface DatumInputs {
  weights?: Float64Array;
  logprobs?: Float64Array;
  advantages?: Float64Array;
}

interface KeptBatch {
  samples: Sample[];
  inputs: DatumInputs[];
  lossFn: TinkerLossFn;
  config: Record<string, number>;
}

interface ModelState {
  id: string;
  sessionId: string;
  trainer: BuiltinTrainer;
  lora: LoraAdapter | null;
  kept: KeptBatch[];
}

interface Checkpoint {
  modelId: string;
  params: Float32Array;
  step: number;
  /** save_weights only: what load_weights restores. */
  adapter?: Float32Array;
  m?: Float32Array;
  v?: Float32Array;
  file?: Buffer;
}

interface Future {
  state: 'pending' | 'done' | 'failed';
  result?: unknown;
  error?: string;
  category?: 'user' | 'server';
  waiters: (() => void)[];
}

// ── the losses ───────────────────────────────────────────────────────────────────────────────

/** Loss of one position and its derivative w.r.t. the position's logprob (see tinker-protocol.ts). */
function tokenLoss(fn: TinkerLossFn, cfg: Record<string, number>, lp: number, inp: DatumInputs, j: number): { loss: number; grad: number } {
  if (fn === 'cross_entropy') {
    const w = inp.weights![j]!;
    return { loss: -w * lp, grad: -w };
  }
  const q = inp.logprobs![j]!, A = inp.advantages![j]!;
  if (fn === 'dro') {
    const beta = cfg.beta!, d = lp - q;
    return { loss: -(A * lp - 0.5 * beta * d * d), grad: -A + beta * d };
  }
  const r = Math.exp(lp - q);
  if (fn === 'importance_sampling') return { loss: -r * A, grad: -r * A };
  const lo = cfg.clip_low_threshold!, hi = cfg.clip_high_threshold!;
  const rc = Math.min(hi, Math.max(lo, r));
  if (fn === 'cispo') return { loss: -rc * A * lp, grad: -rc * A };
  // ppo: the smaller objective; a tie takes the unclipped branch (the two have the same value).
  const unclipped = r * A, clipped = rc * A;
  return unclipped <= clipped ? { loss: -unclipped, grad: -A * r } : { loss: -clipped, grad: 0 };
}

/** loss_fn_config with the defaults filled in; unknown keys and bad values are errors naming them. */
function lossConfig(fn: TinkerLossFn, given: Record<string, number> | null | undefined, where: string): Record<string, number> {
  const allowed = LOSS_CONFIG_KEYS[fn];
  const cfg: Record<string, number> = {};
  for (const [k, v] of Object.entries(given ?? {})) {
    if (!allowed.includes(k)) throw new HttpError(400, `${where}.loss_fn_config.${k}: not a parameter of loss_fn '${fn}' (${allowed.length ? `it takes ${allowed.join(', ')}` : 'it takes none'})`);
    if (!Number.isFinite(v)) throw new HttpError(400, `${where}.loss_fn_config.${k}: must be a finite number`);
    cfg[k] = v;
  }
  for (const k of allowed) cfg[k] ??= LOSS_CONFIG_DEFAULTS[`${fn}.${k}`]!;
  if ('clip_low_threshold' in cfg && !(cfg.clip_low_threshold! >= 0 && cfg.clip_low_threshold! <= cfg.clip_high_threshold!)) {
    throw new HttpError(400, `${where}.loss_fn_config: clip thresholds must satisfy 0 ≤ clip_low_threshold ≤ clip_high_threshold (ratios, e.g. 0.8 and 1.2), got ${cfg.clip_low_threshold} and ${cfg.clip_high_threshold}`);
  }
  if ('beta' in cfg && cfg.beta! < 0) throw new HttpError(400, `${where}.loss_fn_config.beta: must be ≥ 0`);
  return cfg;
}

/** The token ids of a model input (text chunks only). */
function inputTokens(mi: ModelInput, where: string, V: number): number[] {
  const out: number[] = [];
  mi.chunks.forEach((c, k) => {
    if (c.type !== 'encoded_text' || !Array.isArray((c as { tokens?: unknown }).tokens)) throw new HttpError(400, `${where}.model_input.chunks[${k}]: chunk type '${c.type}' is not supported (agentrl's models take encoded_text chunks)`);
    for (const t of (c as { tokens: number[] }).tokens) out.push(t);
  });
  out.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= V) throw new HttpError(400, `${where}.model_input: token ${t} at position ${i} is not a token of the model (ids are integers in [0, ${V}))`);
  });
  return out;
}

function tensorValues(t: TensorData, name: string, where: string, n: number, dtype: 'int64' | 'float32'): number[] {
  const at = `${where}.loss_fn_inputs.${name}`;
  if (t.sparse_crow_indices || t.sparse_col_indices) throw new HttpError(400, `${at}: sparse tensors are not supported; send dense data`);
  if (t.dtype !== dtype) throw new HttpError(400, `${at}: dtype is ${t.dtype}, ${name} must be ${dtype}`);
  const shape = t.shape ?? [t.data.length];
  if (shape.length !== 1 || shape[0] !== n) throw new HttpError(400, `${at}: shape [${shape.join(', ')}] does not match the model_input length: it must be [${n}] (one value per input position)`);
  if (t.data.length !== n) throw new HttpError(400, `${at}: holds ${t.data.length} values but its shape is [${n}]`);
  t.data.forEach((v, i) => {
    if (!Number.isFinite(v)) throw new HttpError(400, `${at}[${i}] is ${v}; values must be finite`);
    if (dtype === 'int64' && !Number.isInteger(v)) throw new HttpError(400, `${at}[${i}] is ${v}; int64 values must be integers`);
  });
  return t.data;
}

/** Datums → samples of the built-in trainer (every position trained) and their loss inputs. */
function datumsToBatch(input: ForwardBackwardInput, where: string, V: number, ctx: number): KeptBatch {
  const fn = input.loss_fn;
  const config = lossConfig(fn, input.loss_fn_config, where);
  const samples: Sample[] = [], inputs: DatumInputs[] = [];
  input.data.forEach((d, i) => {
    const at = `${where}.data[${i}]`;
    const tokens = inputTokens(d.model_input, at, V);
    const n = tokens.length;
    if (n === 0) throw new HttpError(400, `${at}.model_input: no tokens`);
    if (n > ctx) throw new HttpError(400, `${at}.model_input: ${n} tokens; the model's context length is ${ctx}`);
    const need = LOSS_INPUTS[fn];
    const given = Object.keys(d.loss_fn_inputs);
    const missing = need.filter((k) => !given.includes(k)), extra = given.filter((k) => !need.includes(k));
    if (missing.length) throw new HttpError(400, `${at}.loss_fn_inputs: loss_fn '${fn}' needs ${missing.join(', ')} (it takes ${need.join(', ')})`);
    if (extra.length) throw new HttpError(400, `${at}.loss_fn_inputs: loss_fn '${fn}' does not take ${extra.join(', ')} (it takes ${need.join(', ')})`);
    const targets = tensorValues(d.loss_fn_inputs.target_tokens!, 'target_tokens', at, n, 'int64');
    targets.forEach((t, j) => {
      if (t < 0 || t >= V) throw new HttpError(400, `${at}.loss_fn_inputs.target_tokens[${j}] is ${t}, not a token of the model (ids are integers in [0, ${V}))`);
      if (j < n - 1 && t !== tokens[j + 1]) throw new HttpError(400, `${at}.loss_fn_inputs.target_tokens[${j}] is ${t} but model_input token ${j + 1} is ${tokens[j + 1]}: agentrl serve trainer takes next-token targets (target_tokens = the sequence shifted by one)`);
    });
    const inp: DatumInputs = {};
    for (const k of ['weights', 'logprobs', 'advantages'] as const) {
      if (need.includes(k)) inp[k] = Float64Array.from(tensorValues(d.loss_fn_inputs[k]!, k, at, n, 'float32'));
    }
    const L = n + 1;
    samples.push({
      seq: {
        ids: [...tokens, targets[n - 1]!], logprobs: new Array<number>(L).fill(0), versions: new Array<number>(L).fill(-1),
        mask: [0, ...new Array<number>(n).fill(1)], source: new Array(L).fill(0),
      },
      reward: 0, keys: {},
    });
    inputs.push(inp);
  });
  return { samples, inputs, lossFn: fn, config };
}

/**
 * The built-in trainer's loss function for kept batches: trainStep hands over the logprob of every
 * trained position (all of them), grouped by micro-batch; a sample's positions come in order, so the
 * j-th token of sample i is position j of its datum.
 */
function keptLoss(owners: { batch: KeptBatch; datum: number }[]): LossFn {
  return (inp) => {
    const n = inp.logprobs.length;
    const dLogp = new Float32Array(n), dEnt = new Float32Array(n);
    const seen = new Int32Array(owners.length);
    let loss = 0;
    for (let k = 0; k < n; k++) {
      const s = inp.seqIds[k]!, j = seen[s]!++;
      const { batch, datum } = owners[s]!;
      const r = tokenLoss(batch.lossFn, batch.config, inp.logprobs[k]!, batch.inputs[datum]!, j);
      loss += r.loss;
      dLogp[k] = r.grad;
    }
    return { loss, dLogp, dEnt, metrics: { 'loss:sum': loss } };
  };
}

// ── HTTP plumbing ────────────────────────────────────────────────────────────────────────────

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function parseAs<S extends z.ZodTypeAny>(schema: S, json: unknown, endpoint: string): z.output<S> {
  const r = schema.safeParse(json);
  if (!r.success) throw new HttpError(400, `invalid ${endpoint} request: ${formatZodError(r.error)}`);
  return r.data;
}

/** A tokenizer-less server's stand-in: ids only (stop strings are refused). */
function idTokenizer(V: number): Tokenizer {
  return { vocabSize: V, eosId: -1, encode: () => [], decode: (ids) => ids.join(' '), tokenString: (id) => String(id), tokenId: () => undefined };
}

export async function startTrainerServer(o: TrainerServerOptions): Promise<TrainerServer> {
  const { model: base, baseModel, host = '127.0.0.1', port = 8000, maxBodyBytes = 512 << 20, longPollMs = 2000 } = o;
  const V = base.config.vocabSize, ctx = base.config.contextLength;
  const sessions = new Set<string>();
  const models = new Map<string, ModelState>();
  const futures = new Map<string, Future>();
  const idempotent = new Map<string, string>();
  const checkpoints = new Map<string, Checkpoint>();
  const samplingSessions = new Map<string, { modelPath: string | null }>();
  const sampler = new BuiltinEngine(new Transformer(base.config, base.backend, 0), o.tokenizer ?? idTokenizer(V), { maxBatch: 64, seed: o.seed ?? 1 });
  let samplerWeights: Float32Array | null = null;
  let samplerVersion = 0;
  let queue: Promise<void> = Promise.resolve();
  let nextModel = 0;

  const getModel = (id: string): ModelState => {
    const m = models.get(id);
    if (!m) throw new HttpError(404, `unknown model_id '${id}'${models.size ? ` (this server has ${[...models.keys()].slice(0, 5).join(', ')})` : ''}; create one with create_model`);
    return m;
  };

  /** Queue `work` and answer {request_id}; the future holds its result or error. */
  function submit(work: () => unknown, modelId?: string): { request_id: string; model_id?: string } {
    const id = randomUUID();
    const f: Future = { state: 'pending', waiters: [] };
    futures.set(id, f);
    queue = queue.then(async () => {
      try {
        await o.workGate?.();
        f.result = await work();
        f.state = 'done';
      } catch (e) {
        f.state = 'failed';
        f.error = e instanceof Error ? e.message : String(e);
        f.category = e instanceof UserError || e instanceof HttpError ? 'user' : 'server';
      }
      for (const w of f.waiters.splice(0)) w();
      // Results are kept a while for clients that poll again (a lost answer).
      setTimeout(() => futures.delete(id), 10 * 60_000).unref();
    });
    return modelId ? { request_id: id, model_id: modelId } : { request_id: id };
  }

  async function retrieve(requestId: string): Promise<unknown> {
    const f = futures.get(requestId);
    if (!f) throw new HttpError(404, `unknown request_id '${requestId}' (never submitted here, or its result expired)`);
    if (f.state === 'pending') {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, longPollMs);
        f.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (f.state === 'pending') return { type: 'try_again', request_id: requestId, queue_state: 'active' };
    if (f.state === 'failed') return { error: f.error, category: f.category };
    return f.result;
  }

  // ── models ─────────────────────────────────────────────────────────────────────────────

  function loraTargetsFor(cfg: { train_attn: boolean; train_mlp: boolean; train_unembed: boolean }): LoraModule[] | undefined {
    if (cfg.train_unembed) throw new HttpError(400, 'create_model.lora_config.train_unembed: agentrl adapts the transformer blocks\' linear layers only; set train_unembed: false');
    if (!cfg.train_attn && !cfg.train_mlp) throw new HttpError(400, 'create_model.lora_config: train_attn and train_mlp are both false: nothing would be trained');
    if (base.config.mlp === 'swiglu') {
      return [...(cfg.train_attn ? (['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const) : []), ...(cfg.train_mlp ? (['gate_proj', 'up_proj', 'down_proj'] as const) : [])];
    }
    // GPT-2 style: c_proj names both the attention and the MLP output projection (PEFT's suffix match).
    if (cfg.train_attn !== cfg.train_mlp) throw new HttpError(400, 'create_model.lora_config: this model\'s c_proj modules belong to both attention and MLP; train_attn and train_mlp must be equal');
    return undefined;
  }

  function createModel(body: z.output<typeof CreateModelRequestSchema>) {
    if (!sessions.has(body.session_id)) throw new HttpError(404, `unknown session_id '${body.session_id}'; create one with create_session`);
    if (body.base_model !== baseModel) throw new HttpError(400, `create_model.base_model: '${body.base_model}' is not served here; this server trains '${baseModel}'`);
    const lc = body.lora_config;
    const targetModules = lc ? loraTargetsFor(lc) : undefined;
    const id = `model-${++nextModel}`;
    return submit(() => {
      const model = new Transformer(base.config, base.backend, 0);
      model.params.set(base.params);
      const lora = lc ? new LoraAdapter(model, { rank: lc.rank, alpha: lc.alpha ?? 8, seed: lc.seed ?? 0, ...(targetModules ? { targetModules } : {}) }) : null;
      const trainer = new BuiltinTrainer(model, o.microBatchTokens ? { microBatchTokens: o.microBatchTokens } : {}, lora ? { lora } : {});
      models.set(id, { id, sessionId: body.session_id, trainer, lora, kept: [] });
      return { model_id: id, type: 'create_model' };
    }, id);
  }

  /** forward (keep = false) or forward_backward (keep = true): logprobs and losses of each datum now. */
  function forward(st: ModelState, batch: KeptBatch, keep: boolean) {
    const lps = st.trainer.computeLogprobs(batch.samples);
    let total = 0;
    const outputs = lps.map((lp, i) => {
      const n = batch.samples[i]!.seq.ids.length - 1;
      const logprobs: number[] = [], losses: number[] = [];
      for (let j = 0; j < n; j++) {
        const l = lp[j + 1]!;
        const r = tokenLoss(batch.lossFn, batch.config, l, batch.inputs[i]!, j);
        logprobs.push(l);
        losses.push(Math.fround(r.loss));
        total += r.loss;
      }
      return { logprobs: { data: logprobs, dtype: 'float32', shape: [n] }, elementwise_loss: { data: losses, dtype: 'float32', shape: [n] } };
    });
    if (!Number.isFinite(total)) throw new UserError(`the loss is ${total} (non-finite); check the logprobs and advantages inputs`);
    if (keep) st.kept.push(batch);
    return { loss_fn_output_type: 'ArrayRecord', loss_fn_outputs: outputs, metrics: { 'loss:sum': total } };
  }

  function optimStep(st: ModelState, adam: z.output<typeof AdamParamsSchema>) {
    const t = st.trainer;
    // The built-in trainer reads its optimizer settings at every step: take this request's.
    Object.assign(t.opt, { lr: adam.learning_rate, beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, weightDecay: adam.weight_decay, gradClip: adam.grad_clip_norm, schedule: 'constant', warmupSteps: 0 });
    const kept = st.kept.splice(0);
    let gradNorm: number, loss = 0;
    if (kept.length === 0) {
      // No gradient since the last step: Adam still moves along its moments.
      t.model.zeroGrad();
      t.lora?.zeroGrad();
      gradNorm = t.applyGradients();
    } else {
      const owners = kept.flatMap((batch) => batch.inputs.map((_, datum) => ({ batch, datum })));
      const r = t.trainStep(kept.flatMap((b) => b.samples), keptLoss(owners));
      gradNorm = r.gradNorm;
      loss = r.loss;
    }
    return { metrics: { grad_norm: gradNorm, learning_rate: adam.learning_rate, step: t.step, 'loss:sum': loss }, type: 'optim_step' };
  }

  function saveCheckpoint(st: ModelState, kind: CheckpointKind, name: string | null | undefined, overwrite: boolean) {
    const t = st.trainer;
    const n = name ?? `step-${t.step}`;
    const key = `${st.id}/${kind}/${n}`;
    if (kind === 'weights' && !overwrite && checkpoints.has(key)) throw new UserError(`checkpoint ${tinkerPath(st.id, kind, n)} exists; pass overwrite: true or another path`);
    const ck: Checkpoint = { modelId: st.id, params: Float32Array.from(t.model.params), step: t.step };
    if (kind === 'weights') {
      ck.m = Float32Array.from(t.m);
      ck.v = Float32Array.from(t.v);
      if (t.lora) ck.adapter = Float32Array.from(t.lora.params);
    }
    checkpoints.set(key, ck);
    return { path: tinkerPath(st.id, kind, n), type: kind === 'weights' ? 'save_weights' : 'save_weights_for_sampler' };
  }

  function findCheckpoint(path: string): Checkpoint & { kind: CheckpointKind } {
    let p: ReturnType<typeof parseTinkerPath>;
    try {
      p = parseTinkerPath(path);
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
    const ck = checkpoints.get(`${p.modelId}/${p.kind}/${p.name}`);
    if (!ck) throw new HttpError(404, `no checkpoint ${path} on this server (checkpoints live in memory for the server's lifetime)`);
    return { ...ck, kind: p.kind };
  }

  function loadWeights(st: ModelState, ck: Checkpoint & { kind: CheckpointKind }, path: string, optimizer: boolean) {
    const t = st.trainer;
    if (ck.kind !== 'weights') throw new UserError(`load_weights.path: ${path} holds weights for sampling only; load a checkpoint from save_weights (tinker://…/weights/…)`);
    if (!!t.lora !== !!ck.adapter || (t.lora && ck.adapter!.length !== t.lora.numParams)) throw new UserError(`load_weights.path: ${path} was saved by a model with ${ck.adapter ? `a LoRA adapter of ${ck.adapter.length} parameters` : 'full fine-tuning'}; model ${st.id} ${t.lora ? `has an adapter of ${t.lora.numParams}` : 'trains every weight'}`);
    t.model.params.set(ck.params);
    if (t.lora) {
      t.lora.params.set(ck.adapter!);
      t.lora.merge();
    }
    if (optimizer) {
      t.m.set(ck.m!);
      t.v.set(ck.v!);
      t.step = ck.step;
    } else {
      t.m.fill(0);
      t.v.fill(0);
      t.step = 0;
    }
    st.kept.length = 0;
    return { path, model_id: st.id, type: 'load_weights' };
  }

  // ── sampling ───────────────────────────────────────────────────────────────────────────

  async function sample(body: z.output<typeof SampleRequestSchema>) {
    const sp = body.sampling_params;
    let path = body.model_path ?? null;
    if (body.sampling_session_id) {
      const s = samplingSessions.get(body.sampling_session_id);
      if (!s) throw new HttpError(404, `unknown sampling_session_id '${body.sampling_session_id}'`);
      path = s.modelPath;
    }
    if (!path && body.base_model && body.base_model !== baseModel) throw new HttpError(400, `asample.base_model: '${body.base_model}' is not served here; this server has '${baseModel}'`);
    if (!path && !body.base_model && !body.sampling_session_id) throw new HttpError(400, 'asample: give model_path (a tinker:// checkpoint), sampling_session_id or base_model');
    const params = path ? findCheckpoint(path).params : base.params;
    const prompt = inputTokens(body.prompt, 'asample.prompt', V);
    if (prompt.length === 0) throw new HttpError(400, 'asample.prompt: no tokens');
    if (!sp.max_tokens) throw new HttpError(400, 'asample.sampling_params.max_tokens: required');
    const stop = sp.stop == null ? [] : Array.isArray(sp.stop) ? sp.stop : [sp.stop];
    const stopIds = stop.filter((s): s is number => typeof s === 'number');
    const stopText = stop.filter((s): s is string => typeof s === 'string');
    if (stopText.length && !o.tokenizer) throw new HttpError(400, 'asample.sampling_params.stop: this server has no tokenizer; give stop token ids');
    if (body.prompt_logprobs || body.topk_prompt_logprobs > 0) throw new HttpError(400, 'asample.prompt_logprobs: not supported by agentrl serve trainer');
    return submit(async () => {
      if (samplerWeights !== params) {
        samplerWeights = params;
        sampler.setWeights(params, ++samplerVersion);
      }
      const runs = Array.from({ length: body.num_samples }, (_, i) => sampler.generate(prompt, {
        maxTokens: sp.max_tokens!, temperature: sp.temperature, topK: sp.top_k < 0 ? 0 : sp.top_k, topP: sp.top_p, stopIds, stop: stopText,
        ...(sp.seed != null ? { seed: sp.seed + i } : {}),
      }));
      let done;
      try {
        done = await Promise.all(runs);
      } catch (e) {
        throw new UserError((e as Error).message);
      }
      return { type: 'sample', sequences: done.map((c) => ({ tokens: c.ids, logprobs: c.logprobs, stop_reason: c.finishReason === 'length' ? 'length' : 'stop' })) };
    });
  }

  // ── routes ─────────────────────────────────────────────────────────────────────────────

  type Handler = (json: unknown) => unknown;
  const post: Record<string, Handler> = {
    create_session: (j) => {
      parseAs(CreateSessionRequestSchema, j, 'create_session');
      const id = `session-${randomUUID()}`;
      sessions.add(id);
      return { type: 'create_session', session_id: id };
    },
    session_heartbeat: (j) => {
      const b = parseAs(SessionHeartbeatRequestSchema, j, 'session_heartbeat');
      if (!sessions.has(b.session_id)) throw new HttpError(404, `unknown session_id '${b.session_id}'`);
      return { type: 'session_heartbeat' };
    },
    create_model: (j) => createModel(parseAs(CreateModelRequestSchema, j, 'create_model')),
    get_info: (j) => {
      const st = getModel(parseAs(ModelIdRequestSchema, j, 'get_info').model_id);
      return { type: 'get_info', model_id: st.id, model_data: { model_name: baseModel, arch: base.config.mlp ?? 'gelu' }, model_name: baseModel, is_lora: !!st.lora, lora_rank: st.lora?.config.rank ?? null };
    },
    unload_model: (j) => {
      const st = getModel(parseAs(ModelIdRequestSchema, j, 'unload_model').model_id);
      return submit(() => {
        models.delete(st.id);
        return { model_id: st.id, type: 'unload_model' };
      }, st.id);
    },
    forward_backward: (j) => {
      const b = parseAs(ForwardBackwardRequestSchema, j, 'forward_backward');
      const st = getModel(b.model_id);
      const batch = datumsToBatch(b.forward_backward_input, 'forward_backward_input', V, ctx);
      return submit(() => forward(st, batch, true), st.id);
    },
    forward: (j) => {
      const b = parseAs(ForwardRequestSchema, j, 'forward');
      const st = getModel(b.model_id);
      const batch = datumsToBatch(b.forward_input, 'forward_input', V, ctx);
      return submit(() => forward(st, batch, false), st.id);
    },
    optim_step: (j) => {
      const b = parseAs(OptimStepRequestSchema, j, 'optim_step');
      const st = getModel(b.model_id);
      return submit(() => optimStep(st, b.adam_params), st.id);
    },
    save_weights_for_sampler: (j) => {
      const b = parseAs(SaveWeightsForSamplerRequestSchema, j, 'save_weights_for_sampler');
      const st = getModel(b.model_id);
      return submit(() => saveCheckpoint(st, 'sampler_weights', b.path, true), st.id);
    },
    save_weights: (j) => {
      const b = parseAs(SaveWeightsRequestSchema, j, 'save_weights');
      const st = getModel(b.model_id);
      return submit(() => saveCheckpoint(st, 'weights', b.path, b.overwrite), st.id);
    },
    load_weights: (j) => {
      const b = parseAs(LoadWeightsRequestSchema, j, 'load_weights');
      const st = getModel(b.model_id);
      const ck = findCheckpoint(b.path);
      return submit(() => loadWeights(st, ck, b.path, b.optimizer), st.id);
    },
    create_sampling_session: (j) => {
      const b = parseAs(CreateSamplingSessionRequestSchema, j, 'create_sampling_session');
      if (!sessions.has(b.session_id)) throw new HttpError(404, `unknown session_id '${b.session_id}'`);
      if (b.model_path) findCheckpoint(b.model_path);
      else if (b.base_model && b.base_model !== baseModel) throw new HttpError(400, `create_sampling_session.base_model: '${b.base_model}' is not served here; this server has '${baseModel}'`);
      const id = `sampling-${randomUUID()}`;
      samplingSessions.set(id, { modelPath: b.model_path ?? null });
      return { type: 'create_sampling_session', sampling_session_id: id };
    },
    asample: (j) => sample(parseAs(SampleRequestSchema, j, 'asample')),
    retrieve_future: (j) => retrieve(parseAs(FutureRetrieveRequestSchema, j, 'retrieve_future').request_id),
  };
  const capabilities = () => ({ supported_models: [{ model_name: baseModel, max_context_length: ctx }] });
  const get: Record<string, Handler> = {
    healthz: () => ({ status: 'ok' }),
    get_server_capabilities: capabilities,
  };
  // archiveRoute(): /api/v1/training_runs/<model>/checkpoints/<kind>/<name>/archive
  const archive = new RegExp(`^${API_PREFIX}/training_runs/([^/]+)/checkpoints/(weights|sampler_weights)/([^/]+)/archive$`);
  const file = new RegExp(`^${API_PREFIX}/checkpoint_files/([^/]+)/(weights|sampler_weights)/([^/]+)/model\\.safetensors$`);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const method = req.method ?? 'GET';
    const name = path.startsWith(`${API_PREFIX}/`) ? path.slice(API_PREFIX.length + 1) : '';
    let m: RegExpExecArray | null;
    if (method === 'GET' && (m = archive.exec(path))) {
      const [, modelId, kind, ck] = m.map((s) => decodeURIComponent(s ?? ''));
      findCheckpoint(tinkerPath(modelId!, kind as CheckpointKind, ck!));
      const url = `http://${req.headers.host ?? `${host}:${port}`}${API_PREFIX}/checkpoint_files/${encodeURIComponent(modelId!)}/${kind}/${encodeURIComponent(ck!)}/model.safetensors`;
      return send(res, 200, { url, expires: new Date(Date.now() + 3600_000).toISOString() });
    }
    if (method === 'GET' && (m = file.exec(path))) {
      const [, modelId, kind, ckName] = m.map((s) => decodeURIComponent(s ?? ''));
      const key = `${modelId}/${kind}/${ckName}`;
      const ck = checkpoints.get(key);
      if (!ck) throw new HttpError(404, `no checkpoint ${tinkerPath(modelId!, kind as CheckpointKind, ckName!)} on this server`);
      ck.file ??= writeSafetensors(paramsToTensors(base, ck.params), { format: SAMPLER_WEIGHTS_FORMAT, step: String(ck.step), base_model: baseModel });
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': ck.file.length });
      res.end(ck.file);
      return;
    }
    const handler = method === 'POST' ? post[name] ?? (name === 'get_server_capabilities' ? capabilities : undefined) : method === 'GET' ? get[name] : undefined;
    if (!handler) {
      if (post[name] || get[name]) throw new HttpError(405, `${method} not allowed on ${path}; use ${post[name] ? 'POST' : 'GET'}`);
      throw new HttpError(404, `no route ${method} ${path}; the Tinker API is served under ${API_PREFIX}/ (create_session, create_model, forward_backward, forward, optim_step, save_weights_for_sampler, save_weights, load_weights, asample, retrieve_future, healthz)`);
    }
    let json: unknown = {};
    if (method === 'POST') {
      const text = await readBody(req, maxBodyBytes);
      json = text.length ? parseJsonBody(text) : {};
    }
    const key = req.headers['x-idempotency-key'];
    if (typeof key === 'string' && idempotent.has(key)) return send(res, 200, { request_id: idempotent.get(key)! });
    const body = await handler(json);
    if (typeof key === 'string' && body && typeof body === 'object' && 'request_id' in body && name !== 'retrieve_future') {
      idempotent.set(key, (body as { request_id: string }).request_id);
      setTimeout(() => idempotent.delete(key), 10 * 60_000).unref();
    }
    send(res, 200, body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return res.destroy();
      if (e instanceof HttpError) return send(res, e.status, { error: e.message, category: 'user' });
      send(res, 500, { error: e instanceof Error ? e.message : String(e), category: 'server' });
    });
  });
  const url = await listenUrl(server, port, host);
  return {
    url,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
