/**
 * A retrieval server speaking the ASearcher / Search-R1 API over any search backend and page reader
 * (usually a local `Bm25Index`), so rollout workers on other machines can share one index:
 *
 *   POST /retrieve {"queries": [...], "topk": 5, "return_scores": false}
 *     → {"result": [[{"id", "contents", "title", "url"}, ...] per query]}
 *     (with "return_scores": true each item is {"document": {...}, "score": s})
 *   POST /access {"urls": [...]} → {"result": [{"url", "contents", "title"} | null, ...]}
 *   GET /health → {"status": "ok", "backend": name}
 *
 * Bad requests get HTTP 400 with a message naming the field; errors are JSON `{"error": "..."}`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { formatZodError } from '../core/config-errors.ts';
import type { PageReader, SearchBackend, SearchHit } from './types.ts';

export interface RetrievalServerOptions {
  backend: SearchBackend & PageReader;
  /** Default 127.0.0.1 (loopback only; pass 0.0.0.0 to serve other machines). */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Largest request body accepted, in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Most queries (or urls) in one request (default 256). */
  maxQueries?: number;
  /** Largest topk (default 100). */
  maxTopK?: number;
}

export interface RetrievalServer {
  /** Base URL, e.g. http://127.0.0.1:8000 */
  url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > maxBytes) return reject(new HttpError(413, `request body of ${declared} bytes is larger than the limit of ${maxBytes} bytes`));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        reject(new HttpError(413, `request body is larger than the limit of ${maxBytes} bytes`));
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

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function asItem(h: SearchHit, withScore: boolean): unknown {
  const document = { id: h.id, contents: h.contents, title: h.title, url: h.url };
  return withScore ? { document, score: h.score } : document;
}

export async function startRetrievalServer(opts: RetrievalServerOptions): Promise<RetrievalServer> {
  const { backend, host = '127.0.0.1', port = 8000, maxBodyBytes = 1 << 20, maxQueries = 256, maxTopK = 100 } = opts;
  const RetrieveRequest = z.object({
    queries: z.array(z.string()).min(1).max(maxQueries),
    topk: z.number().int().min(1).max(maxTopK).default(5),
    return_scores: z.boolean().default(false),
  });
  const AccessRequest = z.object({ urls: z.array(z.string()).min(1).max(maxQueries) });

  async function parse<S extends z.ZodTypeAny>(req: IncomingMessage, schema: S): Promise<z.infer<S>> {
    const text = await readBody(req, maxBodyBytes);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new HttpError(400, `request body is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
    const r = schema.safeParse(json);
    if (!r.success) throw new HttpError(400, `invalid request: ${formatZodError(r.error)}`);
    return r.data;
  }

  const routes: Record<string, Record<string, (req: IncomingMessage) => Promise<unknown>>> = {
    '/retrieve': {
      POST: async (req) => {
        const r = await parse(req, RetrieveRequest);
        const result = [];
        for (const q of r.queries) result.push((await backend.search(q, r.topk)).map((h) => asItem(h, r.return_scores)));
        return { result };
      },
    },
    '/access': {
      POST: async (req) => {
        const r = await parse(req, AccessRequest);
        const result = [];
        for (const u of r.urls) {
          const doc = await backend.access(u);
          result.push(doc ? { url: doc.url, contents: doc.contents, title: doc.title } : null);
        }
        return { result };
      },
    },
    '/health': { GET: async () => ({ status: 'ok', backend: backend.name }) },
  };

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = routes[path];
    const handler = route?.[req.method ?? ''];
    if (!route) return send(res, 404, { error: `no route ${path}; routes: POST /retrieve, POST /access, GET /health` });
    if (!handler) {
      res.setHeader('allow', Object.keys(route).join(', '));
      return send(res, 405, { error: `${req.method} not allowed on ${path}; use ${Object.keys(route).join(', ')}` });
    }
    handler(req).then(
      (body) => send(res, 200, body),
      (e: unknown) => {
        if (e instanceof HttpError) {
          if (e.status === 413) res.setHeader('connection', 'close');
          return send(res, e.status, { error: e.message });
        }
        send(res, 500, { error: e instanceof Error ? e.message : String(e) });
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shownHost}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}
