/**
 * Fuzz of every config schema a user can reach (issue 16, "Also"): the run config (parseRunConfig,
 * mutating every shipped example config), the trainer config (parseTrainerConfig), the loss (rlLoss),
 * the credit and advantage stages, the trial config and every environment's options (makeEnv, then
 * reset and step). Random keys (prototype names, typos of valid keys, unicode), random types and
 * out-of-range numbers (NaN, ±Infinity, -0, huge, fractional) give either a parsed value or a plain
 * Error whose message names the field — never a TypeError/RangeError, never a hang.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readConfigFile } from '../src/cli/config-file.ts';
import { parseRunConfig, RunConfigSchema } from '../src/run/run-config.ts';
import { parseTrainerConfig, TrainerConfigSchema } from '../src/train/trainer.ts';
import { rlLoss } from '../src/train/rl-loss.ts';
import { AdvantageStageSchema, CreditStageSchema } from '../src/rl/stages.ts';
import { TrialConfigSchema } from '../src/agents/trial.ts';
import { ENV_NAMES, envOptionSchemas, listOpponents, makeEnv } from '../src/envs/registry.ts';
import { formatZodIssues } from '../src/core/config-errors.ts';
import type { ZodTypeAny } from 'zod';

const CONFIG_DIR = join(import.meta.dirname, '..', 'examples', 'configs');
const EXAMPLES = readdirSync(CONFIG_DIR).filter((f) => /\.(ya?ml|json)$/.test(f)).map((f) => readConfigFile(join(CONFIG_DIR, f)));

// ---- arbitraries -------------------------------------------------------------------------------

const specialNumber = fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, -1, 1, 2, 0.5, 1.5, 1e-300, 1e308, -1e308, 5e-324, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 53));
const anyNumber = fc.oneof(fc.integer({ min: -3, max: 300 }), fc.double(), specialNumber);
const validWords = ['task', 'kind', 'estimator', 'lr', 'episodes', 'trial', 'trainer', 'loss', 'credit', 'advantage', 'model', 'nLayer', 'opponents', 'name', 'weight', 'envOptions', 'population', 'eval'];
const keyArb = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'prototype', 'hasOwnProperty', 'valueOf', '', ' ', '0', 'length', ...validWords),
);
const enumLike = fc.constantFrom('mage', 'gigpo', 'grpo', 'ppo', 'decoupled_ppo', 'outcome', 'discounted', 'none', 'bandit', 'kuhn', 'toy-tool', 'history_only', 'random', 'token', 'text');
const valueArb: fc.Arbitrary<unknown> = fc.oneof(
  anyNumber,
  enumLike,
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.oneof(anyNumber, fc.string({ maxLength: 5 }), enumLike), { maxLength: 3 }),
  fc.dictionary(keyArb, fc.oneof(anyNumber, fc.string({ maxLength: 5 }), enumLike), { maxKeys: 3 }),
  fc.anything({ maxDepth: 2, withNullPrototype: true, withBoxedValues: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true, withDate: true, withBigInt: true }),
);

type Mutation = { kind: 'set' | 'number' | 'delete' | 'addKey' | 'typoKey' | 'replaceRoot'; sel: number; key: string; value: unknown; num: number; typo: number };
const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('set', 'set', 'number', 'number', 'delete', 'addKey', 'typoKey', 'typoKey', 'replaceRoot'),
  sel: fc.nat(),
  key: keyArb,
  value: valueArb,
  num: anyNumber,
  typo: fc.nat(),
});

type Path = (string | number)[];
const isContainer = (v: unknown): v is Record<string | number, unknown> => v !== null && typeof v === 'object' && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

function pathsOf(v: unknown, path: Path = [], out: Path[] = []): Path[] {
  out.push(path);
  if (isContainer(v) && path.length < 6) for (const k of Object.keys(v)) pathsOf(v[k], [...path, Array.isArray(v) ? Number(k) : k], out);
  return out;
}

function getAt(root: unknown, path: Path): unknown {
  let v = root;
  for (const k of path) v = (v as Record<string | number, unknown>)[k];
  return v;
}

/** An own property, even for '__proto__' (as JSON.parse and YAML produce it). */
function put(obj: Record<string | number, unknown>, key: string | number, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A near miss of a valid key: swapped letters, a dropped or doubled letter, snake_case, another case. */
function typoOf(key: string, n: number): string {
  if (key.length < 2) return key + 'x';
  const i = n % (key.length - 1);
  switch (n % 5) {
    case 0: return key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2);
    case 1: return key.slice(0, i) + key.slice(i + 1);
    case 2: return key.slice(0, i) + key[i] + key.slice(i);
    case 3: return key.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
    default: return key[0] === key[0]!.toUpperCase() ? key.toLowerCase() : key[0]!.toUpperCase() + key.slice(1);
  }
}

