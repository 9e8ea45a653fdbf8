/**
 * End to end: the vLLM and the SGLang client drive TWO `agentrl serve inference` processes through
 * the RemoteEngine —
 *   (a) one meta-RL iteration: a Trainer step of bandit MAGE trials (3 episodes, unconstrained) with
 *       an in-process trainer; the new weights are written, loaded by both servers and served;
 *   (b) an asynchronous-trainer step (maxStaleness 1, decoupled PPO) whose weight update lands while
 *       generations are in flight: interrupted requests are re-sent with their partial tokens, some
 *       trajectory holds tokens of two versions, both servers served requests, and every behaviour
 *       logprob equals the one recomputed locally with the weights of the version it claims.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildMetaSetup } from '../src/train/meta-setup.ts';
import { saveTrainerCheckpoint } from '../src/train/trainer-checkpoint.ts';
import { selectBackend } from '../src/engine/backends.ts';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { InProcessTrainer } from '../src/train/policy-trainer.ts';
import { Trainer, versionSpread } from '../src/train/trainer.ts';
import type { ConsumedGroup } from '../src/train/rollout-controller.ts';
import { trialSource } from '../src/train/trial-source.ts';
import { trialWorkflow, type TrialItem } from '../src/agents/trial.ts';
import { mixSeed } from '../src/envs/rng.ts';
import { RemoteEngine } from '../src/engine/remote/remote-engine.ts';
import { VllmClient } from '../src/engine/remote/vllm-client.ts';
import { SglangClient } from '../src/engine/remote/sglang-client.ts';
import type { InferenceServerClient, ServerGenerateRequest, ServerGenerateResult } from '../src/engine/remote/server-client.ts';
import type { RequestOptions } from '../src/engine/remote/http.ts';
import { appendCompletion, appendContext, emptySeq, TokenSource, type Sample, type Trajectory } from '../src/core/types.ts';
import type { RolloutWorkflow } from '../src/core/workflow.ts';
import type { Tokenizer } from '../src/engine/types.ts';
import { recording } from './helpers/recording-trainer.ts';

const backend = selectBackend();
const MODEL: Omit<ModelConfigInput, 'vocabSize'> = { contextLength: 256, nLayer: 1, nHead: 2, nEmbd: 16 };
const OPT = { lr: 1e-2, weightDecay: 0 };
const SEED = 3;
/** Tokens of each call of the asynchronous test's workflow (EOS is improbable: calls run to this). */
const CALL_TOKENS = 240;
/**
 * Most steps the asynchronous test takes to see an update cut a generation that is then trained
 * (see there). Each step is well under a second; how many it takes depends on the machine's timing
 * (2–4 on a loaded 2-core machine; with 120-token calls and a narrower window CI once ran out at 6).
 */
const MAX_STEPS = 20;
const TRIAL = { episodes: 3, contextMode: 'history_only', reflect: false, stateMode: 'same_state', maxTurns: 1, rules: 'none', pastEpisodes: 'outcome', constrained: false } as const;

/**
 * The same policy every time: a fresh trainer (and tokenizer) from one seed, whose EOS is made
 * improbable (final-norm bias 1, EOS embedding −1: its logit is about −nEmbd), so that generations
 * run to their budget and are still in flight when a weight update comes.
 */
function newSetup() {
  const setup = buildMetaSetup({ env: 'bandit', opponents: ['none'], model: MODEL, optimizer: OPT, seed: SEED, backend, outcomeTokens: true, maxBatch: 4 });
  const m = setup.trainer.model;
  const C = m.config.nEmbd;
  m.view(m.params, 'lnf.b').fill(1);
  m.view(m.params, 'wte').subarray(setup.tokenizer.eosId * C, (setup.tokenizer.eosId + 1) * C).fill(-1);
  return setup;
}

let tmp = '';
const servers: { proc: ChildProcess; url: string }[] = [];

