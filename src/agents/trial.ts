/**
 * A MAGE trial: K episodes against the same opponent (or puzzle), with a reflection written between
 * episodes. Every LLM call — each play turn and each reflection — is its own trained sample whose
 * prompt is the rebuilt text context (rules, past episodes per the context mode, the current
 * episode's recent moves) and whose completion carries exact token logprobs and versions.
 *
 * Credit assignment is not done here: each sample carries its environment reward and a typed step
 * record (kind, episode, turn, validity, length), the trajectory its episode outcomes, and the
 * trainer's credit stage (src/rl/stages.ts) turns them into returns.
 */
import { z } from 'zod';
import type { EpisodeRecord, Sample, StepRecord, Trajectory } from '../core/types.ts';
import type { RolloutWorkflow } from '../core/workflow.ts';
import { appendCompletion, appendContext, emptySeq, TokenSource } from '../core/types.ts';
import type { InferenceEngine, TokenConstraint, Tokenizer } from '../engine/types.ts';
import type { TextEnv } from '../envs/types.ts';
import { grammarConstraint, grammarMaxTokens, slotConstraint, taggedTextConstraint, tokenIds, type GrammarPiece } from './constraints.ts';

export const TrialConfigSchema = z.object({
  /** Episodes per trial (K). */
  episodes: z.number().int().min(1).default(3),
  /**
   * What of past episodes stays in context. 'none': nothing — every episode is prompted exactly like
   * the first episode of a 1-episode trial (how a policy trained with 1-episode GRPO is evaluated
   * over K episodes without showing it contexts it never saw).
   */
  contextMode: z.enum(['reflection_only', 'history_only', 'history_and_reflection', 'none']).default('history_and_reflection'),
  /** Write a reflection between episodes (reflection steps are trained samples). */
  reflect: z.boolean().default(true),
  /** `same_state`: every episode replays the initial state (MAGE). `new_state`: each episode draws a fresh state, same opponent. */
  stateMode: z.enum(['same_state', 'new_state']).default('same_state'),
  /** End the trial once an episode is won (MAGE); off for new_state opponent-modelling runs. */
  stopWhenWon: z.boolean().default(false),
  /** Max agent turns per episode. */
  maxTurns: z.number().int().min(1).default(8),
  /** Moves of the current episode shown in the prompt, and how many of those keep their observation. */
  historyWindow: z.number().int().min(0).default(7),
  obsWindow: z.number().int().min(0).default(2),
  /** Max words inside <remark>…</remark>. */
  maxRemarkWords: z.number().int().min(1).default(4),
  /** Words the (small) model may use inside a remark, in addition to the env's action words. */
  remarkWords: z.array(z.string()).default(['good', 'bad', 'try', 'avoid']),
  /**
   * Also allow the env's action words in a remark: every action that was legal at some turn of the
   * trial so far (after an episode an env has no legal actions left, so they are collected while it
   * plays). Off when `remarkWords` already fuse actions with outcomes (bandit-reflect.yaml).
   */
  remarkActions: z.boolean().default(true),
  temperature: z.number().positive().default(1),
  /**
   * Nucleus and top-k sampling (vLLM's top_p / top_k; MAGE validates at temperature 0.7, top_p 0.8,
   * top_k 20). Unset = off. The behaviour logprob is the truncated distribution's and the kept set is
   * stored with each token, so training on such samples stays exact.
   */
  topP: z.number().gt(0).max(1).optional(),
  topK: z.number().int().min(0).optional(),
  /** Hold the model to the action/remark tag grammar with token masks (for small models; any tokenizer: with a BPE one the masks follow its encodings of the well-formed answers). */
  constrained: z.boolean().default(true),
  /** Put the env's rules text at the top of every prompt ('none' for tiny built-in models, which learn the game by RL, not by reading). */
  rules: z.enum(['full', 'none']).default('full'),
  /**
   * Step-group anchor for GiGPO baselines. 'prompt': the whole rendered prompt (the policy's actual
   * state, so steps are compared only with steps taken in identical contexts); 'observation': the
   * env observation text alone (MAGE's released code).
   */
  anchor: z.enum(['prompt', 'observation']).default('prompt'),
  /**
   * How a past episode is shown: 'moves' (its last moves, per historyWindow/obsWindow) or 'summary'
   * (the env's final observation, e.g. the whole RPS round history and score — compact for small models),
   * or 'outcome' (one fused token per episode: the env's `episodeToken()` if it has one, e.g. the
   * Kuhn hand record `h1_PBB_Q`, else its last action and result, e.g. `B_won`; see `outcomeToken` —
   * lets a tiny model read each past episode as one embedding).
   */
  pastEpisodes: z.enum(['moves', 'summary', 'outcome']).default('moves'),
  /**
   * Also show, after the current observation, the actions taken from this very observation in
   * earlier episodes of the trial, each fused with how its episode ended (`tried c5_lost c1_drew`,
   * see `triedToken`). In same_state trials against an opponent that answers a position the same
   * way every time, that is the part of the past a retry needs — which lines already failed from
   * here — in a form a tiny model reads as a few embeddings, not by matching move lists. Nothing is
   * shown when no past move was made from here, and never with contextMode 'none'. A word tokenizer
   * needs `tried` and the fused words in the env's vocabulary (tic-tac-toe's token observation has
   * them; they are not in TRIAL_WORDS, so the tokenizers of runs without this option are unchanged).
   */
  triedActions: z.boolean().default(false),
  /**
   * What the reflection prompt shows of the episode just played: 'moves' (its moves per
   * historyWindow/obsWindow, then its result) or 'outcome' (the one fused token pastEpisodes
   * 'outcome' shows, e.g. `B_lost`: the evidence a tiny model can turn into a remark without
   * having to learn an action × result interaction).
   */
  reflectionInput: z.enum(['moves', 'outcome']).default('moves'),
}).strict();
export type TrialConfig = z.output<typeof TrialConfigSchema>;

