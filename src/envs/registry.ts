/**
 * Environments by name, with options validated by zod (unknown keys are rejected, so a typo in a
 * config fails loudly), and the opponents each environment accepts by name.
 */
import { z } from 'zod';
import { formatZodError } from '../core/config-errors.ts';
import type { TextEnv } from './types.ts';
import { KuhnEnv } from './kuhn.ts';
import { KUHN_OPPONENT_NAMES } from './kuhn-opponents.ts';
import { TicTacToeEnv } from './tictactoe.ts';
import { TTT_OPPONENT_NAMES } from './ttt-opponents.ts';
import { SokobanEnv } from './sokoban.ts';
import { BanditEnv } from './bandit.ts';
import { RPS_OPPONENT_NAMES, RpsEnv } from './rps.ts';

const positiveInt = z.number().int().min(1);

/**
 * Sokoban levels the generator can make and the exact solver can measure: the solver encodes a
 * state as (player, boxes) in base width·height, exactly only while (width·height)^(boxes+1) ≤ 2^53
 * (a larger level would also allocate grids of that size before failing); interior walls fit the
 * interior; solution-length bounds are ordered. Unset options take the generator's defaults (6 × 6,
 * 2 boxes, 5..21 solution steps; src/envs/sokoban-gen.ts).
 */
function checkSokobanSize(o: { width?: number; height?: number; boxes?: number; internalWalls?: [number, number]; minSolutionSteps?: number; maxSolutionSteps?: number }, ctx: z.RefinementCtx): void {
  const width = o.width ?? 6, height = o.height ?? 6, boxes = o.boxes ?? 2;
  const cells = width * height;
  if (!(Math.pow(cells, boxes + 1) <= Number.MAX_SAFE_INTEGER)) {
    const path = o.boxes !== undefined && Math.pow(cells, 2) <= Number.MAX_SAFE_INTEGER ? ['boxes'] : o.width !== undefined ? ['width'] : ['height'];
    ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `a ${width} × ${height} level with ${boxes} box(es) is too large for the exact solver: (width·height)^(boxes+1) must be ≤ 2^53` });
  }
  const interior = Math.max(0, (width - 2) * (height - 2));
  if (o.internalWalls) {
    const [lo, hi] = o.internalWalls;
    if (lo > hi) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['internalWalls'], message: `expected [min, max] with min ≤ max (got [${lo}, ${hi}])` });
    if (hi > interior) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['internalWalls'], message: `at most ${interior} interior walls fit a ${width} × ${height} level (got max ${hi})` });
  }
  const minSteps = o.minSolutionSteps ?? 5, maxSteps = o.maxSolutionSteps ?? 21;
  if (minSteps > maxSteps) {
    const path = o.minSolutionSteps !== undefined ? ['minSolutionSteps'] : ['maxSolutionSteps'];
    ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `minSolutionSteps (${minSteps}) must be ≤ maxSolutionSteps (${maxSteps})` });
  }
}

export const envOptionSchemas = {
  kuhn: z.object({
    opponent: z.string().optional(),
    seat: z.union([z.literal(0), z.literal(1), z.literal('random')]).optional(),
    maxInvalid: positiveInt.optional(),
    rewardScale: z.number().positive().finite().optional(),
    observation: z.enum(['text', 'token']).optional(),
  }).strict(),
  tictactoe: z.object({
    opponent: z.string().optional(),
    seat: z.enum(['X', 'O', 'random']).optional(),
    maxTurns: positiveInt.optional(),
    observation: z.enum(['text', 'token']).optional(),
    rewardScale: z.number().positive().finite().optional(),
  }).strict(),
  sokoban: z.object({
    width: z.number().int().min(3).optional(),
    height: z.number().int().min(3).optional(),
    boxes: positiveInt.optional(),
    internalWalls: z.tuple([z.number().int().min(0), z.number().int().min(0)]).optional(),
    reverseSteps: positiveInt.optional(),
    pullProbability: z.number().min(0).max(1).optional(),
    minSolutionSteps: z.number().int().min(0).optional(),
    maxSolutionSteps: positiveInt.optional(),
    maxAttempts: positiveInt.optional(),
    maxActionsPerTurn: positiveInt.optional(),
    maxTurns: positiveInt.optional(),
    observation: z.enum(['text', 'token']).optional(),
  }).strict().superRefine(checkSokobanSize),
  bandit: z.object({ arms: z.number().int().min(2).max(26).optional() }).strict(),
  rps: z.object({
    opponent: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
    rounds: positiveInt.optional(),
    maxInvalid: positiveInt.optional(),
  }).strict(),
} as const;

export type EnvName = keyof typeof envOptionSchemas;
export const ENV_NAMES = Object.keys(envOptionSchemas) as EnvName[];
export type EnvOptions<N extends EnvName> = z.infer<(typeof envOptionSchemas)[N]>;

export function makeEnv(name: 'kuhn', options?: EnvOptions<'kuhn'>): KuhnEnv;
export function makeEnv(name: 'tictactoe', options?: EnvOptions<'tictactoe'>): TicTacToeEnv;
export function makeEnv(name: 'sokoban', options?: EnvOptions<'sokoban'>): SokobanEnv;
export function makeEnv(name: 'bandit', options?: EnvOptions<'bandit'>): BanditEnv;
export function makeEnv(name: 'rps', options?: EnvOptions<'rps'>): RpsEnv;
export function makeEnv(name: string, options?: Record<string, unknown>): TextEnv;
export function makeEnv(name: string, options: Record<string, unknown> = {}): TextEnv {
  if (!(name in envOptionSchemas)) throw new Error(`makeEnv: unknown environment '${name}'; choose one of ${ENV_NAMES.join(', ')}`);
  const envName = name as EnvName;
  if (options !== null && typeof options === 'object' && !Array.isArray(options) && Object.hasOwn(options, 'opponent') && listOpponents(envName).length === 0) {
    throw new Error(`makeEnv('${name}'): '${name}' has no opponents (a single-agent environment); got opponent ${describe(options.opponent)}`);
  }
  const schema = envOptionSchemas[envName];
  const parsed = schema.safeParse(options);
  if (!parsed.success) throw new Error(`makeEnv('${name}'): invalid options — ${formatZodError(parsed.error, { schema, prefix: 'envOptions' })}`);
  switch (envName) {
    case 'kuhn': return new KuhnEnv(parsed.data as EnvOptions<'kuhn'>);
    case 'tictactoe': return new TicTacToeEnv(parsed.data as EnvOptions<'tictactoe'>);
    case 'sokoban': return new SokobanEnv(parsed.data as EnvOptions<'sokoban'>);
    case 'bandit': return new BanditEnv(parsed.data as EnvOptions<'bandit'>);
    case 'rps': return new RpsEnv(parsed.data as EnvOptions<'rps'>);
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * Opponent names an environment accepts ([] for single-agent environments). Tic-tac-toe also
 * accepts any `mcts-<N>` and `weak-c<N>`; the list shows `mcts-100` and `weak-c1`. Rock-paper-scissors also accepts a pool (array).
 */
export function listOpponents(envName: string): string[] {
  switch (envName) {
    case 'kuhn': return [...KUHN_OPPONENT_NAMES];
    case 'tictactoe': return [...TTT_OPPONENT_NAMES];
    case 'rps': return [...RPS_OPPONENT_NAMES];
    case 'sokoban':
    case 'bandit': return [];
    default: throw new Error(`listOpponents: unknown environment '${envName}'; choose one of ${ENV_NAMES.join(', ')}`);
  }
}
