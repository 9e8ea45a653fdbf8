/**
 * `agentrl dashboard`: a local web page over a directory of runs (node:http, no framework). It serves
 *
 *   /                      the page (src/dashboard/web/: preact + htm, no build step) and, under
 *   /vendor/…              preact, htm and uPlot straight from node_modules (nothing from a CDN)
 *   /api/runs              every run with its status (training / finished / stopped) and warnings
 *   /api/run?run=ID        one run: config, status, eval.json/eval.md, warnings
 *   /api/metrics?run=ID&since=N&gen=G   metrics.jsonl rows from row N (the page polls this); for a
 *                          population run also its per-member curves over rounds (population-series.ts)
 *   /api/trajectories?run=ID            the logged trajectories (summaries) of every step
 *   /api/trajectory?run=ID&step=S&index=I[&sampleOffset&sampleLimit&tokenOffset&tokenLimit]
 *
 * Safety: requests select runs by id among the directories found under the root (src/dashboard/
 * run-reader.ts) and static files from a fixed table, so no request names a path. Bound to loopback
 * (the default), the server answers only requests whose Host is a loopback name (a web page cannot
 * reach it through DNS rebinding); bound elsewhere it requires a token — `?token=` once (it becomes
 * an HttpOnly cookie), or `Authorization: Bearer TOKEN` — compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError, listen } from '../core/http-server.ts';
import { populationView } from './population-series.ts';
import { DEFAULT_LIMITS, DEFAULT_PAGE, RunReader, type ReaderLimits, type TrajectoryPage } from './run-reader.ts';

export interface DashboardOptions {
  /** A run directory, or a directory of runs (runs/ by default in the CLI). */
  runsDir: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Required when host is not a loopback address; optional (then enforced) on loopback. */
  token?: string;
  limits?: Partial<ReaderLimits>;
}

export interface Dashboard {
  /** Base URL, e.g. http://127.0.0.1:8050/ (with ?token=… when a token is set). */
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

const COOKIE = 'agentrl_dashboard_token';

/** Hostnames that are only reachable from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/** The static files, by URL: the page's own and the vendored libraries (resolved as `npm ci` installs them). */
function staticFiles(): Map<string, { path: string; type: string }> {
  const here = dirname(fileURLToPath(import.meta.url));
  const req = createRequire(import.meta.url);
  const web = join(here, 'web');
  const js = 'text/javascript; charset=utf-8';
  return new Map([
    ['/app.js', { path: join(web, 'app.js'), type: js }],
    ['/style.css', { path: join(web, 'style.css'), type: 'text/css; charset=utf-8' }],
    ['/vendor/preact.mjs', { path: req.resolve('preact'), type: js }],
    ['/vendor/preact-hooks.mjs', { path: req.resolve('preact/hooks'), type: js }],
    // htm's exports map offers its CommonJS build to require.resolve; the ES module sits beside it.
    ['/vendor/htm.mjs', { path: join(dirname(req.resolve('htm')), 'htm.mjs'), type: js }],
    ['/vendor/uPlot.esm.js', { path: req.resolve('uplot/dist/uPlot.esm.js'), type: js }],
    ['/vendor/uPlot.min.css', { path: req.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' }],
  ]);
}

function sha256Base64(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('base64');
}

/** index.html and the Content-Security-Policy that allows exactly its inline import map. */
function indexPage(): { html: string; csp: string } {
  const html = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'web', 'index.html'), 'utf8');
  const hashes = [...html.matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)].map((m) => `'sha256-${sha256Base64(m[1]!)}'`);
  const csp = `default-src 'self'; script-src 'self' ${hashes.join(' ')}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'`;
  return { html, csp };
}

function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

function send(res: ServerResponse, status: number, body: string | Buffer, type: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', ...extra });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  // Metrics may hold NaN/Infinity written by other tools: JSON has no such numbers, send null.
  send(res, status, JSON.stringify(body, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)), 'application/json; charset=utf-8');
}

