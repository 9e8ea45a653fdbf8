/**
 * The on-disk LRU page cache (src/tools/page-cache.ts) on real SQLite files: eviction order under a
 * byte budget, `get` refreshing recency, replacement of a page, pages too big for the budget,
 * persistence (pages and their order) across reopening, a smaller budget on reopen; and
 * CachedPageReader in front of a WebPageReader and a local server, counting the server's hits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CachedPageReader, PageCache, pageCacheEntryBytes } from '../src/tools/page-cache.ts';
import { WebPageReader } from '../src/tools/page-reader.ts';
import type { ToolDoc } from '../src/tools/types.ts';
import { reply, startServer, type TestServer } from './fixtures/tools-web/server.ts';

let dir: string;
let file: string;
let server: TestServer | undefined;
const open: PageCache[] = [];
const cacheAt = (maxBytes: number) => {
  const c = new PageCache(file, { maxBytes });
  open.push(c);
  return c;
};

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'agentrl-page-cache-'));
  file = path.join(dir, 'pages.sqlite');
});
afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  await server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** Pages of equal size: url 'u0'…'u9' (2 bytes) and 100 characters of contents. */
const page = (i: number, fill = 'x'): [string, ToolDoc] => [`u${i}`, { url: `u${i}`, title: `t${i}`, contents: fill.repeat(100) }];
const ENTRY = pageCacheEntryBytes(...page(0));

describe('PageCache', () => {
  it('counts url + JSON bytes per page', () => {
    // {"url":"u0","title":"t0","contents":"x…x"} is 39 + 100 bytes, plus 2 for the url
    expect(ENTRY).toBe(141);
    const cache = cacheAt(10_000);
    cache.set(...page(0));
    expect([cache.size, cache.bytes]).toEqual([1, 141]);
    expect(cache.get('u0')).toEqual(page(0)[1]);
    expect(cache.get('missing')).toBeUndefined();
  });

  it('evicts the least recently used pages to stay within the byte budget; get refreshes recency', () => {
    const cache = cacheAt(3 * ENTRY + 10); // room for three pages
    cache.set(...page(1));
    cache.set(...page(2));
    cache.set(...page(3));
    expect(cache.urls()).toEqual(['u1', 'u2', 'u3']);
    expect(cache.get('u1')).toBeDefined(); // u1 is now the most recent: u2 is next to go
    cache.set(...page(4));
    expect(cache.urls()).toEqual(['u3', 'u1', 'u4']);
    expect(cache.get('u2')).toBeUndefined();
    cache.set(...page(5));
    cache.set(...page(6));
    expect(cache.urls()).toEqual(['u4', 'u5', 'u6']);
    expect([cache.size, cache.bytes]).toEqual([3, 3 * ENTRY]);
  });

  it('evicts as many pages as a big insert needs', () => {
    const cache = cacheAt(4 * ENTRY);
    for (let i = 1; i <= 4; i++) cache.set(...page(i));
    const [url, doc] = page(9, 'yyy'); // 2 + 39 + 300 = 341 bytes: three pages must go
    expect(cache.set(url, doc)).toBe(true);
    expect(cache.urls()).toEqual(['u4', 'u9']);
    expect(cache.bytes).toBe(ENTRY + 341);
  });

  it('replaces a page in place, keeping the byte count right', () => {
    const cache = cacheAt(10_000);
    cache.set(...page(1));
    cache.set(...page(2));
    cache.set('u1', { url: 'u1', title: 'new', contents: 'short' });
    expect(cache.urls()).toEqual(['u2', 'u1']);
    expect(cache.get('u1')!.title).toBe('new');
    expect(cache.bytes).toBe(ENTRY + pageCacheEntryBytes('u1', { url: 'u1', title: 'new', contents: 'short' }));
    expect(cache.delete('u2')).toBe(true);
    expect(cache.size).toBe(1);
  });

  it('does not store a page larger than the whole budget (and drops an older copy)', () => {
    const cache = cacheAt(ENTRY);
    cache.set(...page(1));
    expect(cache.set('u1', { url: 'u1', title: 't1', contents: 'z'.repeat(500) })).toBe(false);
    expect(cache.get('u1')).toBeUndefined();
    expect([cache.size, cache.bytes]).toEqual([0, 0]);
  });

  it('keeps pages and their recency order across reopening, and applies a smaller budget on open', () => {
    const first = cacheAt(10 * ENTRY);
    for (let i = 1; i <= 4; i++) first.set(...page(i));
    first.get('u1');
    first.close();
    open.splice(0);

    const second = cacheAt(10 * ENTRY);
    expect(second.urls()).toEqual(['u2', 'u3', 'u4', 'u1']);
    expect(second.get('u3')).toEqual(page(3)[1]);
    second.close();
    open.splice(0);

    const small = cacheAt(2 * ENTRY); // u2 and u4 are the least recent now
    expect(small.urls()).toEqual(['u1', 'u3']);
    expect([small.size, small.bytes]).toEqual([2, 2 * ENTRY]);
  });

  it('rejects a bad budget and names an unopenable path', () => {
    expect(() => new PageCache(':memory:', { maxBytes: 0 })).toThrow(/maxBytes must be a positive integer/);
    expect(() => new PageCache(path.join(dir, 'no', 'such', 'dir', 'c.sqlite'))).toThrow(/cannot open the page cache at .*c\.sqlite/);
  });
});

describe('CachedPageReader', () => {
  it('serves a page from the cache after the first read, across reopening', async () => {
    server = await startServer((req, res) =>
      req.path === '/gone' ? reply(res, 404, {}) : reply(res, 200, { 'content-type': 'text/plain' }, `page at ${req.path}`),
    );
    const reader = new WebPageReader({ limits: { timeoutMs: 2_000, retries: 0, backoffMs: 10 } });
    const cached = new CachedPageReader(reader, cacheAt(1_000_000));
    expect(cached.name).toBe('web-page');

    const a1 = await cached.access(`${server.url}/a`);
    const a2 = await cached.access(`${server.url}/a`);
    expect(a1).toEqual({ url: `${server.url}/a`, title: `${server.url}/a`, contents: 'page at /a' });
    expect(a2).toEqual(a1);
    expect(server.hits('/a')).toBe(1);

    // nulls (404) are not cached: each access asks again
    expect(await cached.access(`${server.url}/gone`)).toBeNull();
    expect(await cached.access(`${server.url}/gone`)).toBeNull();
    expect(server.hits('/gone')).toBe(2);

    open[0].close();
    open.splice(0);
    const reopened = new CachedPageReader(reader, cacheAt(1_000_000));
    expect(await reopened.access(`${server.url}/a`)).toEqual(a1);
    expect(server.hits('/a')).toBe(1);
  });

  it('does not cache failures', async () => {
    let n = 0;
    server = await startServer((_req, res) => (++n === 1 ? reply(res, 500, {}) : reply(res, 200, { 'content-type': 'text/plain' }, 'recovered')));
    const cache = cacheAt(1_000_000);
    const cached = new CachedPageReader(new WebPageReader({ limits: { timeoutMs: 2_000, retries: 0, backoffMs: 10 } }), cache);
    await expect(cached.access(`${server.url}/p`)).rejects.toThrow(/HTTP 500/);
    expect(cache.size).toBe(0);
    expect((await cached.access(`${server.url}/p`))!.contents).toBe('recovered');
    expect(await cached.access(`${server.url}/p`)).not.toBeNull();
    expect(server.hits('/p')).toBe(2);
  });
});
