/**
 * The RL control endpoints of `agentrl serve inference` against a live server (in process, so the
 * test can see the engine's counters): pause abort / wait / keep (vLLM) and abort / in_place
 * (SGLang), abort by request id, sleep and wake-up, weight updates from a weight directory (between
 * requests, in the middle of a long generation, and with abort_all_requests), and a client that
 * disconnects. Tokens are checked against an in-process engine holding the same weights: what a
 * request returns after a pause, an abort or an update is exactly what the engine sampled.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeWeightsDir } from '../src/engine/remote/weights-dir.ts';
import { Transformer } from '../src/engine/model.ts';
import { continuationSeed } from '../src/serve/inference-control.ts';
import { backend, CFG, get, maxAbsDiff, post, referenceEngine, serveTiny, tinyModel, until, type Served } from './fixtures/serve-inference/setup.ts';

const scratch = mkdtempSync(join(tmpdir(), 'agentrl-serve-control-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let s: Served;
afterEach(async () => {
  await s?.server.close();
});

const PROMPT = [5, 9, 2, 17];

/** Settles-flag wrapper: lets a test assert that a request has not been answered yet. */
function track<T>(p: Promise<T>): { p: Promise<T>; done: () => boolean } {
  let settled = false;
  const q = p.finally(() => {
    settled = true;
  });
  return { p: q, done: () => settled };
}

/**
 * Make each decode step take ≥ 1 ms, so that a generation of a few hundred tokens outlasts reading a
 * weight directory (the tiny model alone decodes faster than the file is read).
 */
function slowDecode(model: Transformer): void {
  const decode = model.decode.bind(model);
  model.decode = (...args: Parameters<Transformer['decode']>) => {
    const t0 = performance.now();
    while (performance.now() - t0 < 1);
    return decode(...args);
  };
}

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per-token logprobs of `ids` after `prompt` under `model` at temperature `temp` (one full forward). */
function forwardLogprobs(model: Transformer, prompt: number[], ids: number[], temp = 1): number[] {
  const seq = [...prompt, ...ids], T = seq.length - 1;
  const tokens = Int32Array.from(seq.slice(0, T));
  const targets = Int32Array.from({ length: T }, (_, t) => (t >= prompt.length - 1 ? seq[t + 1]! : -1));
  const { logprobs } = model.forward({ B: 1, T, tokens, targets, masks: null, temperature: temp });
  return ids.map((_, i) => logprobs[prompt.length - 1 + i]!);
}

