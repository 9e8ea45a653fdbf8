/**
 * Contract tests of the Tinker API as `agentrl serve trainer` serves it and as the client speaks it:
 * futures (try_again, long-poll), 4xx bodies naming the field, unknown ids, LoRA settings, loss_fn
 * validation, shape mismatches, the losses' values and gradients, weights save/load/download,
 * sampling, the client's retries, and TinkerTrainer's exact mapping of agentrl's losses.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sample } from '../src/core/types.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { Transformer } from '../src/engine/model.ts';
import { Rng } from '../src/core/rng.ts';
import { startTrainerServer, type TrainerServer } from '../src/serve/trainer-server.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { InProcessTrainer } from '../src/train/policy-trainer.ts';
import { TinkerClient, TinkerHttpError, TinkerRequestFailedError } from '../src/train/remote/tinker-client.ts';
import { datum, tensor } from '../src/train/remote/tinker-protocol.ts';
import { TinkerTrainer, createTinkerTrainer, tinkerLossPlan } from '../src/train/remote/tinker-trainer.ts';

const CONFIG = { vocabSize: 24, contextLength: 32, nLayer: 1, nHead: 2, nEmbd: 16 };
const base = new Transformer(CONFIG, defaultBackend(), 7);
let server: TrainerServer;
let client: TinkerClient;

beforeAll(async () => {
  server = await startTrainerServer({ model: base, tokenizer: null, baseModel: 'tiny', port: 0, longPollMs: 200 });
  client = new TinkerClient({ url: server.url, maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
});

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${server.url}/api/v1/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function newModel(lora: Record<string, unknown> | null = null): Promise<string> {
  const session = await client.createSession();
  return client.createModel({ sessionId: session, baseModel: 'tiny', lora: lora as never });
}

/** A datum of `ids` (next-token layout) with RL inputs. */
function rlDatum(ids: number[], logprobs: number[], advantages: number[]) {
  return datum(ids.slice(0, -1), { target_tokens: tensor(ids.slice(1), 'int64'), logprobs: tensor(logprobs, 'float32'), advantages: tensor(advantages, 'float32') });
}

