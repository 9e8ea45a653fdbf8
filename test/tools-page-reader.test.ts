/**
 * The web page reader (src/tools/page-reader.ts) against a local HTTP server: readable text from HTML,
 * redirects (followed, capped, loops caught), charsets (windows-1252 and Shift_JIS by header and by
 * <meta>), content types, status codes, timeouts, retries, dropped connections, garbage, oversized
 * bodies; and `splitIntoChunks` on hand-built texts and as a property (lossless, bounded).
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeBody, htmlToText, splitIntoChunks, WebPageReader } from '../src/tools/page-reader.ts';
import { ToolError } from '../src/tools/types.ts';
import { reply, startServer, type TestServer } from './fixtures/tools-web/server.ts';

// Generous per-attempt timeout so a loaded machine never turns into extra retries; the timeout test uses its own.
const FAST = { timeoutMs: 2_000, retries: 2, backoffMs: 10 };

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const ARTICLE = `<!doctype html>
<html><head><title>The Spice Trade</title><script>window.tracker = "SCRIPT-TEXT";</script>
<style>body { color: red } .STYLE-TEXT {}</style></head>
<body>
<nav><ul><li><a href="/">NAV-HOME</a></li><li><a href="/about">NAV-ABOUT</a></li><li><a href="/x">NAV-CONTACT</a></li></ul></nav>
<main><article>
<h1>The Spice Trade</h1>
<p>The spice trade involved historical civilizations in Asia, Northeast Africa and Europe. Spices such as cinnamon,
cassia, cardamom, ginger, pepper, nutmeg, star anise, clove and turmeric were known and used in antiquity.</p>
<p>Arab traders dominated the maritime routes for centuries, carrying goods between India, the Persian Gulf and the Red Sea,
and the trade brought wealth, conflict and the exchange of ideas, religions and technologies across continents.</p>
<p>Later, European powers sought direct routes; Vasco da Gama reached Calicut in 1498, which changed the trade for good,
and the Dutch and English East India companies fought for control of the islands where nutmeg and cloves grew.</p>
</article></main>
<footer>FOOTER-TEXT copyright</footer>
<script>console.log("SCRIPT-TWO")</script>
</body></html>`;

describe('HTML pages', () => {
  it('turns an article into readable text without nav, scripts or styles', async () => {
    server = await startServer((_req, res) => reply(res, 200, { 'content-type': 'text/html; charset=utf-8' }, ARTICLE));
    const doc = await new WebPageReader({ limits: FAST }).access(`${server.url}/spice`);
    expect(doc).not.toBeNull();
    expect(doc!.url).toBe(`${server.url}/spice`);
    expect(doc!.title).toBe('The Spice Trade');
    expect(doc!.contents).toContain('The spice trade involved historical civilizations in Asia, Northeast Africa and Europe.');
    expect(doc!.contents).toContain('Vasco da Gama reached Calicut in 1498');
    // paragraphs stay separate, lines inside them are joined
    expect(doc!.contents).toMatch(/used in antiquity\.\n\nArab traders/);
    for (const junk of ['NAV-HOME', 'NAV-ABOUT', 'SCRIPT-TEXT', 'SCRIPT-TWO', 'STYLE-TEXT', 'color: red']) expect(doc!.contents).not.toContain(junk);
  });

  it('falls back to the body text for a page Readability finds nothing in, and copes with fragments', () => {
    expect(htmlToText('<p>just <b>one</b> line</p>')).toEqual({ title: '', text: 'just one line' });
    expect(htmlToText('<title>T</title>hello <br>world')).toEqual({ title: 'T', text: 'hello\nworld' });
    expect(htmlToText('<html><body><script>x()</script></body></html>')).toEqual({ title: '', text: '' });
    expect(htmlToText('<ul>\n <li>one</li>\n <li>two</li>\n</ul><table><tr><th>Born</th><td>1920</td></tr><tr><td>c</td><td>d</td></tr></table>').text).toBe(
      '- one\n- two\n\nBorn | 1920\nc | d',
    );
  });

  it('reads garbage bytes labelled text/html without throwing', async () => {
    let seed = 7;
    const garbage = Uint8Array.from({ length: 20_000 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24) & 0xff);
    garbage.set([0x3c, 0x3c, 0x70, 0x3e, 0x3c, 0x2f], 100); // some '<<p></' in the noise
    server = await startServer((_req, res) => reply(res, 200, { 'content-type': 'text/html' }, garbage));
    const doc = await new WebPageReader({ limits: FAST }).access(`${server.url}/junk`);
    if (doc !== null) expect(doc.contents).not.toMatch(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/); // control characters dropped
  });
});

describe('redirects', () => {
  it('follows 301 → 302 → 200 and records the final URL', async () => {
    server = await startServer((req, res) => {
      if (req.path === '/old') return reply(res, 301, { location: '/middle' }, 'moved');
      if (req.path === '/middle') return reply(res, 302, { location: `${server!.url}/new?x=1` });
      reply(res, 200, { 'content-type': 'text/plain' }, 'arrived');
    });
    const doc = await new WebPageReader({ limits: FAST }).access(`${server.url}/old`);
    expect(doc).toEqual({ url: `${server.url}/new?x=1`, title: `${server.url}/new?x=1`, contents: 'arrived' });
  });

  it('stops a redirect loop with a clear error and does not retry it', async () => {
    server = await startServer((req, res) => reply(res, 301, { location: req.path === '/a' ? '/b' : '/a' }));
    const err = await new WebPageReader({ limits: FAST }).access(`${server.url}/a`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as Error).message).toBe(`web-page: redirect loop: ${server.url}/a → ${server.url}/b → ${server.url}/a`);
    expect(server.requests).toHaveLength(2);
  });

  it('gives up after maxRedirects hops', async () => {
    server = await startServer((req, res) => reply(res, 302, { location: `/r${Number(req.path.slice(2)) + 1}` }));
    await expect(new WebPageReader({ limits: FAST, maxRedirects: 5 }).access(`${server.url}/r0`)).rejects.toThrow(/more than 5 redirects from .*\/r0: .*\/r6$/);
    expect(server.requests).toHaveLength(6);
  });

  it('refuses a redirect whose Location is not a URL, without retrying', async () => {
    server = await startServer((_req, res) => reply(res, 302, { location: 'http://[broken' }));
    await expect(new WebPageReader({ limits: FAST }).access(`${server.url}/`)).rejects.toThrow(/bad redirect from .*: Location "http:\/\/\[broken" is not a URL/);
    expect(server.requests).toHaveLength(1);
  });

  it('refuses a redirect to a non-http scheme', async () => {
    server = await startServer((_req, res) => reply(res, 302, { location: 'file:///etc/passwd' }));
    await expect(new WebPageReader({ limits: FAST }).access(`${server.url}/`)).rejects.toThrow(/only http and https URLs can be read, not file/);
  });
});

describe('charsets', () => {
  // "café “quoted” – naïve" in windows-1252: é=E9, “=93, ”=94, –=96, ï=EF
  const CP1252 = Uint8Array.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x93, 0x71, 0x75, 0x6f, 0x74, 0x65, 0x64, 0x94, 0x20, 0x96, 0x20, 0x6e, 0x61, 0xef, 0x76, 0x65]);
  const CP1252_TEXT = 'café “quoted” – naïve';
  // "日本語のテキスト" in Shift_JIS
  const SJIS = Uint8Array.from([0x93, 0xfa, 0x96, 0x7b, 0x8c, 0xea, 0x82, 0xcc, 0x83, 0x65, 0x83, 0x4c, 0x83, 0x58, 0x83, 0x67]);
  const SJIS_TEXT = '日本語のテキスト';

  const page = (head: string, text: Uint8Array) =>
    Buffer.concat([Buffer.from(`<html><head>${head}<title>t</title></head><body><p>`), text, Buffer.from('</p></body></html>')]);

  const cases: Array<[string, string, Buffer, string]> = [
    ['windows-1252 by header', 'text/html; charset=windows-1252', page('', CP1252), CP1252_TEXT],
    ['iso-8859-1 by header (read as windows-1252, as browsers do)', 'text/html; charset="ISO-8859-1"', page('', CP1252), CP1252_TEXT],
    ['windows-1252 by <meta charset>', 'text/html', page('<meta charset="windows-1252">', CP1252), CP1252_TEXT],
    ['Shift_JIS by header', 'text/html; charset=Shift_JIS', page('', SJIS), SJIS_TEXT],
    ['Shift_JIS by <meta http-equiv>', 'text/html', page('<meta http-equiv="Content-Type" content="text/html; charset=shift_jis">', SJIS), SJIS_TEXT],
    ['windows-1252 text/plain by header', 'text/plain; charset=cp1252', Buffer.from(CP1252), CP1252_TEXT],
  ];
  it.each(cases)('decodes %s', async (_name, contentType, body, expected) => {
    server = await startServer((_req, res) => reply(res, 200, { 'content-type': contentType }, body));
    const doc = await new WebPageReader({ limits: FAST }).access(`${server.url}/p`);
    expect(doc!.contents).toBe(expected);
  });

  it('lets the header win over <meta>, a BOM win over both, and defaults to UTF-8', () => {
    const utf8 = Buffer.from('<meta charset="shift_jis"><p>café</p>');
    expect(decodeBody(utf8, 'utf-8', true)).toContain('café');
    expect(decodeBody(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8]), 'windows-1252', true)).toContain('café');
    expect(decodeBody(Buffer.from('naïve'), null, true)).toBe('naïve');
    expect(decodeBody(Buffer.from('naïve'), 'no-such-charset', true)).toBe('naïve');
    // all of windows-1252's 0x80–0x9F block, not Node 20's ISO-8859-1 C1 controls
    expect(decodeBody(Uint8Array.from([0x80, 0x85, 0x8a, 0x99, 0x9f]), 'windows-1252', false)).toBe('€…Š™Ÿ');
  });
});

describe('content types and status codes', () => {
  it('reads text/plain and application/json as text, whitespace normalised', async () => {
    server = await startServer((req, res) =>
      req.path === '/t'
        ? reply(res, 200, { 'content-type': 'text/plain' }, 'line one   \r\n\r\n\r\n\r\n  line\ttwo  ')
        : reply(res, 200, { 'content-type': 'application/json; charset=utf-8' }, '{"answer": 42}'),
    );
    const reader = new WebPageReader({ limits: FAST });
    expect((await reader.access(`${server.url}/t`))!.contents).toBe('line one\n\nline two');
    expect((await reader.access(`${server.url}/j`))!.contents).toBe('{"answer": 42}');
  });

  it('gives null for images, PDFs and octet-streams', async () => {
    const types: Record<string, string> = { '/img': 'image/png', '/pdf': 'application/pdf', '/bin': 'application/octet-stream' };
    server = await startServer((req, res) => reply(res, 200, { 'content-type': types[req.path] }, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 1])));
    const reader = new WebPageReader({ limits: FAST });
    for (const path of Object.keys(types)) expect(await reader.access(`${server.url}${path}`)).toBeNull();
  });

  it('gives null for 404 and 410 without retrying; a 403 is a permanent ToolError', async () => {
    server = await startServer((req, res) => reply(res, Number(req.path.slice(1)), { 'content-type': 'text/html' }, '<p>nope</p>'));
    const reader = new WebPageReader({ limits: FAST });
    expect(await reader.access(`${server.url}/404`)).toBeNull();
    expect(await reader.access(`${server.url}/410`)).toBeNull();
    const err = await reader.access(`${server.url}/403`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).message).toMatch(/HTTP 403 Forbidden from http:\/\/127\.0\.0\.1:\d+\/403/);
    expect((err as ToolError).attempts).toBe(1);
    expect(server.requests.map((r) => r.path)).toEqual(['/404', '/410', '/403']);
  });

  it('refuses other schemes and invalid URLs without a request', async () => {
    const reader = new WebPageReader({ limits: FAST });
    await expect(reader.access('ftp://example.org/file.txt')).rejects.toThrow(/only http and https URLs can be read, not ftp/);
    await expect(reader.access('file:///etc/passwd')).rejects.toThrow(ToolError);
    await expect(reader.access('not a url')).rejects.toThrow(/not a valid URL: "not a url"/);
    expect(() => new WebPageReader({ limits: { timeoutMs: 0 } })).toThrow(/invalid web-page limits: timeoutMs/);
    expect(() => new WebPageReader({ maxRedirects: -1 })).toThrow(/maxRedirects/);
  });
});

describe('failures and retries', () => {
  it('retries a server slower than the timeout, then fails with a ToolError', async () => {
    server = await startServer((_req, res) => void setTimeout(() => reply(res, 200, { 'content-type': 'text/plain' }, 'late'), 1_000));
    const t0 = Date.now();
    const err = await new WebPageReader({ limits: { ...FAST, timeoutMs: 250 } }).access(`${server.url}/slow`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).message).toBe('web-page: failed after 3 attempts: timed out after 250 ms');
    expect(server.requests).toHaveLength(3);
    expect(Date.now() - t0).toBeLessThan(2_500); // did not wait for the 1 s replies
  });

  it('succeeds after two 500s', async () => {
    let n = 0;
    server = await startServer((_req, res) => (++n <= 2 ? reply(res, 500, {}, 'oops') : reply(res, 200, { 'content-type': 'text/plain' }, 'third time')));
    const doc = await new WebPageReader({ limits: FAST }).access(`${server.url}/flaky`);
    expect(doc!.contents).toBe('third time');
    expect(server.requests).toHaveLength(3);
  });

  it('retries a body cut off mid-way (Content-Length larger than sent), then fails clearly', async () => {
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': '5000' });
      res.write('<html><body><p>' + 'partial '.repeat(50));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const err = await new WebPageReader({ limits: FAST }).access(`${server.url}/cut`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect((err as ToolError).message).toMatch(/^web-page: failed after 3 attempts: connection closed while reading http:\/\/127\.0\.0\.1:\d+\/cut: terminated/);
    expect(server.requests).toHaveLength(3);
  });

  it('cuts an oversized body at maxBytes and says so', async () => {
    const body = 'a'.repeat(900) + 'TAIL'.repeat(1000);
    server = await startServer((_req, res) => reply(res, 200, { 'content-type': 'text/plain' }, body));
    const doc = await new WebPageReader({ limits: { ...FAST, maxBytes: 1000 } }).access(`${server.url}/big`);
    expect(doc!.contents).toBe('a'.repeat(900) + 'TAIL'.repeat(25) + '\n\n[The page was cut: only its first 1000 bytes were read.]');
  });

  it('limits the text to maxChars, note included', async () => {
    server = await startServer((_req, res) => reply(res, 200, { 'content-type': 'text/plain' }, 'x'.repeat(5_000)));
    const doc = await new WebPageReader({ limits: FAST, maxChars: 1_000 }).access(`${server.url}/long`);
    const note = '[The text was cut here: the page is longer than the 1000 characters read.]';
    expect(doc!.contents).toHaveLength(1_000);
    expect(doc!.contents).toBe('x'.repeat(1_000 - note.length - 2) + '\n\n' + note);
  });

  it('keeps at most `concurrency` reads in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    server = await startServer(async (_req, res) => {
      peak = Math.max(peak, ++inFlight);
      await new Promise((r) => setTimeout(r, 100)); // long enough for unlimited reads to overlap even on a loaded machine
      inFlight--;
      reply(res, 200, { 'content-type': 'text/plain' }, 'ok');
    });
    const reader = new WebPageReader({ limits: FAST, concurrency: 3 });
    await Promise.all(Array.from({ length: 8 }, (_, i) => reader.access(`${server!.url}/p${i}`)));
    expect(server.requests).toHaveLength(8);
    expect(peak).toBe(3);
  });
});

describe('splitIntoChunks', () => {
  it('cuts at the last paragraph break near the limit', () => {
    const text = 'a'.repeat(85) + '\n\n' + 'b'.repeat(50); // 137 chars, limit 100: break after "\n\n" at 87
    expect(splitIntoChunks(text, 100, 10)).toEqual(['a'.repeat(85) + '\n\n', 'b'.repeat(50)]);
  });

  it('else at the last sentence end, else a space, else exactly at the limit', () => {
    const sentence = 'w'.repeat(82) + '. ' + 'x'.repeat(6) + ' ' + 'y'.repeat(30); // ". " ends at 84, space at 91
    expect(splitIntoChunks(sentence, 100)).toEqual(['w'.repeat(82) + '. ', 'x'.repeat(6) + ' ' + 'y'.repeat(30)]);
    const words = 'w'.repeat(88) + ' ' + 'z'.repeat(30);
    expect(splitIntoChunks(words, 100)).toEqual(['w'.repeat(88) + ' ', 'z'.repeat(30)]);
    expect(splitIntoChunks('q'.repeat(250), 100)).toEqual(['q'.repeat(100), 'q'.repeat(100), 'q'.repeat(50)]);
    // a paragraph break too early in the window (before 80%) is not used
    expect(splitIntoChunks('c'.repeat(10) + '\n\n' + 'd'.repeat(150), 100)[0]).toHaveLength(100);
  });

  it('returns at most maxChunks chunks, and none for empty text', () => {
    expect(splitIntoChunks('')).toEqual([]);
    expect(splitIntoChunks('short')).toEqual(['short']);
    const chunks = splitIntoChunks('e'.repeat(300_000));
    expect(chunks).toHaveLength(10);
    expect(chunks.every((c) => c.length === 25_000)).toBe(true);
    expect(() => splitIntoChunks('x', 0)).toThrow(RangeError);
    expect(() => splitIntoChunks('x', 10, 0)).toThrow(RangeError);
  });

  it('never splits a surrogate pair at a hard cut', () => {
    const chunks = splitIntoChunks('a' + '😀'.repeat(10), 4);
    expect(chunks.join('')).toBe('a' + '😀'.repeat(10));
    for (const c of chunks) expect(c).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
  });

  it('is lossless and bounded for any text (property)', () => {
    const piece = fc.constantFrom('word', ' ', '. ', '\n', '\n\n', 'é', '😀', '! ', 'x'.repeat(40));
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 120 }).map((p) => p.join('')), fc.integer({ min: 2, max: 60 }), fc.integer({ min: 1, max: 8 }), (text, size, max) => {
        const chunks = splitIntoChunks(text, size, max);
        expect(chunks.length).toBeLessThanOrEqual(max);
        for (const c of chunks) expect(c.length).toBeGreaterThan(0);
        for (const c of chunks) expect(c.length).toBeLessThanOrEqual(size);
        const joined = chunks.join('');
        expect(text.startsWith(joined)).toBe(true);
        if (chunks.length < max) expect(joined).toBe(text);
      }),
    );
  });
});
