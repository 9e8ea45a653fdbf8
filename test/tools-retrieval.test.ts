/**
 * The retrieval server and client (src/tools/retrieval-server.ts, retrieval-client.ts) over real
 * sockets on 127.0.0.1: the two interoperate over a real BM25 index (flat and scored item shapes,
 * /access, /health); the server answers bad requests with 400s naming the field; the client reads
 * Search-R1-style replies, and against misbehaving local servers (5xx, sleeping past the timeout,
 * garbage or ill-shaped JSON) retries and finally fails with a ToolError naming URL and attempts.
 * `agentrl index build` and `agentrl serve retrieval` are run as a user runs them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Bm25Index, buildIndex } from '../src/tools/bm25-index.ts';
import { startRetrievalServer, type RetrievalServer } from '../src/tools/retrieval-server.ts';
import { RetrievalClient } from '../src/tools/retrieval-client.ts';
import { ToolError, type PageReader, type SearchBackend } from '../src/tools/types.ts';

const ROOT = join(import.meta.dirname, '..');
const FAST = { timeoutMs: 200, retries: 2, backoffMs: 10 };

const CORPUS = [
  { id: 'd1', title: 'Apollo program', contents: 'The Apollo program landed astronauts on the Moon in 1969.' },
  { id: 'd2', title: 'Moon', contents: 'The Moon is the only natural satellite of the Earth.' },
  { id: 'd3', title: 'Mars', contents: 'Mars is the fourth planet from the Sun; rovers explore Mars.', url: 'https://example.org/mars' },
  { id: 'd4', title: 'Saturn V', contents: 'Saturn V was the rocket of the Apollo program.' },
];

let dir = '';
let corpus = '';
let index: Bm25Index;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentrl-retrieval-'));
  corpus = join(dir, 'corpus.jsonl');
  writeFileSync(corpus, CORPUS.map((d) => JSON.stringify(d)).join('\n') + '\n');
  await buildIndex(corpus, join(dir, 'index.db'));
  index = new Bm25Index(join(dir, 'index.db'));
});
afterAll(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(url: string, body: string | object): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

describe('server and client over a BM25 index', () => {
  let server: RetrievalServer;
  beforeAll(async () => {
    server = await startRetrievalServer({ backend: index, port: 0, maxQueries: 4, maxTopK: 10, maxBodyBytes: 10_000 });
  });
  afterAll(() => server.close());

  it('listens on loopback and reports health', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${server.url}/health`);
    expect(await res.json()).toEqual({ status: 'ok', backend: 'bm25', pid: process.pid });
  });

  it('client search gives the index\'s own hits and scores', async () => {
    const client = new RetrievalClient(server.url, { limits: FAST });
    const hits = await client.search('saturn mars earth', 3);
    expect(hits).toEqual(index.searchSync('saturn mars earth', 3));
    expect(hits.map((h) => h.id).sort()).toEqual(['d2', 'd3', 'd4']);
    expect(hits[2]!.score).toBeGreaterThan(0.5);
    expect(await client.search('xylophone', 3)).toEqual([]);
  });

  it('answers flat items without return_scores and {document, score} with it, one list per query', async () => {
    const flat = await post(`${server.url}/retrieve`, { queries: ['mars', 'saturn rocket', 'zzz'], topk: 2 });
    expect(flat.status).toBe(200);
    expect(flat.json.result).toHaveLength(3);
    expect(flat.json.result[0]).toEqual([{ id: 'd3', contents: CORPUS[2]!.contents, title: 'Mars', url: 'https://example.org/mars' }]);
    expect(flat.json.result[1][0].id).toBe('d4');
    expect(flat.json.result[2]).toEqual([]);
    const scored = await post(`${server.url}/retrieve`, { queries: ['apollo'], topk: 5, return_scores: true });
    expect(scored.json.result[0].map((x: any) => x.document.id)).toEqual(['d1', 'd4']);
    expect(scored.json.result[0][0]).toEqual({ document: { id: 'd1', contents: CORPUS[0]!.contents, title: 'Apollo program', url: 'corpus://d1' }, score: index.searchSync('apollo', 1)[0]!.score });
    const defaults = await post(`${server.url}/retrieve`, { queries: ['the'] });
    expect(defaults.json.result[0]).toHaveLength(4); // topk defaults to 5; 4 passages hold 'the'
  });

  it('reads pages by url or id, null for unknown ones', async () => {
    const r = await post(`${server.url}/access`, { urls: ['https://example.org/mars', 'd2', 'https://nowhere.org/'] });
    expect(r.json).toEqual({ result: [{ url: 'https://example.org/mars', contents: CORPUS[2]!.contents, title: 'Mars' }, { url: 'corpus://d2', contents: CORPUS[1]!.contents, title: 'Moon' }, null] });
    const client = new RetrievalClient(`${server.url}/`, { limits: FAST });
    expect(await client.access('https://nowhere.org/')).toBeNull();
    expect(await client.access('corpus://d4')).toEqual({ url: 'corpus://d4', title: 'Saturn V', contents: CORPUS[3]!.contents });
  });

  const badRequests: [string, string, string | object, RegExp][] = [
    ['bad JSON', '/retrieve', '{"queries": [', /not valid JSON/],
    ['a body that is not an object', '/retrieve', '[1]', /\(root\): Expected object/],
    ['queries missing', '/retrieve', { topk: 3 }, /queries: Required/],
    ['queries a string', '/retrieve', { queries: 'apollo' }, /queries: Expected array, received string/],
    ['a query not a string', '/retrieve', { queries: ['a', 3] }, /queries\.1: Expected string/],
    ['no queries', '/retrieve', { queries: [] }, /queries: Array must contain at least 1/],
    ['too many queries', '/retrieve', { queries: ['a', 'b', 'c', 'd', 'e'] }, /queries: Array must contain at most 4/],
    ['topk 0', '/retrieve', { queries: ['a'], topk: 0 }, /topk: Number must be greater than or equal to 1/],
    ['topk above the cap', '/retrieve', { queries: ['a'], topk: 11 }, /topk: Number must be less than or equal to 10/],
    ['topk not an integer', '/retrieve', { queries: ['a'], topk: 2.5 }, /topk: Expected integer/],
    ['return_scores not a boolean', '/retrieve', { queries: ['a'], return_scores: 'yes' }, /return_scores: Expected boolean/],
    ['urls missing', '/access', { url: 'x' }, /urls: Required/],
  ];
  for (const [what, path, body, message] of badRequests) {
    it(`answers 400 to ${what}`, async () => {
      const r = await post(`${server.url}${path}`, body);
      expect(r.status).toBe(400);
      expect(r.json.error).toMatch(message);
    });
  }

  it('answers 404 to unknown routes, 405 to wrong methods, 413 to oversized bodies', async () => {
    const unknown = await post(`${server.url}/search`, { queries: ['a'] });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/no route \/search/);
    const wrong = await fetch(`${server.url}/retrieve`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    const big = await post(`${server.url}/retrieve`, { queries: ['x'.repeat(20_000)] });
    expect(big.status).toBe(413);
    expect(big.json.error).toMatch(/larger than the limit of 10000 bytes/);
  });

  it('answers 500 with the message when the backend fails', async () => {
    const broken: SearchBackend & PageReader = {
      name: 'broken',
      search: async () => {
        throw new Error('index file vanished');
      },
      access: async () => null,
    };
    const s = await startRetrievalServer({ backend: broken, port: 0 });
    const r = await post(`${s.url}/retrieve`, { queries: ['a'] });
    expect(r).toEqual({ status: 500, json: { error: 'index file vanished' } });
    await s.close();
  });
});

/** A local server whose every reply `handle` decides; counts requests. */
async function fakeServer(handle: (n: number, req: IncomingMessage, res: ServerResponse, body: any) => void): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => handle(++n, req, res, text ? JSON.parse(text) : null));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => n,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

