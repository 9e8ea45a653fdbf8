/**
 * JSON over HTTP for the remote inference clients: one request, one timeout, and errors that say
 * whether retrying can help. Retrying itself is the remote engine's job (it also decides which
 * server the retry goes to); this module never retries.
 *
 *   retryable: connection refused/reset, timeouts, 5xx  — the server may answer next time
 *   final:     4xx                                      — the request itself is wrong
 */

/** The request could not be completed for a reason that may go away (connection, timeout, 5xx). */
export class RemoteUnavailableError extends Error {
  readonly retryable = true;
  constructor(readonly url: string, message: string, readonly status: number | null = null, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RemoteUnavailableError';
  }
}

/** The server rejected the request (4xx): sending it again would fail the same way. */
export class RemoteRequestError extends Error {
  readonly retryable = false;
  constructor(readonly url: string, readonly status: number, readonly body: string) {
    super(`${url} answered ${status}: ${body.slice(0, 500) || '(empty body)'}`);
    this.name = 'RemoteRequestError';
  }
}

/** The server answered 2xx with a body that is not the documented shape. */
export class RemoteProtocolError extends Error {
  readonly retryable = false;
  constructor(readonly url: string, message: string) {
    super(`${url}: ${message}`);
    this.name = 'RemoteProtocolError';
  }
}

export type RemoteError = RemoteUnavailableError | RemoteRequestError | RemoteProtocolError;

export function isRetryable(e: unknown): boolean {
  return e instanceof RemoteUnavailableError;
}

export interface RequestOptions {
  /** Milliseconds before the request is abandoned (a RemoteUnavailableError). */
  timeoutMs: number;
  /** Aborts the request; the rejection is the signal's reason. */
  signal?: AbortSignal;
}

/** Timeout reason (a distinct object so a timeout is told apart from the caller's abort). */
class Timeout extends Error {}

/**
 * POST (or GET when `body` is undefined and `method` says so) and parse the JSON answer.
 * Rejects with the caller's `signal.reason` when it aborts, a RemoteUnavailableError on connection
 * errors / timeout / 5xx, a RemoteRequestError on 4xx, a RemoteProtocolError on a non-JSON body.
 */
export async function requestJson(url: string, opts: RequestOptions & { method?: 'GET' | 'POST'; body?: unknown }): Promise<unknown> {
  const timer = new AbortController();
  const t = setTimeout(() => timer.abort(new Timeout()), opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timer.signal]) : timer.signal;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: opts.method ?? 'POST',
      headers: opts.body === undefined ? {} : { 'content-type': 'application/json' },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal,
    });
    text = await res.text();
  } catch (e) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (timer.signal.aborted) throw new RemoteUnavailableError(url, `${url}: no answer within ${opts.timeoutMs} ms (raise engine.timeoutMs for long generations)`, null, { cause: e });
    throw new RemoteUnavailableError(url, `${url}: ${connectionMessage(e)} (is the inference server running and reachable?)`, null, { cause: e });
  } finally {
    clearTimeout(t);
  }
  if (res.status >= 500) throw new RemoteUnavailableError(url, `${url} answered ${res.status}: ${text.slice(0, 500)}`, res.status);
  if (res.status >= 400) throw new RemoteRequestError(url, res.status, text);
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RemoteProtocolError(url, `expected a JSON answer, got ${JSON.stringify(text.slice(0, 200))}`);
  }
}

/** The innermost cause's code/message of a fetch failure (undici wraps ECONNREFUSED in `cause`). */
function connectionMessage(e: unknown): string {
  let cur: unknown = e;
  for (let depth = 0; depth < 4 && cur instanceof Error; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return `${code} ${cur.message}`.trim();
    cur = cur.cause;
  }
  return e instanceof Error ? e.message : String(e);
}

/** A JSON object's field, checked: names the field and the URL when missing or of the wrong type. */
export function objectOf(url: string, v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RemoteProtocolError(url, `expected ${what} to be a JSON object, got ${JSON.stringify(v)?.slice(0, 200)}`);
  return v as Record<string, unknown>;
}

export function intArrayOf(url: string, v: unknown, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) throw new RemoteProtocolError(url, `expected ${what} to be an array of token ids, got ${JSON.stringify(v)?.slice(0, 200)}`);
  return v as number[];
}

/** A server-reported weight version as a number (SGLang reports a string), or null when absent / not numeric. */
export function versionOf(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return Number(v);
  return null;
}