describe('futures', () => {
  it('a pending call answers try_again until its work has run, then its result; the client waits through them', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const held = await startTrainerServer({ model: base, tokenizer: null, baseModel: 'tiny', port: 0, longPollMs: 20, workGate: () => gate });
    try {
      const sub = await fetch(`${held.url}/api/v1/asample`, { method: 'POST', body: JSON.stringify({ prompt: { chunks: [{ type: 'encoded_text', tokens: [1, 2, 3] }] }, num_samples: 3, sampling_params: { max_tokens: 5, seed: 5 }, base_model: 'tiny' }) });
      const { request_id } = (await sub.json()) as { request_id: string };
      const poll = async () => (await (await fetch(`${held.url}/api/v1/retrieve_future`, { method: 'POST', body: JSON.stringify({ request_id }) })).json()) as Record<string, unknown>;
      expect(await poll()).toEqual({ type: 'try_again', request_id, queue_state: 'active' });
      expect(await poll()).toEqual({ type: 'try_again', request_id, queue_state: 'active' });
      // The client keeps polling until the queue runs the work.
      const viaClient = new TinkerClient({ url: held.url }).waitFuture(request_id, 'asample');
      setTimeout(open, 100);
      const result = (await viaClient) as { sequences: { tokens: number[]; logprobs: number[]; stop_reason: string }[] };
      expect(result.sequences).toHaveLength(3);
      for (const s of result.sequences) {
        expect(s.tokens.length).toBe(s.logprobs.length);
        expect(s.tokens.length).toBeGreaterThan(0);
        expect(['length', 'stop']).toContain(s.stop_reason);
        expect(s.logprobs.every((l) => l <= 0 && Number.isFinite(l))).toBe(true);
      }
      // The result stays there for a client that asks again (a lost answer).
      expect(await poll()).toEqual(result);
    } finally {
      open();
      await held.close();
    }
  });

  it('retrieve_future long-polls a short call to its result; unknown request ids are 404', async () => {
    const model = await newModel();
    const sub = await post('save_weights_for_sampler', { model_id: model, path: 'lp' });
    const r = await post('retrieve_future', { request_id: sub.json.request_id });
    expect(r.json).toEqual({ path: `tinker://${model}/sampler_weights/lp`, type: 'save_weights_for_sampler' });
    const unknown = await post('retrieve_future', { request_id: 'nope' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/unknown request_id 'nope'/);
  });

  it('a resubmission with the same X-Idempotency-Key gets the same request (the work runs once)', async () => {
    const model = await newModel();
    const body = JSON.stringify({ model_id: model, path: 'idem' });
    const submit = async () => (await (await fetch(`${server.url}/api/v1/save_weights`, { method: 'POST', headers: { 'x-idempotency-key': 'k-1' }, body })).json()) as { request_id: string };
    const a = await submit(), b = await submit();
    expect(b.request_id).toBe(a.request_id);
    // Run twice, the second save_weights of the same name would fail (no overwrite).
    expect(await client.waitFuture(a.request_id)).toEqual({ path: `tinker://${model}/weights/idem`, type: 'save_weights' });
    const other = (await (await fetch(`${server.url}/api/v1/save_weights`, { method: 'POST', headers: { 'x-idempotency-key': 'k-2' }, body })).json()) as { request_id: string };
    await expect(client.waitFuture(other.request_id)).rejects.toThrow(/exists; pass overwrite: true/);
  });

  it('the client polls through try_again answers, HTTP 408 and 503, and retries refused connections', async () => {
    let polls = 0, submits = 0;
    const fake = createServer((req, res) => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.url === '/api/v1/optim_step') {
        submits++;
        expect(req.headers['x-idempotency-key']).toBeTruthy();
        return submits === 1 ? send(503, { error: 'warming up' }) : send(200, { request_id: 'r1' });
      }
      polls++;
      if (polls === 1) return send(200, { type: 'try_again', request_id: 'r1', queue_state: 'active' });
      if (polls === 2) return send(408, { type: 'try_again', request_id: 'r1', queue_state: 'paused_capacity' });
      send(200, { metrics: { grad_norm: 1.5 } });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    const c = new TinkerClient({ url, maxRetries: 2, backoffMs: 1 });
    expect(await c.optimStep('m', { learning_rate: 1, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 0 })).toEqual({ grad_norm: 1.5 });
    expect(submits).toBe(2);
    expect(polls).toBe(3);
    await new Promise<void>((r) => fake.close(() => r()));
    // Nothing listens there now: retried, then an error naming the service.
    await expect(new TinkerClient({ url, maxRetries: 1, backoffMs: 1 }).healthz()).rejects.toThrow(/after 2 attempts; is the training service running at http:\/\/127\.0\.0\.1/);
  });
});