function mutate(base: unknown, muts: readonly Mutation[]): unknown {
  let root: unknown = structuredClone(base);
  for (const m of muts) {
    if (m.kind === 'replaceRoot') {
      if (m.sel % 4 === 0) root = m.value;
      continue;
    }
    const all = pathsOf(root);
    const inner = all.filter((p) => p.length > 0);
    if (m.kind === 'addKey') {
      const objects = all.filter((p) => isContainer(getAt(root, p)) && !Array.isArray(getAt(root, p)));
      if (objects.length === 0) continue;
      put(getAt(root, objects[m.sel % objects.length]!) as Record<string, unknown>, m.key, m.value);
      continue;
    }
    if (inner.length === 0) continue;
    const path = inner[m.sel % inner.length]!;
    const parent = getAt(root, path.slice(0, -1)) as Record<string | number, unknown>;
    const last = path[path.length - 1]!;
    switch (m.kind) {
      case 'set': put(parent, last, m.value); break;
      case 'number': put(parent, last, m.num); break;
      case 'delete': if (Array.isArray(parent)) parent.splice(Number(last), 1); else delete parent[last]; break;
      case 'typoKey': {
        if (Array.isArray(parent)) break;
        const v = parent[last];
        delete parent[last];
        put(parent, typoOf(String(last), m.typo), v);
        break;
      }
    }
  }
  return root;
}

// ---- checks ------------------------------------------------------------------------------------

const SLOW_MS = 2000;

/** `fn` returns, or throws a plain Error matching `message`; never another kind of error; quickly. */
function parsesOrNames<T>(fn: () => T, message: RegExp, what: () => string): { ok: T } | { error: Error } {
  const t0 = performance.now();
  try {
    return { ok: fn() };
  } catch (e) {
    expect(e, what()).toBeInstanceOf(Error);
    const err = e as Error;
    expect(err.constructor, `${what()}\n${err.stack}`).toBe(Error);
    expect(err.message, what()).toMatch(message);
    return { error: err };
  } finally {
    expect(performance.now() - t0, `slow: ${what()}`).toBeLessThan(SLOW_MS);
  }
}

/** A printable form of a fuzzed input (numbers like NaN and BigInts shown). */
function show(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : typeof x === 'bigint' ? `${x}n` : x))?.slice(0, 2000) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Every line of a config error after the first names a field: `  path.to.field: message`. */
function expectFieldLines(lines: readonly string[], input: unknown, what: () => string): void {
  expect(lines.length, what()).toBeGreaterThan(0);
  for (const line of lines) {
    expect(line, what()).toMatch(/^[\s\S]*?: \S/); // the path may be an empty or blank key: `: unknown key`
    if (isContainer(input) && !Array.isArray(input)) expect(line, `an object input gets field paths, not (root): ${what()}`).not.toMatch(/^\(root\):/);
  }
}

/** safeParse never throws; a failure formats to lines that each name a field. */
function schemaParsesOrNames(schema: ZodTypeAny, input: unknown): boolean {
  const what = () => show(input);
  const t0 = performance.now();
  let r: ReturnType<ZodTypeAny['safeParse']>;
  try {
    r = schema.safeParse(input);
  } catch (e) {
    throw new Error(`safeParse threw ${(e as Error).constructor.name}: ${(e as Error).message} on ${what()}`, { cause: e });
  }
  if (!r.success) expectFieldLines(formatZodIssues(r.error, { schema }), input, what);
  expect(performance.now() - t0).toBeLessThan(SLOW_MS);
  return r.success;
}

const RUNS = 300;

