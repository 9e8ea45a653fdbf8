/**
 * A toy multi-turn tool-using agent with a long-tailed workload, for measuring asynchronous RL the
 * way agentic search behaves: most episodes take 1–3 tool calls, a few take ten times more, and each
 * tool call waits a lognormal latency.
 *
 * Episode (one growing sequence, ASearcher style: tool tokens are context, never trained):
 *   [Q, q1, q2]  then per turn: <model: tokensPerTurn tokens> <tool: TOOL, value>   (turns times)
 *   then the final answer: <model: tokensPerTurn tokens>
 * The tool "result" is a deterministic function of the turn's output (a checksum token). Reward: the
 * fraction of final-answer tokens in the task's answer class (id mod 4 = answerClass): a simple
 * verifiable rule with chance level 1/4, so groups have reward variance.
 *
 * Turn counts and tool latencies come from a per-episode RNG seeded by (task seed, group member,
 * attempt), so every run over the same task stream sees the same workload.
 */
import { z } from 'zod';
import type { Trajectory } from '../core/types.ts';
import { appendCompletion, appendContext, emptySeq, TokenSource } from '../core/types.ts';
import { Rng } from '../core/rng.ts';
import { sleep } from '../tools/retry.ts';
import type { InferenceEngine, Tokenizer } from '../engine/types.ts';
import type { RolloutContext, RolloutWorkflow } from '../core/workflow.ts';

export const QUESTION_ID = 0;
export const TOOL_ID = 1;
/** First id a model may emit as content. */
export const FIRST_CONTENT_ID = 3;

export const ToyToolAgentConfigSchema = z
  .object({
    vocabSize: z.number().int().min(8).default(64),
    /** New tokens per generation (every turn and the final answer). */
    tokensPerTurn: z.number().int().min(1).default(8),
    /** Probability that an episode is a long one. */
    longFraction: z.number().min(0).max(1).default(0.1),
    /** Tool calls of a short episode: uniform in [min, max]. */
    shortTurns: z.tuple([z.number().int().min(0), z.number().int().min(0)]).default([1, 3]),
    /** Tool calls of a long episode: uniform in [min, max]. */
    longTurns: z.tuple([z.number().int().min(0), z.number().int().min(0)]).default([20, 24]),
    /** Median tool latency in seconds (lognormal); 0 = no latency. */
    latencyMedianSeconds: z.number().min(0).default(0.3),
    /** 99th percentile of the tool latency in seconds (sets the lognormal σ). */
    latencyP99Seconds: z.number().min(0).default(3),
    temperature: z.number().positive().default(1),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.shortTurns[0] > c.shortTurns[1] || c.longTurns[0] > c.longTurns[1]) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'turn ranges must be [min, max] with min ≤ max' });
    if (c.latencyMedianSeconds > 0 && c.latencyP99Seconds < c.latencyMedianSeconds) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['latencyP99Seconds'], message: 'the p99 latency must be ≥ the median' });
  });
export type ToyToolAgentConfig = z.output<typeof ToyToolAgentConfigSchema>;
export type ToyToolAgentConfigInput = z.input<typeof ToyToolAgentConfigSchema>;

export interface ToyToolTask {
  id: string;
  seed: number;
  /** Two question tokens. */
  question: [number, number];
  /** Reward class: final-answer tokens with id % 4 === answerClass score. */
  answerClass: number;
}

/** Longest sequence an episode can produce (prompt + turns × (turn + tool) + answer): size contextLength ≥ this. */
export function toyToolMaxTokens(cfg: ToyToolAgentConfigInput = {}): number {
  const c = ToyToolAgentConfigSchema.parse(cfg);
  return 3 + c.longTurns[1] * (c.tokensPerTurn + 2) + c.tokensPerTurn;
}

/** An endless, seeded stream of tasks. */
export function* toyToolTasks(seed: number, vocabSize = 64): Generator<ToyToolTask> {
  const rng = new Rng(seed);
  for (let i = 0; ; i++) {
    const content = vocabSize - FIRST_CONTENT_ID;
    yield { id: `task${i}`, seed: rng.nextU32(), question: [FIRST_CONTENT_ID + rng.int(content), FIRST_CONTENT_ID + rng.int(content)], answerClass: rng.int(4) };
  }
}

/** Lognormal σ such that the 99th percentile is p99 when the median is `median` (z₀.₉₉ = 2.3263). */
export function lognormalSigma(median: number, p99: number): number {
  return median > 0 ? Math.log(p99 / median) / 2.326348 : 0;
}