/** Words the trial's own prompt text uses (for building the built-in model's tokenizer). */
export const TRIAL_WORDS = ['trial', 'of', 'ep', 'remark', 'result', 'won', 'lost', 'now', '->', ';', ':', '|', 'reflect', 'moves', 'none', 'final', ...Array.from({ length: 10 }, (_, i) => String(i))];

/** What a trial is played on: an opponent and the seed of its first episode's state. */
export interface TrialItem {
  opponent: string;
  seed: number;
  /** Seeds of episodes 1..K-1 in new_state mode (default: derived from seed). */
  episodeSeeds?: number[];
}

export interface TrialOptions extends TrialItem {
  groupId: string;
  /** Aborts the trial's generation (the rollout controller's signal). */
  signal?: AbortSignal;
}

/** Free-form details of a trial kept in Trajectory.info for logs and viewers. */
export interface TrialLog {
  seed: number;
  reflections: string[];
  /** LLM calls whose prompt was cut on the left to fit the engine's context. */
  truncatedPrompts: number;
}

interface Move { obs: string; action: string }

/**
 * How one model call is held to its tag grammar: the token constraint (none when unconstrained),
 * the token budget and what stops the generation.
 */
interface CallGrammar {
  constraint: TokenConstraint | undefined;
  maxTokens: number;
  /** Single-token closing tag (word tokenizers). */
  stopIds: number[];
  /** Closing tag as text (tokenizers that spell it in several tokens, e.g. BPE). */
  stop: string[];
}

/** The env's actions now and in its full action space (illegal-but-well-formed actions stay possible and are penalised). */
function actionChoices(env: TextEnv): string[] {
  return [...new Set(env.legalActions().concat(actionSpace(env)))];
}

