/**
 * Fuzz of the model-output boundary (issue 16, "Also"): every environment's action parser (env.step
 * on raw text) and the MAGE trial loop (runTrial with a scripted engine, constrained: false) over
 * more than 10,000 random and adversarial model outputs — empty, whitespace, huge, unicode, control
 * characters, unbalanced and injected tags ('<action> A </action><action> B', '</action>' alone,
 * nested tags, remark tags in actions), prompt-like text — mixed with legal actions so episodes go
 * on. No crash, no hang; an output the env's parser rejects is a recorded step with valid: false
 * (MAGE credit penalises it), and the batch built from the trajectories has finite advantages.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { runTrial, TRIAL_WORDS, type TrialConfig } from '../src/agents/trial.ts';
import { creditTrajectory, prepareBatch, type AdvantageStage, type CreditStage } from '../src/rl/stages.ts';
import type { Trajectory } from '../src/core/types.ts';
import type { InferenceEngine, SampledCompletion } from '../src/engine/types.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { ENV_NAMES, makeEnv } from '../src/envs/registry.ts';
import type { StepResult, TextEnv } from '../src/envs/types.ts';
import { parseBanditAction } from '../src/envs/bandit.ts';
import { parseKuhnAction } from '../src/envs/kuhn.ts';
import { parseRpsAction } from '../src/envs/rps.ts';
import { parseSokobanActions } from '../src/envs/sokoban.ts';
import { parseTttAction } from '../src/envs/tictactoe.ts';

/** The env's own parser: null = the output names no action (the step must then be invalid). */
const PARSERS: Record<string, (raw: string) => unknown> = {
  bandit: (raw) => parseBanditAction(raw, 3),
  kuhn: parseKuhnAction,
  rps: parseRpsAction,
  sokoban: (raw) => parseSokobanActions(raw, 3),
  tictactoe: parseTttAction,
};

/** Placeholder an engine turns into a legal action of the env at the time of the call. */
const LEGAL = '\u0000LEGAL\u0000';

const ADVERSARIAL = [
  '', ' ', '\n\n\t', '<action>', '</action>', '<action></action>', '<action> </action>', '<action> A </action><action> B',
  '<action> B </action> <action>', '</action> A <action>', '<action><action> A </action></action>', '<action> <action> BET </action> </action>',
  '<ACTION> A </ACTION>', '<action>A</action>', '<action>\nup , left\n</action>', '<action> up , up , up , up , up </action>',
  '<action> (2, 2) </action>', '<action> (0, 9) </action>', '<action> 2 2 </action>', '<action> (1,1) (2,2) </action>', '<action> ( 3 , 3 ) . </action>',
  '<action> PASS BET </action>', '<action> bet! </action>', '<action> ROCK. </action>', '<action> rock paper </action>',
  '<remark> good </remark>', '<remark> <action> A </action>', '<action> <remark> x </remark> </action>', '</remark> <remark>',
  '| now moves none | ->', '| trial 1 of 1 | ep 1 result won', 'result won </action>', '-> A ; -> B', '<unk>', '<unk> <unk>',
  '\u0000', '\uFFFD', '\uD800', '\u202E A', 'A\u200B', '😀', 'Ａ', 'A'.repeat(1), 'ÅÄÖ', '\\<action\\>', '<action/>', '<<action>> A <</action>>',
  '<action> A </action>'.repeat(500), '<action>'.repeat(2000), '</action>'.repeat(2000), 'x'.repeat(100_000), `${'<action> '.repeat(5000)} A </action>`,
];

const PIECES = ['<action>', '</action>', '<remark>', '</remark>', ' ', '\n', ',', '(', ')', '.', '|', '->', 'A', 'B', 'C', 'PASS', 'BET', 'up', 'left', 'ROCK', 'paper', '2', '(1, 3)', 'good', '<unk>', '😀', '\u0000', LEGAL];

const outputArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(LEGAL) },
  { weight: 3, arbitrary: fc.constantFrom(...ADVERSARIAL) },
  { weight: 3, arbitrary: fc.tuple(fc.array(fc.constantFrom(...PIECES), { maxLength: 12 }), fc.constantFrom('', ' ')).map(([p, sep]) => p.join(sep)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...PIECES), fc.integer({ min: 100, max: 20_000 })).map(([p, n]) => p.repeat(n)) },
);

/** The text an engine would return: LEGAL replaced by a legal action of the env (in tags or bare). */
function realise(out: string, env: TextEnv, n: number): string {
  if (!out.includes(LEGAL)) return out;
  let legal: string[] = [];
  try {
    legal = env.legalActions();
  } catch {
    legal = [];
  }
  const a = legal.length > 0 ? legal[n % legal.length]! : 'none';
  return out.replaceAll(LEGAL, n % 4 === 0 ? a : `<action> ${a} </action>`);
}

