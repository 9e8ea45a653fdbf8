/**
 * A retrieval server speaking the ASearcher / Search-R1 API over any search backend and page reader
 * (usually a local `Bm25Index`), so rollout workers on other machines can share one index:
 *
 *   POST /retrieve {"queries": [...], "topk": 5, "return_scores": false}
 *     → {"result": [[{"id", "contents", "title", "url"}, ...] per query]}
 *     (with "return_scores": true each item is {"document": {...}, "score": s})
 *   POST /access {"urls": [...]} → {"result": [{"url", "contents", "title"} | null, ...]}
 *   GET /health → {"status": "ok", "backend": name, "pid": pid}  (pid: the serving process, one of
 *     several when the server runs as a cluster, see retrieval-cluster.ts)
 *
 * Bad requests get HTTP 400 with a message naming the field; errors are JSON `{"error": "..."}`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { HttpError, listenUrl, readJsonBody } from '../core/http-server.ts';
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

  function parse<S extends z.ZodTypeAny>(req: IncomingMessage, schema: S): Promise<z.infer<S>> {
    return readJsonBody(req, maxBodyBytes, schema);
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
    '/health': { GET: async () => ({ status: 'ok', backend: backend.name, pid: process.pid }) },
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

  const url = await listenUrl(server, port, host);
  return {
    url,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}
