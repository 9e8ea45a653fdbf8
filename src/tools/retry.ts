/**
 * Bounded tool calls: a timeout per attempt, retries with exponential back-off, and a size cap on
 * response bodies. A call that still fails after its retries rejects with a ToolError naming the tool,
 * the attempts and the last cause; an abort from the caller stops at once (no retry).
 */
import { z } from 'zod';
import { ToolError, type ToolLimits } from './types.ts';

/** Per-tool overrides of ToolLimits in a validated options object (every field optional). */
export const ToolLimitsOverrideSchema = z
  .object({
    timeoutMs: z.number().positive(),
    retries: z.number().int().min(0),
    backoffMs: z.number().min(0),
    maxBytes: z.number().int().positive(),
  })
  .partial()
  .strict();

/** An error that retrying cannot fix (bad input, 4xx): thrown through at once. */
export class PermanentToolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentToolError';
  }
}

/** Resolve after `ms`, or reject at once with the signal's reason when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason ?? new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Run `attempt` with a per-attempt timeout (its signal aborts when the timeout passes or the caller
 * aborts), retrying failures `limits.retries` times with back-off backoffMs·2^(k−1).
 */
export async function callWithRetries<T>(
  tool: string,
  limits: Pick<ToolLimits, 'timeoutMs' | 'retries' | 'backoffMs'>,
  attempt: (signal: AbortSignal) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  let last: unknown;
  const attempts = limits.retries + 1;
  for (let k = 0; k < attempts; k++) {
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    if (k > 0) await sleep(limits.backoffMs * 2 ** (k - 1), signal);
    const timeout = AbortSignal.timeout(limits.timeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      return await attempt(both);
    } catch (e) {
      if (signal?.aborted) throw signal.reason ?? e;
      if (e instanceof PermanentToolError) throw new ToolError(`${tool}: ${e.message}`, tool, k + 1, { cause: e });
      last = timeout.aborted ? new Error(`timed out after ${limits.timeoutMs} ms`) : e;
    }
  }
  throw new ToolError(`${tool}: failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${describe(last)}`, tool, attempts, { cause: last });
}

/** Read a fetch Response body up to `maxBytes`; `truncated` says whether it was cut. */
export async function readCapped(res: Response, maxBytes: number): Promise<{ bytes: Uint8Array; truncated: boolean }> {
  if (!res.body) return { bytes: new Uint8Array(0), truncated: false };
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.length > maxBytes) {
      chunks.push(value.subarray(0, maxBytes - size));
      size = maxBytes;
      truncated = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    size += value.length;
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return { bytes, truncated };
}

/** POST JSON and parse a JSON reply (capped); HTTP 5xx/429 and unparseable bodies are retryable errors, other 4xx permanent. */
export async function postJson(url: string, body: unknown, init: { signal: AbortSignal; maxBytes: number; headers?: Record<string, string> }): Promise<unknown> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...init.headers }, body: JSON.stringify(body), signal: init.signal });
  const { bytes, truncated } = await readCapped(res, init.maxBytes);
  const text = new TextDecoder().decode(bytes);
  if (!res.ok) {
    const msg = `HTTP ${res.status} from ${url}: ${text.slice(0, 200)}`;
    if (res.status >= 500 || res.status === 429 || res.status === 408) throw new Error(msg);
    throw new PermanentToolError(msg);
  }
  if (truncated) throw new Error(`reply from ${url} is larger than ${init.maxBytes} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`unparseable JSON from ${url}: ${JSON.stringify(text.slice(0, 120))}`);
  }
}