function reply(res: ServerResponse, status: number, body: string | object): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

const ONE_HIT = { result: [[{ contents: 'text', title: 'T', url: 'u' }]] };

describe('the client', () => {
  it('reads Search-R1 replies: {document, score} items, "title\\ntext" contents, no url', async () => {
    const seen: any[] = [];
    const s = await fakeServer((_, __, res, body) => {
      seen.push(body);
      reply(res, 200, { result: [[{ document: { id: '12', contents: '"Aaron"\nAaron is a prophet.\nHe had a rod.' }, score: 81.5 }, { id: 3, text: 'flat, no title', title: 'Three' }]] });
    });
    const hits = await new RetrievalClient(s.url, { limits: FAST }).search('who is aaron', 5);
    expect(seen).toEqual([{ queries: ['who is aaron'], topk: 5, return_scores: true }]);
    expect(hits).toEqual([
      { id: '12', url: 'corpus://12', title: 'Aaron', contents: 'Aaron is a prophet.\nHe had a rod.', score: 81.5 },
      { id: '3', url: 'corpus://3', title: 'Three', contents: 'flat, no title', score: null },
    ]);
    await s.close();
  });

  it('retries HTTP 500 and succeeds on the third attempt', async () => {
    const s = await fakeServer((n, _, res) => (n <= 2 ? reply(res, 500, { error: 'busy' }) : reply(res, 200, ONE_HIT)));
    const hits = await new RetrievalClient(s.url, { limits: FAST }).search('q', 3);
    expect(hits).toEqual([{ url: 'u', title: 'T', contents: 'text', score: null }]);
    expect(s.requests()).toBe(3);
    await s.close();
  });

  it('fails with a ToolError naming URL, attempts and cause when the server always answers 500', async () => {
    const s = await fakeServer((_, __, res) => reply(res, 500, { error: 'disk on fire' }));
    const err = await new RetrievalClient(s.url, { limits: FAST }).search('q', 3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect(err).toMatchObject({ tool: 'retrieval-server', attempts: 3 });
    expect((err as Error).message).toContain(`POST ${s.url}/retrieve`);
    expect((err as Error).message).toMatch(/failed after 3 attempts: HTTP 500 .*disk on fire/);
    expect(s.requests()).toBe(3);
    await s.close();
  });

  it('retries 429 but not other 4xx', async () => {
    const s = await fakeServer((n, _, res) => (n === 1 ? reply(res, 429, 'slow down') : reply(res, 400, { error: 'topk: bad' })));
    const err = await new RetrievalClient(s.url, { limits: FAST }).search('q', 3).catch((e: unknown) => e);
    expect(err).toMatchObject({ attempts: 2 });
    expect((err as Error).message).toMatch(/HTTP 400 .*topk: bad/);
    expect(s.requests()).toBe(2);
    await s.close();
  });

  it('times out an attempt that sleeps, and retries it', async () => {
    const s = await fakeServer((n, _, res) => setTimeout(() => reply(res, 200, ONE_HIT), n === 1 ? 1000 : 0));
    const started = performance.now();
    const hits = await new RetrievalClient(s.url, { limits: FAST }).search('q', 3);
    expect(hits).toHaveLength(1);
    expect(s.requests()).toBe(2);
    expect(performance.now() - started).toBeLessThan(900);
    await s.close();
  });

  it('gives up after every attempt times out', async () => {
    const s = await fakeServer((_, __, res) => setTimeout(() => reply(res, 200, ONE_HIT), 1000));
    const err = await new RetrievalClient(s.url, { limits: { ...FAST, retries: 1 } }).access('u').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).attempts).toBe(2);
    expect((err as Error).message).toMatch(new RegExp(`POST ${s.url}/access\\): failed after 2 attempts: timed out after 200 ms`));
    await s.close();
  });

  for (const [what, body, message] of [
    ['garbage', 'this is not json{', /unparseable JSON/],
    ['a wrong shape', { results: [] }, /ill-shaped reply .* expected \{"result": \[one entry\]\}/],
    ['items without contents', { result: [[{ title: 'x' }]] }, /ill-shaped reply .* result\[0\]\[0\] has no contents/],
    ['a result that is not a list', { result: ['x'] }, /result\[0\] should be a list/],
  ] as const) {
    it(`retries ${what} from the server, then fails clearly`, async () => {
      const s = await fakeServer((_, __, res) => reply(res, 200, body));
      const err = await new RetrievalClient(s.url, { limits: FAST }).search('q', 3).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ToolError);
      expect((err as ToolError).attempts).toBe(3);
      expect((err as Error).message).toMatch(message);
      expect(s.requests()).toBe(3);
      await s.close();
    });
  }

  it('recovers when garbage is followed by a good reply', async () => {
    const s = await fakeServer((n, _, res) => (n === 1 ? reply(res, 200, '<html>oops</html>') : reply(res, 200, { result: [null] })));
    expect(await new RetrievalClient(s.url, { limits: FAST }).access('https://a.org/')).toBeNull();
    expect(s.requests()).toBe(2);
    await s.close();
  });

  it('refuses a base URL that is not http(s)', () => {
    expect(() => new RetrievalClient('localhost:8000')).toThrow(/must be http\(s\)/);
    expect(() => new RetrievalClient('not a url')).toThrow(/is not a URL/);
  });
});