/** Start `agentrl serve inference --checkpoint DIR --port 0` and read its `listening on URL` line. */
function startServer(checkpoint: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', 'inference', '--checkpoint', checkpoint, '--port', '0', '--max-batch', '16'], {
    env: { ...process.env, AGENTRL_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    const timer = setTimeout(() => reject(new Error(`serve inference did not start in 60 s: ${out}${err}`)), 60_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1]! });
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('exit', (code) => reject(new Error(`serve inference exited with ${code}: ${err}`)));
  });
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'agentrl-remote-e2e-'));
  const setup = newSetup();
  await saveTrainerCheckpoint(join(tmp, 'checkpoint'), setup.trainer, { tokenizer: setup.tokenizer, rng: {}, trainerState: null });
  servers.push(...(await Promise.all([0, 1].map(() => startServer(join(tmp, 'checkpoint'))))));
}, 90_000);

afterAll(async () => {
  await Promise.all(servers.map(({ proc }) => new Promise<void>((r) => {
    if (proc.exitCode !== null) return r();
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => {
      clearTimeout(kill);
      r();
    });
    proc.kill('SIGTERM');
  })));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface GenerateRecord {
  url: string;
  req: ServerGenerateRequest;
  start: number;
  end: number | null;
  result: ServerGenerateResult | null;
}

/** Delegates to a real client and records every generate call. */
class RecordingClient implements InferenceServerClient {
  constructor(private readonly inner: InferenceServerClient, private readonly log: GenerateRecord[]) {}
  get kind() { return this.inner.kind; }
  get url() { return this.inner.url; }
  async generate(req: ServerGenerateRequest, opts: RequestOptions): Promise<ServerGenerateResult> {
    const rec: GenerateRecord = { url: this.url, req, start: performance.now(), end: null, result: null };
    this.log.push(rec);
    try {
      rec.result = await this.inner.generate(req, opts);
      return rec.result;
    } finally {
      rec.end = performance.now();
    }
  }
  pause(o: RequestOptions) { return this.inner.pause(o); }
  resume(o: RequestOptions) { return this.inner.resume(o); }
  abort(ids: readonly string[] | 'all', o: RequestOptions) { return this.inner.abort(ids, o); }
  loadWeights(p: string, v: number, o: RequestOptions) { return this.inner.loadWeights(p, v, o); }
  sleep(l: 1 | 2, o: RequestOptions) { return this.inner.sleep(l, o); }
  wakeUp(t: readonly ('weights' | 'kv_cache')[] | undefined, o: RequestOptions) { return this.inner.wakeUp(t, o); }
  weightVersion(o: RequestOptions) { return this.inner.weightVersion(o); }
}

/** A RemoteEngine over both servers that first makes them serve `params` as version 0 (a previous test may have trained them). */
async function remoteEngine(kind: 'vllm' | 'sglang', tokenizer: Tokenizer, model: Transformer, log: GenerateRecord[]): Promise<RemoteEngine> {
  const clients = servers.map(({ url }) => new RecordingClient(kind === 'vllm' ? new VllmClient(url) : new SglangClient(url), log));
  const engine = new RemoteEngine({
    servers: clients, tokenizer, contextLength: model.config.contextLength, timeoutMs: 30_000, controlTimeoutMs: 30_000, retries: 1,
    weightSync: { dir: join(tmp, `weights-${kind}-${Math.random().toString(36).slice(2)}`), model: new Transformer(model.config, backend) },
  });
  await engine.syncWeights(Float32Array.from(model.params), 0);
  return engine;
}

/**
 * Every model token's behaviour logprob against the logprob recomputed by a local transformer with
 * the weights of the version the token claims. Returns the largest gap and the tokens compared per version.
 */
function logprobGap(samples: Sample[], config: ModelConfigInput, weights: Map<number, Float32Array>): { worst: number; perVersion: Map<number, number> } {
  const perVersion = new Map<number, number>();
  for (const s of samples) s.seq.ids.forEach((_, t) => {
    if (s.seq.source[t] === TokenSource.model) perVersion.set(s.seq.versions[t]!, (perVersion.get(s.seq.versions[t]!) ?? 0) + 1);
  });
  let worst = 0;
  for (const v of perVersion.keys()) {
    const w = weights.get(v);
    if (!w) throw new Error(`a token claims version ${v}, whose weights were never published`);
    const t = new BuiltinTrainer(new Transformer(config, backend));
    t.model.params.set(w);
    const lp = t.computeLogprobs(samples);
    samples.forEach((s, i) => s.seq.ids.forEach((_, j) => {
      if (s.seq.source[j] === TokenSource.model && s.seq.versions[j] === v) worst = Math.max(worst, Math.abs(s.seq.logprobs[j]! - lp[i]![j]!));
    }));
  }
  return { worst, perVersion };
}

/** The request id of a generate call without its `-<part>` suffix: the parts of one generate call share it. */
const callId = (r: GenerateRecord) => r.req.requestId.replace(/-\d+$/, '');

describe.each(['vllm', 'sglang'] as const)('%s client against two agentrl serve inference processes', (kind) => {
  it('runs a meta-RL iteration: a Trainer step of bandit MAGE trials, the new weights loaded by both servers', async () => {
    const setup = newSetup();
    const log: GenerateRecord[] = [];
    const remote = await remoteEngine(kind, setup.tokenizer, setup.trainer.model, log);
    try {
      const { trainer, weights } = recording(new InProcessTrainer(setup.trainer), setup.trainer.model.params);
      let batch: Sample[] = [];
      const loop = new Trainer<TrialItem>({
        config: {
          steps: 1, batchSize: 2, groupSize: 4, maxStaleness: 0,
          credit: { kind: 'mage', gammaStep: 0.95, gammaTrial: 0.6, invalidCoef: 0.5 }, advantage: { estimator: 'gigpo', mode: 'mean_norm' }, loss: { kind: 'ppo', entropyCoef: 0.02 },
        },
        engine: remote, trainer, source: trialSource(mixSeed(SEED, 0x50c), [{ name: 'none', weight: 1 }]), workflow: trialWorkflow(remote, setup.makeEnv, TRIAL),
        onBatch: (s) => (batch = s),
      });
      const res = await loop.run();
      const m = res.steps[0]!;
      expect(m.trajectories).toBe(8);
      expect(m.samples).toBe(8 * 3); // 3 episodes of one pull, no reflections
      expect(m.episodeReward).toHaveLength(3);
      expect(Number.isFinite(m.loss)).toBe(true);
      // Synchronous: every token sampled by version 0, its logprob exactly the local model's.
      const gap = logprobGap(batch, setup.trainer.model.config, weights);
      expect([...gap.perVersion.keys()]).toEqual([0]);
      expect(gap.perVersion.get(0)!).toBeGreaterThan(8 * 3);
      expect(gap.worst).toBeLessThan(1e-4);
      // Completions are the servers' ids decoded here; the play text parses as actions.
      expect(batch.every((s) => s.step?.kind === 'play')).toBe(true);
      // Routing: both servers generated.
      expect(new Set(log.map((r) => r.url)).size).toBe(2);
      for (const s of remote.serverStatus()) expect(s.requests).toBeGreaterThan(0);
      // The step's weights went to both servers.
      await remote.weightsSynced();
      expect(remote.version()).toBe(1);
      const client = (url: string) => (kind === 'vllm' ? new VllmClient(url) : new SglangClient(url));
      expect(await Promise.all(servers.map(({ url }) => client(url).weightVersion({ timeoutMs: 5000 })))).toEqual([1, 1]);
      expect(weights.get(1)).not.toEqual(weights.get(0));
      // …and the servers now sample with them: a fresh generation matches version 1's logprobs.
      const prompt = setup.tokenizer.encode('| trial 1 of 3 | now moves none | ->');
      const c = await remote.generate(prompt, { maxTokens: 8, temperature: 1 });
      expect(c.versions.every((v) => v === 1)).toBe(true);
      const seq = emptySeq();
      appendContext(seq, prompt);
      appendCompletion(seq, c);
      expect(logprobGap([{ seq, reward: 0, keys: {}, temperature: 1 }], setup.trainer.model.config, weights).worst).toBeLessThan(1e-4);
    } finally {
      await remote.close();
    }
  }, 60_000);

  it('runs an asynchronous step (η = 1, decoupled PPO) with a weight update in the middle of generations', async () => {
    const setup = newSetup();
    const log: GenerateRecord[] = [];
    const remote = await remoteEngine(kind, setup.tokenizer, setup.trainer.model, log);
    try {
      // Groups 0, 1 make one call per trajectory, groups 2, 3 six: the first batch (0, 1) is ready
      // while 2, 3 are still generating, and the first weight update interrupts them.
      const items = function* (): Generator<{ calls: number; seed: number }> {
        for (let i = 0; ; i++) yield { calls: i % 4 < 2 ? 1 : 6, seed: i };
      };
      const V = setup.tokenizer.vocabSize;
      const workflow: RolloutWorkflow<{ calls: number; seed: number }> = async (item, ctx) => {
        const samples: Sample[] = [];
        let reward = 0;
        for (let k = 0; k < item.calls; k++) {
          const prompt = [2 + ((item.seed * 7 + k) % (V - 2)), 2 + ((item.seed + 3 * k) % (V - 2)), 5];
          const c = await remote.generate(prompt, { maxTokens: CALL_TOKENS, temperature: 1, signal: ctx.signal, affinity: `${ctx.groupId}/${ctx.member}` });
          const seq = emptySeq();
          appendContext(seq, prompt);
          appendCompletion(seq, c);
          const r = c.ids.filter((id) => id % 3 === 0).length / Math.max(1, c.ids.length);
          reward += r;
          samples.push({ seq, reward: r, keys: { group: ctx.groupId }, temperature: 1 });
        }
        return { id: `${ctx.groupId}/${ctx.member}`, groupId: ctx.groupId, samples, reward, info: {} };
      };
      // Let each update land early in a generation: the trainer answers once a request sent after
      // training has been in flight for a fifth to three quarters of the time a whole call takes on these
      // servers now (measured from the calls done so far), so it has sampled tokens and is far from
      // done. Only requests sent after training count: training blocked the event loop, so earlier
      // ones may have been sent late, or be done with their answers unread.
      const midGeneration = async () => {
        if (log.some((r) => r.result?.finishReason === 'abort' && r.result.ids.length > 0)) return; // done already
        await new Promise((r) => setTimeout(r, 5));
        const free = performance.now();
        const whole = log.filter((r) => r.end !== null && r.result?.finishReason === 'length' && r.req.maxTokens === CALL_TOKENS).map((r) => r.end! - r.start).sort((a, b) => a - b);
        const call = whole.length > 0 ? whole[whole.length >> 1]! : 200;
        const young = (r: GenerateRecord) => r.end === null && r.start >= free && performance.now() - r.start >= call / 5 && performance.now() - r.start <= (3 * call) / 4;
        while (!log.some(young) && performance.now() - free < 2000) await new Promise((r) => setTimeout(r, 1));
      };
      const { trainer, weights } = recording(new InProcessTrainer(setup.trainer), setup.trainer.model.params, midGeneration);
      const batches: { samples: Sample[]; groups: ConsumedGroup<{ calls: number; seed: number }>[] }[] = [];
      const loop = new Trainer({
        config: { steps: MAX_STEPS, batchSize: 2, groupSize: 2, maxStaleness: 1, loss: { kind: 'decoupled_ppo' } },
        engine: remote, trainer, source: items(), workflow,
        onBatch: (samples, groups) => batches.push({ samples, groups }),
      });

      /**
       * Interrupted requests (answered 'abort' with partial tokens) were re-sent as prompt + those
       * tokens with the remaining budget, and a trained completion is the partial tokens followed by
       * the continuation, each part with its version. Returns how many such completions were trained.
       */
      const checkContinuations = (): number => {
        const trained = batches.flatMap((b) => b.samples);
        let continued = 0;
        for (const cut of log.filter((r) => r.result?.finishReason === 'abort' && r.result.ids.length > 0)) {
          const next = log.find((r) => r !== cut && callId(r) === callId(cut) && r.start >= cut.end!);
          if (!next) continue; // cut when the controller stopped, or not re-sent yet
          expect(next.req.prompt).toEqual([...cut.req.prompt, ...cut.result!.ids]);
          expect(next.req.maxTokens).toBe(cut.req.maxTokens - cut.result!.ids.length);
          if (!next.result || next.result.finishReason === 'abort') continue;
          const v0 = cut.result!.versions![0]!;
          expect(cut.result!.versions!.every((v) => v === v0)).toBe(true);
          expect(next.result.versions!.every((v) => v === v0 + 1)).toBe(true);
          const prompt = cut.req.prompt;
          const whole = [...cut.result!.ids, ...next.result.ids];
          const sample = trained.find((x) => x.seq.ids.length === prompt.length + whole.length && x.seq.ids.every((id, i) => id === (i < prompt.length ? prompt[i] : whole[i - prompt.length])));
          if (!sample) continue; // its group is not trained yet
          expect(sample.seq.versions.slice(prompt.length)).toEqual([...cut.result!.ids.map(() => v0), ...next.result.ids.map(() => v0 + 1)]);
          expect(sample.seq.logprobs.slice(prompt.length)).toEqual([...cut.result!.logprobs, ...next.result.logprobs]);
          continued++;
        }
        return continued;
      };

      // Step until a trained completion was cut by an update and continued (how soon depends on the
      // machine's timing: usually the first update does it).
      let steps = 0;
      while (steps < 2 || (checkContinuations() === 0 && steps < MAX_STEPS)) {
        const m = await loop.step();
        expect(Number.isFinite(m.loss)).toBe(true);
        steps++;
      }
      await loop.finish();
      if (process.env.DEBUG_E2E) console.log(steps, JSON.stringify(log.filter((r) => r.result?.finishReason !== 'length' || r.req.prompt.length > 3).map((r) => [r.url.slice(-5), r.req.requestId.slice(-6), Math.round(r.start), r.end && Math.round(r.end), r.req.prompt.length, r.req.maxTokens, r.result?.finishReason, r.result?.ids.length])), JSON.stringify(remote.stats));
      expect(checkContinuations()).toBeGreaterThan(0);
      expect(remote.stats.interruptions).toBeGreaterThan(0);

      // Some trained trajectory spans two versions; every batch's groups are at most η = 1 stale.
      const trajectories: Trajectory[] = batches.flatMap((b) => b.groups.flatMap((g) => g.trajectories));
      expect(Math.max(...trajectories.map(versionSpread))).toBe(1);
      batches.forEach((b, k) => {
        for (const g of b.groups) expect(k - g.admitVersion).toBeLessThanOrEqual(1);
      });
      const trained = batches.flatMap((b) => b.samples);

      // Routing: both servers served.
      expect(new Set(log.map((r) => r.url)).size).toBe(2);

      // Every trained token's behaviour logprob is its claimed version's, recomputed here.
      const gap = logprobGap(trained, setup.trainer.model.config, weights);
      expect(gap.perVersion.get(0)!).toBeGreaterThan(0);
      expect(gap.perVersion.get(1)!).toBeGreaterThan(0);
      expect(gap.worst).toBeLessThan(1e-4);
    } finally {
      await remote.close();
    }
  }, 60_000);
});