describe('pause and resume', () => {
  it('pause?mode=abort answers an in-flight request at once with finish_reason abort and the tokens (and logprobs) sampled so far; new requests wait for /resume', async () => {
    s = await serveTiny();
    const base = s.engine.stats.tokensSampled;
    const long = post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 400, seed: 4, logprobs: 0, return_token_ids: true });
    await until(() => s.engine.stats.tokensSampled >= base + 20, 'generation started');
    expect((await post(`${s.url}/pause?mode=abort`, null)).json).toEqual({ status: 'paused' });
    const r = await long;
    const c = r.json.choices[0];
    expect(c.finish_reason).toBe('abort');
    const k = c.token_ids.length;
    expect(k).toBeGreaterThanOrEqual(20);
    expect(k).toBeLessThan(400);
    const ref = await referenceEngine(s.model.params).generate(PROMPT, { maxTokens: 400, seed: 4 });
    expect(c.token_ids).toEqual(ref.ids.slice(0, k));
    expect(maxAbsDiff(c.logprobs.token_logprobs, ref.logprobs.slice(0, k))).toBeLessThanOrEqual(1e-6);
    expect((await get(`${s.url}/is_paused`)).json).toEqual({ is_paused: true });
    const late = track(post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 3, seed: 4 }));
    await sleepMs(50);
    expect(late.done()).toBe(false);
    expect((await get(`${s.url}/load`)).json).toEqual({ server_load: 1 });
    // Pausing again aborts what is in flight, not what waits for its first start.
    await post(`${s.url}/pause?mode=abort`, null);
    await sleepMs(20);
    expect(late.done()).toBe(false);
    expect((await post(`${s.url}/resume`, null)).json).toEqual({ status: 'resumed' });
    expect((await late.p).json.choices[0].finish_reason).toBe('length');
    expect((await get(`${s.url}/is_paused`)).json).toEqual({ is_paused: false });
  });

  it('pause?mode=keep freezes an in-flight request (the engine stops sampling); /resume continues it from its tokens with the remaining budget', async () => {
    s = await serveTiny();
    const base = s.engine.stats.tokensSampled;
    const long = track(post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 300, seed: 4, logprobs: 0, return_token_ids: true }));
    await until(() => s.engine.stats.tokensSampled >= base + 20, 'generation started');
    await post(`${s.url}/pause?mode=keep`, null);
    const frozen = s.engine.stats.tokensSampled;
    const k = frozen - base;
    await sleepMs(60);
    expect(s.engine.stats.tokensSampled).toBe(frozen);
    expect(s.engine.load()).toEqual({ active: 0, queued: 0 });
    expect(long.done()).toBe(false);
    expect((await get(`${s.url}/load`)).json).toEqual({ server_load: 1 });
    await post(`${s.url}/resume`, null);
    const c = (await long.p).json.choices[0];
    expect(c.finish_reason).toBe('length');
    expect(c.token_ids).toHaveLength(300);
    // First part: the frozen tokens as sampled; second: the continuation AReaL-style (prompt + tokens so far, remaining budget, derived seed).
    const ref = referenceEngine(s.model.params);
    const before = await ref.generate(PROMPT, { maxTokens: 300, seed: 4 });
    expect(c.token_ids.slice(0, k)).toEqual(before.ids.slice(0, k));
    const after = await ref.generate([...PROMPT, ...c.token_ids.slice(0, k)], { maxTokens: 300 - k, seed: continuationSeed(4, k) });
    expect(c.token_ids.slice(k)).toEqual(after.ids);
    expect(maxAbsDiff(c.logprobs.token_logprobs, [...before.logprobs.slice(0, k), ...after.logprobs])).toBeLessThanOrEqual(1e-6);
  });

  it('pause?mode=wait returns once in-flight requests have finished; requests arriving meanwhile run after /resume', async () => {
    s = await serveTiny();
    const base = s.engine.stats.tokensSampled;
    const long = track(post(`${s.url}/inference/v1/generate`, { token_ids: PROMPT, sampling_params: { max_tokens: 150, seed: 2 } }));
    await until(() => s.engine.stats.tokensSampled >= base + 5, 'generation started');
    const pause = track(post(`${s.url}/pause?mode=wait`, null));
    await until(() => s.server.control.isPaused(), 'paused');
    expect(long.done()).toBe(false);
    const late = track(post(`${s.url}/inference/v1/generate`, { token_ids: PROMPT, sampling_params: { max_tokens: 2 } }));
    await until(() => s.server.control.inFlight() === 2, 'late request accepted');
    await pause.p;
    // When the pause returns the long request is done and nothing runs; the late one waits.
    expect(s.engine.stats.tokensSampled).toBe(base + 150);
    expect(s.engine.load()).toEqual({ active: 0, queued: 0 });
    expect(s.server.control.inFlight()).toBe(1);
    const c = (await long.p).json.choices[0];
    expect(c.finish_reason).toBe('length');
    expect(c.token_ids).toHaveLength(150);
    await sleepMs(30);
    expect(late.done()).toBe(false);
    await post(`${s.url}/resume`, null);
    expect((await late.p).json.choices[0].token_ids).toHaveLength(2);
  });

  it('SGLang /pause_generation {mode: in_place} freezes and /continue_generation continues; {mode: abort} aborts with finish_reason {type: abort}', async () => {
    s = await serveTiny();
    let base = s.engine.stats.tokensSampled;
    const kept = track(post(`${s.url}/generate`, { input_ids: PROMPT, rid: 'kept', sampling_params: { max_new_tokens: 200, seed: 8 } }));
    await until(() => s.engine.stats.tokensSampled >= base + 10, 'generation started');
    expect((await post(`${s.url}/pause_generation`, { mode: 'in_place' })).status).toBe(200);
    const frozen = s.engine.stats.tokensSampled;
    await sleepMs(40);
    expect(s.engine.stats.tokensSampled).toBe(frozen);
    expect(kept.done()).toBe(false);
    await post(`${s.url}/continue_generation`, {});
    const k = await kept.p;
    expect(k.json.meta_info.finish_reason).toEqual({ type: 'length', length: 200 });
    base = s.engine.stats.tokensSampled;
    const aborted = post(`${s.url}/generate`, { input_ids: PROMPT, rid: 'gone', return_logprob: true, sampling_params: { max_new_tokens: 400, seed: 8 } });
    await until(() => s.engine.stats.tokensSampled >= base + 10, 'generation started');
    await post(`${s.url}/pause_generation`, { mode: 'abort' });
    const a = (await aborted).json;
    expect(a.meta_info.finish_reason.type).toBe('abort');
    expect(a.meta_info.finish_reason.message).toMatch(/paused/);
    expect(a.output_ids.length).toBeGreaterThanOrEqual(10);
    expect(a.meta_info.output_token_logprobs).toHaveLength(a.output_ids.length);
    await post(`${s.url}/continue_generation`, {});
  });
});

