/**
 * The QA synthesis loop (ASearcher's data-synthesis agent): from a seed QA with its supporting
 * statement, up to `maxSteps` edits, each INJECT (one more hop) or FUZZ (blur a named entity), each
 * followed by the validity checks; an edit is kept only when they all pass. The loop stops once the QA
 * has `targetHops` hops — and, with `requireDifficulty`, once a tool-free policy also fails it (after
 * the target only FUZZ edits are made, as they keep the hop count). As in ASearcher's released code,
 * difficulty decides when to stop, not which edits to keep. Every attempt, kept or not, is recorded.
 *
 * Deterministic given the seed (with the rule-based operators and checks, or deterministic fakes).
 */
import { z } from 'zod';
import { Rng } from '../core/rng.ts';
import { formatZodError } from '../core/config-errors.ts';
import { chainQuestion, type KbWorld } from './kb.ts';
import type { EditOp, SynthOperators, SynthQa } from './operators.ts';
import { checkDifficulty, checksPass, type DifficultyCheck, type DifficultyOutcome, type SynthChecks, type ValidityChecks } from './checks.ts';

export interface EditRecord {
  /** 0-based attempt number. */
  step: number;
  op: EditOp;
  /** Kept: the operator made an edit and every validity check passed. */
  accepted: boolean;
  /** Why the edit was not kept (the operator's reason, or the failed checks). */
  reason?: string;
  questionBefore: string;
  /** The edited question (also when a check rejected it). */
  questionAfter?: string;
  /** Statements the edit added. */
  added: string[];
  hopsBefore: number;
  hopsAfter?: number;
  /** The operator's own description of the edit. */
  note?: string;
  checks?: ValidityChecks;
  difficulty?: DifficultyOutcome;
}

export interface SynthesisResult {
  qa: SynthQa;
  /** 'done': the stopping rule was met; 'max-steps': the steps ran out first. */
  status: 'done' | 'max-steps';
  edits: EditRecord[];
  injections: number;
  fuzzes: number;
  /** The seed's difficulty, when a difficulty check was given. */
  seedDifficulty?: DifficultyOutcome;
}

export const SynthesisSettingsSchema = z
  .object({
    seed: z.number().int(),
    /** Edit attempts, kept or not (ASearcher: 16). */
    maxSteps: z.number().int().min(0).default(16),
    /** Stop at this many hops (1–8 in the CLI; the seed counts its own). */
    targetHops: z.number().int().min(1),
    /** Probability of INJECT (else FUZZ) while below the target; default from the paper's 4.27 injections to 2.10 fuzzes per QA. */
    pInject: z.number().min(0).max(1).default(0.67),
    /** Tool-free samples per difficulty check (ASearcher: 8). */
    difficultySamples: z.number().int().min(1).default(8),
    /** Also require the difficulty check to pass before stopping. */
    requireDifficulty: z.boolean().default(false),
  })
  .strict();

export type SynthesisSettings = z.input<typeof SynthesisSettingsSchema>;

export interface SynthesisOptions extends SynthesisSettings {
  operators: SynthOperators;
  checks: SynthChecks;
  difficulty?: DifficultyCheck;
  signal?: AbortSignal;
}

/** A seed QA: a random 1-hop chain question of the world, with its one supporting statement. */
export function seedQa(world: KbWorld, rng: Rng, id = ''): SynthQa & { id: string } {
  const q = chainQuestion(world, rng, 1, id);
  return { id: q.id, question: q.question, answer: q.answer, statements: [...q.statements], hops: q.hops };
}

function failedChecks(c: ValidityChecks): string {
  return (Object.entries(c) as [string, { pass: boolean; detail: string }][])
    .filter(([, o]) => !o.pass)
    .map(([k, o]) => `${k}: ${o.detail}`)
    .join('; ');
}

export async function synthesize(seed: SynthQa, options: SynthesisOptions): Promise<SynthesisResult> {
  const { operators, checks, difficulty, signal, ...rest } = options;
  const parsed = SynthesisSettingsSchema.safeParse(rest);
  if (!parsed.success) throw new Error(`invalid synthesis settings: ${formatZodError(parsed.error, { schema: SynthesisSettingsSchema })}`);
  const s = parsed.data;
  if (s.requireDifficulty && !difficulty) throw new Error('synthesize: requireDifficulty is set but no difficulty check was given');
  if (seed.hops > s.targetHops) throw new Error(`synthesize: the seed already has ${seed.hops} hops, more than targetHops ${s.targetHops}`);

  const rng = new Rng(s.seed);
  let qa: SynthQa = { ...seed, statements: [...seed.statements] };
  const edits: EditRecord[] = [];
  let injections = 0;
  let fuzzes = 0;
  const seedDifficulty = difficulty ? await checkDifficulty(difficulty, qa, s.difficultySamples) : undefined;
  let hard = seedDifficulty?.pass ?? false;
  const done = () => qa.hops >= s.targetHops && (!s.requireDifficulty || hard);

  for (let step = 0; step < s.maxSteps && !done(); step++) {
    signal?.throwIfAborted();
    // Draw every step (even at the target) so the random stream does not depend on the hop count.
    const draw = rng.next();
    const op: EditOp = qa.hops < s.targetHops && draw < s.pInject ? 'inject' : 'fuzz';
    const record: EditRecord = { step, op, accepted: false, questionBefore: qa.question, added: [], hopsBefore: qa.hops };
    edits.push(record);
    const r = op === 'inject' ? await operators.inject(qa, rng, signal) : await operators.fuzz(qa, rng, signal);
    if (!r.ok) {
      record.reason = r.reason;
      continue;
    }
    Object.assign(record, { questionAfter: r.qa.question, added: r.added, hopsAfter: r.qa.hops, note: r.note });
    record.checks = await checks.validate(r.qa, signal);
    if (!checksPass(record.checks)) {
      record.reason = failedChecks(record.checks);
      continue;
    }
    record.accepted = true;
    qa = r.qa;
    if (op === 'inject') injections++;
    else fuzzes++;
    if (difficulty) {
      record.difficulty = await checkDifficulty(difficulty, qa, s.difficultySamples);
      hard = record.difficulty.pass;
    }
  }
  return { qa, status: done() ? 'done' : 'max-steps', edits, injections, fuzzes, ...(seedDifficulty ? { seedDifficulty } : {}) };
}
