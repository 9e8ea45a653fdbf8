/**
 * Web search providers as `SearchBackend`s: Serper (Google results, what ASearcher uses), Brave Search
 * and Tavily. Each reads its API key from the environment (or `opts.apiKey`), takes a base URL override
 * (tests point it at a local server), limits calls in flight (20 per backend, as ASearcher) and bounds
 * every call with callWithRetries. Snippets come back as plain text (Brave's carry <strong> tags).
 *
 *   const web = webSearchBackend('serper');            // needs SERPER_API_KEY
 *   const hits = await web.search('who wrote Dune', 5); // [{url, title, contents, score: null}, …]
 */
import { z } from 'zod';
import { callWithRetries, PermanentToolError, readCapped, ToolLimitsOverrideSchema } from './retry.ts';
import { DEFAULT_TOOL_LIMITS, ToolError, type SearchBackend, type SearchHit, type ToolLimits } from './types.ts';

// ------------------------------------------------------------------ small shared helpers

/**
 * At most `max` tasks run at once; the rest wait in FIFO order. A caller that aborts while waiting
 * leaves the queue without taking a slot. (Also used by the page reader.)
 */
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: Array<{ grant: () => void }> = [];

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`concurrency limit must be an integer ≥ 1, got ${max}`);
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  private acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error('aborted'));
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason ?? new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next.grant(); // the slot passes straight to the next waiter
    else this.active--;
  }
}

const NAMED_ENTITIES: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', ndash: '–', mdash: '—', hellip: '…',
  lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«', raquo: '»', middot: '·', bull: '•',
  copy: '©', reg: '®', trade: '™', deg: '°', eacute: 'é', egrave: 'è', agrave: 'à', ccedil: 'ç',
  ouml: 'ö', uuml: 'ü', auml: 'ä', szlig: 'ß', times: '×',
};

/**
 * A search snippet as plain text: tags removed, character references decoded, whitespace collapsed.
 * Only `<` followed by a letter, `/` or `!` starts a tag, so text like "a < b" survives.
 */
export function stripHtml(s: string): string {
  return s
    .replace(/<!--[\s\S]*?-->/g, '')
    .replace(/<\/?[a-zA-Z!][^<>]*>/g, '')
    .replace(/&(#[xX][0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, ref: string) => {
      if (ref[0] === '#') {
        const cp = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
        return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : whole;
      }
      return NAMED_ENTITIES[ref] ?? NAMED_ENTITIES[ref.toLowerCase()] ?? whole;
    })
    .replace(/\s+/g, ' ')
    .trim();
}

// ------------------------------------------------------------------ providers

export type WebSearchProvider = 'serper' | 'brave' | 'tavily';

interface ProviderSpec {
  envVar: string;
  defaultBaseUrl: string;
  /** Largest result count the API accepts per request. */
  maxResults: number;
  request(base: string, key: string, query: string, k: number): { url: string; init: RequestInit };
  parse(reply: unknown): SearchHit[];
}

const str = z.string().optional().catch(undefined);
const num = z.number().finite().optional().catch(undefined);

/** Items without a URL are dropped; a missing results array means no results. */
function hitsFrom(items: unknown, pick: (item: Record<string, unknown>) => { url?: string; title?: string; contents?: string; score?: number }): SearchHit[] {
  if (!Array.isArray(items)) return [];
  const hits: SearchHit[] = [];
  for (const item of items) {
    if (typeof item !== 'object' || item === null) continue;
    const h = pick(item as Record<string, unknown>);
    if (!h.url) continue;
    hits.push({ url: h.url, title: stripHtml(h.title ?? ''), contents: stripHtml(h.contents ?? ''), score: h.score ?? null });
  }
  return hits;
}

const jsonPost = (url: string, headers: Record<string, string>, body: unknown) => ({
  url,
  init: { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers }, body: JSON.stringify(body) },
});

const PROVIDERS: Record<WebSearchProvider, ProviderSpec> = {
  serper: {
    envVar: 'SERPER_API_KEY',
    defaultBaseUrl: 'https://google.serper.dev',
    maxResults: 100,
    request: (base, key, q, num) => jsonPost(`${base}/search`, { 'X-API-KEY': key }, { q, num }),
    parse: (reply) =>
      hitsFrom(z.object({ organic: z.unknown() }).partial().catch({}).parse(reply).organic, (o) => ({
        url: str.parse(o.link), title: str.parse(o.title), contents: str.parse(o.snippet),
      })),
  },
  brave: {
    envVar: 'BRAVE_API_KEY',
    defaultBaseUrl: 'https://api.search.brave.com',
    maxResults: 20,
    request: (base, key, q, count) => ({
      url: `${base}/res/v1/web/search?${new URLSearchParams({ q, count: String(count) })}`,
      init: { method: 'GET', headers: { accept: 'application/json', 'X-Subscription-Token': key } },
    }),
    parse: (reply) => {
      // Brave leaves `web` out entirely when there are no web results.
      const web = z.object({ web: z.object({ results: z.unknown() }).partial() }).partial().catch({}).parse(reply).web;
      return hitsFrom(web?.results, (r) => ({ url: str.parse(r.url), title: str.parse(r.title), contents: str.parse(r.description) }));
    },
  },
  tavily: {
    envVar: 'TAVILY_API_KEY',
    defaultBaseUrl: 'https://api.tavily.com',
    maxResults: 20,
    request: (base, key, query, max_results) => jsonPost(`${base}/search`, { Authorization: `Bearer ${key}` }, { query, max_results }),
    parse: (reply) =>
      hitsFrom(z.object({ results: z.unknown() }).partial().catch({}).parse(reply).results, (r) => ({
        url: str.parse(r.url), title: str.parse(r.title), contents: str.parse(r.content), score: num.parse(r.score),
      })),
  },
};

