/**
 * Reading a web page as text for the search agent: fetch (http/https only, at most 5 redirects, the
 * final URL recorded), decode with the page's charset, turn HTML into readable text (Readability over
 * a linkedom DOM), and bound everything: body bytes (ToolLimits.maxBytes), text length (250,000
 * characters, as ASearcher reads page[:250000]), time and retries (callWithRetries), and pages in
 * flight (10, as ASearcher). `splitIntoChunks` cuts the text into the ≤ 10 chunks of ≤ 25,000
 * characters that the agent reads one at a time.
 *
 * Outcomes: a ToolDoc; null for an unknown page (404/410) or a content type that is not text (images,
 * PDF, octet-stream); a ToolError for anything else after retries (5xx, timeouts, dropped connections
 * are retried; other 4xx, bad schemes and redirect loops are not).
 */
import { Readability } from '@mozilla/readability';
import { parseHTML } from 'linkedom';
import { callWithRetries, PermanentToolError, readCapped } from './retry.ts';
import { ToolError, type PageReader, type ToolDoc, type ToolLimits } from './types.ts';
import { ConcurrencyLimit, resolveLimits } from './web-search.ts';

// ------------------------------------------------------------------ chunking

/**
 * Split `text` into at most `maxChunks` consecutive chunks of at most `chunkChars` characters each;
 * text beyond them is dropped. Each cut is placed at the last paragraph break in the final fifth of
 * the window, else the last sentence end or line break there, else the last space there, else exactly
 * at the limit (never inside a surrogate pair). Chunks are not trimmed: joined they give back the
 * covered prefix of `text` exactly.
 */
export function splitIntoChunks(text: string, chunkChars = 25_000, maxChunks = 10): string[] {
  if (!Number.isInteger(chunkChars) || chunkChars < 2) throw new RangeError(`chunkChars must be an integer ≥ 2, got ${chunkChars}`);
  if (!Number.isInteger(maxChunks) || maxChunks < 1) throw new RangeError(`maxChunks must be an integer ≥ 1, got ${maxChunks}`);
  const chunks: string[] = [];
  let start = 0;
  while (start < text.length && chunks.length < maxChunks) {
    const limit = start + chunkChars;
    if (limit >= text.length) {
      chunks.push(text.slice(start));
      break;
    }
    const end = breakPoint(text, start + Math.floor(chunkChars * 0.8), limit);
    chunks.push(text.slice(start, end));
    start = end;
  }
  return chunks;
}

