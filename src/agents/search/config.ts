/**
 * The search agent's settings (ASearcher defaults, see ../shared/reference/asearcher.md), validated at
 * the boundary. Small built-in models use shorter documents and compact templates; the loop is the same.
 */
import { z } from 'zod';

export const SearchAgentConfigSchema = z
  .object({
    /** Model calls (turns) before the trajectory is cut; ASearcher: 32 for 7B, up to 128 for QwQ. */
    maxTurns: z.number().int().min(1).max(4096).default(32),
    /** Total token budget of one context (prompt + everything appended); also capped by the engine's contextLength. */
    maxTotalTokens: z.number().int().min(16).default(8000),
    /** New tokens per model call (ASearcher: 1,024; 2,048 at scale). */
    maxNewTokens: z.number().int().min(1).default(1024),
    temperature: z.number().positive().default(1),
    topP: z.number().gt(0).max(1).default(1),
    /** Documents per search (ASearcher: 5). */
    topK: z.number().int().min(1).max(50).default(5),
    /** Characters kept of each search result (ASearcher: 5,000). */
    docChars: z.number().int().min(1).default(5000),
    /** Offer and execute `<access>` (ASearcher trains 7B search-only). */
    allowAccess: z.boolean().default(true),
    /** Characters of a page read (ASearcher: 250,000), chunk size (25,000) and most chunks (10). */
    pageChars: z.number().int().min(1).default(250_000),
    chunkChars: z.number().int().min(1).default(25_000),
    maxChunks: z.number().int().min(1).default(10),
    /** A page chunk already read is shrunk to this many characters in later context (ASearcher: 100). */
    shrinkChars: z.number().int().min(0).default(100),
    /**
     * The instruction prompt: 'asearcher' (ASearcher's plain-text instructions, for real LLMs) or
     * 'bare' (just `question : …`, for small built-in models that learn the format from demonstrations).
     */
    prompt: z.enum(['asearcher', 'bare']).default('asearcher'),
    /** How each search hit is shown; {i}, {url}, {title}, {contents} are filled in. */
    docTemplate: z.string().min(1).default('[Doc {i}]({url}):\n{title}\n{contents}'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.maxNewTokens >= c.maxTotalTokens) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['maxNewTokens'], message: `must be below maxTotalTokens (${c.maxTotalTokens}): a call must fit in the budget` });
  });
export type SearchAgentConfig = z.output<typeof SearchAgentConfigSchema>;
export type SearchAgentConfigInput = z.input<typeof SearchAgentConfigSchema>;

/** One question for the agent. */
export interface SearchItem {
  id: string;
  question: string;
  /** Accepted answers (any of them scores). */
  golds: string[];
  /** Hop count, when the dataset gives it (synthetic multi-hop QA). */
  hops?: number;
  /** Benchmark / source name for per-benchmark tables. */
  benchmark?: string;
}

/** Why a trajectory ended. */
export type SearchStop = 'answer' | 'max-turns' | 'token-budget' | 'eos';