describe('fuzz: run config (parseRunConfig) from every example config', () => {
  it('mutated configs parse or fail with `invalid run config:` and one `field.path: message` line per problem', () => {
    let ok = 0, failed = 0;
    fc.assert(
      fc.property(fc.nat({ max: EXAMPLES.length - 1 }), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (i, muts) => {
        const input = mutate(EXAMPLES[i], muts);
        const what = () => show(input);
        const r = parsesOrNames(() => parseRunConfig(input), /^invalid run config:\n {2}[\s\S]*?: \S/, what);
        if ('ok' in r) ok++;
        else {
          failed++;
          const parsed = RunConfigSchema.safeParse(input);
          expect(parsed.success, what()).toBe(false);
          if (!parsed.success) expectFieldLines(formatZodIssues(parsed.error, { schema: RunConfigSchema }), input, what);
        }
      }),
      { numRuns: RUNS * 3 },
    );
    expect(ok).toBeGreaterThan(20);
    expect(failed).toBeGreaterThan(RUNS);
  });

  it('a typo of a valid key is named with the key it should be', () => {
    fc.assert(
      fc.property(fc.nat({ max: EXAMPLES.length - 1 }), fc.nat(), fc.nat(), (i, sel, typo) => {
        const base = structuredClone(EXAMPLES[i]) as Record<string, unknown>;
        const keys = Object.keys(base).filter((k) => k.length >= 4);
        const key = keys[sel % keys.length]!;
        const bad = typoOf(key, typo);
        if (bad === key || Object.hasOwn(base, bad)) return;
        const input = mutate(base, [{ kind: 'typoKey', sel: pathsOf(base).filter((p) => p.length > 0).findIndex((p) => p.length === 1 && p[0] === key), key: '', value: null, num: 0, typo }]);
        expect(() => parseRunConfig(input)).toThrow(new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: unknown key \\(did you mean '${key}'\\?\\)`));
      }),
      { numRuns: 100 },
    );
  });

  it('arbitrary values at the root are refused naming the config', () => {
    fc.assert(
      fc.property(valueArb, (input) => {
        parsesOrNames(() => parseRunConfig(input), /^invalid run config:\n {2}[\s\S]*?: \S/, () => show(input));
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: trainer config and its stages', () => {
  const trainers = EXAMPLES.map((c) => (c as { trainer: unknown }).trainer);

  it('parseTrainerConfig: parsed or `invalid trainer config: field: message`', () => {
    fc.assert(
      fc.property(fc.nat({ max: trainers.length - 1 }), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (i, muts) => {
        const input = mutate(trainers[i], muts);
        const r = parsesOrNames(() => parseTrainerConfig(input), /^invalid trainer config: [\s\S]*?: \S/, () => show(input));
        if ('error' in r) schemaParsesOrNames(TrainerConfigSchema, input);
      }),
      { numRuns: RUNS },
    );
  });

  it('loss (rlLoss), credit and advantage stages', () => {
    const stages: [string, ZodTypeAny][] = [['credit', CreditStageSchema], ['advantage', AdvantageStageSchema]];
    fc.assert(
      fc.property(fc.nat({ max: trainers.length - 1 }), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (i, muts) => {
        const t = trainers[i] as Record<string, unknown>;
        const loss = mutate(t.loss ?? {}, muts);
        parsesOrNames(() => rlLoss(loss as never), /^invalid loss config: loss\.\S*: \S/, () => show(loss));
        for (const [name, schema] of stages) schemaParsesOrNames(schema, mutate(t[name] ?? {}, muts));
      }),
      { numRuns: RUNS },
    );
  });

  it('trial config', () => {
    const trials = EXAMPLES.map((c) => (c as { trial?: unknown }).trial ?? {});
    fc.assert(
      fc.property(fc.nat({ max: trials.length - 1 }), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (i, muts) => {
        schemaParsesOrNames(TrialConfigSchema, mutate(trials[i], muts));
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: environment options (makeEnv, reset, step)', () => {
  const BASES: Record<string, Record<string, unknown>> = {
    kuhn: { opponent: 'random', seat: 'random', maxInvalid: 2, rewardScale: 1, observation: 'token' },
    tictactoe: { opponent: 'minimax', seat: 'O', maxTurns: 5 },
    sokoban: { width: 7, height: 6, boxes: 2, internalWalls: [0, 2], reverseSteps: 20, pullProbability: 0.8, minSolutionSteps: 2, maxSolutionSteps: 30, maxAttempts: 50, maxActionsPerTurn: 2, maxTurns: 5 },
    bandit: { arms: 4 },
    rps: { opponent: ['rock', 'copy'], rounds: 3, maxInvalid: 2 },
  };
  /** Options whose cost grows linearly with their value (work per reset), kept small when the env is also reset. */
  const EFFORT = ['reverseSteps', 'maxAttempts'];

  it('every env: options build an env or an Error naming the option; built envs reset and step without crashing', () => {
    let built = 0, refused = 0;
    fc.assert(
      fc.property(fc.constantFrom(...ENV_NAMES), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 2 ** 31 }), fc.array(fc.string({ maxLength: 30 }), { maxLength: 4 }), (name, muts, seed, outputs) => {
        const opts = mutate(BASES[name], muts);
        const what = () => `${name} ${show(opts)}`;
        const r = parsesOrNames(() => makeEnv(name, opts as Record<string, unknown>), new RegExp(`^(makeEnv\\('${name}'\\): (invalid options — envOptions[\\s\\S]*?: \\S|'${name}' has no opponents)|${name}: (unknown opponent|opponent|\\w+ must be))`), what);
        if ('error' in r) {
          refused++;
          return;
        }
        built++;
        const o = (opts ?? {}) as Record<string, unknown>;
        if (EFFORT.some((k) => typeof o[k] === 'number' && (o[k] as number) > 500)) return;
        const start = performance.now();
        let first: string;
        try {
          first = r.ok.reset(seed);
        } catch (e) {
          // Only the generator may refuse (no level within its attempts), with a plain Error.
          expect((e as Error).constructor, `${what()}: ${(e as Error).stack}`).toBe(Error);
          expect((e as Error).message, what()).toMatch(/^(generateSokoban|solveSokoban): \S/);
          return;
        }
        expect(typeof first).toBe('string');
        for (const out of outputs) {
          const s = r.ok.step(out);
          expect(Number.isNaN(s.reward), what()).toBe(false);
          expect(typeof s.valid).toBe('boolean');
          if (s.done) break;
        }
        expect(r.ok.restart(), what()).toBe(first);
        expect(performance.now() - start, `slow: ${what()}`).toBeLessThan(5000);
      }),
      { numRuns: RUNS * 2 },
    );
    expect(built).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(50);
  });

  it('every option schema: safeParse never throws and names the field', () => {
    fc.assert(
      fc.property(fc.constantFrom(...ENV_NAMES), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (name, muts) => {
        schemaParsesOrNames(envOptionSchemas[name], mutate(BASES[name], muts));
      }),
      { numRuns: RUNS },
    );
  });

  it('an opponent for a single-agent env says it has no opponents; a typo of an option names the closest one', () => {
    for (const name of ENV_NAMES.filter((n) => listOpponents(n).length === 0)) {
      expect(() => makeEnv(name, { opponent: 'X' })).toThrow(new RegExp(`^makeEnv\\('${name}'\\): '${name}' has no opponents \\(a single-agent environment\\); got opponent 'X'$`));
    }
    expect(() => makeEnv('bandit', { arm: 3 })).toThrow(/envOptions\.arm: unknown key \(did you mean 'arms'\?\)/);
    expect(() => makeEnv('sokoban', { max_turns: 3 })).toThrow(/envOptions\.max_turns: unknown key \(did you mean 'maxTurns'\?\)/);
  });

  it('sokoban sizes the exact solver cannot handle, unordered bounds and too many walls are refused at makeEnv', () => {
    // Before: width 100000 × height 100000 was accepted, and reset spent ~11 s filling a 10^10-cell grid, then threw RangeError: Invalid array length.
    expect(() => makeEnv('sokoban', { width: 100_000, height: 100_000 })).toThrow(/^makeEnv\('sokoban'\): invalid options — envOptions\.width: a 100000 × 100000 level with 2 box\(es\) is too large for the exact solver/);
    expect(() => makeEnv('sokoban', { width: 20, height: 20, boxes: 6 })).toThrow(/envOptions\.boxes: a 20 × 20 level with 6 box\(es\) is too large/);
    expect(() => makeEnv('sokoban', { internalWalls: [3, 1] })).toThrow(/envOptions\.internalWalls: expected \[min, max\] with min ≤ max/);
    expect(() => makeEnv('sokoban', { width: 5, height: 5, internalWalls: [0, 10] })).toThrow(/envOptions\.internalWalls: at most 9 interior walls fit a 5 × 5 level/);
    expect(() => makeEnv('sokoban', { maxSolutionSteps: 3 })).toThrow(/envOptions\.maxSolutionSteps: minSolutionSteps \(5\) must be ≤ maxSolutionSteps \(3\)/);
    expect(() => makeEnv('kuhn', { rewardScale: Infinity })).toThrow(/envOptions\.rewardScale: Number must be finite/);
    expect(makeEnv('sokoban', { width: 8, height: 8, boxes: 3 }).reset(1)).toContain('#');
  });
});

/**
 * Known gaps (issue 16 follow-up, schemas owned by other modules): numeric fields of the run config
 * that still accept ±Infinity. This list may only shrink; a field that newly accepts a non-finite
 * number fails the test. Records validated later (envOptions, optimizer, eval.trial) are left out.
 */
const KNOWN_NONFINITE = new Set<string>([]);

describe('run config: numbers must be finite', () => {
  it('±Infinity at any numeric field of a resolved example config is refused, except the known gaps', () => {
    const accepted = new Set<string>();
    for (const example of EXAMPLES) {
      const full = JSON.parse(JSON.stringify(parseRunConfig(example))) as unknown;
      for (const path of pathsOf(full)) {
        if (typeof getAt(full, path) !== 'number' || ['envOptions', 'optimizer'].includes(String(path[0])) || (path[0] === 'eval' && path[1] === 'trial')) continue;
        for (const v of [Infinity, -Infinity]) {
          const input = structuredClone(full);
          put(getAt(input, path.slice(0, -1)) as Record<string, unknown>, path[path.length - 1]!, v);
          const r = RunConfigSchema.safeParse(input);
          if (r.success) accepted.add(path.map((k) => (typeof k === 'number' ? '*' : k)).join('.'));
        }
      }
    }
    const unexpected = [...accepted].filter((p) => !KNOWN_NONFINITE.has(p));
    expect(unexpected, `fields that accept ±Infinity: ${[...accepted].sort().join(', ')}`).toEqual([]);
  });
});