describe('abort by request id', () => {
  it('SGLang /abort_request {rid} aborts that request only; vLLM /abort_requests {request_ids} likewise, and without ids aborts all', async () => {
    s = await serveTiny();
    let base = s.engine.stats.tokensSampled;
    const a = post(`${s.url}/generate`, { input_ids: PROMPT, rid: 'r-a', sampling_params: { max_new_tokens: 400, seed: 1 } });
    const b = post(`${s.url}/generate`, { input_ids: PROMPT, rid: 'r-b', sampling_params: { max_new_tokens: 60, seed: 2 } });
    await until(() => s.engine.stats.tokensSampled >= base + 20, 'both running');
    expect((await post(`${s.url}/abort_request`, { rid: 'r-a' })).json).toEqual({ success: true, num_aborted: 1 });
    const ra = (await a).json, rb = (await b).json;
    expect(ra.meta_info.finish_reason.type).toBe('abort');
    expect(ra.output_ids.length).toBeLessThan(400);
    expect(rb.meta_info.finish_reason).toEqual({ type: 'length', length: 60 });
    expect((await post(`${s.url}/abort_request`, {})).status).toBe(400);

    base = s.engine.stats.tokensSampled;
    const c = post(`${s.url}/inference/v1/generate`, { token_ids: PROMPT, request_id: 'c1', sampling_params: { max_tokens: 400 } });
    const d = post(`${s.url}/inference/v1/generate`, { token_ids: PROMPT, request_id: 'd1', sampling_params: { max_tokens: 60 } });
    await until(() => s.engine.stats.tokensSampled >= base + 20, 'both running');
    expect((await post(`${s.url}/abort_requests`, { request_ids: ['c1'] })).json).toEqual({ status: 'ok', num_aborted: 1 });
    expect((await c).json.choices[0].finish_reason).toBe('abort');
    expect((await d).json.choices[0].finish_reason).toBe('length');
    base = s.engine.stats.tokensSampled;
    const e = post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 400, request_id: 'e1' });
    const f = post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 400, request_id: 'f1' });
    await until(() => s.engine.stats.tokensSampled >= base + 20, 'both running');
    expect((await post(`${s.url}/abort_requests`, {})).json.num_aborted).toBe(2);
    expect([(await e).json.choices[0].finish_reason, (await f).json.choices[0].finish_reason]).toEqual(['abort', 'abort']);
  });

  it('a client that disconnects aborts its request in the engine', async () => {
    s = await serveTiny();
    const base = s.engine.stats.tokensSampled;
    const ctl = new AbortController();
    const req = fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: PROMPT, max_tokens: 450 }), signal: ctl.signal });
    await until(() => s.engine.stats.tokensSampled >= base + 10, 'generation started');
    ctl.abort();
    await expect(req).rejects.toThrow();
    await until(() => s.server.control.inFlight() === 0 && s.engine.load().active === 0, 'request aborted');
    const after = s.engine.stats.tokensSampled;
    await sleepMs(30);
    expect(s.engine.stats.tokensSampled).toBe(after);
    expect(after - base).toBeLessThan(450);
  });
});