let outputsSeen = 0;
let trialOutputs = 0;

describe('fuzz: every environment parses any model output', () => {
  for (const name of ENV_NAMES) {
    it(`${name}: step never throws; an output its parser rejects is invalid`, () => {
      const env = makeEnv(name);
      const parse = PARSERS[name]!;
      let invalid = 0;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 30 }), fc.array(fc.tuple(outputArb, fc.nat({ max: 2 ** 30 })), { minLength: 1, maxLength: 12 }), (seed, outs) => {
          env.reset(seed);
          for (const [o, n] of outs) {
            const text = realise(o, env, n);
            const parsed = parse(text);
            const t0 = performance.now();
            let r: StepResult;
            try {
              r = env.step(text);
            } catch (e) {
              throw new Error(`${name}.step threw on ${JSON.stringify(text.slice(0, 200))}: ${(e as Error).stack}`, { cause: e });
            }
            outputsSeen++;
            expect(performance.now() - t0).toBeLessThan(1000);
            expect(typeof r.valid).toBe('boolean');
            expect(Number.isFinite(r.reward), JSON.stringify(r)).toBe(true);
            expect(typeof r.observation).toBe('string');
            if (parsed === null) {
              expect(r.valid, `${name}: ${JSON.stringify(text.slice(0, 200))} does not parse yet was valid`).toBe(false);
              invalid++;
            }
            if (r.done) {
              expect(r.observation).toBe('');
              expect(env.step(text).valid, 'a step after the end is invalid').toBe(false);
              env.reset(seed + n); // next episode: keep feeding outputs
            }
          }
        }),
        { numRuns: 300 },
      );
      expect(invalid).toBeGreaterThan(100);
    });
  }
});

/** An engine that answers with scripted raw texts (a remote engine may return any text). */
function scripted(tok: WordTokenizer, env: () => TextEnv, outputs: string[], contextLength: number | undefined): InferenceEngine & { calls: number; texts: string[] } {
  const self = {
    tokenizer: tok,
    contextLength,
    calls: 0,
    texts: [] as string[],
    version: () => 0,
    async generate(prompt: readonly number[], p: { maxTokens: number }): Promise<SampledCompletion> {
      if (contextLength !== undefined) expect(prompt.length + p.maxTokens).toBeLessThanOrEqual(contextLength);
      const text = realise(outputs[self.calls % outputs.length]!, env(), self.calls);
      self.calls++;
      self.texts.push(text);
      const ids = tok.encode(text).slice(0, p.maxTokens);
      return { ids, logprobs: ids.map(() => -1), versions: ids.map(() => 0), text, finishReason: 'stop', temperature: 1 };
    },
  };
  return self;
}