describe('errors name the field', () => {
  it('unknown model id, session and base model', async () => {
    const r = await post('forward_backward', { model_id: 'model-404', forward_backward_input: { data: [rlDatum([1, 2], [0], [1])], loss_fn: 'ppo' } });
    expect(r.status).toBe(404);
    expect(r.json.error).toMatch(/unknown model_id 'model-404'.*create_model/);
    await expect(client.optimStep('model-404', { learning_rate: 1, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 0 })).rejects.toThrow(TinkerHttpError);
    expect((await post('create_model', { session_id: 'nope', base_model: 'tiny' })).json.error).toMatch(/unknown session_id 'nope'/);
    const session = await client.createSession();
    const wrong = await post('create_model', { session_id: session, base_model: 'Qwen/Qwen3-8B' });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error).toMatch(/create_model\.base_model: 'Qwen\/Qwen3-8B' is not served here; this server trains 'tiny'/);
  });

  it('LoRA settings: rank, train_unembed, attention vs MLP on a GPT-2-style model', async () => {
    const session = await client.createSession();
    const rank0 = await post('create_model', { session_id: session, base_model: 'tiny', lora_config: { rank: 0 } });
    expect(rank0.status).toBe(400);
    expect(rank0.json.error).toMatch(/lora_config\.rank/);
    const unembed = await post('create_model', { session_id: session, base_model: 'tiny', lora_config: { rank: 2 } });
    expect(unembed.status).toBe(400);
    expect(unembed.json.error).toMatch(/lora_config\.train_unembed.*set train_unembed: false/);
    const half = await post('create_model', { session_id: session, base_model: 'tiny', lora_config: { rank: 2, train_unembed: false, train_mlp: false } });
    expect(half.json.error).toMatch(/train_attn and train_mlp must be equal/);
    const ok = await newModel({ rank: 2, train_unembed: false });
    const info = await post('get_info', { model_id: ok });
    expect(info.json).toMatchObject({ is_lora: true, lora_rank: 2, model_name: 'tiny' });
  });

  it('loss_fn, loss_fn_config, loss_fn_inputs, shapes, dtypes, targets and tokens', async () => {
    const model = await newModel();
    const fb = (data: unknown[], loss_fn = 'ppo', loss_fn_config: unknown = null) => post('forward_backward', { model_id: model, forward_backward_input: { data, loss_fn, loss_fn_config } });
    const good = rlDatum([1, 2, 3], [-1, -1], [1, 1]);
    const cases: [Promise<{ status: number; json: Record<string, unknown> }>, RegExp][] = [
      [fb([good], 'nope'), /forward_backward_input\.loss_fn/],
      [fb([good], 'ppo', { beta: 1 }), /loss_fn_config\.beta: not a parameter of loss_fn 'ppo' \(it takes clip_low_threshold, clip_high_threshold\)/],
      [fb([good], 'ppo', { clip_low_threshold: 1.5, clip_high_threshold: 1.2 }), /0 ≤ clip_low_threshold ≤ clip_high_threshold/],
      [fb([datum([1, 2], { target_tokens: tensor([2, 3], 'int64'), logprobs: tensor([0, 0], 'float32') })]), /data\[0\]\.loss_fn_inputs: loss_fn 'ppo' needs advantages/],
      [fb([{ ...good, loss_fn_inputs: { ...good.loss_fn_inputs, weights: tensor([1, 1], 'float32') } }]), /does not take weights/],
      [fb([{ ...good, loss_fn_inputs: { ...good.loss_fn_inputs, advantages: tensor([1, 1, 1], 'float32') } }]), /data\[0\]\.loss_fn_inputs\.advantages: shape \[3\] does not match the model_input length: it must be \[2\]/],
      [fb([{ ...good, loss_fn_inputs: { ...good.loss_fn_inputs, advantages: { data: [1, 1], dtype: 'float32', shape: [1, 2] } } }]), /advantages: shape \[1, 2\].*must be \[2\]/],
      [fb([{ ...good, loss_fn_inputs: { ...good.loss_fn_inputs, target_tokens: tensor([2, 3], 'float32') } }]), /target_tokens: dtype is float32, target_tokens must be int64/],
      [fb([rlDatum([1, 2, 3], [0, 0], [1, 1]), { ...good, loss_fn_inputs: { ...good.loss_fn_inputs, target_tokens: tensor([5, 3], 'int64') } }]), /data\[1\]\.loss_fn_inputs\.target_tokens\[0\] is 5 but model_input token 1 is 2/],
      [fb([rlDatum([1, 99, 3], [0, 0], [1, 1])]), /data\[0\]\.model_input: token 99 at position 1 is not a token of the model/],
      [fb([{ model_input: { chunks: [{ type: 'image', data: 'x', format: 'png' }] }, loss_fn_inputs: {} }]), /chunks\[0\]: chunk type 'image' is not supported/],
      [fb([rlDatum([...Array(40).keys()].map((i) => i % 20), new Array(39).fill(0), new Array(39).fill(1))]), /39 tokens; the model's context length is 32/],
      [fb([]), /forward_backward_input\.data/],
      [post('optim_step', { model_id: model, adam_params: { learning_rate: -1 } }), /adam_params\.learning_rate/],
    ];
    for (const [p, re] of cases) {
      const r = await p;
      expect(r.status, String(re)).toBe(400);
      expect(r.json.error, String(re)).toMatch(re);
      expect(r.json.category).toBe('user');
    }
    // Through the client, a 4xx is an error carrying the server's message.
    await expect(client.forwardBackward(model, [good], 'ppo', { beta: 1 })).rejects.toThrow(/loss_fn_config\.beta/);
  });
});