describe('sleep and wake-up', () => {
  it('vLLM /sleep aborts in-flight requests and refuses new ones with 503 until every tag is woken up; SGLang release/resume_memory_occupation likewise', async () => {
    s = await serveTiny();
    const base = s.engine.stats.tokensSampled;
    const long = post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 400 });
    await until(() => s.engine.stats.tokensSampled >= base + 5, 'generation started');
    expect((await post(`${s.url}/sleep?level=1`, null)).status).toBe(200);
    expect((await long).json.choices[0].finish_reason).toBe('abort');
    expect((await get(`${s.url}/is_sleeping`)).json).toEqual({ is_sleeping: true });
    const refused = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 2 });
    expect(refused.status).toBe(503);
    expect(refused.json.error.message).toMatch(/sleeping.*wake_up/);
    await post(`${s.url}/wake_up?tags=weights`, null);
    expect((await get(`${s.url}/is_sleeping`)).json).toEqual({ is_sleeping: true });
    expect((await post(`${s.url}/generate`, { input_ids: PROMPT })).status).toBe(503);
    await post(`${s.url}/wake_up?tags=kv_cache`, null);
    expect((await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 2 })).status).toBe(200);
    expect((await post(`${s.url}/sleep?level=3`, null)).status).toBe(400);
    expect((await post(`${s.url}/wake_up?tags=gpu`, null)).status).toBe(400);

    expect((await post(`${s.url}/release_memory_occupation`, {})).json.success).toBe(true);
    expect((await post(`${s.url}/generate`, { input_ids: PROMPT })).status).toBe(503);
    expect((await post(`${s.url}/resume_memory_occupation`, { tags: ['weights', 'kv_cache'] })).json.success).toBe(true);
    expect((await post(`${s.url}/generate`, { input_ids: PROMPT, sampling_params: { max_new_tokens: 2 } })).status).toBe(200);
  });
});