/**
 * `<action> … </action>`. With a word tokenizer (both tags single tokens) the slots of
 * `actionSlots`, as always. With a tokenizer that spells the tags in several tokens (the BPE of a
 * pretrained model), constrained decoding walks the tokenizer's own encodings of the whole strings
 * `<action> A </action>` (src/agents/constraints.ts `grammarConstraint`): every completion is a
 * well-formed action of the env and every token keeps the id it was sampled with; unconstrained,
 * the model writes freely until the text `</action>` (or twice the longest well-formed answer) and
 * the env parses what it wrote, a malformed turn being observed and penalised as with any tokenizer.
 */
function actionGrammar(env: TextEnv, tok: Tokenizer, constrained: boolean): CallGrammar {
  const close = tok.tokenId('</action>');
  if (tok.tokenId('<action>') !== undefined && close !== undefined) {
    const slots = actionSlots(env, tok);
    return { constraint: constrained ? slotConstraint(tok, slots) : undefined, maxTokens: constrained ? slots.length : 16, stopIds: [close], stop: [] };
  }
  return multiTokenGrammar(tok, [{ options: actionChoices(env).map((a) => `<action> ${a} </action>`) }], constrained, '</action>');
}

/**
 * Grammars of multi-token tags, one per tokenizer and grammar: the constraint's masks (one array of
 * the vocabulary's size per grammar position) are then shared by every call and every stored
 * sample, not allocated per call — with a 150k-token vocabulary that is the difference between a
 * few megabytes and gigabytes per batch.
 */
const multiTokenGrammars = new WeakMap<Tokenizer, Map<string, CallGrammar>>();

function multiTokenGrammar(tok: Tokenizer, pieces: GrammarPiece[], constrained: boolean, close: string): CallGrammar {
  let byKey = multiTokenGrammars.get(tok);
  if (!byKey) multiTokenGrammars.set(tok, (byKey = new Map()));
  const key = JSON.stringify([pieces, constrained]);
  let g = byKey.get(key);
  if (!g) {
    const longest = grammarMaxTokens(tok, pieces);
    g = { constraint: constrained ? grammarConstraint(tok, pieces) : undefined, maxTokens: constrained ? longest : Math.max(16, 2 * longest), stopIds: [], stop: [close] };
    byKey.set(key, g);
  }
  return g;
}

/** `<remark> w1 … wn </remark>` with n ≤ maxRemarkWords words of `words`; as `actionGrammar`, per tokenizer. */
function remarkGrammar(tok: Tokenizer, words: readonly string[], cfg: TrialConfig): CallGrammar {
  const close = tok.tokenId('</remark>');
  if (tok.tokenId('<remark>') !== undefined && close !== undefined) {
    const known = words.filter((w) => tok.tokenId(w) !== undefined);
    return { constraint: cfg.constrained ? taggedTextConstraint(tok, '<remark>', '</remark>', known, cfg.maxRemarkWords) : undefined, maxTokens: cfg.maxRemarkWords + 2, stopIds: [close], stop: [] };
  }
  const pieces: GrammarPiece[] = [
    { options: ['<remark>'] },
    ...(words.length > 0 ? [{ options: words.map((w) => ` ${w}`), min: 0, max: cfg.maxRemarkWords }] : []),
    { options: [' </remark>'] },
  ];
  return multiTokenGrammar(tok, pieces, cfg.constrained, '</remark>');
}

/**
 * Token slots of `<action> … </action>` for a word tokenizer: slot i allows every token that some
 * action of the env's action space has at position i.
 */
function actionSlots(env: TextEnv, tok: Tokenizer): number[][] {
  const acts = actionChoices(env).map((a) => tok.encode(a));
  const maxLen = Math.max(...acts.map((a) => a.length));
  const slots: number[][] = [tokenIds(tok, ['<action>'])];
  for (let i = 0; i < maxLen; i++) slots.push([...new Set(acts.filter((a) => a.length > i).map((a) => a[i]!))]);
  slots.push(tokenIds(tok, ['</action>']));
  return slots;
}

