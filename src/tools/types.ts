/**
 * The search agent's tools speak these types: a search backend returns ranked documents for a query,
 * a page reader turns a URL into readable text. Local BM25, a remote retrieval server and web search
 * providers are all `SearchBackend`s; the local corpus, a retrieval server's `/access` and the web
 * page reader are all `PageReader`s. Every call is bounded (see `ToolLimits` and src/tools/retry.ts).
 */

/** A document as tools return it (a corpus passage, a web result, a page). */
export interface ToolDoc {
  /** Corpus id when there is one. */
  id?: string;
  url: string;
  title: string;
  /** Passage text, web snippet or readable page text. */
  contents: string;
}

/** One ranked search hit. `score` is the backend's own (BM25, dense similarity) or null when it gives none. */
export interface SearchHit extends ToolDoc {
  score: number | null;
}

export interface SearchBackend {
  /** For logs and trajectories: 'bm25', 'retrieval-server', 'serper', … */
  readonly name: string;
  /** Top-k hits, best first (fewer when fewer match; [] when none). Rejects with a ToolError after its retries. */
  search(query: string, topK: number, signal?: AbortSignal): Promise<SearchHit[]>;
}

export interface PageReader {
  readonly name: string;
  /** The page as readable text, or null when the URL is unknown / not a readable page. Rejects with a ToolError after its retries. */
  access(url: string, signal?: AbortSignal): Promise<ToolDoc | null>;
}

/** Bounds of every tool call. */
export interface ToolLimits {
  /** Per attempt, in ms. */
  timeoutMs: number;
  /** Extra attempts after the first. */
  retries: number;
  /** Back-off before retry k (1-based) is backoffMs · 2^(k−1). */
  backoffMs: number;
  /** Largest response body read, in bytes; bigger bodies are cut there (and say so). */
  maxBytes: number;
}

export const DEFAULT_TOOL_LIMITS: ToolLimits = { timeoutMs: 30_000, retries: 3, backoffMs: 1_000, maxBytes: 5_000_000 };

/** A tool call that failed for good (after its retries), or was given bad input. */
export class ToolError extends Error {
  constructor(
    message: string,
    readonly tool: string,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ToolError';
  }
}