/** Where to cut text that must end by `limit` (exclusive), preferring a natural break at or after `from`. */
function breakPoint(text: string, from: number, limit: number): number {
  const window = text.slice(from, limit);
  const para = window.lastIndexOf('\n\n');
  if (para >= 0) return from + para + 2;
  let best = -1;
  for (const m of window.matchAll(/[.!?。！？]["'”’)\]]*\s|\n/g)) best = m.index + m[0].length;
  if (best > 0) return from + best;
  const space = window.search(/\s\S*$/);
  if (space >= 0) return from + space + 1;
  const code = text.charCodeAt(limit - 1);
  return code >= 0xd800 && code <= 0xdbff ? limit - 1 : limit;
}

// ------------------------------------------------------------------ charsets

// Node 20's TextDecoder decodes windows-1252 as ISO-8859-1 (0x80–0x9F become C1 controls instead of
// € ‚ ƒ „ … “ ” and so on), so that one is decoded by table here.
const CP1252_HIGH = '€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8dŽ\x8f\x90‘’“”•–—˜™š›œ\x9džŸ';

function decodeWindows1252(bytes: Uint8Array): string {
  return new TextDecoder('windows-1252').decode(bytes).replace(/[\x80-\x9f]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
}

/** The WHATWG encoding name for a charset label, or null when unknown. */
function encodingFor(label: string | undefined | null): string | null {
  if (!label) return null;
  try {
    return new TextDecoder(label.trim()).encoding;
  } catch {
    return null;
  }
}

function bomEncoding(bytes: Uint8Array): string | null {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return 'utf-8';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  return null;
}

/** A charset declared inside the document: <meta charset>, <meta http-equiv … charset=>, or an XML declaration. */
function sniffDeclaredCharset(bytes: Uint8Array): string | null {
  const head = String.fromCharCode(...bytes.subarray(0, 4096)); // ASCII-compatible view is enough to match tags
  const meta = /<meta\b[^>]*?charset\s*=\s*["']?\s*([-\w.:]+)/i.exec(head);
  const xml = /^\s*<\?xml\b[^>]*?encoding\s*=\s*["']([-\w.:]+)["']/i.exec(head);
  const enc = encodingFor(meta?.[1] ?? xml?.[1]);
  // A document that can be read as ASCII to find its meta tag is not UTF-16 (the HTML spec's rule).
  return enc?.startsWith('utf-16') ? 'utf-8' : enc;
}

/** Decode a body: BOM, else the Content-Type charset, else (HTML) a declared charset, else UTF-8. */
export function decodeBody(bytes: Uint8Array, headerCharset: string | null, sniff: boolean): string {
  const enc = bomEncoding(bytes) ?? encodingFor(headerCharset) ?? (sniff ? sniffDeclaredCharset(bytes) : null) ?? 'utf-8';
  if (enc === 'windows-1252') return decodeWindows1252(bytes);
  return new TextDecoder(enc).decode(bytes); // non-fatal: bad bytes become U+FFFD
}

// ------------------------------------------------------------------ HTML to text

const SKIP = new Set(['script', 'style', 'noscript', 'template', 'svg', 'iframe', 'head', 'object', 'embed', 'canvas', 'select', 'button']);
const BLOCK = new Set([
  'address', 'article', 'aside', 'blockquote', 'dd', 'details', 'div', 'dl', 'dt', 'fieldset', 'figcaption', 'figure', 'footer',
  'form', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr', 'li', 'main', 'nav', 'ol', 'p', 'pre', 'section', 'summary', 'table',
  'tbody', 'thead', 'tfoot', 'tr', 'ul', 'caption',
]);

interface DomNode {
  nodeType: number;
  nodeValue?: string | null;
  localName?: string;
  childNodes?: ArrayLike<DomNode>;
}

/**
 * Text of a DOM subtree: block elements as paragraphs (blank line between), list items and table rows
 * on their own lines, list items with "- ", table cells separated by " | ", <br> as a line break.
 */
function domText(root: DomNode): string {
  const out: string[] = [];
  let pending = 0; // line breaks owed before the next text; adjacent block edges share them
  const brk = (n: number) => void (pending = Math.max(pending, n));
  const emit = (s: string) => {
    if (pending > 0 && out.length > 0) out.push('\n'.repeat(pending));
    pending = 0;
    out.push(s);
  };
  const cells: number[] = []; // cells seen so far in each open table row
  const walk = (node: DomNode) => {
    if (node.nodeType === 3) {
      const t = (node.nodeValue ?? '').replace(/\s+/g, ' ');
      if (t !== ' ' || pending === 0) emit(t);
      return;
    }
    if (node.nodeType !== 1 && node.nodeType !== 9 && node.nodeType !== 11) return;
    const tag = (node.localName ?? '').toLowerCase();
    if (SKIP.has(tag)) return;
    if (tag === 'br') return brk(1);
    const lineLike = tag === 'li' || tag === 'tr' || tag === 'dt' || tag === 'dd';
    const block = BLOCK.has(tag);
    if (block) brk(lineLike ? 1 : 2);
    if (tag === 'li') emit('- ');
    if (tag === 'tr') cells.push(0);
    if ((tag === 'td' || tag === 'th') && cells.length > 0 && cells[cells.length - 1]++ > 0) emit(' | ');
    const kids = node.childNodes ?? [];
    for (let i = 0; i < kids.length; i++) walk(kids[i]);
    if (tag === 'tr') cells.pop();
    if (block) brk(lineLike ? 1 : 2);
  };
  walk(root);
  return out.join('');
}

/** Drop control characters, collapse spaces within lines, trim lines, keep at most one blank line between paragraphs. */
export function normalizeWhitespace(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '') // control characters (binary noise) carry nothing
    .replace(/[^\S\n]+/g, ' ')
    .replace(/ ?\n ?/g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/**
 * linkedom keeps whatever element comes first as the document element, so markup without a proper
 * <html><body> (fragments, garbage) is rebuilt into one before Readability sees it.
 */
function parseDocument(html: string) {
  const doc = parseHTML(html).document;
  if (doc.documentElement?.localName === 'html' && doc.body && doc.body.childNodes.length > 0) return doc;
  const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(html)?.[1] ?? '';
  const body = html
    .replace(/<head[\s>][\s\S]*?<\/head>/i, '')
    .replace(/<title[^>]*>[\s\S]*?<\/title>/gi, '')
    .replace(/<!doctype[^>]*>|<\/?(html|head|body)\b[^>]*>/gi, '');
  return parseHTML(`<!doctype html><html><head><title>${title}</title></head><body>${body}</body></html>`).document;
}

/** Readable text of an HTML page: Readability's article, else the body's text. */
export function htmlToText(html: string): { title: string; text: string } {
  let title = '';
  try {
    const article = new Readability(parseDocument(html) as unknown as ConstructorParameters<typeof Readability>[0]).parse();
    if (article?.content) {
      const text = normalizeWhitespace(domText(parseDocument(article.content) as unknown as DomNode));
      title = normalizeWhitespace(article.title ?? '');
      if (text) return { title, text };
    }
  } catch {
    // Readability can throw on odd DOMs; the plain body text below still works.
  }
  const doc = parseDocument(html);
  title ||= normalizeWhitespace(doc.title ?? '');
  return { title, text: normalizeWhitespace(domText((doc.body ?? doc) as unknown as DomNode)) };
}

// ------------------------------------------------------------------ the reader

type Kind = 'html' | 'text' | null;

function contentKind(mime: string, bytes?: Uint8Array): Kind {
  if (mime === 'text/html' || mime === 'application/xhtml+xml') return 'html';
  if (['text/plain', 'text/markdown', 'text/x-markdown', 'text/csv', 'application/json'].includes(mime) || mime.endsWith('+json')) return 'text';
  if (mime === '' && bytes) {
    // No Content-Type: HTML if it looks like HTML, text if it has no NUL bytes, else not readable.
    const head = String.fromCharCode(...bytes.subarray(0, 512));
    if (/^\s*(\ufeff|\xef\xbb\xbf)?\s*<(!doctype html|html|head|body)\b/i.test(head)) return 'html';
    return head.includes('\0') ? null : 'text';
  }
  return null;
}

function parseContentType(header: string | null): { mime: string; charset: string | null } {
  const [mime = '', ...params] = (header ?? '').split(';');
  const charset = params.map((p) => /^\s*charset\s*=\s*"?([^";]+)"?/i.exec(p)?.[1]).find(Boolean) ?? null;
  return { mime: mime.trim().toLowerCase(), charset };
}

function checkScheme(url: URL, original: string): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PermanentToolError(`cannot read ${JSON.stringify(original)}: only http and https URLs can be read, not ${url.protocol.slice(0, -1)}`);
  }
}

export interface WebPageReaderOptions {
  limits?: Partial<ToolLimits>;
  /** Page reads in flight at once (ASearcher: 10). */
  concurrency?: number;
  /** Redirects followed before giving up (default 5). */
  maxRedirects?: number;
  /** Longest readable text returned, in characters (default 250,000, as ASearcher). */
  maxChars?: number;
  userAgent?: string;
}

export class WebPageReader implements PageReader {
  readonly name = 'web-page';
  private readonly limits: ToolLimits;
  private readonly gate: ConcurrencyLimit;
  private readonly maxRedirects: number;
  private readonly maxChars: number;
  private readonly userAgent: string;

  constructor(opts: WebPageReaderOptions = {}) {
    this.limits = resolveLimits(this.name, opts.limits);
    this.gate = new ConcurrencyLimit(opts.concurrency ?? 10);
    this.maxRedirects = opts.maxRedirects ?? 5;
    this.maxChars = opts.maxChars ?? 250_000;
    this.userAgent = opts.userAgent ?? 'Mozilla/5.0 (compatible; agentrl-page-reader/0.1)';
    if (!Number.isInteger(this.maxRedirects) || this.maxRedirects < 0) throw new RangeError(`maxRedirects must be an integer ≥ 0, got ${this.maxRedirects}`);
    if (!Number.isInteger(this.maxChars) || this.maxChars < 200) throw new RangeError(`maxChars must be an integer ≥ 200, got ${this.maxChars}`);
  }

  async access(url: string, signal?: AbortSignal): Promise<ToolDoc | null> {
    let parsed: URL;
    try {
      parsed = new URL(url);
      checkScheme(parsed, url);
    } catch (e) {
      const msg = e instanceof PermanentToolError ? e.message : `not a valid URL: ${JSON.stringify(url)}`;
      throw new ToolError(`${this.name}: ${msg}`, this.name, 0, { cause: e });
    }
    return this.gate.run(() => callWithRetries(this.name, this.limits, (s) => this.readOnce(parsed, s), signal), signal);
  }

  /** One attempt: follow redirects by hand (to cap them, catch loops and check each hop's scheme), then read. */
  private async readOnce(start: URL, signal: AbortSignal): Promise<ToolDoc | null> {
    const chain = [start.href];
    let url = start;
    for (;;) {
      let res: Response;
      try {
        res = await fetch(url, {
          redirect: 'manual',
          signal,
          headers: { 'user-agent': this.userAgent, accept: 'text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5' },
        });
      } catch (e) {
        if (signal.aborted) throw e;
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        throw new Error(`request to ${url.href} failed: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
      }
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel().catch(() => undefined);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new PermanentToolError(`bad redirect from ${url.href}: Location ${JSON.stringify(location)} is not a URL`);
        }
        checkScheme(next, next.href);
        if (chain.includes(next.href)) throw new PermanentToolError(`redirect loop: ${[...chain, next.href].join(' → ')}`);
        chain.push(next.href);
        if (chain.length - 1 > this.maxRedirects) throw new PermanentToolError(`more than ${this.maxRedirects} redirects from ${start.href}: ${chain.join(' → ')}`);
        url = next;
        continue;
      }
      return this.readResponse(res, url.href);
    }
  }

  private async readResponse(res: Response, url: string): Promise<ToolDoc | null> {
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      if (res.status === 404 || res.status === 410) return null;
      const msg = `HTTP ${res.status} ${res.statusText} from ${url}`;
      if (res.status >= 500 || res.status === 408 || res.status === 429) throw new Error(msg);
      throw new PermanentToolError(msg);
    }
    const { mime, charset } = parseContentType(res.headers.get('content-type'));
    if (mime !== '' && contentKind(mime) === null) {
      await res.body?.cancel().catch(() => undefined);
      return null;
    }
    let body: { bytes: Uint8Array; truncated: boolean };
    try {
      body = await readCapped(res, this.limits.maxBytes);
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause;
      throw new Error(`connection closed while reading ${url}: ${(e as Error).message}${cause?.message ? ` (${cause.message})` : ''}`);
    }
    const kind = contentKind(mime, body.bytes);
    if (kind === null) return null;
    const decoded = decodeBody(body.bytes, charset, kind === 'html');
    let { title, text } = kind === 'html' ? htmlToText(decoded) : { title: '', text: normalizeWhitespace(decoded) };
    const notes: string[] = [];
    if (body.truncated) notes.push(`[The page was cut: only its first ${this.limits.maxBytes} bytes were read.]`);
    const noteChars = () => notes.reduce((n, note) => n + note.length + 2, 0);
    if (text.length + noteChars() > this.maxChars) {
      notes.push(`[The text was cut here: the page is longer than the ${this.maxChars} characters read.]`);
      text = text.slice(0, this.maxChars - noteChars()).replace(/[\ud800-\udbff]$/, '');
    }
    const contents = [text, ...notes].filter(Boolean).join('\n\n');
    return { url, title: title || url, contents };
  }
}
