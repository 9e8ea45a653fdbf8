/**
 * A frozen population member playing Kuhn poker as an opponent.
 *
 * What the snapshot sees: only its own information set — its card, its seat and the public
 * betting history (`KuhnView`); never the other player's card. From that view it rebuilds the
 * prompt the agent itself would get on the first episode of a trial (runTrial's play prompt):
 *
 *   [rules] | trial 1 of K | now moves <its own earlier moves> | card Q | history P0 PASS | you are P1 | actions PASS BET ->
 *
 * where "its own earlier moves" (only at history PB, for P0) are reconstructed from the public
 * history as `<observation then> -> PASS`, exactly as runTrial renders moves. The observation text
 * is KuhnEnv's in-play format (`renderKuhnObservation`, pinned to KuhnEnv.observe() by a test).
 *
 * The action: the prompt plus `<action>` is prefilled through a frozen copy of the weights on a
 * one-slot KV cache, and P(BET) is the tempered softmax of the BET and PASS logits only — the
 * same distribution the agent's constrained decoder samples its action word from. `act` draws
 * exactly one number from the rng it is given (like the scripted opponents), so with the env's
 * per-position stream it is deterministic. Probabilities are memoised per information set (12 of
 * them): the weights never change.
 */
import type { Tokenizer } from '../../engine/types.ts';
import type { KVCache, Transformer } from '../../engine/model.ts';
import { samplingDistribution, temperatureProblem, truncationProblem, type SamplingShape } from '../../engine/sampling.ts';
import { tokenIds } from '../../agents/constraints.ts';
import { playPrompt, type PlayPromptConfig, type TrialConfig } from '../../agents/trial.ts';
import { infoSetToken } from '../../envs/kuhn.ts';
import { CARD_NAMES, KUHN_ACTIONS, infoSetKey, letterAction, playerToAct, type DecisionHistory, type KuhnAction, type KuhnView } from '../../envs/kuhn-game.ts';
import type { KuhnOpponent } from '../../envs/kuhn-opponents.ts';

/** Public betting history as KuhnEnv renders it: `none` or `P0 PASS P1 BET`. */
export function renderKuhnHistory(history: string): string {
  if (history.length === 0) return 'none';
  return [...history].map((l, i) => `P${i % 2} ${letterAction(l)}`).join(' ');
}

/** The in-play observation of the player described by `view`, in KuhnEnv.observe()'s format. */
export function renderKuhnObservation(view: KuhnView): string {
  return [`card ${CARD_NAMES[view.card]}`, `history ${renderKuhnHistory(view.history)}`, `you are P${view.seat}`, `actions ${KUHN_ACTIONS.join(' ')}`].join(' | ');
}

/** What of the trial config shapes the play prompt. */
export type SnapshotPromptConfig = PlayPromptConfig & Pick<TrialConfig, 'rules'>;

/**
 * runTrial's first-episode play prompt for the player of `view` (see the file comment). `rulesText`
 * is KuhnEnv.rules() (used when `cfg.rules` is 'full').
 */
export function kuhnSnapshotPrompt(view: KuhnView, cfg: SnapshotPromptConfig, rulesText: string, observation: 'text' | 'token' = 'text'): string {
  // The observation exactly as KuhnEnv.observe() shows it in the env's observation mode.
  const observe = (v: KuhnView) => (observation === 'token' ? infoSetToken(v.seat, v.card, v.history) : renderKuhnObservation(v));
  const moves: { obs: string; action: string }[] = [];
  for (let i = 0; i < view.history.length; i++) {
    const prefix = view.history.slice(0, i) as DecisionHistory;
    if (playerToAct(prefix) === view.seat) moves.push({ obs: observe({ card: view.card, history: prefix, seat: view.seat }), action: letterAction(view.history[i]!) });
  }
  return playPrompt(cfg, { rules: cfg.rules === 'full' ? rulesText : '', k: 0, moves, obs: observe(view) });
}

/**
 * What a snapshot feeds its model: the prompt's ids left-truncated as runTrial truncates them (room
 * for the 3-token constrained completion `<action> W </action>`), then `<action>`.
 */
export function snapshotInputIds(promptIds: number[], contextLength: number, openId: number): number[] {
  const room = contextLength - 3;
  return [...(promptIds.length > room ? promptIds.slice(promptIds.length - room) : promptIds), openId];
}

/** The sampling settings of a snapshot opponent, checked by the engines' rules (they come from the trial config). */
export function snapshotSamplingShape(who: string, o: { temperature?: number; topK?: number; topP?: number }): SamplingShape {
  const shape = { temperature: o.temperature ?? 1, topK: o.topK ?? 0, topP: o.topP ?? 1 };
  const problem = temperatureProblem(shape.temperature) ?? truncationProblem(shape.topK, shape.topP);
  if (problem) throw new Error(`${who}: ${problem}`);
  return shape;
}

export interface KuhnSnapshotOptions {
  prompt: SnapshotPromptConfig;
  rulesText: string;
  /** Sampling temperature of the action word (the agent's trial temperature). Default 1. */
  temperature?: number;
  /** The agent's trial top-k / top-p (vLLM's top_k / top_p), applied to PASS / BET. Default off. */
  topK?: number;
  topP?: number;
  /** The env's observation mode the snapshot was trained on (default 'text'). */
  observation?: 'text' | 'token';
}

export class KuhnSnapshotOpponent implements KuhnOpponent {
  private readonly cache: KVCache;
  private readonly probs = new Map<string, number>();
  private readonly openId: number;
  private readonly passId: number;
  private readonly betId: number;
  private readonly shape: SamplingShape;

  /** `model` must hold the frozen weights and must not be trained or shared with an engine. */
  constructor(readonly name: string, readonly model: Transformer, readonly tokenizer: Tokenizer, private readonly opts: KuhnSnapshotOptions) {
    [this.openId, this.passId, this.betId] = tokenIds(tokenizer, ['<action>', 'PASS', 'BET']) as [number, number, number];
    this.shape = snapshotSamplingShape('KuhnSnapshotOpponent', opts);
    this.cache = model.newKVCache(1);
  }

  /** The text the snapshot reads for this view (before the `<action>` token). */
  promptFor(view: KuhnView): string {
    return kuhnSnapshotPrompt(view, this.opts.prompt, this.opts.rulesText, this.opts.observation);
  }

  /** Token ids fed to the model: the prompt (left-truncated as runTrial does) then `<action>`. */
  inputIds(view: KuhnView): number[] {
    return snapshotInputIds(this.tokenizer.encode(this.promptFor(view)), this.model.config.contextLength, this.openId);
  }

  betProbability(view: KuhnView): number {
    const key = infoSetKey(view.card, view.history);
    let p = this.probs.get(key);
    if (p === undefined) {
      const logits = this.model.prefill(this.cache, 0, this.inputIds(view));
      // In token-id order, so that a top-k / top-p tie breaks as in the agent's sampler.
      const betFirst = this.betId < this.passId;
      const q = samplingDistribution(betFirst ? [logits[this.betId]!, logits[this.passId]!] : [logits[this.passId]!, logits[this.betId]!], this.shape);
      p = betFirst ? q[0]! : q[1]!;
      this.probs.set(key, p);
    }
    return p;
  }

  act(view: KuhnView, rng: () => number): KuhnAction {
    return rng() < this.betProbability(view) ? 'BET' : 'PASS';
  }
}
