import { describe, expect, it } from 'vitest';
import { runTrial, TRIAL_WORDS } from '../src/agents/trial.ts';
import { prepareBatch } from '../src/rl/stages.ts';
import type { Trajectory } from '../src/core/types.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { BanditEnv } from '../src/envs/bandit.ts';
import { KuhnEnv } from '../src/envs/kuhn.ts';
import { scriptedTrialEngine as scripted } from './helpers/scripted-trial-engine.ts';

const MAGE = { kind: 'mage' as const, invalidCoef: 0.5, gammaStep: 0.95, gammaTrial: 0.6, lengthCoef: 0, maxLength: null, penaltyInReturns: false, episodeReward: 'differential' as const };
const GIGPO = { estimator: 'gigpo' as const, mode: 'mean_norm' as const, stepWeight: 1, groupBy: ['group', 'opponent'], anchorKey: 'anchor', eps: 1e-6, stdUnbiased: true, episodeSingleton: 'raw' as const };
const creditAndAdvantages = (trajs: Trajectory[]) => prepareBatch([{ trajectories: trajs, groupId: 'g' }], MAGE, GIGPO);

function bandit(): { env: BanditEnv; tok: WordTokenizer } {
  const env = new BanditEnv();
  return { env, tok: WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS, 'good', 'bad', 'try', 'avoid']) };
}