describe('update_weights_from_disk', () => {
  it('loads a weight directory: later samples are those of an in-process engine holding the new weights, and every response reports the new version', async () => {
    s = await serveTiny(3);
    const before = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 10, seed: 42, logprobs: 0, return_token_ids: true });
    const fresh = tinyModel(21);
    const dir = join(scratch, 'v7');
    await writeWeightsDir(dir, fresh, { version: 7 });
    const u = await post(`${s.url}/update_weights_from_disk`, { model_path: dir });
    expect(u.status).toBe(200);
    expect(u.json).toMatchObject({ success: true, num_paused_requests: 0, weight_version: 7 });
    expect(u.json.message).toContain(dir);
    expect((await get(`${s.url}/get_weight_version`)).json).toEqual({ weight_version: 7 });
    const r = await post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 10, seed: 42, logprobs: 0, return_token_ids: true });
    const ref = await referenceEngine(fresh.params, 7).generate(PROMPT, { maxTokens: 10, seed: 42 });
    const c = r.json.choices[0];
    expect(c.token_ids).toEqual(ref.ids);
    expect(maxAbsDiff(c.logprobs.token_logprobs, ref.logprobs)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(c.logprobs.token_logprobs, before.json.choices[0].logprobs.token_logprobs)).toBeGreaterThan(1e-3);
    expect(c.token_versions).toEqual(Array(10).fill(7));
    expect(r.json.weight_version).toBe(7);
    const sg = await post(`${s.url}/generate`, { input_ids: PROMPT, sampling_params: { max_new_tokens: 2 } });
    expect(sg.json.meta_info.weight_version).toBe(7);
    // An explicit weight_version wins over the directory's.
    expect((await post(`${s.url}/update_weights_from_disk`, { model_path: dir, weight_version: '9' })).json.weight_version).toBe(9);
  });

  it('fails with 400 and success: false for a missing directory, weights of another model (naming the field) and a non-integer version; the old weights stay', async () => {
    s = await serveTiny(3);
    const missing = await post(`${s.url}/update_weights_from_disk`, { model_path: join(scratch, 'absent') });
    expect(missing.status).toBe(400);
    expect(missing.json).toMatchObject({ success: false, num_paused_requests: 0 });
    expect(missing.json.message).toMatch(/absent.*config\.json is missing/);
    const wide = join(scratch, 'wide');
    await writeWeightsDir(wide, new Transformer({ ...CFG, positions: 'rope', nEmbd: 24 }, backend, 1), { version: 2 });
    const mismatch = await post(`${s.url}/update_weights_from_disk`, { model_path: wide });
    expect(mismatch.status).toBe(400);
    expect(mismatch.json.message).toMatch(/written for another model than this one: .*nEmbd is 16, expected 24/);
    const ok = join(scratch, 'ok');
    await writeWeightsDir(ok, tinyModel(4), { version: 2 });
    const badVersion = await post(`${s.url}/update_weights_from_disk`, { model_path: ok, weight_version: 'v2' });
    expect(badVersion.status).toBe(400);
    expect(badVersion.json.message).toMatch(/weight_version must be an integer/);
    expect((await post(`${s.url}/update_weights_from_disk`, {})).status).toBe(400);
    expect((await get(`${s.url}/get_weight_version`)).json).toEqual({ weight_version: 0 });
  });

  it('in the middle of a long generation: the request continues under the new weights; each token reports its version and its logprob is that of its version\'s weights', async () => {
    s = await serveTiny(3);
    const old = tinyModel(3), fresh = tinyModel(21);
    const dir = join(scratch, 'mid');
    await writeWeightsDir(dir, fresh, { version: 5 });
    slowDecode(s.model);
    const base = s.engine.stats.tokensSampled;
    const long = post(`${s.url}/v1/completions`, { prompt: PROMPT, max_tokens: 200, seed: 4, logprobs: 0, return_token_ids: true });
    await until(() => s.engine.stats.tokensSampled >= base + 30, 'generation started');
    const u = await post(`${s.url}/update_weights_from_disk`, { model_path: dir });
    expect(u.json).toMatchObject({ success: true, num_paused_requests: 1 });
    const c = (await long).json.choices[0];
    expect(c.finish_reason).toBe('length');
    expect(c.token_ids).toHaveLength(200);
    const switchAt = c.token_versions.indexOf(5);
    expect(switchAt).toBeGreaterThanOrEqual(30);
    expect(c.token_versions).toEqual([...Array(switchAt).fill(0), ...Array(200 - switchAt).fill(5)]);
    const ref = await referenceEngine(old.params).generate(PROMPT, { maxTokens: 200, seed: 4 });
    expect(c.token_ids.slice(0, switchAt)).toEqual(ref.ids.slice(0, switchAt));
    const lpOld = forwardLogprobs(old, PROMPT, c.token_ids), lpNew = forwardLogprobs(fresh, PROMPT, c.token_ids);
    const expected = c.token_versions.map((v: number, i: number) => (v === 0 ? lpOld[i]! : lpNew[i]!));
    expect(maxAbsDiff(c.logprobs.token_logprobs, expected)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(c.logprobs.token_logprobs.slice(switchAt), lpOld.slice(switchAt))).toBeGreaterThan(1e-3);
  });

  it('abort_all_requests aborts in-flight requests (their tokens keep the old version) before loading', async () => {
    s = await serveTiny(3);
    const dir = join(scratch, 'abort-all');
    await writeWeightsDir(dir, tinyModel(21), { version: 8 });
    slowDecode(s.model);
    const base = s.engine.stats.tokensSampled;
    const long = post(`${s.url}/generate`, { input_ids: PROMPT, return_logprob: true, sampling_params: { max_new_tokens: 400, seed: 4 } });
    await until(() => s.engine.stats.tokensSampled >= base + 10, 'generation started');
    const u = await post(`${s.url}/update_weights_from_disk`, { model_path: dir, abort_all_requests: true });
    expect(u.json).toMatchObject({ success: true, num_paused_requests: 0, weight_version: 8 });
    const r = (await long).json;
    expect(r.meta_info.finish_reason).toEqual({ type: 'abort', message: 'aborted for a weight update' });
    expect(r.meta_info.output_token_versions.every((v: number) => v === 0)).toBe(true);
    const next = await post(`${s.url}/generate`, { input_ids: PROMPT, sampling_params: { max_new_tokens: 3 } });
    expect(next.json.meta_info.output_token_versions).toEqual([8, 8, 8]);
  });
});