/** The env's full action vocabulary if it exposes one (legal actions can shrink as the game goes). */
function actionSpace(env: TextEnv): string[] {
  const e = env as TextEnv & { actionSpace?: () => string[] };
  return typeof e.actionSpace === 'function' ? e.actionSpace() : [];
}

/** What of the trial config shapes a play prompt's frame (see playPrompt). */
export type PlayPromptConfig = Pick<TrialConfig, 'episodes' | 'historyWindow' | 'obsWindow'> & Partial<Pick<TrialConfig, 'contextMode'>>;

/**
 * runTrial's play prompt for episode `k` (0-based): `[rules] | trial k+1 of K [past] | now <moves> |
 * <obs> [tried] ->`. Frozen snapshots playing an opponent's seat build theirs with it too (k 0, no
 * past), so their prompt is the agent's by construction.
 */
export function playPrompt(cfg: PlayPromptConfig, p: { rules: string; k: number; moves: readonly Move[]; obs: string; past?: string; tried?: string }): string {
  const header = cfg.contextMode === 'none' ? '| trial 1 of 1' : `| trial ${p.k + 1} of ${cfg.episodes}`;
  return [p.rules, header, p.past ?? '', `| now ${renderMoves(p.moves, cfg.historyWindow, cfg.obsWindow)} | ${p.obs}`, p.tried ?? '', '->'].filter(Boolean).join(' ');
}

/** `moves none` or `moves <obs> -> <action> ; -> <action> …`: the last `window` moves, the last `obsWindow` of them with their observation. */
function renderMoves(moves: readonly Move[], window: number, obsWindow: number): string {
  const shown = window === 0 ? [] : moves.slice(-window); // slice(-0) would keep them all
  if (shown.length === 0) return 'moves none';
  return 'moves ' + shown.map((m, i) => (i >= shown.length - obsWindow ? `${m.obs} -> ${m.action}` : `-> ${m.action}`)).join(' ; ');
}

