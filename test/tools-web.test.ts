/**
 * Web search providers (src/tools/web-search.ts) against a local HTTP server standing in for each API:
 * the exact requests they send (method, path, headers, body or query), how replies become hits, the
 * API-key errors, retries on 5xx, no retries on a refused key, and the in-flight limit. Also the
 * snippet cleaner and the concurrency limiter on their own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ToolError } from '../src/tools/types.ts';
import { ConcurrencyLimit, stripHtml, webSearchBackend } from '../src/tools/web-search.ts';
import { reply, startServer, type TestServer } from './fixtures/tools-web/server.ts';

// A generous per-attempt timeout so a loaded machine never turns into extra retries (request counts are asserted).
const FAST = { timeoutMs: 2_000, retries: 2, backoffMs: 10 };
const json = (res: Parameters<typeof reply>[0], status: number, body: unknown) => reply(res, status, { 'content-type': 'application/json' }, JSON.stringify(body));

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('stripHtml', () => {
  it('removes tags, decodes character references and collapses whitespace', () => {
    expect(stripHtml('The <strong>Dune</strong> novel &amp; film&#39;s  <em>plot</em>\n&quot;x&quot; &#x2014; &hellip;')).toBe(
      'The Dune novel & film\'s plot "x" — …',
    );
  });
  it('keeps a lone < and unknown entities', () => {
    expect(stripHtml('a < b and 3<4 &bogus; &#xD800;')).toBe('a < b and 3<4 &bogus; &#xD800;');
  });
});

describe('Serper', () => {
  it('POSTs {q, num} to /search with X-API-KEY and maps organic[] to hits', async () => {
    server = await startServer((_req, res) =>
      json(res, 200, {
        searchParameters: { q: 'dune author' },
        organic: [
          { title: 'Frank Herbert - Wikipedia', link: 'https://en.wikipedia.org/wiki/Frank_Herbert', snippet: 'Franklin Patrick Herbert Jr. was an American science&#8209;fiction author &amp; journalist.', position: 1 },
          { title: 'No link here', snippet: 'dropped' },
          { title: 'Dune (novel)', link: 'https://en.wikipedia.org/wiki/Dune_(novel)', snippet: '<b>Dune</b> is a 1965 novel.' },
          { title: 'Third', link: 'https://example.org/3', snippet: 'beyond topK' },
        ],
      }),
    );
    const serper = webSearchBackend('serper', { baseUrl: server.url, env: { SERPER_API_KEY: 'sk-test' }, limits: FAST });
    expect(serper.name).toBe('serper');
    const hits = await serper.search('dune author', 2);

    expect(server.requests).toHaveLength(1);
    const req = server.requests[0];
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/search');
    expect(req.headers['x-api-key']).toBe('sk-test');
    expect(req.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req.body)).toEqual({ q: 'dune author', num: 2 });

    expect(hits).toEqual([
      { url: 'https://en.wikipedia.org/wiki/Frank_Herbert', title: 'Frank Herbert - Wikipedia', contents: 'Franklin Patrick Herbert Jr. was an American science‑fiction author & journalist.', score: null },
      { url: 'https://en.wikipedia.org/wiki/Dune_(novel)', title: 'Dune (novel)', contents: 'Dune is a 1965 novel.', score: null },
    ]);
  });

  it('gives [] for a reply without results', async () => {
    server = await startServer((_req, res) => json(res, 200, { searchParameters: {} }));
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'k', limits: FAST });
    expect(await serper.search('nothing', 5)).toEqual([]);
  });

  it('retries a 500 and succeeds on the third attempt', async () => {
    let n = 0;
    server = await startServer((_req, res) => (++n <= 2 ? json(res, 500, { message: 'busy' }) : json(res, 200, { organic: [{ title: 't', link: 'https://x.org', snippet: 's' }] })));
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'k', limits: FAST });
    expect(await serper.search('q', 1)).toEqual([{ url: 'https://x.org', title: 't', contents: 's', score: null }]);
    expect(server.hits('/search')).toBe(3);
  });

  it('fails with a ToolError after 1 + retries attempts of 503', async () => {
    server = await startServer((_req, res) => json(res, 503, { message: 'down' }));
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'k', limits: FAST });
    const err = await serper.search('q', 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).attempts).toBe(3);
    expect((err as ToolError).message).toMatch(/failed after 3 attempts: HTTP 503/);
    expect(server.hits('/search')).toBe(3);
  });

  it('times out a slow API, retries, then fails with a ToolError', async () => {
    server = await startServer((_req, res) => void setTimeout(() => json(res, 200, { organic: [] }), 1_000));
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'k', limits: { timeoutMs: 200, retries: 1, backoffMs: 10 } });
    await expect(serper.search('q', 1)).rejects.toThrow(/^serper: failed after 2 attempts: timed out after 200 ms$/);
    expect(server.hits('/search')).toBe(2);
  });

  it('treats 401 as a refused key: permanent, one request, names the env var', async () => {
    server = await startServer((_req, res) => json(res, 401, { message: 'Unauthorized.' }));
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'bad', limits: FAST });
    const err = await serper.search('q', 3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).attempts).toBe(1);
    expect((err as ToolError).message).toMatch(/API key was refused.*HTTP 401.*SERPER_API_KEY/);
    expect(server.hits('/search')).toBe(1);
  });

  it('rejects an empty query and a bad topK without a request', async () => {
    server = await startServer((_req, res) => json(res, 200, {}));
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'k', limits: FAST });
    await expect(serper.search('  ', 3)).rejects.toThrow(/empty query/);
    await expect(serper.search('q', 0)).rejects.toThrow(/topK must be an integer ≥ 1/);
    expect(server.requests).toHaveLength(0);
  });

  it('keeps at most `concurrency` searches in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    server = await startServer(async (_req, res) => {
      peak = Math.max(peak, ++inFlight);
      await new Promise((r) => setTimeout(r, 100)); // long enough for unlimited requests to overlap even on a loaded machine
      inFlight--;
      json(res, 200, { organic: [] });
    });
    const serper = webSearchBackend('serper', { baseUrl: server.url, apiKey: 'k', limits: FAST, concurrency: 2 });
    await Promise.all(Array.from({ length: 7 }, (_, i) => serper.search(`q${i}`, 1)));
    expect(server.hits('/search')).toBe(7);
    expect(peak).toBe(2);
  });
});

describe('Brave', () => {
  it('GETs /res/v1/web/search?q=…&count=k with X-Subscription-Token and maps web.results[]', async () => {
    server = await startServer((_req, res) =>
      json(res, 200, {
        type: 'search',
        web: {
          results: [
            { title: 'Frank <strong>Herbert</strong>', url: 'https://en.wikipedia.org/wiki/Frank_Herbert', description: 'American author of <strong>Dune</strong> &#x27;65.' },
            { title: 'Second', url: 'https://example.org/2', description: 'two' },
          ],
        },
      }),
    );
    const brave = webSearchBackend('brave', { baseUrl: server.url + '/', env: { BRAVE_API_KEY: 'brv' }, limits: FAST });
    const hits = await brave.search('dune & author', 30);

    const req = server.requests[0];
    expect(req.method).toBe('GET');
    const url = new URL(req.path, server.url);
    expect(url.pathname).toBe('/res/v1/web/search');
    expect(url.searchParams.get('q')).toBe('dune & author');
    expect(url.searchParams.get('count')).toBe('20'); // Brave's maximum
    expect(req.headers['x-subscription-token']).toBe('brv');
    expect(req.headers.accept).toBe('application/json');

    expect(hits).toEqual([
      { url: 'https://en.wikipedia.org/wiki/Frank_Herbert', title: 'Frank Herbert', contents: "American author of Dune '65.", score: null },
      { url: 'https://example.org/2', title: 'Second', contents: 'two', score: null },
    ]);
  });

  it('gives [] when the reply has no `web` section', async () => {
    server = await startServer((_req, res) => json(res, 200, { type: 'search', query: { original: 'zzz' } }));
    const brave = webSearchBackend('brave', { baseUrl: server.url, apiKey: 'k', limits: FAST });
    expect(await brave.search('zzz', 5)).toEqual([]);
  });

  it('treats 403 as a refused key naming BRAVE_API_KEY, without retrying', async () => {
    server = await startServer((_req, res) => json(res, 403, { error: 'forbidden' }));
    const brave = webSearchBackend('brave', { baseUrl: server.url, apiKey: 'k', limits: FAST });
    await expect(brave.search('q', 3)).rejects.toThrow(/API key was refused.*BRAVE_API_KEY/);
    expect(server.requests).toHaveLength(1);
  });
});

describe('Tavily', () => {
  it('POSTs {query, max_results} with a bearer key and keeps its scores', async () => {
    server = await startServer((_req, res) =>
      json(res, 200, { query: 'q', results: [{ title: 'A', url: 'https://a.org', content: 'alpha', score: 0.91 }, { title: 'B', url: 'https://b.org', content: 'beta' }] }),
    );
    const tavily = webSearchBackend('tavily', { baseUrl: server.url, env: { TAVILY_API_KEY: 'tvly-1' }, limits: FAST });
    const hits = await tavily.search('q', 4);
    const req = server.requests[0];
    expect([req.method, req.path, req.headers.authorization]).toEqual(['POST', '/search', 'Bearer tvly-1']);
    expect(JSON.parse(req.body)).toEqual({ query: 'q', max_results: 4 });
    expect(hits).toEqual([
      { url: 'https://a.org', title: 'A', contents: 'alpha', score: 0.91 },
      { url: 'https://b.org', title: 'B', contents: 'beta', score: null },
    ]);
  });
});

describe('configuration', () => {
  it.each([
    ['serper', 'SERPER_API_KEY'],
    ['brave', 'BRAVE_API_KEY'],
    ['tavily', 'TAVILY_API_KEY'],
  ] as const)('%s without a key names %s', (provider, envVar) => {
    expect(() => webSearchBackend(provider, { env: {} })).toThrow(new RegExp(`set ${envVar}`));
    expect(() => webSearchBackend(provider, { env: { [envVar]: '   ' } })).toThrow(new RegExp(envVar));
  });

  it('rejects unknown providers and bad options with the field named', () => {
    expect(() => webSearchBackend('bing' as never, { apiKey: 'k' })).toThrow(/unknown web search provider 'bing'.*serper, brave, tavily/);
    expect(() => webSearchBackend('serper', { apiKey: 'k', baseUrl: 'not a url' })).toThrow(/baseUrl/);
    expect(() => webSearchBackend('serper', { apiKey: 'k', concurrency: 0 })).toThrow(/concurrency/);
    expect(() => webSearchBackend('serper', { apiKey: 'k', limits: { retries: -1 } })).toThrow(/invalid serper options: limits\.retries/);
  });
});

describe('ConcurrencyLimit', () => {
  it('runs waiters in FIFO order and lets an aborted waiter leave the queue', async () => {
    const gate = new ConcurrencyLimit(1);
    const order: string[] = [];
    let release!: () => void;
    const first = gate.run(() => new Promise<void>((r) => (release = r)).then(() => void order.push('a')));
    const ctl = new AbortController();
    const aborted = gate.run(async () => void order.push('never'), ctl.signal);
    const third = gate.run(async () => void order.push('c'));
    ctl.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    expect(gate.running).toBe(1);
    release();
    await Promise.all([first, third]);
    expect(order).toEqual(['a', 'c']);
    expect(gate.running).toBe(0);
  });

  it('frees the slot when a task throws', async () => {
    const gate = new ConcurrencyLimit(1);
    await expect(gate.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.run(async () => 42)).toBe(42);
    expect(() => new ConcurrencyLimit(0)).toThrow(RangeError);
  });
});
