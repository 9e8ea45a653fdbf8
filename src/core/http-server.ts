/**
 * HTTP plumbing the agentrl servers share (inference, trainer, retrieval, gateway, dashboard): an
 * error that carries its status, a size-capped body reader (and JSON + zod on top of it) and
 * listen-then-report-the-URL. It lives in core because src/tools must not depend on src/serve.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { z } from 'zod';
import { formatZodError } from './config-errors.ts';

/** An error the handler answers with `status` and its message (the client's fault, not the server's). */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * Builds the 413 error. `declaredBytes` is set when the Content-Length header alone is over the
 * limit (the body is then not read), unset when the bytes received pass it.
 */
export type TooLargeError = (maxBytes: number, declaredBytes?: number) => Error;

const tooLargeDefault: TooLargeError = (maxBytes, declaredBytes) =>
  new HttpError(413, declaredBytes !== undefined
    ? `request body of ${declaredBytes} bytes is larger than the limit of ${maxBytes} bytes`
    : `request body is larger than the limit of ${maxBytes} bytes`);

/**
 * The body as UTF-8 text. Rejects with `tooLarge(...)` (default an HttpError 413) as soon as the
 * declared or received size passes `maxBytes`; the rest is read and dropped, so the client still
 * gets the answer. A request closed before its body ended rejects with an HttpError 400.
 */
export function readBody(req: IncomingMessage, maxBytes: number, tooLarge: TooLargeError = tooLargeDefault): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > maxBytes) return reject(tooLarge(maxBytes, declared));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        reject(tooLarge(maxBytes));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    req.on('close', () => reject(new HttpError(400, 'request closed before its body was complete'))); // no-op after 'end'
  });
}

/** `text` parsed as JSON, or an HttpError 400 quoting the parser's complaint. */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `request body is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

export interface ReadJsonOptions {
  /** The 413 to reject with (default readBody's). */
  tooLarge?: TooLargeError;
  /** When given, a body of only whitespace stands for this value instead of failing as invalid JSON. */
  emptyBody?: unknown;
}

/** The body read (see readBody), parsed as JSON and validated by `schema`; HttpError 400 naming the field otherwise. */
export async function readJsonBody<S extends z.ZodTypeAny>(req: IncomingMessage, maxBytes: number, schema: S, o: ReadJsonOptions = {}): Promise<z.infer<S>> {
  const text = await readBody(req, maxBytes, o.tooLarge);
  const json = o.emptyBody !== undefined && text.trim() === '' ? o.emptyBody : parseJsonBody(text);
  const r = schema.safeParse(json);
  if (!r.success) throw new HttpError(400, `invalid request: ${formatZodError(r.error)}`);
  return r.data;
}

/** Resolves once `server` listens on host:port; rejects with the listen error (EADDRINUSE, …). */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Listens, then returns the bound address as `http://host:port` (IPv6 in brackets; port 0 resolved). */
export async function listenUrl(server: Server, port: number, host: string): Promise<string> {
  await listen(server, port, host);
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${shownHost}:${addr.port}`;
}
