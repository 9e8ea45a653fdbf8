/** Public surface of the environments: build envs by name, or import a specific env and its oracles. */
export type { StepResult, TextEnv, Opponent } from './types.ts';
export { ENV_NAMES, envOptionSchemas, listOpponents, makeEnv, type EnvName, type EnvOptions } from './registry.ts';
export { splitWords, extractActionText } from './text.ts';
export { mulberry32, mixSeed, type RandomSource } from './rng.ts';

export { KuhnEnv, parseKuhnAction, type KuhnEnvOptions } from './kuhn.ts';
export { KUHN_OPPONENT_NAMES, kuhnOpponent, policyOpponent, type KuhnOpponent } from './kuhn-opponents.ts';
export { KUHN_GAME_VALUE_P0, kuhnCfrSolution, solveKuhnCfr, type CfrSolution } from './kuhn-cfr.ts';
export {
  bestResponseTo, bestResponseValue, nonAdaptiveBestResponse, nonAdaptiveCeiling, winnability, winnabilityByDeal,
  type MixtureEntry, type SeatSpec,
} from './kuhn-oracles.ts';

export { TicTacToeEnv, parseTttAction, type TicTacToeEnvOptions } from './tictactoe.ts';
export { TTT_OPPONENT_NAMES, PRIORITY_LISTS, tttOpponent, mctsPlayer, minimaxPlayer, priorityPlayer, greedyPlayer, type TttOpponent } from './ttt-opponents.ts';

export { SokobanEnv, SOKOBAN_REWARDS, parseSokobanActions, type SokobanEnvOptions } from './sokoban.ts';
export { generateSokoban, type SokobanGenOptions } from './sokoban-gen.ts';
export { solveSokoban } from './sokoban-solver.ts';
export { parseLevel, renderGrid, type SokobanLevel } from './sokoban-level.ts';

export { BanditEnv, banditCeilings, parseBanditAction, type BanditEnvOptions } from './bandit.ts';
export { RpsEnv, RPS_OPPONENT_NAMES, rpsCeilings, rpsOpponent, parseRpsAction, type RpsEnvOptions } from './rps.ts';
