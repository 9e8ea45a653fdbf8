/**
 * The entropy-bonus schedule: hand-computed coefficients, and the training loop trains each batch
 * with the coefficient of its weight version (so a resumed run continues the schedule); run configs
 * where the schedule cannot apply (population, Tinker) are refused.
 */
import { describe, expect, it } from 'vitest';
import { entropyCoefAt } from '../src/rl/entropy-schedule.ts';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { selectBackend } from '../src/engine/backends.ts';
import { BuiltinTrainer } from '../src/train/builtin-trainer.ts';
import { InProcessTrainer, type PolicyTrainer } from '../src/train/policy-trainer.ts';
import { Trainer, parseTrainerConfig } from '../src/train/trainer.ts';
import { toyToolMaxTokens, toyToolTasks, toyToolTokenizer, toyToolWorkflow } from '../src/agents/toy-tool-agent.ts';
import type { LossConfigInput } from '../src/rl/losses.ts';
import { applyOverrides, parseRunConfig } from '../src/run/run-config.ts';
import { readConfigFile } from '../src/cli/config-file.ts';

describe('entropyCoefAt', () => {
  it('holds, falls linearly, then stays (hand-computed)', () => {
    const d = { to: 0.03, start: 100, steps: 200 };
    expect(entropyCoefAt(0.15, undefined, 500)).toBe(0.15);
    expect(entropyCoefAt(0.15, d, 0)).toBe(0.15);
    expect(entropyCoefAt(0.15, d, 100)).toBe(0.15);
    expect(entropyCoefAt(0.15, d, 200)).toBeCloseTo(0.09, 12);
    expect(entropyCoefAt(0.15, d, 250)).toBeCloseTo(0.06, 12);
    expect(entropyCoefAt(0.15, d, 300)).toBeCloseTo(0.03, 12);
    expect(entropyCoefAt(0.15, d, 10_000)).toBeCloseTo(0.03, 12);
    expect(entropyCoefAt(0, { to: 0.1, start: 0, steps: 4 }, 1)).toBeCloseTo(0.025, 12); // rising works too
  });

  it('a bad schedule names the field', () => {
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, entropyDecay: { to: 0.1 } })).toThrow(/entropyDecay\.steps/);
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, entropyDecay: { to: -1, steps: 3 } })).toThrow(/entropyDecay\.to/);
    expect(() => parseTrainerConfig({ steps: 1, batchSize: 1, entropyDecay: { to: 0, steps: 3, stop: 9 } })).toThrow(/stop/);
  });
});

describe('run configs with an entropy decay', () => {
  it('a run config where the schedule cannot apply is refused at parse time, naming the field', () => {
    // Population members carry their own (PBT-explored) entropy coefficient: the schedule would be ignored.
    const pop = applyOverrides(readConfigFile('examples/configs/kuhn-population.yaml'), ['trainer.entropyDecay={"to":0,"steps":10}']);
    expect(() => parseRunConfig(pop)).toThrow(/trainer\.entropyDecay: population members carry their own entropy coefficient/);
    // Tinker's losses have no entropy term: a schedule reaching a non-zero coefficient would fail mid-run.
    const toy = applyOverrides(readConfigFile('examples/configs/toy-tool-async.yaml'), [
      'trainerService={"kind":"tinker","url":"http://127.0.0.1:1"}', 'trainer.maxStaleness=0', 'trainer.loss={"kind":"ppo","entropyCoef":0,"dualClip":null}',
    ]);
    expect(() => parseRunConfig(toy)).not.toThrow();
    expect(() => parseRunConfig(applyOverrides(toy, ['trainer.entropyDecay={"to":0.01,"start":5,"steps":2}']))).toThrow(/trainer\.entropyDecay\.to: trainerService \(Tinker\)/);
    expect(() => parseRunConfig(applyOverrides(toy, ['trainer.entropyDecay={"to":0,"steps":2}']))).not.toThrow();
  });
});

describe('the training loop with an entropy decay', () => {
  const V = 24;
  const AGENT = { vocabSize: V, tokensPerTurn: 3, longFraction: 0.25, shortTurns: [0, 2] as [number, number], longTurns: [5, 7] as [number, number], latencyMedianSeconds: 0, latencyP99Seconds: 0 };
  const MODEL = { vocabSize: V, contextLength: toyToolMaxTokens(AGENT) + 1, nLayer: 1, nHead: 2, nEmbd: 16, initStd: 0.1 };
  const backend = selectBackend();

  /** Runs `steps` steps from weight version `from` and returns the entropy coefficient each batch was trained with. */
  async function coefficients(from: number, steps: number): Promise<{ passed: number[]; reported: number[] }> {
    const engine = new BuiltinEngine(new Transformer(MODEL, backend, 3), toyToolTokenizer(V), { maxBatch: 16, seed: 3 });
    engine.setWeights(engine.model.params, from);
    const inner = new InProcessTrainer(new BuiltinTrainer(new Transformer(MODEL, backend, 3), { lr: 1e-3, weightDecay: 0 }));
    const passed: number[] = [];
    const trainer: PolicyTrainer = {
      version: () => inner.version(),
      close: () => inner.close(),
      train: (s, l: LossConfigInput) => {
        passed.push(l.entropyCoef ?? Number.NaN);
        return inner.train(s, l);
      },
    };
    const t = new Trainer({
      config: { steps, batchSize: 1, groupSize: 2, maxStaleness: 0, loss: { kind: 'ppo', entropyCoef: 0.2 }, entropyDecay: { to: 0, start: 1, steps: 4 } },
      engine, trainer, source: toyToolTasks(3, V), workflow: toyToolWorkflow(engine, AGENT), initialVersion: from,
    });
    const res = await t.run();
    return { passed, reported: res.steps.map((m) => m.entropyCoef) };
  }

  it('trains each batch with the coefficient of its version, and a resumed run continues the schedule', async () => {
    const fresh = await coefficients(0, 3);
    const expected = [0.2, 0.2, 0.15];
    fresh.passed.forEach((c, i) => expect(c).toBeCloseTo(expected[i]!, 12));
    expect(fresh.reported).toEqual(fresh.passed);
    const resumed = await coefficients(4, 3); // versions 4, 5, 6
    const expectedResumed = [0.05, 0, 0];
    resumed.passed.forEach((c, i) => expect(c).toBeCloseTo(expectedResumed[i]!, 12));
  });
});
