/**
 * The handful of types everything in agentrl speaks.
 *
 * Data flows one way: prompt → tokens → trajectory → advantages → loss → weights.
 * Token-in, token-out: every token that can be trained carries its id, the behaviour logprob it was
 * sampled with, the policy version that sampled it, a loss mask and its source. Text is for humans
 * and parsers; training never re-tokenizes text.
 */

/** Where a token came from. Only `model` tokens are sampled (and normally trained). */
export const TokenSource = { prompt: 0, model: 1, tool: 2, env: 3 } as const;
export type TokenSourceId = (typeof TokenSource)[keyof typeof TokenSource];

/** A token sequence, struct-of-arrays; all arrays have the same length. */
export interface TokenSeq {
  ids: number[];
  /** Behaviour logprob of each token under the policy that sampled it (0 for non-model tokens). */
  logprobs: number[];
  /** Policy (weights) version that produced each token; -1 for tokens not sampled by the policy. */
  versions: number[];
  /** 1 = this token contributes to the loss. */
  mask: number[];
  source: TokenSourceId[];
  /**
   * Constrained decoding masks (0/1 over the vocabulary) that model tokens were sampled under, aligned
   * with `ids`; null/absent where unconstrained. Needed to recompute behaviour logprobs exactly.
   */
  constraintMasks?: (Uint8Array | null)[];
}

/** A completion returned by any sampler (built-in or remote). */
export interface Completion {
  ids: number[];
  logprobs: number[];
  versions: number[];
  text: string;
  finishReason: 'stop' | 'length' | 'eos';
}

/**
 * What an agent records about one LLM call (one step) for credit assignment. Typed, shared by agents
 * and src/rl: a MAGE trial's play turns and reflections, a tool agent's turns.
 */
export interface StepRecord {
  /** `play`: an action in an environment; `reflection`: a remark between episodes; `turn`: any other call (tool agents). */
  kind: 'play' | 'reflection' | 'turn';
  /** Episode index within the trajectory (0 for single-episode agents). */
  episode: number;
  /** Turn index within the episode (-1 for reflections). */
  turn: number;
  /** The output parsed and was legal (action) / well-formed (remark, tool call). */
  valid: boolean;
  /** Completion length in tokens. */
  length: number;
  /** The last play step of its episode. */
  lastOfEpisode: boolean;
}

/**
 * One trained sample: a context (prompt, not trained) followed by tokens, some trained.
 * Multi-turn agents either put each LLM call in its own sample (MAGE) or grow one sequence whose
 * tool/env tokens are masked out (ASearcher).
 */
export interface Sample {
  seq: TokenSeq;
  /** Environment reward of this step (a single-call agent: the outcome reward). Never overwritten. */
  reward: number;
  /** Return credited to this sample by the credit stage (src/rl/credit.ts); absent before it. */
  ret?: number;
  /** Advantage per sample (broadcast over trained tokens) or per token. Filled by src/rl. */
  advantage?: number | number[];
  /** Keys whose values define the groups advantages are normalised within (see src/rl/advantages). */
  keys: Record<string, string>;
  /** Sampling temperature of the model tokens (default 1): logprobs are recomputed under it. */
  temperature?: number;
  /** The step this sample is (multi-step agents); credit stages that need it check it is there. */
  step?: StepRecord;
}

/** Outcome of one episode of a trajectory (a MAGE trial has K of them). */
export interface EpisodeRecord {
  /** The episode's return R_k (environment reward summed over the episode). */
  reward: number;
  won: boolean;
  /** The environment ended the episode (false: cut by the turn cap). */
  done: boolean;
  /** The agent's seat in this episode ('' for envs without seats). */
  seat: string;
}

/** A finished rollout of one workflow run (an episode, a multi-episode trial, a search session). */
export interface Trajectory {
  id: string;
  /** The group this trajectory is compared within (same prompt / same seed+opponent). */
  groupId: string;
  samples: Sample[];
  /** The trajectory's scalar outcome (for logging, group filtering and outcome credit). */
  reward: number;
  /** Per-episode outcomes, in order (multi-episode agents). */
  episodes?: EpisodeRecord[];
  /** The opponent played, for per-opponent statistics ('' or absent when none). */
  opponent?: string;
  /** Free-form, JSON-safe details for logs and viewers; never read back by training code. */
  info: Record<string, unknown>;
}

/** Build an empty TokenSeq. */
export function emptySeq(): TokenSeq {
  return { ids: [], logprobs: [], versions: [], mask: [], source: [] };
}

/** Append prompt/tool/env tokens (not sampled, not trained). */
export function appendContext(seq: TokenSeq, ids: readonly number[], source: TokenSourceId = TokenSource.prompt): void {
  if (seq.constraintMasks) for (let i = 0; i < ids.length; i++) seq.constraintMasks.push(null);
  for (const id of ids) {
    seq.ids.push(id);
    seq.logprobs.push(0);
    seq.versions.push(-1);
    seq.mask.push(0);
    seq.source.push(source);
  }
}

/** Append sampled model tokens with their behaviour logprobs and versions (trained by default). */
export function appendCompletion(seq: TokenSeq, c: Pick<Completion, 'ids' | 'logprobs' | 'versions'> & { masks?: (Uint8Array | null)[] }, trained = true): void {
  if (c.ids.length !== c.logprobs.length || c.ids.length !== c.versions.length) {
    throw new Error(`appendCompletion: ids/logprobs/versions lengths differ (${c.ids.length}/${c.logprobs.length}/${c.versions.length})`);
  }
  if (c.masks || seq.constraintMasks) {
    seq.constraintMasks ??= new Array<Uint8Array | null>(seq.ids.length).fill(null);
    for (let i = 0; i < c.ids.length; i++) seq.constraintMasks.push(c.masks?.[i] ?? null);
  }
  for (let i = 0; i < c.ids.length; i++) {
    seq.ids.push(c.ids[i]!);
    seq.logprobs.push(c.logprobs[i]!);
    seq.versions.push(c.versions[i]!);
    seq.mask.push(trained ? 1 : 0);
    seq.source.push(TokenSource.model);
  }
}
