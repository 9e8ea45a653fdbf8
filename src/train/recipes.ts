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

/**
 * Kuhn poker, new_state (a fresh deal and seat every hand, same opponent), K = 6 hands. What made the
 * tiny model learn (docs/results/meta-rl.md): the decision shown as one information-set token
 * (`i1_Q_B`) and every past hand as one public-record token (`h0_PBB_K`); rewards in chips with a
 * 0.3 entropy bonus (at the default ×5 scale and 0.02 the policy collapsed to "always BET" before it
 * learned to read its card); each hand credited with its own chips (`raw`) plus 0.6× the next hands'
 * (MAGE's γ_trial: credit for what a hand reveals), and compared
 * only with the same hand index of its group — every trial of a group is dealt the same hands, so
 * that baseline is exact.
 */
export const KUHN_RECIPE = {
  envOptions: { seat: 'random', observation: 'token', rewardScale: 1 },
  trial: { episodes: 6, contextMode: 'history_only', reflect: false, stateMode: 'new_state', maxTurns: 2, rules: 'none', historyWindow: 0, obsWindow: 0, pastEpisodes: 'outcome' },
  training: {
    credit: { gammaStep: 0.95, gammaTrial: 0.6, invalidCoef: 0.5, episodeReward: 'raw' },
    advantage: { mode: 'mean_norm', groupBy: ['group', 'opponent', 'episode'] as string[] },
    loss: { kind: 'ppo', entropyCoef: 0.3 },
  },
  model: { contextLength: 128, nLayer: 2, nHead: 4, nEmbd: 64 },
  lr: 1e-3,
  iterations: 400,
  groups: 16,
  groupSize: 8,
} as const;
