/**
 * A bounded on-disk LRU cache of read pages (ASearcher keeps one so that rollouts re-reading a page do
 * not fetch it again). Pages live in SQLite; the total size of url + JSON document is held under a byte
 * budget by evicting the least recently used pages on insert, and `get` refreshes recency. Recency is a
 * counter stored with each row (not a clock), so the order survives reopening and is exact within a
 * millisecond; WAL mode and a busy timeout let several processes share one cache file.
 *
 * `CachedPageReader` consults the cache before its reader and stores every page read successfully.
 * Nulls (404/410, not a text page) are not cached: a persistent cache has no expiry, a 404 can be a
 * passing fault, and asking again costs one request without a body.
 */
import Database from 'better-sqlite3';
import type { PageReader, ToolDoc } from './types.ts';

export interface PageCacheOptions {
  /** Byte budget for url + JSON document over all pages (default 1 GiB). */
  maxBytes?: number;
}

/** Bytes a page counts against the budget. */
export function pageCacheEntryBytes(url: string, doc: ToolDoc): number {
  return Buffer.byteLength(url) + Buffer.byteLength(JSON.stringify(doc));
}

export class PageCache {
  readonly maxBytes: number;
  private readonly db: Database.Database;
  private readonly stmts;

  /** `path` is a file (created if absent) or ':memory:'. */
  constructor(path: string, opts: PageCacheOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 2 ** 30;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) throw new RangeError(`page cache maxBytes must be a positive integer, got ${this.maxBytes}`);
    try {
      this.db = new Database(path);
    } catch (e) {
      throw new Error(`cannot open the page cache at ${path}: ${(e as Error).message}`, { cause: e });
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    // The running byte total is kept by triggers, so it stays right whoever writes the file.
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS pages (url TEXT PRIMARY KEY, doc TEXT NOT NULL, bytes INTEGER NOT NULL, used INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS pages_used ON pages(used);
      CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL, pages INTEGER NOT NULL);
      INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
      CREATE TRIGGER IF NOT EXISTS pages_ins AFTER INSERT ON pages BEGIN UPDATE totals SET bytes = bytes + NEW.bytes, pages = pages + 1; END;
      CREATE TRIGGER IF NOT EXISTS pages_del AFTER DELETE ON pages BEGIN UPDATE totals SET bytes = bytes - OLD.bytes, pages = pages - 1; END;
      CREATE TRIGGER IF NOT EXISTS pages_upd AFTER UPDATE OF bytes ON pages BEGIN UPDATE totals SET bytes = bytes - OLD.bytes + NEW.bytes; END;
    `);
    this.stmts = {
      get: this.db.prepare<[string], { doc: string }>('SELECT doc FROM pages WHERE url = ?'),
      touch: this.db.prepare<[string]>('UPDATE pages SET used = (SELECT COALESCE(MAX(used), 0) + 1 FROM pages) WHERE url = ?'),
      put: this.db.prepare<[string, string, number]>(
        `INSERT INTO pages (url, doc, bytes, used) VALUES (?, ?, ?, (SELECT COALESCE(MAX(used), 0) + 1 FROM pages))
         ON CONFLICT(url) DO UPDATE SET doc = excluded.doc, bytes = excluded.bytes, used = excluded.used`,
      ),
      remove: this.db.prepare<[string]>('DELETE FROM pages WHERE url = ?'),
      totals: this.db.prepare<[], { bytes: number; pages: number }>('SELECT bytes, pages FROM totals'),
      oldest: this.db.prepare<[], { url: string }>('SELECT url FROM pages ORDER BY used LIMIT 1'),
      urls: this.db.prepare<[], { url: string }>('SELECT url FROM pages ORDER BY used'),
    };
    this.db.transaction(() => this.evict()).immediate(); // the budget may be smaller than when the file was written
  }

  /** The cached page, now the most recently used; undefined when not cached. */
  get(url: string): ToolDoc | undefined {
    return this.db.transaction(() => {
      const row = this.stmts.get.get(url);
      if (!row) return undefined;
      this.stmts.touch.run(url);
      return JSON.parse(row.doc) as ToolDoc;
    }).immediate(); // take the write lock up front: a read that later writes could fail to upgrade under another process
  }

  /**
   * Cache `doc` under `url` as the most recently used page, evicting the least recently used ones
   * until the total fits the budget. A page larger than the whole budget is not stored (false).
   */
  set(url: string, doc: ToolDoc): boolean {
    const json = JSON.stringify(doc);
    const bytes = Buffer.byteLength(url) + Buffer.byteLength(json);
    return this.db.transaction(() => {
      if (bytes > this.maxBytes) {
        this.stmts.remove.run(url); // never serve an older copy of a page we were told is different
        return false;
      }
      this.stmts.put.run(url, json, bytes);
      this.evict();
      return true;
    }).immediate();
  }

  delete(url: string): boolean {
    return this.stmts.remove.run(url).changes > 0;
  }

  /** Pages cached. */
  get size(): number {
    return this.stmts.totals.get()!.pages;
  }

  /** Bytes counted against the budget. */
  get bytes(): number {
    return this.stmts.totals.get()!.bytes;
  }

  /** Cached URLs, least recently used first (for inspection and tests). */
  urls(): string[] {
    return this.stmts.urls.all().map((r) => r.url);
  }

  close(): void {
    this.db.close();
  }

  private evict(): void {
    while (this.stmts.totals.get()!.bytes > this.maxBytes) {
      const oldest = this.stmts.oldest.get();
      if (!oldest) break;
      this.stmts.remove.run(oldest.url);
    }
  }
}

/** A PageReader that answers from `cache` when it can and caches what `reader` reads successfully. */
export class CachedPageReader implements PageReader {
  readonly name: string;

  constructor(
    private readonly reader: PageReader,
    private readonly cache: PageCache,
  ) {
    this.name = reader.name;
  }

  async access(url: string, signal?: AbortSignal): Promise<ToolDoc | null> {
    const hit = this.cache.get(url);
    if (hit) return hit;
    const doc = await this.reader.access(url, signal);
    if (doc) this.cache.set(url, doc);
    return doc;
  }
}