describe('losses, steps and weights', () => {
  it('forward_backward: per-position logprobs and the summed losses as defined; ppo clips, importance_sampling does not', async () => {
    const model = await newModel();
    const ids = [3, 4, 5, 6];
    // The current logprobs (forward: no gradient kept).
    const f = await client.forward(model, [datum(ids.slice(0, -1), { target_tokens: tensor(ids.slice(1), 'int64'), weights: tensor([1, 1, 1], 'float32') })], 'cross_entropy');
    const lp = f.loss_fn_outputs[0]!.logprobs!.data;
    expect(lp).toHaveLength(3);
    expect(f.metrics['loss:sum']).toBeCloseTo(-(lp[0]! + lp[1]! + lp[2]!), 5);
    // Behaviour logprobs 1 nat below the current ones: ratio e ≈ 2.718 > 1.2.
    const q = lp.map((l) => l - 1);
    const A = [0.5, -2, 1];
    const is = await client.forward(model, [rlDatum(ids, q, A)], 'importance_sampling');
    expect(is.metrics['loss:sum']).toBeCloseTo(-Math.E * (0.5 - 2 + 1), 4);
    const ppo = await client.forward(model, [rlDatum(ids, q, A)], 'ppo');
    // A > 0: clipped at 1.2·A; A < 0: the unclipped r·A is smaller.
    expect(ppo.metrics['loss:sum']).toBeCloseTo(-(1.2 * 0.5 + Math.E * -2 + 1.2 * 1), 4);
    expect(ppo.loss_fn_outputs[0]!.elementwise_loss!.data[1]).toBeCloseTo(2 * Math.E, 4);
    // Only clipped tokens: no gradient, so Adam's first step leaves the weights as they were.
    const before = await client.saveWeightsForSampler(model, 'before');
    await client.forwardBackward(model, [rlDatum(ids, q, [1, 1, 1])], 'ppo');
    const m1 = await client.optimStep(model, { learning_rate: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 0 });
    expect(m1.grad_norm).toBe(0);
    const after = await client.saveWeightsForSampler(model, 'after');
    expect(after).toBe(`tinker://${model}/sampler_weights/after`);
    const trainer = new TinkerTrainer({ client, modelId: model, model: base, optimizer: {} });
    expect(Array.from(await trainer.samplerWeights('after2'))).toEqual(Array.from(base.params));
    void before;
    // An unclipped token moves them.
    await client.forwardBackward(model, [rlDatum(ids, q, [0, -1, 0])], 'ppo');
    const m2 = await client.optimStep(model, { learning_rate: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-12, weight_decay: 0, grad_clip_norm: 0 });
    expect(m2.grad_norm).toBeGreaterThan(0);
    expect(Array.from(await trainer.samplerWeights('moved'))).not.toEqual(Array.from(base.params));
  });

  it('save_weights / load_weights restore weights and optimizer; sampler checkpoints cannot be loaded', async () => {
    const model = await newModel({ rank: 2, train_unembed: false, seed: 1 });
    const trainer = new TinkerTrainer({ client, modelId: model, model: base, optimizer: {} });
    const adam = { learning_rate: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0, grad_clip_norm: 1 };
    const step = async () => {
      await client.forwardBackward(model, [rlDatum([1, 2, 3, 4], [-3, -3, -3], [1, -1, 1])], 'importance_sampling');
      await client.optimStep(model, adam);
    };
    await step();
    const saved = await client.saveWeights(model, 'ck');
    expect(saved).toBe(`tinker://${model}/weights/ck`);
    await step();
    const w2 = await trainer.samplerWeights('two');
    await client.loadWeights(model, saved, true);
    await step();
    expect(Array.from(await trainer.samplerWeights('two-again'))).toEqual(Array.from(w2));
    await expect(client.saveWeights(model, 'ck')).rejects.toThrow(/exists; pass overwrite: true/);
    const sp = await client.saveWeightsForSampler(model, 's');
    await expect(client.loadWeights(model, sp, false)).rejects.toThrow(TinkerRequestFailedError);
    await expect(client.loadWeights(model, sp, false)).rejects.toThrow(/weights for sampling only/);
    // Sampling from a saved checkpoint by its path.
    const out = await client.sample({ prompt: [1, 2], modelPath: sp, params: { max_tokens: 4, seed: 1, temperature: 1 } });
    expect(out.sequences[0]!.tokens.length).toBe(out.sequences[0]!.logprobs!.length);
    expect((await post('asample', { prompt: { chunks: [{ type: 'encoded_text', tokens: [1] }] }, sampling_params: { max_tokens: 2 }, model_path: 'tinker://x/sampler_weights/none' })).status).toBe(404);
  });
});