describe('MAGE trials', () => {
  it('history_and_reflection: reflections are trained samples and appear, with past moves, in later prompts', async () => {
    const { env, tok } = bandit();
    env.reset(11);
    const best = ['A', 'B', 'C'][env.bestArm]!;
    const wrong = best === 'A' ? 'B' : 'A';
    const engine = scripted(tok, [`<action> ${wrong} </action>`, '<remark> avoid ' + wrong + ' </remark>', `<action> ${best} </action>`, '<remark> good </remark>', `<action> ${best} </action>`]);
    const t = await runTrial(env, engine, { episodes: 3, contextMode: 'history_and_reflection', rules: 'none' }, { seed: 11, groupId: 'g0', opponent: 'none' });
    const kinds = t.samples.map((s) => s.step!.kind);
    expect(kinds).toEqual(['play', 'reflection', 'play', 'reflection', 'play']);
    expect(t.episodes!.map((e) => e.reward)).toEqual([0, 1, 1]);
    expect(t.reward).toBe(1);
    expect(engine.prompts[2]).toContain(`-> ${wrong} result lost`);
    expect(engine.prompts[2]).toContain(`remark : avoid ${wrong}`);
    expect(engine.prompts[4]).toContain('remark : good');
    // Token-in-token-out: the trained tokens are exactly the sampled ids with their logprobs/versions.
    const s = t.samples[1]!;
    const trained = s.seq.ids.filter((_, i) => s.seq.mask[i]);
    expect(tok.decode(trained)).toBe(`<remark> avoid ${wrong} </remark>`);
    expect(s.seq.logprobs.filter((_, i) => s.seq.mask[i])).toEqual(trained.map((_, i) => -0.5 - i));
    expect(s.seq.versions.filter((_, i) => s.seq.mask[i]).every((v) => v === 3)).toBe(true);
    expect(s.seq.mask.filter((_, i) => s.seq.source[i] !== 1).every((m) => m === 0)).toBe(true);
  });

  it('reflection_only hides past moves; history_only hides remarks', async () => {
    for (const mode of ['reflection_only', 'history_only'] as const) {
      const { env, tok } = bandit();
      const engine = scripted(tok, ['<action> A </action>', '<remark> try B </remark>', '<action> B </action>']);
      await runTrial(env, engine, { episodes: 2, contextMode: mode, rules: 'none' }, { seed: 4, groupId: 'g', opponent: 'none' });
      const later = engine.prompts[2]!;
      if (mode === 'reflection_only') {
        expect(later).toContain('remark : try B');
        expect(later).not.toContain('-> A');
      } else {
        expect(later).toContain('-> A');
        expect(later).not.toContain('try B');
      }
    }
  });

  it("contextMode 'none' prompts every episode exactly like a fresh 1-episode trial", async () => {
    const tok = WordTokenizer.fromVocabulary([...new KuhnEnv().vocabulary(), ...TRIAL_WORDS]);
    const multi = scripted(tok, Array.from({ length: 20 }, () => '<action> BET </action>'));
    const t = await runTrial(new KuhnEnv({ opponent: 'aggressive' }), multi, { episodes: 4, reflect: false, stateMode: 'new_state', contextMode: 'none', rules: 'none' }, { seed: 8, groupId: 'g', opponent: 'aggressive', episodeSeeds: [21, 22, 23] });
    for (const [k, seed] of [[0, 8], [1, 21], [2, 22], [3, 23]] as const) {
      const single = scripted(tok, Array.from({ length: 5 }, () => '<action> BET </action>'));
      await runTrial(new KuhnEnv({ opponent: 'aggressive' }), single, { episodes: 1, reflect: false, rules: 'none' }, { seed, groupId: 'g', opponent: 'aggressive' });
      const first = t.samples.findIndex((s) => s.step!.episode === k);
      expect(multi.prompts[first]).toBe(single.prompts[0]);
    }
  });

  it("pastEpisodes 'outcome' shows each past hand as the env's record token; samples carry their episode key", async () => {
    const env = new KuhnEnv({ opponent: 'aggressive', observation: 'token' });
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS]);
    const engine = scripted(tok, Array.from({ length: 20 }, () => '<action> PASS </action>'));
    const records: string[] = [];
    const orig = env.step.bind(env);
    env.step = (a) => { const r = orig(a); if (r.done) records.push(env.episodeToken()); return r; };
    const t = await runTrial(env, engine, { episodes: 3, reflect: false, stateMode: 'new_state', contextMode: 'history_only', pastEpisodes: 'outcome', historyWindow: 0, rules: 'none' }, { seed: 5, groupId: 'g', opponent: 'aggressive' });
    const last = engine.prompts[engine.prompts.length - 1]!;
    expect(last).toContain(`| ep 1 ${records[0]} | ep 2 ${records[1]} | now moves none | i`);
    expect(t.samples.map((s) => s.keys.episode)).toEqual(t.samples.map((s) => String(s.step!.episode)));
  });

  it('same_state replays the deal; new_state draws fresh deals with the same opponent', async () => {
    const tok = WordTokenizer.fromVocabulary([...new KuhnEnv().vocabulary(), ...TRIAL_WORDS]);
    const cards = async (stateMode: 'same_state' | 'new_state') => {
      const env = new KuhnEnv({ opponent: 'aggressive' });
      const seen: string[] = [];
      const engine = scripted(tok, Array.from({ length: 40 }, () => '<action> PASS </action>'));
      const orig = env.reset.bind(env), origRestart = env.restart.bind(env);
      env.reset = (seed) => { const o = orig(seed); seen.push(`${env.agentCard}${env.seat}`); return o; };
      env.restart = () => { const o = origRestart(); seen.push(`${env.agentCard}${env.seat}`); return o; };
      await runTrial(env, engine, { episodes: 6, reflect: false, stateMode, rules: 'none' }, { seed: 99, groupId: 'g', opponent: 'aggressive' });
      return seen;
    };
    const same = await cards('same_state');
    expect(new Set(same).size).toBe(1);
    const fresh = await cards('new_state');
    expect(fresh.length).toBe(6);
    expect(new Set(fresh).size).toBeGreaterThan(1);
  });

  it('malformed model output is an observed, penalised turn, not a crash', async () => {
    const { env, tok } = bandit();
    const engine = scripted(tok, ['complete garbage', '<remark> bad', '<action> B </action>']);
    const t = await runTrial(env, engine, { episodes: 2, rules: 'none', constrained: false }, { seed: 2, groupId: 'g', opponent: 'none' });
    const metas = t.samples.map((s) => s.step!);
    expect(metas[0]!.valid).toBe(false); // unparseable action
    expect(metas[1]!.valid).toBe(false); // missing </remark>
    expect(metas.filter((m) => m.kind === 'play' && !m.valid)).toHaveLength(1);
    const credited = creditAndAdvantages([t]);
    // The invalid play step is charged the penalty in its score, so its advantage is below the valid step's.
    expect(credited[0]!.advantage as number).toBeLessThan(credited[2]!.advantage as number);
  });

  it('advantages never share a baseline across opponents', async () => {
    const tok = WordTokenizer.fromVocabulary([...new KuhnEnv().vocabulary(), ...TRIAL_WORDS]);
    const run = (opp: string) => runTrial(new KuhnEnv({ opponent: opp, seat: 1 }), scripted(tok, Array.from({ length: 10 }, () => '<action> BET </action>')), { episodes: 1, reflect: false, rules: 'none' }, { seed: 5, groupId: 'g', opponent: opp });
    const trajs = [await run('aggressive'), await run('aggressive'), await run('conservative'), await run('conservative')];
    const samples = creditAndAdvantages(trajs);
    // Identical play within an opponent → every advantage is 0 even though the two opponents pay differently.
    expect(trajs[0]!.reward).not.toBe(trajs[2]!.reward);
    for (const s of samples) expect(s.advantage).toBeCloseTo(0, 9);
  });
});

