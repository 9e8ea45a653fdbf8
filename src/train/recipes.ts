/**
 * Training recipes shared by the quickstart and the results scripts, so that "the quickstart runs
 * the same recipe as docs/results/meta-rl.md" stays true by construction.
 */

/** Credit, advantage and loss settings of every meta-RL result in docs/results/meta-rl.md. */
export const META_RL_TRAINING = {
  credit: { gammaStep: 0.95, gammaTrial: 0.6, invalidCoef: 0.5 },
  advantage: { mode: 'mean_norm' },
  loss: { kind: 'ppo', entropyCoef: 0.02 },
} as const;

/**
 * The 3-armed bandit adaptation task. Past episodes are shown as one fused token each (e.g. `B_won`):
 * with separate arm and result tokens the tiny model must discover an arm × result interaction and
 * learning is seed-dependent (docs/results/meta-rl.md).
 */
export const BANDIT_RECIPE = {
  trial: { episodes: 3, contextMode: 'history_only', reflect: false, stateMode: 'same_state', stopWhenWon: false, maxTurns: 1, rules: 'none', pastEpisodes: 'outcome', temperature: 1 },
  model: { contextLength: 128, nLayer: 2, nHead: 4, nEmbd: 64 },
  lr: 3e-3,
  iterations: 100,
  groups: 16,
  groupSize: 8,
} as const;