/** The tool-call count of an episode: short with probability 1 − longFraction, else long. */
export function drawTurns(rng: Rng, c: ToyToolAgentConfig): number {
  const [lo, hi] = rng.next() < c.longFraction ? c.longTurns : c.shortTurns;
  return lo + rng.int(hi - lo + 1);
}

/** One tool latency in seconds. */
export function drawLatency(rng: Rng, c: ToyToolAgentConfig): number {
  if (c.latencyMedianSeconds === 0) return 0;
  return c.latencyMedianSeconds * Math.exp(lognormalSigma(c.latencyMedianSeconds, c.latencyP99Seconds) * rng.normal());
}

/** Fraction of the answer's tokens in the task's answer class. */
export function toyToolReward(answer: readonly number[], task: ToyToolTask): number {
  if (answer.length === 0) return 0;
  return answer.filter((id) => id % 4 === task.answerClass).length / answer.length;
}

/** The tool's reply to a turn: a checksum token of what the model wrote. */
export function toolReply(turn: readonly number[], vocabSize: number): number[] {
  const content = vocabSize - FIRST_CONTENT_ID;
  return [TOOL_ID, FIRST_CONTENT_ID + (turn.reduce((a, b) => a + b, 0) % content)];
}

function episodeSeed(task: ToyToolTask, ctx: Pick<RolloutContext, 'member' | 'attempt'>): number {
  return (Math.imul(task.seed ^ 0x9e3779b9, 31) + Math.imul(ctx.member + 1, 0x85ebca6b) + Math.imul(ctx.attempt + 1, 0xc2b2ae35)) >>> 0;
}

/** The workflow: run one episode of `task` on `engine`. */
export function toyToolWorkflow(engine: InferenceEngine, cfgIn: ToyToolAgentConfigInput = {}): RolloutWorkflow<ToyToolTask> {
  const c = ToyToolAgentConfigSchema.parse(cfgIn);
  if (engine.tokenizer.vocabSize > c.vocabSize) throw new Error(`toyToolWorkflow: the engine's vocabulary (${engine.tokenizer.vocabSize}) is larger than the agent's vocabSize ${c.vocabSize}`);
  const need = toyToolMaxTokens(c);
  if (engine.contextLength !== undefined && engine.contextLength < need) {
    throw new Error(`toyToolWorkflow: episodes need up to ${need} tokens but the engine's context is ${engine.contextLength}; raise contextLength or lower longTurns/tokensPerTurn`);
  }
  return async (task, ctx): Promise<Trajectory> => {
    const rng = new Rng(episodeSeed(task, ctx));
    const turns = drawTurns(rng, c);
    const seq = emptySeq();
    appendContext(seq, [QUESTION_ID, ...task.question]);
    let toolSeconds = 0;
    let answer: number[] = [];
    for (let turn = 0; turn <= turns; turn++) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('aborted');
      const out = await engine.generate(seq.ids, { maxTokens: c.tokensPerTurn, temperature: c.temperature, seed: rng.nextU32(), signal: ctx.signal });
      appendCompletion(seq, out);
      answer = out.ids;
      if (turn === turns) break; // the final answer: no tool call
      const latency = drawLatency(rng, c);
      toolSeconds += latency;
      if (latency > 0) await sleep(latency * 1000, ctx.signal);
      appendContext(seq, toolReply(out.ids, c.vocabSize), TokenSource.tool);
    }
    const reward = toyToolReward(answer, task);
    return {
      id: `${ctx.groupId}/${ctx.member}`,
      groupId: ctx.groupId,
      samples: [{ seq, reward, keys: { task: task.id }, temperature: c.temperature }],
      reward,
      info: { turns, toolSeconds },
    };
  };
}

/** A tokenizer for the toy agent's ids: `Q`, `TOOL`, `UNK`, then `w3` … (no EOS: turns have fixed length). */
export function toyToolTokenizer(vocabSize = 64): Tokenizer {
  const name = (id: number) => (id === QUESTION_ID ? 'Q' : id === TOOL_ID ? 'TOOL' : id === 2 ? 'UNK' : `w${id}`);
  const byName = new Map(Array.from({ length: vocabSize }, (_, i) => [name(i), i] as const));
  return {
    vocabSize,
    eosId: -1,
    encode: (t) => t.split(/\s+/).filter(Boolean).map((w) => byName.get(w) ?? 2),
    decode: (ids) => ids.map(name).join(' '),
    tokenString: name,
    tokenId: (s) => byName.get(s),
  };
}