describe('outcome-token histories', () => {
  it("pastEpisodes 'outcome' shows each past episode as one fused token the tokenizer knows", async () => {
    const env = new BanditEnv();
    const { outcomeVocabulary } = await import('../src/agents/trial.ts');
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS, ...outcomeVocabulary(['A', 'B', 'C'])]);
    env.reset(8);
    const best = ['A', 'B', 'C'][env.bestArm]!;
    const engine = scripted(tok, [`<action> ${best} </action>`, `<action> ${best} </action>`]);
    await runTrial(env, engine, { episodes: 2, reflect: false, contextMode: 'history_only', pastEpisodes: 'outcome', rules: 'none' }, { seed: 8, groupId: 'g', opponent: 'none' });
    expect(engine.prompts[1]).toContain(`| ep 1 ${best}_won`);
    const ids = tok.encode(engine.prompts[1]!);
    expect(ids).toContain(tok.tokenId(`${best}_won`));
    expect(ids).not.toContain(tok.unkId);
  });
});

describe('MAGE trials in the training loop', () => {
  it('minibatches: one PPO step per minibatch, every trial trained once, one weight version per batch', async () => {
    const { buildMetaSetup } = await import('../src/train/meta-setup.ts');
    const { Trainer } = await import('../src/train/trainer.ts');
    const { InProcessTrainer } = await import('../src/train/policy-trainer.ts');
    const { trialWorkflow } = await import('../src/agents/trial.ts');
    const { trialSource } = await import('../src/train/trial-source.ts');
    const trial = { episodes: 2, contextMode: 'history_only' as const, reflect: false, stateMode: 'new_state' as const, maxTurns: 2, rules: 'none' as const, historyWindow: 0, obsWindow: 0, pastEpisodes: 'outcome' as const };
    const setup = buildMetaSetup({ env: 'kuhn', envOptions: { seat: 'random', observation: 'token', rewardScale: 1 }, opponents: ['aggressive'], model: { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 }, optimizer: { lr: 1e-3 }, seed: 0, outcomeTokens: true });
    const steps: number[] = [];
    const orig = setup.trainer.trainStep.bind(setup.trainer);
    setup.trainer.trainStep = (samples, loss, o) => { steps.push(samples.length); return orig(samples, loss, o); };
    const loop = new Trainer({
      config: { steps: 1, batchSize: 2, groupSize: 4, minibatches: 3, credit: { kind: 'mage', episodeReward: 'raw' }, advantage: { estimator: 'gigpo', groupBy: ['group', 'opponent', 'episode'] }, loss: { kind: 'ppo', entropyCoef: 0.3 } },
      engine: setup.engine, trainer: new InProcessTrainer(setup.trainer), source: trialSource(1, [{ name: 'aggressive', weight: 1 }]), workflow: trialWorkflow(setup.engine, setup.makeEnv, trial),
    });
    const { steps: [m] } = await loop.run();
    expect(steps.length).toBe(3);
    expect(steps.reduce((a, b) => a + b, 0)).toBe(m!.samples);
    expect(setup.trainer.version()).toBe(3); // three optimizer steps …
    expect(setup.engine.version()).toBe(1); // … one published weight version
    expect(m!.trainer.minibatches).toBe(3);
    expect(m!.episodeReward).toHaveLength(2);
  });
});