function intParam(q: URLSearchParams, name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = q.get(name);
  if (raw === null || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new HttpError(400, `${name}: expected an integer in [${min}, ${max}], got '${raw}'`);
  return n;
}

/** Start the dashboard server. Rejects when the host is not loopback and no token is given. */
export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const host = o.host ?? '127.0.0.1';
  const loopback = isLoopbackHost(host);
  if (!loopback && !o.token) {
    throw new Error(`dashboard: --host ${host} serves other machines, which could then read every run: give --token SECRET (e.g. --token $(openssl rand -hex 16)) and open the printed URL, or keep the default --host 127.0.0.1`);
  }
  if (o.token !== undefined && o.token.length < 8) throw new Error('dashboard: --token must be at least 8 characters');
  const token = o.token;
  const reader = new RunReader(o.runsDir, { ...DEFAULT_LIMITS, ...o.limits });
  const files = staticFiles();
  const page = indexPage();

  const runDir = (q: URLSearchParams): { id: string; dir: string } => {
    const id = q.get('run');
    if (!id) throw new HttpError(400, 'run: missing (give ?run=ID from /api/runs)');
    const dir = reader.runs().get(id);
    if (!dir) throw new HttpError(404, `run '${id}': no such run under ${o.runsDir}`);
    return { id, dir };
  };

  const api = (path: string, q: URLSearchParams): unknown => {
    switch (path) {
      case '/api/runs':
        return { root: o.runsDir, runs: [...reader.runs()].map(([id, dir]) => reader.summary(id, dir)).sort((a, b) => b.updatedMs - a.updatedMs) };
      case '/api/run': {
        const { id, dir } = runDir(q);
        return reader.detail(id, dir);
      }
      case '/api/metrics': {
        const { dir } = runDir(q);
        const m = reader.metricsOf(dir);
        const s = m.refresh();
        if (!s) return { generation: 0, from: 0, total: 0, rows: [], warnings: [{ file: 'metrics.jsonl', message: 'missing: no step has been logged' }] };
        // Another generation (the file was rewritten, e.g. by --resume): the page starts over.
        const gen = intParam(q, 'gen', s.generation);
        const since = gen === s.generation ? Math.min(intParam(q, 'since', 0), s.rows.length) : 0;
        const rows = s.rows.slice(since);
        const body = { generation: s.generation, from: since, total: s.rows.length, rows, warnings: m.warnings() };
        // A population run's curves (per member over rounds), for the rounds the new rows touch.
        const population = rows.length ? populationView(s.rows, since) : null;
        return population ? { ...body, population } : body;
      }
      case '/api/trajectories': {
        const { dir } = runDir(q);
        return reader.trajectories(dir);
      }
      case '/api/trajectory': {
        const { dir } = runDir(q);
        const step = intParam(q, 'step', -1, 0);
        const index = intParam(q, 'index', -1, 0);
        const p: TrajectoryPage = {
          sampleOffset: intParam(q, 'sampleOffset', DEFAULT_PAGE.sampleOffset),
          sampleLimit: intParam(q, 'sampleLimit', DEFAULT_PAGE.sampleLimit, 1, 1000),
          tokenOffset: intParam(q, 'tokenOffset', DEFAULT_PAGE.tokenOffset),
          tokenLimit: intParam(q, 'tokenLimit', DEFAULT_PAGE.tokenLimit, 1, 20_000),
        };
        const t = reader.trajectory(dir, step, index, p);
        if (!t) throw new HttpError(404, `no trajectory ${index} logged at step ${step} (see /api/trajectories)`);
        return t;
      }
      default:
        throw new HttpError(404, `no API ${path}`);
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'only GET', 'text/plain; charset=utf-8', { Allow: 'GET, HEAD' });
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const hostHeader = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (loopback && !isLoopbackHost(hostHeader)) return send(res, 403, `forbidden: Host '${req.headers.host ?? ''}' is not a loopback name (this dashboard is bound to ${host})`, 'text/plain; charset=utf-8');
    if (token) {
      const fromQuery = url.searchParams.get('token') ?? undefined;
      const auth = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      if (tokenMatches(fromQuery, token)) {
        if (!url.pathname.startsWith('/api/')) {
          // The token moves into a cookie and out of the address bar (and history).
          url.searchParams.delete('token');
          return send(res, 302, '', 'text/plain', {
            Location: url.pathname + (url.search || ''),
            'Set-Cookie': `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
          });
        }
      } else if (!tokenMatches(auth, token) && !tokenMatches(cookieValue(req, COOKIE), token)) {
        return send(res, 401, 'unauthorized: open the URL with ?token=… that agentrl dashboard printed, or send Authorization: Bearer TOKEN', 'text/plain; charset=utf-8');
      }
    }
    try {
      if (url.pathname.startsWith('/api/')) return json(res, 200, api(url.pathname, url.searchParams));
      if (url.pathname === '/' || url.pathname === '/index.html') return send(res, 200, page.html, 'text/html; charset=utf-8', { 'Content-Security-Policy': page.csp });
      const f = files.get(url.pathname);
      if (!f) return send(res, 404, 'not found', 'text/plain; charset=utf-8');
      return send(res, 200, readFileSync(f.path), f.type);
    } catch (e) {
      if (e instanceof HttpError) return json(res, e.status, { error: e.message });
      return json(res, 500, { error: (e as Error).message });
    }
  };

  const server = createServer(handle);
  await listen(server, o.port ?? 0, host);
  const port = (server.address() as { port: number }).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${port}/${token ? `?token=${encodeURIComponent(token)}` : ''}`,
    port,
    server,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