describe('the CLI', () => {
  const run = promisify(execFile);
  const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, timeout: 60_000 });

  it('index build writes an index Bm25Index opens, and names the bad line of a broken corpus', async () => {
    const out = join(dir, 'cli.db');
    const { stdout } = await cli(['index', 'build', corpus, '--out', out, '--batch', '2']);
    expect(stdout).toMatch(/^indexed 4 documents in [\d.]+ s \(\d+ docs\/s\); wrote .*cli\.db \([\d.]+ MB\)\n$/);
    const built = new Bm25Index(out);
    expect(built.count()).toBe(4);
    expect(built.searchSync('mars', 1)[0]!.id).toBe('d3');
    built.close();
    const broken = join(dir, 'broken.jsonl');
    writeFileSync(broken, `${JSON.stringify(CORPUS[0])}\n{"id": "x"}\n`);
    const err = await cli(['index', 'build', broken, '--out', join(dir, 'broken.db')]).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toMatch(/broken\.jsonl line 2: missing 'contents'/);
  });

  it('serve retrieval prints its URL, serves, and stops on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', 'retrieval', '--index', join(dir, 'index.db'), '--port', '0'], { cwd: ROOT });
    let stdout = '';
    child.stdout.on('data', (c) => (stdout += c));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', () => {
        const m = /at (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`exited with ${code} before serving: ${stdout}`)));
    });
    expect(stdout).toMatch(/\(4 documents\)/);
    const hits = await new RetrievalClient(url, { limits: { ...FAST, timeoutMs: 5000 } }).search('saturn', 2);
    expect(hits.map((h) => h.id)).toEqual(['d4']);
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', resolve);
      child.kill('SIGTERM');
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(/retrieval server stopped/);
  });
});
