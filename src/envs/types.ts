/**
 * The environment contract for text environments (games, puzzles, tasks).
 *
 * An environment is seeded and replayable: `reset(seed)` draws an initial state (a deal, a board, a
 * level, a seat); `restart()` replays exactly that initial state for the next episode of a MAGE trial.
 * The agent only ever sees text; `step` takes the raw model output text and never throws: an
 * unparseable or illegal action is an observed, flagged turn (`valid: false`).
 */
export interface StepResult {
  /** Reward for this agent turn (after the opponent's reply, if any). */
  reward: number;
  /** The episode ended. */
  done: boolean;
  /** False when the action could not be parsed or was illegal (the turn is spent / state unchanged per env rules). */
  valid: boolean;
  /** What the agent sees next (empty when done). */
  observation: string;
  info: Record<string, unknown>;
}

export interface TextEnv {
  readonly name: string;
  /** The agent's seat in the current episode, for games with seats (Kuhn P0/P1, tic-tac-toe X/O). */
  readonly seat?: string | number;
  /** Rules text shown to the agent at the top of every prompt. */
  rules(): string;
  /** Draw a new initial state from `seed`; returns the first observation. */
  reset(seed: number): string;
  /** Replay the same initial state as the last reset (same deal / board / level / seat). */
  restart(): string;
  /** Current observation text. */
  observe(): string;
  /** Canonical action strings that are legal now (what `step` would accept). */
  legalActions(): string[];
  /** Apply the agent's raw output text. Never throws. */
  step(actionText: string): StepResult;
  /** Whether the agent has won the finished episode (e.g. chips > 0, game won, puzzle solved). */
  won(): boolean;
  /** Sum of rewards this episode. */
  episodeReturn(): number;
  /**
   * Every word/symbol this environment can ever render (observations, rules, actions), so a
   * word-level tokenizer for the built-in model can be built without seeing episodes.
   */
  vocabulary(): string[];
  /**
   * Optional: one token that records a finished episode's public outcome (e.g. a Kuhn hand's seat,
   * betting line and shown card), used by trials with `pastEpisodes: 'outcome'` so a tiny model can
   * read each past episode as one embedding. Envs without it get the generic `<action>_<won|lost>`.
   */
  episodeToken?(): string;
  /** Every token `episodeToken` can return (added to a word tokenizer's vocabulary). */
  episodeTokenVocabulary?(): string[];
}

/** An opponent policy for two-player games: picks a canonical action given the game state. */
export interface Opponent<State> {
  readonly name: string;
  act(state: State, rng: () => number): string;
}
