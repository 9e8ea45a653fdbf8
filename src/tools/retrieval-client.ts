/**
 * Client of a retrieval server (agentrl's own, ASearcher's or Search-R1's): search by POST /retrieve,
 * page reading by POST /access. Every call is bounded and retried (src/tools/retry.ts); HTTP 5xx/429,
 * timeouts, network errors and unparseable or ill-shaped replies are retried, other 4xx are not.
 *
 * Replies are read tolerantly, as the servers differ: items may be flat corpus records
 * `{contents, title?, url?, id?}` or wrapped `{document: {...}, score}`; `text` is read as `contents`;
 * a record without a title whose contents are "title\ntext" (Search-R1's wiki corpus) is split there.
 */
import { callWithRetries, postJson } from './retry.ts';
import { DEFAULT_TOOL_LIMITS, ToolError, type PageReader, type SearchBackend, type SearchHit, type ToolDoc, type ToolLimits } from './types.ts';

export interface RetrievalClientOptions {
  /** Name in logs and errors (default 'retrieval-server'). */
  name?: string;
  /** Defaults: DEFAULT_TOOL_LIMITS (30 s per attempt, 3 retries, 1 s back-off doubling). */
  limits?: Partial<ToolLimits>;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function preview(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

/** A corpus record as a ToolDoc, or null when it has no text. */
function toDoc(r: Json): ToolDoc | null {
  let contents = typeof r.contents === 'string' ? r.contents : typeof r.text === 'string' ? r.text : null;
  if (contents === null) return null;
  let title = typeof r.title === 'string' ? r.title : '';
  if (typeof r.title !== 'string' && contents.includes('\n')) {
    const cut = contents.indexOf('\n');
    title = contents.slice(0, cut).replace(/^"(.*)"$/, '$1');
    contents = contents.slice(cut + 1);
  }
  const id = typeof r.id === 'string' || typeof r.id === 'number' ? String(r.id) : undefined;
  const url = typeof r.url === 'string' && r.url !== '' ? r.url : id !== undefined ? `corpus://${id}` : '';
  return { ...(id !== undefined ? { id } : {}), url, title, contents };
}

function toHit(item: unknown): SearchHit | null {
  if (!isObject(item)) return null;
  const record = isObject(item.document) ? item.document : item;
  const doc = toDoc(record);
  if (!doc) return null;
  const score = typeof item.score === 'number' && Number.isFinite(item.score) ? item.score : null;
  return { ...doc, score };
}

/** The single list in `{"result": [list]}`; throws (retryably) on any other shape. */
function onlyResult(body: unknown, url: string): unknown[] {
  if (!isObject(body) || !Array.isArray(body.result) || body.result.length !== 1) {
    throw new Error(`ill-shaped reply from ${url}: expected {"result": [one entry]}, got ${preview(body)}`);
  }
  return body.result;
}

export class RetrievalClient implements SearchBackend, PageReader {
  readonly name: string;
  readonly baseUrl: string;
  private readonly limits: ToolLimits;

  constructor(baseUrl: string, opts: RetrievalClientOptions = {}) {
    let parsed: URL;
    try {
      parsed = new URL(baseUrl);
    } catch {
      throw new Error(`retrieval server URL '${baseUrl}' is not a URL (expected e.g. http://127.0.0.1:8000)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`retrieval server URL '${baseUrl}' must be http(s)`);
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.name = opts.name ?? 'retrieval-server';
    this.limits = { ...DEFAULT_TOOL_LIMITS, ...opts.limits };
  }

  search(query: string, topK: number, signal?: AbortSignal): Promise<SearchHit[]> {
    return this.post('/retrieve', { queries: [query], topk: topK, return_scores: true }, signal, (body, url) => {
      const list = onlyResult(body, url)[0];
      if (!Array.isArray(list)) throw new Error(`ill-shaped reply from ${url}: result[0] should be a list of documents, got ${preview(list)}`);
      return list.slice(0, topK).map((item, i) => {
        const hit = toHit(item);
        if (!hit) throw new Error(`ill-shaped reply from ${url}: result[0][${i}] has no contents, got ${preview(item)}`);
        return hit;
      });
    });
  }

  access(url: string, signal?: AbortSignal): Promise<ToolDoc | null> {
    return this.post('/access', { urls: [url] }, signal, (body, at) => {
      const page = onlyResult(body, at)[0];
      if (page === null) return null;
      const doc = isObject(page) ? toDoc(page) : null;
      if (!doc) throw new Error(`ill-shaped reply from ${at}: result[0] should be null or a page with contents, got ${preview(page)}`);
      return { ...doc, url: doc.url || url };
    });
  }

  private async post<T>(path: string, body: unknown, signal: AbortSignal | undefined, read: (reply: unknown, url: string) => T): Promise<T> {
    const url = this.baseUrl + path;
    try {
      return await callWithRetries(`${this.name} (POST ${url})`, this.limits, async (s) => read(await postJson(url, body, { signal: s, maxBytes: this.limits.maxBytes }), url), signal);
    } catch (e) {
      // Same message (it names the URL), but the tool is this client's name.
      if (e instanceof ToolError) throw new ToolError(e.message, this.name, e.attempts, { cause: e.cause });
      throw e;
    }
  }
}