export const WEB_SEARCH_PROVIDERS = Object.keys(PROVIDERS) as WebSearchProvider[];

const limitsSchema = ToolLimitsOverrideSchema;

/** DEFAULT_TOOL_LIMITS overridden by `partial`, validated (the error names `tool` and the field). */
export function resolveLimits(tool: string, partial: Partial<ToolLimits> = {}): ToolLimits {
  const parsed = limitsSchema.safeParse(partial);
  if (!parsed.success) throw new Error(`invalid ${tool} limits: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return { ...DEFAULT_TOOL_LIMITS, ...parsed.data };
}

const optionsSchema = z
  .object({
    /** Overrides the provider's environment variable. */
    apiKey: z.string().optional(),
    /** Origin (and optional path prefix) of the API, e.g. http://127.0.0.1:8080 in tests. */
    baseUrl: z.string().url().optional(),
    /** Where to read the key from; process.env by default. */
    env: z.record(z.string().optional()).optional(),
    limits: limitsSchema.optional(),
    /** Searches in flight at once (ASearcher: 20). */
    concurrency: z.number().int().min(1).optional(),
  })
  .strict();

export type WebSearchOptions = z.input<typeof optionsSchema>;

/** GET/POST a JSON API: 401/403 are a refused key, other 4xx permanent, 5xx/408/429 and bad JSON retryable. */
async function fetchJson(url: string, init: RequestInit, signal: AbortSignal, maxBytes: number, envVar: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal });
  } catch (e) {
    if (signal.aborted) throw e;
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`request to ${url} failed: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  const { bytes, truncated } = await readCapped(res, maxBytes);
  const text = new TextDecoder().decode(bytes);
  if (!res.ok) {
    const msg = `HTTP ${res.status} from ${url}: ${text.slice(0, 200)}`;
    if (res.status === 401 || res.status === 403) throw new PermanentToolError(`the API key was refused (${msg}); check ${envVar}`);
    if (res.status >= 500 || res.status === 429 || res.status === 408) throw new Error(msg);
    throw new PermanentToolError(msg);
  }
  if (truncated) throw new Error(`reply from ${url} is larger than ${maxBytes} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`unparseable JSON from ${url}: ${JSON.stringify(text.slice(0, 120))}`);
  }
}

class WebSearchBackend implements SearchBackend {
  private readonly gate: ConcurrencyLimit;

  constructor(
    readonly name: WebSearchProvider,
    private readonly spec: ProviderSpec,
    private readonly key: string,
    private readonly baseUrl: string,
    private readonly limits: ToolLimits,
    concurrency: number,
  ) {
    this.gate = new ConcurrencyLimit(concurrency);
  }

  async search(query: string, topK: number, signal?: AbortSignal): Promise<SearchHit[]> {
    if (!query.trim()) throw new ToolError(`${this.name}: empty query`, this.name, 0);
    if (!Number.isInteger(topK) || topK < 1) throw new ToolError(`${this.name}: topK must be an integer ≥ 1, got ${topK}`, this.name, 0);
    const k = Math.min(topK, this.spec.maxResults);
    const { url, init } = this.spec.request(this.baseUrl, this.key, query, k);
    const reply = await this.gate.run(
      () => callWithRetries(this.name, this.limits, (s) => fetchJson(url, init, s, this.limits.maxBytes, this.spec.envVar), signal),
      signal,
    );
    return this.spec.parse(reply).slice(0, topK);
  }
}

/** A web search backend for `provider`; throws at once when its API key is missing. */
export function webSearchBackend(provider: WebSearchProvider, opts: WebSearchOptions = {}): SearchBackend {
  const spec = PROVIDERS[provider];
  if (!spec) throw new Error(`unknown web search provider '${provider}' (known: ${WEB_SEARCH_PROVIDERS.join(', ')})`);
  const parsed = optionsSchema.safeParse(opts);
  if (!parsed.success) throw new Error(`invalid ${provider} options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  const o = parsed.data;
  const key = (o.apiKey ?? (o.env ?? process.env)[spec.envVar])?.trim();
  if (!key) throw new Error(`${provider} web search needs an API key: set ${spec.envVar} in the environment (or pass apiKey)`);
  const baseUrl = (o.baseUrl ?? spec.defaultBaseUrl).replace(/\/+$/, '');
  return new WebSearchBackend(provider, spec, key, baseUrl, resolveLimits(provider, o.limits), o.concurrency ?? 20);
}