/** Run one trial; returns a trajectory whose samples are the trial's LLM calls in order. */
export async function runTrial(env: TextEnv, engine: InferenceEngine, cfgIn: z.input<typeof TrialConfigSchema>, opts: TrialOptions): Promise<Trajectory> {
  const cfg = TrialConfigSchema.parse(cfgIn);
  const tok = engine.tokenizer;
  const samples: Sample[] = [];
  const episodes: EpisodeRecord[] = [];
  const info: TrialLog = { seed: opts.seed, reflections: [], truncatedPrompts: 0 };
  const past: PastEpisode[] = [];
  /** Every action legal at some turn of this trial: the action words a remark may use. */
  const seenActions = new Set<string>();

  const call = async (prompt: string, g: CallGrammar) => {
    let ids = tok.encode(prompt);
    const room = engine.contextLength === undefined ? Infinity : engine.contextLength - g.maxTokens;
    if (ids.length > room) {
      // Keep the most recent context: the current episode sits at the end of the prompt.
      ids = ids.slice(ids.length - room);
      info.truncatedPrompts++;
    }
    const completion = await engine.generate(ids, {
      maxTokens: g.maxTokens, temperature: cfg.temperature, ...(cfg.topP !== undefined ? { topP: cfg.topP } : {}), ...(cfg.topK !== undefined ? { topK: cfg.topK } : {}), constraint: g.constraint, stopIds: g.stopIds, ...(g.stop.length > 0 ? { stop: g.stop } : {}), signal: opts.signal,
    });
    const seq = emptySeq();
    appendContext(seq, ids, TokenSource.prompt);
    appendCompletion(seq, completion);
    return { seq, completion };
  };

  for (let k = 0; k < cfg.episodes; k++) {
    const obs0 = k === 0 ? env.reset(opts.seed) : cfg.stateMode === 'same_state' ? env.restart() : env.reset(opts.episodeSeeds?.[k - 1] ?? deriveSeed(opts.seed, k));
    const seat = seatOf(env);
    const moves: Move[] = [];
    let obs = obs0;
    let done = false;
    const playIdx: number[] = [];
    for (let turn = 0; turn < cfg.maxTurns && !done; turn++) {
      const prompt = playPrompt(cfg, { rules: cfg.rules === 'full' ? env.rules() : '', k, past: renderPast(past, cfg), moves, obs, tried: renderTried(past, obs, cfg) });
      for (const a of env.legalActions()) seenActions.add(a);
      const { seq, completion } = await call(prompt, actionGrammar(env, tok, cfg.constrained));
      const r = env.step(completion.text);
      const anchor = cfg.anchor === 'prompt' ? prompt : obs;
      const step: StepRecord = { kind: 'play', episode: k, turn, valid: r.valid, length: completion.ids.length, lastOfEpisode: false };
      playIdx.push(samples.length);
      samples.push({ seq, reward: r.reward, keys: { group: opts.groupId, opponent: opts.opponent, episode: String(k), anchor }, temperature: cfg.temperature, step });
      moves.push({ obs, action: actionText(completion.text) });
      obs = r.observation;
      done = r.done;
    }
    if (playIdx.length > 0) samples[playIdx[playIdx.length - 1]!]!.step!.lastOfEpisode = true;
    const won = env.won();
    episodes.push({ reward: env.episodeReturn(), won, done, seat });
    const ep: PastEpisode = { moves, won, reward: env.episodeReturn(), summary: env.observe(), token: env.episodeToken?.() };
    past.push(ep);
    const last = k === cfg.episodes - 1 || (cfg.stopWhenWon && won);
    if (!last && cfg.reflect) {
      const seen = cfg.reflectionInput === 'outcome'
        ? `${ep.token ?? outcomeToken(moves[moves.length - 1]?.action ?? 'none', won)} | remark :`
        : `${renderMoves(moves, cfg.historyWindow, cfg.obsWindow)} result ${won ? 'won' : 'lost'} | remark :`;
      const prompt = [cfg.rules === 'full' ? env.rules() : '', `| reflect ep ${k + 1}`, seen].filter(Boolean).join(' ');
      const words = [...new Set([...cfg.remarkWords, ...(cfg.remarkActions ? actionWords([...seenActions, ...actionSpace(env)]) : [])])];
      const { seq, completion } = await call(prompt, remarkGrammar(tok, words, cfg));
      const remark = extractRemark(completion.text);
      ep.remark = remark ?? '';
      info.reflections.push(remark ?? '');
      const anchor = cfg.anchor === 'prompt' ? prompt : 'reflection';
      const step: StepRecord = { kind: 'reflection', episode: k, turn: -1, valid: remark !== null, length: completion.ids.length, lastOfEpisode: false };
      samples.push({ seq, reward: 0, keys: { group: opts.groupId, opponent: opts.opponent, episode: String(k), anchor }, temperature: cfg.temperature, step });
    }
    if (last) break;
  }
  const finalReturn = episodes[episodes.length - 1]?.reward ?? 0;
  return { id: `${opts.groupId}/${opts.seed}`, groupId: opts.groupId, samples, reward: finalReturn, episodes, opponent: opts.opponent, info: { ...info } };
}

/** Trials as a rollout workflow: each run plays one trial of the item on a fresh env. */
export function trialWorkflow(engine: InferenceEngine, makeEnv: (opponent: string) => TextEnv, trial: z.input<typeof TrialConfigSchema>): RolloutWorkflow<TrialItem> {
  const cfg = TrialConfigSchema.parse(trial);
  return (item, ctx) => runTrial(makeEnv(item.opponent), engine, cfg, { ...item, groupId: ctx.groupId, signal: ctx.signal });
}