describe('TinkerTrainer maps agentrl losses exactly', () => {
  /** Random samples: a prompt (untrained) and 3–6 trained tokens with behaviour logprobs near the policy's. */
  function samples(n: number, seed: number): Sample[] {
    const rng = new Rng(seed);
    return Array.from({ length: n }, (_, i) => {
      const L = 4 + Math.floor(rng.next() * 6);
      const ids = Array.from({ length: L }, () => Math.floor(rng.next() * CONFIG.vocabSize));
      const mask = ids.map((_, t) => (t >= 2 ? 1 : 0));
      return {
        seq: { ids, logprobs: ids.map((_, t) => (t >= 2 ? -3.2 + rng.next() - 0.5 : 0)), versions: ids.map(() => 0), mask, source: ids.map(() => 1 as const) },
        reward: 0, keys: {}, advantage: i % 3 === 0 ? ids.map(() => rng.next() * 2 - 1) : rng.next() * 2 - 1,
      } as Sample;
    });
  }

  it.each([
    { kind: 'reinforce', aggregation: 'seq-mean-token-mean' },
    { kind: 'ppo', dualClip: null, epsHigh: 0.28, aggregation: 'token-mean' },
    { kind: 'decoupled_ppo', dualClip: null, behavCap: 1.1, capMode: 'clamp', aggregation: 'seq-mean-token-sum' },
  ] as const)('$kind ($aggregation): the same weights and metrics as the built-in trainer over 2 batches', async (loss) => {
    const opt = { lr: 0.02, weightDecay: 0.01, gradClip: 0.5, schedule: 'linear', totalSteps: 10, warmupSteps: 1 } as const;
    const local = new Transformer(CONFIG, defaultBackend(), 0);
    local.params.set(base.params);
    const builtin = new InProcessTrainer(new BuiltinTrainer(local, opt));
    const remote = await createTinkerTrainer({ kind: 'tinker', url: server.url }, { model: base, optimizer: opt });
    expect(Array.from(await remote.initialWeights())).toEqual(Array.from(base.params));
    for (const b of [0, 1]) {
      const mbs = [samples(5, 10 * b + 1), samples(4, 10 * b + 2)];
      const x = await builtin.train(mbs, loss);
      const y = await remote.train(mbs, loss);
      expect(y.version).toBe(x.version);
      expect(Array.from(y.weights)).toEqual(Array.from(x.weights));
      for (const k of ['loss', 'pgLoss', 'clipFrac', 'approxKl', 'ratioMean', 'cappedFrac', 'behavWeightMean', 'lr', 'tokens', 'gradNorm']) {
        expect(y.metrics[k], k).toBeCloseTo(x.metrics[k]!, 6);
      }
      expect(y.metrics.serviceLoss).toBeCloseTo(x.metrics.loss!, 5);
    }
    await remote.close();
  });

  it('refuses what Tinker cannot express, naming the fix', async () => {
    expect(() => tinkerLossPlan({ kind: 'ppo' })).toThrow(/loss\.dualClip is 3.*set loss\.dualClip: null/);
    expect(() => tinkerLossPlan({ kind: 'ppo', dualClip: null, entropyCoef: 0.02 })).toThrow(/set loss\.entropyCoef: 0/);
    expect(() => tinkerLossPlan({ kind: 'reinforce', klCoef: 0.1 })).toThrow(/set loss\.klCoef: 0/);
    expect(tinkerLossPlan({ kind: 'ppo', dualClip: null, epsLow: 0.1, epsHigh: 0.3 })).toMatchObject({ lossFn: 'ppo', lossFnConfig: { clip_low_threshold: 0.9, clip_high_threshold: 1.3 } });
    expect(tinkerLossPlan({ kind: 'reinforce' }).lossFn).toBe('cross_entropy');
    const remote = new TinkerTrainer({ client, modelId: 'unused', model: base, optimizer: {} });
    const s = samples(1, 3)[0]!;
    await expect(remote.train([[{ ...s, temperature: 0.7 }]], { kind: 'reinforce' })).rejects.toThrow(/temperature 0\.7.*temperature 1/);
    const masks = s.seq.ids.map((_, t) => (t === 3 ? new Uint8Array(CONFIG.vocabSize).fill(1) : null));
    await expect(remote.train([[{ ...s, seq: { ...s.seq, constraintMasks: masks } }]], { kind: 'reinforce' })).rejects.toThrow(/token masks.*trial\.constrained: false/);
    await expect(createTinkerTrainer({ kind: 'tinker', url: server.url, lora: { rank: 0 } } as never, { model: base, optimizer: {} })).rejects.toThrow(/trainerService\.lora\.rank/);
  });
});
