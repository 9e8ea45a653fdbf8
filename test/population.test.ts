import { describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/core/rng.ts';
import { runTrial } from '../src/agents/trial.ts';
import { KuhnEnv } from '../src/envs/kuhn.ts';
import { mulberry32 } from '../src/envs/rng.ts';
import { CARD_NAMES, DEALS, DECISION_HISTORIES, type KuhnCard, type KuhnSeat, type KuhnView } from '../src/envs/kuhn-game.ts';
import type { InferenceEngine, SampledCompletion } from '../src/engine/types.ts';
import {
  KuhnSnapshotOpponent, kuhnSnapshotAdapter, kuhnSnapshotPrompt, loadPopulation, planExploit, perturbHyper, pfspPriority, Population,
  poolWeights, renderKuhnObservation, savePopulation, setLearningRate, WinRateTable, HyperSpaceSchema,
  type Hyper, type PopulationConfigInput,
} from '../src/train/population.ts';
import { drawOpponent } from '../src/train/trial-source.ts';
import { fastBackend } from './helpers/backends.ts';

const TRIAL = { episodes: 2, contextMode: 'history_only', reflect: false, maxTurns: 2, rules: 'none', temperature: 1 } as const;
const backend = fastBackend();

function tinyConfig(over: Partial<PopulationConfigInput> = {}): PopulationConfigInput {
  return {
    env: 'kuhn',
    size: 3,
    seed: 7,
    model: { contextLength: 96, nLayer: 1, nHead: 2, nEmbd: 16 },
    optimizer: { weightDecay: 0 },
    opponents: [{ name: 'conservative' }, { name: 'aggressive' }],
    meta: { groups: 2, groupSize: 2, trial: TRIAL, credit: { kind: 'mage', invalidCoef: 2 } },
    league: { snapshotEvery: 1, maxSnapshots: 4 },
    pbt: { exploitEvery: 2, fitnessWindow: 2, readyAfter: 1 },
    ...over,
  };
}

/** A seed whose reset deals `deal` (with a fixed seat, the seed only draws the deal). */
function seedFor(seat: KuhnSeat, deal: readonly [KuhnCard, KuhnCard]): number {
  for (let s = 0; s < 1000; s++) {
    const env = new KuhnEnv({ seat, opponent: 'random' });
    env.reset(s);
    if (env.dealCards[0] === deal[0] && env.dealCards[1] === deal[1]) return s;
  }
  throw new Error('no seed found');
}

describe('Kuhn snapshot opponent', () => {
  it('renders the view exactly as KuhnEnv.observe() shows it to the player', () => {
    let checked = 0;
    for (const seat of [0, 1] as const) {
      for (const opponent of ['conservative', 'aggressive', 'random']) {
        for (let seed = 0; seed < 30; seed++) {
          const env = new KuhnEnv({ seat, opponent });
          env.reset(seed);
          for (const action of ['PASS', 'BET']) {
            if (env.done) break;
            const view: KuhnView = { card: env.agentCard, history: env.history as KuhnView['history'], seat };
            expect(renderKuhnObservation(view)).toBe(env.observe());
            checked++;
            env.step(`<action> ${action} </action>`);
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(150);
  });

  it("reads the same prompt runTrial gives the agent in that seat (incl. its own earlier move at PB)", async () => {
    const toks = {
      text: Population.create(tinyConfig({ size: 1 }), { backend }).tokenizer,
      token: Population.create(tinyConfig({ size: 1, envOptions: { observation: 'token' } }), { backend }).tokenizer,
    };
    const rulesText = new KuhnEnv().rules();
    let seen = 0;
    // contextMode 'none' with K = 3: every episode's prompt is a first episode's, headed `trial 1 of 1`.
    for (const [rules, observation, historyWindow, contextMode, episodes] of [['none', 'text', 7, 'history_only', 1], ['full', 'text', 7, 'history_only', 1], ['none', 'token', 0, 'history_only', 1], ['none', 'token', 7, 'history_only', 1], ['none', 'token', 7, 'none', 3]] as const) {
      const tok = toks[observation];
      for (const [seat, opponent] of [[0, 'aggressive'], [1, 'conservative'], [1, 'aggressive']] as const) {
        for (let seed = 0; seed < 6; seed++) {
          const env = new KuhnEnv({ seat, opponent, observation });
          const prompts: { text: string; view: KuhnView }[] = [];
          const engine: InferenceEngine = {
            tokenizer: tok,
            contextLength: 4096,
            version: () => 0,
            async generate(prompt): Promise<SampledCompletion> {
              prompts.push({ text: tok.decode(prompt), view: { card: env.agentCard, history: env.history as KuhnView['history'], seat } });
              const ids = tok.encode('<action> PASS </action>');
              return { ids, logprobs: ids.map(() => 0), versions: ids.map(() => 0), text: tok.decode(ids), finishReason: 'stop', temperature: 1 };
            },
          };
          const trial = { ...TRIAL, rules, episodes, contextMode, historyWindow, obsWindow: 2 };
          await runTrial(env, engine, trial, { seed, groupId: 'g', opponent });
          for (const p of prompts) {
            expect(tok.decode(tok.encode(kuhnSnapshotPrompt(p.view, trial, rulesText, observation)))).toBe(p.text);
            expect(p.text).not.toContain(tok.tokenString(2)); // every word known: the comparison is exact
            if (p.view.history === 'PB' && historyWindow > 0) expect(p.text).toContain('-> PASS |');
            seen++;
          }
        }
      }
    }
    expect(seen).toBeGreaterThan(30);
  });

  it("top-k 1 makes P(BET) 0 or 1 (the agent's argmax), and the league adapter passes the trial's top-k / top-p on", () => {
    const pop = Population.create(tinyConfig({ size: 1 }), { backend });
    const model = pop.members[0]!.trainer.model;
    const warm = new KuhnSnapshotOpponent('m0@0', model, pop.tokenizer, { prompt: pop.cfg.meta.trial, rulesText: '' });
    const greedy = kuhnSnapshotAdapter({}, { ...pop.cfg.meta.trial, topK: 1 }).makeOpponent({ name: 'm0@0', model, tokenizer: pop.tokenizer }) as KuhnSnapshotOpponent;
    let checked = 0;
    for (const history of DECISION_HISTORIES) {
      for (const card of [0, 1, 2] as KuhnCard[]) {
        const view: KuhnView = { card, history, seat: (history.length % 2) as KuhnSeat };
        const p = warm.betProbability(view);
        expect(p).not.toBe(0.5);
        expect(greedy.betProbability(view)).toBe(p > 0.5 ? 1 : 0);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(6);
    expect(() => new KuhnSnapshotOpponent('x', model, pop.tokenizer, { prompt: pop.cfg.meta.trial, rulesText: '', topP: 1.5 })).toThrow(/topP must be in/);
  });

  it('P(BET) is the tempered PASS/BET softmax after "<action>", action draws are deterministic given the rng', () => {
    const pop = Population.create(tinyConfig({ size: 1 }), { backend });
    const model = pop.members[0]!.trainer.model;
    const mk = (temperature: number) => new KuhnSnapshotOpponent('m0@0', model, pop.tokenizer, { prompt: pop.cfg.meta.trial, rulesText: '', temperature });
    const [passId, betId] = [pop.tokenizer.tokenId('PASS')!, pop.tokenizer.tokenId('BET')!];
    for (const temperature of [1, 0.5]) {
      const opp = mk(temperature);
      for (const history of DECISION_HISTORIES) {
        for (const card of [0, 1, 2] as KuhnCard[]) {
          const view: KuhnView = { card, history, seat: (history.length % 2) as KuhnSeat };
          // Independent check through the training forward pass: logprob of BET under a PASS/BET mask.
          const ids = opp.inputIds(view);
          const V = model.config.vocabSize, T = ids.length;
          const targets = new Int32Array(T).fill(-1);
          targets[T - 1] = betId;
          const masks = new Uint8Array(T * V).fill(1);
          masks.fill(0, (T - 1) * V, T * V);
          masks[(T - 1) * V + passId] = 1;
          masks[(T - 1) * V + betId] = 1;
          const { logprobs } = model.forward({ B: 1, T, tokens: Int32Array.from(ids), targets, masks, temperature });
          expect(opp.betProbability(view)).toBeCloseTo(Math.exp(logprobs[T - 1]!), 5);
        }
      }
    }
    // Same rng stream → same actions; each act consumes exactly one number.
    const views: KuhnView[] = [{ card: 1, history: '', seat: 0 }, { card: 0, history: 'B', seat: 1 }, { card: 2, history: 'PB', seat: 0 }];
    const play = (seed: number) => {
      const opp = mk(1), rng = mulberry32(seed);
      return Array.from({ length: 60 }, (_, i) => opp.act(views[i % 3]!, rng));
    };
    expect(play(5)).toEqual(play(5));
    const opp = mk(1), rng = mulberry32(9), ref = mulberry32(9);
    for (let i = 0; i < 30; i++) expect(opp.act(views[i % 3]!, rng)).toBe(ref() < opp.betProbability(views[i % 3]!) ? 'BET' : 'PASS');
  });

  it("never sees the other player's card: its model input depends only on its own card, seat and the public history", () => {
    const pop = Population.create(tinyConfig({ size: 1 }), { backend });
    const model = pop.members[0]!.trainer.model;
    const tok = pop.tokenizer;
    const prefill = vi.spyOn(model, 'prefill');
    // Per information set of the snapshot: the model inputs it produced, and the agent cards it was played against.
    const inputsByInfoSet = new Map<string, { inputs: Set<string>; agentCards: Set<number> }>();
    let games = 0;
    for (const agentSeat of [0, 1] as const) {
      for (const deal of DEALS) {
        for (const agentAction of ['PASS', 'BET']) {
          const snapCard = deal[1 - agentSeat]!;
          // A fresh opponent per game: no memo, so each of its decisions runs one prefill.
          const opp = new KuhnSnapshotOpponent('m0@0', model, tok, { prompt: pop.cfg.meta.trial, rulesText: '' });
          const act = vi.spyOn(opp, 'act');
          const env = new KuhnEnv({ seat: agentSeat, opponent: opp });
          prefill.mockClear();
          env.reset(seedFor(agentSeat, deal));
          while (!env.done) env.step(`<action> ${agentAction} </action>`);
          games++;
          const inputs = prefill.mock.calls.map((c) => tok.decode(c[2] as number[]));
          expect(inputs.length).toBe(act.mock.calls.length);
          expect(inputs.length).toBeGreaterThan(0);
          act.mock.calls.forEach(([view], i) => {
            const text = inputs[i]!;
            expect(view.card).toBe(snapCard);
            const cards = text.split(' ').filter((w) => (CARD_NAMES as readonly string[]).includes(w));
            expect(new Set(cards)).toEqual(new Set([CARD_NAMES[snapCard]]));
            expect(text).not.toMatch(/showdown|opponent|result/);
            expect(text).toContain(`you are P${1 - agentSeat}`);
            const key = `${snapCard}/${view.seat}/${view.history}`;
            const e = inputsByInfoSet.get(key) ?? { inputs: new Set(), agentCards: new Set() };
            e.inputs.add(text);
            e.agentCards.add(deal[agentSeat]!);
            inputsByInfoSet.set(key, e);
          });
        }
      }
    }
    expect(games).toBe(24);
    // The same information set against different agent cards gave byte-identical model inputs.
    expect([...inputsByInfoSet.values()].filter((e) => e.agentCards.size === 2).length).toBeGreaterThanOrEqual(6);
    for (const e of inputsByInfoSet.values()) expect(e.inputs.size).toBe(1);
    prefill.mockRestore();
  });
});

describe('PFSP and the league', () => {
  it('PFSP weights favour opponents the learner loses to; fixed mode keeps base weights', () => {
    const t = new WinRateTable(0.5, 0.05);
    for (let i = 0; i < 40; i++) {
      t.record('m0', 'aggressive', i % 5 === 0 ? 1 : 0); // wins 20%
      t.record('m0', 'conservative', i % 5 === 0 ? 0 : 1); // wins 80%
    }
    expect(t.winRate('m0', 'aggressive')).toBeCloseTo(0.2, 1);
    expect(t.winRate('m0', 'conservative')).toBeCloseTo(0.8, 1);
    expect(t.winRate('m0', 'new')).toBe(0.5);
    expect(t.games('m0', 'aggressive')).toBe(40);
    const pool = [{ name: 'aggressive', weight: 1 }, { name: 'conservative', weight: 1 }, { name: 'new', weight: 1 }];
    const w = poolWeights(pool, (o) => t.winRate('m0', o), { mode: 'pfsp', power: 2, floor: 0.05 });
    expect(w[0]!.weight).toBeGreaterThan(w[2]!.weight);
    expect(w[2]!.weight).toBeGreaterThan(w[1]!.weight);
    expect(w[2]!.weight).toBeCloseTo(0.25, 10);
    const rng = new Rng(3);
    const counts: Record<string, number> = { aggressive: 0, conservative: 0, new: 0 };
    for (let i = 0; i < 3000; i++) counts[drawOpponent(w, rng)]!++;
    expect(counts.aggressive!).toBeGreaterThan(2 * counts.new!);
    expect(counts.new!).toBeGreaterThan(2 * counts.conservative!);
    expect(poolWeights(pool, (o) => t.winRate('m0', o), { mode: 'fixed', power: 2, floor: 0.05 }).map((x) => x.weight)).toEqual([1, 1, 1]);
    // The floor keeps an always-beaten opponent in play.
    expect(pfspPriority(1, 2, 0.05)).toBe(0.05);
    expect(pfspPriority(0, 2, 0.05)).toBe(1);
    // Round trip of the table.
    expect(WinRateTable.fromJSON(t.toJSON(), 0.5, 0.05).toJSON()).toEqual(t.toJSON());
  });

  it('returns snapshots after they are added, plays them through KuhnEnv, and evicts the oldest beyond maxSnapshots', () => {
    const pop = Population.create(tinyConfig({ size: 1, league: { mode: 'fixed', snapshotEvery: 1, maxSnapshots: 2 } }), { backend });
    const league = pop.league;
    const rng = new Rng(1);
    const drawn = () => new Set(Array.from({ length: 400 }, () => league.sample('m0', rng)));
    expect(drawn()).toEqual(new Set(['conservative', 'aggressive']));
    const params = pop.members[0]!.trainer.model.params;
    const a = league.addSnapshot('m0', 0, 0, params);
    expect(a.name).toBe('m0@0');
    expect(a.params).not.toBe(params); // a private frozen copy
    expect(drawn()).toEqual(new Set(['conservative', 'aggressive', 'm0@0']));
    const env = league.makeEnv('m0@0') as KuhnEnv;
    expect(env.opponentName).toBe('m0@0');
    env.reset(3);
    let last: ReturnType<KuhnEnv['step']> | null = null;
    while (!env.done) last = env.step('<action> BET </action>');
    expect(['showdown', 'fold']).toContain(last!.info.outcome);
    league.winRates.record('m0', 'm0@0', 1);
    league.addSnapshot('m0', 1, 1, params);
    league.addSnapshot('m0', 2, 2, params);
    expect(league.snapshots.map((s) => s.name)).toEqual(['m0@1', 'm0@2']);
    expect(league.winRates.games('m0', 'm0@0')).toBe(0);
    expect(() => league.makeEnv('m0@0')).toThrow(/unknown opponent 'm0@0'/);
  });

  it('a population round trains against snapshots once they are in the league', async () => {
    const pop = Population.create(tinyConfig({ size: 2, opponents: [{ name: 'conservative', weight: 0.001 }], league: { mode: 'fixed', snapshotEvery: 1 }, pbt: { exploitEvery: 0 } }), { backend });
    const r1 = await pop.runRound();
    expect(r1.members.every((m) => Object.keys(m.opponents).every((o) => o === 'conservative'))).toBe(true);
    expect(r1.snapshotsAdded).toEqual(['m0@1', 'm1@1']);
    const r2 = await pop.runRound();
    const faced = r2.members.flatMap((m) => Object.keys(m.opponents));
    expect(faced.some((o) => o.includes('@'))).toBe(true);
    for (const m of r2.members) {
      for (const [o, s] of Object.entries(m.opponents)) expect(pop.league.winRates.games(m.member, o)).toBeGreaterThanOrEqual(s.trials);
      expect(Object.values(m.opponents).reduce((a, s) => a + s.trials, 0)).toBe(4);
    }
    expect(pop.members.map((m) => m.trainer.step)).toEqual([2, 2]);
  });
});

describe('PBT exploit and explore', () => {
  const space = HyperSpaceSchema.parse({});

  it('explore multiplies each hyperparameter by 0.8 or 1.25 and never leaves the bounds', () => {
    const rng = new Rng(11);
    const { bounds } = space;
    for (let i = 0; i < 500; i++) {
      const h: Hyper = {
        lr: bounds.lr[0] + rng.next() * (bounds.lr[1] - bounds.lr[0]),
        entropyCoef: bounds.entropyCoef[0] + rng.next() * (bounds.entropyCoef[1] - bounds.entropyCoef[0]),
        gammaTrial: rng.next(),
      };
      const p = perturbHyper(h, bounds, rng);
      for (const k of ['lr', 'entropyCoef', 'gammaTrial'] as const) {
        expect(p[k]).toBeGreaterThanOrEqual(bounds[k][0]);
        expect(p[k]).toBeLessThanOrEqual(bounds[k][1]);
        const clipped = p[k] === bounds[k][0] || p[k] === bounds[k][1];
        if (!clipped) expect([0.8, 1.25].some((f) => Math.abs(p[k] - h[k] * f) < 1e-15)).toBe(true);
      }
    }
    expect(perturbHyper({ lr: bounds.lr[1], entropyCoef: 0.1, gammaTrial: 1 }, bounds, new Rng(0), [1.25])).toEqual({ lr: bounds.lr[1], entropyCoef: 0.1, gammaTrial: 1 });
    expect(perturbHyper({ lr: 0.01, entropyCoef: 0.01, gammaTrial: 0.5 }, bounds, new Rng(0), [0.8])).toEqual({ lr: 0.008, entropyCoef: 0.008, gammaTrial: 0.4 });
  });

  it('setLearningRate changes the trainer schedule', () => {
    const pop = Population.create(tinyConfig({ size: 1 }), { backend });
    const t = pop.members[0]!.trainer;
    setLearningRate(t, 0.0123);
    expect(t.lrAt(5)).toBe(0.0123);
    expect(() => setLearningRate(t, 0)).toThrow(/positive/);
  });

  it('planExploit: the worst ready members copy from the best; unready members are skipped', () => {
    expect(planExploit([3, null, 1, 2], { fraction: 0.25 }, new Rng(0))).toEqual([{ target: 2, source: 0 }]);
    expect(planExploit([null, 1, null], { fraction: 0.25 }, new Rng(0))).toEqual([]);
    expect(planExploit([1, 1], { fraction: 0.5 }, new Rng(0))).toEqual([]); // equal fitness: nothing to gain
    const plan = planExploit([5, 4, 3, 2, 1, 0, -1, -2], { fraction: 0.25 }, new Rng(4));
    expect(plan.map((p) => p.target).sort()).toEqual([6, 7]);
    for (const p of plan) expect([0, 1]).toContain(p.source);
  });

  it('exploit copies weights and AdamW state exactly (and into the engine); explore perturbs the copied hyperparameters', async () => {
    const pop = Population.create(tinyConfig({ size: 3, pbt: { exploitEvery: 0, fraction: 0.25, fitnessWindow: 2, readyAfter: 1 } }), { backend });
    await pop.runRound();
    await pop.runRound();
    const [m0, m1, m2] = pop.members as [typeof pop.members[0], typeof pop.members[0], typeof pop.members[0]];
    m0.recentReturns = [5, 5];
    m1.recentReturns = [0, 0];
    m2.recentReturns = [-5, -5];
    m0.trainer.step += 3; // make the copied step distinguishable
    const src = { params: Float32Array.from(m0.trainer.model.params), m: Float32Array.from(m0.trainer.m), v: Float32Array.from(m0.trainer.v), step: m0.trainer.step, hyper: { ...m0.hyper } };
    expect(Array.from(m2.trainer.m)).not.toEqual(Array.from(src.m));
    const events = pop.exploitAndExplore();
    expect(events.map((e) => [e.target, e.source])).toEqual([['m2', 'm0']]);
    expect(Array.from(m2.trainer.model.params)).toEqual(Array.from(src.params));
    expect(Array.from(m2.trainer.m)).toEqual(Array.from(src.m));
    expect(Array.from(m2.trainer.v)).toEqual(Array.from(src.v));
    expect(m2.trainer.step).toBe(src.step);
    expect(Array.from(m2.engine.model.params)).toEqual(Array.from(src.params));
    expect(m2.engine.version()).toBe(src.step);
    // The source is untouched, the buffers are not shared.
    expect(Array.from(m0.trainer.model.params)).toEqual(Array.from(src.params));
    expect(m2.trainer.model.params).not.toBe(m0.trainer.model.params);
    // Explore: each hyperparameter is the source's ×0.8 or ×1.25 (or clipped), and the lr reached the trainer.
    for (const k of ['lr', 'entropyCoef', 'gammaTrial'] as const) {
      const b = pop.cfg.hyper.bounds[k];
      const v = m2.hyper[k];
      expect(v === b[0] || v === b[1] || [0.8, 1.25].some((f) => Math.abs(v - src.hyper[k] * f) < 1e-15)).toBe(true);
    }
    expect(m2.trainer.opt.lr).toBe(m2.hyper.lr);
    expect(pop.memberConfig(m2).loss?.entropyCoef).toBe(m2.hyper.entropyCoef);
    const credit = pop.memberConfig(m2).credit;
    expect(credit?.kind === 'mage' && credit.gammaTrial).toBe(m2.hyper.gammaTrial);
    expect(m2.recentReturns).toEqual([]);
    expect(pop.league.winRates.toJSON().m2).toEqual(pop.league.winRates.toJSON().m0);
    expect(m0.hyper).toEqual(src.hyper);
  });
});

describe('population checkpoints', () => {
  it('save/load round trip: the resumed population continues with identical hyperparameters and weights', async () => {
    const cfg = tinyConfig({ size: 3, pbt: { exploitEvery: 2, fraction: 0.34, fitnessWindow: 2, readyAfter: 1 } });
    const a = Population.create(cfg, { backend });
    await a.runRound();
    const dir = join(mkdtempSync(join(tmpdir(), 'agentrl-pop-')), 'pop');
    await savePopulation(a, dir);
    const atSave = a.members.map((m) => ({ hyper: { ...m.hyper }, params: Array.from(m.trainer.model.params), v: Array.from(m.trainer.v), step: m.trainer.step }));
    const ra = await a.runRound(); // round 2: snapshots + exploit/explore

    const b = await loadPopulation(dir, { backend });
    expect(b.round).toBe(1);
    expect(b.league.snapshots.map((s) => s.name)).toEqual(['m0@1', 'm1@1', 'm2@1']);
    b.members.forEach((m, i) => {
      expect(m.hyper).toEqual(atSave[i]!.hyper);
      expect(m.trainer.opt.lr).toBe(atSave[i]!.hyper.lr);
      expect(m.trainer.step).toBe(atSave[i]!.step);
      expect(Array.from(m.trainer.model.params)).toEqual(atSave[i]!.params);
      expect(Array.from(m.trainer.v)).toEqual(atSave[i]!.v);
    });
    const rb = await b.runRound();
    expect(rb.exploits).toEqual(ra.exploits);
    expect(rb.exploits.length).toBeGreaterThan(0);
    expect(rb.members.map((m) => m.metrics.meanReward)).toEqual(ra.members.map((m) => m.metrics.meanReward));
    expect(rb.members.map((m) => m.opponents)).toEqual(ra.members.map((m) => m.opponents));
    b.members.forEach((m, i) => {
      const ma = a.members[i]!;
      expect(m.hyper).toEqual(ma.hyper);
      expect(m.iterations).toBe(ma.iterations);
      expect(m.recentReturns).toEqual(ma.recentReturns);
      expect(Array.from(m.trainer.model.params)).toEqual(Array.from(ma.trainer.model.params));
      expect(Array.from(m.trainer.m)).toEqual(Array.from(ma.trainer.m));
      expect(m.trainer.step).toBe(ma.trainer.step);
    });
    expect(b.league.winRates.toJSON()).toEqual(a.league.winRates.toJSON());
    expect(b.league.snapshots.map((s) => s.name)).toEqual(a.league.snapshots.map((s) => s.name));

    // A second save replaces the generation and keeps only referenced snapshots.
    await savePopulation(b, dir);
    expect(readdirSync(dir).filter((n) => n.startsWith('gen-'))).toHaveLength(1);
    expect(readdirSync(join(dir, 'snapshots')).sort()).toEqual(b.league.snapshots.map((s) => `${s.member}-s${s.step}`).sort());
    const c = await loadPopulation(dir, { backend });
    expect(c.round).toBe(2);
    expect(c.league.snapshots.map((s) => s.name)).toEqual(b.league.snapshots.map((s) => s.name));
    c.league.snapshots.forEach((s, i) => expect(Array.from(s.params)).toEqual(Array.from(b.league.snapshots[i]!.params)));
  });

  it('errors name the problem', async () => {
    await expect(loadPopulation(join(tmpdir(), 'agentrl-no-such-population'), { backend })).rejects.toThrow(/cannot read .*population\.json/);
    expect(() => Population.create(tinyConfig({ env: 'bandit', opponents: [{ name: 'none' }] }), { backend })).toThrow(/snapshots are implemented for kuhn, tictactoe only, not 'bandit'.*snapshotEvery/);
    expect(() => Population.create(tinyConfig({ envOptions: { opponent: 'random' } }), { backend })).toThrow(/opponent is chosen by the league/);
    expect(() => Population.create(tinyConfig({ pbt: { readyAfter: 5, fitnessWindow: 2 } }), { backend })).toThrow(/readyAfter/);
  });
});