/** Records what every env.step saw and answered. */
function recording(env: TextEnv): { env: TextEnv; steps: { text: string; r: StepResult }[] } {
  const steps: { text: string; r: StepResult }[] = [];
  const proxy = new Proxy(env, {
    get(target, prop, receiver) {
      if (prop === 'step') return (text: string) => {
        const r = target.step(text);
        steps.push({ text, r });
        return r;
      };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { env: proxy, steps };
}

const CREDIT: CreditStage = { kind: 'mage', invalidCoef: 0.5, gammaStep: 0.95, gammaTrial: 0.6, lengthCoef: 0, maxLength: null, penaltyInReturns: false, episodeReward: 'differential' };
const ADVANTAGE: AdvantageStage = { estimator: 'gigpo', mode: 'mean_norm', stepWeight: 1, groupBy: ['group', 'opponent'], anchorKey: 'anchor', eps: 1e-6, stdUnbiased: true, episodeSingleton: 'raw' };

const trialCfgArb = fc.record({
  episodes: fc.integer({ min: 1, max: 3 }),
  contextMode: fc.constantFrom('reflection_only', 'history_only', 'history_and_reflection', 'none'),
  reflect: fc.boolean(),
  stateMode: fc.constantFrom('same_state', 'new_state'),
  stopWhenWon: fc.boolean(),
  maxTurns: fc.integer({ min: 1, max: 4 }),
  historyWindow: fc.integer({ min: 0, max: 3 }),
  obsWindow: fc.integer({ min: 0, max: 2 }),
  rules: fc.constantFrom('full', 'none'),
  pastEpisodes: fc.constantFrom('moves', 'summary', 'outcome'),
  anchor: fc.constantFrom('prompt', 'observation'),
}) as fc.Arbitrary<Partial<TrialConfig>>;

describe('fuzz: the trial loop over adversarial model outputs (constrained: false)', () => {
  const setups = ENV_NAMES.map((name) => {
    const env = makeEnv(name);
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS, 'good', 'bad', 'try', 'avoid']);
    return { name, tok };
  });

  it('every trial finishes; every play step is recorded with the env verdict; unparseable outputs are invalid, penalised turns', async () => {
    let trials = 0, invalidPlays = 0, invalidRemarks = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: setups.length - 1 }), trialCfgArb, fc.array(outputArb, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 2 ** 31 }), fc.constantFrom(undefined, 48, 200),
        async (si, cfg, outputs, seed, contextLength) => {
          const { name, tok } = setups[si]!;
          const group: Trajectory[] = [];
          for (let member = 0; member < 2; member++) {
            const rec = recording(makeEnv(name));
            const engine = scripted(tok, () => rec.env, member === 0 ? outputs : [...outputs].reverse(), contextLength);
            const what = () => `${name} ${JSON.stringify(cfg)} outputs ${JSON.stringify(outputs.map((o) => (o.length > 80 ? `${o.slice(0, 80)}…(${o.length})` : o)))}`;
            const t0 = performance.now();
            const t = await runTrial(rec.env, engine, { ...cfg, constrained: false }, { seed, groupId: 'g', opponent: 'none' });
            expect(performance.now() - t0, `slow: ${what()}`).toBeLessThan(5000);
            trials++;
            outputsSeen += engine.calls;
            trialOutputs += engine.calls;
            expect(t.samples.length, what()).toBe(engine.calls);
            const plays = t.samples.filter((s) => s.step!.kind === 'play');
            expect(plays.length, what()).toBe(rec.steps.length);
            plays.forEach((s, i) => {
              const { text, r } = rec.steps[i]!;
              expect(s.step!.valid, what()).toBe(r.valid);
              expect(s.reward).toBe(r.reward);
              if (PARSERS[name]!(text) === null) {
                expect(s.step!.valid, `${what()}: ${JSON.stringify(text.slice(0, 100))} was accepted`).toBe(false);
                invalidPlays++;
              }
            });
            for (const s of t.samples.filter((x) => x.step!.kind === 'reflection')) {
              if (!s.step!.valid) invalidRemarks++;
            }
            expect(t.episodes!.length).toBeGreaterThanOrEqual(1);
            expect(t.episodes!.every((e) => Number.isFinite(e.reward))).toBe(true);
            group.push(t);
          }
          // MAGE credit turns invalid steps into penalised returns; GiGPO advantages stay finite.
          if (group.every((t) => t.samples.length > 0)) {
            const batch = prepareBatch([{ trajectories: group, groupId: 'g' }], CREDIT, ADVANTAGE);
            for (const s of batch) {
              expect(Number.isFinite(s.ret)).toBe(true);
              expect(Number.isFinite(s.advantage as number)).toBe(true);
            }
          }
        },
      ),
      { numRuns: 600 },
    );
    expect(invalidPlays).toBeGreaterThan(300);
    expect(invalidRemarks).toBeGreaterThan(10);
    expect(trials).toBe(1200);
  }, 60_000);

  it('an invalid action is a penalised turn under MAGE credit; a complete tag pair followed by garbage counts', async () => {
    const { tok } = setups.find((s) => s.name === 'bandit')!;
    const run = async (out: string) => {
      const engine = scripted(tok, () => makeEnv('bandit'), [out], undefined);
      return runTrial(makeEnv('bandit'), engine, { episodes: 1, maxTurns: 1, reflect: false, constrained: false }, { seed: 3, groupId: 'g', opponent: 'none' });
    };
    const bad = await run('<action> A </action><action> Z'); // the last complete tag pair is A, then garbage: A counts
    const junk = await run('</action>');
    expect(bad.samples[0]!.step!.valid).toBe(true);
    expect(junk.samples[0]!.step!.valid).toBe(false);
    // MAGE: the invalid-action penalty is charged to the step's score (and to its return with penaltyInReturns).
    const valid = await run('<action> B </action>');
    expect(valid.samples[0]!.step!.valid).toBe(true);
    expect(creditTrajectory(junk, CREDIT).score[0]).toBe(junk.reward - 0.5);
    expect(creditTrajectory(valid, CREDIT).score[0]).toBe(valid.reward);
    expect(creditTrajectory(junk, { ...CREDIT, penaltyInReturns: true }).ret[0]).toBe(-0.5);
  });

  it('saw at least 10,000 model outputs in all', () => {
    // Vitest runs a file's tests in order: the env parser and trial fuzz above ran first.
    if (process.env.FUZZ_VERBOSE) console.log(`model outputs: ${outputsSeen} (trial loop: ${trialOutputs})`);
    expect(outputsSeen).toBeGreaterThanOrEqual(10_000);
  });
});