/** The env's current seat as text ('' when it has none). */
export function seatOf(env: TextEnv): string {
  return env.seat === undefined ? '' : String(env.seat);
}

interface PastEpisode { moves: Move[]; won: boolean; reward: number; summary: string; token?: string; remark?: string }

function renderPast(past: PastEpisode[], cfg: TrialConfig): string {
  if (cfg.contextMode === 'none') return '';
  return past
    .map((e, j) => {
      const parts = [`| ep ${j + 1}`];
      if (cfg.contextMode !== 'reflection_only') {
        if (cfg.pastEpisodes === 'outcome') parts.push(e.token ?? outcomeToken(e.moves[e.moves.length - 1]?.action ?? 'none', e.won));
        else parts.push(cfg.pastEpisodes === 'summary' ? `final ${e.summary}` : renderMoves(e.moves, cfg.historyWindow, cfg.obsWindow), `result ${e.won ? 'won' : 'lost'}`);
      }
      if (cfg.contextMode !== 'history_only' && e.remark !== undefined) parts.push(`remark : ${e.remark || 'none'}`);
      return parts.join(' ');
    })
    .join(' ');
}

/** `| tried c5_lost …`: actions taken from observation `obs` in earlier episodes (see TrialConfig.triedActions); '' when none. */
export function renderTried(past: readonly { moves: readonly Move[]; won: boolean; reward: number }[], obs: string, cfg: Pick<TrialConfig, 'triedActions' | 'contextMode'>): string {
  if (!cfg.triedActions || cfg.contextMode === 'none') return '';
  const tried = new Set<string>();
  for (const e of past) for (const m of e.moves) if (m.obs === obs) tried.add(triedToken(m.action, e.won, e.reward));
  return tried.size === 0 ? '' : `| tried ${[...tried].join(' ')}`;
}

/** The single words of actions (`A`, `up`, `c5`; not the brackets and commas of `( 1 , 2 )`). */
function actionWords(actions: readonly string[]): string[] {
  return [...new Set(actions.flatMap((a) => a.split(/\s+/)).filter((w) => /^[A-Za-z][A-Za-z0-9]*$/.test(w)))];
}

/** One token naming an episode's last action and its result, e.g. `B_won` (see TrialConfig.pastEpisodes). */
export function outcomeToken(action: string, won: boolean): string {
  return `${action.replace(/\s+/g, '')}_${won ? 'won' : 'lost'}`;
}

/**
 * An action tried in an earlier episode fused with how that episode ended: `c5_won`, `c5_drew` (not
 * won, return ≥ 0) or `c5_lost` (return < 0) — a draw kept apart from a loss, since a line that
 * drew is worth replaying against a strong opponent where one that lost is not.
 */
export function triedToken(action: string, won: boolean, reward: number): string {
  return `${action.replace(/\s+/g, '')}_${won ? 'won' : reward < 0 ? 'lost' : 'drew'}`;
}

/** The fused outcome tokens of every action an env can take (to add to a word tokenizer's vocabulary). */
export function outcomeVocabulary(actions: readonly string[]): string[] {
  return actions.flatMap((a) => [outcomeToken(a, true), outcomeToken(a, false)]).concat([outcomeToken('none', true), outcomeToken('none', false)]);
}

/** The text inside the last <action>…</action>, or the raw text if there is none. */
function actionText(text: string): string {
  const m = [...text.matchAll(/<action>([\s\S]*?)<\/action>/g)];
  return (m.length ? m[m.length - 1]![1]! : text).trim() || 'none';
}

/** Text of the first <remark>…</remark>, or null when missing. */
export function extractRemark(text: string): string | null {
  const m = /<remark>([\s\S]*?)<\/remark>/.exec(text);
  return m ? m[1]!.trim().slice(0, 2000) : null;
}

export function deriveSeed(seed: number, k: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) + k * 0x9e3779b9) >>> 0;
}
