/**
 * Every word a shipped trial config puts in a prompt is in its tokenizer's vocabulary: a missing
 * word is read as `<unk>` without any error (the word tokenizer never throws), so the model silently
 * sees less than the config says — as Sokoban's `tried` marker once did.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfigFile } from '../src/cli/config-file.ts';
import { parseRunConfig, TRIAL_TASKS, isPathModel } from '../src/run/run-config.ts';
import { trialParts } from '../src/run/run.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import type { Trajectory } from '../src/core/types.ts';
import { populationConfigOf } from '../src/run/population-run.ts';
import { Population } from '../src/train/population.ts';

const dir = 'examples/configs';
const configs = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => ({ file: f, cfg: parseRunConfig(readConfigFile(join(dir, f))) }))
  .filter(({ cfg }) => (TRIAL_TASKS as readonly string[]).includes(cfg.task) && !isPathModel(cfg.model));

describe('shipped trial configs speak only words their tokenizer knows', () => {
  it('finds the trial configs (Sokoban with tried actions among them)', () => {
    expect(configs.length).toBeGreaterThan(10);
    expect(configs.some(({ cfg }) => cfg.task === 'sokoban' && cfg.trial.triedActions)).toBe(true);
  });

  it.each(configs.map((c) => [c.file, c] as const))('%s: no <unk> in any prompt of a few trials per opponent', async (_file, { cfg }) => {
    const parts = trialParts(cfg, defaultBackend(), null);
    const tokenizer = parts.tokenizer!; // trial tasks on the built-in model always have a word tokenizer
    const unk = tokenizer.encode('<unk>')[0]!;
    const ctx = { version: 0, admitVersion: 0, signal: new AbortController().signal, groupIndex: 0, groupId: 'g0', member: 0, attempt: 0 };
    const opponents = [...new Set([...cfg.opponents.map((o) => o.name), ...(cfg.eval.opponents ?? [])])];
    let prompts = 0;
    for (const opponent of opponents) {
      for (let seed = 0; seed < 3; seed++) {
        const out = await parts.workflow({ opponent, seed }, ctx);
        for (const t of [out].flat() as Trajectory[]) {
          for (const s of t.samples) {
            prompts++;
            const at = s.seq.ids.indexOf(unk);
            if (at >= 0) throw new Error(`${opponent} seed ${seed}: <unk> at token ${at} of "${tokenizer.decode(s.seq.ids)}"`);
          }
        }
      }
    }
    expect(prompts).toBeGreaterThan(0);
  });

  // A population builds its learners' tokenizer itself (Population.create); it must add the same
  // trial words a single run adds, or its prompts carry <unk> where the single run's do not.
  const populations = configs.filter(({ cfg }) => cfg.population);
  it('finds the population configs', () => expect(populations.length).toBeGreaterThan(0));
  it.each(populations.map((c) => [c.file, c] as const))('%s: the population tokenizer is the single run\'s, word for word', (_file, { cfg }) => {
    const words = (t: { vocabSize: number; tokenString(id: number): string }) => Array.from({ length: t.vocabSize }, (_, i) => t.tokenString(i));
    const pop = Population.create({ ...populationConfigOf(cfg), size: 1 });
    expect(words(pop.tokenizer)).toEqual(words(trialParts(cfg, defaultBackend(), null).tokenizer!));
  });
});
