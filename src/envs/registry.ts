/**
 * Environments by name, with options validated by zod (unknown keys are rejected, so a typo in a
 * config fails loudly), and the opponents each environment accepts by name.
 */
import { z } from 'zod';
import type { TextEnv } from './types.ts';
import { KuhnEnv } from './kuhn.ts';
import { KUHN_OPPONENT_NAMES } from './kuhn-opponents.ts';
import { TicTacToeEnv } from './tictactoe.ts';
import { TTT_OPPONENT_NAMES } from './ttt-opponents.ts';
import { SokobanEnv } from './sokoban.ts';
import { BanditEnv } from './bandit.ts';
import { RPS_OPPONENT_NAMES, RpsEnv } from './rps.ts';

const positiveInt = z.number().int().min(1);

export const envOptionSchemas = {
  kuhn: z.object({
    opponent: z.string().optional(),
    seat: z.union([z.literal(0), z.literal(1), z.literal('random')]).optional(),
    maxInvalid: positiveInt.optional(),
    rewardScale: z.number().positive().optional(),
    observation: z.enum(['text', 'token']).optional(),
  }).strict(),
  tictactoe: z.object({
    opponent: z.string().optional(),
    seat: z.enum(['X', 'O', 'random']).optional(),
    maxTurns: positiveInt.optional(),
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
  }).strict(),
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
  const parsed = envOptionSchemas[envName].safeParse(options);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ');
    throw new Error(`makeEnv('${name}'): invalid options — ${problems}`);
  }
  switch (envName) {
    case 'kuhn': return new KuhnEnv(parsed.data as EnvOptions<'kuhn'>);
    case 'tictactoe': return new TicTacToeEnv(parsed.data as EnvOptions<'tictactoe'>);
    case 'sokoban': return new SokobanEnv(parsed.data as EnvOptions<'sokoban'>);
    case 'bandit': return new BanditEnv(parsed.data as EnvOptions<'bandit'>);
    case 'rps': return new RpsEnv(parsed.data as EnvOptions<'rps'>);
  }
}

/**
 * Opponent names an environment accepts ([] for single-agent environments). Tic-tac-toe also
 * accepts any `mcts-<N>`; the list shows `mcts-100`. Rock-paper-scissors also accepts a pool (array).
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
